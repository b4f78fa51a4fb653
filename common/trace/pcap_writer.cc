#include "common/trace/pcap_writer.h"

#include <pcap/pcap.h>

#include <cstring>

#include "absl/strings/str_cat.h"

namespace dgc {
namespace {

void Put16(uint8_t* p, uint16_t v) {
  p[0] = uint8_t(v >> 8);
  p[1] = uint8_t(v);
}
void Put32(uint8_t* p, uint32_t v) {
  p[0] = uint8_t(v >> 24);
  p[1] = uint8_t(v >> 16);
  p[2] = uint8_t(v >> 8);
  p[3] = uint8_t(v);
}

// One's-complement sum of 16-bit big-endian words.
uint32_t Sum16(const uint8_t* p, size_t n, uint32_t acc = 0) {
  for (size_t i = 0; i + 1 < n; i += 2) acc += uint32_t(p[i] << 8 | p[i + 1]);
  if (n & 1) acc += uint32_t(p[n - 1] << 8);
  return acc;
}
uint16_t Fold(uint32_t acc) {
  while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
  return static_cast<uint16_t>(~acc & 0xffff);
}

// Pseudo-header sum for TCP/UDP/ICMPv6 checksums.
uint32_t PseudoSum(const PacketRecord& p, uint32_t l4_len) {
  uint32_t acc = 0;
  if (p.version == 6) {
    acc = Sum16(p.src.bytes.data(), 16, acc);
    acc = Sum16(p.dst.bytes.data(), 16, acc);
    acc += l4_len >> 16;
    acc += l4_len & 0xffff;
    acc += p.proto;
  } else {
    acc = Sum16(p.src.bytes.data() + 12, 4, acc);
    acc = Sum16(p.dst.bytes.data() + 12, 4, acc);
    acc += p.proto;
    acc += l4_len & 0xffff;
  }
  return acc;
}

// The IP header's length as written: IPv4 without options; IPv6 with a
// hop-by-hop jumbo payload option above 64 KiB and a fragment header where
// the record came from one.
bool IsJumbogram(const PacketRecord& p) { return p.version == 6 && p.ip_len > 65535 + 40; }
size_t IpHeaderLength(const PacketRecord& p) {
  if (p.version != 6) return 20;
  return 40 + (IsJumbogram(p) ? 8 : 0) + ((p.flags & kPktV6FragmentHeader) ? 8 : 0);
}

// CRC32c (Castagnoli, reflected 0x82f63b78), SCTP's checksum.
uint32_t Crc32c(const uint8_t* p, size_t n) {
  uint32_t crc = 0xffffffffu;
  for (size_t i = 0; i < n; ++i) {
    crc ^= p[i];
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1)));
  }
  return ~crc;
}

// What a whole frame's TCP header carries beyond the header-only one.
struct TcpFill {
  uint32_t seq = 0;
  uint32_t ack = 0;
  size_t options = 0;  // bytes of options, a multiple of 4, at most 20
  uint32_t ts_val = 0;
};

// The options of a SYN in `n` bytes (n a multiple of 4, <= 20), laid out as
// Linux (20: MSS, SACK permitted, timestamps, window scale) or Windows (12)
// lay them out when that is what fits.
void PutSynOptions(uint8_t* o, size_t n, uint16_t mss, uint32_t ts_val) {
  auto mss_opt = [&](uint8_t* q) { q[0] = 2, q[1] = 4, Put16(q + 2, mss); };
  auto nop_ws = [](uint8_t* q) { q[0] = 1, q[1] = 3, q[2] = 3, q[3] = 7; };
  auto ts = [&](uint8_t* q) { q[0] = 8, q[1] = 10, Put32(q + 2, ts_val), Put32(q + 6, 0); };
  if (n >= 4) mss_opt(o);
  switch (n) {
    case 8:
      nop_ws(o + 4);
      break;
    case 12:
      nop_ws(o + 4);
      o[8] = 1, o[9] = 1, o[10] = 4, o[11] = 2;  // NOP NOP SACK-permitted
      break;
    case 16:
      o[4] = 1, o[5] = 1;
      ts(o + 6);
      break;
    case 20:
      o[4] = 4, o[5] = 2;  // SACK permitted
      ts(o + 6);
      nop_ws(o + 16);
      break;
    default:
      break;
  }
}

