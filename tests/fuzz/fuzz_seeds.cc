// Writes seed inputs for the fuzz targets: a few chunk files and frames made
// by dgc itself. Usage: dgc-fuzz-seeds CORPUS_DIR
#include <cstdio>
#include <string>

#include "common/trace/chunk_format.h"
#include "common/trace/pcap_writer.h"
#ifdef DGC_HAVE_WIRE
#include "common/wire/codec.h"
#include "common/wire/generate_segment.h"
#endif
#ifdef DGC_HAVE_MODEL_TOKENS
#include "common/model/artifact.h"
#include "common/model/model_format.h"
#ifdef DGC_HAVE_LIBRARY
#include "library/library_records.h"
#endif
#include "common/model/skeleton.h"
#include "common/model/weights.h"
#include "tests/fuzz/model_format_fuzz_config.h"
#endif

namespace {
void Write(const std::string& path, const std::string& bytes) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return;
  std::fwrite(bytes.data(), 1, bytes.size(), f);
  std::fclose(f);
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: dgc-fuzz-seeds CORPUS_DIR\n");
    return 1;
  }
  std::string dir = argv[1];
  dgc::Chunk c;
  c.link = "seed";
  c.start_ns = 1700000040LL * 1000000000;
  for (int i = 0; i < 8; ++i) {
    dgc::PacketRecord p;
    p.ts_ns = c.start_ns + i * 1000;
    p.version = i % 3 == 0 ? 6 : 4;
    p.src = dgc::IpAddress::FromV4(0x0a000001 + i);
    p.dst = dgc::IpAddress::FromV4(0x0a0000ff);
    p.proto = i % 2 ? dgc::kProtoTcp : dgc::kProtoUdp;
    p.sport = 1000 + i;
    p.dport = 443;
    p.ip_len = 60 + i;
    p.ttl = 64;
    c.packets.push_back(p);
    for (auto link : {dgc::OutputLink::kRawIp, dgc::OutputLink::kEthernet}) {
      uint8_t buf[dgc::kMaxFrameHeader];
      uint32_t orig;
      size_t n = dgc::BuildFrame(p, link, buf, sizeof buf, &orig);
      // First byte selects the link type in fuzz_parse_frame: 1 = Ethernet, 2 = raw.
      std::string frame(1, link == dgc::OutputLink::kEthernet ? 1 : 2);
      frame.append(reinterpret_cast<const char*>(buf), n);
      Write(dir + "/parse_frame/seed-" + std::to_string(i) + (link == dgc::OutputLink::kEthernet ? "e" : "r"), frame);
    }
  }
#ifdef DGC_HAVE_MODEL_TOKENS
  {
    // Skeletons of the eight packets: bins alone, with windows, with exact
    // flows; in formats 2 and 3; and one artifact holding one.
    const int64_t duration = c.duration_ns;
    c.duration_ns = 60LL * 1000000000;
    namespace m = dgc::model;
    m::Skeleton s = m::Skeleton::FromChunk(c, dgc::BuildFlows(c.packets, c.end_ns()),
                                           m::Skeleton::DefaultBinNs(c.duration_ns));
    Write(dir + "/skeleton_decode/seed-bins", s.Encode());
    s.AddStructure(c, m::kStructureWindowNs);
    s.SetExactFlows(m::Skeleton::RankFlows(c), 4);
    Write(dir + "/skeleton_decode/seed-v3", s.Encode());
    Write(dir + "/skeleton_decode/seed-v2", s.EncodeFormat(2));
    m::ChunkArtifact a;
    a.link = c.link;
    a.start_ns = c.start_ns;
    a.duration_ns = c.duration_ns;
    a.model_id = a.parent_id = "base-0000000000000001";
    a.skeleton = s.Encode();
    a.report = {{"packets", 8}, {"shared", true}};
    Write(dir + "/skeleton_decode/seed-artifact", a.Encode());
#ifdef DGC_HAVE_LIBRARY
    // A chunk record, its stub and a pack of three like it for
    // fuzz_library_records (its key: tap0 at 2024-01-01T00:00:00Z).
    namespace l = dgc::library;
    const int64_t t0 = 1704067200LL * 1000000000;
    l::ChunkRecord r;
    r.link = "tap0";
    r.start_ns = t0;
    r.duration_ns = 3600LL * 1000000000;
    r.seq = r.start_ns / r.duration_ns;
    r.packets = 8;
    r.bytes = 800;
    r.flows = 4;
    r.model_id = r.parent_id = "base-0000000000000001";
    r.skeleton = s.EncodePlain();
    r.report_json = R"({"bytes":800,"fidelity_mean":0.2,"flows":4,"packets":8,"shared":true})";
    r.decision = "continue";
    r.committed_ns = r.end_ns() + 1000000;
    Write(dir + "/library_records/seed-chunk", l::EncodeChunk(r));
    std::vector<l::PackMember> members;
    for (int k = 0; k < 3; ++k) {
      l::ChunkRecord m = r;
      m.start_ns = t0 + k * r.duration_ns;
      members.push_back({m.start_ns, l::EncodePackMember(m), k == 1 ? "" : "fingerprint"});
    }
    Write(dir + "/library_records/seed-pack", l::EncodePack(members, t0));
    r.in_pack = true;
    r.pack_start_ns = t0;
    Write(dir + "/library_records/seed-stub", l::EncodeChunk(r));
#endif
    c.duration_ns = duration;
  }
  {
    // A checkpoint and both kinds of delta for fuzz_model_format's model.
    namespace m = dgc::model;
    const m::NetworkConfig nc = dgc::fuzz::ModelFormatFuzzConfig();
    const m::Layout l = m::MakeLayout(nc);
    const std::vector<float> w = m::InitialWeights(nc, l, 1);
    const uint64_t parent = m::HashWeights(l, w.data());
    Write(dir + "/model_format/seed-checkpoint", m::EncodeCheckpoint(nc, l, w));
    const m::LoraLayout ll = m::MakeLoraLayout(nc, l, 2, 2.0, (1u << m::kNumTargets) - 1);
    std::vector<float> ad(static_cast<size_t>(ll.total));
    for (size_t i = 0; i < ad.size(); ++i) ad[i] = 0.01f * static_cast<float>(static_cast<int>(i % 17) - 8);
    if (auto d = m::EncodeLoraDelta(ll, ad, false, 5, parent, 3); d.ok()) Write(dir + "/model_format/seed-lora", *d);
    if (auto d = m::EncodeLoraDelta(ll, ad, true, 5, parent, 3); d.ok()) Write(dir + "/model_format/seed-lora-seeded", *d);
    if (auto d = m::EncodeFullDelta(l, w, parent, 3); d.ok()) Write(dir + "/model_format/seed-full", *d);
  }
