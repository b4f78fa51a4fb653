#include "common/base/directory_follower.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/files.h"

namespace dgc {
namespace fs = std::filesystem;

bool DirectoryFollower::Candidate(const std::string& name) {
  if (name.empty() || name[0] == '.') return false;
  for (const char* s : {".part", ".partial", ".tmp", ".dgc.json"}) {
    if (absl::EndsWith(name, s)) return false;
  }
  // "<name>.tmp.<pid>": an atomic write in progress (or a killed one's leftover).
  return !AtomicWriteTempPid(name);
}

StatusOr<DirectoryFollower> DirectoryFollower::Create(std::vector<std::string> dirs, double settle_seconds) {
  for (const auto& d : dirs) {
    std::error_code ec;
    if (!fs::is_directory(d, ec)) return absl::NotFoundError(absl::StrCat("--follow: ", d, " is not a directory"));
  }
  return DirectoryFollower(std::move(dirs), settle_seconds);
}

std::vector<std::string> DirectoryFollower::Poll(Clock::time_point now) {
  std::vector<std::string> out;
  for (const auto& dir : dirs_) {
    std::vector<std::string> names;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      std::error_code e2;
      if (e.is_regular_file(e2) && Candidate(e.path().filename().string()) && !done_.count(e.path().string())) {
        names.push_back(e.path().string());
      }
    }
    std::sort(names.begin(), names.end());
    for (size_t i = 0; i < names.size(); ++i) {
      const std::string& path = names[i];
      std::error_code e1;
      const uintmax_t size = fs::file_size(path, e1);
      const auto mtime = fs::last_write_time(path, e1);
      if (e1) break;  // vanished meanwhile: look again next poll
      auto [it, fresh] = watching_.try_emplace(path, Seen{size, mtime, now});
      if (!fresh && (it->second.size != size || it->second.mtime != mtime)) it->second = Seen{size, mtime, now};
      const bool settled =
          size > 0 && std::chrono::duration<double>(now - it->second.stable_since).count() >= settle_;
      if (i + 1 >= names.size() && !settled) break;  // the newest file, still being written
      watching_.erase(it);
      done_.insert(path);
      out.push_back(path);
    }
  }
  return out;
}

}  // namespace dgc