size_t BuildFrameImpl(const PacketRecord& p, OutputLink link, const TcpFill* fill, uint8_t* buf,
                      size_t cap, uint32_t* orig_len) {
  if (cap < kMaxFrameHeader + (fill ? fill->options : 0)) return 0;
  size_t off = 0;
  if (link == OutputLink::kEthernet) {
    static constexpr uint8_t kMacs[12] = {0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01};
    std::memcpy(buf, kMacs, 12);
    Put16(buf + 12, p.version == 6 ? 0x86dd : 0x0800);
    off = 14;
  }
  uint8_t* ip = buf + off;
  const size_t ip_hdr = IpHeaderLength(p);
  bool later_fragment = p.is_later_fragment();
  if (p.version == 6) {
    bool jumbo = IsJumbogram(p);
    bool frag_hdr = (p.flags & kPktV6FragmentHeader) != 0;
    std::memset(ip, 0, ip_hdr);
    Put32(ip, 0x60000000u | uint32_t(p.tos) << 20);
    Put16(ip + 4, jumbo ? 0 : static_cast<uint16_t>(p.ip_len >= 40 ? p.ip_len - 40 : 0));
    ip[7] = p.ttl;
    std::memcpy(ip + 8, p.src.bytes.data(), 16);
    std::memcpy(ip + 24, p.dst.bytes.data(), 16);
    uint8_t* nh = ip + 6;
    size_t x = 40;
    if (jumbo) {  // hop-by-hop header with a jumbo payload option
      *nh = 0;
      nh = ip + x;
      ip[x + 1] = 0;
      ip[x + 2] = 0xc2;
      ip[x + 3] = 4;
      Put32(ip + x + 4, p.ip_len - 40);
      x += 8;
    }
    if (frag_hdr) {
      *nh = 44;
      nh = ip + x;
      Put16(ip + x + 2, uint16_t((p.frag & kFragOffsetMask) << 3 | ((p.frag & kFragMoreFragments) ? 1 : 0)));
      Put32(ip + x + 4, p.ip_id);
      x += 8;
    }
    *nh = p.proto;
  } else {
    std::memset(ip, 0, 20);
    ip[0] = 0x45;
    ip[1] = p.tos;
    Put16(ip + 2, static_cast<uint16_t>(std::min<uint32_t>(p.ip_len, 65535)));
    Put16(ip + 4, static_cast<uint16_t>(p.ip_id));
    Put16(ip + 6, p.frag);
    ip[8] = p.ttl;
    ip[9] = p.proto;
    std::memcpy(ip + 12, p.src.bytes.data() + 12, 4);
    std::memcpy(ip + 16, p.dst.bytes.data() + 12, 4);
    Put16(ip + 10, Fold(Sum16(ip, 20)));
  }
  off += ip_hdr;
  // The L4 length seen by the checksum: what the IP length leaves after headers.
  uint32_t l4_len = p.ip_len > ip_hdr ? static_cast<uint32_t>(p.ip_len - ip_hdr) : 0;
  uint8_t* l4 = buf + off;
  size_t l4_hdr = 0;
  if (!later_fragment) {
    switch (p.proto) {
      case kProtoTcp: {
        size_t opts = fill ? fill->options : 0;
        size_t hdr = 20 + opts;
        std::memset(l4, 0, hdr);
        Put16(l4, p.sport);
        Put16(l4 + 2, p.dport);
        if (fill) {
          Put32(l4 + 4, fill->seq);
          Put32(l4 + 8, fill->ack);
          PutSynOptions(l4 + 20, opts, p.version == 6 ? 1440 : 1460, fill->ts_val);
        }
        l4[12] = static_cast<uint8_t>(hdr / 4 << 4);
        l4[13] = p.tcp_flags;
        Put16(l4 + 14, 65535);
        Put16(l4 + 16, Fold(Sum16(l4, hdr, PseudoSum(p, l4_len))));
        // A packet whose IP length leaves less than a TCP header (seen in real
        // captures) keeps what fits: ports and flags when there is room.
        l4_hdr = std::min<size_t>(hdr, l4_len);
        break;
      }
      case kProtoUdp: {
        if (l4_len < 8) {
          Put16(l4, p.sport);
          Put16(l4 + 2, p.dport);
          l4_hdr = std::min<size_t>(4, l4_len);
          break;
        }
        l4_hdr = 8;
        Put16(l4, p.sport);
        Put16(l4 + 2, p.dport);
        // A jumbogram's UDP length is 0 (RFC 2675); its checksum covers the real one.
        Put16(l4 + 4, l4_len > 65535 ? 0 : static_cast<uint16_t>(l4_len));
        Put16(l4 + 6, 0);
        uint16_t sum = Fold(Sum16(l4, 8, PseudoSum(p, l4_len)));
        Put16(l4 + 6, sum == 0 ? 0xffff : sum);
        break;
      }
      case kProtoSctp:
        if (l4_len < 12) break;
        l4_hdr = 12;
        std::memset(l4, 0, 12);
        Put16(l4, p.sport);
        Put16(l4 + 2, p.dport);
        if (fill && l4_len >= 12 + 16 && l4_len <= cap - off) {
          // A whole packet: the rest is one DATA chunk (beginning and end of a
          // message, zero-filled user data) and the CRC32c covers it all.
          std::memset(l4 + 12, 0, l4_len - 12);
          l4[12] = 0;
          l4[13] = 0x03;
          Put16(l4 + 14, static_cast<uint16_t>(std::min<uint32_t>(l4_len - 12, 65535)));
          uint32_t crc = Crc32c(l4, l4_len);
          // The checksum field is little-endian (RFC 9260, appendix A).
          l4[8] = uint8_t(crc), l4[9] = uint8_t(crc >> 8), l4[10] = uint8_t(crc >> 16), l4[11] = uint8_t(crc >> 24);
          l4_hdr = 28;
        }
        break;
      case kProtoIcmp:
      case kProtoIcmpV6:
        if (l4_len < 8) break;
        l4_hdr = 8;
        std::memset(l4, 0, 8);
        l4[0] = p.proto == kProtoIcmp ? 8 : 128;  // echo request
        Put16(l4 + 2, Fold(Sum16(l4, 8, p.proto == kProtoIcmpV6 ? PseudoSum(p, l4_len) : 0)));
        break;
      default:
        break;
    }
  }
  off += l4_hdr;
  size_t link_hdr = link == OutputLink::kEthernet ? 14 : 0;
  *orig_len = static_cast<uint32_t>(link_hdr) + std::max<uint32_t>(p.ip_len, uint32_t(ip_hdr + l4_hdr));
  return off;
}

