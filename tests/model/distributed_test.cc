// Data-parallel training (common/model/distributed.h) over Gloo: ranks run
// as threads in this process and meet over real loopback sockets (a TCP store
// on a port the system picks, or a file store in a temp dir). Two ranks must
// end with the model one rank makes from the same global batches and seed.
#include "common/model/distributed.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <thread>

#include "common/model/flow_model.h"
#include "gtest/gtest.h"
#include "tests/testutil/testutil.h"

namespace dgc::model {
namespace {

// Sequences of a toy language: kBos, a type t in [3, 7), 2-4 values from
// the type's range, kEos (different lengths, so shards differ in tokens).
constexpr int32_t kVocab = 3 + 4 + 4 * 8;
constexpr int32_t kMaxLen = 8;

std::vector<std::vector<Token>> Data(int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::vector<Token>> out;
  for (int i = 0; i < n; ++i) {
    const int t = static_cast<int>(rng() % 4);
    std::vector<Token> s = {kBos, static_cast<Token>(3 + t)};
    const int v = static_cast<int>(rng() % 8);
    for (int j = 0; j < 2 + t % 3; ++j) s.push_back(static_cast<Token>(7 + t * 8 + (v + j) % 8));
    s.push_back(kEos);
    out.push_back(std::move(s));
  }
  return out;
}

NetworkConfig Config() {
  NetworkConfig c;
  c.vocab_size = kVocab;
  c.max_length = kMaxLen;
  c.width = 32;
  c.depth = 2;
  c.heads = 4;
  return c;
}

TrainOptions Options(int lora_rank) {
  TrainOptions o;
  o.max_steps = 25;
  o.max_seconds = 60;
  o.batch_size = 24;  // 12 sequences a rank
  o.learning_rate = 3e-3;
  o.lora_rank = lora_rank;
  o.seed = 11;
  o.precision = "fp32";
  return o;
}

// The float weights of a .dgcm checkpoint (MODEL_FORMATS.md), in order.
std::vector<float> Weights(const std::string& bytes) {
  std::vector<float> w;
  size_t p = 8 + 4;
  auto get32 = [&]() {
    uint32_t v;
    std::memcpy(&v, bytes.data() + p, 4);
    p += 4;
    return v;
  };
  const uint32_t json = get32();
  p += json;
  const uint32_t count = get32();
  for (uint32_t i = 0; i < count; ++i) {
    uint16_t nlen;
    std::memcpy(&nlen, bytes.data() + p, 2);
    p += 2 + nlen;
    const uint8_t ndim = static_cast<uint8_t>(bytes[p++]);
    size_t numel = 1;
    for (int d = 0; d < ndim; ++d) numel *= get32();
    const size_t at = w.size();
    w.resize(at + numel);
    std::memcpy(w.data() + at, bytes.data() + p, numel * 4);
    p += numel * 4;
  }
  EXPECT_EQ(p + 8, bytes.size());
  return w;
}

// max |a - b| / max |a|: the weights' error relative to their scale.
double RelativeDiff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    diff = std::max(diff, std::fabs(double(a[i]) - b[i]));
    scale = std::max(scale, std::fabs(double(a[i])));
  }
  return diff / std::max(scale, 1e-30);
}

struct RankResult {
  Status status;
  std::string bytes;
  std::string delta;
  TrainStats stats;
};

// Trains one fresh model (seed 7) on `data` in each of `world` rank threads.
std::vector<RankResult> RunRanks(int world, const std::function<DistributedOptions(int)>& make_options,
                                 const std::vector<std::vector<Token>>& data, const TrainOptions& train) {
  std::vector<RankResult> results(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r]() {
      RankResult& out = results[r];
      auto group = DataParallelGroup::Create(make_options(r));
      if (!group.ok()) {
        out.status = group.status();
        return;
      }
      auto m = FlowModel::Create(Config(), 7);
      if (!m.ok()) {
        out.status = m.status();
        return;
      }
      TrainOptions o = train;
      o.data_parallel = group->get();
      auto st = (*m)->Train(data, o);
      if (!st.ok()) {
        out.status = st.status();
        return;
      }
      out.stats = *st;
      out.bytes = (*m)->ToBytes();
      auto d = (*m)->ExportDelta({});
      out.status = d.status();
      if (d.ok()) out.delta = *d;
    });
  }
  for (auto& t : threads) t.join();
  return results;
}

