// PROXY protocol listeners: headers v1 and v2 served with the client's real address in the log; bad, untrusted and silent clients closed unanswered and counted.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "tests/blackbox/daemon_test.h"
#include "tests/blackbox/proxy_header.h"

namespace rot13d::blackbox {
namespace {

class ProxyProtocolTest : public DaemonTest {
 protected:
  std::string proxy_address() const { return "127.0.0.1:" + std::to_string(proxy_port_); }
  std::string admin() const { return "unix:" + dir_.File("admin.sock"); }

  // A plain listener (address()) and a PROXY one (proxy_address()), one
  // worker, every connection logged, metrics on a unix socket.
  void StartProxy(std::string_view versions, std::string_view extra = {}) {
    std::string text = "listen = [\"" + address() + "\", { address = \"" + proxy_address() +
                       "\", proxy_protocol = \"" + std::string(versions) + "\" }]\n" +
                       "log_target = \"stderr\"\nuser = \"root\"\nworkers = 1\nconnection_log = \"all\"\n"
                       "proxy_header_timeout = 3\nadmin_listen = [\"" + admin() + "\"]\n" + std::string(extra);
    daemon_ = std::make_unique<Daemon>(dir_, dir_.Write("rot13d.toml", text));
    ASSERT_TRUE(daemon_->started());
    ASSERT_TRUE(daemon_->WaitReady()) << daemon_->Log();
    ASSERT_TRUE(daemon_->WaitForWorkerCount(1));
  }

  double Metric(const std::string& series) { return MetricValue(admin(), series); }
  bool WaitForMetric(const std::string& series, double value) {
    return WaitFor([&] { return Metric(series) == value; }, kIoTimeout, 20ms);
  }
  static std::string Errors(std::string_view reason) {
    return "rot13d_proxy_protocol_errors_total{reason=\"" + std::string(reason) + "\"}";
  }

  // Sends `bytes` to the PROXY listener and expects the connection closed
  // with no byte of answer.
  void ExpectClosedUnanswered(const std::string& bytes, std::string_view what, milliseconds wait = kIoTimeout) {
    SCOPED_TRACE(what);
    Client c = Client::Connect(proxy_address());
    ASSERT_TRUE(c.connected()) << c.error();
    c.SendAll(bytes);
    EXPECT_EQ(c.ReceiveToEof(wait), "");
    // A close with bytes of ours still unread by the daemon is a reset (tcp(7)).
    EXPECT_TRUE(c.eof() || c.error().find(std::strerror(ECONNRESET)) != std::string::npos) << "still open: " << c.error();
  }

