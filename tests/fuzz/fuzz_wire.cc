// Fuzzes the wire codec (common/wire/codec.h): any bytes give a message or an
// error Status, never a crash, a hang, an uncaught kj exception or an
// allocation beyond the size cap. A message that decodes must re-encode and
// decode again to the same kind and the same bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/wire/codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  dgc::wire::DecodeOptions options;
  options.max_message_bytes = 1 << 20;
  auto decoded = dgc::wire::Decode(
      absl::string_view(reinterpret_cast<const char*>(data), size), options);
  if (!decoded.ok()) {
    if (decoded.status().message().empty()) std::abort();  // errors must say what was wrong
    return 0;
  }
  auto again = dgc::wire::Encode(decoded->message);
  if (!again.ok()) std::abort();
  auto twice = dgc::wire::Decode(*again);
  if (!twice.ok() || twice->kind() != decoded->kind()) std::abort();
  auto thrice = dgc::wire::Encode(twice->message);
  if (!thrice.ok() || *thrice != *again) std::abort();  // canonical after one trip
  return 0;
}
