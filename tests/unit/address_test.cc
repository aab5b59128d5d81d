// Listen address parsing, canonical text, and sockaddr conversion both ways.
#include "common/address.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <gtest/gtest.h>

#include <cstddef>
#include <cstring>
#include <string>

namespace rot13d {
namespace {

using Kind = ListenAddress::Kind;

TEST(ParseListenAddress, Ipv4) {
  auto a = ParseListenAddress("127.0.0.1:1067");
  ASSERT_TRUE(a.ok()) << a.error().message();
  EXPECT_EQ(a->kind, Kind::kIpv4);
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 1067);
  EXPECT_EQ(a->ToString(), "127.0.0.1:1067");
}

TEST(ParseListenAddress, Ipv4AnyAndPortBounds) {
  auto zero = ParseListenAddress("0.0.0.0:0");
  ASSERT_TRUE(zero.ok());
  EXPECT_EQ(zero->port, 0);
  auto max = ParseListenAddress("255.255.255.255:65535");
  ASSERT_TRUE(max.ok());
  EXPECT_EQ(max->port, 65535);
}

TEST(ParseListenAddress, Ipv6) {
  auto a = ParseListenAddress("[::1]:1067");
  ASSERT_TRUE(a.ok()) << a.error().message();
  EXPECT_EQ(a->kind, Kind::kIpv6);
  EXPECT_EQ(a->host, "::1");
  EXPECT_EQ(a->port, 1067);
  EXPECT_EQ(a->ToString(), "[::1]:1067");
}

// Equal addresses must have equal text, or "listed twice" detection and
// listener reuse across reloads would miss spellings of the same address.
TEST(ParseListenAddress, Ipv6TextIsCanonicalized) {
  struct Case {
    const char* in;
    const char* host;
  } cases[] = {
      {"[0:0:0:0:0:0:0:1]:80", "::1"},
      {"[::0001]:80", "::1"},
      {"[2001:DB8::A]:80", "2001:db8::a"},
      {"[2001:0db8:0000:0000:0000:0000:0000:000a]:80", "2001:db8::a"},
      {"[0::]:80", "::"},
      {"[::FFFF:10.0.0.1]:80", "::ffff:10.0.0.1"},
  };
  for (const Case& c : cases) {
    auto a = ParseListenAddress(c.in);
    ASSERT_TRUE(a.ok()) << c.in << ": " << a.error().message();
    EXPECT_EQ(a->host, c.host) << c.in;
    EXPECT_EQ(a->ToString(), "[" + std::string(c.host) + "]:80") << c.in;
  }
  EXPECT_EQ(*ParseListenAddress("[0:0:0:0:0:0:0:1]:80"), *ParseListenAddress("[::1]:80"));
}

TEST(ParseListenAddress, Unix) {
  auto a = ParseListenAddress("unix:/run/rot13d/rot13d.sock");
  ASSERT_TRUE(a.ok()) << a.error().message();
  EXPECT_EQ(a->kind, Kind::kUnix);
  EXPECT_EQ(a->path, "/run/rot13d/rot13d.sock");
  EXPECT_EQ(a->ToString(), "unix:/run/rot13d/rot13d.sock");
}

TEST(ParseListenAddress, BadPortsAreRejected) {
  for (const char* text : {"127.0.0.1:65536", "127.0.0.1:", "127.0.0.1:http", "127.0.0.1:80x",
                           "127.0.0.1:-1", "127.0.0.1:99999999999", "[::1]:65536", "[::1]:", "[::1]:abc"}) {
    auto a = ParseListenAddress(text);
    ASSERT_FALSE(a.ok()) << text << " parsed as " << a->ToString();
    EXPECT_NE(a.error().message().find("invalid port"), std::string::npos)
        << text << ": " << a.error().message();
  }
}

TEST(ParseListenAddress, Ipv6WithoutBracketsIsRejectedWithAHint) {
  auto a = ParseListenAddress("::1:1067");
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.error().message().find("[::1]:1067"), std::string::npos) << a.error().message();
}

TEST(ParseListenAddress, MalformedBracketsAreRejected) {
  for (const char* text : {"[::1]", "[::1]1067", "[::1:1067", "[]:1067", "[1.2.3.4]:1067", "[::g]:1067",
                           "[fe80::1%lo]:1067"}) {
    EXPECT_FALSE(ParseListenAddress(text).ok()) << text;
  }
}

// Names would need DNS at start-up; only numeric hosts are accepted.
TEST(ParseListenAddress, HostNamesAreRejected) {
  for (const char* text : {"localhost:1067", "example.com:1067", ":1067", "1067", "1.2.3:1067",
                           "256.0.0.1:1067", "*:1067"}) {
    auto a = ParseListenAddress(text);
    EXPECT_FALSE(a.ok()) << text << " parsed as " << a->ToString();
  }
  auto a = ParseListenAddress("localhost:1067");
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.error().message().find("not resolved"), std::string::npos) << a.error().message();
}