  uint16_t proxy_port_ = FreePort();
};

TEST_F(ProxyProtocolTest, HeadersGiveTheClientsAddressAndDataInTheSameSendIsAnswered) {
  ASSERT_NO_FATAL_FAILURE(StartProxy("any"));
  {
    Client c = Client::Connect(proxy_address());
    ASSERT_TRUE(c.connected()) << c.error();
    const std::string via = OwnAddress(c);
    ASSERT_TRUE(c.SendAll("PROXY TCP4 203.0.113.7 192.0.2.1 41234 1068\r\nHello, v1"));
    EXPECT_EQ(c.Receive(9), "Uryyb, i1");
    c.ShutdownWrite();
    EXPECT_EQ(c.ReceiveToEof(), "");
    EXPECT_TRUE(daemon_->WaitForLog("connection from 203.0.113.7:41234 to 192.0.2.1:1068 closed: client_eof"))
        << daemon_->Log();
    EXPECT_TRUE(daemon_->LogContains("9 bytes in, 9 bytes out (via " + via + ")")) << daemon_->Log();
  }
  {
    Client c = Client::Connect(proxy_address());
    ASSERT_TRUE(c.connected()) << c.error();
    const std::string via = OwnAddress(c);
    ASSERT_TRUE(c.SendAll(ProxyV2(AF_INET6, "2001:db8::7", "2001:db8::1", 5555, 1068, "req-42", true) + "Hello, v2"));
    EXPECT_EQ(c.Receive(9), "Uryyb, i2");
    c.ShutdownWrite();
    EXPECT_EQ(c.ReceiveToEof(), "");
    EXPECT_TRUE(daemon_->WaitForLog("connection from [2001:db8::7]:5555 to [2001:db8::1]:1068 closed: client_eof"))
        << daemon_->Log();
    EXPECT_TRUE(daemon_->LogContains("(via " + via + ", unique id \"req-42\")")) << daemon_->Log();
  }
  {
    // A v2 IPv4 header followed by more than one read's worth of data at once.
    std::string data(300000, 'a');
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>('A' + i % 58);
    Client c = Client::Connect(proxy_address());
    ASSERT_TRUE(c.connected()) << c.error();
    ASSERT_TRUE(c.SendAll(ProxyV2(AF_INET, "198.51.100.2", "192.0.2.1", 7, 1068) + data.substr(0, 1000)));
    EXPECT_EQ(c.Receive(1000), Rot13(data.substr(0, 1000)));
    EXPECT_EQ(c.RoundTrip(data.substr(1000), 10s), Rot13(data.substr(1000)));
    c.ShutdownWrite();
    EXPECT_EQ(c.ReceiveToEof(), "");
    EXPECT_TRUE(daemon_->WaitForLog("connection from 198.51.100.2:7 to 192.0.2.1:1068 closed: client_eof after"))
        << daemon_->Log();
  }
  EXPECT_EQ(Metric(Errors("malformed")), 0);
  EXPECT_EQ(Metric("rot13d_bytes_received_total"), 9 + 9 + 300000);  // the headers are not data
}

TEST_F(ProxyProtocolTest, HealthChecksUseTheRealEndpoints) {
  ASSERT_NO_FATAL_FAILURE(StartProxy("any"));
  for (std::string header : {std::string("PROXY UNKNOWN\r\n"), kSignature + std::string("\x20\x00\x00\x00", 4)}) {
    Client c = Client::Connect(proxy_address());
    ASSERT_TRUE(c.connected()) << c.error();
    const std::string own = OwnAddress(c);
    ASSERT_TRUE(c.SendAll(header + "ping"));
    EXPECT_EQ(c.Receive(4), "cvat");
    c.ShutdownWrite();
    EXPECT_EQ(c.ReceiveToEof(), "");
    EXPECT_TRUE(daemon_->WaitForLog("connection from " + own + " to " + proxy_address() + " closed: client_eof"))
        << daemon_->Log();
  }
}

TEST_F(ProxyProtocolTest, HeaderSplitByteByByte) {
  ASSERT_NO_FATAL_FAILURE(StartProxy("any"));
  for (const std::string& header : {std::string("PROXY TCP4 10.1.2.3 10.0.0.1 40000 1068\r\n"),
                                    ProxyV2(AF_INET, "10.1.2.4", "10.0.0.1", 40001, 1068, "split", true)}) {
    Client c = Client::Connect(proxy_address());
    ASSERT_TRUE(c.connected()) << c.error();
    int one = 1;
    setsockopt(c.fd(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // a segment per byte
    for (char byte : header) ASSERT_TRUE(c.SendAll(std::string_view(&byte, 1)));
    EXPECT_EQ(c.RoundTrip("split"), "fcyvg");
    c.ShutdownWrite();
    EXPECT_EQ(c.ReceiveToEof(), "");
  }
  EXPECT_TRUE(daemon_->WaitForLog("connection from 10.1.2.3:40000 to 10.0.0.1:1068 closed: client_eof"));
  EXPECT_TRUE(daemon_->WaitForLog("connection from 10.1.2.4:40001 to 10.0.0.1:1068 closed: client_eof"))
      << daemon_->Log();
  EXPECT_TRUE(daemon_->LogContains("unique id \"split\""));
}

TEST_F(ProxyProtocolTest, MalformedHeadersAreClosedUnansweredAndCounted) {
  ASSERT_NO_FATAL_FAILURE(StartProxy("any"));
  const std::vector<std::string> malformed = {
      "Hello\r\n",
      "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
      "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
      "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\nHello",
      "PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",
      "PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
      "PROXY " + std::string(120, 'x'),
      kSignature + std::string("\x31\x11\x00\x0c", 4) + std::string(12, '\0'),  // version 3
      kSignature + std::string("\x21\x11\x00\x0b", 4) + std::string(11, '\0'),  // short IPv4 block
      kSignature + std::string("\x21\x51\x00\x00", 4),                          // family 5
  };
  for (const std::string& bytes : malformed) ExpectClosedUnanswered(bytes, bytes.substr(0, 20));
  std::string bad_crc = ProxyV2(AF_INET, "1.2.3.4", "5.6.7.8", 1, 2, "x", true);
  bad_crc.back() ^= 1;
  ExpectClosedUnanswered(bad_crc + "Hello", "bad CRC32C");
  EXPECT_TRUE(WaitForMetric(Errors("malformed"), static_cast<double>(malformed.size())))
      << Metric(Errors("malformed"));
  EXPECT_TRUE(WaitForMetric(Errors("checksum"), 1));
  EXPECT_TRUE(daemon_->LogContains("; PROXY header checksum: v2: CRC32C mismatch")) << daemon_->Log();
  EXPECT_TRUE(daemon_->LogContains("; PROXY header malformed: v1: LF without CR")) << daemon_->Log();
  // Part of a header, then silence: closed at proxy_header_timeout (3 s).
  ExpectClosedUnanswered("PROXY TCP4 1.2.3.4", "partial, then silent", 15s);
  // Part of a header, then the client's end.
  {
    Client c = Client::Connect(proxy_address());
    ASSERT_TRUE(c.connected());
    c.SendAll("PROXY TCP4");
    c.ShutdownWrite();
    EXPECT_EQ(c.ReceiveToEof(), "");
    EXPECT_TRUE(c.eof());
  }
  EXPECT_TRUE(WaitForMetric(Errors("truncated"), 1));
  EXPECT_TRUE(WaitForMetric(Errors("timeout"), 1));
  // The worker serves on, on both listeners.
  EXPECT_EQ(FreshRoundTrip("Still here"), "Fgvyy urer");
  Client c = Client::Connect(proxy_address());
  ASSERT_TRUE(c.SendAll("PROXY UNKNOWN\r\nStill here"));
  EXPECT_EQ(c.Receive(10), "Fgvyy urer");
  EXPECT_EQ(daemon_->Workers().size(), 1u);
}

TEST_F(ProxyProtocolTest, SilentClientIsClosedAtTheTimeout) {
  ASSERT_NO_FATAL_FAILURE(StartProxy("v2"));
  Client silent = Client::Connect(proxy_address());
  Client partial = Client::Connect(proxy_address());
  ASSERT_TRUE(silent.connected() && partial.connected());
  const auto start = Clock::now();
  ASSERT_TRUE(partial.SendAll(kSignature + "\x21"));
  EXPECT_EQ(silent.ReceiveToEof(15s), "");
  EXPECT_TRUE(silent.eof());
  const auto waited = Clock::now() - start;
  EXPECT_GE(waited, 2900ms);
  EXPECT_LT(waited, 12s);
  EXPECT_EQ(partial.ReceiveToEof(5s), "");
  EXPECT_TRUE(partial.eof());
  EXPECT_TRUE(WaitForMetric(Errors("timeout"), 2));
  // A v1 header on a v2 listener is malformed.
  ExpectClosedUnanswered("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nHello", "v1 on v2");
  EXPECT_TRUE(WaitForMetric(Errors("malformed"), 1));
  EXPECT_TRUE(daemon_->LogContains("; PROXY header timeout: no complete header within proxy_header_timeout"))
      << daemon_->Log();
}

TEST_F(ProxyProtocolTest, UntrustedSourcesAreClosedAtOnce) {
  ASSERT_NO_FATAL_FAILURE(StartProxy("v1", "proxy_trusted = [\"10.0.0.0/8\", \"::1\"]\n"));
  ExpectClosedUnanswered("PROXY TCP4 203.0.113.7 192.0.2.1 41234 1068\r\nHello", "untrusted");
  ExpectClosedUnanswered("", "untrusted, silent");
  EXPECT_TRUE(WaitForMetric(Errors("untrusted"), 2));
  // Not a connection served: none accepted counted, none logged.
  EXPECT_EQ(Metric("rot13d_connections_accepted_total"), 0);
  EXPECT_FALSE(daemon_->LogContains("203.0.113.7"));
  // The plain listener beside it takes anyone, and a header there is data.
  EXPECT_EQ(FreshRoundTrip("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), Rot13("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"));
}

}  // namespace
}  // namespace rot13d::blackbox
