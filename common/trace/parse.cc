#include "common/trace/parse.h"

namespace dgc {
namespace {

inline uint16_t Be16(const uint8_t* p) { return uint16_t(p[0] << 8 | p[1]); }
inline uint32_t Be32(const uint8_t* p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3];
}
inline uint16_t Le16(const uint8_t* p) { return uint16_t(p[1] << 8 | p[0]); }

constexpr uint16_t kEtherIpv4 = 0x0800;
constexpr uint16_t kEtherIpv6 = 0x86dd;
constexpr uint16_t kEtherVlan = 0x8100;
constexpr uint16_t kEtherQinQ = 0x88a8;
constexpr uint16_t kEtherQinQOld = 0x9100;
constexpr uint16_t kEtherQinQOld2 = 0x9200;
constexpr uint16_t kEtherMplsUc = 0x8847;
constexpr uint16_t kEtherMplsMc = 0x8848;
constexpr uint16_t kEtherPppoeSession = 0x8864;
constexpr int kMaxEncapsulations = 16;

// Fills the L4 fields from `l4` (caplen bytes available) for `proto`.
void ParseL4(uint8_t proto, const uint8_t* l4, size_t avail, PacketRecord* out) {
  if (!ProtoHasPorts(proto)) return;
  if (avail < 4) {
    out->flags |= kPktL4Truncated;
    return;
  }
  out->sport = Be16(l4);
  out->dport = Be16(l4 + 2);
  if (proto == kProtoTcp) {
    if (avail < 14) {
      out->flags |= kPktL4Truncated;
      return;
    }
    out->tcp_flags = l4[13];
  }
}

ParseOutcome ParseIpv4(const uint8_t* p, size_t caplen, size_t wirelen, PacketRecord* out) {
  if (caplen < 20) return ParseOutcome::kMalformed;
  size_t ihl = size_t(p[0] & 0x0f) * 4;
  if (ihl < 20) return ParseOutcome::kMalformed;
  out->version = 4;
  out->tos = p[1];
  uint16_t tot_len = Be16(p + 2);
  // TCP segmentation offload captures carry 0 here: the wire tells the length.
  out->ip_len = tot_len != 0 ? tot_len : static_cast<uint32_t>(wirelen);
  out->ip_id = Be16(p + 4);
  out->frag = Be16(p + 6) & (kFragDontFragment | kFragMoreFragments | kFragOffsetMask);
  out->ttl = p[8];
  out->proto = p[9];
  out->src = IpAddress::FromV4(p + 12);
  out->dst = IpAddress::FromV4(p + 16);
  if ((out->frag & kFragOffsetMask) != 0) return ParseOutcome::kIp;  // no L4 header here
  if (caplen < ihl) {
    if (ProtoHasPorts(out->proto)) out->flags |= kPktL4Truncated;
    return ParseOutcome::kIp;
  }
  ParseL4(out->proto, p + ihl, caplen - ihl, out);
  return ParseOutcome::kIp;
}

bool IsIpv6ExtensionHeader(uint8_t nh) {
  switch (nh) {
    case 0: case 43: case 44: case 51: case 60: case 135: case 139: case 140: case 253: case 254:
      return true;
    default:
      return false;
  }
}

ParseOutcome ParseIpv6(const uint8_t* p, size_t caplen, size_t wirelen, PacketRecord* out) {
  if (caplen < 40) return ParseOutcome::kMalformed;
  out->version = 6;
  out->tos = uint8_t((Be16(p) >> 4) & 0xff);
  uint16_t plen = Be16(p + 4);
  out->ip_len = uint32_t(plen) + 40;
  out->ttl = p[7];
  out->src = IpAddress::FromV6(p + 8);
  out->dst = IpAddress::FromV6(p + 24);
  uint8_t nh = p[6];
  size_t off = 40;
  for (int i = 0; i < kMaxEncapsulations && IsIpv6ExtensionHeader(nh); ++i) {
    if (off + 8 > caplen) {  // the capture ends inside the extension headers
      out->proto = nh;
      out->flags |= kPktL4Truncated;
      return ParseOutcome::kIp;
    }
    const uint8_t* h = p + off;
    size_t len;
    if (nh == 44) {  // fragment header
      len = 8;
      uint16_t offset_units = Be16(h + 2) >> 3;
      out->frag = uint16_t(offset_units & kFragOffsetMask) | ((h[3] & 1) ? kFragMoreFragments : 0);
      out->ip_id = Be32(h + 4);
      out->flags |= kPktV6FragmentHeader;
      if (offset_units != 0) {
        out->proto = h[0];
        return ParseOutcome::kIp;
      }
    } else if (nh == 51) {  // AH: length in 4-byte units, minus 2
      len = (size_t(h[1]) + 2) * 4;
    } else {
      len = (size_t(h[1]) + 1) * 8;
      if (nh == 0 && plen == 0) {  // hop-by-hop: look for a jumbo payload option
        for (size_t o = 2; o + 6 <= len && off + o + 6 <= caplen;) {
          uint8_t type = h[o];
          if (type == 0) {  // Pad1
            ++o;
            continue;
          }
          if (type == 0xc2 && h[o + 1] == 4) {
            out->ip_len = Be32(h + o + 2) + 40;
            break;
          }
          o += 2 + size_t(h[o + 1]);
        }
      }
    }
    nh = h[0];
    off += len;
  }
  out->proto = nh;
  if (off > caplen) {
    if (ProtoHasPorts(nh)) out->flags |= kPktL4Truncated;
    return ParseOutcome::kIp;
  }
  ParseL4(nh, p + off, caplen - off, out);
  (void)wirelen;
  return ParseOutcome::kIp;
}

ParseOutcome ParseByVersion(const uint8_t* p, size_t caplen, size_t wirelen, PacketRecord* out) {
  if (caplen < 1) return ParseOutcome::kMalformed;
  switch (p[0] >> 4) {
    case 4:
      return ParseIpv4(p, caplen, wirelen, out);
    case 6:
      return ParseIpv6(p, caplen, wirelen, out);
    default:
      return ParseOutcome::kNonIp;
  }
}

ParseOutcome ParseEthernetPayload(uint16_t type, const uint8_t* p, size_t caplen, size_t wirelen,
                                  PacketRecord* out, int depth);

// An Ethernet frame starting at its destination MAC.
ParseOutcome ParseEthernet(const uint8_t* p, size_t caplen, size_t wirelen, PacketRecord* out,
                           int depth) {
  if (caplen < 14) return ParseOutcome::kNonIp;
  return ParseEthernetPayload(Be16(p + 12), p + 14, caplen - 14, wirelen > 14 ? wirelen - 14 : 0,
                              out, depth);
}

ParseOutcome ParseMpls(const uint8_t* p, size_t caplen, size_t wirelen, PacketRecord* out,
                       int depth) {
  for (int i = 0; i < kMaxEncapsulations; ++i) {
    if (caplen < 4) return ParseOutcome::kNonIp;
    bool bottom = p[2] & 1;
    p += 4;
    caplen -= 4;
    wirelen = wirelen > 4 ? wirelen - 4 : 0;
    if (bottom) {
      if (caplen < 1) return ParseOutcome::kNonIp;
      uint8_t nibble = p[0] >> 4;
      if (nibble == 4 || nibble == 6) return ParseByVersion(p, caplen, wirelen, out);
      if (nibble == 0 && caplen >= 4 + 14) {  // pseudowire control word, then Ethernet
        return ParseEthernet(p + 4, caplen - 4, wirelen > 4 ? wirelen - 4 : 0, out, depth + 1);
      }
      return ParseOutcome::kNonIp;
    }
  }
  return ParseOutcome::kNonIp;
}

ParseOutcome ParseEthernetPayload(uint16_t type, const uint8_t* p, size_t caplen, size_t wirelen,
                                  PacketRecord* out, int depth) {
  for (int i = 0; i < kMaxEncapsulations && depth < kMaxEncapsulations; ++i) {
    switch (type) {
      case kEtherIpv4:
      case kEtherIpv6:
        return ParseByVersion(p, caplen, wirelen, out);
      case kEtherVlan:
      case kEtherQinQ:
      case kEtherQinQOld:
      case kEtherQinQOld2:
        if (caplen < 4) return ParseOutcome::kNonIp;
        type = Be16(p + 2);
        p += 4;
        caplen -= 4;
        wirelen = wirelen > 4 ? wirelen - 4 : 0;
        continue;
      case kEtherMplsUc:
      case kEtherMplsMc:
        return ParseMpls(p, caplen, wirelen, out, depth + 1);
      case kEtherPppoeSession: {
        if (caplen < 8) return ParseOutcome::kNonIp;
        uint16_t ppp = Be16(p + 6);
        if (ppp == 0x0021 || ppp == 0x0057) return ParseByVersion(p + 8, caplen - 8, wirelen > 8 ? wirelen - 8 : 0, out);
        return ParseOutcome::kNonIp;
      }
      default:
        if (type < 0x0600) {  // 802.3 length field: only LLC/SNAP can carry IP
          if (caplen >= 8 && p[0] == 0xaa && p[1] == 0xaa && p[2] == 0x03) {
            type = Be16(p + 6);
            p += 8;
            caplen -= 8;
            wirelen = wirelen > 8 ? wirelen - 8 : 0;
            continue;
          }
        }
        return ParseOutcome::kNonIp;
    }
  }
  return ParseOutcome::kNonIp;
}

ParseOutcome ParseIeee80211(const uint8_t* p, size_t caplen, size_t wirelen, PacketRecord* out) {
  if (caplen < 24) return ParseOutcome::kNonIp;
  uint8_t fc0 = p[0], fc1 = p[1];
  uint8_t type = (fc0 >> 2) & 3, subtype = (fc0 >> 4) & 0xf;
  if (type != 2 || (subtype & 0x4) != 0) return ParseOutcome::kNonIp;  // not data, or null data
  if (fc1 & 0x40) return ParseOutcome::kNonIp;                          // protected: encrypted
  size_t hdr = 24;
  if ((fc1 & 3) == 3) hdr += 6;  // four-address frame
  if (subtype & 0x8) {           // QoS data
    hdr += 2;
    if (fc1 & 0x80) hdr += 4;  // HT control
  }
  if (caplen < hdr + 8) return ParseOutcome::kNonIp;
  const uint8_t* llc = p + hdr;
  if (llc[0] != 0xaa || llc[1] != 0xaa || llc[2] != 0x03) return ParseOutcome::kNonIp;
  size_t skip = hdr + 8;
  return ParseEthernetPayload(Be16(llc + 6), p + skip, caplen - skip,
                              wirelen > skip ? wirelen - skip : 0, out, 1);
}

ParseOutcome ParseLoopback(uint32_t family, const uint8_t* p, size_t caplen, size_t wirelen,
                           PacketRecord* out) {
  switch (family) {
    case 2:
      return ParseByVersion(p, caplen, wirelen, out);
    case 10: case 24: case 28: case 30:  // AF_INET6 on Linux, NetBSD/OpenBSD, FreeBSD, macOS
      return ParseByVersion(p, caplen, wirelen, out);
    default:
      return ParseOutcome::kNonIp;
  }
}

}  // namespace

