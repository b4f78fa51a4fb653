// CompressChunk's storage decisions, on a small synthetic chunk with a tiny
// model (seconds): pooling of quiet chunks and dropping a delta that does not
// pay for its bytes.
#include "worker/chunk_compressor.h"

#include "common/trace/synthetic_trace.h"
#include "gtest/gtest.h"

namespace dgc {
namespace {

Chunk SmallChunk(uint64_t seed) {
  SyntheticTraceOptions so;
  so.seconds = 60;
  so.sessions_per_second = 3;
  so.seed = seed;
  Chunk c;
  c.link = "t";
  c.duration_ns = 60LL * 1000000000;
  c.start_ns = so.start_ns;
  c.packets = MakeSyntheticTrace(so);
  return c;
}

CompressOptions TinyOptions() {
  CompressOptions o;
  o.network.width = 32;
  o.network.depth = 1;
  o.network.heads = 2;
  o.warmup.max_steps = 40;
  o.warmup.batch_size = 32;
  o.finetune.max_steps = 10;
  o.finetune.batch_size = 32;
  o.finetune.lora_rank = 2;
  o.min_flows_to_finetune = 1;
  o.retry_on_miss = false;
  o.check_flows = 0;
  return o;
}

TEST(ChunkCompressorTest, DropsADeltaThatDoesNotBeatItsParentByTheMinimumGain) {
  Chunk c = SmallChunk(1);
  CompressOptions o = TinyOptions();
  auto base = TrainBase({c}, o, nullptr);
  ASSERT_TRUE(base.ok()) << base.status();
  o.min_delta_gain = 2.0;  // no delta can gain that much on a mean in [0, 1]
  auto r = CompressChunk(c, **base, "base-1", o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->finetuned);  // the pool is used up all the same
  EXPECT_TRUE(r->artifact.delta.empty());
  EXPECT_EQ(r->artifact.model_id, "base-1");
  EXPECT_TRUE(r->artifact.report.contains("delta_dropped"));
  EXPECT_TRUE(r->artifact.report.contains("parent_fidelity_mean"));

  o.min_delta_gain = 0;  // keep every delta
  auto kept = CompressChunk(c, **base, "base-1", o);
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_FALSE(kept->artifact.delta.empty());
  EXPECT_NE(kept->artifact.model_id, "base-1");
}

TEST(ChunkCompressorTest, QuietChunkSharesItsParentUntilThePoolIsLargeEnough) {
  Chunk c = SmallChunk(2);
  CompressOptions o = TinyOptions();
  o.check_fidelity = false;
  auto base = TrainBase({c}, o, nullptr);
  ASSERT_TRUE(base.ok()) << base.status();
  size_t flows = BuildFlows(c.packets, c.end_ns()).size();
  o.min_flows_to_finetune = static_cast<int32_t>(flows + 10);
  auto quiet = CompressChunk(c, **base, "base-2", o);
  ASSERT_TRUE(quiet.ok()) << quiet.status();
  EXPECT_FALSE(quiet->finetuned);
  EXPECT_TRUE(quiet->artifact.delta.empty());
  EXPECT_EQ(quiet->artifact.model_id, "base-2");
  // The same chunk with the pooled flows of an earlier quiet one fine-tunes.
  model::FlowTokenizer tok(o.tokenizer);
  auto pool = ChunkSequences(SmallChunk(3), tok, 0, 1);
  ASSERT_GE(pool.size(), 10u);
  auto tuned = CompressChunk(c, **base, "base-2", o, pool);
  ASSERT_TRUE(tuned.ok()) << tuned.status();
  EXPECT_TRUE(tuned->finetuned);
  EXPECT_FALSE(tuned->artifact.delta.empty());
  EXPECT_EQ(tuned->artifact.report.value("pooled_flows", 0), static_cast<int>(pool.size()));
}

}  // namespace
}  // namespace dgc
