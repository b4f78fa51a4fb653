// The torch-free half of the model (common/model/weights.h, model_format.h,
// common/base/rng.h): the deterministic RNG against the SplitMix64
// reference, the checkpoint and delta formats round-tripped and pinned to the
// bytes the libtorch implementation wrote before the split, and every
// malformed file refused with a clear error.
#include <xxhash.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "common/base/rng.h"
#include "common/baseline/rng.h"
#include "common/model/model_format.h"
#include "common/model/weights.h"
#include "gtest/gtest.h"

namespace dgc::model {
namespace {

NetworkConfig Tiny() {
  NetworkConfig c;
  c.vocab_size = 50;
  c.max_length = 16;
  c.width = 16;
  c.depth = 2;
  c.heads = 2;
  return c;
}

TEST(RngTest, SplitMix64MatchesTheReferenceStream) {
  // splitmix64.c (Vigna) from state 1234567: next() adds the gamma, then mixes.
  const uint64_t want[] = {6457827717110365317ULL, 3203168211198807973ULL, 9817491932198370423ULL,
                           4593380528125082431ULL, 16408922859458223821ULL};
  uint64_t state = 1234567;
  for (uint64_t w : want) {
    EXPECT_EQ(SplitMix64(state), w);
    state += 0x9e3779b97f4a7c15ULL;
  }
}

TEST(RngTest, BaselineSeedStreamsAreSplitMixOfTheGammaSteps) {
  // The closed form the baselines used before they shared SplitMix64.
  for (uint64_t seed : {0ULL, 1ULL, 0xdeadbeefULL}) {
    for (uint64_t stream = 0; stream < 4; ++stream) {
      uint64_t z = seed + 0x9e3779b97f4a7c15ULL * (stream + 1);
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
      EXPECT_EQ(baseline::MixSeed(seed, stream), z ^ (z >> 31));
    }
  }
}

TEST(RngTest, DetRngUniformsAreOpenAndNormalsAreStandard) {
  DetRng r(5);
  double sum = 0, sq = 0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    const double u = r.Uniform();
    ASSERT_GT(u, 0.0);
    ASSERT_LT(u, 1.0);
    const double x = r.Normal();
    sum += x;
    sq += x * x;
  }
  EXPECT_NEAR(sum / n, 0.0, 0.01);
  EXPECT_NEAR(sq / n, 1.0, 0.01);
  DetRng a(9), b(9);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(a.Next(), b.Next());
  EXPECT_NE(Mix3(1, 2, 3), Mix3(1, 3, 2));
}

TEST(ModelFormatTest, CheckpointBytesArePinnedAndRoundTrip) {
  const NetworkConfig c = Tiny();
  const Layout l = MakeLayout(c);
  const std::vector<float> w = InitialWeights(c, l, 7);
  const std::string bytes = EncodeCheckpoint(c, l, w);
  // FlowModel::Create(Tiny(), 7).ToBytes() gave exactly these bytes before
  // the formats left flow_model.cc (measured with the old and the new build).
  EXPECT_EQ(bytes.size(), 31732u);
  EXPECT_EQ(XXH64(bytes.data(), bytes.size(), 0), 0xb274ecc3a17537d0ULL);
  auto back = DecodeCheckpoint(bytes, "tiny");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->config.width, 16);
  EXPECT_EQ(back->layout.total, l.total);
  EXPECT_EQ(back->weights, w);
}

TEST(ModelFormatTest, EveryTruncationAndFlippedByteOfACheckpointIsRefused) {
  const NetworkConfig c = Tiny();
  const Layout l = MakeLayout(c);
  const std::string bytes = EncodeCheckpoint(c, l, InitialWeights(c, l, 7));
  for (size_t n = 0; n < bytes.size(); n += (n < 64 ? 1 : 97)) {
    auto r = DecodeCheckpoint(bytes.substr(0, n), "cut");
    ASSERT_FALSE(r.ok()) << n;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << n << ": " << r.status();
    EXPECT_NE(r.status().message().find("model file cut"), absl::string_view::npos) << r.status();
  }
  for (size_t at : {size_t{0}, size_t{20}, bytes.size() / 2, bytes.size() - 1}) {
    std::string bad = bytes;
    bad[at] ^= 0x10;
    EXPECT_EQ(DecodeCheckpoint(bad, "flip").status().code(), absl::StatusCode::kDataLoss) << at;
  }
  std::string v2 = bytes;
  v2[8] = 2;
  auto r = DecodeCheckpoint(v2, "v2");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  EXPECT_NE(r.status().message().find("format version 2"), absl::string_view::npos) << r.status();
}

