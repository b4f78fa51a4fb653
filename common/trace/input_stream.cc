#include "common/trace/input_stream.h"

#include <lzma.h>
#include <stdio_ext.h>
#include <sys/stat.h>
#include <zlib.h>
#include <zstd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace dgc {

const char* CompressionName(Compression c) {
  switch (c) {
    case Compression::kNone: return "none";
    case Compression::kGzip: return "gzip";
    case Compression::kZstd: return "zstd";
    case Compression::kXz: return "xz";
  }
  return "?";
}

// Streaming decompressor state; one of the three is in use.
struct InputSource::Decoder {
  static constexpr size_t kInSize = 1 << 17;
  std::vector<uint8_t> in = std::vector<uint8_t>(kInSize);
  size_t in_pos = 0, in_len = 0;
  bool in_eof = false;
  bool done = false;
  z_stream z{};
  bool z_init = false;
  ZSTD_DStream* zs = nullptr;
  bool zstd_frame_done = false;
  lzma_stream xz = LZMA_STREAM_INIT;
  bool xz_init = false;
  ~Decoder() {
    if (z_init) inflateEnd(&z);
    if (zs) ZSTD_freeDStream(zs);
    if (xz_init) lzma_end(&xz);
  }
};

InputSource::~InputSource() {
  if (owns_fp_ && fp_) std::fclose(fp_);
}

StatusOr<std::unique_ptr<InputSource>> InputSource::Open(const std::string& path) {
  std::unique_ptr<InputSource> src(new InputSource());
  if (path == "-") {
    src->name_ = "<stdin>";
    src->fp_ = stdin;
  } else {
    src->name_ = path;
    src->path_ = path;
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return ErrnoError(errno, "cannot open", path);
    if (S_ISDIR(st.st_mode)) return absl::InvalidArgumentError(absl::StrCat(path, " is a directory"));
    src->raw_size_ = static_cast<uint64_t>(st.st_size);
    src->fp_ = std::fopen(path.c_str(), "rb");
    if (!src->fp_) return ErrnoError(errno, "cannot open", path);
    src->owns_fp_ = true;
  }
  DGC_RETURN_IF_ERROR(src->Init());
  return src;
}

StatusOr<std::unique_ptr<InputSource>> InputSource::FromBuffer(std::string bytes, std::string name) {
  std::unique_ptr<InputSource> src(new InputSource());
  src->name_ = std::move(name);
  src->raw_size_ = bytes.size();
  src->from_buffer_ = true;
  src->original_ = bytes;
  src->memory_ = std::move(bytes);
  DGC_RETURN_IF_ERROR(src->Init());
  return src;
}

StatusOr<std::unique_ptr<InputSource>> InputSource::Reopen() const {
  if (from_buffer_) return FromBuffer(original_, name_);
  if (path_.empty()) {
    return absl::UnimplementedError(absl::StrCat(name_, ": cannot be read a second time"));
  }
  return Open(path_);
}

size_t InputSource::ReadRaw(uint8_t* buf, size_t n) {
  size_t got;
  if (fp_) {
    got = std::fread(buf, 1, n, fp_);
  } else {
    got = std::min(n, memory_.size() - memory_pos_);
    std::memcpy(buf, memory_.data() + memory_pos_, got);
    memory_pos_ += got;
  }
  raw_position_ += got;
  return got;
}

Status InputSource::Init() {
  uint8_t magic[6] = {};
  size_t got = ReadRaw(magic, sizeof magic);
  // The sniffed bytes are returned first, whatever the format.
  std::vector<uint8_t> head(magic, magic + got);
  if (got >= 2 && magic[0] == 0x1f && magic[1] == 0x8b) {
    compression_ = Compression::kGzip;
  } else if (got >= 4 && magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f && magic[3] == 0xfd) {
    compression_ = Compression::kZstd;
  } else if (got >= 6 && std::memcmp(magic, "\xfd" "7zXZ\0", 6) == 0) {
    compression_ = Compression::kXz;
  }
  if (compression_ == Compression::kNone) {
    pushback_ = std::move(head);
    return absl::OkStatus();
  }
  decoder_ = std::make_unique<Decoder>();
  std::memcpy(decoder_->in.data(), head.data(), head.size());
  decoder_->in_len = head.size();
  switch (compression_) {
    case Compression::kGzip:
      if (inflateInit2(&decoder_->z, 15 + 32) != Z_OK) return absl::InternalError("zlib init failed");
      decoder_->z_init = true;
      break;
    case Compression::kZstd:
      decoder_->zs = ZSTD_createDStream();
      if (!decoder_->zs) return absl::InternalError("zstd init failed");
      ZSTD_initDStream(decoder_->zs);
      break;
    case Compression::kXz:
      if (lzma_stream_decoder(&decoder_->xz, UINT64_MAX, LZMA_CONCATENATED) != LZMA_OK) {
        return absl::InternalError("xz init failed");
      }
      decoder_->xz_init = true;
      break;
    case Compression::kNone:
      break;
  }
  return absl::OkStatus();
}

