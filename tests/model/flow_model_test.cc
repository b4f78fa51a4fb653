// FlowModel: network, training, adapters, deltas, checkpoints and the
// KV-cached grammar-constrained sampler, on a toy grammar with learnable
// structure (the real flow tokenizer has its own tests).
#include "common/model/flow_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <random>

#include "common/base/files.h"
#include "gtest/gtest.h"
#include "tests/testutil/testutil.h"

namespace dgc::model {
namespace {

// Toy grammar: kBos, a type token t in [3, 7), then TypeLength(t) value
// tokens from the type's own range [7 + 8t', 15 + 8t') (t' = t - 3), then kEos.
// Types have different lengths so batches finish at different steps.
constexpr Token kTypeBegin = 3;
constexpr int kTypes = 4;
constexpr Token kValueBegin = kTypeBegin + kTypes;
constexpr int kValuesPerType = 8;
constexpr int32_t kToyVocab = kValueBegin + kTypes * kValuesPerType;  // 39

int TypeLength(int type) { return 2 + type % 3; }  // 2, 3, 4, 2 values

class ToyGrammar : public Grammar {
 public:
  int32_t vocab_size() const override { return kToyVocab; }
  int32_t max_length() const override { return 1 + 1 + 4 + 1; }
  GrammarState Start() const override { return GrammarState(); }
  TokenRange Allowed(const GrammarState& s) const override {
    if (s.step == 0) return {kTypeBegin, kTypeBegin + kTypes};
    if (s.step <= TypeLength(s.a)) {
      Token b = kValueBegin + s.a * kValuesPerType;
      return {b, b + kValuesPerType};
    }
    return {kEos, kEos + 1};
  }
  void Advance(GrammarState* s, Token t) const override {
    if (s->step == 0) s->a = t - kTypeBegin;
    if (t == kEos) s->done = true;
    ++s->step;
  }
};

// True when `seq` is a complete sentence of `g`.
bool Accepts(const Grammar& g, const std::vector<Token>& seq) {
  if (seq.empty() || seq[0] != kBos || static_cast<int>(seq.size()) > g.max_length()) return false;
  GrammarState s = g.Start();
  for (size_t i = 1; i < seq.size(); ++i) {
    if (s.done || !g.Allowed(s).Contains(seq[i])) return false;
    g.Advance(&s, seq[i]);
  }
  return s.done;
}

// Type frequencies 0.4/0.3/0.2/0.1; the first value is skewed within its
// range, each next value is the previous + 1 (wrapping): learnable structure.
// `shift` changes the first-value distribution (a "new chunk").
std::vector<std::vector<Token>> ToyData(int n, uint64_t seed, int shift = 0) {
  std::mt19937_64 rng(seed);
  std::discrete_distribution<int> type({4, 3, 2, 1});
  std::discrete_distribution<int> first({8, 4, 2, 1, 1, 1, 1, 1});
  std::vector<std::vector<Token>> out;
  for (int i = 0; i < n; ++i) {
    int t = type(rng);
    std::vector<Token> s = {kBos, kTypeBegin + t};
    int v = (first(rng) + shift) % kValuesPerType;
    for (int j = 0; j < TypeLength(t); ++j) {
      s.push_back(kValueBegin + t * kValuesPerType + (v + j) % kValuesPerType);
    }
    s.push_back(kEos);
    out.push_back(std::move(s));
  }
  return out;
}

NetworkConfig ToyConfig(int width = 32, int depth = 2) {
  NetworkConfig c;
  c.vocab_size = kToyVocab;
  c.max_length = ToyGrammar().max_length();
  c.width = width;
  c.depth = depth;
  c.heads = 4;
  return c;
}

std::unique_ptr<FlowModel> MakeModel(const NetworkConfig& c, uint64_t seed = 7) {
  auto m = FlowModel::Create(c, seed);
  EXPECT_TRUE(m.ok()) << m.status();
  return std::move(m).value();
}

TrainOptions QuickTrain(int steps = 150) {
  TrainOptions o;
  o.max_steps = steps;
  o.max_seconds = 60;
  o.batch_size = 64;
  o.learning_rate = 5e-3;
  return o;
}

double MaxAbsDiff(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b) {
  double d = 0;
  EXPECT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    EXPECT_EQ(a[i].size(), b[i].size());
    for (size_t j = 0; j < a[i].size() && j < b[i].size(); ++j) d = std::max(d, std::fabs(double(a[i][j]) - b[i][j]));
  }
  return d;
}

// A model trained once for the tests that need one (about a second).
class TrainedModelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ConfigureCpuThreads();
    model_ = MakeModel(ToyConfig(32, 1)).release();
    TrainOptions o = QuickTrain(200);
    o.batch_size = 128;
    auto stats = model_->Train(ToyData(8000, 1), o);
    ASSERT_TRUE(stats.ok()) << stats.status();
    stats_ = *stats;
  }
  static void TearDownTestSuite() {
    delete model_;
    model_ = nullptr;
  }
  static FlowModel* model_;
  static TrainStats stats_;
};
FlowModel* TrainedModelTest::model_ = nullptr;
TrainStats TrainedModelTest::stats_;

