#include "common/trace/pcap_reader.h"

#include <pcap/pcap.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#ifdef __GLIBC__
#include <stdio_ext.h>
#endif

#include "absl/strings/str_cat.h"
#include "common/trace/parse.h"
#include "common/trace/pcapng_blocks.h"

namespace dgc {
namespace {

constexpr uint32_t kMagicMicro = 0xa1b2c3d4;
constexpr uint32_t kMagicNano = 0xa1b23c4d;
constexpr uint32_t kMaxRecordLength = 262144 * 4;  // well above any real snaplen
constexpr size_t kMaxResyncScan = 64 << 20;        // give up after 64 MiB without a record

// libpcap reads through a FILE* over the InputSource. Unbuffered (as
// InputSource::OpenFile makes it), glibc's cookie streams hand every fread to
// the source one byte at a time, which costs more than everything else ingest
// does. So sources of known size (files, buffers) get a buffered cookie FILE
// (glibc allocates and frees its buffer), and the bytes it has read ahead but
// libpcap not yet consumed are subtracted to get exact record offsets, or
// handed back to the source before a resynchronisation. Streams (stdin,
// FIFOs) keep the unbuffered FILE, so a live `tcpdump -w -` pipe is never
// waited on to fill a buffer.
size_t ReadAhead(FILE* f) {
#ifdef __GLIBC__
  return static_cast<size_t>(f->_IO_read_end - f->_IO_read_ptr);
#else
  (void)f;
  return 0;
#endif
}

// Offset of the next byte libpcap will read.
uint64_t ConsumedPosition(const InputSource& source, FILE* f) {
  return source.position() - ReadAhead(f);
}

FILE* OpenSourceFile(InputSource* source) {
#ifdef __GLIBC__
  return source->OpenFile(/*buffered=*/source->raw_size() > 0);
#else
  return source->OpenFile();
#endif
}

uint32_t Load32(const uint8_t* p, bool swapped) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return swapped ? __builtin_bswap32(v) : v;
}

}  // namespace

void ReadStats::Add(const ReadStats& o) {
  frames += o.frames;
  ip_packets += o.ip_packets;
  non_ip += o.non_ip;
  malformed += o.malformed;
  unsupported_link += o.unsupported_link;
  corrupt_records += o.corrupt_records;
  captured_bytes += o.captured_bytes;
  wire_bytes += o.wire_bytes;
  truncated = truncated || o.truncated;
  for (const auto& w : o.warnings) {
    if (warnings.size() < kMaxWarnings) warnings.push_back(w);
  }
}

StatusOr<std::unique_ptr<TraceReader>> TraceReader::Open(const std::string& path) {
  DGC_ASSIGN_OR_RETURN(auto source, InputSource::Open(path));
  return FromSource(std::move(source));
}

StatusOr<std::unique_ptr<TraceReader>> TraceReader::FromSource(std::unique_ptr<InputSource> source) {
  std::unique_ptr<TraceReader> r(new TraceReader());
  r->source_ = std::move(source);
  // Keep the classic pcap file header: resynchronising needs it.
  size_t got = r->source_->Read(r->file_header_, sizeof r->file_header_);
  r->source_->Unread(r->file_header_, got);
  if (got == 0) {
    if (!r->source_->error().ok()) return r->source_->error();
    return absl::InvalidArgumentError(absl::StrCat(r->source_->name(), ": empty file, not a capture"));
  }
  if (got == sizeof r->file_header_) {
    uint32_t magic;
    std::memcpy(&magic, r->file_header_, 4);
    for (bool swapped : {false, true}) {
      uint32_t m = swapped ? __builtin_bswap32(magic) : magic;
      if (m == kMagicMicro || m == kMagicNano) {
        r->classic_ = true;
        r->swapped_ = swapped;
        r->nano_file_ = m == kMagicNano;
        r->snaplen_ = Load32(r->file_header_ + 16, swapped);
      }
    }
  }
  DGC_RETURN_IF_ERROR(r->OpenPcap());
  return r;
}

TraceReader::~TraceReader() {
  if (pcap_) pcap_close(pcap_);  // fcloses file_; the source stays ours
}

