#include "library/library_records.h"

#include <cstring>
#include <iterator>
#include <limits>
#include <optional>

#include "absl/strings/escaping.h"
#include "xxhash.h"
#include "zstd.h"
#include "absl/strings/str_cat.h"
#include "common/base/byte_io.h"
#include "common/base/time.h"
#include "common/model/artifact.h"
#include "nlohmann/json.hpp"

namespace dgc::library {
namespace {

constexpr uint8_t kTagModel = 'M';
constexpr uint8_t kTagChunk = 'C';
constexpr uint8_t kTagJob = 'J';
constexpr uint8_t kModelVersion = 1;
// 3: a flags byte after the model id (kSameParent: no parent id, it is the
// model id; kNoDrift: no drift, -1; kCountsInRecord: the report's packets,
// flows, bytes and raw_bytes are the record's own and are not stored twice).
// On a quiet link every byte of a chunk's record counts.
// 2: the report is stored zstd-compressed with the artifact dictionary
// (model::CompressReport), its raw size first; 1: plain JSON. Both still read.
// 4: the link is read from the key, not stored again; the decision is one
// byte (kDecisions, 0 for none, 255 then the text for any other); the seq
// is left out when it is start / duration; the commit time is stored as
// milliseconds after the chunk's end (kCommitMillis); 16 bits of the key's
// hash check that the record is the key's. 31 B less on a
// quiet hour's record, where flow records spend ~240 B in all.
// 5: a stub (flags kInPack only): the key check, then how far after the
// pack's start the chunk starts; the record is a member of that pack
// (kPlainReport: its report is not compressed on its own).
constexpr uint8_t kChunkVersion = 5;
constexpr uint8_t kFullChunkVersion = 4;  // full records are still written as 4
constexpr uint8_t kSameParent = 1, kNoDrift = 2, kCountsInRecord = 4, kSeqFromStart = 8, kCommitMillis = 16;
constexpr uint8_t kInPack = 32, kPlainReport = 64;
constexpr uint8_t kAllFlags =
    kSameParent | kNoDrift | kCountsInRecord | kSeqFromStart | kCommitMillis | kPlainReport;
constexpr uint8_t kTagPack = 'P';
constexpr uint8_t kPackVersion = 1;
constexpr uint64_t kMaxPackRaw = 256ull << 20;
constexpr const char* kDecisions[] = {"", "continue", "switch", "retrain", "base"};
constexpr uint8_t kOtherDecision = 255;
constexpr const char* kRecordCounts[] = {"packets", "flows", "bytes", "raw_bytes"};
constexpr uint8_t kJobVersion = 1;
constexpr uint64_t kMaxField = 1ull << 31;

void Str(ByteWriter* w, absl::string_view s) {
  w->Varint(s.size());
  w->Bytes(s.data(), s.size());
}
void F64(ByteWriter* w, double d) { w->Bytes(&d, sizeof d); }

// A reader that remembers the first failure.
class Reader {
 public:
  explicit Reader(absl::string_view in) : r_(in) {}
  uint64_t U() {
    uint64_t v = 0;
    r_.Varint(&v);
    return v;
  }
  int64_t S() {
    int64_t v = 0;
    r_.SignedVarint(&v);
    return v;
  }
  uint8_t B() {
    uint8_t v = 0;
    r_.U8(&v);
    return v;
  }
  double D() {
    double d = 0;
    r_.Bytes(&d, sizeof d);
    return d;
  }
  void Raw(void* out, size_t n) { r_.Bytes(out, n); }
  std::string Str() {
    uint64_t n = U();
    if (!r_.ok() || n > kMaxField || n > r_.remaining()) {
      bad_ = true;
      return {};
    }
    std::string s(n, '\0');
    r_.Bytes(s.data(), n);
    return s;
  }
  bool ok() const { return r_.ok() && !bad_; }
  bool done() const { return ok() && r_.remaining() == 0; }
  size_t Remaining() const { return r_.remaining(); }

