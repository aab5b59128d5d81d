// The connection log's pure parts: which lines, their text and priority, the rate limit; and the two ends of a socket.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>

#include "common/unique_fd.h"
#include "daemon/connection_log.h"

namespace rot13d::daemon {
namespace {

using Clock = LineLimit::Clock;
using namespace std::chrono_literals;

constexpr CloseReason kReasons[] = {CloseReason::kClientEof, CloseReason::kIdleTimeout, CloseReason::kReset,
                                    CloseReason::kShutdown, CloseReason::kError};

TEST(ConnectionLog, WhichEndsEachSettingLogs) {
  for (CloseReason r : kReasons) {
    SCOPED_TRACE(CloseReasonName(r));
    EXPECT_FALSE(ConnectionLogWants(ConnectionLog::kOff, r));
    EXPECT_TRUE(ConnectionLogWants(ConnectionLog::kAll, r));
    EXPECT_EQ(ConnectionLogWants(ConnectionLog::kErrors, r), r == CloseReason::kReset || r == CloseReason::kError);
  }
}

TEST(ConnectionLog, PriorityByHowItEnded) {
  EXPECT_EQ(ConnectionLogLevel(CloseReason::kClientEof), LogLevel::kInfo);
  EXPECT_EQ(ConnectionLogLevel(CloseReason::kIdleTimeout), LogLevel::kInfo);
  EXPECT_EQ(ConnectionLogLevel(CloseReason::kShutdown), LogLevel::kInfo);
  EXPECT_EQ(ConnectionLogLevel(CloseReason::kReset), LogLevel::kNotice);
  EXPECT_EQ(ConnectionLogLevel(CloseReason::kError), LogLevel::kWarning);
}

TEST(ConnectionLog, MessageText) {
  EXPECT_EQ(ConnectionLogMessage({"127.0.0.1:41234", "127.0.0.1:1067", CloseReason::kClientEof, 1234, 5, 5}),
            "connection from 127.0.0.1:41234 to 127.0.0.1:1067 closed: client_eof after 0.001234 s, 5 bytes in, "
            "5 bytes out");
  EXPECT_EQ(ConnectionLogMessage({"[2001:db8::7]:1", "[::1]:1067", CloseReason::kReset, 61000001, 1, 0}),
            "connection from [2001:db8::7]:1 to [::1]:1067 closed: reset after 61.000001 s, 1 byte in, 0 bytes out");
  EXPECT_EQ(ConnectionLogMessage({"unix", "unix:/run/rot13d/rot13d.sock", CloseReason::kShutdown, 0,
                                  uint64_t{5} << 32, (uint64_t{5} << 32) - 65536}),
            "connection from unix to unix:/run/rot13d/rot13d.sock closed: shutdown after 0.000000 s, 21474836480 "
            "bytes in, 21474770944 bytes out");
  ClosedConnection refused{"203.0.113.7:5", "192.0.2.1:1068", CloseReason::kError, 12, 0, 0, "127.0.0.1:4000"};
  refused.refused = "over max_connections_per_address";
  EXPECT_EQ(ConnectionLogMessage(refused),
            "connection from 203.0.113.7:5 to 192.0.2.1:1068 closed: error after 0.000012 s, 0 bytes in, 0 bytes out "
            "(via 127.0.0.1:4000); refused: over max_connections_per_address");
}

TEST(ConnectionLog, SuppressedText) {
  LineLimit::Summary s{312, LogLevel::kNotice, 5300ms};
  EXPECT_EQ(SuppressedMessage(s, ConnectionLogger::kLimit),
            "connection log: 312 lines suppressed over the last 5.3 s (at most 100 a second per worker after a burst "
            "of 500)");
  s.suppressed = 1;
  EXPECT_EQ(SuppressedMessage(s, {10, 2, 1s}).substr(0, 40), "connection log: 1 line suppressed over t");
}

TEST(LineLimit, BurstThenRate) {
  LineLimit limit({5, 10, 5s});
  Clock::time_point t0 = Clock::now();
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(limit.Admit(LogLevel::kInfo, t0)) << i;
  EXPECT_FALSE(limit.Admit(LogLevel::kInfo, t0));
  // 10 a second: one line every 100 ms.
  EXPECT_FALSE(limit.Admit(LogLevel::kInfo, t0 + 50ms));
  EXPECT_TRUE(limit.Admit(LogLevel::kInfo, t0 + 110ms));
  EXPECT_FALSE(limit.Admit(LogLevel::kInfo, t0 + 120ms));
  // A second of that rate: ten lines, and no more.
  int admitted = 0;
  for (int ms = 130; ms < 1130; ++ms) admitted += limit.Admit(LogLevel::kInfo, t0 + std::chrono::milliseconds(ms));
  EXPECT_GE(admitted, 9);
  EXPECT_LE(admitted, 11);
}

TEST(LineLimit, RefillsToTheBurstAtMost) {
  LineLimit limit({3, 1000, 5s});
  Clock::time_point t0 = Clock::now();
  EXPECT_TRUE(limit.Admit(LogLevel::kInfo, t0));
  int admitted = 0;
  for (int i = 0; i < 10; ++i) admitted += limit.Admit(LogLevel::kInfo, t0 + 1h);
  EXPECT_EQ(admitted, 3);
}

TEST(LineLimit, SummaryOncePerIntervalFromTheFirstRefused) {
  LineLimit limit({1, 1, 5s});
  Clock::time_point t0 = Clock::now();
  EXPECT_FALSE(limit.TakeSummary(t0 + 1h, true)) << "nothing refused, nothing to tell";
  ASSERT_TRUE(limit.Admit(LogLevel::kInfo, t0));
  EXPECT_FALSE(limit.Admit(LogLevel::kInfo, t0 + 100ms));  // the window opens here
  EXPECT_FALSE(limit.Admit(LogLevel::kWarning, t0 + 200ms));
  EXPECT_FALSE(limit.Admit(LogLevel::kNotice, t0 + 300ms));
  EXPECT_FALSE(limit.TakeSummary(t0 + 5s));
  std::optional<LineLimit::Summary> s = limit.TakeSummary(t0 + 5100ms);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->suppressed, 3u);
  EXPECT_EQ(s->level, LogLevel::kWarning) << "the most important line it counts";
  EXPECT_EQ(s->over, 5s);
  EXPECT_FALSE(limit.TakeSummary(t0 + 1h)) << "told once";