TEST(ModelFormatTest, QuantisationKeepsTheScaleAndSpendsNothingOnZeros) {
  const float x[] = {0.5f, -1.27f, 0.0f, 1.0f};
  Quantized q = Quantize(x, 4);
  EXPECT_FLOAT_EQ(q.scale, 1.27f / 127.0f);
  EXPECT_EQ(q.q[1], -127);
  std::vector<float> back(4);
  Dequantize(q.scale, q.q.data(), 4, back.data());
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(back[i], x[i], q.scale / 2 + 1e-7);
  const float zeros[] = {0, 0, 0};
  EXPECT_EQ(Quantize(zeros, 3).scale, 0.0f);
  EXPECT_TRUE(Quantize(zeros, 3).q.empty());
  EXPECT_TRUE(Quantize(x, 4).finite);
  const float nan[] = {1.0f, NAN};
  EXPECT_FALSE(Quantize(nan, 2).finite);
  const float inf[] = {INFINITY, 1.0f};
  EXPECT_FALSE(Quantize(inf, 2).finite);
}

// Adapters of rank 2 on every target, filled from a seed.
std::vector<float> SomeAdapters(const LoraLayout& ll, uint64_t seed) {
  DetRng r(seed);
  std::vector<float> v(static_cast<size_t>(ll.total));
  for (float& x : v) x = static_cast<float>(0.05 * r.Normal());
  return v;
}

// What the decoder must get: the base plus each quantised adapter merged.
std::vector<float> MergedByHand(const NetworkConfig& c, const Layout& l, const LoraLayout& ll,
                                const std::vector<float>& ad, bool a_from_seed, uint64_t seed,
                                std::vector<float> base) {
  for (const AdapterSpec& a : ll.adapters) {
    std::vector<float> av, bv;
    auto dq = [](const float* x, int64_t n) {
      Quantized q = Quantize(x, n);
      std::vector<float> out(static_cast<size_t>(n), 0.0f);
      if (q.scale != 0) Dequantize(q.scale, q.q.data(), n, out.data());
      return out;
    };
    if (!a.vector) av = a_from_seed ? AdapterAInit(seed, a, ll.rank) : dq(ad.data() + a.a_offset, ll.rank * a.in);
    bv = dq(ad.data() + a.b_offset, a.out * (a.vector ? 1 : ll.rank));
    MergeOneCpu(l, a, av.data(), bv.data(), ll.rank, ll.scale, base.data());
  }
  return base;
}

