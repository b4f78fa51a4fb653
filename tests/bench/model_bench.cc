// dgc-model-bench: what the model costs, so the defaults (width, depth,
// adapter rank and targets, tied head, threads, sampling batch) are chosen by
// measurement. A timed driver, not Google Benchmark: each row is one
// training run, one sampling run and four fine-tunes, too slow to repeat.
//
// The data is synthetic but flow-shaped (see FlowishGrammar): a header of
// protocol, source-port class, destination port and packet count, then a size
// and a gap token per packet. A "chunk" variant shifts the port and size
// distributions, which is what a per-chunk delta has to learn.
//
//   dgc-model-bench                      # the full table (a few minutes)
//   dgc-model-bench --widths=64 --depths=2 --extras=0
//   dgc-model-bench --device=cuda        # the same on a GPU (a CUDA libtorch build)
//   dgc-model-bench --compare=cpu,cuda   # one chunk's compression on each device, side by side:
//                                        # tok/s, seconds per million packets, fidelity (step 7)
//   dgc-model-bench --compare=cpu --ranks=2 --precision=fp32   # data-parallel over Gloo
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "common/model/distributed.h"
#include "common/model/flow_model.h"

namespace dgc::model {
namespace {

// Token ranges of the flow-shaped grammar.
constexpr Token kProto = 3;
constexpr int kProtos = 3;
constexpr Token kSport = kProto + kProtos;
constexpr int kSports = 64;
constexpr Token kDport = kSport + kSports;
constexpr int kDports = 256;
constexpr Token kCount = kDport + kDports;
constexpr int kMaxPackets = 16;
constexpr Token kSize = kCount + kMaxPackets;
constexpr int kSizes = 256;
constexpr Token kGap = kSize + kSizes;
constexpr int kGaps = 64;
constexpr int32_t kVocab = kGap + kGaps;                 // 662
constexpr int32_t kMaxLength = 1 + 4 + 2 * kMaxPackets + 1;  // 38

// State: step counts tokens after kBos; a = packet count.
class FlowishGrammar : public Grammar {
 public:
  int32_t vocab_size() const override { return kVocab; }
  int32_t max_length() const override { return kMaxLength; }
  GrammarState Start() const override { return GrammarState(); }
  TokenRange Allowed(const GrammarState& s) const override {
    switch (s.step) {
      case 0: return {kProto, kProto + kProtos};
      case 1: return {kSport, kSport + kSports};
      case 2: return {kDport, kDport + kDports};
      case 3: return {kCount, kCount + kMaxPackets};
      default: break;
    }
    const int k = s.step - 4;
    if (k >= 2 * s.a) return {kEos, kEos + 1};
    return k % 2 == 0 ? TokenRange{kSize, kSize + kSizes} : TokenRange{kGap, kGap + kGaps};
  }
  void Advance(GrammarState* s, Token t) const override {
    if (s->step == 3) s->a = t - kCount + 1;
    if (t == kEos) s->done = true;
    ++s->step;
  }
};

// Flows with structure a model can learn: the destination port is Zipf
// distributed (its popularity order permuted by `variant`), and it sets the
// protocol tendency, the packet count and the packet sizes.
std::vector<std::vector<Token>> FlowData(int n, uint64_t seed, int variant) {
  std::mt19937_64 rng(seed * 1000003 + variant);
  std::vector<double> zipf(kDports);
  for (int i = 0; i < kDports; ++i) zipf[i] = 1.0 / (i + 1);
  std::discrete_distribution<int> port_rank(zipf.begin(), zipf.end());
  std::vector<int> perm(kDports);
  for (int i = 0; i < kDports; ++i) perm[i] = i;
  std::mt19937_64 prng(77 + variant);
  // A variant swaps a third of the popular ports for others.
  for (int i = 0; i < 24; i += 3) std::swap(perm[i], perm[40 + (prng() % 200)]);
  std::uniform_int_distribution<int> sport(0, kSports - 1);
  std::normal_distribution<double> noise(0, 1);
  std::vector<std::vector<Token>> out;
  out.reserve(n);
  for (int f = 0; f < n; ++f) {
    const int port = perm[port_rank(rng)];
    const uint64_t h = (port * 0x9e3779b97f4a7c15ULL) >> 32;
    const int proto = (h % 10) < 6 ? 0 : (h % 10) < 9 ? 1 : 2;
    const int count = 1 + std::min<int>(kMaxPackets - 1, std::geometric_distribution<int>(
                                                             1.0 / (2 + h % 6 + variant % 2))(rng));
    const int size_mode = static_cast<int>((h >> 8) % kSizes + 17 * variant) % kSizes;
    std::vector<Token> s = {kBos, kProto + proto, kSport + sport(rng), kDport + port,
                            kCount + count - 1};
    for (int p = 0; p < count; ++p) {
      int size = p % 2 == 0 ? size_mode : (size_mode / 4 + static_cast<int>(2 * noise(rng)));
      s.push_back(kSize + std::clamp(size, 0, kSizes - 1));
      s.push_back(kGap + std::min<int>(kGaps - 1, std::geometric_distribution<int>(0.3)(rng)));
    }
    s.push_back(kEos);
    out.push_back(std::move(s));
  }
  return out;
}

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

template <typename T>
T Must(StatusOr<T> v, const char* what) {
  if (!v.ok()) {
    std::fprintf(stderr, "%s: %s\n", what, std::string(v.status().message()).c_str());
    std::exit(1);
  }
  return std::move(v).value();
}

struct Flags {
  std::vector<int> widths = {32, 64, 128};
  std::vector<int> depths = {1, 2, 3};
  double train_seconds = 600;  // base training budget per config (steps decide by default)
  int train_steps = 400;
  int finetune_steps = 60;
  int sample_flows = 4096;
  int sample_batch = 2048;
  int sample_threads = 0;     // SampleOptions::threads (0: the usable CPUs on a CPU)
  bool extras = true;         // the W=64/D=2 sections after the table
  std::string device = "cpu"; // cpu, cuda, cuda:N, auto
  std::string precision = "auto";  // TrainOptions::precision: auto, fp32, bf16
  std::vector<std::string> compare;  // devices for the side-by-side compression table
  int ranks = 1;               // data-parallel ranks (threads) of the compare fine-tune
  int chunk_flows = 20000;     // flows of the compared chunk
  int check_flows = 4096;      // flows regenerated for its fidelity check
};

std::vector<int> ParseList(const char* s) {
  std::vector<int> v;
  for (const char* p = s; *p;) {
    v.push_back(std::atoi(p));
    while (*p && *p != ',') ++p;
    if (*p == ',') ++p;
  }
  return v;
}

NetworkConfig Config(int width, int depth, bool tied = true) {
  NetworkConfig c;
  c.vocab_size = kVocab;
  c.max_length = kMaxLength;
  c.width = width;
  c.depth = depth;
  c.heads = 4;
  c.tie_embeddings = tied;
  return c;
}

TrainOptions BaseTrain(const Flags& f) {
  TrainOptions o;
  o.max_steps = f.train_steps;
  o.max_seconds = f.train_seconds;
  o.batch_size = 64;
  o.learning_rate = 3e-3;
  o.precision = f.precision;
  return o;
}

TrainOptions FineTune(const Flags& f, int rank) {
  TrainOptions o;
  o.max_steps = f.finetune_steps;
  o.max_seconds = 60;
  o.batch_size = 64;
  o.learning_rate = rank > 0 ? 1e-2 : 2e-3;
  o.lora_rank = rank;
  o.seed = 5;
  o.precision = f.precision;
  return o;
}

// Generated tokens per second (prefix kBos not counted).
double SampleRate(FlowModel* m, int flows, int batch, uint64_t seed = 1) {
  FlowishGrammar g;
  std::vector<std::vector<Token>> prefixes(flows, {kBos});
  SampleOptions o;
  o.batch_size = batch;
  o.seed = seed;
  double t0 = Now();
  auto out = Must(m->Sample(prefixes, g, o), "sample");
  double dt = Now() - t0;
  int64_t tokens = 0;
  for (const auto& s : out) tokens += static_cast<int64_t>(s.size()) - 1;
  return tokens / dt;
}

struct DeltaResult {
  size_t bytes = 0;
  double loss = 0;     // held-out loss on the new chunk after fine-tuning
  double seconds = 0;
};

DeltaResult MeasureDelta(const FlowModel& base, const TrainOptions& o,
                         const std::vector<std::vector<Token>>& chunk,
                         const std::vector<std::vector<Token>>& held_out) {
  auto m = Must(base.Clone(), "clone");
  DeltaResult r;
  double t0 = Now();
  Must(m->Train(chunk, o), "fine-tune");
  r.seconds = Now() - t0;
  std::string delta = Must(m->ExportDelta(DeltaOptions()), "export");
  r.bytes = delta.size();
  // The loss a decoder gets: the parent with the quantised delta applied.
  auto dec = Must(base.Clone(), "clone");
  Status st = dec->ApplyDelta(delta, "bench");
  if (!st.ok()) {
    std::fprintf(stderr, "apply: %s\n", std::string(st.message()).c_str());
    std::exit(1);
  }
  r.loss = Must(dec->Loss(held_out), "loss");
  return r;
}

// True when `seq` is a complete sentence of the grammar.
bool Accepts(const Grammar& g, const std::vector<Token>& seq) {
  if (seq.empty() || seq[0] != kBos || static_cast<int>(seq.size()) > g.max_length()) return false;
  GrammarState s = g.Start();
  for (size_t i = 1; i < seq.size(); ++i) {
    if (s.done || !g.Allowed(s).Contains(seq[i])) return false;
    g.Advance(&s, seq[i]);
  }
  return s.done;
}

// The checks that matter on a new device, before any timing: incremental
// (KV-cached) logits equal the full forward pass, and every sampled flow
// decodes under the grammar.
void Check(const Flags& f, const std::vector<std::vector<Token>>& data) {
  auto m = Must(FlowModel::Create(Config(64, 2), 1, f.device), "create");
  TrainOptions o = BaseTrain(f);
  o.max_steps = 30;
  Must(m->Train(data, o), "train");
  std::vector<std::vector<Token>> seqs(data.begin(), data.begin() + 64);
  auto full = Must(m->Logits(seqs, false), "logits");
  auto inc = Must(m->Logits(seqs, true), "logits");
  double diff = 0;
  for (size_t i = 0; i < full.size(); ++i) {
    for (size_t j = 0; j < full[i].size(); ++j) diff = std::max(diff, std::fabs(double(full[i][j]) - inc[i][j]));
  }
  FlowishGrammar g;
  SampleOptions so;
  so.batch_size = 512;
  auto out = Must(m->Sample(std::vector<std::vector<Token>>(2000, {kBos}), g, so), "sample");
  int bad = 0;
  for (const auto& s : out) bad += !Accepts(g, s);
  std::printf("# check on %s: KV-cached vs full logits max |diff| %.2e (must be < 1e-4), %d of %zu samples "
              "rejected by the grammar (must be 0)\n",
              f.device.c_str(), diff, bad, out.size());
  if (diff >= 1e-4 || bad != 0) std::exit(1);
  if (f.device != "cpu") {
    // A delta made on this device applies on a CPU copy of the parent, and
    // the encoder's adopted model equals the CPU decoder's bit for bit.
    auto parent_cpu = Must(FlowModel::FromBytes(m->ToBytes(), "parent", "cpu"), "to cpu");
    auto child = Must(m->Clone(), "clone");
    TrainOptions lo = BaseTrain(f);
    lo.max_steps = 20;
    lo.lora_rank = 4;
    Must(child->Train(data, lo), "lora");
    std::string delta = Must(child->ExportDelta(DeltaOptions()), "export");
    auto rebuilt = Must(parent_cpu->Clone(), "clone");
    Status a = rebuilt->ApplyDelta(delta, "delta"), b = child->AdoptDelta(delta, "delta");
    const bool same = a.ok() && b.ok() && rebuilt->ToBytes() == child->ToBytes();
    std::printf("# check: %s delta applied on cpu: %s\n", f.device.c_str(),
                same ? "bit-identical to the encoder's model" : "MISMATCH");
    if (!same) std::exit(1);
  }
}

// ---------------------------------------------------------------------------
// Side by side on devices (--compare): the work of compressing one chunk.

// Jensen-Shannon distance (base 2, in [0, 1]) of two histograms.
double Jsd(const std::map<int, double>& a, const std::map<int, double>& b) {
  double na = 0, nb = 0;
  for (auto& [k, v] : a) na += v;
  for (auto& [k, v] : b) nb += v;
  if (na == 0 || nb == 0) return 1;
  std::map<int, std::pair<double, double>> all;
  for (auto& [k, v] : a) all[k].first = v / na;
  for (auto& [k, v] : b) all[k].second = v / nb;
  double js = 0;
  for (auto& [k, pq] : all) {
    const double m = 0.5 * (pq.first + pq.second);
    if (pq.first > 0) js += 0.5 * pq.first * std::log2(pq.first / m);
    if (pq.second > 0) js += 0.5 * pq.second * std::log2(pq.second / m);
  }
  return std::sqrt(std::max(0.0, js));
}

// Fidelity of generated flows to real ones: mean JSD over the grammar's
// fields (protocol, source-port class, destination port, packet count,
// packet sizes, gaps): the bench's stand-in for the 17 metrics of `eval`.
double Fidelity(const std::vector<std::vector<Token>>& real, const std::vector<std::vector<Token>>& synth) {
  auto hist = [](const std::vector<std::vector<Token>>& flows) {
    std::vector<std::map<int, double>> h(6);
    for (const auto& s : flows) {
      for (size_t i = 1; i < s.size() && s[i] != kEos; ++i) {
        const int field = i <= 4 ? static_cast<int>(i) - 1 : (i % 2 == 1 ? 4 : 5);
        h[field][s[i]] += 1;
      }
    }
    return h;
  };
  auto a = hist(real), b = hist(synth);
  double sum = 0;
  for (int k = 0; k < 6; ++k) sum += Jsd(a[k], b[k]);
  return sum / 6;
}

int64_t Packets(const std::vector<std::vector<Token>>& flows) {
  int64_t n = 0;
  for (const auto& s : flows) n += (static_cast<int64_t>(s.size()) - 6) / 2;
  return n;
}

struct DeviceRow {
  std::string device, precision;
  double base_tok_s = 0, finetune_tok_s = 0, finetune_s = 0, sample_tok_s = 0, check_s = 0;
  double s_per_mpkt = 0, fidelity = 0;
  int world = 1;
  std::string backend = "-";
};

// Fine-tunes `base` on `chunk` with f.ranks data-parallel ranks (threads,
// model::TrainOnDevices: Gloo or NCCL over a store on a port the system
// picks); returns rank 0's model and stats.
std::unique_ptr<FlowModel> FineTuneRanks(const Flags& f, const FlowModel& base, const std::string& device,
                                         const std::vector<std::vector<Token>>& chunk, TrainOptions o,
                                         TrainStats* stats, DeviceRow* row) {
  auto m = Must(base.Clone(), "clone");
  if (f.ranks <= 1) {
    *stats = Must(m->Train(chunk, o), "fine-tune");
    return m;
  }
  std::vector<std::string> devices;
  for (int r = 0; r < f.ranks; ++r) devices.push_back(device == "cpu" ? "cpu" : "cuda:" + std::to_string(r));
  row->backend = device != "cpu" && BackendAvailable("nccl") ? "nccl" : "gloo";
  *stats = Must(TrainOnDevices(*m, chunk, o, devices, 120), "data-parallel fine-tune");
  return m;
}

DeviceRow CompareOn(const Flags& f, const std::string& device, const std::vector<std::vector<Token>>& base_data,
                    const std::vector<std::vector<Token>>& chunk, const std::vector<std::vector<Token>>& real) {
  DeviceRow row;
  auto base = Must(FlowModel::Create(Config(64, 2), 1, device), "create");
  row.device = base->device();
  TrainStats bs = Must(base->Train(base_data, BaseTrain(f)), "base");
  row.base_tok_s = bs.tokens_per_second;
  row.precision = bs.precision;
  // Compressing a chunk: fine-tune adapters (dgcctl compress defaults:
  // rank 4, 60 steps), export the delta, rebuild parent + delta, regenerate
  // the check window.
  TrainOptions o = FineTune(f, 4);
  TrainStats fs;
  const double t0 = Now();
  auto tuned = FineTuneRanks(f, *base, device, chunk, o, &fs, &row);
  std::string delta = Must(tuned->ExportDelta(DeltaOptions()), "export");
  auto rebuilt = Must(base->Clone(), "clone");
  Status st = rebuilt->ApplyDelta(delta, "compare");
  if (!st.ok()) {
    std::fprintf(stderr, "apply: %s\n", std::string(st.message()).c_str());
    std::exit(1);
  }
  row.finetune_s = Now() - t0;
  row.finetune_tok_s = fs.tokens_per_second;
  row.world = fs.world_size;
  FlowishGrammar g;
  SampleOptions so;
  so.batch_size = f.sample_batch;
  so.threads = f.sample_threads;
  so.seed = 3;
  const double t1 = Now();
  auto synth = Must(rebuilt->Sample(std::vector<std::vector<Token>>(f.check_flows, {kBos}), g, so), "sample");
  row.check_s = Now() - t1;
  int64_t tokens = 0;
  for (const auto& s : synth) tokens += static_cast<int64_t>(s.size()) - 1;
  row.sample_tok_s = tokens / row.check_s;
  row.fidelity = Fidelity(real, synth);
  row.s_per_mpkt = (row.finetune_s + row.check_s) / static_cast<double>(Packets(chunk)) * 1e6;
  return row;
}

int Compare(const Flags& f) {
  std::string devices;
  for (const auto& d : f.compare) devices += (devices.empty() ? "" : ",") + d;
  std::printf("# %s\n# devices: %s; CUDA build %s, %d GPU(s)\n", CpuBackendInfo().c_str(), devices.c_str(),
              CudaBuild() ? "yes" : "no", CudaDeviceCount());
  auto base_data = FlowData(20000, 1, 0);
  auto chunk = FlowData(f.chunk_flows, 2, 1);
  auto real = FlowData(f.check_flows, 3, 1);  // held-out flows of the same chunk
  std::printf("# chunk: %d flows, %lld packets; base W=64 D=2 trained %d steps; fine-tune rank 4, %d steps, "
              "batch 64, %d rank(s); check regenerates %d flows\n",
              f.chunk_flows, static_cast<long long>(Packets(chunk)), f.train_steps, f.finetune_steps, f.ranks,
              f.check_flows);
  std::vector<DeviceRow> rows;
  for (const auto& d : f.compare) rows.push_back(CompareOn(f, d, base_data, chunk, real));
  std::printf("\n| device | precision | ranks (backend) | base train tok/s | fine-tune tok/s | sample tok/s | "
              "chunk s (fine-tune + delta / check) | s per Mpkt | fidelity (mean JSD) |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|\n");
  for (const auto& r : rows) {
    std::printf("| %s | %s | %d (%s) | %.0f | %.0f | %.0f | %.2f / %.2f | %.1f | %.4f |\n", r.device.c_str(),
                r.precision.c_str(), r.world, r.backend.c_str(), r.base_tok_s, r.finetune_tok_s, r.sample_tok_s,
                r.finetune_s, r.check_s, r.s_per_mpkt, r.fidelity);
  }
  for (const auto& r : rows) {  // for scripts (tests/bench/gpu)
    std::printf("DGC_ROW device=%s precision=%s ranks=%d backend=%s base_tok_s=%.0f finetune_tok_s=%.0f "
                "sample_tok_s=%.0f s_per_mpkt=%.3f fidelity=%.4f\n",
                r.device.c_str(), r.precision.c_str(), r.world, r.backend.c_str(), r.base_tok_s, r.finetune_tok_s,
                r.sample_tok_s, r.s_per_mpkt, r.fidelity);
  }
  int rc = 0;
  if (rows.size() >= 2) {
    const double dfid = std::fabs(rows[1].fidelity - rows[0].fidelity);
    std::printf("\n# %s vs %s: %.1fx faster per Mpkt, fine-tune %.1fx tok/s, sample %.1fx tok/s; "
                "fidelity difference %.4f (must be <= 0.02): %s\n",
                rows[1].device.c_str(), rows[0].device.c_str(), rows[0].s_per_mpkt / rows[1].s_per_mpkt,
                rows[1].finetune_tok_s / rows[0].finetune_tok_s, rows[1].sample_tok_s / rows[0].sample_tok_s,
                dfid, dfid <= 0.02 ? "OK" : "FAIL");
    std::printf("DGC_COMPARE speedup=%.2f fidelity_diff=%.4f\n", rows[0].s_per_mpkt / rows[1].s_per_mpkt, dfid);
    if (dfid > 0.02) rc = 3;
  }
  return rc;
}

void Run(const Flags& f) {
  std::printf("# %s\n# 512x512 float matmul: %.1f GFLOP/s; device %s\n", CpuBackendInfo().c_str(),
              CpuMatmulGflops(512), f.device.c_str());
  std::printf("# data: flow-shaped toy grammar, vocab %d, max length %d; base trained %d steps or %.0f s "
              "(batch 64); fine-tune %d steps on a shifted chunk (2000 flows); sample %d flows at batch %d\n",
              kVocab, kMaxLength, f.train_steps, f.train_seconds, f.finetune_steps, f.sample_flows,
              f.sample_batch);
  auto base_data = FlowData(20000, 1, 0);
  Check(f, base_data);
  auto chunk = FlowData(2000, 2, 1);
  auto held_out = FlowData(2000, 3, 1);
  std::printf("\nDelta columns: bytes / held-out chunk loss after fine-tuning (TrainOptions defaults: all targets incl. emb and head_bias, trained A;"
              " full = lora_rank 0).\n");
  std::printf("\n| width | depth | heads | params | train tok/s | base loss | sample tok/s | chunk loss before"
              " | r2 bytes / loss | r4 bytes / loss | r8 bytes / loss | full bytes / loss |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (int w : f.widths) {
    for (int d : f.depths) {
      auto m = Must(FlowModel::Create(Config(w, d), 1, f.device), "create");
      TrainStats ts = Must(m->Train(base_data, BaseTrain(f)), "train");
      double base_loss = Must(m->Loss(FlowData(2000, 4, 0)), "loss");
      double sample = SampleRate(m.get(), f.sample_flows, f.sample_batch);
      double before = Must(m->Loss(held_out), "loss");
      std::printf("| %d | %d | %d | %lld | %.0f | %.3f | %.0f | %.3f |", w, d, 4,
                  static_cast<long long>(m->parameter_count()), ts.tokens_per_second, base_loss, sample,
                  before);
      for (int rank : {2, 4, 8, 0}) {
        DeltaResult r = MeasureDelta(*m, FineTune(f, rank), chunk, held_out);
        std::printf(" %zu / %.3f |", r.bytes, r.loss);
      }
      std::printf("\n");
      std::fflush(stdout);
    }
  }
  if (!f.extras) return;

  // --- W=64, D=2: the choices around the default.
  auto base = Must(FlowModel::Create(Config(64, 2), 1, f.device), "create");
  Must(base->Train(base_data, BaseTrain(f)), "train");
  const double before = Must(base->Loss(held_out), "loss");

  std::printf("\nAdapter targets and A storage (W=64 D=2, %d fine-tune steps; chunk loss before %.3f):\n",
              f.finetune_steps, before);
  std::printf("| rank | targets | A | delta bytes | chunk loss after | fine-tune s |\n|---|---|---|---|---|---|\n");
  struct Variant {
    int rank;
    std::vector<std::string> targets;
    bool train_a;
    const char* name;
  };
  const std::vector<std::string> all = {"q", "k", "v", "o", "mlp_in", "mlp_out"};
  const std::vector<std::string> hb = {"q", "k", "v", "o", "mlp_in", "mlp_out", "head_bias"};
  const std::vector<Variant> variants = {
      {4, all, true, "all"},
      {4, all, false, "all"},
      {4, {"q", "k", "v", "o"}, false, "attn"},
      {4, {"mlp_in", "mlp_out"}, false, "mlp"},
      {1, {"head_bias"}, false, "head_bias only"},
      {4, hb, false, "all+head_bias"},
      {4, {"q", "k", "v", "o", "mlp_in", "mlp_out", "emb", "head_bias"}, false, "all+emb+head_bias"},
      {4, {"q", "k", "v", "o", "mlp_in", "mlp_out", "emb", "head_bias"}, true, "all+emb+head_bias"},
      {4, {"emb", "head_bias"}, false, "emb+head_bias"},
      {4, {"q", "k", "v", "o", "emb", "head_bias"}, false, "attn+emb+head_bias"},
      {2, {"q", "k", "v", "o", "mlp_in", "mlp_out", "emb", "head_bias"}, false, "all+emb+head_bias"},
      {2, {"q", "k", "v", "o", "mlp_in", "mlp_out", "emb", "head_bias"}, true, "all+emb+head_bias"},
      {8, {"q", "k", "v", "o", "mlp_in", "mlp_out", "emb", "head_bias"}, false, "all+emb+head_bias"},
      {2, hb, false, "all+head_bias"},
      {8, hb, false, "all+head_bias"},
      {16, hb, false, "all+head_bias"},
  };
  for (const Variant& v : variants) {
    TrainOptions o = FineTune(f, v.rank);
    o.lora_targets = v.targets;
    o.lora_train_a = v.train_a;
    DeltaResult r = MeasureDelta(*base, o, chunk, held_out);
    std::printf("| %d | %s | %s | %zu | %.3f | %.2f |\n", v.rank, v.name, v.train_a ? "trained" : "seeded",
                r.bytes, r.loss, r.seconds);
  }
  std::printf("\nFine-tune steps (default targets):\n| steps | rank | A | delta bytes | chunk loss after | s |\n"
              "|---|---|---|---|---|---|\n");
  for (int steps : {30, 60, 120, 240}) {
    for (auto [rank, train_a] : {std::pair{2, true}, std::pair{4, false}, std::pair{4, true}}) {
      TrainOptions o = FineTune(f, rank);
      o.max_steps = steps;
      o.lora_train_a = train_a;
      DeltaResult r = MeasureDelta(*base, o, chunk, held_out);
      std::printf("| %d | %d | %s | %zu | %.3f | %.2f |\n", steps, rank, train_a ? "trained" : "seeded", r.bytes,
                  r.loss, r.seconds);
    }
  }
  {
    TrainOptions o = FineTune(f, 0);
    o.max_steps = 240;
    DeltaResult r = MeasureDelta(*base, o, chunk, held_out);
    std::printf("| 240 | full | - | %zu | %.3f | %.2f |\n", r.bytes, r.loss, r.seconds);
  }

  std::printf("\nTied vs untied output head (W=64 D=2):\n| head | params | train tok/s | base loss | full delta bytes | chunk loss after full |\n|---|---|---|---|---|---|\n");
  for (bool tied : {true, false}) {
    auto m = Must(FlowModel::Create(Config(64, 2, tied), 1, f.device), "create");
    TrainStats ts = Must(m->Train(base_data, BaseTrain(f)), "train");
    double loss = Must(m->Loss(FlowData(2000, 4, 0)), "loss");
    DeltaResult r = MeasureDelta(*m, FineTune(f, 0), chunk, held_out);
    std::printf("| %s | %lld | %.0f | %.3f | %zu | %.3f |\n", tied ? "tied" : "untied",
                static_cast<long long>(m->parameter_count()), ts.tokens_per_second, loss, r.bytes, r.loss);
  }

  std::printf("\nSampling batch size (W=64 D=2):\n| batch | tok/s |\n|---|---|\n");
  for (int b : {256, 1024, 2048, 4096}) {
    std::printf("| %d | %.0f |\n", b, SampleRate(base.get(), std::max(4096, 2 * b), b));
  }

  if (f.device != "cpu") return;
  std::printf("\nTorch intra-op threads (W=64 D=2; OpenBLAS threads unchanged):\n"
              "| torch threads | train tok/s | sample tok/s | 512 matmul GFLOP/s |\n|---|---|---|---|\n");
  for (int threads : {1, 2}) {
    ConfigureCpuThreads(threads);
    auto m = Must(FlowModel::Create(Config(64, 2), 1, f.device), "create");
    TrainOptions o = BaseTrain(f);
    o.max_steps = 60;
    TrainStats ts = Must(m->Train(base_data, o), "train");
    std::printf("| %d | %.0f | %.0f | %.1f |\n", threads, ts.tokens_per_second,
                SampleRate(m.get(), f.sample_flows, f.sample_batch), CpuMatmulGflops(512));
  }
  ConfigureCpuThreads(1);
}

}  // namespace
}  // namespace dgc::model

