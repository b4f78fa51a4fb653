// FlowTokenizer: a chunk's flows to token sequences and back, and the grammar
// those sequences obey (so every sampled sequence decodes).
//
// One flow (METRICS.md: unidirectional 5-tuple, 60 s idle timeout) is one
// sequence:
//   BOS START MARK FAMILY PROTO SRC... DST... [SPORT DPORT] NPKT [DUR] TTL
//   [TTLMODE] { SIZE [GAP] [FLAGS] [TTL] } x min(n, K) [REST_SIZE [REST_FLAGS]] EOS
// START      where the flow starts in its chunk (64 equal buckets); forced at
//            generation from the skeleton, which knows when flows start
// MARK       whether the flow continues one of the previous chunk / may go on
// FAMILY     IPv4 or IPv6; addresses follow as 4 or 16 byte tokens
// ports      exact: one token for common ports, a high and a low byte otherwise
//            (TCP, UDP and SCTP only)
// NPKT       packets: exact up to 16, then log buckets (2^(1/4) wide)
// DUR        duration: zero, below 1 us, then 20 log buckets per decade (us);
//            absent for one-packet flows
// TTL        the first packet's TTL; TTLMODE says whether it varies, and then
//            every packet carries its own TTL
// per packet the first K packets: exact size (log buckets above 1599 bytes),
//            the gap to the previous packet (20 log buckets per decade, us),
//            TCP flags (TCP only)
// REST       flows longer than K: the mean size and the OR of the TCP flags of
//            the rest; their packets are spread over the rest of the duration
#ifndef DGC_COMMON_MODEL_TOKENIZER_H_
#define DGC_COMMON_MODEL_TOKENIZER_H_

#include <cstdint>
#include <random>
#include <vector>

#include "common/base/status.h"
#include "common/model/grammar.h"
#include "common/trace/chunk.h"
#include "common/trace/flow.h"
#include "common/trace/packet.h"
#include "nlohmann/json.hpp"

namespace dgc::model {

struct TokenizerConfig {
  int32_t max_packets = 16;    // K: packets that get their own tokens (1..16); 16 measured
                               // better than 8 (blink-cam pkt_size 0.80 -> 0.12)
  int32_t start_buckets = 64;  // resolution of the START token

  nlohmann::json ToJson() const;
  static StatusOr<TokenizerConfig> FromJson(const nlohmann::json& j);
};

// A flow with its packets (time-ordered), as the tokenizer sees it.
struct FlowSample {
  Flow flow;
  std::vector<PacketRecord> packets;
};

// Splits a chunk into flows with their packets, in order of first packet.
std::vector<FlowSample> FlowsOfChunk(const Chunk& chunk);

// What a sequence says about a flow; bucketed fields are drawn within their
// bucket when decoding.
struct DecodedFlow {
  int32_t start_bucket = 0;
  uint8_t marks = 0;
  uint8_t version = 4;
  uint8_t proto = 0;
  IpAddress src, dst;
  uint16_t sport = 0, dport = 0;
  uint64_t packets = 1;
  int64_t duration_ns = 0;
  uint8_t ttl = 64;
  bool ttl_varies = false;
  struct Packet {
    uint32_t size = 0;
    int64_t gap_ns = 0;  // to the previous packet of the flow (0 for the first)
    uint8_t flags = 0;
    uint8_t ttl = 0;
  };
  std::vector<Packet> head;  // the first min(packets, K)
  uint32_t rest_mean_size = 0;
  uint8_t rest_flags = 0;
};

class FlowTokenizer final : public Grammar {
 public:
  explicit FlowTokenizer(TokenizerConfig config = {});

  const TokenizerConfig& config() const { return config_; }