 private:
  ByteReader r_;
  bool bad_ = false;
};

std::string Printable(absl::string_view key) {
  std::string link;
  int64_t t;
  if (ParseChunkKey(key, &link, &t)) return ChunkKeyToString(key);
  return absl::CHexEscape(key);
}

Status Corrupt(absl::string_view what, absl::string_view key, absl::string_view why) {
  return absl::DataLossError(
      absl::StrCat("corrupt ", what, " record at key '", Printable(key), "': ", why));
}

// Checks tag and version; returns the version.
StatusOr<uint8_t> Header(Reader* r, uint8_t tag, uint8_t newest, absl::string_view what,
                         absl::string_view key) {
  uint8_t t = r->B();
  uint8_t v = r->B();
  if (!r->ok()) return Corrupt(what, key, "shorter than its header");
  if (t != tag) {
    return Corrupt(what, key, absl::StrCat("tag 0x", absl::Hex(t), " is not a ", what, " record"));
  }
  if (v > newest) {
    return absl::UnimplementedError(absl::StrCat(what, " record at key '", Printable(key), "' has version ", v,
                                                 "; this build reads up to ", newest,
                                                 ": upgrade dgc to read this library"));
  }
  return v;
}

}  // namespace

const char* ModelKindName(ModelKind kind) {
  switch (kind) {
    case ModelKind::kBase: return "base";
    case ModelKind::kFinetune: return "finetune";
    case ModelKind::kRetrain: return "retrain";
  }
  return "unknown";
}

const char* ChunkStateName(ChunkState s) {
  switch (s) {
    case ChunkState::kCommitted: return "committed";
  }
  return "unknown";
}

uint64_t ModelRecord::StoredBytes() const {
  return blob.size() + id.size() + parent_id.size() + source_chunk.size() + config_json.size() +
         training_json.size() + fingerprint.size() + 16;
}

std::string ChunkKey(absl::string_view link, int64_t start_ns) {
  std::string k(link);
  k.push_back('\0');
  uint64_t u = static_cast<uint64_t>(start_ns) ^ (1ull << 63);
  for (int i = 7; i >= 0; --i) k.push_back(static_cast<char>(u >> (8 * i)));
  return k;
}

bool ParseChunkKey(absl::string_view key, std::string* link, int64_t* start_ns) {
  if (key.size() < 10 || key[key.size() - 9] != '\0') return false;
  absl::string_view l = key.substr(0, key.size() - 9);
  if (l.find('\0') != absl::string_view::npos) return false;
  uint64_t u = 0;
  for (size_t i = key.size() - 8; i < key.size(); ++i) u = u << 8 | static_cast<uint8_t>(key[i]);
  *link = std::string(l);
  *start_ns = static_cast<int64_t>(u ^ (1ull << 63));
  return true;
}

std::string ChunkKeyToString(absl::string_view key) {
  std::string link;
  int64_t t;
  if (!ParseChunkKey(key, &link, &t)) return absl::CHexEscape(key);
  return absl::StrCat(link, "@", FormatRfc3339(t));
}

std::string LineageKey(absl::string_view parent, absl::string_view child) {
  return absl::StrCat(parent, absl::string_view("\0", 1), child);
}

Status ValidateId(absl::string_view what, absl::string_view id) {
  if (id.empty() || id.size() > 200) {
    return absl::InvalidArgumentError(absl::StrCat(what, " '", absl::CHexEscape(id), "': must be 1-200 bytes"));
  }
  for (char c : id) {
    if (static_cast<unsigned char>(c) < 0x20 || c == '@' || c == '/' || c == 0x7f) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, " '", absl::CHexEscape(id), "': control characters, '@' and '/' are not allowed"));
    }
  }
  return absl::OkStatus();
}

