#include "common/trace/pcap_reader.h"

#include <lzma.h>
#include <zlib.h>
#include <zstd.h>

#include "gtest/gtest.h"
#include "tests/testutil/testutil.h"

namespace dgc {
namespace {

using testing::MakePcapImage;
using testing::RawFrame;

std::vector<RawFrame> SomeFrames(int n) {
  std::vector<RawFrame> frames;
  for (int i = 0; i < n; ++i) {
    std::string ip = testing::Ipv4Header(0x0a000001 + i, 0x0a000100, 6, 40 + i) +
                     testing::TcpHeader(1000 + i, 80, 0x10);
    frames.push_back({1700000000LL * 1000000000 + i * 1234567LL, ip});
  }
  return frames;
}

std::vector<PacketRecord> ReadAll(std::string bytes, ReadStats* stats = nullptr) {
  auto src = InputSource::FromBuffer(std::move(bytes), "test.pcap");
  EXPECT_TRUE(src.ok()) << src.status();
  auto r = TraceReader::FromSource(std::move(*src));
  EXPECT_TRUE(r.ok()) << r.status();
  std::vector<PacketRecord> out;
  if (!r.ok()) return out;
  PacketRecord p;
  while ((*r)->Next(&p)) out.push_back(p);
  if (stats) *stats = (*r)->stats();
  return out;
}

std::string Gzip(const std::string& in) {
  z_stream z{};
  deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&z, in.size()) + 64, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

std::string Zstd(const std::string& in) {
  std::string out(ZSTD_compressBound(in.size()), '\0');
  out.resize(ZSTD_compress(out.data(), out.size(), in.data(), in.size(), 3));
  return out;
}

std::string Xz(const std::string& in) {
  std::string out(lzma_stream_buffer_bound(in.size()), '\0');
  size_t pos = 0;
  lzma_easy_buffer_encode(6, LZMA_CHECK_CRC64, nullptr, reinterpret_cast<const uint8_t*>(in.data()),
                          in.size(), reinterpret_cast<uint8_t*>(out.data()), &pos, out.size());
  out.resize(pos);
  return out;
}

TEST(ReaderTest, MicroNanoAndBigEndianFilesGiveTheSameRecords) {
  auto frames = SomeFrames(20);
  auto micro = ReadAll(MakePcapImage(101, frames, /*nano=*/false));
  auto nano = ReadAll(MakePcapImage(101, frames, /*nano=*/true));
  auto big = ReadAll(MakePcapImage(101, frames, /*nano=*/true, /*big_endian=*/true));
  ASSERT_EQ(micro.size(), 20u);
  ASSERT_EQ(nano.size(), 20u);
  ASSERT_EQ(big.size(), 20u);
  for (size_t i = 0; i < 20; ++i) {
    EXPECT_EQ(nano[i].ts_ns, frames[i].ts_ns);  // nanoseconds kept exactly
    EXPECT_EQ(micro[i].ts_ns, frames[i].ts_ns / 1000 * 1000);
    EXPECT_TRUE(SameMetricFields(nano[i], big[i]));
    EXPECT_EQ(nano[i].sport, 1000 + i);
  }
}

TEST(ReaderTest, CompressedCapturesAreDetectedByContent) {
  std::string image = MakePcapImage(101, SomeFrames(50), true);
  auto plain = ReadAll(image);
  // A multi-member gzip (as pigz or appending writers make) is one stream.
  std::string two_members = Gzip(image.substr(0, 1000)) + Gzip(image.substr(1000));
  for (const std::string& packed : {Gzip(image), Zstd(image), Xz(image), two_members}) {
    ReadStats st;
    auto got = ReadAll(packed, &st);
    ASSERT_EQ(got.size(), plain.size());
    for (const auto& w : st.warnings) ADD_FAILURE() << w;
    for (size_t i = 0; i < plain.size(); ++i) EXPECT_TRUE(SameMetricFields(got[i], plain[i]));
    EXPECT_EQ(st.errors(), 0u);
  }
}

TEST(ReaderTest, CorruptRecordInTheMiddleIsSkippedAndTheRestRead) {
  auto frames = SomeFrames(10);
  std::string image = MakePcapImage(101, frames, true);
  // Record 4 starts after the 24-byte file header and four records.
  size_t off = 24;
  for (int i = 0; i < 4; ++i) off += 16 + frames[i].bytes.size();
  image[off + 8] = '\xff';  // caplen of record 4 becomes absurd
  image[off + 9] = '\xff';
  image[off + 10] = '\xff';
  ReadStats st;
  auto got = ReadAll(image, &st);
  EXPECT_EQ(got.size(), 9u);
  EXPECT_EQ(st.corrupt_records, 1u);
  ASSERT_FALSE(st.warnings.empty());
  EXPECT_NE(st.warnings[0].find("offset " + std::to_string(off)), std::string::npos) << st.warnings[0];
  EXPECT_EQ(got.back().sport, 1009);
}

TEST(ReaderTest, TruncatedFileKeepsCompleteRecordsAndSaysSo) {
  std::string image = MakePcapImage(101, SomeFrames(10), true);
  image.resize(image.size() - 7);
  ReadStats st;
  auto got = ReadAll(image, &st);
  EXPECT_EQ(got.size(), 9u);
  EXPECT_TRUE(st.truncated);
  ASSERT_FALSE(st.warnings.empty());
  EXPECT_NE(st.warnings[0].find("offset"), std::string::npos);
}

TEST(ReaderTest, NonCaptureAndEmptyInputsAreRefusedWithTheFileName) {
  testing::TempDir dir;
  testing::WriteBytes(dir.File("notes.txt"), "hello, this is not a capture file at all\n");
  testing::WriteBytes(dir.File("empty.pcap"), "");
  for (const char* name : {"notes.txt", "empty.pcap"}) {
    auto r = TraceReader::Open(dir.File(name));
    ASSERT_FALSE(r.ok()) << name;
    EXPECT_NE(r.status().message().find(name), std::string::npos) << r.status();
  }
  EXPECT_TRUE(absl::IsNotFound(TraceReader::Open(dir.File("missing.pcap")).status()));
  EXPECT_FALSE(TraceReader::Open(dir.path()).ok());
}

// A pcapng image: SHB, one IDB per link type, one EPB per frame.
std::string PcapngImage(const std::vector<int>& links, const std::vector<std::pair<int, RawFrame>>& pkts,
                        const std::vector<uint32_t>& snaplens = {}) {
  auto u32 = [](std::string* s, uint32_t v) { s->append(reinterpret_cast<const char*>(&v), 4); };
  auto u16 = [](std::string* s, uint16_t v) { s->append(reinterpret_cast<const char*>(&v), 2); };
  std::string s;
  u32(&s, 0x0a0d0d0a); u32(&s, 28); u32(&s, 0x1a2b3c4d); u16(&s, 1); u16(&s, 0);
  u32(&s, 0xffffffff); u32(&s, 0xffffffff); u32(&s, 28);
  for (size_t i = 0; i < links.size(); ++i) {  // IDB with if_tsresol = 9 (nanoseconds)
    u32(&s, 1); u32(&s, 32); u16(&s, uint16_t(links[i])); u16(&s, 0);
    u32(&s, i < snaplens.size() ? snaplens[i] : 65535);
    u16(&s, 9); u16(&s, 1); s += std::string("\x09\0\0\0", 4); u16(&s, 0); u16(&s, 0); u32(&s, 32);
  }
  for (const auto& [itf, f] : pkts) {
    uint32_t pad = (4 - f.bytes.size() % 4) % 4;
    uint32_t len = uint32_t(32 + f.bytes.size() + pad);
    u32(&s, 6); u32(&s, len); u32(&s, uint32_t(itf));
    u32(&s, uint32_t(uint64_t(f.ts_ns) >> 32)); u32(&s, uint32_t(f.ts_ns));
    u32(&s, uint32_t(f.bytes.size())); u32(&s, uint32_t(f.bytes.size()));
    s += f.bytes + std::string(pad, '\0');
    u32(&s, len);
  }
  return s;
}

TEST(ReaderTest, PcapngWithOneAndWithSeveralLinkTypes) {
  auto frames = SomeFrames(6);
  std::vector<std::pair<int, RawFrame>> one, mixed;
  for (size_t i = 0; i < frames.size(); ++i) {
    one.push_back({0, frames[i]});
    RawFrame f = frames[i];
    if (i % 2) f.bytes = testing::EthernetHeader(0x0800) + f.bytes;
    mixed.push_back({int(i % 2), f});
  }
  auto a = ReadAll(PcapngImage({101}, one));
  ReadStats st;
  auto b = ReadAll(PcapngImage({101, 1}, mixed), &st);  // libpcap refuses; dgc's block reader reads
  ReadStats st2;
  std::vector<std::pair<int, RawFrame>> two_snaplens;
  for (size_t i = 0; i < frames.size(); ++i) two_snaplens.push_back({int(i % 2), frames[i]});
  auto c = ReadAll(PcapngImage({101, 101}, two_snaplens, {65535, 262144}), &st2);  // as mergecap writes
  ASSERT_EQ(c.size(), 6u);
  EXPECT_EQ(st2.errors(), 0u);
  ASSERT_EQ(a.size(), 6u);
  ASSERT_EQ(b.size(), 6u);
  EXPECT_EQ(st.errors(), 0u);
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(a[i].ts_ns, frames[i].ts_ns);
    EXPECT_TRUE(SameMetricFields(a[i], b[i])) << i;
  }
}

TEST(ReaderTest, NonIpFramesAreCountedNotReturned) {
  std::vector<RawFrame> frames = {
      {1, testing::EthernetHeader(0x0806) + std::string(28, '\0')},
      {2, testing::EthernetHeader(0x0800) + testing::Ipv4Header(1, 2, 17, 28) + testing::UdpHeader(1, 2, 8)},
  };
  ReadStats st;
  auto got = ReadAll(MakePcapImage(1, frames), &st);
  EXPECT_EQ(got.size(), 1u);
  EXPECT_EQ(st.frames, 2u);
  EXPECT_EQ(st.non_ip, 1u);
  EXPECT_EQ(st.ip_packets, 1u);
}

}  // namespace
}  // namespace dgc
