#include "common/base/fault.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>
#include <deque>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"

namespace dgc {
namespace {

struct Armed {
  std::string name;
  long target = 1;
  std::atomic<long> hits{0};
};

// Parsed once; never freed (points may be reached during static teardown).
std::deque<Armed>* ParseFaults() {
  const char* env = std::getenv("DGC_FAULT");
  if (env == nullptr || *env == '\0') return nullptr;
  auto* armed = new std::deque<Armed>();  // a deque: Armed holds an atomic and never moves
  std::vector<std::string> items = absl::StrSplit(env, ',', absl::SkipEmpty());
  for (const std::string& item : items) {
    std::vector<std::string> parts = absl::StrSplit(item, absl::MaxSplits(':', 1));
    long n = 1;
    if (parts.size() == 2 && (!absl::SimpleAtoi(parts[1], &n) || n < 1)) {
      // A malformed spec must not silently disarm a crash test.
      std::string msg = "dgc: DGC_FAULT item '" + item + "' is not POINT or POINT:N with N >= 1\n";
      (void)!::write(2, msg.data(), msg.size());
      std::_Exit(2);
    }
    armed->emplace_back();
    armed->back().name = parts[0];
    armed->back().target = n;
  }
  return armed;
}

std::deque<Armed>* Faults() {
  static std::deque<Armed>* faults = ParseFaults();
  return faults;
}

}  // namespace

void FaultPoint(const char* name) {
  std::deque<Armed>* faults = Faults();
  if (faults == nullptr) return;
  for (Armed& a : *faults) {
    if (a.name != name) continue;
    long hit = a.hits.fetch_add(1) + 1;
    if (hit != a.target) continue;
    std::string msg = "dgc fault point " + a.name + " hit " + std::to_string(hit) + ": SIGKILL\n";
    (void)!::write(2, msg.data(), msg.size());
    ::kill(::getpid(), SIGKILL);
    ::pause();
  }
}

}  // namespace dgc
