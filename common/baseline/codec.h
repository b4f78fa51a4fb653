// General-purpose compressors, in-process through zlib, libzstd and liblzma,
// with the same formats and presets as the command-line tools: `gzip -6`
// (gzip wrapper, no file name), `zstd -19` (content size and checksum in the
// frame), `xz -9` (.xz container, CRC64). Single-threaded, so the CPU time a
// caller measures on its thread is the whole cost.
#ifndef DGC_COMMON_BASELINE_CODEC_H_
#define DGC_COMMON_BASELINE_CODEC_H_

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "common/base/status.h"

namespace dgc::baseline {

enum class Codec { kGzip, kZstd, kXz };

// "gzip", "zstd", "xz".
const char* CodecName(Codec codec);

// The level each codec is measured at by default: 6, 19, 9.
int DefaultLevel(Codec codec);

// Compresses `data` at `level` (gzip 1-9, zstd 1-22, xz 0-9). When `consumed`
// is given, input bytes are added to it as they are taken (about every MiB),
// so another thread can draw progress. InvalidArgument for a level out of
// range, ResourceExhausted when the library cannot allocate its state (xz -9
// needs about 700 MB), Internal for any other library error.
[[nodiscard]] StatusOr<std::string> Compress(Codec codec, int level, absl::string_view data,
                                             std::atomic<uint64_t>* consumed = nullptr);

// Decompresses one stream made by Compress (or the CLI tool). DataLoss on a
// corrupt or truncated stream, ResourceExhausted when the output would exceed
// `max_output` bytes (a guard against decompression bombs).
[[nodiscard]] StatusOr<std::string> Decompress(Codec codec, absl::string_view data,
                                               uint64_t max_output = uint64_t{1} << 34);

}  // namespace dgc::baseline

#endif  // DGC_COMMON_BASELINE_CODEC_H_