TEST(NetworkConfigTest, JsonRoundTripAndValidation) {
  NetworkConfig c = ToyConfig(64, 3);
  c.tie_embeddings = false;
  auto back = NetworkConfig::FromJson(c.ToJson());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->ToJson(), c.ToJson());

  nlohmann::json j = c.ToJson();
  j["heads"] = 5;  // does not divide 64
  EXPECT_EQ(NetworkConfig::FromJson(j).status().code(), absl::StatusCode::kInvalidArgument);
  j = c.ToJson();
  j.erase("width");
  EXPECT_EQ(NetworkConfig::FromJson(j).status().code(), absl::StatusCode::kInvalidArgument);
  j = c.ToJson();
  j["depth"] = "two";
  EXPECT_EQ(NetworkConfig::FromJson(j).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(FlowModelTest, CreateRejectsBadConfigAndDevice) {
  NetworkConfig c = ToyConfig();
  c.vocab_size = 0;
  EXPECT_EQ(FlowModel::Create(c, 1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(FlowModel::Create(ToyConfig(), 1, "tpu").status().code(), absl::StatusCode::kInvalidArgument);
  auto cuda = FlowModel::Create(ToyConfig(), 1, "cuda");
  if (!cuda.ok()) {
    EXPECT_EQ(cuda.status().code(), absl::StatusCode::kFailedPrecondition);
  }
  EXPECT_TRUE(FlowModel::Create(ToyConfig(), 1, "auto").ok());
}

TEST(FlowModelTest, InitIsDeterministicFromSeed) {
  auto a = MakeModel(ToyConfig(), 3), b = MakeModel(ToyConfig(), 3), c = MakeModel(ToyConfig(), 4);
  EXPECT_EQ(a->ToBytes(), b->ToBytes());
  EXPECT_NE(a->ToBytes(), c->ToBytes());
}

TEST(FlowModelTest, TiedHeadSavesVocabTimesWidthParameters) {
  NetworkConfig tied = ToyConfig(64, 2), untied = tied;
  untied.tie_embeddings = false;
  EXPECT_EQ(MakeModel(untied)->parameter_count() - MakeModel(tied)->parameter_count(),
            int64_t{tied.vocab_size} * tied.width);
}

TEST(FlowModelTest, KvCachedLogitsEqualFullForward) {
  for (bool tied : {true, false}) {
    NetworkConfig c = ToyConfig(64, 3);
    c.tie_embeddings = tied;
    auto m = MakeModel(c);
    // Train briefly so the weights are not all near zero.
    ASSERT_TRUE(m->Train(ToyData(500, 2), QuickTrain(20)).ok());
    auto seqs = ToyData(40, 9);  // lengths 4..7, padded in one batch
    auto full = m->Logits(seqs, /*kv_cached=*/false);
    auto inc = m->Logits(seqs, /*kv_cached=*/true);
    ASSERT_TRUE(full.ok()) << full.status();
    ASSERT_TRUE(inc.ok()) << inc.status();
    EXPECT_LT(MaxAbsDiff(*full, *inc), 1e-4);
  }
}

TEST(FlowModelTest, RejectsBadTrainingData) {
  auto m = MakeModel(ToyConfig());
  EXPECT_EQ(m->Train({}, QuickTrain()).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m->Train({{kBos, 3, kToyVocab, kEos}}, QuickTrain()).status().code(),
            absl::StatusCode::kInvalidArgument);  // token outside the vocabulary
  EXPECT_EQ(m->Train({{3, 7, kEos}}, QuickTrain()).status().code(),
            absl::StatusCode::kInvalidArgument);  // no kBos
  EXPECT_EQ(m->Train({std::vector<Token>(20, kBos)}, QuickTrain()).status().code(),
            absl::StatusCode::kInvalidArgument);  // longer than max_length
  TrainOptions bad = QuickTrain();
  bad.lora_rank = 4;
  bad.lora_targets = {"q", "embedding"};
  EXPECT_EQ(m->Train(ToyData(10, 1), bad).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m->ExportDelta(DeltaOptions()).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(TrainedModelTest, LossFallsAndGeneralises) {
  EXPECT_EQ(stats_.steps, 200);
  EXPECT_GT(stats_.tokens_per_second, 1000);
  EXPECT_LT(stats_.final_loss, stats_.first_loss - 1.0);
  // The data's entropy per token is about (1.28 + 1.87) / 4.9 nats; allow slack.
  auto held_out = model_->Loss(ToyData(1000, 99));
  ASSERT_TRUE(held_out.ok()) << held_out.status();
  EXPECT_LT(*held_out, 0.8);
}

// Loss packs several sequences into each row (own positions, attention
// blocked across sequences); it must equal the cross-entropy computed from
// one-sequence-per-row logits.
TEST_F(TrainedModelTest, PackedLossEqualsPerSequenceCrossEntropy) {
  auto seqs = ToyData(300, 17);
  seqs.push_back({kBos, kTypeBegin + 1, kValueBegin + 8, kValueBegin + 9, kValueBegin + 10, kEos});
  auto loss = model_->Loss(seqs);
  auto logits = model_->Logits(seqs, false);
  ASSERT_TRUE(loss.ok() && logits.ok());
  double sum = 0;
  int64_t count = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    for (size_t p = 0; p + 1 < seqs[i].size(); ++p) {
      const float* row = (*logits)[i].data() + p * kToyVocab;
      double mx = *std::max_element(row, row + kToyVocab), z = 0;
      for (int v = 0; v < kToyVocab; ++v) z += std::exp(row[v] - mx);
      sum += -(row[seqs[i][p + 1]] - mx - std::log(z));
      ++count;
    }
  }
  EXPECT_NEAR(*loss, sum / count, 1e-4);
}

// Every token allowed everywhere: the windowed loss is the full one.
class WholeVocabGrammar : public Grammar {
 public:
  int32_t vocab_size() const override { return kToyVocab; }
  int32_t max_length() const override { return ToyGrammar().max_length(); }
  GrammarState Start() const override { return GrammarState(); }
  TokenRange Allowed(const GrammarState&) const override { return {0, kToyVocab}; }
  void Advance(GrammarState* s, Token t) const override { s->done = t == kEos; }
};

// The loss over each position's grammar window: the same number as the full
// softmax when the window is the whole vocabulary; with a real grammar it
// scores only the tokens sampling can draw (lower from the same weights), and
// the model still learns the data.
TEST(FlowModelTest, WindowedLossMatchesTheFullOneOnAWholeWindowAndLearns) {
  ConfigureCpuThreads();
  const auto data = ToyData(2000, 3);
  WholeVocabGrammar whole;
  ToyGrammar toy;
  auto first_loss = [&](const Grammar* g) {
    auto m = MakeModel(ToyConfig(32, 1), 11);
    TrainOptions o = QuickTrain(1);
    o.grammar = g;
    auto st = m->Train(data, o);
    EXPECT_TRUE(st.ok()) << st.status();
    return st.ok() ? st->first_loss : -1.0;
  };
  const double full = first_loss(nullptr);
  EXPECT_NEAR(first_loss(&whole), full, 1e-4);
  const double windowed = first_loss(&toy);
  EXPECT_LT(windowed, full - 0.5) << "a window of 4-8 tokens out of 39";

  auto m = MakeModel(ToyConfig(32, 1), 11);
  TrainOptions o = QuickTrain(200);
  o.batch_size = 128;
  o.grammar = &toy;
  auto st = m->Train(ToyData(8000, 1), o);
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_LT(st->final_loss, st->first_loss - 0.5);
  // Held-out windowed cross-entropy from the logits: the data's entropy is
  // about (1.28 + 1.87) / 4.9 nats per token; allow slack.
  const auto held = ToyData(500, 99);
  auto logits = m->Logits(held, false);
  ASSERT_TRUE(logits.ok()) << logits.status();
  double sum = 0;
  int64_t count = 0;
  for (size_t i = 0; i < held.size(); ++i) {
    GrammarState gs = toy.Start();
    for (size_t p = 0; p + 1 < held[i].size(); ++p) {
      const TokenRange w = toy.Allowed(gs);
      const float* row = (*logits)[i].data() + p * kToyVocab;
      double mx = *std::max_element(row + w.begin, row + w.end), z = 0;
      for (Token v = w.begin; v < w.end; ++v) z += std::exp(row[v] - mx);
      sum += -(row[held[i][p + 1]] - mx - std::log(z));
      ++count;
      toy.Advance(&gs, held[i][p + 1]);
    }
  }
  EXPECT_LT(sum / count, 0.8);
}

TEST_F(TrainedModelTest, SamplesFollowGrammarAndReproduceDistribution) {
  ToyGrammar g;
  const int n = 20000;
  std::vector<std::vector<Token>> prefixes(n, {kBos});
  SampleOptions o;
  o.batch_size = 2048;
  auto out = model_->Sample(prefixes, g, o);
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_EQ(out->size(), static_cast<size_t>(n));
  std::vector<int> types(kTypes);
  int follows = 0, pairs = 0, first_zero = 0;
  for (const auto& s : *out) {
    ASSERT_TRUE(Accepts(g, s)) << "sequence of " << s.size() << " tokens";
    int t = s[1] - kTypeBegin;
    ++types[t];
    int base = kValueBegin + t * kValuesPerType;
    if (s[2] - base == 0) ++first_zero;
    for (size_t j = 3; j + 1 < s.size(); ++j) {
      ++pairs;
      if ((s[j] - base) == (s[j - 1] - base + 1) % kValuesPerType) ++follows;
    }
  }
  const double want[kTypes] = {0.4, 0.3, 0.2, 0.1};
  // The sampler draws from the model's own distribution...
  auto logits = model_->Logits({{kBos}}, false);
  ASSERT_TRUE(logits.ok());
  double z = 0;
  for (int t = 0; t < kTypes; ++t) z += std::exp((*logits)[0][kTypeBegin + t]);
  for (int t = 0; t < kTypes; ++t) {
    EXPECT_NEAR(types[t] / double(n), std::exp((*logits)[0][kTypeBegin + t]) / z, 0.012) << "type " << t;
  }
  // ... and the model learned the data's.
  for (int t = 0; t < kTypes; ++t) EXPECT_NEAR(types[t] / double(n), want[t], 0.03) << "type " << t;
  EXPECT_NEAR(first_zero / double(n), 8.0 / 19.0, 0.04);
  EXPECT_GT(follows / double(pairs), 0.95);
}

TEST_F(TrainedModelTest, SamplingIsDeterministicPerSeed) {
  ToyGrammar g;
  std::vector<std::vector<Token>> prefixes(500, {kBos});
  SampleOptions o;
  o.batch_size = 128;
  auto a = model_->Sample(prefixes, g, o), b = model_->Sample(prefixes, g, o);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
  o.seed = 2;
  auto c = model_->Sample(prefixes, g, o);
  ASSERT_TRUE(c.ok());
  EXPECT_NE(*a, *c);
  // The uniforms depend on (seed, sequence, position), not on the batching:
  // other batch sizes give the same sequences unless float rounding of a
  // differently shaped product flips a draw (rare).
  o.seed = 1;
  o.batch_size = 77;
  auto d = model_->Sample(prefixes, g, o);
  ASSERT_TRUE(d.ok());
  int same = 0;
  for (size_t i = 0; i < a->size(); ++i) same += (*a)[i] == (*d)[i];
  EXPECT_GE(same, 495);
}

TEST_F(TrainedModelTest, SamplingThreadsDoNotChangeTheOutput) {
  // Same batches, decoded by 1, 2 or 3 threads (with OpenBLAS single-threaded
  // meanwhile): the same sequences, bit for bit.
  ToyGrammar g;
  std::vector<std::vector<Token>> prefixes(700, {kBos});
  SampleOptions o;
  o.batch_size = 64;
  o.threads = 1;
  auto one = model_->Sample(prefixes, g, o);
  ASSERT_TRUE(one.ok()) << one.status();
  for (int threads : {2, 3, 0}) {
    o.threads = threads;
    auto many = model_->Sample(prefixes, g, o);
    ASSERT_TRUE(many.ok()) << many.status();
    EXPECT_EQ(*many, *one) << threads << " threads";
  }
  // A bad prefix is still an error, whatever the threads.
  prefixes[650] = {kBos, kBos};
  o.threads = 3;
  EXPECT_FALSE(model_->Sample(prefixes, g, o).ok());
}

TEST_F(TrainedModelTest, GreedySamplingPicksTheMode) {
  ToyGrammar g;
  SampleOptions o;
  o.temperature = 0;
  auto out = model_->Sample({{kBos}, {kBos, kTypeBegin + 2}}, g, o);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ((*out)[0][1], kTypeBegin);  // most frequent type
  EXPECT_EQ((*out)[1][2], kValueBegin + 2 * kValuesPerType);  // most frequent first value
  EXPECT_TRUE(Accepts(g, (*out)[0]));
}

TEST_F(TrainedModelTest, ForcedPrefixesOfVaryingContentAndLength) {
  ToyGrammar g;
  std::vector<std::vector<Token>> prefixes;
  for (int i = 0; i < 400; ++i) {
    int t = i % kTypes;
    std::vector<Token> p = {kBos, kTypeBegin + t};
    if (i % 3 == 0) p.push_back(kValueBegin + t * kValuesPerType + 5);  // a rare first value
    prefixes.push_back(p);
  }
  auto out = model_->Sample(prefixes, g, SampleOptions());
  ASSERT_TRUE(out.ok()) << out.status();
  int follows = 0;
  for (size_t i = 0; i < prefixes.size(); ++i) {
    const auto& s = (*out)[i];
    ASSERT_TRUE(Accepts(g, s));
    ASSERT_TRUE(std::equal(prefixes[i].begin(), prefixes[i].end(), s.begin()));
    if (prefixes[i].size() == 3) follows += s[3] == s[2] + 1;
  }
  // 134 such prefixes; the model continues 5 -> 6 (chance would be 1 in 8).
  EXPECT_GT(follows, 90);
}

TEST_F(TrainedModelTest, SampleRejectsBadPrefixesAndGrammars) {
  ToyGrammar g;
  SampleOptions o;
  EXPECT_EQ(model_->Sample({{kTypeBegin}}, g, o).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(model_->Sample({{kBos, kValueBegin}}, g, o).status().code(),
            absl::StatusCode::kInvalidArgument);  // a value where a type must come
  EXPECT_EQ(model_->Sample({{kBos, kTypeBegin, kValueBegin, kValueBegin + 1, kEos}}, g, o).status().code(),
            absl::StatusCode::kInvalidArgument);  // already complete
  class WideGrammar : public ToyGrammar {
    int32_t vocab_size() const override { return kToyVocab + 1; }
  } wide;
  EXPECT_EQ(model_->Sample({{kBos}}, wide, o).status().code(), absl::StatusCode::kInvalidArgument);
  auto empty = model_->Sample({}, g, o);
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

TEST_F(TrainedModelTest, CheckpointRoundTrip) {
  testing::TempDir dir;
  const std::string path = dir.File("m.dgcm");
  ASSERT_TRUE(model_->Save(path).ok());
  auto back = FlowModel::Load(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ((*back)->ToBytes(), model_->ToBytes());
  EXPECT_EQ((*back)->config().ToJson(), model_->config().ToJson());
  auto seqs = ToyData(20, 5);
  EXPECT_EQ(MaxAbsDiff(*(*back)->Logits(seqs, false), *model_->Logits(seqs, false)), 0.0);
  auto clone = model_->Clone();
  ASSERT_TRUE(clone.ok());
  EXPECT_EQ((*clone)->ToBytes(), model_->ToBytes());
}

// Each broken input is a clear error naming the file, never a crash.
TEST_F(TrainedModelTest, BrokenCheckpointsAreErrorsNamingTheFile) {
  testing::TempDir dir;
  const std::string good = model_->ToBytes();
  auto load = [&](const std::string& name, const std::string& bytes) {
    const std::string path = dir.File(name);
    EXPECT_TRUE(WriteFileAtomic(path, bytes).ok());
    auto m = FlowModel::Load(path);
    EXPECT_FALSE(m.ok()) << name;
    if (!m.ok()) {
      EXPECT_NE(m.status().message().find(path), absl::string_view::npos) << m.status();
    }
    return m.status();
  };
  std::string flipped = good;
  flipped[good.size() / 2] ^= 0x40;
  EXPECT_NE(load("flipped.dgcm", flipped).message().find("checksum"), absl::string_view::npos);
  for (size_t cut : {size_t{0}, size_t{5}, size_t{12}, good.size() / 3, good.size() - 1}) {
    Status st = load("cut.dgcm", good.substr(0, cut));
    EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << st;
  }
  std::string version = good;
  version[8] = 9;
  Status st = load("version.dgcm", version);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("version 9"), absl::string_view::npos) << st;
  std::string magic = good;
  magic[0] = 'X';
  EXPECT_NE(load("magic.dgcm", magic).message().find("magic"), absl::string_view::npos);
  EXPECT_FALSE(load("text.dgcm", "hello, not a model").ok());
  EXPECT_EQ(FlowModel::Load(dir.File("missing.dgcm")).status().code(), absl::StatusCode::kNotFound);
}

class DeltaTest : public TrainedModelTest {
 protected:
  // Fine-tunes a copy of the trained model on shifted data.
  std::unique_ptr<FlowModel> FineTune(const TrainOptions& o) {
    auto child = model_->Clone();
    EXPECT_TRUE(child.ok());
    auto stats = (*child)->Train(ToyData(2000, 11, /*shift=*/3), o);
    EXPECT_TRUE(stats.ok()) << stats.status();
    return std::move(child).value();
  }
  static TrainOptions LoraOptions(int rank) {
    TrainOptions o = QuickTrain(80);
    o.lora_rank = rank;
    o.learning_rate = 1e-2;
    return o;
  }
};

TEST_F(DeltaTest, LoraDeltaRoundTripsAndAdaptsToTheChunk) {
  auto shifted = ToyData(1000, 12, 3);
  const double parent_loss = *model_->Loss(shifted);
  const std::string parent_bytes = model_->ToBytes();
  auto child = FineTune(LoraOptions(4));
  const double child_loss = *child->Loss(shifted);
  EXPECT_LT(child_loss, parent_loss - 0.1);

  auto delta = child->ExportDelta(DeltaOptions());
  ASSERT_TRUE(delta.ok()) << delta.status();
  // Width 32, one block, rank 4, default targets: 1152 A and 1152 B values
  // in the block, 32 x 4 + 39 x 4 for the embedding, 39 for the output bias.
  EXPECT_LT(delta->size(), 3000u);

  auto rebuilt = model_->Clone();
  ASSERT_TRUE(rebuilt.ok());
  ASSERT_TRUE((*rebuilt)->ApplyDelta(*delta, "chunk-1.delta").ok());
  EXPECT_NEAR(*(*rebuilt)->Loss(shifted), child_loss, 0.02);
  auto seqs = ToyData(20, 5, 3);
  EXPECT_LT(MaxAbsDiff(*(*rebuilt)->Logits(seqs, false), *child->Logits(seqs, false)), 0.1);

  // The encoder adopts its own delta and is then the decoder's model, bit for bit.
  ASSERT_TRUE(child->AdoptDelta(*delta, "chunk-1.delta").ok());
  EXPECT_EQ(child->ToBytes(), (*rebuilt)->ToBytes());

  // LoRA froze the parent: fine-tuning the clone changed none of the
  // parent's weights (a clone sharing its tensors would have), and the delta
  // alone (adapters, no base weights) rebuilt the child above.
  EXPECT_EQ(model_->ToBytes(), parent_bytes);
  EXPECT_EQ(*model_->Loss(shifted), parent_loss);
  auto again = model_->Clone();
  ASSERT_TRUE(again.ok());
  ASSERT_TRUE((*again)->ApplyDelta(*delta, "chunk-1.delta").ok());
  EXPECT_EQ((*again)->ToBytes(), (*rebuilt)->ToBytes()) << "the delta alone rebuilds the child from the parent";
}

TEST_F(DeltaTest, SeededAStoresOnlyB) {
  TrainOptions o = LoraOptions(4);
  o.lora_train_a = true;
  auto full_a = FineTune(o);
  o.lora_train_a = false;
  auto seeded = FineTune(o);
  auto d1 = full_a->ExportDelta(DeltaOptions()), d2 = seeded->ExportDelta(DeltaOptions());
  ASSERT_TRUE(d1.ok() && d2.ok());
  EXPECT_LT(d2->size() * 10, d1->size() * 7);
  auto rebuilt = model_->Clone();
  ASSERT_TRUE((*rebuilt)->ApplyDelta(*d2, "seeded").ok());
  auto shifted = ToyData(500, 12, 3);
  EXPECT_NEAR(*(*rebuilt)->Loss(shifted), *seeded->Loss(shifted), 0.02);
  EXPECT_LT(*seeded->Loss(shifted), *model_->Loss(shifted) - 0.1);
}

TEST_F(DeltaTest, EveryTargetRoundTripsWithTiedAndUntiedHeads) {
  for (bool tied : {true, false}) {
    NetworkConfig c = ToyConfig(32, 2);
    c.tie_embeddings = tied;
    auto parent = MakeModel(c);
    ASSERT_TRUE(parent->Train(ToyData(1000, 1), QuickTrain(30)).ok());
    for (const std::vector<std::string>& targets :
         std::vector<std::vector<std::string>>{{"q", "mlp_out"}, {"emb"}, {"head_bias"}, {"k", "v", "o", "mlp_in"}}) {
      for (bool train_a : {false, true}) {
        auto child = parent->Clone().value();
        TrainOptions o = LoraOptions(3);
        o.max_steps = 15;
        o.lora_targets = targets;
        o.lora_train_a = train_a;
        ASSERT_TRUE(child->Train(ToyData(500, 3, 2), o).ok());
        auto delta = child->ExportDelta(DeltaOptions());
        ASSERT_TRUE(delta.ok()) << delta.status();
        auto rebuilt = parent->Clone().value();
        ASSERT_TRUE(rebuilt->ApplyDelta(*delta, "d").ok());
        auto seqs = ToyData(10, 5, 2);
        EXPECT_LT(MaxAbsDiff(*rebuilt->Logits(seqs, false), *child->Logits(seqs, false)), 0.05)
            << targets[0] << " tied " << tied;
        ASSERT_TRUE(child->AdoptDelta(*delta, "d").ok());
        EXPECT_EQ(child->ToBytes(), rebuilt->ToBytes()) << targets[0] << " tied " << tied;
      }
    }
  }
}

TEST_F(DeltaTest, FullDeltaRoundTrips) {
  TrainOptions o = QuickTrain(60);
  o.learning_rate = 3e-3;
  auto child = FineTune(o);
  auto delta = child->ExportDelta(DeltaOptions());
  ASSERT_TRUE(delta.ok()) << delta.status();
  auto rebuilt = model_->Clone();
  ASSERT_TRUE((*rebuilt)->ApplyDelta(*delta, "full").ok());
  auto shifted = ToyData(500, 12, 3);
  EXPECT_NEAR(*(*rebuilt)->Loss(shifted), *child->Loss(shifted), 0.03);
  ASSERT_TRUE(child->AdoptDelta(*delta, "full").ok());
  EXPECT_EQ(child->ToBytes(), (*rebuilt)->ToBytes());
}

TEST_F(DeltaTest, BrokenOrMisdirectedDeltasAreRefused) {
  auto child = FineTune(LoraOptions(2));
  auto delta = child->ExportDelta(DeltaOptions());
  ASSERT_TRUE(delta.ok());
  auto target = model_->Clone();
  ASSERT_TRUE(target.ok());
  const std::string before = (*target)->ToBytes();
  auto apply = [&](const std::string& d) { return (*target)->ApplyDelta(d, "chunk-7.delta"); };

  // The wrong parent: the child itself.
  Status st = child->ApplyDelta(*delta, "chunk-7.delta");
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("parent"), absl::string_view::npos) << st;
  EXPECT_NE(st.message().find("chunk-7.delta"), absl::string_view::npos) << st;

  std::string flipped = *delta;
  flipped[flipped.size() / 2] ^= 1;
  st = apply(flipped);
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(st.message().find("chunk-7.delta"), absl::string_view::npos) << st;
  for (size_t cut : {size_t{0}, size_t{7}, size_t{20}, delta->size() - 1}) {
    EXPECT_EQ(apply(delta->substr(0, cut)).code(), absl::StatusCode::kDataLoss) << cut;
  }
  std::string version = *delta;
  version[8] = 2;
  EXPECT_EQ(apply(version).code(), absl::StatusCode::kFailedPrecondition);
  std::string magic = *delta;
  magic[1] = 'X';
  EXPECT_EQ(apply(magic).code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(apply(model_->ToBytes()).code(), absl::StatusCode::kDataLoss);  // a model is not a delta
  EXPECT_EQ((*target)->ToBytes(), before);  // nothing was applied
}

TEST_F(DeltaTest, ChainOfDeltas) {
  // parent -> chunk 1 -> chunk 2, each delta applied to the model the encoder
  // adopted: the decoder replays the chain exactly.
  auto enc = model_->Clone().value();
  std::vector<std::string> deltas;
  for (int chunk = 0; chunk < 2; ++chunk) {
    ASSERT_TRUE(enc->Train(ToyData(1000, 20 + chunk, chunk + 1), LoraOptions(2)).ok());
    auto d = enc->ExportDelta(DeltaOptions());
    ASSERT_TRUE(d.ok());
    ASSERT_TRUE(enc->AdoptDelta(*d, "d").ok());
    deltas.push_back(*d);
  }
  auto dec = model_->Clone().value();
  for (const auto& d : deltas) ASSERT_TRUE(dec->ApplyDelta(d, "d").ok());
  EXPECT_EQ(dec->ToBytes(), enc->ToBytes());
  // Out of order: the second delta does not fit the parent.
  auto wrong = model_->Clone().value();
  EXPECT_EQ(wrong->ApplyDelta(deltas[1], "d").code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(DeltaTest, SaveMergesLiveAdapters) {
  auto child = FineTune(LoraOptions(4));
  auto back = FlowModel::FromBytes(child->ToBytes(), "mem");
  ASSERT_TRUE(back.ok()) << back.status();
  auto seqs = ToyData(20, 5, 3);
  EXPECT_LT(MaxAbsDiff(*(*back)->Logits(seqs, false), *child->Logits(seqs, false)), 1e-4);
}

// ---------------------------------------------------------------------------
// Devices and precision (a CUDA machine runs tests/bench/gpu; here the CPU).

TEST(FlowModelDeviceTest, CudaWithoutCudaIsAClearError) {
  if (CudaDeviceCount() > 0) GTEST_SKIP() << "this machine has a GPU";
  auto m = FlowModel::Create(ToyConfig(), 1, "cuda:0");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(m.status().message()).find("CUDA"), std::string::npos) << m.status();
  auto cpu = MakeModel(ToyConfig());
  EXPECT_EQ(cpu->To("cuda").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(cpu->device(), "cpu");  // unchanged
  TrainOptions o = QuickTrain(2);
  o.device = "cuda:1";
  EXPECT_EQ(cpu->Train(ToyData(50, 1), o).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(FlowModelDeviceTest, AutoAndCpuDevicesTrainTheSame) {
  auto a = MakeModel(ToyConfig()), b = MakeModel(ToyConfig());
  TrainOptions o = QuickTrain(10);
  o.device = "cpu";
  auto sa = a->Train(ToyData(200, 2), o);
  ASSERT_TRUE(sa.ok()) << sa.status();
  EXPECT_EQ(sa->device, "cpu");
  EXPECT_EQ(sa->precision, "fp32");  // auto: fp32 on a CPU
  EXPECT_FALSE(sa->ToJson().contains("device"));  // stored reports keep the defaults implicit
  ASSERT_TRUE(b->Train(ToyData(200, 2), QuickTrain(10)).ok());
  EXPECT_EQ(a->ToBytes(), b->ToBytes());
  EXPECT_EQ(a->device(), "cpu");
  if (CudaDeviceCount() == 0) {
    auto m = FlowModel::Create(ToyConfig(), 1, "auto");
    ASSERT_TRUE(m.ok());
    EXPECT_EQ((*m)->device(), "cpu");
  }
}

TEST(FlowModelDeviceTest, Bf16TrainingLearnsAndKeepsFp32Weights) {
  auto fp = MakeModel(ToyConfig()), bf = MakeModel(ToyConfig());
  const auto data = ToyData(1000, 3);
  TrainOptions o = QuickTrain(60);
  auto sf = fp->Train(data, o);
  o.precision = "bf16";
  auto sb = bf->Train(data, o);
  ASSERT_TRUE(sf.ok()) << sf.status();
  ASSERT_TRUE(sb.ok()) << sb.status();
  EXPECT_EQ(sb->precision, "bf16");
  EXPECT_EQ(sb->ToJson().value("precision", ""), "bf16");
  EXPECT_LT(sb->final_loss, 0.7 * sb->first_loss);
  // Same data and seed: bf16 products cost little accuracy.
  EXPECT_NEAR(sb->final_loss, sf->final_loss, 0.1 * sf->final_loss);
  auto held = ToyData(300, 4);
  EXPECT_NEAR(*bf->Loss(held), *fp->Loss(held), 0.1 * *fp->Loss(held));
  // The model is still float32 after training: a checkpoint round-trips and
  // a delta of a bf16 fine-tune applies on the parent.
  auto back = FlowModel::FromBytes(bf->ToBytes(), "bf16 model");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ((*back)->ToBytes(), bf->ToBytes());
  auto parent = bf->Clone().value();
  TrainOptions lo = QuickTrain(20);
  lo.precision = "bf16";
  lo.lora_rank = 2;
  ASSERT_TRUE(bf->Train(ToyData(300, 5, 2), lo).ok());
  auto d = bf->ExportDelta(DeltaOptions());
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE(parent->ApplyDelta(*d, "bf16 delta").ok());
  o.precision = "fp16";
  EXPECT_EQ(fp->Train(data, o).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace dgc::model