std::string EncodeModel(const ModelRecord& m) {
  ByteWriter w;
  w.U8(kTagModel);
  w.U8(kModelVersion);
  Str(&w, m.id);
  w.U8(static_cast<uint8_t>(m.kind));
  Str(&w, m.parent_id);
  w.Varint(m.depth);
  Str(&w, m.source_chunk);
  w.SignedVarint(m.created_ns);
  Str(&w, m.config_json);
  Str(&w, m.training_json);
  Str(&w, m.fingerprint);
  Str(&w, m.blob);
  return w.Take();
}

std::string EncodeModelV0ForUpgrade(const ModelRecord& m) {
  ByteWriter w;
  w.U8(kTagModel);
  w.U8(0);
  Str(&w, m.id);
  w.U8(static_cast<uint8_t>(m.kind));
  Str(&w, m.parent_id);
  w.SignedVarint(m.created_ns);
  Str(&w, m.blob);
  return w.Take();
}

StatusOr<ModelRecord> DecodeModel(absl::string_view key, absl::string_view value) {
  Reader r(value);
  DGC_ASSIGN_OR_RETURN(uint8_t version, Header(&r, kTagModel, kModelVersion, "model", key));
  ModelRecord m;
  m.id = r.Str();
  uint8_t kind = r.B();
  m.parent_id = r.Str();
  if (version >= 1) {
    m.depth = static_cast<uint32_t>(r.U());
    m.source_chunk = r.Str();
  }
  m.created_ns = r.S();
  if (version >= 1) {
    m.config_json = r.Str();
    m.training_json = r.Str();
    m.fingerprint = r.Str();
  }
  m.blob = r.Str();
  m.blob_bytes = m.blob.size();
  if (!r.done()) return Corrupt("model", key, "truncated or trailing bytes");
  if (kind < 1 || kind > 3) return Corrupt("model", key, absl::StrCat("unknown kind ", kind));
  m.kind = static_cast<ModelKind>(kind);
  if (m.id != key) return Corrupt("model", key, absl::StrCat("holds id '", absl::CHexEscape(m.id), "'"));
  return m;
}

namespace {

uint64_t RecordCount(const ChunkRecord& c, absl::string_view key) {
  return key == "packets" ? c.packets : key == "flows" ? c.flows : key == "bytes" ? c.bytes : c.raw_bytes;
}

// The report without the counts the record holds, when putting them back
// gives exactly `c.report_json` again; nullopt otherwise.
std::optional<std::string> ReportWithoutCounts(const ChunkRecord& c) {
  auto j = nlohmann::json::parse(c.report_json, nullptr, false);
  if (!j.is_object()) return std::nullopt;
  for (const char* k : kRecordCounts) {
    auto it = j.find(k);
    if (it == j.end() || !it->is_number_unsigned() || it->get<uint64_t>() != RecordCount(c, k)) return std::nullopt;
  }
  nlohmann::json lean = j;
  for (const char* k : kRecordCounts) lean.erase(k);
  nlohmann::json back = lean;
  for (const char* k : kRecordCounts) back[k] = RecordCount(c, k);
  if (back.dump() != c.report_json) return std::nullopt;
  return lean.dump();
}

// Version 4 keeps 16 bits of the key's hash in place of the link and start:
// a record read under another chunk's key is still caught.
uint16_t KeyCheck(absl::string_view key) { return static_cast<uint16_t>(XXH64(key.data(), key.size(), 0x43484b)); }

}  // namespace