TEST(ParseListenAddress, RelativeOrEmptyUnixPathIsRejected) {
  for (const char* text : {"unix:rot13d.sock", "unix:./rot13d.sock", "unix:"}) {
    auto a = ParseListenAddress(text);
    ASSERT_FALSE(a.ok()) << text;
    EXPECT_NE(a.error().message().find("must be absolute"), std::string::npos) << a.error().message();
  }
}

// sun_path holds 108 bytes including the terminating NUL, so 107 is the longest path.
TEST(ParseListenAddress, UnixPathLengthLimit) {
  constexpr size_t kMax = sizeof(sockaddr_un::sun_path) - 1;
  std::string longest = "/" + std::string(kMax - 1, 'a');
  ASSERT_EQ(longest.size(), kMax);
  auto ok = ParseListenAddress("unix:" + longest);
  ASSERT_TRUE(ok.ok()) << ok.error().message();
  EXPECT_EQ(ok->path, longest);

  auto too_long = ParseListenAddress("unix:" + longest + "a");
  ASSERT_FALSE(too_long.ok());
  EXPECT_NE(too_long.error().message().find("longer than 107 bytes"), std::string::npos)
      << too_long.error().message();
}

TEST(ParseListenAddress, UnixPathWithNulIsRejected) {
  using namespace std::string_literals;
  EXPECT_FALSE(ParseListenAddress("unix:/tmp/a\0b"s).ok());
}

TEST(ToSockaddr, Ipv4) {
  sockaddr_storage ss;
  socklen_t len = ToSockaddr(*ParseListenAddress("192.0.2.7:1067"), &ss);
  ASSERT_EQ(len, sizeof(sockaddr_in));
  auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
  EXPECT_EQ(sin->sin_family, AF_INET);
  EXPECT_EQ(ntohs(sin->sin_port), 1067);
  EXPECT_EQ(ntohl(sin->sin_addr.s_addr), (192u << 24) | (0u << 16) | (2u << 8) | 7u);
}

TEST(ToSockaddr, Ipv6) {
  sockaddr_storage ss;
  socklen_t len = ToSockaddr(*ParseListenAddress("[2001:db8::1]:443"), &ss);
  ASSERT_EQ(len, sizeof(sockaddr_in6));
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
  EXPECT_EQ(sin6->sin6_family, AF_INET6);
  EXPECT_EQ(ntohs(sin6->sin6_port), 443);
  const uint8_t want[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  EXPECT_EQ(std::memcmp(sin6->sin6_addr.s6_addr, want, 16), 0);
  EXPECT_EQ(sin6->sin6_scope_id, 0u);
  EXPECT_EQ(sin6->sin6_flowinfo, 0u);
}

TEST(ToSockaddr, Unix) {
  sockaddr_storage ss;
  std::memset(&ss, 0x5a, sizeof ss);  // the result must not depend on what was there
  socklen_t len = ToSockaddr(*ParseListenAddress("unix:/tmp/r.sock"), &ss);
  auto* sun = reinterpret_cast<sockaddr_un*>(&ss);
  EXPECT_EQ(sun->sun_family, AF_UNIX);
  EXPECT_STREQ(sun->sun_path, "/tmp/r.sock");
  // The length the kernel reports back for a pathname socket: family + path + NUL.
  EXPECT_EQ(len, offsetof(sockaddr_un, sun_path) + std::strlen("/tmp/r.sock") + 1);
}

TEST(ToSockaddr, LongestUnixPathIsTerminated) {
  constexpr size_t kMax = sizeof(sockaddr_un::sun_path) - 1;
  std::string path = "/" + std::string(kMax - 1, 'p');
  sockaddr_storage ss;
  std::memset(&ss, 0x5a, sizeof ss);
  socklen_t len = ToSockaddr(*ParseListenAddress("unix:" + path), &ss);
  auto* sun = reinterpret_cast<sockaddr_un*>(&ss);
  EXPECT_EQ(len, sizeof(sockaddr_un));
  EXPECT_EQ(sun->sun_path[kMax], '\0');
  EXPECT_EQ(std::string(sun->sun_path), path);
}

TEST(DescribeSockaddr, RoundTripsEachFamily) {
  for (const char* text : {"10.1.2.3:8080", "0.0.0.0:0", "[::1]:1067", "[2001:db8::a]:65535",
                           "unix:/run/rot13d/rot13d.sock"}) {
    sockaddr_storage ss;
    socklen_t len = ToSockaddr(*ParseListenAddress(text), &ss);
    EXPECT_EQ(DescribeSockaddr(reinterpret_cast<sockaddr*>(&ss), len), text);
  }
}

// What getsockname actually returns, rather than what ToSockaddr builds.
TEST(DescribeSockaddr, KernelAddresses) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin), 0);
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len), 0);
  uint16_t port = ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  EXPECT_EQ(DescribeSockaddr(reinterpret_cast<sockaddr*>(&ss), len), "127.0.0.1:" + std::to_string(port));
  close(fd);

  // An unbound unix socket has no name: getsockname returns just the family.
  int ufd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(ufd, 0);
  len = sizeof ss;
  ASSERT_EQ(getsockname(ufd, reinterpret_cast<sockaddr*>(&ss), &len), 0);
  EXPECT_EQ(DescribeSockaddr(reinterpret_cast<sockaddr*>(&ss), len), "unix:(unnamed)");
  close(ufd);
}