int main(int argc, char** argv) {
  using dgc::model::Flags;
  Flags f;
  for (int i = 1; i < argc; ++i) {
    const char* a = argv[i];
    auto val = [&](const char* name) -> const char* {
      size_t n = std::strlen(name);
      return std::strncmp(a, name, n) == 0 && a[n] == '=' ? a + n + 1 : nullptr;
    };
    if (const char* v = val("--widths")) {
      f.widths = dgc::model::ParseList(v);
    } else if (const char* v = val("--depths")) {
      f.depths = dgc::model::ParseList(v);
    } else if (const char* v = val("--train-seconds")) {
      f.train_seconds = std::atof(v);
    } else if (const char* v = val("--train-steps")) {
      f.train_steps = std::atoi(v);
    } else if (const char* v = val("--finetune-steps")) {
      f.finetune_steps = std::atoi(v);
    } else if (const char* v = val("--sample-flows")) {
      f.sample_flows = std::atoi(v);
    } else if (const char* v = val("--sample-batch")) {
      f.sample_batch = std::atoi(v);
    } else if (const char* v = val("--sample-threads")) {
      f.sample_threads = std::atoi(v);
    } else if (const char* v = val("--extras")) {
      f.extras = std::atoi(v) != 0;
    } else if (const char* v = val("--device")) {
      f.device = v;
    } else if (const char* v = val("--precision")) {
      f.precision = v;
    } else if (const char* v = val("--compare")) {
      for (const char* p = v; *p;) {
        const char* e = std::strchr(p, ',');
        f.compare.emplace_back(p, e ? e - p : std::strlen(p));
        p = e ? e + 1 : p + std::strlen(p);
      }
    } else if (const char* v = val("--ranks")) {
      f.ranks = std::max(1, std::atoi(v));
    } else if (const char* v = val("--chunk-flows")) {
      f.chunk_flows = std::atoi(v);
    } else if (const char* v = val("--check-flows")) {
      f.check_flows = std::atoi(v);
    } else {
      std::fprintf(stderr,
                   "usage: %s [--widths=32,64,128] [--depths=1,2,3] [--train-seconds=8] [--train-steps=400]\n"
                   "          [--finetune-steps=60] [--sample-flows=4096] [--sample-batch=2048] [--sample-threads=0] [--extras=1]\n"
                   "          [--device=cpu|cuda|cuda:N|auto] [--precision=auto|fp32|bf16]\n"
                   "          [--compare=cpu,cuda [--ranks=N] [--chunk-flows=20000] [--check-flows=4096]]\n",
                   argv[0]);
      return 2;
    }
  }
  dgc::model::ConfigureCpuThreads();
  if (!f.compare.empty()) return dgc::model::Compare(f);
  dgc::model::Run(f);
  return 0;
}
