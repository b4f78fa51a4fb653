// Byte-level writing and bounds-checked reading for dgc's compact binary forms
// (flow records, marginal histograms, skeletons, artifacts, model checkpoints
// and deltas). A ByteReader never reads past its input: a read that
// would fails, sets ok() false, and leaves the output untouched, so decoders
// of untrusted bytes check ok() once at the end of each part.
#ifndef DGC_COMMON_BASE_BYTE_IO_H_
#define DGC_COMMON_BASE_BYTE_IO_H_

#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

#include "absl/strings/string_view.h"

namespace dgc {

inline uint64_t ZigZag(int64_t v) {
  return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
}
inline int64_t UnZigZag(uint64_t v) {
  return static_cast<int64_t>(v >> 1) ^ -static_cast<int64_t>(v & 1);
}

class ByteWriter {
 public:
  void U8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void U16(uint16_t v) {  // big-endian
    U8(static_cast<uint8_t>(v >> 8));
    U8(static_cast<uint8_t>(v));
  }
  void Bytes(const void* p, size_t n) { out_.append(static_cast<const char*>(p), n); }
  void Varint(uint64_t v) {
    while (v >= 0x80) {
      U8(static_cast<uint8_t>(v | 0x80));
      v >>= 7;
    }
    U8(static_cast<uint8_t>(v));
  }
  void SignedVarint(int64_t v) { Varint(ZigZag(v)); }
  // Fixed-width little-endian (host order on every platform dgc builds for):
  // the weight files' headers and tensors.
  template <typename T>
  void Fixed(T v) {
    static_assert(std::is_trivially_copyable_v<T>);
    Bytes(&v, sizeof v);
  }

  size_t size() const { return out_.size(); }
  const std::string& buffer() const { return out_; }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

class ByteReader {
 public:
  explicit ByteReader(absl::string_view in) : in_(in) {}

  bool U8(uint8_t* v) {
    if (!Need(1)) return false;
    *v = static_cast<uint8_t>(in_[pos_++]);
    return true;
  }
  bool U16(uint16_t* v) {
    if (!Need(2)) return false;
    *v = static_cast<uint16_t>(static_cast<uint8_t>(in_[pos_]) << 8 |
                               static_cast<uint8_t>(in_[pos_ + 1]));
    pos_ += 2;
    return true;
  }
  bool Bytes(void* p, size_t n) {
    if (!Need(n)) return false;
    std::memcpy(p, in_.data() + pos_, n);
    pos_ += n;
    return true;
  }
  bool Varint(uint64_t* v) {
    uint64_t r = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      uint8_t b;
      if (!U8(&b)) return false;
      if (shift == 63 && b > 1) return Fail();  // more than 64 bits
      r |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) {
        *v = r;
        return true;
      }
    }
    return Fail();
  }
  template <typename T>
  bool Fixed(T* v) {
    static_assert(std::is_trivially_copyable_v<T>);
    return Bytes(v, sizeof *v);
  }
  // Points *p at the next n bytes (inside the input, no copy) and skips them.
  bool View(size_t n, const char** p) {
    if (!Need(n)) return false;
    *p = in_.data() + pos_;
    pos_ += n;
    return true;
  }
  bool SignedVarint(int64_t* v) {
    uint64_t u;
    if (!Varint(&u)) return false;
    *v = UnZigZag(u);
    return true;
  }

  bool ok() const { return ok_; }
  size_t position() const { return pos_; }
  size_t remaining() const { return in_.size() - pos_; }

 private:
  bool Need(size_t n) {
    if (!ok_ || in_.size() - pos_ < n) return Fail();
    return true;
  }
  bool Fail() {
    ok_ = false;
    return false;
  }

  absl::string_view in_;
  size_t pos_ = 0;
  bool ok_ = true;
};

// Fixed-width little-endian values in headers (host order is little-endian on
// every platform dgc builds for; memcpy keeps unaligned access defined).
template <typename T>
void PutFixed(std::string* out, T v) {
  out->append(reinterpret_cast<const char*>(&v), sizeof v);
}
template <typename T>
T LoadFixed(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

}  // namespace dgc

#endif  // DGC_COMMON_BASE_BYTE_IO_H_