ParseOutcome ParseIp(const uint8_t* data, size_t caplen, size_t wirelen, PacketRecord* out) {
  return ParseByVersion(data, caplen, wirelen, out);
}

ParseOutcome ParseFrame(int linktype, const uint8_t* d, size_t caplen, size_t wirelen,
                        PacketRecord* out) {
  int64_t ts = out->ts_ns;
  *out = PacketRecord{};
  out->ts_ns = ts;
  switch (linktype) {
    case kLinkEthernet:
      return ParseEthernet(d, caplen, wirelen, out, 0);
    case kLinkRaw:
    case kLinkRawOpenBsd:
    case kLinkRawLinktype:
    case kLinkIpv4:
    case kLinkIpv6:
      return ParseByVersion(d, caplen, wirelen, out);
    case kLinkNull: {
      if (caplen < 4) return ParseOutcome::kNonIp;
      uint32_t fam = uint32_t(d[0]) | uint32_t(d[1]) << 8 | uint32_t(d[2]) << 16 | uint32_t(d[3]) << 24;
      if (fam & 0xffff0000u) fam = __builtin_bswap32(fam);  // written on the other byte order
      return ParseLoopback(fam, d + 4, caplen - 4, wirelen > 4 ? wirelen - 4 : 0, out);
    }
    case kLinkLoop:
      if (caplen < 4) return ParseOutcome::kNonIp;
      return ParseLoopback(Be32(d), d + 4, caplen - 4, wirelen > 4 ? wirelen - 4 : 0, out);
    case kLinkLinuxSll:
      if (caplen < 16) return ParseOutcome::kNonIp;
      return ParseEthernetPayload(Be16(d + 14), d + 16, caplen - 16, wirelen > 16 ? wirelen - 16 : 0,
                                  out, 0);
    case kLinkLinuxSll2:
      if (caplen < 20) return ParseOutcome::kNonIp;
      return ParseEthernetPayload(Be16(d), d + 20, caplen - 20, wirelen > 20 ? wirelen - 20 : 0, out,
                                  0);
    case kLinkRadiotap: {
      if (caplen < 4) return ParseOutcome::kNonIp;
      size_t len = Le16(d + 2);
      if (len < 8 || len > caplen) return ParseOutcome::kNonIp;
      return ParseIeee80211(d + len, caplen - len, wirelen > len ? wirelen - len : 0, out);
    }
    case kLinkIeee80211:
      return ParseIeee80211(d, caplen, wirelen, out);
    default:
      return ParseOutcome::kUnsupportedLink;
  }
}

bool IsSupportedLinkType(int linktype) {
  switch (linktype) {
    case kLinkNull: case kLinkEthernet: case kLinkRaw: case kLinkRawOpenBsd: case kLinkRawLinktype:
    case kLinkIeee80211: case kLinkLoop: case kLinkLinuxSll: case kLinkRadiotap: case kLinkIpv4:
    case kLinkIpv6: case kLinkLinuxSll2:
      return true;
    default:
      return false;
  }
}

const char* LinkTypeName(int linktype) {
  switch (linktype) {
    case kLinkNull: return "bsd-loopback";
    case kLinkEthernet: return "ethernet";
    case kLinkRaw: case kLinkRawOpenBsd: case kLinkRawLinktype: return "raw-ip";
    case kLinkIeee80211: return "ieee802.11";
    case kLinkLoop: return "loop";
    case kLinkLinuxSll: return "linux-sll";
    case kLinkRadiotap: return "radiotap";
    case kLinkIpv4: return "raw-ipv4";
    case kLinkIpv6: return "raw-ipv6";
    case kLinkLinuxSll2: return "linux-sll2";
    default: return "unsupported";
  }
}

}  // namespace dgc
