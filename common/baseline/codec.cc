#include "common/baseline/codec.h"

#include <lzma.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <memory>

#include "absl/strings/str_cat.h"

namespace dgc::baseline {
namespace {

constexpr size_t kStep = size_t{1} << 20;  // input handed over per call, for progress

void AddConsumed(std::atomic<uint64_t>* consumed, size_t n) {
  if (consumed) consumed->fetch_add(n, std::memory_order_relaxed);
}

// Makes room for at least `want` more bytes after `used` in `out`.
void Grow(std::string* out, size_t used, size_t want) {
  if (out->size() - used < want) out->resize(std::max(out->size() * 2, used + want));
}

StatusOr<std::string> Gzip(int level, absl::string_view data, std::atomic<uint64_t>* consumed) {
  z_stream zs{};
  // 15 + 16: a gzip wrapper, as `gzip` writes, rather than zlib's own.
  if (deflateInit2(&zs, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    return absl::ResourceExhaustedError("gzip: cannot initialise zlib");
  }
  std::string out;
  out.resize(deflateBound(&zs, static_cast<uLong>(std::min<size_t>(data.size(), kStep))) + 64);
  size_t used = 0, pos = 0;
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    size_t n = std::min(kStep, data.size() - pos);
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data() + pos));
    zs.avail_in = static_cast<uInt>(n);
    int flush = pos + n == data.size() ? Z_FINISH : Z_NO_FLUSH;
    do {
      Grow(&out, used, kStep / 4);
      zs.next_out = reinterpret_cast<Bytef*>(&out[used]);
      zs.avail_out = static_cast<uInt>(std::min<size_t>(out.size() - used, 1u << 30));
      size_t before = zs.avail_out;
      rc = deflate(&zs, flush);
      used += before - zs.avail_out;
      if (rc == Z_STREAM_ERROR) {
        deflateEnd(&zs);
        return absl::InternalError("gzip: zlib stream error");
      }
    } while (zs.avail_out == 0 || (flush == Z_FINISH && rc != Z_STREAM_END));
    pos += n;
    AddConsumed(consumed, n);
  }
  deflateEnd(&zs);
  out.resize(used);
  return out;
}

StatusOr<std::string> Zstd(int level, absl::string_view data, std::atomic<uint64_t>* consumed) {
  std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> cctx(ZSTD_createCCtx(), ZSTD_freeCCtx);
  if (!cctx) return absl::ResourceExhaustedError("zstd: cannot create a context");
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, level);
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_checksumFlag, 1);  // as the zstd CLI does
  // A pledged size tunes the window to the input and records the content size,
  // exactly as `zstd -19 FILE` does.
  ZSTD_CCtx_setPledgedSrcSize(cctx.get(), data.size());
  std::string out;
  out.resize(std::min(ZSTD_compressBound(data.size()), ZSTD_CStreamOutSize() * 4));
  size_t used = 0, pos = 0;
  for (;;) {
    size_t n = std::min(kStep, data.size() - pos);
    bool last = pos + n == data.size();
    ZSTD_inBuffer in{data.data() + pos, n, 0};
    size_t remaining;
    do {
      Grow(&out, used, ZSTD_CStreamOutSize());
      ZSTD_outBuffer ob{&out[used], out.size() - used, 0};
      remaining = ZSTD_compressStream2(cctx.get(), &ob, &in, last ? ZSTD_e_end : ZSTD_e_continue);
      if (ZSTD_isError(remaining)) {
        return absl::InternalError(absl::StrCat("zstd: ", ZSTD_getErrorName(remaining)));
      }
      used += ob.pos;
    } while (last ? remaining != 0 : in.pos < in.size);
    pos += n;
    AddConsumed(consumed, n);
    if (last) break;
  }
  out.resize(used);
  return out;
}

StatusOr<std::string> Xz(int level, absl::string_view data, std::atomic<uint64_t>* consumed) {
  lzma_stream strm = LZMA_STREAM_INIT;
  lzma_ret ret = lzma_easy_encoder(&strm, static_cast<uint32_t>(level), LZMA_CHECK_CRC64);
  if (ret == LZMA_MEM_ERROR) return absl::ResourceExhaustedError("xz: out of memory");
  if (ret != LZMA_OK) return absl::InternalError(absl::StrCat("xz: encoder init error ", ret));
  std::string out;
  out.resize(kStep);
  size_t used = 0, pos = 0;
  for (;;) {
    size_t n = std::min(kStep, data.size() - pos);
    bool last = pos + n == data.size();
    strm.next_in = reinterpret_cast<const uint8_t*>(data.data() + pos);
    strm.avail_in = n;
    lzma_action action = last ? LZMA_FINISH : LZMA_RUN;
    for (;;) {
      Grow(&out, used, kStep / 4);
      strm.next_out = reinterpret_cast<uint8_t*>(&out[used]);
      strm.avail_out = out.size() - used;
      size_t before = strm.avail_out;
      ret = lzma_code(&strm, action);
      used += before - strm.avail_out;
      if (ret == LZMA_STREAM_END) break;
      if (ret != LZMA_OK) {
        lzma_end(&strm);
        if (ret == LZMA_MEM_ERROR) return absl::ResourceExhaustedError("xz: out of memory");
        return absl::InternalError(absl::StrCat("xz: encoder error ", ret));
      }
      if (!last && strm.avail_in == 0) break;
    }
    pos += n;
    AddConsumed(consumed, n);
    if (last) break;
  }
  lzma_end(&strm);
  out.resize(used);
  return out;
}