TEST(ModelFormatTest, LoraAndFullDeltasApplyToTheWeightsTheyDescribe) {
  const NetworkConfig c = Tiny();
  const Layout l = MakeLayout(c);
  const std::vector<float> base = InitialWeights(c, l, 7);
  const uint64_t parent = HashWeights(l, base.data());
  const LoraLayout ll = MakeLoraLayout(c, l, 2, 2.0, (1u << kNumTargets) - 1);
  const std::vector<float> ad = SomeAdapters(ll, 3);
  for (bool a_from_seed : {false, true}) {
    SCOPED_TRACE(a_from_seed ? "A from seed" : "A stored");
    std::vector<float> seeded = ad;
    if (a_from_seed) {  // what Train leaves: A at its seeded init
      for (const AdapterSpec& a : ll.adapters) {
        if (a.vector) continue;
        std::vector<float> init = AdapterAInit(99, a, ll.rank);
        std::copy(init.begin(), init.end(), seeded.begin() + a.a_offset);
      }
    }
    auto d = EncodeLoraDelta(ll, seeded, a_from_seed, 99, parent, 3);
    ASSERT_TRUE(d.ok()) << d.status();
    auto h = ParseDelta(*d, "lora", l.total);
    ASSERT_TRUE(h.ok()) << h.status();
    EXPECT_EQ(h->kind, DeltaKind::kLora);
    EXPECT_EQ(h->parent_hash, parent);
    std::vector<float> got = base;
    ASSERT_TRUE(ApplyDeltaPayload(*h, "lora", c, l, &got).ok());
    EXPECT_EQ(got, MergedByHand(c, l, ll, seeded, a_from_seed, 99, base));
    EXPECT_NE(got, base);
  }
  std::vector<float> diff(base.size());
  DetRng r(4);
  for (float& x : diff) x = static_cast<float>(0.01 * r.Normal());
  auto d = EncodeFullDelta(l, diff, parent, 3);
  ASSERT_TRUE(d.ok()) << d.status();
  auto h = ParseDelta(*d, "full", l.total);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->kind, DeltaKind::kFull);
  std::vector<float> got = base;
  ASSERT_TRUE(ApplyDeltaPayload(*h, "full", c, l, &got).ok());
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::fabs(double(got[i]) - base[i] - diff[i]));
  EXPECT_LT(worst, 0.01 * 6 / 127.0);  // half a quantisation step of the largest tensor's scale, with margin
  EXPECT_GT(worst, 0.0);
  // Weights that diverged are an error, not a delta of garbage.
  diff[5] = NAN;
  auto bad = EncodeFullDelta(l, diff, parent, 3);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kFailedPrecondition) << bad.status();
  EXPECT_NE(bad.status().message().find("tok_emb"), absl::string_view::npos) << bad.status();
}

TEST(ModelFormatTest, MalformedDeltasAreRefusedByName) {
  const NetworkConfig c = Tiny();
  const Layout l = MakeLayout(c);
  const std::vector<float> base = InitialWeights(c, l, 7);
  const LoraLayout ll = MakeLoraLayout(c, l, 2, 2.0, (1u << kNumTargets) - 1);
  auto d = EncodeLoraDelta(ll, SomeAdapters(ll, 3), false, 0, HashWeights(l, base.data()), 3);
  ASSERT_TRUE(d.ok());
  for (size_t n = 0; n < d->size(); ++n) {
    auto h = ParseDelta(d->substr(0, n), "cut", l.total);
    ASSERT_FALSE(h.ok()) << n;
    EXPECT_EQ(h.status().code(), absl::StatusCode::kDataLoss) << n;
    EXPECT_NE(h.status().message().find("delta cut"), absl::string_view::npos) << h.status();
  }
  std::string flipped = *d;
  flipped[flipped.size() / 2] ^= 1;
  EXPECT_NE(ParseDelta(flipped, "f", l.total).status().message().find("checksum mismatch"), absl::string_view::npos);
  // A header claiming 2 GB of payload (checksum made right) is refused
  // before anything is inflated.
  std::string huge = *d;
  const uint32_t claim = 0x7fffffff;
  std::memcpy(huge.data() + 24, &claim, 4);
  const uint64_t sum = XXH64(huge.data(), huge.size() - 8, 0);
  std::memcpy(huge.data() + huge.size() - 8, &sum, 8);
  auto big = ParseDelta(huge, "big", l.total);
  EXPECT_NE(big.status().message().find("implausible payload size"), absl::string_view::npos) << big.status();
  // A payload cut short inside (framing and checksum right) is caught while it is read.
  auto h = ParseDelta(*d, "ok", l.total);
  ASSERT_TRUE(h.ok());
  DeltaHeader shorter = *h;
  shorter.raw_size -= 1;
  std::vector<float> w = base;
  EXPECT_EQ(ApplyDeltaPayload(shorter, "short", c, l, &w).code(), absl::StatusCode::kDataLoss);
  // The same delta against a model with no second block names the mismatch.
  NetworkConfig one = c;
  one.depth = 1;
  const Layout l1 = MakeLayout(one);
  std::vector<float> w1 = InitialWeights(one, l1, 7);
  Status st = ApplyDeltaPayload(*h, "deep", one, l1, &w1);
  EXPECT_NE(st.message().find("adapter for a matrix the model does not have"), absl::string_view::npos) << st;
}

}  // namespace
}  // namespace dgc::model