namespace {

// Tag, version, flags and the key check every chunk record starts with.
void PutChunkHeader(ByteWriter* w, uint8_t version, uint8_t flags, const ChunkRecord& c) {
  w->U8(kTagChunk);
  w->U8(version);
  w->U8(flags);
  const uint16_t check = KeyCheck(ChunkKey(c.link, c.start_ns));
  w->Bytes(&check, sizeof check);
}

std::string EncodeChunkAs(const ChunkRecord& c, bool member) {
  const std::optional<std::string> lean = ReportWithoutCounts(c);
  const std::string& report = lean ? *lean : c.report_json;
  uint8_t flags = 0;
  if (c.parent_id == c.model_id) flags |= kSameParent;
  if (c.drift == -1) flags |= kNoDrift;
  if (lean) flags |= kCountsInRecord;
  if (c.duration_ns > 0 && c.seq == c.start_ns / c.duration_ns) flags |= kSeqFromStart;
  const int64_t after_end = c.committed_ns - c.end_ns();
  if (after_end >= 0 && after_end % 1000000 == 0) flags |= kCommitMillis;
  if (member) flags |= kPlainReport;
  uint8_t decision = kOtherDecision;
  for (uint8_t i = 0; i < std::size(kDecisions); ++i) {
    if (c.decision == kDecisions[i]) decision = i;
  }
  ByteWriter w;
  PutChunkHeader(&w, kFullChunkVersion, flags, c);
  w.SignedVarint(c.duration_ns);
  if (!(flags & kSeqFromStart)) w.SignedVarint(c.seq);
  w.Varint(c.packets);
  w.Varint(c.bytes);
  w.Varint(c.flows);
  w.Varint(c.raw_bytes);
  Str(&w, c.model_id);
  if (!(flags & kSameParent)) Str(&w, c.parent_id);
  w.U8(static_cast<uint8_t>(c.state));
  Str(&w, c.skeleton);
  w.Varint(report.size());
  Str(&w, member ? report : model::CompressReport(report));
  if (!(flags & kNoDrift)) F64(&w, c.drift);
  w.U8(decision);
  if (decision == kOtherDecision) Str(&w, c.decision);
  Str(&w, c.reason);
  Str(&w, c.raw_path);
  if (flags & kCommitMillis) {
    w.Varint(static_cast<uint64_t>(after_end / 1000000));
  } else {
    w.SignedVarint(c.committed_ns);
  }
  w.Varint(c.stored_bytes);
  return w.Take();
}
}  // namespace

std::string EncodeChunk(const ChunkRecord& c) {
  if (c.in_pack) {
    ByteWriter w;
    PutChunkHeader(&w, kChunkVersion, kInPack, c);
    // How far after the pack's start: whole seconds (as chunks are) take
    // 3 bytes for a day, nanoseconds 7; the low bit says which.
    const uint64_t after = static_cast<uint64_t>(c.start_ns) - static_cast<uint64_t>(c.pack_start_ns);
    w.Varint(after % 1000000000 == 0 ? (after / 1000000000) << 1 : (after << 1) | 1);
    return w.Take();
  }
  return EncodeChunkAs(c, false);
}

std::string EncodePackMember(const ChunkRecord& c) { return EncodeChunkAs(c, true); }


