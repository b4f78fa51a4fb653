#include "common/base/subprocess.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

extern char** environ;

namespace dgc {

bool ToolInstalled(const std::string& name) {
  if (name.find('/') != std::string::npos) return ::access(name.c_str(), X_OK) == 0;
  const char* path = std::getenv("PATH");
  for (absl::string_view dir : absl::StrSplit(path ? path : "/usr/bin:/bin", ':', absl::SkipEmpty())) {
    std::string p = absl::StrCat(dir, "/", name);
    if (::access(p.c_str(), X_OK) == 0) return true;
  }
  return false;
}

Status RunTool(const ToolRun& run) {
  if (run.argv.empty()) return absl::InvalidArgumentError("RunTool: no command");
  const std::string& tool = run.argv[0];
  if (!ToolInstalled(tool)) return absl::NotFoundError(absl::StrCat(tool, " is not installed"));
  const std::string command = absl::StrJoin(run.argv, " ");

  // stderr goes to an unlinked temporary file: read back for the message.
  char err_template[] = "/tmp/dgc-tool-stderr-XXXXXX";
  int err_fd = ::mkstemp(err_template);
  if (err_fd < 0) return absl::InternalError(absl::StrCat("mkstemp: ", std::strerror(errno)));
  ::unlink(err_template);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, run.stdout_path.empty() ? "/dev/null" : run.stdout_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, err_fd, 2);

  std::vector<std::string> env_strings;
  for (char** e = environ; e && *e; ++e) {
    absl::string_view kv(*e);
    bool replaced = false;
    for (const std::string& r : run.env) {
      if (absl::StartsWith(kv, r.substr(0, r.find('=') + 1))) replaced = true;
    }
    if (!replaced) env_strings.emplace_back(kv);
  }
  for (const std::string& r : run.env) env_strings.push_back(r);
  std::vector<char*> envp, argv;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = run.argv;
  for (auto& s : args) argv.push_back(s.data());
  argv.push_back(nullptr);

  pid_t pid = 0;
  int rc = ::posix_spawnp(&pid, tool.c_str(), &fa, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    ::close(err_fd);
    return absl::InternalError(absl::StrCat("cannot run ", command, ": ", std::strerror(rc)));
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      ::close(err_fd);
      return absl::InternalError(absl::StrCat("waitpid for ", command, ": ", std::strerror(errno)));
    }
  }
  std::string err;
  ::lseek(err_fd, 0, SEEK_SET);
  char buf[4096];
  for (ssize_t n; (n = ::read(err_fd, buf, sizeof buf)) > 0;) {
    err.append(buf, size_t(n));
    if (err.size() > (1 << 20)) err.erase(0, err.size() - (1 << 16));
  }
  ::close(err_fd);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return absl::OkStatus();
  std::vector<std::string> lines = absl::StrSplit(absl::StripTrailingAsciiWhitespace(err), '\n');
  if (lines.size() > 5) lines.erase(lines.begin(), lines.end() - 5);
  std::string why = WIFEXITED(status) ? absl::StrCat("exit status ", WEXITSTATUS(status))
                                      : absl::StrCat("signal ", WTERMSIG(status));
  return absl::InternalError(absl::StrCat(command, " failed (", why, ")",
                                          lines.empty() || lines[0].empty() ? "" : ": ", absl::StrJoin(lines, " | ")));
}

}  // namespace dgc
