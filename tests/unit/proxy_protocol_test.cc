// The PROXY protocol parser: every form of haproxy's doc/proxy-protocol.txt, fed whole and in pieces, and every way to get it wrong.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <cstring>
#include <string>
#include <vector>

#include "common/address.h"
#include "common/proxy_protocol.h"

namespace rot13d {
namespace {

using Bytes = std::vector<uint8_t>;
using State = ProxyHeaderParser::State;

Bytes B(std::string_view text) { return Bytes(text.begin(), text.end()); }

const Bytes kSignature = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

struct Tlv {
  uint8_t type;
  Bytes value;
};

// A v2 header: the command byte, the family byte, the address block and TLVs;
// `crc`: append a CRC32C TLV with the right checksum; `length_delta` lies
// about the length.
Bytes V2(uint8_t ver_cmd, uint8_t fam, const Bytes& addresses, const std::vector<Tlv>& tlvs = {}, bool crc = false,
         int length_delta = 0) {
  Bytes body = addresses;
  for (const Tlv& t : tlvs) {
    body.push_back(t.type);
    body.push_back(static_cast<uint8_t>(t.value.size() >> 8));
    body.push_back(static_cast<uint8_t>(t.value.size()));
    body.insert(body.end(), t.value.begin(), t.value.end());
  }
  size_t crc_at = 0;
  if (crc) {
    body.insert(body.end(), {0x03, 0x00, 0x04});
    crc_at = 16 + body.size();
    body.insert(body.end(), {0, 0, 0, 0});
  }
  Bytes out = kSignature;
  out.push_back(ver_cmd);
  out.push_back(fam);
  size_t length = static_cast<size_t>(static_cast<int>(body.size()) + length_delta);
  out.push_back(static_cast<uint8_t>(length >> 8));
  out.push_back(static_cast<uint8_t>(length));
  out.insert(out.end(), body.begin(), body.end());
  if (crc) {
    uint32_t sum = Crc32c(out);
    for (int i = 0; i < 4; ++i) out[crc_at + static_cast<size_t>(i)] = static_cast<uint8_t>(sum >> (24 - 8 * i));
  }
  return out;
}

Bytes Ipv4Block(const char* src, const char* dst, uint16_t sport, uint16_t dport) {
  Bytes b(12);
  inet_pton(AF_INET, src, b.data());
  inet_pton(AF_INET, dst, b.data() + 4);
  b[8] = static_cast<uint8_t>(sport >> 8), b[9] = static_cast<uint8_t>(sport);
  b[10] = static_cast<uint8_t>(dport >> 8), b[11] = static_cast<uint8_t>(dport);
  return b;
}

Bytes Ipv6Block(const char* src, const char* dst, uint16_t sport, uint16_t dport) {
  Bytes b(36);
  inet_pton(AF_INET6, src, b.data());
  inet_pton(AF_INET6, dst, b.data() + 16);
  b[32] = static_cast<uint8_t>(sport >> 8), b[33] = static_cast<uint8_t>(sport);
  b[34] = static_cast<uint8_t>(dport >> 8), b[35] = static_cast<uint8_t>(dport);
  return b;
}

Bytes UnixBlock(std::string_view src, std::string_view dst) {
  Bytes b(216);
  std::memcpy(b.data(), src.data(), src.size());
  std::memcpy(b.data() + 108, dst.data(), dst.size());
  return b;
}

std::string Describe(const sockaddr_storage& ss, socklen_t len) {
  return DescribeSockaddr(reinterpret_cast<const sockaddr*>(&ss), len);
}

struct Outcome {
  State state;
  size_t consumed = 0;  // over all feeds
  ProxyHeader header;
  std::string error;
  bool checksum = false;
};

// Feeds `bytes` in pieces of at most `piece` bytes, as reads would bring them.
Outcome Parse(const Bytes& bytes, ProxyVersions accept = ProxyVersions::kAny, size_t piece = SIZE_MAX) {
  ProxyHeaderParser p(accept);
  Outcome out{};
  out.state = State::kNeedMore;
  for (size_t at = 0; at < bytes.size() && out.state == State::kNeedMore; at += piece) {
    size_t n = std::min(piece, bytes.size() - at);
    auto progress = p.Feed(std::span(bytes).subspan(at, n));
    out.consumed += progress.consumed;
    out.state = progress.state;
    if (progress.state == State::kNeedMore) {
      EXPECT_EQ(progress.consumed, n);
    }
  }
  if (out.state == State::kDone) out.header = p.header();
  if (out.state == State::kError) {
    out.error = p.error();
    out.checksum = p.checksum_mismatch();
  }
  return out;
}

void ExpectProxied(const Outcome& o, const std::string& source, const std::string& destination) {
  ASSERT_EQ(o.state, State::kDone) << o.error;
  EXPECT_EQ(o.header.kind, ProxyHeader::Kind::kProxied);
  EXPECT_EQ(Describe(o.header.source, o.header.source_len), source);
  EXPECT_EQ(Describe(o.header.destination, o.header.destination_len), destination);
}

TEST(Crc32c, KnownValues) {
  EXPECT_EQ(Crc32c(B("123456789")), 0xE3069283u);  // the check value of CRC-32C
  EXPECT_EQ(Crc32c({}), 0u);
  EXPECT_EQ(Crc32c(B("56789"), Crc32c(B("1234"))), 0xE3069283u);  // continues
}

// ---- v1 ---------------------------------------------------------------------------

TEST(ProxyV1, Tcp4) {
  Bytes line = B("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
  Outcome o = Parse(line);
  ExpectProxied(o, "192.168.0.1:56324", "192.168.0.11:443");
  EXPECT_EQ(o.header.version, 1);
  EXPECT_EQ(o.header.length, line.size());
  EXPECT_EQ(o.consumed, line.size());
  EXPECT_TRUE(o.header.unique_id().empty());
}

TEST(ProxyV1, Tcp6) {
  ExpectProxied(Parse(B("PROXY TCP6 2001:db8::7 ::1 41234 1067\r\n")), "[2001:db8::7]:41234", "[::1]:1067");
  ExpectProxied(Parse(B("PROXY TCP6 2001:DB8:0:0:0:0:0:7 ::ffff:192.0.2.1 0 65535\r\n")), "[2001:db8::7]:0",
                "[::ffff:192.0.2.1]:65535");
}

TEST(ProxyV1, Unknown) {
  for (const char* line : {"PROXY UNKNOWN\r\n", "PROXY UNKNOWN ffff::1 ffff::2 65535 65535\r\n",
                           "PROXY UNKNOWN anything at all, ignored\r\n"}) {
    SCOPED_TRACE(line);
    Outcome o = Parse(B(line));
    ASSERT_EQ(o.state, State::kDone) << o.error;
    EXPECT_EQ(o.header.kind, ProxyHeader::Kind::kUnknown);
    EXPECT_EQ(o.header.length, std::strlen(line));
  }
}

TEST(ProxyV1, LongestLinesFit) {
  // The spec's worst cases: 56, 104 and 107 bytes with the CRLF.
  std::string v4 = "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n";
  std::string v6 = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                   "65535 65535\r\n";
  std::string unknown = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
  ASSERT_EQ(v4.size(), 56u);
  ASSERT_EQ(v6.size(), 104u);
  ASSERT_EQ(unknown.size(), 107u);
  ExpectProxied(Parse(B(v4)), "255.255.255.255:65535", "255.255.255.255:65535");
  ExpectProxied(Parse(B(v6)), "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
                "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535");
  EXPECT_EQ(Parse(B(unknown)).state, State::kDone);
  // One byte more and there is no CRLF within 107 bytes.
  std::string too_long = unknown;
  too_long.insert(14, "f");
  Outcome o = Parse(B(too_long));
  EXPECT_EQ(o.state, State::kError);
  EXPECT_EQ(o.consumed, 107u);  // given up as soon as the 107th byte was not the LF
}

TEST(ProxyV1, Malformed) {
  const char* bad[] = {
      "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",            // LF alone
      "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n",        // CR not followed by LF
      "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",         // a trailing space
      "PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",         // two spaces
      "PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
      "PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n",
      "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",            // a field missing
      "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",        // one too many
      "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",         // leading zero
      "PROXY TCP4 1.2.3.4 5.6.7.256 1 2\r\n",        // out of range
      "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",            // three parts
      "PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n",        // five
      "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",         // port with a leading zero
      "PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",      // port out of range
      "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
      "PROXY TCP4 1.2.3.4 5.6.7.8 1 +2\r\n",
      "PROXY TCP4 ::1 ::1 1 2\r\n",                  // family mismatch
      "PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
      "PROXY TCP6 1::2::3 ::1 1 2\r\n",              // two ::
      "PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n",    // 144 bits
      "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n",         // a scope is not an address
      "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",          // unknown protocol
      "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
      "PROXY UNKNOWNX\r\n",
      "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",          // case matters
      "PROXY \r\n",
      "PROXY\r\n",
      "PROXX TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
      "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
      "GET / HTTP/1.0\r\n\r\n",
      "\n",
  };
  for (const char* line : bad) {
    SCOPED_TRACE(line);
    Outcome o = Parse(B(line));
    EXPECT_EQ(o.state, State::kError);
    EXPECT_FALSE(o.error.empty());
    EXPECT_FALSE(o.checksum);
  }
}

TEST(ProxyV1, FailsAsSoonAsThePrefixIsWrong) {
  Outcome o = Parse(B("PROXI TCP4 ..."));
  EXPECT_EQ(o.state, State::kError);
  EXPECT_EQ(o.consumed, 5u);
  EXPECT_EQ(Parse(B("hello")).consumed, 1u);
}

// ---- v2 ---------------------------------------------------------------------------

TEST(ProxyV2, Tcp4) {
  Bytes h = V2(0x21, 0x11, Ipv4Block("203.0.113.7", "192.0.2.1", 41234, 1067));
  Outcome o = Parse(h);
  ExpectProxied(o, "203.0.113.7:41234", "192.0.2.1:1067");
  EXPECT_EQ(o.header.version, 2);
  EXPECT_EQ(o.header.length, 28u);
}

TEST(ProxyV2, Tcp6) {
  ExpectProxied(Parse(V2(0x21, 0x21, Ipv6Block("2001:db8::7", "::1", 1, 65535))), "[2001:db8::7]:1", "[::1]:65535");
}

TEST(ProxyV2, Unix) {
  Outcome o = Parse(V2(0x21, 0x31, UnixBlock("/run/client.sock", "/run/rot13d/rot13d.sock")));
  ExpectProxied(o, "unix:/run/client.sock", "unix:/run/rot13d/rot13d.sock");
  // An abstract name and an unnamed client.
  o = Parse(V2(0x21, 0x31, UnixBlock(std::string_view("\0abstract", 9), "")));
  ASSERT_EQ(o.state, State::kDone);
  EXPECT_EQ(Describe(o.header.source, o.header.source_len), "unix:@abstract");
  EXPECT_EQ(Describe(o.header.destination, o.header.destination_len), "unix:(unnamed)");
  // A path of all 108 bytes, without a terminator.
  std::string full(108, 'p');
  full[0] = '/';
  o = Parse(V2(0x21, 0x31, UnixBlock(full, "/x")));
  ASSERT_EQ(o.state, State::kDone);
  EXPECT_EQ(Describe(o.header.source, o.header.source_len), "unix:" + full);
}

TEST(ProxyV2, Local) {
  // What a balancer's health check sends: LOCAL, AF_UNSPEC, no addresses.
  Outcome o = Parse(V2(0x20, 0x00, {}));
  ASSERT_EQ(o.state, State::kDone) << o.error;
  EXPECT_EQ(o.header.kind, ProxyHeader::Kind::kLocal);
  EXPECT_EQ(o.header.length, 16u);
  // The receiver must honour the length and ignore the block, whatever the family says.
  o = Parse(V2(0x20, 0x11, Ipv4Block("1.2.3.4", "5.6.7.8", 1, 2)));
  ASSERT_EQ(o.state, State::kDone);
  EXPECT_EQ(o.header.kind, ProxyHeader::Kind::kLocal);
  EXPECT_EQ(o.header.length, 28u);
  o = Parse(V2(0x20, 0xFF, Bytes(300, 0xAA)));
  ASSERT_EQ(o.state, State::kDone) << o.error;
  EXPECT_EQ(o.header.kind, ProxyHeader::Kind::kLocal);
  EXPECT_EQ(o.header.length, 316u);
  // LOCAL with a checksum is checked too.
  o = Parse(V2(0x20, 0x00, {}, {}, /*crc=*/true));
  EXPECT_EQ(o.state, State::kDone) << o.error;
}

TEST(ProxyV2, UnspecifiedAndDatagramFallBackToTheRealEndpoints) {
  for (uint8_t fam : {0x00, 0x12, 0x22, 0x32, 0x10, 0x01}) {
    SCOPED_TRACE(static_cast<int>(fam));
    size_t n = fam >> 4 == 1 ? 12 : fam >> 4 == 2 ? 36 : fam >> 4 == 3 ? 216 : 0;
    Outcome o = Parse(V2(0x21, fam, Bytes(n, 1), {{0x05, B("id")}}));
    ASSERT_EQ(o.state, State::kDone) << o.error;
    EXPECT_EQ(o.header.kind, ProxyHeader::Kind::kUnknown);
    EXPECT_EQ(o.header.unique_id(), "id");
  }
}

TEST(ProxyV2, TlvsSkippedUniqueIdKept) {
  Bytes ssl = {0x01, 0, 0, 0, 0, 0x21, 0x00, 0x07};
  ssl.insert(ssl.end(), {'T', 'L', 'S', 'v', '1', '.', '3'});
  Bytes h = V2(0x21, 0x11, Ipv4Block("10.0.0.1", "10.0.0.2", 5, 6),
               {{0x01, B("h2")}, {0x02, B("example.com")}, {0x04, {}}, {0x20, ssl}, {0x30, B("ns")},
                {0x05, B("unique-7")}, {0xE0, Bytes(1000, 0xEE)}, {0xF8, {}}});
  Outcome o = Parse(h);
  ExpectProxied(o, "10.0.0.1:5", "10.0.0.2:6");
  EXPECT_EQ(o.header.unique_id(), "unique-7");
  EXPECT_EQ(o.header.length, h.size());
}

TEST(ProxyV2, UniqueIdOf128Bytes) {
  Bytes id(128);
  for (size_t i = 0; i < id.size(); ++i) id[i] = static_cast<uint8_t>(i);
  Outcome o = Parse(V2(0x21, 0x11, Ipv4Block("1.2.3.4", "5.6.7.8", 1, 2), {{0x05, id}}));
  ASSERT_EQ(o.state, State::kDone);
  EXPECT_EQ(o.header.unique_id(), std::string_view(reinterpret_cast<const char*>(id.data()), id.size()));
  id.push_back(0);
  EXPECT_EQ(Parse(V2(0x21, 0x11, Ipv4Block("1.2.3.4", "5.6.7.8", 1, 2), {{0x05, id}})).state, State::kError);
}

TEST(ProxyV2, LongestHeader) {
  // The length field's maximum: 16 + 65535 bytes, most of it one TLV.
  Bytes block = Ipv6Block("::1", "::2", 1, 2);
  Bytes filler(65535 - 36 - (3 + 7) - 3 - (3 + 4), 0x55);
  Bytes h = V2(0x21, 0x21, block, {{0x05, B("longest")}, {0xE1, filler}}, /*crc=*/true);
  ASSERT_EQ(h.size(), 16u + 65535u);
  Outcome o = Parse(h, ProxyVersions::kV2);
  ExpectProxied(o, "[::1]:1", "[::2]:2");
  EXPECT_EQ(o.header.length, h.size());
  EXPECT_EQ(o.header.unique_id(), "longest");
}

TEST(ProxyV2, Crc32cGoodAndBad) {
  Bytes h = V2(0x21, 0x11, Ipv4Block("198.51.100.9", "192.0.2.1", 443, 1067), {{0x05, B("abc")}}, /*crc=*/true);
  ExpectProxied(Parse(h), "198.51.100.9:443", "192.0.2.1:1067");
  // A bit flipped anywhere, the checksum itself included, is a mismatch.
  // (Flipping the CRC TLV's type leaves no checksum to check, and a length
  // malformed TLVs: those bytes are left out.)
  for (size_t i = 16; i < h.size(); ++i) {
    if (i >= h.size() - 7 && i < h.size() - 4) continue;
    Bytes bad = h;
    bad[i] ^= 0x01;
    Outcome o = Parse(bad);
    ASSERT_EQ(o.state, State::kError) << i;
    if (i == 16 + 12 + 1 || i == 16 + 12 + 2) continue;  // UNIQUE_ID's length: the TLVs no longer fit
    EXPECT_TRUE(o.checksum) << i << ": " << o.error;
  }
  // A CRC over the header with the field not zeroed is wrong.
  Bytes wrong = h;
  uint32_t sum = Crc32c(h);
  for (int i = 0; i < 4; ++i) wrong[h.size() - 4 + static_cast<size_t>(i)] = static_cast<uint8_t>(sum >> (24 - 8 * i));
  EXPECT_TRUE(Parse(wrong).checksum);
}

TEST(ProxyV2, Malformed) {
  Bytes v4 = Ipv4Block("1.2.3.4", "5.6.7.8", 1, 2);
  struct Case {
    const char* what;
    Bytes bytes;
  };
  Bytes bad_signature = V2(0x21, 0x11, v4);
  bad_signature[11] = 0x0B;
  std::vector<Case> cases = {
      {"signature", bad_signature},
      {"version 1", V2(0x11, 0x11, v4)},
      {"version 3", V2(0x31, 0x11, v4)},
      {"command 2", V2(0x22, 0x11, v4)},
      {"command 15", V2(0x2F, 0x11, v4)},
      {"family 4", V2(0x21, 0x41, v4)},
      {"transport 3", V2(0x21, 0x13, v4)},
      {"block short for IPv4", V2(0x21, 0x11, Bytes(11, 0))},
      {"block short for IPv6", V2(0x21, 0x21, Bytes(35, 0))},
      {"block short for unix", V2(0x21, 0x31, Bytes(215, 0))},
      {"TLV past the end", V2(0x21, 0x11, v4, {{0x04, B("abcd")}}, false, -1)},
      {"CRC of 3 bytes", V2(0x21, 0x11, v4, {{0x03, Bytes(3, 0)}})},
      {"CRC of 5 bytes", V2(0x21, 0x11, v4, {{0x03, Bytes(5, 0)}})},
      {"two UNIQUE_IDs", V2(0x21, 0x11, v4, {{0x05, B("a")}, {0x05, B("b")}})},
  };
  // Length that ends one or two bytes into a TLV's head.
  for (size_t extra : {1u, 2u}) {
    Bytes block = v4;
    block.resize(block.size() + extra, 0x04);
    cases.push_back({"TLV head cut by the length", V2(0x21, 0x11, block)});
  }
  // Two CRC TLVs (each would be zeroed: any value is wrong or malformed).
  Bytes two_crc = V2(0x21, 0x11, v4, {{0x03, Bytes(4, 0)}}, /*crc=*/true);
  cases.push_back({"two CRC32Cs", two_crc});
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    Outcome o = Parse(c.bytes);
    EXPECT_EQ(o.state, State::kError);
    EXPECT_FALSE(o.error.empty());
  }
}

TEST(ProxyV2, FailsAtTheFirstWrongByte) {
  Bytes h = V2(0x21, 0x11, Ipv4Block("1.2.3.4", "5.6.7.8", 1, 2));
  for (size_t i = 0; i < 12; ++i) {
    Bytes bad = h;
    bad[i] ^= 0x80;
    Outcome o = Parse(bad);
    EXPECT_EQ(o.state, State::kError) << i;
    EXPECT_EQ(o.consumed, i + 1) << i;
  }
  EXPECT_EQ(Parse(V2(0x11, 0x11, {})).consumed, 13u);  // the version
}

// ---- both -------------------------------------------------------------------------

TEST(ProxyHeader, VersionsTheListenerTakes) {
  Bytes v1 = B("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n");
  Bytes v2 = V2(0x21, 0x11, Ipv4Block("1.2.3.4", "5.6.7.8", 1, 2));
  EXPECT_EQ(Parse(v1, ProxyVersions::kV1).state, State::kDone);
  EXPECT_EQ(Parse(v1, ProxyVersions::kV2).state, State::kError);
  EXPECT_EQ(Parse(v2, ProxyVersions::kV2).state, State::kDone);
  EXPECT_EQ(Parse(v2, ProxyVersions::kV1).state, State::kError);
  EXPECT_EQ(Parse(v1, ProxyVersions::kAny).state, State::kDone);
  EXPECT_EQ(Parse(v2, ProxyVersions::kAny).state, State::kDone);
  EXPECT_EQ(Parse(v2, ProxyVersions::kV1).consumed, 1u);
}

std::vector<Bytes> ValidHeaders() {
  return {
      B("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"),
      B("PROXY TCP6 2001:db8::7 ::1 41234 1067\r\n"),
      B("PROXY UNKNOWN\r\n"),
      V2(0x21, 0x11, Ipv4Block("203.0.113.7", "192.0.2.1", 41234, 1067)),
      V2(0x21, 0x21, Ipv6Block("2001:db8::7", "::1", 1, 2), {{0x05, B("uid")}, {0x01, B("x")}}, true),
      V2(0x21, 0x31, UnixBlock("/a", "/b"), {}, true),
      V2(0x20, 0x00, {}),
  };
}

TEST(ProxyHeader, SplitAtEveryByte) {
  for (const Bytes& whole : ValidHeaders()) {
    Outcome one = Parse(whole);
    ASSERT_EQ(one.state, State::kDone) << one.error;
    // Byte by byte, and in two pieces split at every point.
    Outcome bytewise = Parse(whole, ProxyVersions::kAny, 1);
    EXPECT_EQ(bytewise.state, State::kDone);
    EXPECT_EQ(bytewise.consumed, whole.size());
    for (size_t cut = 1; cut < whole.size(); ++cut) {
      ProxyHeaderParser p(ProxyVersions::kAny);
      auto first = p.Feed(std::span(whole).first(cut));
      ASSERT_EQ(first.state, State::kNeedMore) << cut;
      ASSERT_EQ(first.consumed, cut);
      auto second = p.Feed(std::span(whole).subspan(cut));
      ASSERT_EQ(second.state, State::kDone) << cut;
      EXPECT_EQ(second.consumed, whole.size() - cut);
      EXPECT_EQ(p.header().kind, one.header.kind);
      EXPECT_EQ(0, std::memcmp(&p.header().source, &one.header.source, sizeof one.header.source));
      EXPECT_EQ(p.header().unique_id(), one.header.unique_id());
    }
  }
}

TEST(ProxyHeader, TrailingDataIsNotConsumed) {
  for (Bytes whole : ValidHeaders()) {
    size_t header = whole.size();
    Bytes data = B("Hello\r\nPROXY TCP4 1.1.1.1 2.2.2.2 1 2\r\n");
    whole.insert(whole.end(), data.begin(), data.end());
    ProxyHeaderParser p(ProxyVersions::kAny);
    auto progress = p.Feed(whole);
    ASSERT_EQ(progress.state, State::kDone);
    EXPECT_EQ(progress.consumed, header);
    EXPECT_EQ(p.header().length, header);
    // Done is final: more bytes are not taken.
    auto again = p.Feed(data);
    EXPECT_EQ(again.state, State::kDone);
    EXPECT_EQ(again.consumed, 0u);
  }
}

TEST(ProxyHeader, ErrorIsFinal) {
  ProxyHeaderParser p(ProxyVersions::kAny);
  EXPECT_EQ(p.Feed(B("X")).state, State::kError);
  auto again = p.Feed(B("PROXY UNKNOWN\r\n"));
  EXPECT_EQ(again.state, State::kError);
  EXPECT_EQ(again.consumed, 0u);
}

TEST(ProxyHeader, PartialHeaderNeedsMore) {
  for (const Bytes& whole : ValidHeaders()) {
    Outcome o = Parse(Bytes(whole.begin(), whole.end() - 1));
    EXPECT_EQ(o.state, State::kNeedMore);
    EXPECT_EQ(o.consumed, whole.size() - 1);
  }
  EXPECT_EQ(Parse({}).state, State::kNeedMore);
}

}  // namespace
}  // namespace rot13d