#endif
  Write(dir + "/chunk_decode/seed-8", dgc::EncodeChunk(c));
  c.packets.resize(1);
  Write(dir + "/chunk_decode/seed-1", dgc::EncodeChunk(c));

#ifdef DGC_HAVE_WIRE
  // One message of every kind for fuzz_wire (not in the trace-only build).
  namespace w = dgc::wire;
  w::ChunkMeta meta{"seed", 1, 2, 28333334, c.start_ns, 60 * 1000000000LL, 8, 800, 4, false};
  w::JobAssign assign;
  assign.job_id = 7;
  assign.attempt = 1;
  assign.meta = meta;
  assign.chunk_bytes = dgc::EncodeChunk(c);
  assign.parent = w::JobAssign::Parent::kId;
  assign.parent_id = "seed/28333333";
  w::JobAssign by_path = assign;
  by_path.chunk_bytes.clear();
  by_path.chunk_path = "/shared/seed.dgcc";
  by_path.parent = w::JobAssign::Parent::kBytes;
  by_path.parent_bytes = "model";
  const w::Message messages[] = {
      w::ChunkOffer{meta, 100},
      w::ChunkData{meta, dgc::EncodeChunk(c)},
      w::ChunkAck{"seed", 1, 28333334, true, ""},
      w::Credit{8},
      w::Register{"worker-1", 16, {{0, 1ull << 34, "gpu"}, {1, 1ull << 34, "gpu"}}, "0.1.0", "host", 0, "", 1},
      w::RegisterAck{true, "", 1000, 30000},
      w::Heartbeat{"worker-1", {7, 8, 9}, 1000.5},
      assign,
      by_path,
      w::JobResult{7, 1, "worker-1", "artifact", {1.5, 1000, 0.1, 8, "{}"}},
      w::JobFailed{7, 1, "worker-1", "out of memory", true},
      w::JobAck{7, true},
      w::OperatorRequest{1, w::OperatorVerb::kGet, "jobs", "", "{}"},
      w::OperatorReply{1, true, "", "[]"},
      w::OperatorRequest{2, w::OperatorVerb::kGenerate, "fetch", "1", R"({"segment":0})"},
      w::OperatorReply{2, true, "", R"({"state":"done"})", "packets"},
  };
  int n = 0;
  for (const auto& m : messages) {
    auto bytes = w::Encode(m);
    if (bytes.ok()) Write(dir + "/wire/seed-" + std::to_string(n++), *bytes);
  }
  {
    w::JobAssign gen = assign;
    gen.kind = w::JobKind::kGenerate;
    gen.train_chunks = {"skeleton"};
    auto bytes = w::Encode(gen);
    if (bytes.ok()) Write(dir + "/wire/seed-" + std::to_string(n++), *bytes);
  }
  // fuzz_generate_segment: a count byte, then a segment of two chunks; and
  // options for two chunks.
  std::vector<w::SegmentChunk> seg = {{"seed", c.start_ns, 60 * 1000000000LL, 5}, {"seed", c.start_ns + 60 * 1000000000LL, 60 * 1000000000LL, 6}};
  Write(dir + "/generate_segment/seed-packets", std::string(1, '\x02') + w::EncodeSegmentPackets(seg, {c.packets, c.packets}));
  w::SegmentOptions so;
  so.chunks = seg;
  so.min_p = 0.02;
  so.tokenizer = nlohmann::json{{"max_packets", 8}};
  Write(dir + "/generate_segment/seed-options", std::string(1, '\x02') + w::EncodeSegmentOptions(so));
#endif
  return 0;
}
