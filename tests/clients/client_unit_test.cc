// The client tools' pure parts: address and argument parsing, the latency histogram,
// the verification pattern and JSON strings.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <random>
#include <utility>
#include <vector>

#include "client/args.h"
#include "client/bench_report.h"
#include "client/endpoint.h"
#include "client/histogram.h"
#include "client/pattern.h"
#include "common/rot13.h"
#include "common/json.h"

namespace rot13d::client {
namespace {

Endpoint Parsed(std::string_view text) {
  auto e = ParseEndpoint(text);
  EXPECT_TRUE(e.ok()) << text << ": " << (e.ok() ? "" : e.error().ToString());
  return e.ok() ? *e : Endpoint{};
}

TEST(EndpointTest, HostAndPortDefaultToLocalhost1067) {
  Endpoint e = Parsed("");
  EXPECT_EQ(e.host, "localhost");
  EXPECT_EQ(e.port, 1067);
  EXPECT_EQ(Parsed(":2000").ToString(), "localhost:2000");
  EXPECT_EQ(Parsed("example.org").ToString(), "example.org:1067");
  EXPECT_EQ(Parsed("example.org:7").ToString(), "example.org:7");
  EXPECT_EQ(Parsed("10.1.2.3:65535").ToString(), "10.1.2.3:65535");
}

TEST(EndpointTest, Ipv6InBracketsOrBare) {
  EXPECT_EQ(Parsed("[::1]:2000").ToString(), "[::1]:2000");
  EXPECT_EQ(Parsed("[::1]").ToString(), "[::1]:1067");
  EXPECT_EQ(Parsed("::1").ToString(), "[::1]:1067");
  EXPECT_EQ(Parsed("fe80::1%lo").host, "fe80::1%lo");
}

TEST(EndpointTest, UnixPaths) {
  Endpoint e = Parsed("unix:/run/rot13d/rot13d.sock");
  EXPECT_EQ(e.kind, Endpoint::Kind::kUnix);
  EXPECT_EQ(e.path, "/run/rot13d/rot13d.sock");
  EXPECT_EQ(Parsed("unix:relative.sock").path, "relative.sock");
  EXPECT_EQ(Parsed("unix:@abstract").path, "@abstract");
  EXPECT_FALSE(ParseEndpoint("unix:/" + std::string(107, 'x')).ok()) << "sun_path holds 107 bytes and a NUL";
  EXPECT_TRUE(ParseEndpoint("unix:/" + std::string(106, 'x')).ok());
}

TEST(EndpointTest, Rejects) {
  for (const char* bad : {"host:", "host:0", "host:65536", "host:-1", "host:1x", "[::1", "[::1]:", "[::1]5", "[]:5",
                          "1:2:3:zz", "unix:", "a b:5", "host/x:5"}) {
    EXPECT_FALSE(ParseEndpoint(bad).ok()) << bad;
  }
}

TEST(EndpointTest, SocatTcpPrefixes) {
  EXPECT_EQ(Parsed("tcp:127.0.0.1:2000").ToString(), "127.0.0.1:2000");
  EXPECT_EQ(Parsed("TCP:localhost:2000").ToString(), "localhost:2000");
  EXPECT_EQ(Parsed("tcp:[::1]:2000").ToString(), "[::1]:2000");
  EXPECT_EQ(Parsed("tcp4:localhost:7").family, Family::kIpv4);
  EXPECT_EQ(Parsed("tcp6:localhost:7").family, Family::kIpv6);
  EXPECT_EQ(Parsed("tcp:localhost:7").family, Family::kAny);
  // Without a port after it, the prefix is a host name: "tcp:80" as before.
  EXPECT_EQ(Parsed("tcp:80").ToString(), "tcp:80");
  EXPECT_FALSE(Resolve(Parsed("tcp4:127.0.0.1:5"), Family::kIpv6).ok()) << "-6 with tcp4:";
  auto v4 = Resolve(Parsed("tcp4:localhost:5"));
  ASSERT_TRUE(v4.ok()) << v4.error().ToString();
  for (const SocketAddress& a : *v4) EXPECT_EQ(a.family(), AF_INET) << a.ToString();
}

TEST(EndpointTest, HostAndPortAsTwoArguments) {
  auto two = [](std::string_view host, std::string_view port) {
    auto e = ParseEndpoint(host, port);
    return e ? e->ToString() : "error: " + e.error().message();
  };
  EXPECT_EQ(two("127.0.0.1", "2000"), "127.0.0.1:2000");
  EXPECT_EQ(two("example.org", "7"), "example.org:7");
  EXPECT_EQ(two("::1", "2000"), "[::1]:2000");
  EXPECT_EQ(two("[::1]", "2000"), "[::1]:2000");
  for (auto [host, port] : std::vector<std::pair<const char*, const char*>>{
           {"127.0.0.1", "0"}, {"127.0.0.1", "http"}, {"127.0.0.1:5", "6"}, {"unix:/x.sock", "6"}, {"a b", "6"}}) {
    EXPECT_FALSE(ParseEndpoint(host, port).ok()) << host << " " << port;
  }
  std::vector<std::string> args;
  EXPECT_EQ(ParseEndpointArgs(args)->ToString(), "localhost:1067");
  args = {"[::1]:5"};
  EXPECT_EQ(ParseEndpointArgs(args)->ToString(), "[::1]:5");
  args = {"localhost", "5"};
  EXPECT_EQ(ParseEndpointArgs(args)->ToString(), "localhost:5");
}

// The hint names what was typed, never a made-up address.
TEST(EndpointTest, HintsShowTheTypedAddress) {
  auto message = [](std::string_view text) {
    auto e = ParseEndpoint(text);
    return e ? std::string("parsed") : e.error().message();
  };
  EXPECT_NE(message("::ffff:10.0.0.1:2000").find("[::ffff:10.0.0.1]:2000"), std::string::npos)
      << message("::ffff:10.0.0.1:2000");
  std::string m = message("udp:127.0.0.1:2000");
  EXPECT_NE(m.find("tcp:HOST:PORT"), std::string::npos) << m;
  EXPECT_EQ(m.find("1067"), std::string::npos) << m;
  EXPECT_EQ(m.find("brackets"), std::string::npos) << m;
}

TEST(EndpointTest, ResolvesNumericAndUnixAddresses) {
  auto v4 = Resolve(Parsed("127.0.0.1:5"));
  ASSERT_TRUE(v4.ok());
  ASSERT_EQ(v4->size(), 1u);
  EXPECT_EQ((*v4)[0].ToString(), "127.0.0.1:5");
  auto v6 = Resolve(Parsed("[::1]:5"), Family::kIpv6);
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ((*v6)[0].ToString(), "[::1]:5");
  EXPECT_FALSE(Resolve(Parsed("127.0.0.1:5"), Family::kIpv6).ok()) << "-6 with an IPv4 address";
  auto u = Resolve(Parsed("unix:/tmp/x.sock"));
  ASSERT_TRUE(u.ok());
  EXPECT_EQ((*u)[0].ToString(), "unix:/tmp/x.sock");
  auto abstract = Resolve(Parsed("unix:@name"));
  ASSERT_TRUE(abstract.ok());
  EXPECT_EQ((*abstract)[0].ToString(), "unix:@name");
}

TEST(EndpointTest, FailureKindsAndExitCodes) {
  EXPECT_EQ(ClassifyErrno(ECONNREFUSED), FailureKind::kRefused);
  EXPECT_EQ(ClassifyErrno(ENOENT), FailureKind::kRefused);
  EXPECT_EQ(ClassifyErrno(ECONNRESET), FailureKind::kReset);
  EXPECT_EQ(ClassifyErrno(EPIPE), FailureKind::kReset);
  EXPECT_EQ(ClassifyErrno(ETIMEDOUT), FailureKind::kTimeout);
  EXPECT_EQ(ClassifyErrno(EBADMSG), FailureKind::kMismatch);
  EXPECT_EQ(ClassifyErrno(EHOSTUNREACH), FailureKind::kOther);
  EXPECT_EQ(ExitCodeFor(FailureKind::kNone), 0);
  EXPECT_EQ(ExitCodeFor(FailureKind::kOther), 1);
  EXPECT_EQ(ExitCodeFor(FailureKind::kRefused), 4);
  EXPECT_EQ(ExitCodeFor(FailureKind::kReset), 5);
  EXPECT_EQ(ExitCodeFor(FailureKind::kTimeout), 6);
  EXPECT_EQ(ExitCodeFor(FailureKind::kMismatch), 7);
}

// Every connection of both tools goes through StartConnect: TCP ones must not
// wait for a delayed ACK before the tail of a message or a piece of input.
TEST(EndpointTest, TcpConnectionsHaveNoDelay) {
  for (int family : {AF_INET, AF_INET6}) {
    SCOPED_TRACE(family == AF_INET ? "IPv4" : "IPv6");
    UniqueFd listener(socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    ASSERT_TRUE(listener.valid());
    sockaddr_storage ss{};
    socklen_t len = family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
    ss.ss_family = static_cast<sa_family_t>(family);
    if (family == AF_INET) {
      reinterpret_cast<sockaddr_in*>(&ss)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    } else {
      reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr = in6addr_loopback;
    }
    ASSERT_EQ(bind(listener.get(), reinterpret_cast<sockaddr*>(&ss), len), 0) << std::strerror(errno);
    ASSERT_EQ(listen(listener.get(), 4), 0);
    SocketAddress address;
    address.length = sizeof address.storage;
    ASSERT_EQ(getsockname(listener.get(), reinterpret_cast<sockaddr*>(&address.storage), &address.length), 0);
    auto connection = ConnectAny({address}, std::chrono::milliseconds(2000));
    ASSERT_TRUE(connection.ok()) << connection.error().ToString();
    int nodelay = 0;
    socklen_t size = sizeof nodelay;
    ASSERT_EQ(getsockopt(connection->fd.get(), IPPROTO_TCP, TCP_NODELAY, &nodelay, &size), 0);
    EXPECT_EQ(nodelay, 1);
  }
}

TEST(EndpointTest, SourceAddressesAreNumericWithoutAPort) {
  auto host = [](std::string_view text) {
    auto a = ParseSourceAddress(text);
    return a ? a->HostToString() : "error: " + a.error().message();
  };
  EXPECT_EQ(host("127.0.0.2"), "127.0.0.2");
  EXPECT_EQ(host("::1"), "::1");
  EXPECT_EQ(host("[::1]"), "::1");
  EXPECT_EQ(host("2001:DB8::0:1"), "2001:db8::1");
  auto v4 = ParseSourceAddress("10.1.2.3");
  ASSERT_TRUE(v4.ok());
  EXPECT_EQ(v4->family(), AF_INET);
  EXPECT_EQ(v4->ToString(), "10.1.2.3:0") << "port 0: the kernel picks";
  EXPECT_EQ(ParseSourceAddress("::1")->family(), AF_INET6);
  for (const char* bad : {"", "localhost", "127.0.0.1:80", "[::1]:80", "[127.0.0.1]", "127.1", "300.0.0.1", "::1]",
                          "[::1", "unix:/x.sock", "1.2.3.4 ", "fe80::1%lo"}) {
    auto a = ParseSourceAddress(bad);
    EXPECT_FALSE(a.ok()) << bad;
    if (!a.ok()) {
      EXPECT_NE(a.error().message().find("invalid source address"), std::string::npos) << bad;
    }
  }
}

// A listening socket on the loopback address of `family`, and its address.
std::pair<UniqueFd, SocketAddress> LoopbackListener(int family) {
  UniqueFd listener(socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  SocketAddress address;
  address.storage.ss_family = static_cast<sa_family_t>(family);
  address.length = family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
  if (family == AF_INET) {
    reinterpret_cast<sockaddr_in*>(&address.storage)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  } else {
    reinterpret_cast<sockaddr_in6*>(&address.storage)->sin6_addr = in6addr_loopback;
  }
  EXPECT_EQ(bind(listener.get(), address.get(), address.length), 0) << std::strerror(errno);
  EXPECT_EQ(listen(listener.get(), 4), 0);
  address.length = sizeof address.storage;
  EXPECT_EQ(getsockname(listener.get(), reinterpret_cast<sockaddr*>(&address.storage), &address.length), 0);
  return {std::move(listener), address};
}

// With a source, the socket is bound to it before connecting, its port left
// to connect(); a source of the other family is refused before any connect.
TEST(EndpointTest, ConnectsFromTheSource) {
  for (const char* text : {"127.0.0.2", "::1"}) {
    SCOPED_TRACE(text);
    auto source = ParseSourceAddress(text);
    ASSERT_TRUE(source.ok());
    auto [listener, address] = LoopbackListener(source->family());
    auto connection = ConnectAny({address}, std::chrono::milliseconds(2000), &*source);
    ASSERT_TRUE(connection.ok()) << connection.error().ToString();
    SocketAddress local;
    local.length = sizeof local.storage;
    ASSERT_EQ(getsockname(connection->fd.get(), reinterpret_cast<sockaddr*>(&local.storage), &local.length), 0);
    EXPECT_EQ(local.HostToString(), text);
    EXPECT_NE(local.ToString(), source->ToString()) << "connect() gave it a port";
    int no_port = 0;
    socklen_t size = sizeof no_port;
    ASSERT_EQ(getsockopt(connection->fd.get(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &no_port, &size), 0);
    EXPECT_EQ(no_port, 1);
  }
  auto [listener, address] = LoopbackListener(AF_INET);
  auto v6 = ParseSourceAddress("::1");
  ASSERT_TRUE(v6.ok());
  auto pending = StartConnect(address, {}, &*v6);
  ASSERT_FALSE(pending.ok());
  EXPECT_EQ(pending.error().errno_value(), EAFNOSUPPORT);
  EXPECT_NE(pending.error().message().find("::1"), std::string::npos) << pending.error().message();
}

TEST(ArgsTest, Sizes) {
  EXPECT_EQ(*ParseSize("512"), 512u);
  EXPECT_EQ(*ParseSize("64K"), 64u << 10);
  EXPECT_EQ(*ParseSize("16m"), 16u << 20);
  EXPECT_EQ(*ParseSize("1G"), 1u << 30);
  EXPECT_EQ(*ParseSize("2MiB"), 2u << 20);
  EXPECT_EQ(*ParseSize("3KB"), 3u << 10);
  EXPECT_EQ(*ParseSize("7B"), 7u);
  for (const char* bad : {"", "K", "1T", "1.5M", "-1", "1 M", "1MiBx", "99999999999999999999"}) {
    EXPECT_FALSE(ParseSize(bad).ok()) << bad;
  }
}

TEST(ArgsTest, Durations) {
  // Plain numbers are seconds, as before.
  EXPECT_EQ(ParseDuration("10")->count(), 10'000'000'000);
  EXPECT_EQ(ParseDuration("0.5")->count(), 500'000'000);
  EXPECT_EQ(ParseDuration("0")->count(), 0);
  // wrk's units.
  EXPECT_EQ(ParseDuration("10s")->count(), 10'000'000'000);
  EXPECT_EQ(ParseDuration("500ms")->count(), 500'000'000);
  EXPECT_EQ(ParseDuration("2m")->count(), 120'000'000'000);
  EXPECT_EQ(ParseDuration("1.5h")->count(), 5'400'000'000'000);
  EXPECT_EQ(ParseDuration("250us")->count(), 250'000);
  EXPECT_EQ(ParseDuration("366d").ok(), false) << "no days";
  for (const char* bad : {"", "-1", "-1s", "soon", "s", "1 s", "1S", "1sec", "1e3", "nan", "inf", "367h0", "9000h"}) {
    EXPECT_FALSE(ParseDuration(bad).ok()) << bad;
  }
}

TEST(ArgsTest, FormattedAsTyped) {
  using namespace std::chrono_literals;
  EXPECT_EQ(FormatDuration(10s), "10s");
  EXPECT_EQ(FormatDuration(1500ms), "1.5s");
  EXPECT_EQ(FormatDuration(500ms), "500ms");
  EXPECT_EQ(FormatDuration(2min), "2m");
  EXPECT_EQ(FormatDuration(90s), "90s");
  EXPECT_EQ(FormatDuration(1h), "1h");
  EXPECT_EQ(FormatDuration(250us), "250us");
  for (std::chrono::nanoseconds d : {std::chrono::nanoseconds(10s), std::chrono::nanoseconds(1500ms),
                                      std::chrono::nanoseconds(2min), std::chrono::nanoseconds(90s)}) {
    EXPECT_EQ(*ParseDuration(FormatDuration(d)), d) << FormatDuration(d);
  }
  EXPECT_EQ(FormatSize(64ull << 20), "64 MiB");
  EXPECT_EQ(FormatSize(2ull << 30), "2 GiB");
  EXPECT_EQ(FormatSize(1536), "1.5 KiB");
  EXPECT_EQ(FormatSize(100), "100 bytes");
  EXPECT_EQ(FormatSize(1), "1 byte");
}

TEST(HistogramTest, BucketsAreContiguousAndNarrow) {
  EXPECT_EQ(Histogram::BucketOf(0), 0);
  EXPECT_EQ(Histogram::BucketOf(127), 127);
  for (uint64_t v : {uint64_t{128}, uint64_t{129}, uint64_t{1000}, uint64_t{123456789}, uint64_t{1} << 40,
                     UINT64_MAX}) {
    int b = Histogram::BucketOf(v);
    EXPECT_GE(Histogram::BucketHighest(b), v);
    EXPECT_LT(Histogram::BucketHighest(b - 1), v) << "the previous bucket ends below " << v;
    EXPECT_LE(static_cast<double>(Histogram::BucketHighest(b) - Histogram::BucketHighest(b - 1)),
              static_cast<double>(v) / 64 + 1)
        << "bucket of " << v << " is too wide";
  }
}

TEST(HistogramTest, QuantilesOfAUniformSpread) {
  Histogram h;
  for (uint64_t v = 1; v <= 100'000; ++v) h.Record(v * 1000);  // 1 us .. 100 ms
  EXPECT_EQ(h.count(), 100'000u);
  EXPECT_EQ(h.max(), 100'000'000u);
  EXPECT_EQ(h.min(), 1000u);
  EXPECT_NEAR(h.mean(), 50'000'500.0, 1.0);
  for (double q : {0.5, 0.9, 0.99, 0.999}) {
    double want = q * 100'000'000;
    EXPECT_NEAR(static_cast<double>(h.ValueAtQuantile(q)), want, want / 50) << q;
  }
  EXPECT_EQ(h.ValueAtQuantile(1.0), h.max());
  Histogram other;
  other.Record(5);
  h.Merge(other);
  EXPECT_EQ(h.count(), 100'001u);
  EXPECT_EQ(h.min(), 5u);
  EXPECT_EQ(Histogram().ValueAtQuantile(0.5), 0u);
}

// What --json prints for merging: each bucket that holds a value once, lowest
// first, with its count; the bucket of a value is the one whose highest value
// is the first at or above it.
TEST(HistogramTest, BucketsListedAreTheOnesThatHoldValues) {
  Histogram h;
  for (uint64_t v : {5, 5, 1000, 1001, 2'000'000}) h.Record(v);
  std::vector<std::pair<uint64_t, uint64_t>> seen;
  h.ForEachBucket([&](uint64_t highest, uint64_t count) { seen.emplace_back(highest, count); });
  ASSERT_EQ(seen.size(), 3u) << "1000 and 1001 share a bucket 8 wide";
  EXPECT_EQ(seen[0], (std::pair<uint64_t, uint64_t>{5, 2}));
  EXPECT_EQ(seen[1], (std::pair<uint64_t, uint64_t>{Histogram::BucketHighest(Histogram::BucketOf(1000)), 2}));
  EXPECT_GE(seen[1].first, 1001u);
  EXPECT_EQ(seen[2], (std::pair<uint64_t, uint64_t>{Histogram::BucketHighest(Histogram::BucketOf(2'000'000)), 1}));
  int calls = 0;
  Histogram().ForEachBucket([&](uint64_t, uint64_t) { ++calls; });
  EXPECT_EQ(calls, 0);
}

TEST(HistogramTest, StandardDeviationIsExact) {
  Histogram h;
  for (uint64_t v : {2, 4, 4, 4, 5, 5, 7, 9}) h.Record(v * 1'000'000);  // the textbook set: mean 5, stddev 2
  EXPECT_DOUBLE_EQ(h.mean(), 5e6);
  EXPECT_NEAR(h.stddev(), 2e6, 1e-3);
  Histogram same;
  for (int i = 0; i < 1000; ++i) same.Record(123'456'789);
  EXPECT_EQ(same.stddev(), 0.0);
  Histogram merged;
  merged.Merge(h);
  merged.Merge(Histogram());
  EXPECT_NEAR(merged.stddev(), 2e6, 1e-3);
  EXPECT_EQ(Histogram().stddev(), 0.0);
}

TEST(ReportTest, LatencyInWrksUnits) {
  EXPECT_EQ(FormatLatency(786'430, 10), "  786.43us");
  EXPECT_EQ(FormatLatency(1'620'000, 10), "    1.62ms");
  EXPECT_EQ(FormatLatency(2'310'000'000, 10), "    2.31s ");
  EXPECT_EQ(FormatLatency(500, 10), "    0.50us");
  EXPECT_EQ(FormatLatency(999'996, 10), "    1.00ms") << "the unit is chosen after rounding";
  EXPECT_EQ(FormatLatency(7200e9, 9), "7200.00s ");
}

TEST(PatternTest, ExpectedIsTheTransformOfWhatIsSent) {
  Pattern rot13(Expect::kRot13), echo(Expect::kEcho);
  size_t letters = 0;
  for (uint64_t offset : {0ull, 1ull, 262138ull, 262139ull, 1ull << 33}) {
    const uint8_t* sent = rot13.SendAt(offset);
    for (size_t i = 0; i < 1000; ++i) {
      ASSERT_EQ(rot13.ExpectedAt(offset)[i], Rot13Byte(sent[i]));
      ASSERT_EQ(echo.ExpectedAt(offset)[i], sent[i]);
      letters += Rot13Byte(sent[i]) != sent[i];
    }
  }
  EXPECT_GT(letters, 5 * 1000 / 2) << "mostly letters, so a wrong transform shows at once";
  // Offsets a period apart send the same bytes; neighbours do not.
  EXPECT_EQ(std::memcmp(rot13.SendAt(5), rot13.SendAt(5 + Pattern::kPeriod), 4096), 0);
  EXPECT_NE(std::memcmp(rot13.SendAt(5), rot13.SendAt(6), 4096), 0);
}

TEST(PatternTest, VerifyFindsTheFirstWrongByteAcrossThePeriod) {
  Pattern p(Expect::kRot13);
  const uint64_t offset = Pattern::kPeriod - 100;  // a check that wraps around the period
  std::vector<uint8_t> answer(Pattern::kPeriod + 500);
  for (size_t i = 0; i < answer.size(); ++i) answer[i] = p.ExpectedAt(offset + i)[0];
  EXPECT_EQ(p.Verify(offset, answer.data(), answer.size()), answer.size());
  answer[Pattern::kPeriod + 7] ^= 0x20;
  EXPECT_EQ(p.Verify(offset, answer.data(), answer.size()), Pattern::kPeriod + 7);
}

TEST(ReportTest, JsonStringsStayValid) {
  // A byte that is not ASCII is written as the code point of the same value (Latin-1),
  // so any bytes make valid JSON; here U+00FF, which a reader returns as UTF-8.
  std::pair<std::string, std::string> cases[] = {
      {"plain", "plain"},
      {"quote \" backslash \\ newline \n tab \t", "quote \" backslash \\ newline \n tab \t"},
      {"bytes \x01\x7f\xff end", "bytes \x01\x7f\xc3\xbf end"}};
  for (const auto& [text, read_back] : cases) {
    std::string literal = JsonString(text);
    auto parsed = ParseJson(literal);
    ASSERT_TRUE(parsed) << literal;
    EXPECT_EQ(parsed->type, Json::Type::kString);
    EXPECT_EQ(parsed->string, read_back) << literal;
  }
}

}  // namespace
}  // namespace rot13d::client
