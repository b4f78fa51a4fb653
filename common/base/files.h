// Small file helpers: whole-file reads, crash-safe writes, directory listing.
#ifndef DGC_COMMON_BASE_FILES_H_
#define DGC_COMMON_BASE_FILES_H_

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "absl/strings/string_view.h"

#include "common/base/status.h"

namespace dgc {

// Reads a whole file. NotFound when it does not exist.
[[nodiscard]] StatusOr<std::string> ReadFile(const std::string& path);

// Writes `data` to `path` so that a crash leaves either the old file or the
// new one, never a torn one: write to "<path>.tmp.<pid>", fsync, rename, fsync
// the directory. On failure the temporary file is removed.
[[nodiscard]] Status WriteFileAtomic(const std::string& path, absl::string_view data);

// Files written as one group commit: the crash safety of WriteFileAtomic at
// one file-system sync per batch instead of two fsyncs per file. Add() writes
// a file under "<path>.tmp.<pid>" and nothing more; Commit() makes every added
// file durable with one syncfs(2) of each file system involved, then renames
// each into place and fsyncs each directory once. So no file is visible before
// it is whole and on disk; a process killed before or during Commit() leaves
// only whole files and temporary ones (RemoveStaleTempFiles clears those).
// Adding a path twice in one batch is an error. Not thread-safe.
class FileBatch {
 public:
  FileBatch() = default;
  ~FileBatch() { Abort(); }
  FileBatch(const FileBatch&) = delete;
  FileBatch& operator=(const FileBatch&) = delete;

  // Writes `data` to the temporary file of `path`. On failure the batch is
  // unchanged (that file is removed).
  [[nodiscard]] Status Add(const std::string& path, absl::string_view data);
  // Makes every added file durable and visible, in the order added. On a sync
  // failure no file of the batch is renamed and all are removed; on a rename
  // failure the files before it are in place. The batch is empty afterwards.
  [[nodiscard]] Status Commit();
  // Removes the temporary files of a batch that will not be committed.
  void Abort();

  bool empty() const { return entries_.empty(); }
  size_t files() const { return entries_.size(); }
  uint64_t bytes() const { return bytes_; }

 private:
  struct Entry {
    std::string path;
    std::string tmp;
  };
  std::vector<Entry> entries_;
  std::unordered_set<std::string> paths_;
  uint64_t bytes_ = 0;
};

// Regular files directly inside `dir` (not recursive), sorted by name, hidden
// files and "*.tmp.*" leftovers skipped.
[[nodiscard]] StatusOr<std::vector<std::string>> ListFiles(const std::string& dir);

// The <pid> of a "<name>.tmp.<pid>" file name (what WriteFileAtomic writes
// under until its rename); nullopt for any other name.
std::optional<int> AtomicWriteTempPid(absl::string_view file_name);

// Removes the "<name>.tmp.<pid>" files directly inside `dir` that a killed
// WriteFileAtomic left behind: those whose <pid> is no live process. A live
// writer's file is left alone. Returns the paths removed.
[[nodiscard]] StatusOr<std::vector<std::string>> RemoveStaleTempFiles(const std::string& dir);

// Creates `dir` and its parents when missing.
[[nodiscard]] Status MakeDirs(const std::string& dir);

}  // namespace dgc

#endif  // DGC_COMMON_BASE_FILES_H_
