#include "tests/runtime/cluster.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "tests/testutil/testutil.h"

namespace dgc::testing {

Process::Process(const std::string& binary, const std::vector<std::string>& args, const std::string& log,
                 const std::vector<std::string>& env)
    : log_(log) {
  std::vector<std::string> argv_s = {binary};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  pid_ = ::fork();
  if (pid_ == 0) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::close(fd);
    }
    for (const auto& e : env) {
      auto eq = e.find('=');
      if (eq != std::string::npos) ::setenv(e.substr(0, eq).c_str(), e.substr(eq + 1).c_str(), 1);
    }
    std::vector<char*> argv;
    for (auto& s : argv_s) argv.push_back(s.data());
    argv.push_back(nullptr);
    ::execv(binary.c_str(), argv.data());
    ::_exit(127);
  }
}

Process::~Process() {
  if (Running()) {
    Signal(SIGKILL);
    Wait(std::chrono::seconds(10));
  }
}

void Process::Signal(int sig) {
  if (pid_ > 0 && !status_) ::kill(pid_, sig);
}

bool Process::Running() {
  if (pid_ <= 0 || status_) return false;
  int st = 0;
  pid_t r = ::waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return false;
  }
  return true;
}

std::optional<int> Process::Wait(std::chrono::milliseconds timeout) {
  WaitUntil([&] { return !Running(); }, timeout);
  return status_;
}

std::string Process::ReadLog() const {
  std::ifstream in(log_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::optional<std::string> Process::WaitForLog(const std::string& regex, std::chrono::milliseconds timeout) {
  std::regex re(regex);
  std::optional<std::string> found;
  WaitUntil(
      [&] {
        std::string text = ReadLog();
        std::smatch m;
        if (std::regex_search(text, m, re)) {
          found = m.size() > 1 ? m[1].str() : m[0].str();
          return true;
        }
        return false;
      },
      timeout);
  return found;
}

bool WaitUntil(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (condition()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

std::string HttpGet(const std::string& address, const std::string& path, int* code) {
  std::string out;
  Run("curl -s -m 2 -w '\\n%{http_code}' http://" + address + path, &out);
  auto nl = out.rfind('\n');
  int c = 0;
  if (nl != std::string::npos) {
    c = std::atoi(out.c_str() + nl + 1);
    out.resize(nl);
  }
  if (code) *code = c;
  return c == 0 ? "" : out;
}

std::optional<double> MetricValue(const std::string& page, const std::string& sample) {
  std::istringstream in(page);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(sample + " ", 0) == 0) return std::stod(line.substr(sample.size() + 1));
  }
  return std::nullopt;
}

std::optional<nlohmann::json> Ctl(const std::string& args, std::string* error) {
  std::string out;
  int rc = Run(BinaryPath("dgcctl") + " " + args + " -o json 2>&1", &out);
  if (rc != 0) {
    if (error) *error = out;
    return std::nullopt;
  }
  auto j = nlohmann::json::parse(out, nullptr, false);
  if (j.is_discarded()) {
    if (error) *error = out;
    return std::nullopt;
  }
  return j;
}

}  // namespace dgc::testing
