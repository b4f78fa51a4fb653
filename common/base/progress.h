// A terminal progress bar for long work, drawn on stderr only when stderr is a
// terminal (never in logs, pipes or CI). Not thread safe: one owner updates it.
#ifndef DGC_COMMON_BASE_PROGRESS_H_
#define DGC_COMMON_BASE_PROGRESS_H_

#include <chrono>
#include <cstdint>
#include <string>

namespace dgc {

class ProgressBar {
 public:
  // `total` in the caller's unit (bytes, packets); 0 means unknown (a spinner
  // with the running count). `enabled` false turns it off; by default it is on
  // only when stderr is a terminal.
  ProgressBar(std::string label, uint64_t total, bool enabled = DefaultEnabled());
  ~ProgressBar();  // clears the line

  // Sets the progress to `done` and redraws at most ~10 times a second.
  void Update(uint64_t done, const std::string& detail = "");
  void Finish();

  static bool DefaultEnabled();

 private:
  std::string label_;
  uint64_t total_;
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

}  // namespace dgc

#endif  // DGC_COMMON_BASE_PROGRESS_H_