StatusOr<ChunkRecord> DecodeChunk(absl::string_view key, absl::string_view value) {
  Reader r(value);
  DGC_ASSIGN_OR_RETURN(uint8_t version, Header(&r, kTagChunk, kChunkVersion, "chunk", key));
  ChunkRecord c;
  uint8_t flags = 0;
  if (version >= 4) {
    // The link and start are the key's.
    if (!ParseChunkKey(key, &c.link, &c.start_ns)) return Corrupt("chunk", key, "the key is not a chunk key");
    flags = r.B();
    if (version >= 5 && flags == kInPack) {
      uint16_t check = 0;
      r.Raw(&check, sizeof check);
      if (r.ok() && check != KeyCheck(key)) return Corrupt("chunk", key, "link and start do not match the key");
      const uint64_t coded = r.U();
      if (!r.done()) return Corrupt("chunk", key, "truncated or trailing bytes in a packed chunk's stub");
      if (!(coded & 1) && (coded >> 1) > std::numeric_limits<uint64_t>::max() / 1000000000) {
        return Corrupt("chunk", key, "its pack starts before time can");
      }
      const uint64_t after = (coded & 1) ? coded >> 1 : (coded >> 1) * 1000000000;
      if (after > static_cast<uint64_t>(c.start_ns) - static_cast<uint64_t>(std::numeric_limits<int64_t>::min())) {
        return Corrupt("chunk", key, "its pack starts before time can");
      }
      c.in_pack = true;
      c.pack_start_ns = static_cast<int64_t>(static_cast<uint64_t>(c.start_ns) - after);
      return c;
    }
    if (flags & ~kAllFlags) return Corrupt("chunk", key, absl::StrCat("unknown flags 0x", absl::Hex(flags)));
    uint16_t check = 0;
    r.Raw(&check, sizeof check);
    if (r.ok() && check != KeyCheck(key)) return Corrupt("chunk", key, "link and start do not match the key");
    c.duration_ns = r.S();
    if (flags & kSeqFromStart) {
      if (c.duration_ns <= 0) return Corrupt("chunk", key, "a seq from the start needs a positive duration");
      c.seq = c.start_ns / c.duration_ns;
    } else {
      c.seq = r.S();
    }
  } else {
    c.link = r.Str();
    c.start_ns = r.S();
    c.duration_ns = r.S();
    c.seq = r.S();
  }
  c.packets = r.U();
  c.bytes = r.U();
  c.flows = r.U();
  c.raw_bytes = r.U();
  c.model_id = r.Str();
  if (version == 3) {
    flags = r.B();
    if (flags & ~(kSameParent | kNoDrift | kCountsInRecord)) {
      return Corrupt("chunk", key, absl::StrCat("unknown flags 0x", absl::Hex(flags)));
    }
  }
  c.parent_id = (flags & kSameParent) ? c.model_id : r.Str();
  uint8_t state = r.B();
  c.skeleton = r.Str();
  if (version >= 2) {
    uint64_t raw = r.U();
    std::string z = r.Str();
    if (!r.ok()) return Corrupt("chunk", key, "truncated or trailing bytes");
    c.report_stored_bytes = z.size();
    if (flags & kPlainReport) {
      if (z.size() != raw) return Corrupt("chunk", key, "report size does not match");
      c.report_json = std::move(z);
    } else {
      auto report = model::DecompressReport(z, raw);
      if (!report) return Corrupt("chunk", key, "report does not decompress");
      c.report_json = std::move(*report);
    }
  } else {
    c.report_json = r.Str();
    c.report_stored_bytes = c.report_json.size();
  }
  if (flags & kCountsInRecord) {
    auto j = nlohmann::json::parse(c.report_json, nullptr, false);
    if (!j.is_object()) return Corrupt("chunk", key, "report is not a JSON object");
    for (const char* k : kRecordCounts) j[k] = RecordCount(c, k);
    c.report_json = j.dump();
  }
  c.drift = (flags & kNoDrift) ? -1 : r.D();
  if (version >= 4) {
    uint8_t d = r.B();
    if (d == kOtherDecision) {
      c.decision = r.Str();
    } else if (d < std::size(kDecisions)) {
      c.decision = kDecisions[d];
    } else {
      return Corrupt("chunk", key, absl::StrCat("unknown decision code ", d));
    }
  } else {
    c.decision = r.Str();
  }
  c.reason = r.Str();
  c.raw_path = r.Str();
  if (flags & kCommitMillis) {
    c.committed_ns = c.end_ns() + static_cast<int64_t>(r.U()) * 1000000;
  } else {
    c.committed_ns = r.S();
  }
  c.stored_bytes = r.U();
  if (!r.done()) return Corrupt("chunk", key, "truncated or trailing bytes");
  if (state != 1) return Corrupt("chunk", key, absl::StrCat("unknown state ", state));
  c.state = static_cast<ChunkState>(state);
  if (ChunkKey(c.link, c.start_ns) != key) return Corrupt("chunk", key, "link and start do not match the key");
  return c;
}