// FNV-1a: a connection's initial sequence number, the same in every run.
uint32_t InitialSequence(const FlowKey& k) {
  uint64_t h = 0xcbf29ce484222325ULL;
  auto mix = [&h](const uint8_t* b, size_t n) {
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ULL;
  };
  mix(k.src.bytes.data(), 16);
  mix(k.dst.bytes.data(), 16);
  uint8_t ports[4] = {uint8_t(k.sport >> 8), uint8_t(k.sport), uint8_t(k.dport >> 8), uint8_t(k.dport)};
  mix(ports, 4);
  return static_cast<uint32_t>(h ^ h >> 32);
}

}  // namespace

size_t BuildFrame(const PacketRecord& p, OutputLink link, uint8_t* buf, size_t cap,
                  uint32_t* orig_len) {
  return BuildFrameImpl(p, link, nullptr, buf, cap, orig_len);
}

FullFrameBuilder::Direction& FullFrameBuilder::StateOf(const FlowKey& k) {
  // Bounded: a long day of short connections would otherwise grow it without
  // end. Connections open across a reset restart their numbering.
  if (tcp_.size() >= (1u << 20) && !tcp_.contains(k)) tcp_.clear();
  auto [it, fresh] = tcp_.try_emplace(k);
  if (fresh) it->second.next_seq = InitialSequence(k);
  return it->second;
}

absl::Span<const uint8_t> FullFrameBuilder::Build(const PacketRecord& p) {
  PacketRecord q = p;
  const bool later_fragment = p.is_later_fragment();
  const size_t ip_hdr = IpHeaderLength(p);
  TcpFill fill;
  size_t l4_hdr = 0;
  if (!later_fragment) {
    switch (p.proto) {
      case kProtoTcp: {
        l4_hdr = 20;
        if (p.tcp_flags & kTcpSyn) {
          size_t slack = p.ip_len > ip_hdr + 20 ? p.ip_len - ip_hdr - 20 : 0;
          fill.options = std::min<size_t>(20, slack & ~size_t{3});
          l4_hdr += fill.options;
        }
        break;
      }
      case kProtoUdp:
      case kProtoIcmp:
      case kProtoIcmpV6:
        l4_hdr = 8;
        break;
      case kProtoSctp:
        l4_hdr = 12 + 16;  // the common header and a DATA chunk's
        break;
      default:
        // Four bytes (a GRE or ESP header's first word): tcprewrite stops on
        // an IPv4 packet with nothing past its IP header.
        l4_hdr = 4;
        break;
    }
  }
  q.ip_len = std::max<uint32_t>(p.ip_len, static_cast<uint32_t>(ip_hdr + l4_hdr));
  if (p.version == 4) q.ip_len = std::min<uint32_t>(q.ip_len, 65535);
  if (p.proto == kProtoTcp && !later_fragment) {
    FlowKey k = FlowKey::Of(p);
    FlowKey back{k.dst, k.src, k.dport, k.sport, k.proto, k.version};
    uint32_t ack = StateOf(back).next_seq;  // read first: StateOf(k) may rehash the map
    Direction& self = StateOf(k);
    fill.seq = self.next_seq;
    fill.ack = (p.tcp_flags & kTcpAck) ? ack : 0;
    fill.ts_val = static_cast<uint32_t>(p.ts_ns / 1000000);
    uint32_t payload = q.ip_len > ip_hdr + l4_hdr ? static_cast<uint32_t>(q.ip_len - ip_hdr - l4_hdr) : 0;
    self.next_seq += payload + ((p.tcp_flags & kTcpSyn) ? 1 : 0) + ((p.tcp_flags & kTcpFin) ? 1 : 0);
  }
  const size_t frame = std::min<size_t>(14 + size_t{q.ip_len}, kMaxFullFrame);
  buf_.assign(std::max(frame, kMaxFrameHeader + 20), 0);
  uint32_t orig_len;
  BuildFrameImpl(q, OutputLink::kEthernet, &fill, buf_.data(), buf_.size(), &orig_len);
  return absl::Span<const uint8_t>(buf_.data(), frame);
}