  // Tokens of `flow`, which lies in the window [chunk_start_ns, +chunk_ns).
  std::vector<Token> Encode(const FlowSample& flow, int64_t chunk_start_ns, int64_t chunk_ns) const;
  // The header of a flow's sequence, kBos to its first TTL: what generation
  // forces for a flow kept exactly, leaving the packets to the model.
  std::vector<Token> EncodeHeader(const FlowKey& key, uint8_t marks, int64_t offset_ns, uint64_t packets,
                                  int64_t duration_ns, uint8_t ttl, int64_t chunk_ns) const;
  // What a flow kept exactly is conditioned on when its packets are drawn,
  // less what makes it one flow: its header without start, marks and
  // addresses, and a port that has no token of its own (an ephemeral one)
  // as "some port". Flows with the same key have headers of one length and
  // the same grammar after them, so one's drawn packets fit another
  // (GenerateOptions::exact_templates).
  std::vector<Token> DetailKey(const FlowKey& key, uint64_t packets, int64_t duration_ns, uint8_t ttl) const;
  // The START token for a flow starting at `offset_ns` into a chunk of `chunk_ns`.
  Token StartToken(int64_t offset_ns, int64_t chunk_ns) const;
  // Reads a sequence back. InvalidArgument when the grammar rejects it.
  // Bucketed values are drawn inside their bucket with `rng`.
  [[nodiscard]] StatusOr<DecodedFlow> Decode(const std::vector<Token>& tokens, std::mt19937_64& rng) const;
  // The flow's packets, first at `start_ns`; the rest of a long flow spread
  // over its duration with sizes and flags drawn to match the summary.
  std::vector<PacketRecord> Expand(const DecodedFlow& flow, int64_t start_ns, std::mt19937_64& rng) const;

  // Grammar.
  int32_t vocab_size() const override { return vocab_size_; }
  int32_t max_length() const override { return max_length_; }
  GrammarState Start() const override;
  TokenRange Allowed(const GrammarState& state) const override;
  void Advance(GrammarState* state, Token token) const override;

  // Bucket helpers, exposed for tests.
  static int32_t PacketCountBucket(uint64_t n);
  static std::pair<uint64_t, uint64_t> PacketCountRange(int32_t bucket);  // [lo, hi)
  static int32_t LogUsBucket(int64_t ns);  // 0: < 1 us; then 20 per decade from 1 us
  static std::pair<double, double> LogUsRange(int32_t bucket);  // [lo, hi) in us
  static int32_t SizeBucket(uint32_t size);
  static std::pair<uint32_t, uint32_t> SizeRange(int32_t bucket);  // [lo, hi)

 private:
  enum Step : int32_t {
    kStepStart, kStepMark, kStepFamily, kStepProto, kStepSrc, kStepDst, kStepSport, kStepSportLo,
    kStepDport, kStepDportLo, kStepNpkt, kStepDur, kStepTtl, kStepTtlMode, kStepSize, kStepGap,
    kStepFlags, kStepPktTtl, kStepRestSize, kStepRestFlags, kStepEos, kStepDone,
  };
  // Field ranges in the vocabulary.
  TokenRange start_, mark_, family_, proto_, addr_, port_common_, port_hi_, port_lo_, npkt_, dur_,
      ttl_, ttl_mode_, size_, gap_, flags_;
  TokenizerConfig config_;
  int32_t vocab_size_ = 0;
  int32_t max_length_ = 0;

  void EncodePort(uint16_t port, std::vector<Token>* out) const;
  // A header's last tokens, NPKT [DUR] TTL: EncodeHeader's and DetailKey's
  // (one code, so flows of one key keep headers of one length).
  void AppendCounts(uint64_t packets, int64_t duration_ns, uint8_t ttl, std::vector<Token>* t) const;
  Step NextAfterHeaderPorts(const GrammarState& s) const;
  void BeginPackets(GrammarState* s) const;
  void EndPacket(GrammarState* s) const;
};

// Ports with a token of their own: all below 1024 and well-known higher ones.
const std::vector<uint16_t>& CommonPorts();

}  // namespace dgc::model

#endif  // DGC_COMMON_MODEL_TOKENIZER_H_