std::string OneRank(const std::vector<std::vector<Token>>& data, const TrainOptions& train, TrainStats* stats) {
  auto m = FlowModel::Create(Config(), 7);
  EXPECT_TRUE(m.ok()) << m.status();
  auto st = (*m)->Train(data, train);
  EXPECT_TRUE(st.ok()) << st.status();
  if (st.ok()) *stats = *st;
  return (*m)->ToBytes();
}

class DistributedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The build requires Gloo unless configured with -DDGC_WITH_GLOO=OFF.
    ASSERT_TRUE(BackendAvailable("gloo")) << "this build has no Gloo backend (apt install libgloo-dev)";
    ConfigureCpuThreads(1);
  }
  // Ranks that meet at a store server on a port the system chose.
  std::function<DistributedOptions(int)> TcpRanks(int world) {
    auto server = StoreServer::Start("127.0.0.1", 0, 20);
    EXPECT_TRUE(server.ok()) << server.status();
    server_ = std::move(server).value();
    const int port = server_->port();
    EXPECT_GT(port, 0);
    return [port, world](int r) {
      DistributedOptions o;
      o.rank = r;
      o.world_size = world;
      o.backend = "gloo";
      o.store_port = port;
      o.host_store = false;
      o.timeout_seconds = 20;
      return o;
    };
  }
  std::unique_ptr<StoreServer> server_;
};

TEST_F(DistributedTest, TwoRanksMatchOneRankFullTraining) {
  const auto data = Data(300, 5);
  TrainOptions o = Options(/*lora_rank=*/0);
  TrainStats one_stats;
  const std::vector<float> one = Weights(OneRank(data, o, &one_stats));
  auto ranks = RunRanks(2, TcpRanks(2), data, o);
  for (const auto& r : ranks) ASSERT_TRUE(r.status.ok()) << r.status;
  // The ranks apply the same summed gradient: identical bits.
  EXPECT_EQ(ranks[0].bytes, ranks[1].bytes);
  EXPECT_EQ(ranks[0].delta, ranks[1].delta);
  const double rel = RelativeDiff(one, Weights(ranks[0].bytes));
  EXPECT_LT(rel, 1e-5) << "two ranks drifted from one rank";
  EXPECT_EQ(ranks[0].stats.steps, one_stats.steps);
  EXPECT_EQ(ranks[0].stats.tokens, one_stats.tokens);  // the global batches
  EXPECT_EQ(ranks[0].stats.world_size, 2);
  EXPECT_NEAR(ranks[0].stats.final_loss, one_stats.final_loss, 1e-4 * one_stats.final_loss);
  EXPECT_NEAR(ranks[0].stats.first_loss, one_stats.first_loss, 1e-5 * one_stats.first_loss);
  EXPECT_LT(one_stats.final_loss, one_stats.first_loss);
  std::printf("full training: max relative weight difference, 2 ranks vs 1: %.3g\n", rel);
}

TEST_F(DistributedTest, TwoRanksMatchOneRankLoraOverFileStore) {
  const auto data = Data(300, 6);
  TrainOptions o = Options(/*lora_rank=*/4);
  TrainStats one_stats;
  auto one_model = FlowModel::Create(Config(), 7);
  ASSERT_TRUE(one_model.ok());
  ASSERT_TRUE((*one_model)->Train(data, o).ok());
  const std::vector<float> one = Weights((*one_model)->ToBytes());
  dgc::testing::TempDir dir;
  const std::string store = dir.File("store");
  auto ranks = RunRanks(
      2,
      [&](int r) {
        DistributedOptions d;
        d.rank = r;
        d.world_size = 2;
        d.backend = "gloo";
        d.file_store_path = store;
        d.timeout_seconds = 20;
        return d;
      },
      data, o);
  for (const auto& r : ranks) ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(ranks[0].bytes, ranks[1].bytes);
  const double rel = RelativeDiff(one, Weights(ranks[0].bytes));
  EXPECT_LT(rel, 1e-5);
  // The delta of a data-parallel fine-tune applies to the parent like any other.
  auto parent = FlowModel::Create(Config(), 7);
  ASSERT_TRUE(parent.ok());
  ASSERT_TRUE((*parent)->ApplyDelta(ranks[0].delta, "dp delta").ok());
  std::printf("lora: max relative weight difference, 2 ranks vs 1: %.3g\n", rel);
}

