#include "ingest/net_ingest.h"

#include <pcap/pcap.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <thread>

#include <xxhash.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/fault.h"
#include "common/base/directory_follower.h"
#include "common/base/files.h"
#include "common/trace/chunk_format.h"
#include "common/trace/merged_reader.h"
#include "common/trace/packet_filter.h"
#include "common/trace/parse.h"
#include "spdlog/spdlog.h"

namespace dgc {
namespace {

namespace fs = std::filesystem;
int64_t SteadyNs() { return runtime::LoopLiveness::NowSteadyNs(); }
std::string Str(const Status& s) { return std::string(s.message()); }
std::string InFlightKey(const std::string& link, uint32_t shard, int64_t seq) {
  return absl::StrCat(link, "/", shard, "/", seq);
}

// Group commit bounds (see NetIngest::pending_): a sparse archive cuts tens
// of thousands of small chunks a second, a busy link a few large ones.
constexpr size_t kGroupFiles = 256;
constexpr uint64_t kGroupBytes = 8u << 20;
constexpr int64_t kGroupAgeNs = 200'000'000;

}  // namespace

uint32_t ShardOf(const PacketRecord& p, uint32_t shard_count) {
  if (shard_count <= 1) return 0;
  uint8_t key[16 + 16 + 2 + 2 + 1];
  std::memcpy(key, p.src.bytes.data(), 16);
  std::memcpy(key + 16, p.dst.bytes.data(), 16);
  key[32] = uint8_t(p.sport >> 8);
  key[33] = uint8_t(p.sport);
  key[34] = uint8_t(p.dport >> 8);
  key[35] = uint8_t(p.dport);
  key[36] = p.proto;
  return static_cast<uint32_t>(XXH64(key, sizeof(key), 0) % shard_count);
}

NetIngest::NetIngest(boost::asio::io_context& io, wire::ZmqContext& zmq, runtime::ProcessMetrics& metrics,
                     NetIngestOptions options)
    : io_(io),
      zmq_(zmq),
      metrics_(metrics),
      options_(std::move(options)),
      timer_(io),
      packets_(prometheus::BuildCounter().Name("dgc_ingest_packets_total").Help("packets kept (after filter and shard)")
                   .Register(metrics.registry()).Add({})),
      bytes_(prometheus::BuildCounter().Name("dgc_ingest_bytes_total").Help("wire bytes of the packets kept")
                 .Register(metrics.registry()).Add({})),
      drops_kernel_(prometheus::BuildCounter().Name("dgc_ingest_drops_total").Help("pcap_stats drops")
                        .Register(metrics.registry()).Add({{"source", "kernel"}})),
      drops_interface_(prometheus::BuildCounter().Name("dgc_ingest_drops_total").Help("pcap_stats drops")
                           .Register(metrics.registry()).Add({{"source", "interface"}})),
      chunks_(prometheus::BuildCounter().Name("dgc_ingest_chunks_total").Help("chunks cut")
                  .Register(metrics.registry()).Add({})),
      last_chunk_ts_(prometheus::BuildGauge().Name("dgc_last_chunk_timestamp_seconds")
                         .Help("end of the newest chunk cut (epoch)").Register(metrics.registry()).Add({})),
      connected_gauge_(prometheus::BuildGauge().Name("dgc_ingest_coordinator_connected")
                           .Help("1 while the coordinator acknowledges").Register(metrics.registry()).Add({})),
      spool_gauge_(prometheus::BuildGauge().Name("dgc_spool_bytes").Help("bytes of chunks in the spool")
                       .Register(metrics.registry()).Add({})),
      spool_max_gauge_(prometheus::BuildGauge().Name("dgc_spool_max_bytes").Help("--spool-max-bytes")
                           .Register(metrics.registry()).Add({})),
      disk_full_gauge_(prometheus::BuildGauge().Name("dgc_ingest_spool_disk_full")
                           .Help("1 while the capture waits for space on the spool's file system")
                           .Register(metrics.registry()).Add({})),
      evicted_(prometheus::BuildCounter().Name("dgc_spool_evicted_chunks_total").Help("chunks lost to the spool cap")
                   .Register(metrics.registry()).Add({})) {
  prometheus::BuildGauge().Name("dgc_ingest_info").Help("this ingest's link and shard").Register(metrics.registry())
      .Add({{"link", options_.chunker.link}, {"shard", absl::StrCat(options_.shard, "/", options_.shard_count)}})
      .Set(1);
  spool_max_gauge_.Set(static_cast<double>(options_.spool_max_bytes));
}

NetIngest::~NetIngest() {
  stop_capture_ = true;
  if (capture_.joinable()) capture_.join();
  if (watch_) watch_->Stop();
}

std::string NetIngest::StreamDir() const {
  std::string dir = options_.chunker.link;
  if (options_.shard_count > 1) dir += absl::StrCat("#", options_.shard);
  return (fs::path(options_.spool_dir) / dir).string();
}

Status NetIngest::capture_status() const {
  std::lock_guard<std::mutex> lock(status_mu_);
  return capture_status_;
}

std::string NetIngest::Ready() const {
  if (!source_open_.load()) return "capture source not open";
  if (spool_bytes_.load() >= options_.spool_max_bytes) return "spool full";
  if (disk_full_.load()) return absl::StrCat("no space left on the spool's file system (", options_.spool_dir, ")");
  return "";
}

Status NetIngest::Start() {
  if (options_.spool_dir.empty()) return absl::InvalidArgumentError("--spool-dir is required");
  if (options_.shard_count == 0 || options_.shard >= options_.shard_count) {
    return absl::InvalidArgumentError("--shard i/n needs 0 <= i < n");
  }
  DGC_RETURN_IF_ERROR(MakeDirs(StreamDir()));
  // A run killed mid-write leaves a partial "*.tmp.<pid>" beside the spooled
  // chunks; its chunk is rewritten when the capture is read again.
  DGC_ASSIGN_OR_RETURN(auto stale, RemoveStaleTempFiles(StreamDir()));
  for (const auto& f : stale) spdlog::warn("removed {}: a partial spool file a killed run left", f);
  // What an earlier run left to ship; from here on the loop knows the spool
  // from what the capture writes (Pump reads no directory).
  DGC_ASSIGN_OR_RETURN(auto listed, ListFiles(StreamDir()));
  for (const auto& f : listed) {
    if (!absl::EndsWith(f, kChunkFileSuffix)) continue;
    std::error_code ec;
    const uint64_t size = fs::file_size(f, ec);
    if (ec) continue;
    spool_[f] = size;
    spool_total_ += size;
  }
  if (!spool_.empty()) {
    spdlog::info("spool {}: {} chunk(s), {} bytes from an earlier run to ship", StreamDir(), spool_.size(), spool_total_);
  }
  if (!options_.filter.empty()) {
    DGC_ASSIGN_OR_RETURN(filter_, PacketFilter::Compile(options_.filter));
  }
  if (options_.interface.empty() && options_.inputs.empty()) {
    return absl::InvalidArgumentError("no input: give capture files, a directory with --follow, or --interface");
  }
  if (!options_.interface.empty()) {
    // Open here so a bad interface or filter is a startup error; the thread
    // reopens nothing.
  } else if (!options_.follow) {
    DGC_ASSIGN_OR_RETURN(auto files, ExpandInputs(options_.inputs));
    (void)files;
  }
  if (!options_.coordinator.empty()) {
    DGC_RETURN_IF_ERROR(Connect());
  }
  capture_ = std::thread([this] { CaptureLoop(); });
  Pump();
  return absl::OkStatus();
}

bool NetIngest::Keep(const PacketRecord& p) const {
  if (filter_ && !filter_->Matches(p)) return false;
  return ShardOf(p, options_.shard_count) == options_.shard;
}

Status NetIngest::WriteChunk(Chunk&& chunk, bool amend) {
  std::string path = (fs::path(StreamDir()) / ChunkFileName(chunk)).string();
  if (amend) {  // merge into the spooled file when it is still here (as file mode does)
    DGC_RETURN_IF_ERROR(CommitPending());  // the file it amends may still be pending
    auto old = ReadChunkFile(path);
    if (old.ok()) {
      chunk.raw_bytes += old->raw_bytes;
      chunk.packets.insert(chunk.packets.end(), old->packets.begin(), old->packets.end());
      std::stable_sort(chunk.packets.begin(), chunk.packets.end(),
                       [](const PacketRecord& a, const PacketRecord& b) { return a.ts_ns < b.ts_ns; });
    }
  } else {
    chunks_.Increment();
    last_chunk_ts_.Set(static_cast<double>(chunk.end_ns()) / 1e9);
  }
  const int64_t now = SteadyNs();
  if (pending_.empty()) pending_since_ns_ = now;
  std::string bytes = EncodeChunk(chunk, options_.zstd_level);  // once, however many tries
  pending_bytes_ += bytes.size();
  pending_.push_back(Pending{std::move(path), std::move(bytes)});
  if (amend || !options_.interface.empty() || pending_.size() >= kGroupFiles || pending_bytes_ >= kGroupBytes ||
      now - pending_since_ns_ >= kGroupAgeNs) {
    return CommitPending();
  }
  return absl::OkStatus();
}

Status NetIngest::CommitPending() {
  if (pending_.empty()) return absl::OkStatus();
  // A full file system pauses the capture rather than ending it: the group is
  // retried every second (nothing is offered before it is on disk) while
  // shipping goes on, and acknowledged chunks leaving the spool, or an
  // operator, free space. /readyz and dgc_ingest_spool_disk_full say why.
  // Packets the capture cannot take meanwhile wait in the input (files,
  // --follow) or are dropped by the kernel (live, counted in dgc_ingest_drops_total).
  const std::string& path = pending_.front().path;
  for (int attempt = 0;; ++attempt) {
    FileBatch batch;
    Status st;
    for (const Pending& p : pending_) {
      st = batch.Add(p.path, p.bytes);
      if (!st.ok()) break;
    }
    if (st.ok()) st = batch.Commit();
    if (st.ok()) {
      if (attempt > 0) {
        spdlog::info("{}: written after {} s; the spool has space again, capture resumed", path, attempt);
        disk_full_ = false;
        disk_full_gauge_.Set(0);
      }
      break;
    }
    if (!absl::IsResourceExhausted(st) || stop_capture_.load()) return st;
    if (attempt == 0) {
      spdlog::error("{}; capture paused until the spool has space again (retrying every second)", std::string(st.message()));
      disk_full_ = true;
      disk_full_gauge_.Set(1);
    }
    for (int i = 0; i < 10 && !stop_capture_.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  {
    std::lock_guard<std::mutex> lock(published_mu_);
    for (const Pending& p : pending_) published_.emplace_back(p.path, p.bytes.size());
  }
  for (size_t i = 0; i < pending_.size(); ++i) FaultPoint("ingest.chunk.spooled");  // on disk, maybe not yet offered
  pending_.clear();
  pending_bytes_ = 0;
  return absl::OkStatus();
}

void NetIngest::CaptureLoop() {
  Chunker chunker(options_.chunker, [this](Chunk&& c, bool amend) { return WriteChunk(std::move(c), amend); });
  Status st;
  if (!options_.interface.empty()) {
    st = CaptureLive(chunker);
  } else if (options_.follow) {
    st = FollowDirs(chunker);
  } else {
    auto files = ExpandInputs(options_.inputs);
    st = files.ok() ? ReadFiles(*files, chunker) : files.status();
  }
  Status flushed = chunker.Flush();  // the partial chunk goes to the spool too
  if (flushed.ok()) flushed = CommitPending();
  if (st.ok()) st = flushed;
  if (!st.ok()) spdlog::error("capture: {}", Str(st));
  {
    std::lock_guard<std::mutex> lock(status_mu_);
    capture_status_ = st;
  }
  capture_done_ = true;
}

Status NetIngest::ReadFiles(const std::vector<std::string>& files, Chunker& chunker) {
  DGC_ASSIGN_OR_RETURN(auto reader, MergedReader::Open(files));
  source_open_ = true;
  PacketRecord p;
  uint32_t rb = 0;
  while (!stop_capture_.load() && reader->Next(&p, &rb)) {
    if (!Keep(p)) continue;
    packets_.Increment();
    bytes_.Increment(p.ip_len);
    DGC_RETURN_IF_ERROR(chunker.Add(p, rb));
  }
  for (const auto& w : reader->stats().warnings) spdlog::warn("{}", w);
  return absl::OkStatus();
}

Status NetIngest::FollowDirs(Chunker& chunker) {
  DGC_ASSIGN_OR_RETURN(DirectoryFollower follower, DirectoryFollower::Create(options_.inputs, options_.settle_seconds));
  source_open_ = true;
  while (!stop_capture_.load()) {
    for (const auto& f : follower.Poll()) {
      if (stop_capture_.load()) break;
      spdlog::info("reading {}", f);
      Status st = ReadFiles({f}, chunker);
      if (!st.ok()) spdlog::error("{}: {}", f, Str(st));  // one bad file does not stop the follower
      if (Status c = CommitPending(); !c.ok()) return c;  // what the file completed goes out now
    }
    for (int i = 0; i < 5 && !stop_capture_.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return absl::OkStatus();
}

Status NetIngest::CaptureLive(Chunker& chunker) {
  char err[PCAP_ERRBUF_SIZE] = {};
  pcap_t* pc = pcap_create(options_.interface.c_str(), err);
  if (!pc) return absl::UnavailableError(absl::StrCat("--interface ", options_.interface, ": ", err));
  struct Closer {
    pcap_t* p;
    ~Closer() { pcap_close(p); }
  } closer{pc};
  pcap_set_snaplen(pc, options_.snaplen);
  pcap_set_buffer_size(pc, options_.buffer_bytes);
  pcap_set_timeout(pc, 100);  // ms: wakes up to check for stop
  pcap_set_tstamp_precision(pc, PCAP_TSTAMP_PRECISION_NANO);
  int rc = pcap_activate(pc);
  if (rc < 0) return absl::UnavailableError(absl::StrCat("--interface ", options_.interface, ": ", pcap_geterr(pc)));
  if (rc > 0) spdlog::warn("--interface {}: {}", options_.interface, pcap_statustostr(rc));
  if (!options_.filter.empty()) {  // in the kernel, so dropped packets never reach user space
    bpf_program prog;
    if (pcap_compile(pc, &prog, options_.filter.c_str(), 1, PCAP_NETMASK_UNKNOWN) != 0 ||
        pcap_setfilter(pc, &prog) != 0) {
      std::string msg = pcap_geterr(pc);
      return absl::InvalidArgumentError(absl::StrCat("--filter '", options_.filter, "': ", msg));
    }
    pcap_freecode(&prog);
  }
  const int linktype = pcap_datalink(pc);
  const bool nano = pcap_get_tstamp_precision(pc) == PCAP_TSTAMP_PRECISION_NANO;
  source_open_ = true;
  spdlog::info("capturing on {} ({}), snaplen {}", options_.interface, LinkTypeName(linktype), options_.snaplen);
  uint64_t last_drop = 0, last_ifdrop = 0;
  auto last_stats = std::chrono::steady_clock::now();
  while (!stop_capture_.load()) {
    pcap_pkthdr* h = nullptr;
    const u_char* data = nullptr;
    rc = pcap_next_ex(pc, &h, &data);
    if (rc == 1) {
      PacketRecord p;
      if (ParseFrame(linktype, data, h->caplen, h->len, &p) == ParseOutcome::kIp) {
        p.ts_ns = int64_t{h->ts.tv_sec} * 1'000'000'000 + int64_t{h->ts.tv_usec} * (nano ? 1 : 1000);
        // The filter ran in the kernel; only the shard remains.
        if (ShardOf(p, options_.shard_count) == options_.shard) {
          packets_.Increment();
          bytes_.Increment(p.ip_len);
          DGC_RETURN_IF_ERROR(chunker.Add(p, 16 + h->caplen));
        }
      }
    } else if (rc < 0) {
      return absl::UnavailableError(absl::StrCat("capture on ", options_.interface, ": ", pcap_geterr(pc)));
    }
    auto now = std::chrono::steady_clock::now();
    if (now - last_stats > std::chrono::seconds(1)) {
      last_stats = now;
      pcap_stat s{};
      if (pcap_stats(pc, &s) == 0) {  // counters since activation; export the increase
        if (s.ps_drop >= last_drop) drops_kernel_.Increment(s.ps_drop - last_drop);
        if (s.ps_ifdrop >= last_ifdrop) drops_interface_.Increment(s.ps_ifdrop - last_ifdrop);
        last_drop = s.ps_drop;
        last_ifdrop = s.ps_ifdrop;
      }
    }
  }
  return absl::OkStatus();
}

Status NetIngest::Connect() {
  if (watch_) watch_->Stop();
  watch_.reset();
  dealer_.reset();
  wire::SocketOptions so;
  so.security = options_.security;
  so.send_timeout_ms = 0;
  DGC_ASSIGN_OR_RETURN(dealer_, wire::ZmqDealer::Connect(zmq_, options_.coordinator, so));
  watch_ = std::make_unique<runtime::ZmqWatcher>(io_, dealer_->socket(), [this] { Drain(); });
  DGC_RETURN_IF_ERROR(watch_->Start());
  credits_ = 0;
  offer_sent_ns_ = 0;
  in_flight_.clear();
  flying_.clear();
  return absl::OkStatus();
}

void NetIngest::Drain() {
  runtime::DrainSocket(dealer_, 256, metrics_, "a message from the coordinator", [this](wire::Decoded& in) {
    last_heard_ns_ = SteadyNs();
    if (!connected_) spdlog::info("coordinator {} answers: shipping the spool", options_.coordinator);
    connected_ = true;
    connected_gauge_.Set(1);
    auto& msg = in.message;
    if (auto* c = std::get_if<wire::Credit>(&msg)) {
      credits_ = c->credits;
      offer_sent_ns_ = 0;
    } else if (auto* a = std::get_if<wire::ChunkAck>(&msg)) {
      auto it = in_flight_.find(InFlightKey(a->link, a->shard, a->seq));
      if (it == in_flight_.end()) return;  // a late duplicate ack
      std::error_code ec;
      if (a->accepted) {
        FaultPoint("ingest.ack.before_remove");  // accepted, still in the spool: a restart resends it
        fs::remove(it->second.path, ec);
        Unspool(it->second.path);
        if (hold_until_ns_ != 0) {
          spdlog::info("coordinator takes chunks again: shipping the spool");
          hold_until_ns_ = 0;
        }
      } else if (a->retry_after_ms > 0) {
        // Not now (the library's disk is full): the chunk stays in the
        // spool and goes again once the pause is over.
        if (hold_until_ns_ == 0) {
          spdlog::warn("coordinator cannot take chunks for now ({}): they stay in the spool, sent again every {} ms",
                       a->reason, a->retry_after_ms);
        }
        hold_until_ns_ = std::max(hold_until_ns_, SteadyNs() + int64_t{a->retry_after_ms} * 1'000'000);
      } else {
        spdlog::error("coordinator refused {}: {} (kept in the spool, not resent)", it->second.path, a->reason);
        refused_.insert(it->second.path);
      }
      flying_.erase(it->second.path);
      in_flight_.erase(it);
    } else {
      metrics_.Reject("malformed");
      spdlog::warn("unexpected {} from the coordinator", wire::MessageKindName(wire::KindOf(msg)));
    }
  });
  Pump();
}

void NetIngest::TakePublished() {
  std::lock_guard<std::mutex> lock(published_mu_);
  for (auto& [path, size] : published_) {
    auto [it, added] = spool_.try_emplace(std::move(path), size);
    if (!added) {  // an amendment rewrote it
      spool_total_ -= it->second;
      it->second = size;
    }
    spool_total_ += size;
  }
  published_.clear();
}

void NetIngest::Unspool(const std::string& path) {
  auto it = spool_.find(path);
  if (it == spool_.end()) return;
  spool_total_ -= it->second;
  spool_.erase(it);
}

void NetIngest::Pump() {
  if (stopped_) return;
  const int64_t now = SteadyNs();
  // Read before the spool is brought up to date: once the capture is done,
  // everything it wrote has been published.
  const bool capture_done = capture_done_.load();
  TakePublished();
  // The cap: evict the oldest (not in flight) until under it.
  for (auto it = spool_.begin(); spool_total_ > options_.spool_max_bytes && it != spool_.end();) {
    if (flying_.count(it->first)) {
      ++it;
      continue;
    }
    std::error_code ec;
    fs::remove(it->first, ec);
    evicted_.Increment();
    spdlog::error("spool over --spool-max-bytes ({} bytes): evicted {}, its chunk is lost", options_.spool_max_bytes,
                  it->first);
    spool_total_ -= it->second;
    it = spool_.erase(it);
  }
  const uint64_t total = spool_total_;
  spool_bytes_ = total;
  spool_gauge_.Set(static_cast<double>(total));

  if (dealer_) {
    // No answer for a while: the coordinator is away. Reconnect (dropping
    // what libzmq queued) and resend everything unacknowledged later.
    bool waiting = !in_flight_.empty() || offer_sent_ns_ != 0;
    if (waiting && now - std::max(last_heard_ns_, offer_sent_ns_ ? offer_sent_ns_ : 0) > options_.ack_timeout_ns &&
        now - last_heard_ns_ > options_.ack_timeout_ns) {
      if (connected_) spdlog::warn("coordinator {} silent: spooling until it returns", options_.coordinator);
      connected_ = false;
      connected_gauge_.Set(0);
      Status st = Connect();
      if (!st.ok()) spdlog::error("reconnect: {}", Str(st));
    }
    auto to_send = [&](const std::string& f) { return !refused_.count(f) && !flying_.count(f); };
    bool any = false;  // a chunk to send: stops at the first (at most in flight + refused looked at)
    for (auto it = spool_.begin(); it != spool_.end() && !any; ++it) any = to_send(it->first);
    if (any && credits_ <= in_flight_.size() && offer_sent_ns_ == 0 && dealer_) {
      wire::ChunkOffer offer;  // asks for credit
      offer.meta.link = options_.chunker.link;
      offer.meta.shard = options_.shard;
      offer.meta.shard_count = options_.shard_count;
      (void)dealer_->Send(offer);
      offer_sent_ns_ = now;
      if (last_heard_ns_ == 0) last_heard_ns_ = now;
    }
    for (auto it = spool_.begin(); it != spool_.end();) {
      if (in_flight_.size() >= credits_ || !dealer_ || now < hold_until_ns_) break;
      const std::string f = it->first;
      ++it;  // before Unspool(f) may erase f's entry
      if (!to_send(f)) continue;
      auto bytes = ReadFile(f);
      if (!bytes.ok()) {
        std::error_code ec;
        if (!fs::exists(f, ec) && !ec) {
          spdlog::warn("spool file {} is gone (removed by hand?): not sent", f);
          Unspool(f);
        }
        continue;
      }
      auto chunk = DecodeChunk(*bytes, f);
      if (!chunk.ok()) {
        spdlog::error("spool file {} is corrupt ({}): moved aside", f, Str(chunk.status()));
        std::error_code ec;
        fs::rename(f, f + ".corrupt", ec);
        Unspool(f);
        continue;
      }
      wire::ChunkData d;
      d.meta.link = options_.chunker.link;
      d.meta.shard = options_.shard;
      d.meta.shard_count = options_.shard_count;
      d.meta.seq = chunk->seq();
      d.meta.start_ns = chunk->start_ns;
      d.meta.duration_ns = chunk->duration_ns;
      d.meta.packets = chunk->packets.size();
      d.meta.raw_bytes = chunk->raw_bytes;
      d.payload = *std::move(bytes);
      Status st = dealer_->Send(d);
      if (!st.ok()) break;
      if (in_flight_.empty()) last_heard_ns_ = std::max(last_heard_ns_, now);
      in_flight_[InFlightKey(d.meta.link, d.meta.shard, d.meta.seq)] = InFlight{f, now};
      flying_.insert(f);
    }
  }
  bool empty = total == 0 || (options_.coordinator.empty());
  bool done = capture_done && in_flight_.empty() && (empty || !capture_status().ok());
  if (stop_deadline_ns_ != 0) done = (in_flight_.empty() && empty) || !connected_ || now > stop_deadline_ns_;
  if (done && !finished_) {
    finished_ = true;
    stopped_ = true;
    if (watch_) watch_->Stop();
    watch_.reset();
    dealer_.reset();
    if (total > 0) spdlog::info("{} bytes of chunks stay in the spool for the next run", total);
    if (on_finished_) boost::asio::post(io_, on_finished_);
    return;
  }
  timer_.expires_after(std::chrono::milliseconds(50));
  timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) Pump();
  });
}

void NetIngest::Stop(std::chrono::milliseconds ship_for) {
  stop_capture_ = true;
  if (capture_.joinable()) capture_.join();  // writes the partial chunk
  stop_deadline_ns_ = SteadyNs() + std::chrono::duration_cast<std::chrono::nanoseconds>(ship_for).count();
  boost::asio::post(io_, [this] { Pump(); });
}

}  // namespace dgc
