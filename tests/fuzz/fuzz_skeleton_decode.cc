// Fuzzes the skeleton decoder (formats 1 to 3) and the chunk artifact
// decoder that holds it: any bytes give a skeleton (or artifact) or an
// error, never a crash, a hang or an absurd allocation. A skeleton that
// decodes must re-encode (format 3) to one that decodes to the same counts,
// windows and exact flows.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/model/artifact.h"
#include "common/model/skeleton.h"

namespace {

[[noreturn]] void Differs(const char* what) {
  std::fprintf(stderr, "re-encoded skeleton differs: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  auto s = dgc::model::Skeleton::Decode(bytes, "fuzz");
  if (s.ok()) {
    auto again = dgc::model::Skeleton::Decode(s->Encode(), "fuzz again");
    if (!again.ok()) Differs("does not decode");
    if (again->start_ns != s->start_ns || again->duration_ns != s->duration_ns || again->bin_ns != s->bin_ns) {
      Differs("times");
    }
    if (again->new_flows != s->new_flows || again->packets != s->packets || again->bytes != s->bytes) Differs("bins");
    if (again->window_ns != s->window_ns || again->windows != s->windows || !(again->total == s->total)) {
      Differs("windows");
    }
    if (again->exact != s->exact) Differs("exact flows");
  }
  auto a = dgc::model::ChunkArtifact::Decode(bytes, "fuzz");
  if (a.ok() && !a->skeleton.empty()) (void)dgc::model::Skeleton::Decode(a->skeleton, "fuzz artifact");
  return 0;
}