TEST(DescribeSockaddr, AbstractUnixName) {
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  const char name[] = "\0rot13d";  // abstract names start with NUL and are not terminated
  std::memcpy(sun.sun_path, name, sizeof name - 1);
  socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + sizeof name - 1);
  EXPECT_EQ(DescribeSockaddr(reinterpret_cast<sockaddr*>(&sun), len), "unix:@rot13d");
}

TEST(DescribeSockaddr, UnknownFamily) {
  sockaddr_storage ss{};
  ss.ss_family = AF_PACKET;
  EXPECT_EQ(DescribeSockaddr(reinterpret_cast<sockaddr*>(&ss), sizeof ss),
            "(family " + std::to_string(AF_PACKET) + ")");
}

}  // namespace
}  // namespace rot13d

namespace rot13d {
namespace {

sockaddr_storage Sockaddr(int family, const char* host) {
  sockaddr_storage ss{};
  ss.ss_family = static_cast<sa_family_t>(family);
  if (family == AF_INET) inet_pton(AF_INET, host, &reinterpret_cast<sockaddr_in*>(&ss)->sin_addr);
  else inet_pton(AF_INET6, host, &reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr);
  return ss;
}

bool In(const char* network, int family, const char* host) {
  sockaddr_storage ss = Sockaddr(family, host);
  return ParseCidr(network)->Contains(reinterpret_cast<const sockaddr*>(&ss));
}

TEST(Cidr, ParsesAndPrintsCanonically) {
  EXPECT_EQ(ParseCidr("127.0.0.0/8")->ToString(), "127.0.0.0/8");
  EXPECT_EQ(ParseCidr("192.0.2.7")->ToString(), "192.0.2.7/32");
  EXPECT_EQ(ParseCidr("0.0.0.0/0")->ToString(), "0.0.0.0/0");
  EXPECT_EQ(ParseCidr("2001:DB8:0::/32")->ToString(), "2001:db8::/32");
  EXPECT_EQ(ParseCidr("::1")->ToString(), "::1/128");
  for (const char* bad : {"", "/8", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/33", "::/129", "10.0.0.1/8", "10.0.0/8",
                          "2001:db8::1/32", "host/8", "10.0.0.0/8 ", "10.0.0.0/08x"}) {
    EXPECT_FALSE(ParseCidr(bad).ok()) << bad;
  }
}

TEST(Cidr, Contains) {
  EXPECT_TRUE(In("127.0.0.0/8", AF_INET, "127.255.0.1"));
  EXPECT_FALSE(In("127.0.0.0/8", AF_INET, "128.0.0.1"));
  EXPECT_TRUE(In("10.1.0.0/17", AF_INET, "10.1.127.255"));
  EXPECT_FALSE(In("10.1.0.0/17", AF_INET, "10.1.128.0"));
  EXPECT_TRUE(In("0.0.0.0/0", AF_INET, "203.0.113.9"));
  EXPECT_TRUE(In("::1/128", AF_INET6, "::1"));
  EXPECT_FALSE(In("::1/128", AF_INET6, "::2"));
  EXPECT_TRUE(In("2001:db8::/32", AF_INET6, "2001:db8:ffff::1"));
  EXPECT_FALSE(In("2001:db8::/32", AF_INET6, "2001:db9::1"));
  // Families do not mix, but for the v4-mapped form of an IPv4 address.
  EXPECT_FALSE(In("::/0", AF_INET, "127.0.0.1"));
  EXPECT_FALSE(In("0.0.0.0/0", AF_INET6, "::1"));
  EXPECT_TRUE(In("127.0.0.0/8", AF_INET6, "::ffff:127.0.0.1"));
  EXPECT_FALSE(In("127.0.0.0/8", AF_INET6, "::ffff:10.0.0.1"));
  sockaddr_storage unix_peer{};
  unix_peer.ss_family = AF_UNIX;
  EXPECT_FALSE(ParseCidr("0.0.0.0/0")->Contains(reinterpret_cast<const sockaddr*>(&unix_peer)));
}

}  // namespace
}  // namespace rot13d
