// The worker's control loop (dgc-worker): registers with the coordinator,
// sends heartbeats, runs the jobs it is leased on an owned thread pool
// (CompressChunk, TrainBase for a retrain job, or RegenerateChunks for a
// segment of dgcctl generate --coordinator) and posts the results back,
// resending each until the coordinator acknowledges it.
//
// Threads: the loop (an io_context) owns the socket and all state below; the
// pool's threads run one job each and hand the outcome back with
// boost::asio::post. The model cache is shared with the pool under its mutex.
#ifndef DGC_WORKER_WORKER_SERVER_H_
#define DGC_WORKER_WORKER_SERVER_H_

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio.hpp>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>

#include "common/base/status.h"
#include "common/model/distributed.h"
#include "common/model/flow_model.h"
#include "common/runtime/process.h"
#include "common/wire/codec.h"
#include "common/wire/zmq_transport.h"

namespace dgc {

struct WorkerOptions {
  std::string coordinator;   // required
  std::string name;          // worker id
  uint32_t threads = 1;      // CPU threads advertised
  std::vector<wire::Gpu> gpus;  // GPUs advertised (the scheduler sends large jobs to multi-GPU workers)
  // Where jobs train and sample (model::ResolveDevices): "cpu", or GPUs
  // "cuda:N". A job takes the least-loaded one; a lease of several slots (a
  // large job on a multi-GPU worker), or any job when max_jobs is 1, takes
  // them all and trains data-parallel (model::TrainOnDevices).
  std::vector<std::string> devices = {"cpu"};
  uint32_t max_jobs = 1;     // jobs at once (pool size; advertised as slots)
  // Jobs spanning workers: this worker serves a data-parallel store on
  // peer_host:peer_port (0: a port the system chooses) and advertises it;
  // the other workers of a gang must reach that address, and Gloo binds
  // its connections there. "": the worker joins no gang.
  std::string peer_host;
  int32_t peer_port = 0;
  double peer_timeout_seconds = 300;  // a gang's rendezvous and each collective
  std::string shared_dir;
  wire::SecurityOptions security;
};

// A fixed set of threads running queued tasks; joined by the destructor
// (after the running tasks end; queued ones are dropped).
class ThreadPool {
 public:
  explicit ThreadPool(size_t threads);
  ~ThreadPool();
  void Submit(std::function<void()> task);
  size_t busy() const { return busy_.load(); }
  // Waits until no task runs or `timeout` passes; true when idle.
  bool WaitIdle(std::chrono::milliseconds timeout);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;  // GUARDED_BY(mu_)
  bool stop_ = false;                        // GUARDED_BY(mu_)
  std::atomic<size_t> busy_{0};
  std::vector<std::thread> threads_;
};

class WorkerServer {
 public:
  WorkerServer(boost::asio::io_context& io, wire::ZmqContext& zmq, runtime::ProcessMetrics& metrics,
               WorkerOptions options);
  ~WorkerServer();
  // Connects and registers (the connection is retried in the background).
  [[nodiscard]] Status Start();
  // Tells the coordinator this worker leaves (its leases are requeued at
  // once), closes the socket. Loop thread. Returns whether the pool became
  // idle within `wait`.
  bool Stop(std::chrono::milliseconds wait);
  // "" once registered and heartbeats are answered. Any thread.
  std::string Ready() const { return registered_.load() ? "" : "not registered with the coordinator"; }

 private:
  struct Outcome {
    uint64_t job_id = 0;
    uint32_t attempt = 0;
    bool ok = false;
    wire::JobResult result;
    wire::JobFailed failed;
    double tokens_per_second = 0;
    bool helper = false;  // served a gang's rounds: nothing to send back
  };

  Status Connect();
  void Drain();
  void OnMessage(wire::Decoded& msg);
  void OnAssign(wire::JobAssign& job);
  void OnDone(Outcome outcome);
  void Timer();
  void SendRegister();
  Outcome RunJob(const wire::JobAssign& job);  // pool thread
  Outcome ServeGang(const wire::JobAssign& job);  // pool thread: a helper's share of a gang job
  Outcome RunGenerate(const wire::JobAssign& job);  // pool thread: regenerate a segment of chunks
  Outcome Failed(const wire::JobAssign& job, const Status& st, bool retryable) const;
  model::SessionOptions GangSession(const wire::JobAssign& job, const std::vector<std::string>& devices) const;
  // The job's parent model (from the cache, else rebuilt from the bundle); its id in *parent_id.
  StatusOr<std::unique_ptr<model::FlowModel>> ParentModel(const wire::JobAssign& job, std::string* parent_id);
  void CacheModel(const std::string& id, const model::FlowModel& m);  // pool thread
  // The devices a job of `slots` slots trains on (indices into
  // options_.devices), counted as in use until ReleaseDevices. Pool threads.
  std::vector<size_t> AcquireDevices(uint32_t slots);
  void ReleaseDevices(const std::vector<size_t>& devices);

  boost::asio::io_context& io_;
  wire::ZmqContext& zmq_;
  runtime::ProcessMetrics& metrics_;
  WorkerOptions options_;
  std::unique_ptr<wire::ZmqDealer> dealer_;
  std::unique_ptr<runtime::ZmqWatcher> watch_;
  boost::asio::steady_timer timer_;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<model::StoreServer> store_;  // with peer_host: gangs meet here
  std::string peer_address_;                   // peer_host:port, as advertised
  std::atomic<bool> registered_{false};
  bool stopped_ = false;
  int64_t heartbeat_ns_ = 1'000'000'000;
  int64_t last_heard_ns_ = 0;  // steady
  int64_t last_register_ns_ = 0;
  int64_t last_heartbeat_ns_ = 0;
  std::map<uint64_t, uint32_t> running_;          // job -> attempt
  std::map<uint64_t, bool> cancelled_;            // running jobs the coordinator no longer wants
  std::map<uint64_t, wire::Message> unacked_;     // finished, not yet acknowledged
  double tokens_per_second_ = 0;
  int64_t last_done_ns_ = 0;

  std::mutex devices_mu_;
  std::vector<uint32_t> device_jobs_;  // jobs on each device; GUARDED_BY(devices_mu_)

  std::mutex cache_mu_;
  std::list<std::pair<std::string, std::unique_ptr<model::FlowModel>>> cache_;  // GUARDED_BY(cache_mu_)

  prometheus::Gauge& tokens_gauge_;
  prometheus::Gauge& running_gauge_;
  prometheus::Family<prometheus::Counter>* jobs_total_;
};

}  // namespace dgc

#endif  // DGC_WORKER_WORKER_SERVER_H_
