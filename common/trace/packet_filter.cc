#include "common/trace/packet_filter.h"

#include <pcap/pcap.h>

#include "absl/strings/str_cat.h"

namespace dgc {

struct PacketFilter::Impl {
  pcap_t* dead = nullptr;
  bpf_program program{};
  bool compiled = false;
  OutputLink link = OutputLink::kRawIp;
  ~Impl() {
    if (compiled) pcap_freecode(&program);
    if (dead) pcap_close(dead);
  }
};

PacketFilter::~PacketFilter() = default;

StatusOr<std::unique_ptr<PacketFilter>> PacketFilter::Compile(const std::string& expression, OutputLink link) {
  std::unique_ptr<PacketFilter> f(new PacketFilter());
  f->impl_ = std::make_unique<Impl>();
  f->impl_->link = link;
  f->impl_->dead = pcap_open_dead(link == OutputLink::kEthernet ? DLT_EN10MB : DLT_RAW, 262144);
  if (!f->impl_->dead) return absl::InternalError("pcap_open_dead failed");
  if (pcap_compile(f->impl_->dead, &f->impl_->program, expression.c_str(), 1, PCAP_NETMASK_UNKNOWN) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad filter '", expression, "': ", pcap_geterr(f->impl_->dead)));
  }
  f->impl_->compiled = true;
  return f;
}

bool PacketFilter::Matches(const PacketRecord& p) const {
  uint8_t buf[kMaxFrameHeader];
  uint32_t orig;
  size_t caplen = BuildFrame(p, impl_->link, buf, sizeof buf, &orig);
  pcap_pkthdr hdr{};
  hdr.caplen = static_cast<bpf_u_int32>(caplen);
  hdr.len = orig;
  return pcap_offline_filter(&impl_->program, &hdr, buf) != 0;
}

}  // namespace dgc
