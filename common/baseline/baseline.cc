#include "common/baseline/baseline.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/baseline/flow_records.h"
#include "common/trace/trace_file.h"
#include "common/baseline/marginals.h"
#include "common/baseline/pcap_image.h"
#include "common/baseline/sampling.h"
#include "common/trace/flow.h"

namespace dgc::baseline {
namespace {

// Keeps `packets` as they are when sorted, else points at a sorted copy.
class SortedView {
 public:
  explicit SortedView(absl::Span<const PacketRecord> packets) : view_(packets) {
    auto by_ts = [](const PacketRecord& a, const PacketRecord& b) { return a.ts_ns < b.ts_ns; };
    if (!std::is_sorted(packets.begin(), packets.end(), by_ts)) {
      copy_.assign(packets.begin(), packets.end());
      SortByTime(&copy_);
      view_ = copy_;
    }
  }
  absl::Span<const PacketRecord> get() const { return view_; }

 private:
  absl::Span<const PacketRecord> view_;
  std::vector<PacketRecord> copy_;
};

class SamplingBaseline : public Baseline {
 public:
  explicit SamplingBaseline(const BaselineOptions& o) : options_(o) {}
  BaselineMethod method() const override { return BaselineMethod::kSampling; }
  std::string Describe() const override {
    std::string s = absl::StrCat("sampling 1:", options_.sampling_n);
    if (options_.sampling_random) absl::StrAppend(&s, " random (seed ", options_.seed, ")");
    return s;
  }
  StatusOr<KeptForm> Keep(absl::Span<const PacketRecord> packets) const override {
    SortedView sorted(packets);
    auto in = sorted.get();
    std::vector<size_t> idx =
        SampleIndices(in.size(), options_.sampling_n, options_.sampling_random, options_.seed);
    std::vector<PacketRecord> kept;
    kept.reserve(idx.size());
    for (size_t i : idx) {
      // The kept form must read back: refuse what PcapWriter would refuse.
      if (!PcapCanRepresent(in[i].ts_ns)) {
        return absl::OutOfRangeError(absl::StrCat(
            "sampling: packet ", i, " has timestamp ", in[i].ts_ns,
            " ns, outside what pcap holds (1970..2038)"));
      }
      kept.push_back(in[i]);
    }
    KeptForm form;
    form.bytes = PcapImage(kept);  // raw IP, nanoseconds: what a header-only archive holds
    form.records = kept.size();
    return form;
  }
  StatusOr<std::vector<PacketRecord>> Regenerate(absl::string_view kept) const override {
    DGC_ASSIGN_OR_RETURN(std::vector<PacketRecord> sample,
                         ReadPcapImage(std::string(kept), "sampled packets"));
    SortByTime(&sample);
    return ExpandSample(sample, options_.sampling_n, options_.max_packets);
  }

 private:
  BaselineOptions options_;
};

class FlowRecordBaseline : public Baseline {
 public:
  explicit FlowRecordBaseline(const BaselineOptions& o) : options_(o) {}
  BaselineMethod method() const override { return BaselineMethod::kFlows; }
  std::string Describe() const override {
    return options_.flow_sampling_n > 1 ? absl::StrCat("flows 1:", options_.flow_sampling_n) : "flows";
  }
  StatusOr<KeptForm> Keep(absl::Span<const PacketRecord> packets) const override {
    SortedView sorted(packets);
    std::vector<Flow> flows = BuildFlows(sorted.get());
    if (options_.flow_sampling_n > 1) {
      std::vector<Flow> kept;
      for (const Flow& f : flows) {
        const uint64_t h = absl::HashOf(f.key, f.first_ns);
        if (h % options_.flow_sampling_n == 0) kept.push_back(f);
      }
      flows = std::move(kept);
    }
    KeptForm form;
    DGC_ASSIGN_OR_RETURN(form.bytes, PackFlowRecords(flows, options_.zstd_level));
    form.records = flows.size();
    return form;
  }
  StatusOr<std::vector<PacketRecord>> Regenerate(absl::string_view kept) const override {
    DGC_ASSIGN_OR_RETURN(std::vector<Flow> flows, UnpackFlowRecords(kept));
    if (options_.flow_sampling_n > 1) {
      for (Flow& f : flows) {  // scaled up: the volume of the flows not kept
        f.packets *= options_.flow_sampling_n;
        f.bytes *= options_.flow_sampling_n;
      }
    }
    return PacketsFromFlows(flows, options_.flow_ttl, options_.max_packets);
  }