StatusOr<std::unique_ptr<PcapWriter>> PcapWriter::Open(const std::string& path,
                                                       PcapWriterOptions options) {
  std::unique_ptr<PcapWriter> w(new PcapWriter());
  w->path_ = path;
  if (options.full_packets) {
    options.link = OutputLink::kEthernet;
    w->full_ = std::make_unique<FullFrameBuilder>();
  }
  w->options_ = options;
  int dlt = options.link == OutputLink::kEthernet ? DLT_EN10MB : DLT_RAW;
  w->dead_ = pcap_open_dead_with_tstamp_precision(
      dlt, 262144, options.nanosecond ? PCAP_TSTAMP_PRECISION_NANO : PCAP_TSTAMP_PRECISION_MICRO);
  if (!w->dead_) return absl::InternalError("pcap_open_dead failed");
  if (path == "-") {
    w->dumper_ = pcap_dump_fopen(w->dead_, stdout);
  } else {
    w->dumper_ = pcap_dump_open(w->dead_, path.c_str());
  }
  if (!w->dumper_) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot write ", path, ": ", pcap_geterr(w->dead_)));
  }
  return w;
}

PcapWriter::~PcapWriter() {
  if (dumper_) pcap_dump_close(dumper_);
  if (dead_) pcap_close(dead_);
}

Status PcapWriter::Write(const PacketRecord& p) {
  if (!PcapCanRepresent(p.ts_ns)) {
    return absl::OutOfRangeError(absl::StrCat("cannot write ", path_, ": timestamp ", p.ts_ns,
                                              " ns is outside pcap's range (1970..2038)"));
  }
  uint8_t header_only[kMaxFrameHeader];
  const uint8_t* buf = header_only;
  uint32_t orig_len;
  size_t caplen;
  if (full_) {
    absl::Span<const uint8_t> f = full_->Build(p);
    buf = f.data();
    caplen = f.size();
    orig_len = static_cast<uint32_t>(f.size());
  } else {
    caplen = BuildFrame(p, options_.link, header_only, sizeof header_only, &orig_len);
  }
  struct pcap_pkthdr hdr;
  int64_t div = options_.nanosecond ? 1 : 1000;
  int64_t ts = p.ts_ns / div;
  int64_t per_sec = options_.nanosecond ? 1000000000 : 1000000;
  hdr.ts.tv_sec = ts / per_sec;
  hdr.ts.tv_usec = ts % per_sec;
  if (hdr.ts.tv_usec < 0) {
    hdr.ts.tv_usec += per_sec;
    hdr.ts.tv_sec -= 1;
  }
  hdr.caplen = static_cast<bpf_u_int32>(caplen);
  hdr.len = orig_len;
  pcap_dump(reinterpret_cast<u_char*>(dumper_), &hdr, const_cast<uint8_t*>(buf));
  ++packets_;
  return absl::OkStatus();
}

Status PcapWriter::Close() {
  if (!dumper_) return absl::OkStatus();
  bool failed = pcap_dump_flush(dumper_) != 0;
  pcap_dump_close(dumper_);
  dumper_ = nullptr;
  if (failed) return absl::DataLossError(absl::StrCat("cannot write ", path_, ": flush failed (disk full?)"));
  return absl::OkStatus();
}

}  // namespace dgc
