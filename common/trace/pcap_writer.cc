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

}  // namespace

size_t BuildFrame(const PacketRecord& p, OutputLink link, uint8_t* buf, size_t cap,
                  uint32_t* orig_len) {
  if (cap < kMaxFrameHeader) return 0;
  size_t off = 0;
  if (link == OutputLink::kEthernet) {
    static constexpr uint8_t kMacs[12] = {0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01};
    std::memcpy(buf, kMacs, 12);
    Put16(buf + 12, p.version == 6 ? 0x86dd : 0x0800);
    off = 14;
  }
  uint8_t* ip = buf + off;
  size_t ip_hdr;
  bool later_fragment = p.is_later_fragment();
  if (p.version == 6) {
    bool jumbo = p.ip_len > 65535 + 40;
    bool frag_hdr = (p.flags & kPktV6FragmentHeader) != 0;
    ip_hdr = 40 + (jumbo ? 8 : 0) + (frag_hdr ? 8 : 0);
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
    ip_hdr = 20;
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
      case kProtoTcp:
        std::memset(l4, 0, 20);
        Put16(l4, p.sport);
        Put16(l4 + 2, p.dport);
        l4[12] = 5 << 4;
        l4[13] = p.tcp_flags;
        Put16(l4 + 14, 65535);
        Put16(l4 + 16, Fold(Sum16(l4, 20, PseudoSum(p, l4_len))));
        // A packet whose IP length leaves less than a TCP header (seen in real
        // captures) keeps what fits: ports and flags when there is room.
        l4_hdr = std::min<size_t>(20, l4_len);
        break;
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
        Put16(l4 + 4, static_cast<uint16_t>(std::min<uint32_t>(l4_len, 65535)));
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

StatusOr<std::unique_ptr<PcapWriter>> PcapWriter::Open(const std::string& path,
                                                       PcapWriterOptions options) {
  std::unique_ptr<PcapWriter> w(new PcapWriter());
  w->path_ = path;
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
  uint8_t buf[kMaxFrameHeader];
  uint32_t orig_len;
  size_t caplen = BuildFrame(p, options_.link, buf, sizeof buf, &orig_len);
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
  pcap_dump(reinterpret_cast<u_char*>(dumper_), &hdr, buf);
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
