// Small file helpers: whole-file reads, crash-safe writes, directory listing.
#ifndef DGC_COMMON_BASE_FILES_H_
#define DGC_COMMON_BASE_FILES_H_

#include <optional>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "common/base/status.h"

namespace dgc {

// Reads a whole file. NotFound when it does not exist.
[[nodiscard]] StatusOr<std::string> ReadFile(const std::string& path);

// Writes `data` to `path` so that a crash leaves either the old file or the
// new one, never a torn one: write to "<path>.tmp.<pid>", fsync, rename, fsync
// the directory. On failure the temporary file is removed.
[[nodiscard]] Status WriteFileAtomic(const std::string& path, absl::string_view data);

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