 private:
  BaselineOptions options_;
};

class MarginalsBaseline : public Baseline {
 public:
  explicit MarginalsBaseline(const BaselineOptions& o) : options_(o) {}
  BaselineMethod method() const override { return BaselineMethod::kMarginals; }
  std::string Describe() const override {
    return absl::StrCat("marginals (seed ", options_.seed, ")");
  }
  StatusOr<KeptForm> Keep(absl::Span<const PacketRecord> packets) const override {
    SortedView sorted(packets);
    Marginals m = BuildMarginals(sorted.get());
    KeptForm form;
    DGC_ASSIGN_OR_RETURN(form.bytes, PackMarginals(m, options_.zstd_level));
    form.records = m.entries();
    return form;
  }
  StatusOr<std::vector<PacketRecord>> Regenerate(absl::string_view kept) const override {
    DGC_ASSIGN_OR_RETURN(Marginals m, UnpackMarginals(kept));
    return DrawFromMarginals(m, options_.seed, options_.max_packets);
  }

 private:
  BaselineOptions options_;
};

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

const char* BaselineMethodName(BaselineMethod method) {
  switch (method) {
    case BaselineMethod::kSampling:
      return "sampling";
    case BaselineMethod::kFlows:
      return "flows";
    case BaselineMethod::kMarginals:
      return "marginals";
  }
  return "?";
}

StatusOr<BaselineMethod> ParseBaselineMethod(absl::string_view name) {
  for (BaselineMethod m :
       {BaselineMethod::kSampling, BaselineMethod::kFlows, BaselineMethod::kMarginals}) {
    if (name == BaselineMethodName(m)) return m;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown baseline method '", name,
                                                 "': use sampling, flows or marginals"));
}

StatusOr<uint32_t> ParseSamplingRate(absl::string_view rate) {
  absl::string_view n = absl::StripAsciiWhitespace(rate);
  if (absl::ConsumePrefix(&n, "1:")) n = absl::StripAsciiWhitespace(n);
  uint64_t v = 0;
  if (!absl::SimpleAtoi(n, &v) || v < 1 || v >= (uint64_t{1} << 31)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bad sampling rate '", rate, "': expected 1:N with N a whole number >= 1 (e.g. 1:100)"));
  }
  return static_cast<uint32_t>(v);
}

StatusOr<std::unique_ptr<Baseline>> Baseline::Create(BaselineMethod method,
                                                     const BaselineOptions& options) {
  if (options.sampling_n < 1) return absl::InvalidArgumentError("sampling rate must be 1:N, N >= 1");
  if (options.zstd_level < 1 || options.zstd_level > 22) {
    return absl::InvalidArgumentError("zstd level must be 1-22");
  }
  switch (method) {
    case BaselineMethod::kSampling:
      return std::unique_ptr<Baseline>(new SamplingBaseline(options));
    case BaselineMethod::kFlows:
      return std::unique_ptr<Baseline>(new FlowRecordBaseline(options));
    case BaselineMethod::kMarginals:
      return std::unique_ptr<Baseline>(new MarginalsBaseline(options));
  }
  return absl::InvalidArgumentError("unknown baseline method");
}

double BaselineResult::KeptBytesPerMillionPackets() const {
  if (input_packets == 0) return 0;
  return static_cast<double>(kept_bytes) * 1e6 / static_cast<double>(input_packets);
}

StatusOr<BaselineResult> RunBaseline(BaselineMethod method, absl::Span<const PacketRecord> packets,
                                     const BaselineOptions& options) {
  DGC_ASSIGN_OR_RETURN(std::unique_ptr<Baseline> baseline, Baseline::Create(method, options));
  BaselineResult r;
  r.description = baseline->Describe();
  r.input_packets = packets.size();
  auto t0 = std::chrono::steady_clock::now();
  DGC_ASSIGN_OR_RETURN(r.kept, baseline->Keep(packets));
  r.keep_seconds = SecondsSince(t0);
  r.kept_bytes = r.kept.bytes.size();
  r.kept_records = r.kept.records;
  auto t1 = std::chrono::steady_clock::now();
  DGC_ASSIGN_OR_RETURN(r.packets, baseline->Regenerate(r.kept.bytes));
  r.regenerate_seconds = SecondsSince(t1);
  return r;
}

}  // namespace dgc::baseline
