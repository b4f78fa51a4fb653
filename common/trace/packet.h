// The packet record: what dgc keeps of one IP packet. Everything downstream
// (flows, chunks, metrics, the model) works on these, never on raw frames.
#ifndef DGC_COMMON_TRACE_PACKET_H_
#define DGC_COMMON_TRACE_PACKET_H_

#include <array>
#include <cstdint>
#include <cstring>
#include <string>

namespace dgc {

// An IPv4 or IPv6 address. IPv4 is stored v4-mapped (::ffff:a.b.c.d) so one
// 16-byte form serves both; PacketRecord::version says which family it is.
struct IpAddress {
  std::array<uint8_t, 16> bytes{};

  static IpAddress FromV4(const uint8_t* p) {
    IpAddress a;
    a.bytes[10] = 0xff;
    a.bytes[11] = 0xff;
    std::memcpy(&a.bytes[12], p, 4);
    return a;
  }
  static IpAddress FromV4(uint32_t host_order) {
    uint8_t b[4] = {uint8_t(host_order >> 24), uint8_t(host_order >> 16), uint8_t(host_order >> 8),
                    uint8_t(host_order)};
    return FromV4(b);
  }
  static IpAddress FromV6(const uint8_t* p) {
    IpAddress a;
    std::memcpy(a.bytes.data(), p, 16);
    return a;
  }
  uint32_t v4() const {  // host order; meaningful for IPv4 only
    return uint32_t(bytes[12]) << 24 | uint32_t(bytes[13]) << 16 | uint32_t(bytes[14]) << 8 |
           bytes[15];
  }
  bool is_v4_mapped() const {
    static constexpr uint8_t kPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return std::memcmp(bytes.data(), kPrefix, 12) == 0;
  }
  // "192.0.2.1" or "2001:db8::1" per `v6`.
  std::string ToString(bool v6) const;

  friend bool operator==(const IpAddress& a, const IpAddress& b) { return a.bytes == b.bytes; }
  friend bool operator!=(const IpAddress& a, const IpAddress& b) { return !(a == b); }
  friend bool operator<(const IpAddress& a, const IpAddress& b) { return a.bytes < b.bytes; }
  template <typename H>
  friend H AbslHashValue(H h, const IpAddress& a) {
    return H::combine_contiguous(std::move(h), a.bytes.data(), a.bytes.size());
  }
};

// IPv4 flags/fragment-offset layout, also used for IPv6 fragment headers.
constexpr uint16_t kFragDontFragment = 0x4000;
constexpr uint16_t kFragMoreFragments = 0x2000;
constexpr uint16_t kFragOffsetMask = 0x1fff;  // in 8-byte units

// PacketRecord::tcp_flags bits.
constexpr uint8_t kTcpFin = 0x01;
constexpr uint8_t kTcpSyn = 0x02;
constexpr uint8_t kTcpRst = 0x04;
constexpr uint8_t kTcpAck = 0x10;

// PacketRecord::flags bits.
constexpr uint8_t kPktV6FragmentHeader = 0x01;  // frag/ip_id came from an IPv6 fragment header
constexpr uint8_t kPktL4Truncated = 0x02;       // the capture ended inside the L4 header
constexpr uint8_t kPktFlowContinued = 0x04;     // first packet in its chunk of a flow that
                                                // began in an earlier chunk (set by the chunker)

// One IP packet, as METRICS.md defines its fields, plus the header fields the
// writer needs to rebuild a valid header. Timestamps are Unix nanoseconds.
struct PacketRecord {
  int64_t ts_ns = 0;
  IpAddress src;
  IpAddress dst;
  uint32_t ip_len = 0;  // IP total length on the wire (IPv6: payload + 40), never caplen
  uint32_t ip_id = 0;   // IPv4 identification, or IPv6 fragment-header id
  uint16_t sport = 0;   // TCP/UDP/SCTP ports; 0 for other protocols and non-first fragments
  uint16_t dport = 0;
  uint16_t frag = 0;    // kFrag* bits and offset
  uint8_t version = 4;  // 4 or 6
  uint8_t proto = 0;    // IPv4 protocol or IPv6 next header after extension headers
  uint8_t ttl = 0;      // TTL or hop limit
  uint8_t tcp_flags = 0;  // the 8 TCP flag bits (CWR..FIN); 0 when not TCP
  uint8_t tos = 0;        // IPv4 ToS or IPv6 traffic class
  uint8_t flags = 0;      // kPkt* bits

  bool is_v6() const { return version == 6; }
  bool is_fragment() const { return (frag & (kFragMoreFragments | kFragOffsetMask)) != 0; }
  bool is_later_fragment() const { return (frag & kFragOffsetMask) != 0; }
};

constexpr uint8_t kProtoIcmp = 1;
constexpr uint8_t kProtoTcp = 6;
constexpr uint8_t kProtoUdp = 17;
constexpr uint8_t kProtoIcmpV6 = 58;
constexpr uint8_t kProtoSctp = 132;

inline bool ProtoHasPorts(uint8_t proto) {
  return proto == kProtoTcp || proto == kProtoUdp || proto == kProtoSctp;
}

// The fields METRICS.md scores, compared exactly. Used by round-trip tests.
inline bool SameMetricFields(const PacketRecord& a, const PacketRecord& b) {
  return a.ts_ns == b.ts_ns && a.src == b.src && a.dst == b.dst && a.version == b.version &&
         a.proto == b.proto && a.sport == b.sport && a.dport == b.dport && a.ip_len == b.ip_len &&
         a.ttl == b.ttl && a.tcp_flags == b.tcp_flags;
}

}  // namespace dgc

#endif  // DGC_COMMON_TRACE_PACKET_H_
