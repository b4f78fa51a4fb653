#include "common/wire/parent_bundle.h"

#include "common/base/byte_io.h"

namespace dgc::wire {
namespace {
constexpr char kMagic[] = "DGCPB\x01";
constexpr size_t kMagicSize = 6;
}  // namespace

std::string EncodeParentBundle(const ParentBundle& b) {
  ByteWriter w;
  w.Bytes(kMagic, kMagicSize);
  w.Varint(b.chain.size());
  for (const auto& l : b.chain) {
    w.Varint(l.model_id.size());
    w.Bytes(l.model_id.data(), l.model_id.size());
    w.Varint(l.blob.size());
    w.Bytes(l.blob.data(), l.blob.size());
  }
  return w.Take();
}

StatusOr<ParentBundle> DecodeParentBundle(absl::string_view bytes) {
  if (bytes.size() < kMagicSize || bytes.substr(0, kMagicSize) != absl::string_view(kMagic, kMagicSize)) {
    return absl::InvalidArgumentError("parent bundle: bad magic");
  }
  ByteReader r(bytes.substr(kMagicSize));
  uint64_t n = 0;
  if (!r.Varint(&n) || n == 0 || n > bytes.size()) return absl::InvalidArgumentError("parent bundle: bad count");
  ParentBundle b;
  for (uint64_t i = 0; i < n; ++i) {
    ParentLink l;
    uint64_t len = 0;
    if (!r.Varint(&len) || len > bytes.size()) return absl::InvalidArgumentError("parent bundle: bad id length");
    l.model_id.resize(len);
    if (!r.Bytes(l.model_id.data(), len)) return absl::InvalidArgumentError("parent bundle: truncated id");
    if (!r.Varint(&len) || len > bytes.size()) return absl::InvalidArgumentError("parent bundle: bad blob length");
    l.blob.resize(len);
    if (!r.Bytes(l.blob.data(), len)) return absl::InvalidArgumentError("parent bundle: truncated blob");
    b.chain.push_back(std::move(l));
  }
  if (r.remaining() != 0) return absl::InvalidArgumentError("parent bundle: bytes after the last link");
  return b;
}

}  // namespace dgc::wire