  // A line refused later opens a new window; at exit it is told at once.
  EXPECT_TRUE(limit.Admit(LogLevel::kInfo, t0 + 10s));
  EXPECT_FALSE(limit.Admit(LogLevel::kInfo, t0 + 10s));
  EXPECT_FALSE(limit.TakeSummary(t0 + 11s));
  s = limit.TakeSummary(t0 + 11s, /*flush=*/true);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->suppressed, 1u);
  EXPECT_EQ(s->level, LogLevel::kInfo);
}

// ---- The two ends of a socket ---------------------------------------------------

struct TcpPair {
  UniqueFd client, server;
  std::string client_address, server_address;
};

std::string Text(const sockaddr_in& sin) {
  char host[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, &sin.sin_addr, host, sizeof host);
  return std::string(host) + ":" + std::to_string(ntohs(sin.sin_port));
}

TcpPair Loopback() {
  TcpPair p;
  UniqueFd listener(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  EXPECT_EQ(bind(listener.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  EXPECT_EQ(listen(listener.get(), 1), 0);
  EXPECT_EQ(getsockname(listener.get(), reinterpret_cast<sockaddr*>(&a), &len), 0);
  p.server_address = Text(a);
  p.client.reset(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_EQ(connect(p.client.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  sockaddr_in c{};
  len = sizeof c;
  EXPECT_EQ(getsockname(p.client.get(), reinterpret_cast<sockaddr*>(&c), &len), 0);
  p.client_address = Text(c);
  p.server.reset(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  return p;
}

TEST(EndsOf, TcpPeerAndLocal) {
  TcpPair p = Loopback();
  SocketEnds ends = EndsOf(p.server.borrow());
  EXPECT_EQ(ends.peer, p.client_address);
  EXPECT_EQ(ends.local, p.server_address);
}

// getpeername(2) says ENOTCONN once a reset has closed the socket; the log
// must still name the client.
TEST(EndsOf, TcpPeerAfterAReset) {
  TcpPair p = Loopback();
  linger lg{1, 0};
  ASSERT_EQ(setsockopt(p.client.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
  p.client.reset();
  char byte;
  EXPECT_EQ(recv(p.server.get(), &byte, 1, 0), -1);
  EXPECT_EQ(errno, ECONNRESET);
  SocketEnds ends = EndsOf(p.server.borrow());
  EXPECT_EQ(ends.peer, p.client_address);
  EXPECT_EQ(ends.local, p.server_address);
}

TEST(EndsOf, UnnamedUnixPeer) {
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  UniqueFd a(fds[0]), b(fds[1]);
  SocketEnds ends = EndsOf(a.borrow());
  EXPECT_EQ(ends.peer, "unix");
  EXPECT_EQ(ends.local, "unix");
}

TEST(EndsOf, NotASocket) {
  SocketEnds ends = EndsOf(BorrowedFd(-1));
  EXPECT_EQ(ends.peer, "unknown");
  EXPECT_EQ(ends.local, "unknown");
}

}  // namespace
}  // namespace rot13d::daemon
