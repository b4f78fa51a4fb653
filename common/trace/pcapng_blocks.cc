#include "common/trace/pcapng_blocks.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace dgc {
namespace {
constexpr uint32_t kShb = 0x0a0d0d0a;
constexpr uint32_t kIdb = 1;
constexpr uint32_t kOpb = 2;
constexpr uint32_t kSpb = 3;
constexpr uint32_t kEpb = 6;
constexpr uint32_t kByteOrderMagic = 0x1a2b3c4d;
constexpr uint32_t kMaxBlock = 64 << 20;
}  // namespace

uint32_t PcapngBlockReader::U32(const uint8_t* p) const {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return swapped_ ? __builtin_bswap32(v) : v;
}
uint16_t PcapngBlockReader::U16(const uint8_t* p) const {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return swapped_ ? __builtin_bswap16(v) : v;
}

int64_t PcapngBlockReader::ToNanos(const Interface& itf, uint64_t units) const {
  unsigned __int128 ns = (unsigned __int128)units * 1000000000u / itf.units_per_second;
  return static_cast<int64_t>(ns) + itf.offset_seconds * 1000000000;
}

bool PcapngBlockReader::ParseIdb(const uint8_t* b, size_t len) {
  if (len < 8) return false;
  Interface itf;
  itf.linktype = U16(b);
  itf.snaplen = U32(b + 4);
  for (size_t o = 8; o + 4 <= len;) {
    uint16_t code = U16(b + o), olen = U16(b + o + 2);
    if (code == 0) break;
    if (o + 4 + olen > len) return false;
    const uint8_t* v = b + o + 4;
    if (code == 9 && olen >= 1) {  // if_tsresol
      uint8_t r = v[0];
      uint64_t u = 1;
      if (r & 0x80) {
        if ((r & 0x7f) > 63) return false;
        u = uint64_t(1) << (r & 0x7f);
      } else {
        if (r > 19) return false;
        for (int i = 0; i < r; ++i) u *= 10;
      }
      itf.units_per_second = u;
    } else if (code == 14 && olen >= 8) {  // if_tsoffset
      uint64_t off;
      std::memcpy(&off, v, 8);
      if (swapped_) off = __builtin_bswap64(off);
      itf.offset_seconds = static_cast<int64_t>(off);
    }
    o += 4 + ((olen + 3u) & ~3u);
  }
  interfaces_.push_back(itf);
  return true;
}

int PcapngBlockReader::Next(PcapngRecord* out) {
  while (true) {
    block_offset_ = source_->position();
    uint8_t head[8];
    size_t got = source_->Read(head, 8);
    if (got == 0) return 0;
    if (got < 8) {
      error_ = absl::StrCat("file ends inside a block header at offset ", block_offset_);
      return -1;
    }
    uint32_t type;
    std::memcpy(&type, head, 4);
    if (type == kShb) {
      // The byte-order magic follows the length: read it to learn the order.
      uint8_t bom[4];
      if (source_->Read(bom, 4) != 4) {
        error_ = absl::StrCat("truncated section header at offset ", block_offset_);
        return -1;
      }
      uint32_t m;
      std::memcpy(&m, bom, 4);
      if (m == kByteOrderMagic) {
        swapped_ = false;
      } else if (__builtin_bswap32(m) == kByteOrderMagic) {
        swapped_ = true;
      } else {
        error_ = absl::StrCat("bad byte-order magic at offset ", block_offset_);
        return -1;
      }
      source_->Unread(bom, 4);
      seen_shb_ = true;
      interfaces_.clear();
    } else {
      type = U32(head);
    }
    if (!seen_shb_) {
      error_ = "not a pcapng file";
      return -1;
    }
    uint32_t len = U32(head + 4);
    if (len < 12 || len % 4 != 0 || len > kMaxBlock) {
      error_ = absl::StrCat("bad block length ", len, " at offset ", block_offset_);
      return -1;
    }
    block_.resize(len - 8);
    if (source_->Read(block_.data(), block_.size()) != block_.size()) {
      error_ = absl::StrCat("file ends inside the block at offset ", block_offset_);
      return -1;
    }
    const uint8_t* b = block_.data();
    size_t blen = block_.size() - 4;  // without the trailing length
    if (type == kIdb) {
      if (!ParseIdb(b, blen)) {
        error_ = absl::StrCat("bad interface description at offset ", block_offset_);
        return -1;
      }
      continue;
    }
    if (type == kEpb || type == kOpb) {
      if (blen < 20) {
        error_ = absl::StrCat("short packet block at offset ", block_offset_);
        return -1;
      }
      uint32_t id = type == kEpb ? U32(b) : U16(b);
      if (id >= interfaces_.size()) {
        error_ = absl::StrCat("packet of undeclared interface ", id, " at offset ", block_offset_);
        return -1;
      }
      const Interface& itf = interfaces_[id];
      uint64_t units = uint64_t(U32(b + 4)) << 32 | U32(b + 8);
      out->caplen = U32(b + 12);
      out->wirelen = U32(b + 16);
      if (out->caplen > blen - 20) {
        error_ = absl::StrCat("packet longer than its block at offset ", block_offset_);
        return -1;
      }
      out->linktype = itf.linktype;
      out->ts_ns = ToNanos(itf, units);
      out->data = b + 20;
      return 1;
    }
    if (type == kSpb) {
      if (interfaces_.empty() || blen < 4) {
        error_ = absl::StrCat("simple packet block without interface at offset ", block_offset_);
        return -1;
      }
      const Interface& itf = interfaces_[0];
      out->wirelen = U32(b);
      uint32_t cap = out->wirelen;
      if (itf.snaplen && cap > itf.snaplen) cap = itf.snaplen;
      if (cap > blen - 4) cap = static_cast<uint32_t>(blen - 4);
      out->caplen = cap;
      out->linktype = itf.linktype;
      out->ts_ns = 0;  // simple packet blocks carry no timestamp
      out->data = b + 4;
      return 1;
    }
    // Name resolution, statistics, custom and unknown blocks: nothing to read.
  }
}

}  // namespace dgc
