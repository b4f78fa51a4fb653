// Status helpers on top of absl::Status / absl::StatusOr.
//
// Every function in dgc that can fail returns [[nodiscard]] absl::Status or
// absl::StatusOr<T>. These macros keep the propagation short; errno and
// library errors are turned into Status in the adapter that wraps the library.
#ifndef DGC_COMMON_BASE_STATUS_H_
#define DGC_COMMON_BASE_STATUS_H_

#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace dgc {

using absl::Status;
using absl::StatusOr;

// An error for a failed system call: "<what> <path>: <strerror(err)>", with a
// code chosen from errno (NotFound for ENOENT, PermissionDenied for EACCES...).
Status ErrnoError(int err, absl::string_view what, absl::string_view path);

}  // namespace dgc

#define DGC_STATUS_CONCAT_INNER_(a, b) a##b
#define DGC_STATUS_CONCAT_(a, b) DGC_STATUS_CONCAT_INNER_(a, b)

// Returns from the current function when `expr` (a Status) is not OK.
#define DGC_RETURN_IF_ERROR(expr)                       \
  do {                                                  \
    ::absl::Status dgc_status_ = (expr);                \
    if (!dgc_status_.ok()) return dgc_status_;          \
  } while (0)

// `lhs` = value of `rexpr` (a StatusOr<T>), or returns its error.
#define DGC_ASSIGN_OR_RETURN(lhs, rexpr) \
  DGC_ASSIGN_OR_RETURN_IMPL_(DGC_STATUS_CONCAT_(dgc_statusor_, __LINE__), lhs, rexpr)
#define DGC_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, rexpr) \
  auto tmp = (rexpr);                               \
  if (!tmp.ok()) return std::move(tmp).status();    \
  lhs = std::move(tmp).value()

#endif  // DGC_COMMON_BASE_STATUS_H_