size_t InputSource::Fill(uint8_t* buf, size_t n) {
  if (!decoder_) return ReadRaw(buf, n);
  Decoder& d = *decoder_;
  size_t produced = 0;
  while (produced == 0 && !d.done) {
    if (d.in_pos == d.in_len && !d.in_eof) {
      d.in_len = ReadRaw(d.in.data(), d.in.size());
      d.in_pos = 0;
      if (d.in_len == 0) d.in_eof = true;
    }
    size_t avail = d.in_len - d.in_pos;
    if (compression_ == Compression::kGzip) {
      d.z.next_in = d.in.data() + d.in_pos;
      d.z.avail_in = static_cast<uInt>(avail);
      d.z.next_out = buf;
      d.z.avail_out = static_cast<uInt>(n);
      int rc = inflate(&d.z, Z_NO_FLUSH);
      d.in_pos = d.in_len - d.z.avail_in;
      produced = n - d.z.avail_out;
      if (rc == Z_STREAM_END) {
        // Another gzip member may follow (concatenated files); anything else
        // after the end of a member (padding, zeros) ends the input.
        if (d.in_pos == d.in_len && !d.in_eof) {
          d.in_len = ReadRaw(d.in.data(), d.in.size());
          d.in_pos = 0;
          if (d.in_len == 0) d.in_eof = true;
        }
        if (d.in_pos < d.in_len && d.in[d.in_pos] == 0x1f) {
          inflateReset(&d.z);
        } else {
          d.done = true;
        }
      } else if (rc == Z_BUF_ERROR && d.in_eof && produced == 0) {
        error_ = absl::DataLossError(absl::StrCat(name_, ": gzip stream ends early"));
        d.done = true;
      } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
        error_ = absl::DataLossError(absl::StrCat(name_, ": corrupt gzip data at compressed offset ",
                                                  raw_position_, ": ", d.z.msg ? d.z.msg : "?"));
        d.done = true;
      }
    } else if (compression_ == Compression::kZstd) {
      ZSTD_inBuffer in{d.in.data() + d.in_pos, avail, 0};
      ZSTD_outBuffer out{buf, n, 0};
      size_t rc = ZSTD_decompressStream(d.zs, &out, &in);
      d.in_pos += in.pos;
      produced = out.pos;
      if (ZSTD_isError(rc)) {
        error_ = absl::DataLossError(absl::StrCat(name_, ": corrupt zstd data at compressed offset ",
                                                  raw_position_, ": ", ZSTD_getErrorName(rc)));
        d.done = true;
      } else if (d.in_eof && d.in_pos == d.in_len && produced == 0) {
        if (!d.zstd_frame_done) {
          error_ = absl::DataLossError(absl::StrCat(name_, ": zstd stream ends early"));
        }
        d.done = true;
      } else if (in.pos > 0 || produced > 0) {
        d.zstd_frame_done = rc == 0;  // 0: a frame was completely decoded and flushed
      }
    } else {  // xz
      d.xz.next_in = d.in.data() + d.in_pos;
      d.xz.avail_in = avail;
      d.xz.next_out = buf;
      d.xz.avail_out = n;
      lzma_ret rc = lzma_code(&d.xz, d.in_eof ? LZMA_FINISH : LZMA_RUN);
      d.in_pos = d.in_len - d.xz.avail_in;
      produced = n - d.xz.avail_out;
      if (rc == LZMA_STREAM_END) {
        d.done = true;
      } else if (rc != LZMA_OK && rc != LZMA_BUF_ERROR) {
        error_ = absl::DataLossError(absl::StrCat(name_, ": corrupt xz data (lzma error ", int(rc), ")"));
        d.done = true;
      } else if (rc == LZMA_BUF_ERROR && d.in_eof) {
        error_ = absl::DataLossError(absl::StrCat(name_, ": xz stream ends early"));
        d.done = true;
      }
    }
  }
  return produced;
}

size_t InputSource::Read(void* out, size_t n) {
  uint8_t* buf = static_cast<uint8_t*>(out);
  size_t total = 0;
  if (pushback_pos_ < pushback_.size()) {
    size_t k = std::min(n, pushback_.size() - pushback_pos_);
    std::memcpy(buf, pushback_.data() + pushback_pos_, k);
    pushback_pos_ += k;
    total += k;
    if (pushback_pos_ == pushback_.size()) {
      pushback_.clear();
      pushback_pos_ = 0;
    }
  }
  while (total < n) {
    size_t k = Fill(buf + total, n - total);
    if (k == 0) break;
    total += k;
  }
  position_ += total;
  return total;
}

void InputSource::Unread(const uint8_t* data, size_t n) {
  std::vector<uint8_t> rest(pushback_.begin() + static_cast<long>(pushback_pos_), pushback_.end());
  pushback_.assign(data, data + n);
  pushback_.insert(pushback_.end(), rest.begin(), rest.end());
  pushback_pos_ = 0;
  position_ -= n;
}

FILE* InputSource::OpenFile(bool buffered) {
  cookie_io_functions_t io{};
  io.read = [](void* cookie, char* buf, size_t n) -> ssize_t {
    return static_cast<ssize_t>(static_cast<InputSource*>(cookie)->Read(buf, n));
  };
  io.seek = [](void* cookie, off64_t* offset, int whence) -> int {
    if (whence == SEEK_CUR && *offset == 0) {  // ftell
      *offset = static_cast<off64_t>(static_cast<InputSource*>(cookie)->position());
      return 0;
    }
    errno = ESPIPE;
    return -1;
  };
  io.close = [](void*) -> int { return 0; };
  FILE* f = fopencookie(this, "rb", io);
  if (!f) return f;
  if (buffered) {
    // One thread reads it: no stdio lock per fread (which glibc takes as soon
    // as the process has a second thread, e.g. ingest's writer).
    __fsetlocking(f, FSETLOCKING_BYCALLER);
  } else {
    setvbuf(f, nullptr, _IONBF, 0);
  }
  return f;
}

}  // namespace dgc