Status TraceReader::OpenPcap() {
  if (pcap_) {
    pcap_close(pcap_);
    pcap_ = nullptr;
  }
  file_ = OpenSourceFile(source_.get());
  if (!file_) return absl::InternalError(absl::StrCat(source_->name(), ": fopencookie failed"));
  char errbuf[PCAP_ERRBUF_SIZE] = {};
  pcap_ = pcap_fopen_offline_with_tstamp_precision(file_, PCAP_TSTAMP_PRECISION_NANO, errbuf);
  if (!pcap_) {
    std::fclose(file_);
    file_ = nullptr;
    if (!source_->error().ok()) return source_->error();
    return absl::InvalidArgumentError(absl::StrCat(
        source_->name(), ": not a readable pcap or pcapng capture (",
        source_->compression() == Compression::kNone
            ? std::string("")
            : absl::StrCat("after ", CompressionName(source_->compression()), " decompression, "),
        "libpcap says: ", errbuf, ")",
        std::string(errbuf).find("unknown file format") != std::string::npos
            ? "; dgc reads pcap and pcapng: convert other formats (ERF, snoop, ...) with "
              "'editcap -F pcap IN OUT'"
            : ""));
  }
  linktype_ = pcap_datalink(pcap_);
  return absl::OkStatus();
}

void TraceReader::Warn(std::string msg) {
  if (stats_.warnings.size() < ReadStats::kMaxWarnings) stats_.warnings.push_back(std::move(msg));
}

bool TraceReader::Resync(uint64_t record_offset) {
  // The bad record header started at record_offset and libpcap consumed it
  // (16 bytes: it rejects a record on its header alone). Scan forward from
  // there for a header that is plausible and followed by another plausible
  // header (or by the end of input), then reopen libpcap at that record.
  // What the FILE read ahead goes back to the source first (the reopen
  // closes that FILE unread).
  if (size_t ahead = ReadAhead(file_); ahead > 0) {
#ifdef __GLIBC__
    source_->Unread(reinterpret_cast<const uint8_t*>(file_->_IO_read_ptr), ahead);
#endif
  }
  uint64_t pos = source_->position();
  std::vector<uint8_t> buf;
  buf.reserve(1 << 20);
  std::vector<uint8_t> chunk(1 << 16);
  size_t scanned_from = 0;
  auto plausible = [&](size_t i) -> int {  // 1 yes, 0 no, -1 need more bytes
    if (i + 16 > buf.size()) return -1;
    uint32_t sec = Load32(&buf[i], swapped_);
    uint32_t frac = Load32(&buf[i + 4], swapped_);
    uint32_t caplen = Load32(&buf[i + 8], swapped_);
    uint32_t len = Load32(&buf[i + 12], swapped_);
    if (frac >= (nano_file_ ? 1000000000u : 1000000u)) return 0;
    if (caplen > kMaxRecordLength || len > kMaxRecordLength || caplen > len || caplen == 0) return 0;
    if (snaplen_ != 0 && caplen > std::max<uint32_t>(snaplen_, 65535)) return 0;
    if (last_ts_sec_ >= 0 && (int64_t(sec) < last_ts_sec_ - 86400 || int64_t(sec) > last_ts_sec_ + 86400)) return 0;
    return 1;
  };
  while (buf.size() < kMaxResyncScan) {
    size_t got = source_->Read(chunk.data(), chunk.size());
    buf.insert(buf.end(), chunk.begin(), chunk.begin() + static_cast<long>(got));
    bool eof = got == 0;
    for (size_t i = scanned_from; i + 16 <= buf.size(); ++i) {
      int p = plausible(i);
      if (p != 1) continue;
      size_t next = i + 16 + Load32(&buf[i + 8], swapped_);
      int q = next == buf.size() && eof ? 1 : plausible(next);
      if (q == -1 && !eof) {  // need more bytes to confirm
        scanned_from = i;
        goto read_more;
      }
      if (q == 1) {
        uint64_t skipped = pos - record_offset + i;
        source_->Unread(buf.data() + i, buf.size() - i);
        source_->Unread(file_header_, sizeof file_header_);
        stats_.corrupt_records++;
        Warn(absl::StrCat(source_->name(), ": corrupt record at offset ", record_offset, ", skipped ",
                          skipped, " bytes to the next valid record"));
        return OpenPcap().ok();
      }
    }
    scanned_from = buf.size() >= 16 ? buf.size() - 15 : 0;
    if (eof) break;
  read_more:;
  }
  stats_.corrupt_records++;
  stats_.truncated = true;
  Warn(absl::StrCat(source_->name(), ": corrupt record at offset ", record_offset,
                    " and no valid record after it; rest of file skipped"));
  return false;
}

