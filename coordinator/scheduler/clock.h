// Time for the scheduler, injected so tests and the simulation can move it.
#ifndef DGC_COORDINATOR_SCHEDULER_CLOCK_H_
#define DGC_COORDINATOR_SCHEDULER_CLOCK_H_

#include <chrono>
#include <cstdint>

namespace dgc {

// Wall-clock nanoseconds since the Unix epoch. Lease deadlines are stored in
// the job store and outlive a coordinator restart, so they are wall time, not
// a process-local steady clock.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual int64_t NowNs() const = 0;
};

class SystemClock final : public Clock {
 public:
  int64_t NowNs() const override {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
};

// A clock that moves only when told. Not thread safe (like the scheduler).
class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t now_ns = 1'700'000'000'000'000'000) : now_ns_(now_ns) {}
  int64_t NowNs() const override { return now_ns_; }
  void Set(int64_t now_ns) { now_ns_ = now_ns; }
  void Advance(int64_t ns) { now_ns_ += ns; }

 private:
  int64_t now_ns_;
};

}  // namespace dgc

#endif  // DGC_COORDINATOR_SCHEDULER_CLOCK_H_