std::string EncodePack(const std::vector<PackMember>& members, int64_t pack_start_ns) {
  ByteWriter raw;
  for (const PackMember& m : members) {
    raw.Varint(static_cast<uint64_t>(m.start_ns - pack_start_ns));
    Str(&raw, m.record);
    Str(&raw, m.fingerprint);
  }
  const std::string body = raw.Take();
  std::string z(ZSTD_compressBound(body.size()), '\0');
  size_t n = ZSTD_compress(z.data(), z.size(), body.data(), body.size(), 19);
  z.resize(ZSTD_isError(n) ? 0 : n);
  ByteWriter w;
  w.U8(kTagPack);
  w.U8(kPackVersion);
  w.Varint(members.size());
  w.Varint(body.size());
  const uint64_t sum = XXH64(body.data(), body.size(), 0x5041434b);
  w.Bytes(&sum, sizeof sum);
  w.Bytes(z.data(), z.size());
  return w.Take();
}

StatusOr<std::vector<PackMember>> DecodePack(absl::string_view key, absl::string_view value) {
  std::string link;
  int64_t start = 0;
  if (!ParseChunkKey(key, &link, &start)) return Corrupt("pack", key, "the key is not a chunk key");
  Reader r(value);
  DGC_ASSIGN_OR_RETURN(uint8_t version, Header(&r, kTagPack, kPackVersion, "pack", key));
  (void)version;
  const uint64_t n = r.U();
  const uint64_t raw_size = r.U();
  uint64_t sum = 0;
  r.Raw(&sum, sizeof sum);
  if (!r.ok() || n == 0 || n > kMaxField || raw_size > kMaxPackRaw) return Corrupt("pack", key, "bad header");
  // What is left is the zstd frame.
  std::string body(raw_size, '\0');
  const size_t zoff = value.size() - r.Remaining();
  size_t got = ZSTD_decompress(body.data(), body.size(), value.data() + zoff, value.size() - zoff);
  if (ZSTD_isError(got) || got != raw_size) return Corrupt("pack", key, "its frame does not decompress");
  if (XXH64(body.data(), body.size(), 0x5041434b) != sum) return Corrupt("pack", key, "checksum mismatch");
  Reader m(body);
  std::vector<PackMember> out;
  int64_t prev = std::numeric_limits<int64_t>::min();
  for (uint64_t i = 0; i < n; ++i) {
    PackMember pm;
    const uint64_t after = m.U();
    pm.record = m.Str();
    pm.fingerprint = m.Str();
    if (!m.ok()) return Corrupt("pack", key, absl::StrCat("member ", i + 1, " of ", n, " is truncated"));
    pm.start_ns = static_cast<int64_t>(static_cast<uint64_t>(start) + after);
    if (pm.start_ns < start || (i > 0 && pm.start_ns <= prev)) {
      return Corrupt("pack", key, absl::StrCat("member ", i + 1, " is out of order"));
    }
    prev = pm.start_ns;
    out.push_back(std::move(pm));
  }
  if (!m.done()) return Corrupt("pack", key, "trailing bytes after its members");
  return out;
}

std::string EncodeJob(const JobRecord& j) {
  ByteWriter w;
  w.U8(kTagJob);
  w.U8(kJobVersion);
  Str(&w, j.id);
  w.Varint(j.version);
  Str(&w, j.payload);
  return w.Take();
}

StatusOr<JobRecord> DecodeJob(absl::string_view key, absl::string_view value) {
  Reader r(value);
  DGC_ASSIGN_OR_RETURN(uint8_t version, Header(&r, kTagJob, kJobVersion, "job", key));
  (void)version;
  JobRecord j;
  j.id = r.Str();
  j.version = static_cast<uint32_t>(r.U());
  j.payload = r.Str();
  if (!r.done()) return Corrupt("job", key, "truncated or trailing bytes");
  if (j.id != key) return Corrupt("job", key, "holds another id");
  return j;
}

}  // namespace dgc::library
