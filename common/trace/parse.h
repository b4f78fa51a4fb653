// Frame parsing: one captured frame of a given link type to a PacketRecord.
// Pure function over bytes, no allocation; the fuzz target drives it directly.
#ifndef DGC_COMMON_TRACE_PARSE_H_
#define DGC_COMMON_TRACE_PARSE_H_

#include <cstddef>
#include <cstdint>

#include "common/trace/packet.h"

namespace dgc {

// Link types as libpcap reports them (pcap_datalink), plus the LINKTYPE_ values
// that some files carry and libpcap passes through unchanged.
constexpr int kLinkNull = 0;        // BSD loopback, host-order address family
constexpr int kLinkEthernet = 1;
constexpr int kLinkRaw = 12;        // DLT_RAW on Linux
constexpr int kLinkRawOpenBsd = 14; // DLT_RAW on OpenBSD / LINKTYPE 14
constexpr int kLinkRawLinktype = 101;  // LINKTYPE_RAW
constexpr int kLinkIeee80211 = 105;
constexpr int kLinkLoop = 108;      // OpenBSD loopback, network-order family
constexpr int kLinkLinuxSll = 113;
constexpr int kLinkRadiotap = 127;
constexpr int kLinkIpv4 = 228;
constexpr int kLinkIpv6 = 229;
constexpr int kLinkLinuxSll2 = 276;

enum class ParseOutcome {
  kIp,         // an IPv4/IPv6 packet; *out is filled
  kNonIp,      // a well-formed frame that carries no IP (ARP, LLDP, STP, ...)
  kMalformed,  // claims to carry IP but the IP header is unusable (counted as an error)
  kUnsupportedLink,  // link type dgc does not decode
};

// Parses `caplen` captured bytes of a frame whose length on the wire was
// `wirelen`. On kIp, `out` holds every field except ts_ns. Never reads past
// `data + caplen`; safe on arbitrary bytes.
ParseOutcome ParseFrame(int linktype, const uint8_t* data, size_t caplen, size_t wirelen,
                        PacketRecord* out);

// Parses an IP packet starting at its first header byte. Used by ParseFrame
// after the link layer, and by tests.
ParseOutcome ParseIp(const uint8_t* data, size_t caplen, size_t wirelen, PacketRecord* out);

bool IsSupportedLinkType(int linktype);
const char* LinkTypeName(int linktype);

}  // namespace dgc

#endif  // DGC_COMMON_TRACE_PARSE_H_
