// One rule for when a capture file in a followed directory is complete, for
// `dgc-ingest DIR --follow` and `dgcctl compress --follow DIR` alike:
//  - candidates are regular files directly inside the directory, except
//    hidden ones (".name") and names ending in .part, .partial, .tmp or
//    .dgc.json, and WriteFileAtomic's "*.tmp.<pid>" leftovers: a writer
//    writes under such a name and renames the file into place when done;
//  - a candidate is complete when a later one (by name) exists in the same
//    directory, or when it is not empty and its size and modification time
//    have not changed for `settle_seconds`;
//  - files are handed out in name order, once each: nothing after a file of
//    the same directory that is not complete yet.
#ifndef DGC_COMMON_BASE_DIRECTORY_FOLLOWER_H_
#define DGC_COMMON_BASE_DIRECTORY_FOLLOWER_H_

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "common/base/status.h"

namespace dgc {

class DirectoryFollower {
 public:
  using Clock = std::chrono::steady_clock;
  // NotFound when a directory does not exist.
  [[nodiscard]] static StatusOr<DirectoryFollower> Create(std::vector<std::string> dirs, double settle_seconds);

  // Files that became complete since the last call (every directory, each in
  // name order). `now` is injectable for tests.
  std::vector<std::string> Poll(Clock::time_point now = Clock::now());

  // Whether `name` (a file name, no directory) can be a capture at all.
  static bool Candidate(const std::string& name);

 private:
  DirectoryFollower(std::vector<std::string> dirs, double settle_seconds)
      : dirs_(std::move(dirs)), settle_(settle_seconds) {}
  struct Seen {
    uintmax_t size = 0;
    std::filesystem::file_time_type mtime;
    Clock::time_point stable_since;
  };
  std::vector<std::string> dirs_;
  double settle_;
  std::map<std::string, Seen> watching_;  // seen, not complete yet
  std::set<std::string> done_;            // handed out
};

}  // namespace dgc

#endif  // DGC_COMMON_BASE_DIRECTORY_FOLLOWER_H_
