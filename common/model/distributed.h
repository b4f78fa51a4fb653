// Data-parallel training across processes (or threads) through libtorch's
// c10d process groups: Gloo on CPUs (what CI tests), NCCL between GPUs where
// the build has a CUDA libtorch with NCCL. FlowModel::Train takes a group in
// TrainOptions::data_parallel; see there for what each rank computes.
//
// Torch-free header (like flow_model.h): the c10d types live in
// distributed.cc behind a pimpl.
//
// Rendezvous: the ranks meet through a store, either a TCP store (rank 0
// hosts it at store_host:store_port, or a StoreServer already runs there)
// or a file on a file system every rank sees. Gloo then opens its own
// connections between the ranks on `interface_host`.
//
// Thread safety: a group is used by one thread at a time, and every rank
// must make the same collective calls in the same order (each Train step is
// one all-reduce). Several groups (one per rank thread) may live in one
// process: the test runs its ranks as threads over 127.0.0.1.
#ifndef DGC_COMMON_MODEL_DISTRIBUTED_H_
#define DGC_COMMON_MODEL_DISTRIBUTED_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "common/model/flow_model.h"

namespace dgc::model {

struct DistributedOptions {
  int32_t rank = 0;        // this process, in [0, world_size)
  int32_t world_size = 1;
  // "gloo" (CPU tensors; CUDA tensors go through a CPU copy), "nccl" (CUDA
  // tensors; only in a CUDA build with NCCL), or "auto": nccl when the build
  // has it and this rank's device is a GPU, gloo otherwise.
  std::string backend = "auto";
  // The device this rank trains on (as in TrainOptions::device); "auto"
  // picks backend and, with NCCL, the GPU rank % device count.
  std::string device = "cpu";
  // TCP store: host and port of the store server (required unless
  // file_store_path is set). With host_store rank 0 serves it on that port
  // (the usual launch: every rank is told the same fixed port); without,
  // every rank connects to a server that already runs there (StoreServer
  // below, e.g. on a port the system chose).
  std::string store_host = "127.0.0.1";
  int32_t store_port = 0;
  bool host_store = true;
  // If not empty, a FileStore at this path instead of the TCP store (all
  // ranks must see the same file; the path must not hold a stale store).
  std::string file_store_path;
  // Keys of this group in the store start with this (c10d PrefixStore): one
  // long-lived store serves many groups, one per job and attempt.
  std::string store_prefix;
  // Address Gloo binds and advertises for its connections (must be reachable
  // by the other ranks: 127.0.0.1 only when all ranks share this machine).
  std::string interface_host = "127.0.0.1";
  // How long rendezvous and each collective may wait for the other ranks.
  double timeout_seconds = 120;
};

class DataParallelGroup {
 public:
  // Joins the group: blocks until all world_size ranks have joined (or the
  // timeout passes: DeadlineExceeded). A backend this build lacks is
  // FailedPrecondition; bad options InvalidArgument; a store or connection
  // failure Unavailable. Every message names the rank and the store.
  [[nodiscard]] static StatusOr<std::unique_ptr<DataParallelGroup>> Create(const DistributedOptions& options);
  ~DataParallelGroup();

