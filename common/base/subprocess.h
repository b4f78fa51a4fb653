// Running an external tool (editcap, nfpcapd, nfdump) and waiting for it.
#ifndef DGC_COMMON_BASE_SUBPROCESS_H_
#define DGC_COMMON_BASE_SUBPROCESS_H_

#include <string>
#include <vector>

#include "common/base/status.h"

namespace dgc {

struct ToolRun {
  std::vector<std::string> argv;     // argv[0] is looked up in PATH
  std::string stdout_path;           // empty: /dev/null
  std::vector<std::string> env;      // NAME=VALUE added to (or replacing in) this process's environment
};

// Runs the tool to completion, stdin from /dev/null, stderr kept apart.
// NotFound when argv[0] is not installed; Internal when it exits non-zero or
// dies of a signal, with the last lines of its stderr in the message.
[[nodiscard]] Status RunTool(const ToolRun& run);

// True when `name` is an executable file in PATH.
bool ToolInstalled(const std::string& name);

}  // namespace dgc

#endif  // DGC_COMMON_BASE_SUBPROCESS_H_
