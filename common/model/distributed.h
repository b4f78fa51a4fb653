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

#include "common/base/status.h"

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

}  // namespace dgc::model

#endif  // DGC_COMMON_MODEL_DISTRIBUTED_H_
