#include "common/trace/packet.h"

#include <arpa/inet.h>

namespace dgc {

std::string IpAddress::ToString(bool v6) const {
  char buf[INET6_ADDRSTRLEN];
  if (!v6) {
    ::inet_ntop(AF_INET, &bytes[12], buf, sizeof buf);
  } else {
    ::inet_ntop(AF_INET6, bytes.data(), buf, sizeof buf);
  }
  return buf;
}

}  // namespace dgc
