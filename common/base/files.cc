#include "common/base/files.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace dgc {
namespace fs = std::filesystem;

StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return ErrnoError(errno, "cannot open", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return ErrnoError(errno, "cannot read", path);
  return std::move(ss).str();
}

namespace {
Status WriteAll(int fd, absl::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, "cannot write", path);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

std::string TempPathOf(const std::string& path) { return absl::StrCat(path, ".tmp.", ::getpid()); }

std::string DirOf(const std::string& path) {
  std::string dir = fs::path(path).parent_path().string();
  return dir.empty() ? "." : dir;
}

// Writes `data` to `tmp` (created or truncated), with an fsync when `sync`.
// On failure the file is removed.
Status WriteTemp(const std::string& tmp, absl::string_view data, bool sync) {
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError(errno, "cannot create", tmp);
  Status st = WriteAll(fd, data, tmp);
  if (st.ok() && sync && ::fsync(fd) != 0) st = ErrnoError(errno, "cannot fsync", tmp);
  if (::close(fd) != 0 && st.ok()) st = ErrnoError(errno, "cannot close", tmp);
  if (!st.ok()) ::unlink(tmp.c_str());
  return st;
}

void SyncDir(const std::string& dir) {
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);  // best effort: some filesystems refuse fsync on directories
    ::close(dfd);
  }
}
}  // namespace

Status WriteFileAtomic(const std::string& path, absl::string_view data) {
  const std::string tmp = TempPathOf(path);
  DGC_RETURN_IF_ERROR(WriteTemp(tmp, data, /*sync=*/true));
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    Status st = ErrnoError(errno, "cannot rename to", path);
    ::unlink(tmp.c_str());
    return st;
  }
  SyncDir(DirOf(path));
  return absl::OkStatus();
}

Status FileBatch::Add(const std::string& path, absl::string_view data) {
  if (paths_.count(path) > 0) {
    return absl::FailedPreconditionError(absl::StrCat(path, ": written twice in one batch"));
  }
  std::string tmp = TempPathOf(path);
  DGC_RETURN_IF_ERROR(WriteTemp(tmp, data, /*sync=*/false));
  paths_.insert(path);
  entries_.push_back(Entry{path, std::move(tmp)});
  bytes_ += data.size();
  return absl::OkStatus();
}

Status FileBatch::Commit() {
  if (entries_.empty()) return absl::OkStatus();
  // One syncfs per file system (st_dev), through a directory on it; where
  // syncfs is refused, an fsync of each file of that directory instead.
  std::set<std::string> dirs;
  for (const Entry& e : entries_) dirs.insert(DirOf(e.path));
  std::set<dev_t> synced;
  Status st;
  for (const std::string& dir : dirs) {
    struct stat sb;
    if (::stat(dir.c_str(), &sb) != 0) {
      st = ErrnoError(errno, "cannot stat", dir);
      break;
    }
    if (synced.count(sb.st_dev) > 0) continue;
    int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
      st = ErrnoError(errno, "cannot open", dir);
      break;
    }
    const bool ok = ::syncfs(dfd) == 0;
    const int err = errno;
    ::close(dfd);
    if (ok) {
      synced.insert(sb.st_dev);
      continue;
    }
    if (err != ENOSYS && err != EINVAL) {
      st = ErrnoError(err, "cannot sync the file system of", dir);
      break;
    }
    for (const Entry& e : entries_) {
      if (DirOf(e.path) != dir) continue;
      int fd = ::open(e.tmp.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0 || ::fsync(fd) != 0) st = ErrnoError(errno, "cannot fsync", e.tmp);
      if (fd >= 0) ::close(fd);
      if (!st.ok()) break;
    }
    if (!st.ok()) break;
  }
  if (!st.ok()) {
    Abort();
    return st;
  }
  size_t renamed = 0;
  for (; renamed < entries_.size(); ++renamed) {
    const Entry& e = entries_[renamed];
    if (::rename(e.tmp.c_str(), e.path.c_str()) != 0) {
      st = ErrnoError(errno, "cannot rename to", e.path);
      break;
    }
  }
  for (const std::string& dir : dirs) SyncDir(dir);
  entries_.erase(entries_.begin(), entries_.begin() + static_cast<std::ptrdiff_t>(renamed));
  Abort();  // what a failed rename left
  return st;
}

void FileBatch::Abort() {
  for (const Entry& e : entries_) ::unlink(e.tmp.c_str());
  entries_.clear();
  paths_.clear();
  bytes_ = 0;
}

StatusOr<std::vector<std::string>> ListFiles(const std::string& dir) {
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) return ErrnoError(ec.value(), "cannot list", dir);
  std::vector<std::string> out;
  for (const auto& entry : it) {
    std::string name = entry.path().filename().string();
    if (name.empty() || name[0] == '.' || absl::StrContains(name, ".tmp.")) continue;
    std::error_code sec;
    if (!entry.is_regular_file(sec)) continue;
    out.push_back(entry.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::optional<int> AtomicWriteTempPid(absl::string_view name) {
  const size_t at = name.rfind(".tmp.");
  if (at == absl::string_view::npos) return std::nullopt;
  const absl::string_view digits = name.substr(at + 5);
  if (digits.empty() || !std::all_of(digits.begin(), digits.end(), [](unsigned char c) { return std::isdigit(c); })) {
    return std::nullopt;
  }
  int pid = 0;
  if (!absl::SimpleAtoi(digits, &pid) || pid <= 0) return std::nullopt;
  return pid;
}

StatusOr<std::vector<std::string>> RemoveStaleTempFiles(const std::string& dir) {
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) return ErrnoError(ec.value(), "cannot list", dir);
  std::vector<std::string> removed;
  for (const auto& entry : it) {
    const std::string name = entry.path().filename().string();
    const std::optional<int> pid = AtomicWriteTempPid(name);
    if (!pid) continue;
    if (::kill(*pid, 0) == 0 || errno != ESRCH) continue;  // its writer lives (or is not ours to judge)
    std::error_code rec;
    if (fs::remove(entry.path(), rec)) removed.push_back(entry.path().string());
  }
  std::sort(removed.begin(), removed.end());
  return removed;
}

Status MakeDirs(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return ErrnoError(ec.value(), "cannot create directory", dir);
  return absl::OkStatus();
}

}  // namespace dgc
