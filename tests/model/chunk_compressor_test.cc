// CompressChunk's storage decisions, on a small synthetic chunk with a tiny
// model (seconds): pooling of quiet chunks and dropping a delta that does not
// pay for its bytes.
#include "common/compress/chunk_compressor.h"

#include "common/model/skeleton.h"

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
  o.budget_fraction = 0;  // no budget: the fine-tune policy alone decides (the budget's own tests below)
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

// A fine-tune the policy found futile is not run: the chunk shares its
// parent as a dropped delta does (its pool is spent), says why, and is
// still scored.
TEST(ChunkCompressorTest, AFutileFinetuneIsSkippedAndTheChunkSharesItsParent) {
  Chunk c = SmallChunk(1);
  CompressOptions o = TinyOptions();
  auto base = TrainBase({c}, o, nullptr);
  ASSERT_TRUE(base.ok()) << base.status();
  o.skip_finetune = "the last 2 fine-tunes gained too little";
  auto r = CompressChunk(c, **base, "base-1", o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->finetuned);
  EXPECT_TRUE(r->artifact.delta.empty());
  EXPECT_EQ(r->artifact.model_id, "base-1");
  EXPECT_EQ(r->artifact.report.value("finetune_skipped", ""), o.skip_finetune);
  EXPECT_FALSE(r->artifact.report.contains("attempts"));
  EXPECT_TRUE(r->artifact.report.contains("fidelity_mean"));
}

// A retry doubles the steps; it runs only when the miss is within what the
// first attempt gained over the parent, and a skipped one says why.
TEST(ChunkCompressorTest, RetriesOnlyAMissTheDoubledStepsCanClose) {
  Chunk c = SmallChunk(4);
  CompressOptions o = TinyOptions();
  auto base = TrainBase({c}, o, nullptr);
  ASSERT_TRUE(base.ok()) << base.status();
  o.retry_on_miss = true;
  o.min_delta_gain = 1e-9;  // the parent is scored (and every delta kept)
  o.fidelity_target = 0;   // out of reach: miss = the whole mean, more than any gain
  auto far = CompressChunk(c, **base, "base-4", o);
  ASSERT_TRUE(far.ok()) << far.status();
  const auto& rf = far->artifact.report;
  ASSERT_EQ(rf["attempts"].size(), 1u) << rf.dump();
  ASSERT_TRUE(rf.contains("retry_skipped")) << rf.dump();
  EXPECT_NE(rf["retry_skipped"].get<std::string>().find("would not close it"), std::string::npos);
  EXPECT_FALSE(rf["retried"].get<bool>());
  const double parent = rf["parent_fidelity_mean"].get<double>();
  const double first = rf["attempts"][0]["fidelity"]["mean"].get<double>();
  ASSERT_GT(parent, first + 0.002) << "the first fine-tune must gain on its parent for the second half";

  // A miss of half the first gain: the retry runs.
  o.fidelity_target = first - (parent - first) / 2;
  auto near = CompressChunk(c, **base, "base-4", o);
  ASSERT_TRUE(near.ok()) << near.status();
  const auto& rn = near->artifact.report;
  EXPECT_EQ(rn["attempts"].size(), 2u) << rn.dump();
  EXPECT_FALSE(rn.contains("retry_skipped")) << rn.dump();
  EXPECT_TRUE(rn["retried"].get<bool>());
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

TEST(ChunkCompressorTest, TheBudgetDecidesTheDeltaAndTheExactFlows) {
  Chunk c = SmallChunk(4);
  CompressOptions o = TinyOptions();
  o.check_fidelity = false;
  auto base = TrainBase({c}, o, nullptr);
  ASSERT_TRUE(base.ok()) << base.status();
  const size_t flows = BuildFlows(c.packets, c.end_ns()).size();
  // A tenth of zstd -19 of this small chunk leaves no room for a delta: the
  // parent serves it, and the heaviest flows that fit are kept exactly.
  o.budget_fraction = 0.1;
  auto tight = CompressChunk(c, **base, "base-4", o);
  ASSERT_TRUE(tight.ok()) << tight.status();
  EXPECT_FALSE(tight->finetuned);
  EXPECT_TRUE(tight->artifact.delta.empty());
  const int64_t budget = tight->split["budget"].get<int64_t>();
  ASSERT_GT(budget, 0);
  const uint64_t exact_tight = tight->split["exact_flows"].get<uint64_t>();
  EXPECT_GT(exact_tight, 0u);
  EXPECT_LT(exact_tight, flows);
  // What the split names fits the budget (the metadata is an estimate).
  EXPECT_LE(tight->split["skeleton"].get<int64_t>() + tight->split["structure"].get<int64_t>() +
                tight->split["exact"].get<int64_t>(),
            budget);
  auto sk = model::Skeleton::Decode(tight->artifact.skeleton, "tight");
  ASSERT_TRUE(sk.ok()) << sk.status();
  EXPECT_EQ(sk->exact.size(), exact_tight);
  EXPECT_GT(sk->window_ns, 0);
  // Priced as a record packed at half a byte a byte, the same budget keeps
  // more flows exactly, and the packed record (at that price) still fits.
  {
    CompressOptions p = o;
    p.packed_cost = 0.5;
    p.metadata_bytes = 120;
    auto priced = CompressChunk(c, **base, "base-4", p);
    ASSERT_TRUE(priced.ok()) << priced.status();
    const uint64_t exact_priced = priced->split["exact_flows"].get<uint64_t>();
    EXPECT_GT(exact_priced, exact_tight + exact_tight / 2) << exact_tight;
    EXPECT_DOUBLE_EQ(priced->artifact.report.value("packed_cost", 0.0), 0.5);
    EXPECT_LE(0.5 * double(priced->split["skeleton"].get<int64_t>() + priced->split["structure"].get<int64_t>() +
                           priced->split["exact"].get<int64_t>() + 120),
              double(budget));
    // packed_cost 1 (or 0) prices each byte as a byte: what `tight` kept.
    p.packed_cost = 1;
    p.metadata_bytes = 0;
    auto unpriced = CompressChunk(c, **base, "base-4", p);
    ASSERT_TRUE(unpriced.ok());
    EXPECT_EQ(unpriced->split["exact_flows"].get<uint64_t>(), exact_tight);
  }
  // Ten times zstd -19: room for a delta and every flow exactly.
  o.budget_fraction = 10;
  auto roomy = CompressChunk(c, **base, "base-4", o);
  ASSERT_TRUE(roomy.ok()) << roomy.status();
  EXPECT_TRUE(roomy->finetuned);
  EXPECT_FALSE(roomy->artifact.delta.empty());
  EXPECT_EQ(roomy->split["exact_flows"].get<uint64_t>(), flows);
  EXPECT_DOUBLE_EQ(roomy->artifact.report.value("exact_packet_share", 0.0), 1.0);
  // Model only: no real 5-tuple is kept.
  o.exact_flows = false;
  auto model_only = CompressChunk(c, **base, "base-4", o);
  ASSERT_TRUE(model_only.ok()) << model_only.status();
  EXPECT_EQ(model_only->split["exact_flows"].get<uint64_t>(), 0u);
  EXPECT_FALSE(model_only->artifact.report.contains("exact_packet_share"));
}

}  // namespace
}  // namespace dgc
