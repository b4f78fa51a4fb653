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

// The size of `zstd -19` of `data`: the unit of `--budget 0.1x`. Up to
// `exact_up_to` bytes it is measured (Compress, exactly as the CLI). Beyond,
// it is estimated, because zstd -19 runs at about 2.5 MB/s: on a header-only
// image (about 70 bytes a packet) that alone is 28 CPU-s per million
// packets, the whole of compress's cost goal. The estimate is zstd -9 with
// -19's 8 MiB window over the whole input (about 80 MB/s), scaled by the
// ratio of -19 to that on evenly spaced segments (1 MiB, 2 MiB over 32 MiB;
// a 16th of the input, at least two). Inputs under four segments are always
// measured. On the bench traces' chunk images (5 to 160 MB) it read -0.9%
// to +4.5% of the measured size at a fifth to a twelfth of the CPU
// (dgc-reference-bench, tests/bench/README.md). Deterministic.
struct CompressedSize {
  uint64_t bytes = 0;
  bool estimated = false;
};
[[nodiscard]] StatusOr<CompressedSize> Zstd19Size(absl::string_view data, uint64_t exact_up_to = uint64_t{4} << 20);

// Decompresses one stream made by Compress (or the CLI tool). DataLoss on a
// corrupt or truncated stream, ResourceExhausted when the output would exceed
// `max_output` bytes (a guard against decompression bombs).
[[nodiscard]] StatusOr<std::string> Decompress(Codec codec, absl::string_view data,
                                               uint64_t max_output = uint64_t{1} << 34);

}  // namespace dgc::baseline

#endif  // DGC_COMMON_BASELINE_CODEC_H_