Status TooBig(Codec codec, uint64_t max_output) {
  return absl::ResourceExhaustedError(
      absl::StrCat(CodecName(codec), ": decompressed data exceeds ", max_output, " bytes"));
}

StatusOr<std::string> Gunzip(absl::string_view data, uint64_t max_output) {
  z_stream zs{};
  if (inflateInit2(&zs, 15 + 16) != Z_OK) return absl::ResourceExhaustedError("gzip: cannot initialise zlib");
  std::string out;
  size_t used = 0;
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    Grow(&out, used, kStep);
    zs.next_out = reinterpret_cast<Bytef*>(&out[used]);
    zs.avail_out = static_cast<uInt>(out.size() - used);
    size_t before = zs.avail_out;
    rc = inflate(&zs, Z_NO_FLUSH);
    used += before - zs.avail_out;
    if (used > max_output) {
      inflateEnd(&zs);
      return TooBig(Codec::kGzip, max_output);
    }
    if (rc == Z_STREAM_END) break;
    if (rc != Z_OK || (zs.avail_in == 0 && zs.avail_out != 0)) {
      inflateEnd(&zs);
      return absl::DataLossError("gzip: corrupt or truncated stream");
    }
  }
  inflateEnd(&zs);
  out.resize(used);
  return out;
}

StatusOr<std::string> Unzstd(absl::string_view data, uint64_t max_output) {
  std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> dctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
  if (!dctx) return absl::ResourceExhaustedError("zstd: cannot create a context");
  std::string out;
  size_t used = 0;
  ZSTD_inBuffer in{data.data(), data.size(), 0};
  size_t rc = 1;
  while (rc != 0) {
    Grow(&out, used, ZSTD_DStreamOutSize());
    ZSTD_outBuffer ob{&out[used], out.size() - used, 0};
    rc = ZSTD_decompressStream(dctx.get(), &ob, &in);
    if (ZSTD_isError(rc)) {
      return absl::DataLossError(absl::StrCat("zstd: ", ZSTD_getErrorName(rc)));
    }
    used += ob.pos;
    if (used > max_output) return TooBig(Codec::kZstd, max_output);
    if (rc != 0 && in.pos == in.size && ob.pos < ob.size) {
      return absl::DataLossError("zstd: truncated stream");
    }
  }
  out.resize(used);
  return out;
}

StatusOr<std::string> Unxz(absl::string_view data, uint64_t max_output) {
  lzma_stream strm = LZMA_STREAM_INIT;
  if (lzma_stream_decoder(&strm, UINT64_MAX, 0) != LZMA_OK) {
    return absl::ResourceExhaustedError("xz: cannot initialise the decoder");
  }
  std::string out;
  size_t used = 0;
  strm.next_in = reinterpret_cast<const uint8_t*>(data.data());
  strm.avail_in = data.size();
  for (;;) {
    Grow(&out, used, kStep);
    strm.next_out = reinterpret_cast<uint8_t*>(&out[used]);
    strm.avail_out = out.size() - used;
    size_t before = strm.avail_out;
    lzma_ret ret = lzma_code(&strm, LZMA_FINISH);
    used += before - strm.avail_out;
    if (used > max_output) {
      lzma_end(&strm);
      return TooBig(Codec::kXz, max_output);
    }
    if (ret == LZMA_STREAM_END) break;
    if (ret != LZMA_OK) {
      lzma_end(&strm);
      return absl::DataLossError(absl::StrCat("xz: corrupt or truncated stream (error ", ret, ")"));
    }
  }
  lzma_end(&strm);
  out.resize(used);
  return out;
}

}  // namespace

const char* CodecName(Codec codec) {
  switch (codec) {
    case Codec::kGzip:
      return "gzip";
    case Codec::kZstd:
      return "zstd";
    case Codec::kXz:
      return "xz";
  }
  return "?";
}