TEST_F(DistributedTest, ThreeRanksWithASmallBatchStillAgree) {
  // A batch of 2 across 3 ranks: rank 2 holds no sequence each step and
  // still takes part in every all-reduce.
  const auto data = Data(50, 8);
  TrainOptions o = Options(0);
  o.batch_size = 2;
  o.max_steps = 8;
  TrainStats one_stats;
  const std::vector<float> one = Weights(OneRank(data, o, &one_stats));
  auto ranks = RunRanks(3, TcpRanks(3), data, o);
  for (const auto& r : ranks) ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(ranks[0].bytes, ranks[2].bytes);
  EXPECT_LT(RelativeDiff(one, Weights(ranks[1].bytes)), 1e-5);
}

TEST_F(DistributedTest, RanksStopTogetherWhenTimeIsUp) {
  const auto data = Data(100, 9);
  TrainOptions o = Options(0);
  o.max_steps = 1000;
  o.max_seconds = 0;  // every rank's budget is spent after the first step
  auto ranks = RunRanks(2, TcpRanks(2), data, o);
  for (const auto& r : ranks) ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(ranks[0].stats.steps, 1);
  EXPECT_EQ(ranks[1].stats.steps, 1);
  EXPECT_EQ(ranks[0].bytes, ranks[1].bytes);
}

TEST_F(DistributedTest, RankZeroWeightsAreBroadcastFirst) {
  // Rank 1 starts from another init; after training both hold the same model.
  const auto data = Data(100, 10);
  TrainOptions o = Options(0);
  o.max_steps = 3;
  auto opts = TcpRanks(2);
  std::vector<std::string> bytes(2);
  std::vector<Status> status(2);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r]() {
      auto g = DataParallelGroup::Create(opts(r));
      if (!g.ok()) {
        status[r] = g.status();
        return;
      }
      auto m = FlowModel::Create(Config(), r == 0 ? 7 : 99);
      TrainOptions t = o;
      t.data_parallel = g->get();
      status[r] = (*m)->Train(data, t).status();
      bytes[r] = (*m)->ToBytes();
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_TRUE(status[0].ok()) << status[0];
  ASSERT_TRUE(status[1].ok()) << status[1];
  EXPECT_EQ(bytes[0], bytes[1]);
}

TEST_F(DistributedTest, MissingRankTimesOut) {
  auto opts = TcpRanks(2);
  DistributedOptions o = opts(0);
  o.timeout_seconds = 1.5;
  auto g = DataParallelGroup::Create(o);  // rank 1 never comes
  ASSERT_FALSE(g.ok());
  EXPECT_TRUE(g.status().code() == absl::StatusCode::kDeadlineExceeded ||
              g.status().code() == absl::StatusCode::kUnavailable)
      << g.status();
}

