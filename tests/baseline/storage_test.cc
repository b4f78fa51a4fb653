#include "common/baseline/storage.h"

#include <zlib.h>

#include "common/base/files.h"
#include "common/baseline/codec.h"
#include "common/baseline/flow_records.h"
#include "common/baseline/marginals.h"
#include "common/baseline/pcap_image.h"
#include "common/trace/flow.h"
#include "gtest/gtest.h"
#include "tests/testutil/testutil.h"

namespace dgc::baseline {
namespace {

using testing::MakePacket;

std::vector<PacketRecord> Trace(int n = 1000) {
  std::vector<PacketRecord> v;
  for (int i = 0; i < n; ++i) {
    v.push_back(MakePacket(1500000000LL * 1000000000 + int64_t(i) * 1000000, 0x0a000001 + i % 5,
                           0x0a000100 + i % 3, i % 4 ? kProtoTcp : kProtoUdp, 1000 + i % 17, 443,
                           40 + (i * 37) % 1460, 0x10));
  }
  return v;
}

StorageOptions Quiet() {
  StorageOptions o;
  o.progress = false;
  return o;
}

TEST(StorageTest, CsvFormIsOneRowPerPacket) {
  std::vector<PacketRecord> v = {
      MakePacket(1500000000123456000, 0x0a000001, 0xc0a80001, kProtoTcp, 1234, 80, 60, 0x12),
      MakePacket(1500000001000000000, 0x0a000002, 0x08080808, kProtoUdp, 53, 5353, 128)};
  EXPECT_EQ(CsvForm(v),
            "ts,src,dst,proto,sport,dport,size,ttl,tcp_flags\n"
            "1500000000.123456,10.0.0.1,192.168.0.1,6,1234,80,60,64,18\n"
            "1500000001.000000,10.0.0.2,8.8.8.8,17,53,5353,128,64,0\n");
  v[1].ts_ns += 7;  // a timestamp below the microsecond: all rows get nanoseconds
  EXPECT_NE(CsvForm(v).find("\n1500000000.123456000,"), std::string::npos);
  EXPECT_NE(CsvForm(v).find("\n1500000001.000000007,"), std::string::npos);
}

TEST(StorageTest, EveryRowIsMeasuredOnItsRealBytes) {
  testing::TempDir dir;
  auto packets = Trace();
  const std::string path = dir.File("t.pcap");
  testing::WritePcap(path, packets);
  auto file = ReadFile(path);
  ASSERT_TRUE(file.ok());

  StorageOptions o = Quiet();
  o.sampling_n = 10;
  auto r = MeasureStorage(path, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->packets, packets.size());
  EXPECT_EQ(r->raw_bytes, file->size());
  auto bytes = [&](const char* id) {
    const StorageRow* row = r->Find(id);
    EXPECT_NE(row, nullptr) << id;
    return row ? row->bytes : 0;
  };
  EXPECT_EQ(bytes("raw"), file->size());
  // The file was written by PcapWriter, so its header-only rewrite is itself.
  EXPECT_EQ(bytes("header"), file->size());
  // gzip -6 of the file, compared with zlib called directly.
  z_stream zs{};
  ASSERT_EQ(deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string z(deflateBound(&zs, file->size()), '\0');
  zs.next_in = reinterpret_cast<Bytef*>(file->data());
  zs.avail_in = file->size();
  zs.next_out = reinterpret_cast<Bytef*>(z.data());
  zs.avail_out = z.size();
  ASSERT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  EXPECT_EQ(bytes("raw_gzip6"), zs.total_out);
  deflateEnd(&zs);
  EXPECT_EQ(bytes("raw_zstd19"), Compress(Codec::kZstd, 19, *file)->size());
  EXPECT_EQ(bytes("raw_xz9"), Compress(Codec::kXz, 9, *file)->size());
  EXPECT_EQ(bytes("header_zstd19"), bytes("raw_zstd19"));
  const std::string csv = CsvForm(packets);
  EXPECT_EQ(bytes("csv"), csv.size());
  EXPECT_EQ(bytes("csv_gzip6"), Compress(Codec::kGzip, 6, csv)->size());
  EXPECT_EQ(bytes("flows_zstd19"), PackFlowRecords(BuildFlows(packets))->size());
  std::vector<PacketRecord> every10;
  for (size_t i = 0; i < packets.size(); i += 10) every10.push_back(packets[i]);
  EXPECT_EQ(bytes("sampling10"), PcapImageSize(every10));
  EXPECT_EQ(bytes("sampling10_zstd19"), Compress(Codec::kZstd, 19, PcapImage(every10))->size());
  EXPECT_EQ(bytes("marginals_zstd19"), PackMarginals(BuildMarginals(packets))->size());
  EXPECT_EQ(r->Find("dgc"), nullptr);

  // Ratios and costs follow from the bytes.
  for (const StorageRow& row : r->rows) {
    EXPECT_DOUBLE_EQ(r->Ratio(row), double(row.bytes) / double(file->size())) << row.id;
    EXPECT_DOUBLE_EQ(r->BytesPerPacket(row), double(row.bytes) / packets.size()) << row.id;
    EXPECT_DOUBLE_EQ(r->StorageUsd(row), row.bytes / 1e9 * 0.02 * 12) << row.id;
    EXPECT_GE(row.cpu_seconds, 0) << row.id;
    // Everything but the CSV text is smaller than this header-only capture.
    if (row.id != "csv") {
      EXPECT_LE(r->Ratio(row), 1.0 + 1e-9) << row.id;
    }
  }
  EXPECT_LT(bytes("header_xz9"), bytes("header"));
  EXPECT_LT(bytes("flows_zstd19"), bytes("header_zstd19"));
}

TEST(StorageTest, DgcRowAndCostArithmetic) {
  testing::TempDir dir;
  auto packets = Trace(200);
  testing::WritePcap(dir.File("t.pcap"), packets, OutputLink::kEthernet);
  StorageOptions o = Quiet();
  o.model_bytes = 5000;
  o.compute_seconds = 36;
  o.gpu = true;
  o.gpu_hour_usd = 2.5;
  o.usd_per_gb_month = 0.02;
  o.retention_months = 12;
  o.link_tb_per_day = 10;
  auto r = MeasureStorage(dir.File("t.pcap"), o);
  ASSERT_TRUE(r.ok()) << r.status();
  const StorageRow* dgc = r->Find("dgc");
  ASSERT_NE(dgc, nullptr);
  EXPECT_EQ(dgc->bytes, 5000u);
  EXPECT_TRUE(dgc->gpu);
  EXPECT_DOUBLE_EQ(r->ComputeUsd(*dgc), 36.0 / 3600 * 2.5);
  // Wire bytes: each frame is 14 bytes of Ethernet plus the IP length.
  uint64_t wire = 0;
  for (const auto& p : packets) wire += 14 + p.ip_len;
  EXPECT_EQ(r->wire_bytes, wire);
  const double scale = 10e12 / double(wire);
  EXPECT_DOUBLE_EQ(r->LinkScale(), scale);
  // 5000 bytes per `wire` bytes of traffic, every day, held a year at $0.24/GB-year.
  EXPECT_NEAR(r->LinkStorageUsdPerYear(*dgc), 5000 * scale / 1e9 * 365 * 0.02 * 12, 1e-6);
  EXPECT_NEAR(r->LinkComputeUsdPerYear(*dgc), 36.0 / 3600 * 2.5 * scale * 365, 1e-6);
  EXPECT_DOUBLE_EQ(r->LinkTotalUsdPerYear(*dgc),
                   r->LinkStorageUsdPerYear(*dgc) + r->LinkComputeUsdPerYear(*dgc));
  // Raw capture on that link: (raw / wire) * 10 TB a day, a year of it kept.
  const StorageRow* raw = r->Find("raw");
  EXPECT_NEAR(r->LinkStorageUsdPerYear(*raw),
              double(r->raw_bytes) / double(wire) * 10000 * 365 * 0.24, 1e-3);
}

TEST(StorageTest, RawBasisMakesTheRawRowTheLinkVolume) {
  testing::TempDir dir;
  testing::WritePcap(dir.File("t.pcap"), Trace(300));
  StorageOptions o = Quiet();
  o.link_basis = StorageOptions::LinkBasis::kRaw;
  o.link_tb_per_day = 10;
  auto r = MeasureStorage(dir.File("t.pcap"), o);
  ASSERT_TRUE(r.ok()) << r.status();
  // 10 TB a day held a year at $0.02/GB-month: 10,000 GB * 365 * 0.24.
  EXPECT_NEAR(r->LinkStorageUsdPerYear(*r->Find("raw")), 10000 * 365 * 0.24, 1e-6);
  const StorageRow* flows = r->Find("flows_zstd19");
  EXPECT_NEAR(r->LinkStorageUsdPerYear(*flows), r->Ratio(*flows) * 10000 * 365 * 0.24, 1e-6);
}

TEST(StorageTest, CompressedCapturesAreMeasuredDecompressed) {
  testing::TempDir dir;
  testing::WritePcap(dir.File("t.pcap"), Trace(300));
  auto plain = ReadFile(dir.File("t.pcap"));
  ASSERT_TRUE(plain.ok());
  auto gz = Compress(Codec::kGzip, 6, *plain);
  ASSERT_TRUE(WriteFileAtomic(dir.File("t.pcap.gz"), *gz).ok());
  auto r = MeasureStorage(dir.File("t.pcap.gz"), Quiet());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->raw_bytes, plain->size());
  EXPECT_EQ(r->packets, 300u);
  auto m = MeasureStorageOfBytes(*gz, "buffer", Quiet());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->raw_bytes, plain->size());
}

TEST(StorageTest, BadInputsAreClearErrors) {
  testing::TempDir dir;
  auto missing = MeasureStorage(dir.File("nope.pcap"), Quiet());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(WriteFileAtomic(dir.File("text.pcap"), "hello, not a capture\n").ok());
  EXPECT_FALSE(MeasureStorage(dir.File("text.pcap"), Quiet()).ok());
  testing::WritePcap(dir.File("t.pcap"), Trace(10));
  StorageOptions o = Quiet();
  o.cpu_hour_usd = -1;
  auto bad = MeasureStorage(dir.File("t.pcap"), o);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  o = Quiet();
  o.sampling_n = 0;
  EXPECT_FALSE(MeasureStorage(dir.File("t.pcap"), o).ok());
}

TEST(StorageTest, EmptyCaptureStillReports) {
  testing::TempDir dir;
  testing::WritePcap(dir.File("e.pcap"), {});
  auto r = MeasureStorage(dir.File("e.pcap"), Quiet());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->packets, 0u);
  EXPECT_EQ(r->raw_bytes, 24u);
  EXPECT_EQ(r->LinkScale(), 0);
  EXPECT_EQ(r->BytesPerPacket(r->rows[0]), 0);
}

}  // namespace
}  // namespace dgc::baseline
