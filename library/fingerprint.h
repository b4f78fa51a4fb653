// Fingerprint: a compact summary of a chunk's traffic (a few hundred bytes),
// and ParentSelector: the policy that picks the model a new chunk is
// fine-tuned from, or decides to train a new base.
//
// Why histograms: the model conditions on the skeleton (volume over time), so
// what makes a parent a bad start is a change in *what* the traffic is: the
// protocol mix, the services (ports), the packet sizes, the rate regime and the
// flow sizes. Each is a small histogram; drift is the mean Jensen-Shannon
// distance (base 2, so each in [0,1]) over the five.
#ifndef DGC_LIBRARY_FINGERPRINT_H_
#define DGC_LIBRARY_FINGERPRINT_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/base/status.h"
#include "common/trace/flow.h"
#include "common/trace/packet.h"

namespace dgc::library {

struct Fingerprint {
  // Bins of each histogram (see fingerprint.cc for the edges).
  static constexpr int kProtoBins = 5;   // tcp, udp, icmp, icmpv6, other
  static constexpr int kPortBins = 16;   // well-known services, then port ranges, then none
  static constexpr int kSizeBins = 12;   // ip_len in half-octave buckets, 32 B .. >=2 kB
  static constexpr int kRateBins = 16;   // per-second packet counts, log2(n+1)
  static constexpr int kFlowBins = 12;   // packets per flow, log2

  std::array<uint32_t, kProtoBins> proto{};  // packets
  std::array<uint32_t, kPortBins> port{};    // packets, by service port
  std::array<uint32_t, kSizeBins> size{};    // packets
  std::array<uint32_t, kRateBins> rate{};    // seconds of the chunk
  std::array<uint32_t, kFlowBins> flow{};    // flows
  uint64_t packets = 0;
  uint64_t flows = 0;

  // Summarises the time-sorted `packets` of a chunk [start_ns, start_ns +
  // duration_ns) and its `flows` (BuildFlows of the same packets).
  static Fingerprint Compute(absl::Span<const PacketRecord> packets, absl::Span<const Flow> flows,
                             int64_t start_ns, int64_t duration_ns);

  // The fingerprint of this chunk's traffic and `o`'s together (a model
  // trained on several chunks): histograms and counts summed.
  void Add(const Fingerprint& o);

  std::string Encode() const;
  // DataLoss naming `name` on bad bytes.
  [[nodiscard]] static StatusOr<Fingerprint> Decode(absl::string_view bytes, absl::string_view name);
};

// Per-histogram Jensen-Shannon distances and their mean, each in [0,1]:
// 0 for the same shape; 1 for disjoint support (or one side empty and the
// other not). Two empty histograms are at 0.
struct Drift {
  double proto = 0, port = 0, size = 0, rate = 0, flow = 0;
  double score = 0;  // the mean of the five
  std::string Describe() const;  // "0.214 (proto 0.01 port 0.52 size 0.30 rate 0.10 flow 0.14)"
};
Drift ComputeDrift(const Fingerprint& a, const Fingerprint& b);

// A model the selector may choose as parent.
struct ParentCandidate {
  std::string model_id;
  std::optional<Fingerprint> fingerprint;  // of the data it was trained on; none: unknown
  uint32_t depth = 0;                      // deltas from its full model
  bool full = false;                       // a base or retrain model
};

struct ParentDecision {
  enum class Kind {
    kContinue,  // the latest model of the link
    kSwitch,    // a recent model of the link, or one of its earlier full models,
                // nearer to this chunk than the latest
    kBase,      // the full model at the root of the latest model's chain
    kRetrain,   // train a new base on this chunk: drift too large, chain too deep, or no model
  };
  // What led to the decision, for callers to act on (the reason is prose for
  // people only).
  enum class Trigger {
    kNoModel,       // nothing to continue: the link's first base
    kWithinDrift,   // the latest model's drift is at most drift_threshold
    kUnknownDrift,  // the latest model has no fingerprint, or the chunk is too small to judge
    kDrift,         // the latest model drifted past drift_threshold (switch, base or retrain)
    kDepth,         // continuing would pass max_depth: retrain
  };
  Kind kind = Kind::kRetrain;
  Trigger trigger = Trigger::kNoModel;
  std::string parent_id;  // empty for kRetrain
  double drift = -1;      // against parent_id (kRetrain: against the nearest candidate); -1 unknown
  std::string reason;     // one line for operators (`dgcctl describe chunk`)
};
const char* DecisionName(ParentDecision::Kind kind);

class ParentSelector {
 public:
  struct Options {
    // Above this drift against the latest model, do not continue it: look for
    // a nearer recent model (or the base). Noise between chunks of the same
    // traffic measures 0.02-0.08 on 10-minute chunks of a few thousand
    // packets; a new service or a changed size mix measures 0.2 and more.
    double drift_threshold = 0.15;
    // Above this drift against every candidate, train a new base (retrain).
    double retrain_threshold = 0.35;
    // A chain of more than this many deltas from its full model is not
    // extended: the chunk retrains, so regeneration never replays a long chain.
    uint32_t max_depth = 32;
    // How many recent distinct models of the link are candidates.
    int recent_models = 16;
    // How many of the link's earlier full models (bases and retrains other
    // than the root of the latest chain, newest first) are candidates too.
    // Without them a retrain on a short episode (a DNS retry storm) hides
    // the models of the traffic before it, and the return to that traffic
    // retrains again instead of switching back.
    int previous_full_models = 4;
    // A chunk with fewer packets than this keeps the latest model: its
    // histograms are too noisy to judge drift.
    uint64_t min_packets = 200;
  };

  ParentSelector() = default;
  explicit ParentSelector(Options options) : options_(options) {}
  const Options& options() const { return options_; }

  // `recent`: the link's recent models, newest first (recent[0] is the latest);
  // `base`: the full model at the root of the latest model's chain, if any;
  // `previous_full`: the link's earlier full models, newest first (at most
  // options().previous_full_models of them are considered; entries equal to
  // `base` or to a recent model are skipped). A chunk whose latest model is
  // far goes to the nearest of all of them: kSwitch for a recent model or a
  // previous full model, kBase for `base`, kRetrain when even the nearest is
  // past retrain_threshold.
  ParentDecision Decide(const Fingerprint& chunk, const std::vector<ParentCandidate>& recent,
                        const std::optional<ParentCandidate>& base,
                        const std::vector<ParentCandidate>& previous_full = {}) const;

 private:
  Options options_;
};

}  // namespace dgc::library

#endif  // DGC_LIBRARY_FINGERPRINT_H_
