// The columnar on-disk chunk format (.dgcc). Spec: common/trace/CHUNK_FORMAT.md.
// Versioned, every column zstd-compressed and xxh64-checksummed; decoding
// rejects anything inconsistent with a message naming the file and the part.
#ifndef DGC_COMMON_TRACE_CHUNK_FORMAT_H_
#define DGC_COMMON_TRACE_CHUNK_FORMAT_H_

#include <string>
#include "absl/strings/string_view.h"

#include "common/base/status.h"
#include "common/trace/chunk.h"

namespace dgc {

constexpr uint16_t kChunkFormatVersion = 1;
constexpr char kChunkFileSuffix[] = ".dgcc";

// Serialises `chunk`. `zstd_level` trades speed for size (spool chunks are
// short-lived: the default favours speed).
std::string EncodeChunk(const Chunk& chunk, int zstd_level = 3);

// Parses bytes made by EncodeChunk. `name` is used in error messages.
// DataLoss on checksum or consistency failures, InvalidArgument on a foreign
// file, Unimplemented on a newer format version.
[[nodiscard]] StatusOr<Chunk> DecodeChunk(absl::string_view bytes, absl::string_view name);

// Crash-safe write (temporary file + rename) and whole-file read.
[[nodiscard]] Status WriteChunkFile(const std::string& path, const Chunk& chunk, int zstd_level = 3);
[[nodiscard]] StatusOr<Chunk> ReadChunkFile(const std::string& path);

// "chunk-<seq>-<YYYYMMDDTHHMMSSZ>.dgcc" : sorts by time within a link directory.
std::string ChunkFileName(const Chunk& chunk);

}  // namespace dgc

#endif  // DGC_COMMON_TRACE_CHUNK_FORMAT_H_