  int32_t rank() const;
  int32_t world_size() const;
  // "gloo" or "nccl", as resolved.
  const std::string& backend() const;
  // The device this rank should train on ("cpu" or "cuda:N"), as resolved.
  const std::string& device() const;

  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  explicit DataParallelGroup(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// A TCP store server with no rank of its own, on a port the system chooses
// when `port` is 0 (tests, launchers that start their ranks afterwards).
class StoreServer {
 public:
  [[nodiscard]] static StatusOr<std::unique_ptr<StoreServer>> Start(const std::string& host, int32_t port = 0,
                                                                   double timeout_seconds = 120);
  ~StoreServer();
  int32_t port() const;

  struct Impl;

 private:
  explicit StoreServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Whether this build can run `backend` ("gloo", "nccl").
bool BackendAvailable(const std::string& backend);

// The devices a process trains on, from a --device flag:
//   auto      every GPU this process sees (cuda:0 .. cuda:N-1), else the CPU
//   cpu       the CPU (one rank: it uses every core through OpenBLAS)
//   cuda      every GPU (FailedPrecondition when there is none)
//   cuda:N    one GPU
//   a comma list of cpu and cuda:N, e.g. "cuda:0,cuda:2": one rank each.
// A GPU may appear once (NCCL refuses two ranks on one GPU); "cpu" may
// repeat ("cpu,cpu": two Gloo ranks on the CPU, which tests the multi-rank
// path on a machine without GPUs; one CPU rank is faster). CPU and GPU ranks
// do not mix. InvalidArgument for a malformed spec, FailedPrecondition for a
// GPU this process does not have.
[[nodiscard]] StatusOr<std::vector<std::string>> ResolveDevices(const std::string& spec);

// Data-parallel training inside one process, one rank per entry of
// `devices` (as ResolveDevices gives them): rank 0 is `model` on the calling
// thread, every other rank a copy of it on its own thread and device, all
// meeting at a store server on 127.0.0.1 (a port the system chose) with the
// backend "auto" resolves (NCCL between GPUs where built with it, else Gloo
// over 127.0.0.1): a one-round TrainingSession (below) whose ranks all live
// here, so `model` must have no live adapters. See TrainOptions::data_parallel
// for what the ranks compute: `model` ends on devices[0] with the weights one
// rank would have reached on the same global batches, up to float rounding;
// the copies are dropped. One device: model.Train there, no group. Returns
// rank 0's stats (world_size = devices.size()); when a rank fails, its error
// rather than another rank's timeout waiting for it (the others stop at
// their next collective, within `timeout_seconds`).
[[nodiscard]] StatusOr<TrainStats> TrainOnDevices(FlowModel& model, const std::vector<std::vector<Token>>& sequences,
                                                  const TrainOptions& options, const std::vector<std::string>& devices,
                                                  double timeout_seconds = 300);

// --- Training sessions: data-parallel across processes ---------------------
//
// A job spread over a gang of workers trains in rounds (a compress job may
// train twice: the second attempt with twice the budget). Rank 0 leads: each
// Train sends the round to every other rank by broadcast (the model's
// checkpoint, the training options, the sequences) and trains as rank 0;
// Finish tells the others to stop. Every other rank serves: it trains each
// round it receives on a copy of the model and drops it when the round ends
// (rank 0 keeps the result). So a helper needs nothing but the session's
// address: no chunk, no parent model, no knobs. All ranks of the session
// meet once, at the start, through a TCP store (keys under a prefix, so one
// long-lived store per worker serves every job).
//
// The model a round starts from must have no live adapters (a fresh base, or
// a parent's Clone): helpers rebuild it from ToBytes, which merges them.
struct SessionOptions {
  std::string store_host = "127.0.0.1";  // the lead worker's store
  int32_t store_port = 0;
  std::string store_prefix;              // e.g. "job/17/2/"
  int32_t world_size = 1;                // ranks in all, every process together
  int32_t first_rank = 0;                // this process's first rank; 0: it leads
  // One rank per entry, first_rank upwards (as ResolveDevices gives them).
  std::vector<std::string> devices = {"cpu"};
  // Address Gloo binds and advertises: one the other processes can reach.
  std::string interface_host = "127.0.0.1";
  double timeout_seconds = 300;          // rendezvous and every collective
};

class TrainingSession {
 public:
  // Rank 0 (first_rank must be 0): starts one thread per other local device
  // serving its rank, then joins as rank 0; returns once every rank of the
  // world has joined (DeadlineExceeded after timeout_seconds).
  [[nodiscard]] static StatusOr<std::unique_ptr<TrainingSession>> Lead(const SessionOptions& options);
  // Finish() if not called yet (its error is then dropped).
  ~TrainingSession();

  // One round: every rank trains `model`'s weights on `sequences` with
  // `options` (its device and data_parallel are set per rank); `model` ends
  // on devices[0] with the result. Stats as rank 0 saw them.
  [[nodiscard]] StatusOr<TrainStats> Train(FlowModel& model, const std::vector<std::vector<Token>>& sequences,
                                           const TrainOptions& options);
  // Tells every rank the session is over and joins the local threads; the
  // first error a local rank met, if any.
  [[nodiscard]] Status Finish();

  int32_t world_size() const;
  struct Impl;

 private:
  explicit TrainingSession(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// A process's ranks of a session it does not lead (first_rank > 0): one
// thread per device, each joining and serving rounds until rank 0 finishes.
// Returns the rounds served (by this process's first rank), or the first
// error (a timeout when the lead vanished).
[[nodiscard]] StatusOr<int> ServeSession(const SessionOptions& options);

// TrainOptions as JSON and back (every field but device and data_parallel):
// what a round sends its helpers.
nlohmann::json TrainOptionsToJson(const TrainOptions& o);
[[nodiscard]] StatusOr<TrainOptions> TrainOptionsFromJson(const nlohmann::json& j);

}  // namespace dgc::model

#endif  // DGC_COMMON_MODEL_DISTRIBUTED_H_