bool TraceReader::TakeFrame(int linktype, int64_t ts_ns, const uint8_t* data, uint32_t caplen,
                            uint32_t wirelen, uint64_t offset, PacketRecord* out) {
  stats_.frames++;
  stats_.captured_bytes += caplen;
  stats_.wire_bytes += wirelen;
  switch (ParseFrame(linktype, data, caplen, wirelen, out)) {
    case ParseOutcome::kIp:
      out->ts_ns = ts_ns;
      stats_.ip_packets++;
      last_record_bytes_ = 16 + caplen;
      return true;
    case ParseOutcome::kNonIp:
      stats_.non_ip++;
      return false;
    case ParseOutcome::kMalformed:
      stats_.malformed++;
      if (stats_.malformed <= 3) {
        Warn(absl::StrCat(source_->name(), ": malformed IP header in frame ", stats_.frames,
                          " at offset ", offset, ", skipped"));
      }
      return false;
    case ParseOutcome::kUnsupportedLink:
      stats_.unsupported_link++;
      if (stats_.unsupported_link == 1) {
        const char* lname = pcap_datalink_val_to_name(linktype);
        Warn(absl::StrCat(source_->name(), ": link type ", linktype, " (", lname ? lname : "?",
                          ") is not decoded; its frames are counted as non-IP"));
      }
      return false;
  }
  return false;
}

bool TraceReader::FallBackToBlockReader() {
  auto fresh = source_->Reopen();
  if (!fresh.ok()) {
    stats_.truncated = true;
    Warn(absl::StrCat(source_->name(),
                      ": interfaces of several link types; libpcap stops here and the input "
                      "cannot be reopened: ", fresh.status().message()));
    return false;
  }
  if (pcap_) {
    pcap_close(pcap_);
    pcap_ = nullptr;
  }
  source_ = std::move(*fresh);
  blocks_ = std::make_unique<PcapngBlockReader>(source_.get());
  blocks_skip_ = stats_.frames;
  return true;
}

bool TraceReader::NextFromBlocks(PacketRecord* out) {
  PcapngRecord rec;
  while (!done_) {
    int rc = blocks_->Next(&rec);
    if (rc == 0) {
      done_ = true;
      break;
    }
    if (rc < 0) {
      stats_.truncated = true;
      Warn(absl::StrCat(source_->name(), ": ", blocks_->error(), "; rest of file skipped"));
      done_ = true;
      break;
    }
    if (blocks_skip_ > 0) {  // already returned through libpcap
      --blocks_skip_;
      continue;
    }
    if (TakeFrame(rec.linktype, rec.ts_ns, rec.data, rec.caplen, rec.wirelen,
                  blocks_->block_offset(), out)) {
      return true;
    }
  }
  return false;
}

bool TraceReader::Next(PacketRecord* out) {
  if (blocks_) return NextFromBlocks(out);
  while (!done_) {
    uint64_t record_offset = ConsumedPosition(*source_, file_);
    struct pcap_pkthdr* hdr;
    const u_char* data;
    int rc = pcap_next_ex(pcap_, &hdr, &data);
    if (rc == 1) {
      last_ts_sec_ = hdr->ts.tv_sec;
      int64_t ts = int64_t(hdr->ts.tv_sec) * 1000000000 + int64_t(hdr->ts.tv_usec);
      if (TakeFrame(linktype_, ts, data, hdr->caplen, hdr->len, record_offset, out)) return true;
      continue;
    }
    if (rc == PCAP_ERROR_BREAK) {  // clean end of file
      if (!source_->error().ok()) {
        stats_.truncated = true;
        Warn(std::string(source_->error().message()));
      }
      done_ = true;
      break;
    }
    // A read error: a corrupt or truncated record.
    std::string err = pcap_geterr(pcap_);
    // The source's own error (corrupt compressed data) is the cause only once
    // libpcap has consumed every byte the source delivered before it.
    if (!source_->error().ok() && ReadAhead(file_) == 0) {
      stats_.truncated = true;
      Warn(absl::StrCat(source_->error().message(), " (record at offset ", record_offset, ")"));
      done_ = true;
      break;
    }
    if (!classic_ && err.find("different from the") != std::string::npos) {
      // libpcap reads only pcapng files whose interfaces share the first one's
      // link type and snapshot length (mergecap makes such files).
      if (FallBackToBlockReader()) return NextFromBlocks(out);
      done_ = true;
      break;
    }
    bool at_eof = err.find("truncated") != std::string::npos;
    if (classic_ && !at_eof) {
      if (Resync(record_offset)) continue;
      done_ = true;
      break;
    }
    stats_.truncated = true;
    Warn(absl::StrCat(source_->name(), ": ", at_eof ? "file ends inside the record" : err,
                      " at offset ", record_offset, "; ",
                      at_eof ? "the partial record is dropped" : "rest of file skipped"));
    done_ = true;
  }
  return false;
}

}  // namespace dgc
