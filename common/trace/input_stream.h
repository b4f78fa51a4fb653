// Byte sources for capture files: a path or stdin, transparently decompressed
// when the content (not the name) is gzip, zstd or xz. A source can be handed
// to libpcap as an unbuffered FILE*, so positions are exact and a reader can
// resynchronise after a corrupt record.
#ifndef DGC_COMMON_TRACE_INPUT_STREAM_H_
#define DGC_COMMON_TRACE_INPUT_STREAM_H_

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "common/base/status.h"

namespace dgc {

enum class Compression { kNone, kGzip, kZstd, kXz };
const char* CompressionName(Compression c);

class InputSource {
 public:
  // Opens `path`, or standard input when `path` is "-". Sniffs the first bytes
  // for a compression magic number. NotFound / PermissionDenied as the OS says.
  [[nodiscard]] static StatusOr<std::unique_ptr<InputSource>> Open(const std::string& path);
  // A source over bytes in memory (tests, fuzzing); decompression applies too.
  [[nodiscard]] static StatusOr<std::unique_ptr<InputSource>> FromBuffer(std::string bytes,
                                                                         std::string name);
  virtual ~InputSource();

  // A new source over the same input from its first byte (a path is opened
  // again; a buffer is copied). Unimplemented for standard input.
  [[nodiscard]] StatusOr<std::unique_ptr<InputSource>> Reopen() const;

  // Reads up to `n` decompressed bytes; 0 at end of input. A decompression
  // error (corrupt gzip) ends the input and is kept in error().
  size_t Read(void* buf, size_t n);
  // Puts bytes back in front of the stream; the next Read returns them first.
  // Moves position() back by their size.
  void Unread(const uint8_t* data, size_t n);

  // Decompressed bytes consumed so far (the offset of the next byte).
  uint64_t position() const { return position_; }
  // Compressed bytes read from the file so far, and the file size (0 when
  // unknown, e.g. stdin): for progress bars.
  uint64_t raw_position() const { return raw_position_; }
  uint64_t raw_size() const { return raw_size_; }
  const std::string& name() const { return name_; }
  Compression compression() const { return compression_; }
  const Status& error() const { return error_; }

  // A FILE* reading from this source. The source must outlive it; fclose on
  // it does not close the source. Unbuffered by default, so position() is
  // exactly what the reader consumed and a live pipe is never waited on;
  // `buffered` (for sources of known size, read by one thread) is far faster,
  // and the reader must then account for the FILE's read-ahead itself.
  FILE* OpenFile(bool buffered = false);

 private:
  struct Decoder;
  InputSource() = default;
  [[nodiscard]] Status Init();
  size_t ReadRaw(uint8_t* buf, size_t n);  // compressed bytes from fp_ or memory
  size_t Fill(uint8_t* buf, size_t n);     // decompressed bytes

  std::string name_;
  std::string path_;  // empty for stdin and buffers
  bool from_buffer_ = false;
  std::string original_;  // a buffer source's bytes, for Reopen()
  FILE* fp_ = nullptr;
  bool owns_fp_ = false;
  std::string memory_;
  size_t memory_pos_ = 0;
  Compression compression_ = Compression::kNone;
  std::unique_ptr<Decoder> decoder_;
  std::vector<uint8_t> pushback_;  // bytes to return before anything else, in order
  size_t pushback_pos_ = 0;
  uint64_t position_ = 0;
  uint64_t raw_position_ = 0;
  uint64_t raw_size_ = 0;
  Status error_;
};

}  // namespace dgc

#endif  // DGC_COMMON_TRACE_INPUT_STREAM_H_