int DefaultLevel(Codec codec) {
  switch (codec) {
    case Codec::kGzip:
      return 6;
    case Codec::kZstd:
      return 19;
    case Codec::kXz:
      return 9;
  }
  return 0;
}

StatusOr<std::string> Compress(Codec codec, int level, absl::string_view data,
                               std::atomic<uint64_t>* consumed) {
  switch (codec) {
    case Codec::kGzip:
      if (level < 1 || level > 9) return absl::InvalidArgumentError("gzip level must be 1-9");
      return Gzip(level, data, consumed);
    case Codec::kZstd:
      if (level < 1 || level > ZSTD_maxCLevel()) {
        return absl::InvalidArgumentError(absl::StrCat("zstd level must be 1-", ZSTD_maxCLevel()));
      }
      return Zstd(level, data, consumed);
    case Codec::kXz:
      if (level < 0 || level > 9) return absl::InvalidArgumentError("xz level must be 0-9");
      return Xz(level, data, consumed);
  }
  return absl::InvalidArgumentError("unknown codec");
}

namespace {

// The size of one zstd frame of `data` at `level`; `window_log` 0 leaves
// the level's own window.
StatusOr<uint64_t> ZstdFrameSize(absl::string_view data, int level, int window_log) {
  std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> cctx(ZSTD_createCCtx(), ZSTD_freeCCtx);
  if (!cctx) return absl::ResourceExhaustedError("zstd: cannot create a context");
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, level);
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_checksumFlag, 1);
  if (window_log > 0) ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_windowLog, window_log);
  // Streamed through one small buffer and counted: only the size is wanted,
  // and a whole-image output buffer (compressBound of up to ~200 MB on a
  // dense chunk) would set compress's peak memory. The pledged size puts the
  // content size in the frame header, as ZSTD_compress2 does, so the count
  // is that frame's size.
  const size_t pledged = ZSTD_CCtx_setPledgedSrcSize(cctx.get(), data.size());
  if (ZSTD_isError(pledged)) return absl::InternalError(absl::StrCat("zstd: ", ZSTD_getErrorName(pledged)));
  std::string buf(ZSTD_CStreamOutSize(), '\0');
  ZSTD_inBuffer in{data.data(), data.size(), 0};
  uint64_t total = 0;
  for (;;) {
    ZSTD_outBuffer out{buf.data(), buf.size(), 0};
    const size_t left = ZSTD_compressStream2(cctx.get(), &out, &in, ZSTD_e_end);
    if (ZSTD_isError(left)) return absl::InternalError(absl::StrCat("zstd: ", ZSTD_getErrorName(left)));
    total += out.pos;
    if (left == 0) return total;
  }
}

}  // namespace

StatusOr<CompressedSize> Zstd19Size(absl::string_view data, uint64_t exact_up_to) {
  constexpr int kWindowLog19 = 23;  // level 19's window on inputs over 256 KiB
  // Segments of 2 MiB (1 MiB under 32 MiB): longer ones see more of -19's
  // window, shorter ones cost less where the input is small.
  const size_t kSegment = data.size() > (size_t{32} << 20) ? size_t{2} << 20 : size_t{1} << 20;
  if (data.size() <= std::max<uint64_t>(exact_up_to, 4 * kSegment)) {
    DGC_ASSIGN_OR_RETURN(std::string z, Zstd(19, data, nullptr));
    return CompressedSize{z.size(), false};
  }
  DGC_ASSIGN_OR_RETURN(uint64_t proxy, ZstdFrameSize(data, 9, kWindowLog19));
  const size_t segments = std::max<size_t>(2, (data.size() / 16 + kSegment - 1) / kSegment);
  uint64_t z19 = 0, z9 = 0;
  for (size_t i = 0; i < segments; ++i) {
    // Centred in equal slices of the input, so the sample spans all of it.
    const size_t off = (data.size() - kSegment) * (2 * i + 1) / (2 * segments);
    const absl::string_view seg = data.substr(off, kSegment);
    DGC_ASSIGN_OR_RETURN(uint64_t a, ZstdFrameSize(seg, 19, 0));
    DGC_ASSIGN_OR_RETURN(uint64_t b, ZstdFrameSize(seg, 9, kWindowLog19));
    z19 += a;
    z9 += b;
  }
  return CompressedSize{static_cast<uint64_t>(double(proxy) * double(z19) / double(std::max<uint64_t>(z9, 1))), true};
}

StatusOr<std::string> Decompress(Codec codec, absl::string_view data, uint64_t max_output) {
  switch (codec) {
    case Codec::kGzip:
      return Gunzip(data, max_output);
    case Codec::kZstd:
      return Unzstd(data, max_output);
    case Codec::kXz:
      return Unxz(data, max_output);
  }
  return absl::InvalidArgumentError("unknown codec");
}

}  // namespace dgc::baseline