TEST(DistributedOptionsTest, BadOptionsAreErrors) {
  DistributedOptions o;
  o.rank = 2;
  o.world_size = 2;
  EXPECT_EQ(DataParallelGroup::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.rank = 0;
  o.backend = "mpi";
  o.store_port = 1;
  EXPECT_EQ(DataParallelGroup::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.backend = "nccl";
  o.device = "cpu";
  auto nccl = DataParallelGroup::Create(o);
  EXPECT_FALSE(nccl.ok());  // no NCCL in a CPU build; NCCL on a CPU device is refused anyway
  o.backend = "gloo";
  o.store_port = 0;  // no port and no file store
  if (BackendAvailable("gloo")) {
    EXPECT_EQ(DataParallelGroup::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
  }
}

TEST(DistributedOptionsTest, OneRankGroupTrainsLikeNoGroup) {
  ASSERT_TRUE(BackendAvailable("gloo")) << "this build has no Gloo backend (apt install libgloo-dev)";
  dgc::testing::TempDir dir;
  DistributedOptions d;
  d.world_size = 1;
  d.backend = "gloo";
  d.file_store_path = dir.File("store1");
  auto g = DataParallelGroup::Create(d);
  ASSERT_TRUE(g.ok()) << g.status();
  const auto data = Data(100, 12);
  TrainOptions o = Options(0);
  o.max_steps = 5;
  TrainStats s;
  const std::string plain = OneRank(data, o, &s);
  o.data_parallel = g->get();
  const std::string grouped = OneRank(data, o, &s);
  EXPECT_EQ(plain, grouped);
}

TEST_F(DistributedTest, TrainOnDevicesWithTwoCpuRanksMatchesOneRank) {
  const auto data = Data(300, 21);
  TrainOptions o = Options(/*lora_rank=*/4);
  auto base = FlowModel::Create(Config(), 7);
  ASSERT_TRUE(base.ok()) << base.status();
  auto one = (*base)->Clone();
  auto two = (*base)->Clone();
  ASSERT_TRUE(one.ok() && two.ok());
  auto s1 = TrainOnDevices(**one, data, o, {"cpu"});
  ASSERT_TRUE(s1.ok()) << s1.status();
  EXPECT_EQ(s1->world_size, 1);
  auto s2 = TrainOnDevices(**two, data, o, {"cpu", "cpu"}, 30);
  ASSERT_TRUE(s2.ok()) << s2.status();
  EXPECT_EQ(s2->world_size, 2);
  EXPECT_EQ(s2->steps, s1->steps);
  EXPECT_EQ(s2->tokens, s1->tokens);
  // The caller's model is rank 0: it holds the trained adapters.
  auto d1 = (*one)->ExportDelta({});
  auto d2 = (*two)->ExportDelta({});
  ASSERT_TRUE(d1.ok() && d2.ok());
  auto m1 = (*base)->Clone();
  auto m2 = (*base)->Clone();
  ASSERT_TRUE(m1.ok() && m2.ok());
  ASSERT_TRUE((*m1)->ApplyDelta(*d1, "one").ok());
  ASSERT_TRUE((*m2)->ApplyDelta(*d2, "two").ok());
  const double rel = RelativeDiff(Weights((*m1)->ToBytes()), Weights((*m2)->ToBytes()));
  EXPECT_LT(rel, 1e-3) << "two CPU ranks drifted from one (after int8 deltas)";
  std::printf("TrainOnDevices(cpu,cpu) vs (cpu), LoRA, after int8 deltas: max relative weight difference %.3g\n", rel);
  EXPECT_NEAR(s2->final_loss, s1->final_loss, 1e-4 * s1->final_loss);
  EXPECT_LT(s2->final_loss, s2->first_loss);
}

// A gang: a lead process with two local ranks and a helper "process" (a
// thread here) serving the third, over a store whose keys are prefixed per
// job; two rounds, as a compress job that retries with twice the budget.
TEST_F(DistributedTest, SessionAcrossProcessesTrainsEveryRoundLikeOneRank) {
  auto server = StoreServer::Start("127.0.0.1", 0, 20);
  ASSERT_TRUE(server.ok()) << server.status();
  SessionOptions so;
  so.store_port = (*server)->port();
  so.store_prefix = "job/7/1/";
  so.world_size = 3;
  so.timeout_seconds = 30;
  SessionOptions helper = so;
  helper.first_rank = 2;
  helper.devices = {"cpu"};
  StatusOr<int> served = absl::UnknownError("not run");
  std::thread t([&] { served = ServeSession(helper); });
  so.devices = {"cpu", "cpu"};
  auto session = TrainingSession::Lead(so);
  ASSERT_TRUE(session.ok()) << session.status();
  EXPECT_EQ((*session)->world_size(), 3);

  const auto data = Data(240, 31);
  auto parent = FlowModel::Create(Config(), 7);
  ASSERT_TRUE(parent.ok());
  for (int round = 0; round < 2; ++round) {
    TrainOptions o = Options(/*lora_rank=*/round == 0 ? 4 : 0);
    o.max_steps = round == 0 ? 10 : 20;
    o.batch_size = 30;  // 10 a rank
    auto gang = (*parent)->Clone();
    auto one = (*parent)->Clone();
    ASSERT_TRUE(gang.ok() && one.ok());
    auto sg = (*session)->Train(**gang, data, o);
    ASSERT_TRUE(sg.ok()) << sg.status();
    auto s1 = (*one)->Train(data, o);
    ASSERT_TRUE(s1.ok()) << s1.status();
    EXPECT_EQ(sg->world_size, 3);
    EXPECT_EQ(sg->steps, s1->steps);
    const double rel = RelativeDiff(Weights((*one)->ToBytes()), Weights((*gang)->ToBytes()));
    EXPECT_LT(rel, 1e-5) << "round " << round;
    std::printf("session round %d (%s): 3 ranks in 2 processes vs 1 rank, max relative weight difference %.3g\n",
                round, round == 0 ? "LoRA" : "full", rel);
  }
  ASSERT_TRUE((*session)->Finish().ok());
  t.join();
  ASSERT_TRUE(served.ok()) << served.status();
  EXPECT_EQ(*served, 2);
}

TEST_F(DistributedTest, SessionHelperWhoseLeadNeverComesTimesOut) {
  auto server = StoreServer::Start("127.0.0.1", 0, 5);
  ASSERT_TRUE(server.ok()) << server.status();
  SessionOptions helper;
  helper.store_port = (*server)->port();
  helper.store_prefix = "job/8/1/";
  helper.world_size = 2;
  helper.first_rank = 1;
  helper.timeout_seconds = 1.5;
  auto served = ServeSession(helper);
  EXPECT_FALSE(served.ok());
  EXPECT_NE(served.status().message().find("rank 1"), std::string::npos) << served.status();
  helper.first_rank = 0;
  EXPECT_EQ(ServeSession(helper).status().code(), absl::StatusCode::kInvalidArgument);
  helper.first_rank = 1;
  helper.devices = {"cpu", "cpu"};  // ranks 1..2 of a world of 2
  EXPECT_EQ(ServeSession(helper).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(TrainOptionsJsonTest, RoundTripsEveryField) {
  TrainOptions o;
  o.max_steps = 17;
  o.max_seconds = 1.0 / 3;
  o.batch_size = 9;
  o.learning_rate = 1e-3 / 7;
  o.weight_decay = 0.01;
  o.lora_rank = 3;
  o.seed = 0xfedcba9876543210ULL;
  o.warmup_steps = 2;
  o.grad_clip = 0.5;
  o.lora_alpha = 6;
  o.lora_targets = {"q", "emb"};
  o.lora_train_a = false;
  o.precision = "bf16";
  auto back = TrainOptionsFromJson(nlohmann::json::parse(TrainOptionsToJson(o).dump()));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(TrainOptionsToJson(*back), TrainOptionsToJson(o));
  EXPECT_EQ(back->seed, o.seed);
  EXPECT_EQ(back->max_seconds, o.max_seconds);
  EXPECT_FALSE(TrainOptionsFromJson(nlohmann::json{{"max_steps", 1}}).ok());
}

TEST(ResolveDevicesTest, FlagsResolveOrFailClearly) {
  const bool gpus = !CudaDevices().empty();
  auto autod = ResolveDevices("auto");
  ASSERT_TRUE(autod.ok());
  if (!gpus) {
    EXPECT_EQ(*autod, std::vector<std::string>{"cpu"});
  }
  EXPECT_EQ(*ResolveDevices(""), *autod);
  EXPECT_EQ(*ResolveDevices("cpu"), std::vector<std::string>{"cpu"});
  EXPECT_EQ(*ResolveDevices(" cpu, cpu "), (std::vector<std::string>{"cpu", "cpu"}));
  for (const char* bad : {"gpu", "cpu,", "cuda:x", "cuda:-1", "cpu,auto", "cuda,cpu", "cuda:0:1"}) {
    auto r = ResolveDevices(bad);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad << ": " << r.status();
  }
  if (!gpus) {
    for (const char* missing : {"cuda", "cuda:0", "cuda:3"}) {
      auto r = ResolveDevices(missing);
      EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << missing;
      EXPECT_NE(r.status().message().find("GPU"), std::string::npos) << r.status();
    }
  } else {
    EXPECT_EQ(ResolveDevices("cuda:0,cuda:0").status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(ResolveDevices("cpu,cuda:0").status().code(), absl::StatusCode::kInvalidArgument);
  }
}

TEST_F(DistributedTest, TrainOnDevicesWithoutDevicesIsAnError) {
  auto m = FlowModel::Create(Config(), 7);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(TrainOnDevices(**m, Data(10, 1), Options(0), {}).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace dgc::model
