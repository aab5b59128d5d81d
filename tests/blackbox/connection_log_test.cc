// connection_log: a line per closed connection, with each way a connection ends, as the log shows it.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <algorithm>
#include <csignal>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/blackbox/daemon_test.h"

namespace rot13d::blackbox {
namespace {

// One connection-log line as a reader takes it apart.
struct Line {
  pid_t pid = 0;
  std::string level;
  std::string peer;
  std::string local;
  std::string reason;
  double seconds = 0;
  uint64_t in = 0;
  uint64_t out = 0;
};

std::vector<Line> ConnectionLines(const std::string& log) {
  static const std::regex kLine(
      R"(rot13d\[(\d+)\] (\w+): connection from (\S+) to (\S+) closed: (\w+) after (\d+\.\d{6}) s, )"
      R"((\d+) bytes? in, (\d+) bytes? out)");
  std::vector<Line> lines;
  std::istringstream in(log);
  for (std::string text; std::getline(in, text);) {
    std::smatch m;
    if (!std::regex_search(text, m, kLine)) continue;
    lines.push_back({static_cast<pid_t>(std::stol(m[1])), m[2], m[3], m[4], m[5], std::stod(m[6]), std::stoull(m[7]),
                     std::stoull(m[8])});
  }
  return lines;
}


// Closes with a reset instead of a FIN (SO_LINGER with a zero timeout, socket(7)).
void Reset(Client& c) {
  linger lg{1, 0};
  setsockopt(c.fd(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  c.Close();
}

class ConnectionLogTest : public DaemonTest {
 protected:
  std::optional<Line> LineOf(const std::string& peer) const {
    for (const Line& l : ConnectionLines(daemon_->Log())) {
      if (l.peer == peer) return l;
    }
    return std::nullopt;
  }
  std::optional<Line> WaitForLineOf(const std::string& peer, milliseconds timeout = kIoTimeout) const {
    std::optional<Line> line;
    WaitFor([&] { return (line = LineOf(peer)).has_value(); }, timeout);
    return line;
  }
  // One connection that ends by the client's EOF after a round trip of `text`.
  std::string EndByEof(std::string_view text, const std::string& where = {}) {
    Client c = Client::Connect(where.empty() ? address() : where);
    EXPECT_TRUE(c.connected()) << c.error();
    std::string peer = OwnAddress(c);
    EXPECT_EQ(c.RoundTrip(text), Rot13(text));
    c.ShutdownWrite();
    EXPECT_EQ(c.ReceiveToEof(), "");
    EXPECT_TRUE(c.eof());
    return peer;
  }
  std::string EndByReset(std::string_view text) {
    Client c = Client::Connect(address());
    EXPECT_TRUE(c.connected()) << c.error();
    std::string peer = OwnAddress(c);
    EXPECT_EQ(c.RoundTrip(text), Rot13(text));
    Reset(c);
    return peer;
  }
  // Keeps `held` busy with a round trip every 100 ms from SIGTERM until the
  // worker cuts it at shutdown_timeout, so that idle_timeout (shorter here)
  // cannot close it first on a slow machine; then waits for the exit.
  void StopHolding(Client& held) {
    daemon_->Signal(SIGTERM);
    for (auto until = Clock::now() + 10s; Clock::now() < until;) {
      if (held.RoundTrip("held", 2s) != Rot13("held")) break;
      std::this_thread::sleep_for(100ms);
    }
    ASSERT_TRUE(daemon_->WaitExit());
  }
  // Idle until the daemon closes it (the line is written before the close).
  std::string EndByIdleTimeout(std::string_view text) {
    Client c = Client::Connect(address());
    EXPECT_TRUE(c.connected()) << c.error();
    std::string peer = OwnAddress(c);
    EXPECT_EQ(c.RoundTrip(text), Rot13(text));
    EXPECT_EQ(c.ReceiveToEof(10s), "");
    EXPECT_TRUE(c.eof()) << "the idle connection was not closed";
    return peer;
  }
};

TEST_F(ConnectionLogTest, AllLogsEveryWayAConnectionEnds) {
  const std::string socket_path = dir_.File("rot13d.sock");
  daemon_ = std::make_unique<Daemon>(
      dir_, dir_.Write("rot13d.toml", "listen = [\"" + address() + "\", \"unix:" + socket_path +
                                          "\"]\nlog_target = \"stderr\"\nuser = \"root\"\nworkers = 1\n"
                                          "connection_log = \"all\"\nidle_timeout = 1.5\nshutdown_timeout = 1\n"));
  ASSERT_TRUE(daemon_->WaitReady()) << daemon_->Log();
  ASSERT_TRUE(daemon_->WaitForWorkerCount(1));
  const pid_t worker = daemon_->Workers().at(0);

  std::string eof_peer = EndByEof("Hello");
  std::optional<Line> eof = LineOf(eof_peer);  // written before the daemon's close
  ASSERT_TRUE(eof) << daemon_->Log();
  EXPECT_EQ(eof->reason, "client_eof");
  EXPECT_EQ(eof->level, "info");
  EXPECT_EQ(eof->local, address());
  EXPECT_EQ(eof->pid, worker);
  EXPECT_EQ(eof->in, 5u);
  EXPECT_EQ(eof->out, 5u);
  EXPECT_LT(eof->seconds, 5.0);

  std::string reset_peer = EndByReset("abc");
  std::optional<Line> reset = WaitForLineOf(reset_peer);
  ASSERT_TRUE(reset) << daemon_->Log();
  EXPECT_EQ(reset->reason, "reset");
  EXPECT_EQ(reset->level, "notice");
  EXPECT_EQ(reset->local, address());
  EXPECT_EQ(reset->in, 3u);
  EXPECT_EQ(reset->out, 3u);

  // A reset while the daemon still owes bytes: a client that sends without
  // reading; the bytes out are those sent, fewer than those read by at most
  // what one read holds (buffer_size).
  {
    // Made before connecting, and small: the idle clock runs from the accept,
    // and building 64 MiB took 1.4-1.8 s on a busy 2-core VM (fresh pages
    // fault in slowly there), longer than idle_timeout, so the daemon rightly
    // closed the connection as idle before its first byte arrived.
    const std::string block(256 << 10, 'a');
    constexpr size_t kFlood = 64u << 20;
    Client c = Client::Connect(address());
    ASSERT_TRUE(c.connected()) << c.error();
    std::string peer = OwnAddress(c);
    // A small receive buffer here, so that the daemon's sends stall early.
    int small = 16 << 10;
    setsockopt(c.fd(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    // Sends for 1 s (well within idle_timeout), or until 64 MiB went in.
    const auto until = Clock::now() + 1s;
    size_t sent = 0;
    while (sent < kFlood &&
           c.SendAll(block, std::max(0ms, std::chrono::duration_cast<milliseconds>(until - Clock::now())))) {
      sent += block.size();
    }
    EXPECT_LT(sent, kFlood) << "64 MiB went in while nothing was read";
    Reset(c);
    std::optional<Line> owed = WaitForLineOf(peer);
    ASSERT_TRUE(owed) << daemon_->Log();
    EXPECT_EQ(owed->reason, "reset");
    EXPECT_GT(owed->out, 0u);
    EXPECT_LT(owed->out, owed->in);
    EXPECT_LE(owed->in - owed->out, 65536u);
  }

  std::string idle_peer = EndByIdleTimeout("x");
  std::optional<Line> idle = LineOf(idle_peer);
  ASSERT_TRUE(idle) << daemon_->Log();
  EXPECT_EQ(idle->reason, "idle_timeout");
  EXPECT_EQ(idle->level, "info");
  EXPECT_EQ(idle->in, 1u);
  EXPECT_EQ(idle->out, 1u);
  EXPECT_GE(idle->seconds, 1.4);
  EXPECT_LT(idle->seconds, 5.0);

  // A Unix client is unnamed: "unix"; the local end is the socket's path.
  EndByEof("over unix", "unix:" + socket_path);
  ASSERT_TRUE(WaitFor([&] { return daemon_->LogContains("connection from unix to unix:" + socket_path + " closed"); },
                      kIoTimeout))
      << daemon_->Log();

  // Held open through a stop: the worker cuts it just before shutdown_timeout.
  Client held = Client::Connect(address());
  ASSERT_TRUE(held.connected()) << held.error();
  std::string held_peer = OwnAddress(held);
  ASSERT_EQ(held.RoundTrip("held"), Rot13("held"));
  daemon_->Signal(SIGTERM);
  std::optional<int> status = daemon_->WaitExit();
  ASSERT_TRUE(status);
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << *status;
  std::optional<Line> cut = LineOf(held_peer);
  ASSERT_TRUE(cut) << daemon_->Log();
  EXPECT_EQ(cut->reason, "shutdown");
  EXPECT_EQ(cut->level, "info");
  EXPECT_EQ(cut->in, 4u);
  EXPECT_EQ(cut->out, 4u);
  EXPECT_TRUE(daemon_->LogContains("shutdown_timeout reached: closing 1 open connection")) << daemon_->Log();
  EXPECT_TRUE(daemon_->LogContains("worker " + std::to_string(worker) + " (slot 0, generation 1) exited with code 0"))
      << daemon_->Log();
  EXPECT_EQ(ConnectionLines(daemon_->Log()).size(), 6u) << daemon_->Log();
  EXPECT_FALSE(daemon_->LogContains("suppressed")) << daemon_->Log();
}

TEST_F(ConnectionLogTest, ErrorsLogsOnlyResets) {
  ASSERT_NO_FATAL_FAILURE(Start("workers = 1\nconnection_log = \"errors\"\nidle_timeout = 0.5\nshutdown_timeout = 2.5\n", 1));
  EndByEof("Hello");
  EndByIdleTimeout("x");
  std::string reset_peer = EndByReset("abc");
  std::optional<Line> reset = WaitForLineOf(reset_peer);
  ASSERT_TRUE(reset) << daemon_->Log();
  EXPECT_EQ(reset->reason, "reset");
  Client held = Client::Connect(address());
  ASSERT_EQ(held.RoundTrip("held"), Rot13("held"));
  ASSERT_NO_FATAL_FAILURE(StopHolding(held));
  EXPECT_TRUE(daemon_->LogContains("shutdown_timeout reached: closing 1 open connection")) << daemon_->Log();
  std::vector<Line> lines = ConnectionLines(daemon_->Log());
  ASSERT_EQ(lines.size(), 1u) << daemon_->Log();
  EXPECT_EQ(lines[0].peer, reset_peer);
}

TEST_F(ConnectionLogTest, OffByDefaultLogsNone) {
  ASSERT_NO_FATAL_FAILURE(Start("workers = 1\nidle_timeout = 0.5\nshutdown_timeout = 2.5\n", 1));
  EndByEof("Hello");
  EndByIdleTimeout("x");
  EndByReset("abc");
  // One worker takes its events in order: this round trip comes after the reset.
  EXPECT_EQ(FreshRoundTrip("after"), Rot13("after"));
  Client held = Client::Connect(address());
  ASSERT_EQ(held.RoundTrip("held"), Rot13("held"));
  ASSERT_NO_FATAL_FAILURE(StopHolding(held));
  EXPECT_TRUE(daemon_->LogContains("shutdown_timeout reached: closing 1 open connection")) << daemon_->Log();
  EXPECT_FALSE(daemon_->LogContains("connection from")) << daemon_->Log();
}

// Lines past the burst are counted, not written, and the count is told.
TEST_F(ConnectionLogTest, FloodIsRateLimitedWithASuppressedCount) {
  ASSERT_NO_FATAL_FAILURE(Start("workers = 1\nconnection_log = \"all\"\n", 1));
  constexpr int kConnections = 1500;
  auto started = Clock::now();
  for (int i = 0; i < kConnections; ++i) {
    Client c = Client::Connect(address());
    ASSERT_TRUE(c.connected()) << i << ": " << c.error();
  }  // each closes at once: a client EOF
  double flood_seconds = std::chrono::duration<double>(Clock::now() - started).count();

  static const std::regex kSummary(
      R"(rot13d\[\d+\] (\w+): connection log: (\d+) lines? suppressed over the last [0-9.]+ s \(at most 100 a second per worker after a burst of 500\))");
  uint64_t logged = 0, suppressed = 0;
  std::vector<std::string> summary_levels;
  // The summary comes 5 s after the first line it counts.
  bool all_told = WaitFor([&] {
    std::string log = daemon_->Log();
    logged = ConnectionLines(log).size();
    suppressed = 0;
    summary_levels.clear();
    for (std::sregex_iterator it(log.begin(), log.end(), kSummary), end; it != end; ++it) {
      summary_levels.push_back((*it)[1]);
      suppressed += std::stoull((*it)[2]);
    }
    return logged + suppressed == kConnections;
  }, 15s, 100ms);
  ASSERT_TRUE(all_told) << logged << " lines logged and " << suppressed << " suppressed of " << kConnections
                        << " connections";
  EXPECT_GE(logged, 500u);
  // The burst, the rate over the flood and the time to close its stragglers.
  EXPECT_LE(static_cast<double>(logged), 500 + 100 * (flood_seconds + 1)) << flood_seconds << " s";
  EXPECT_GT(suppressed, 0u);
  for (const std::string& level : summary_levels) EXPECT_EQ(level, "info") << "the level of the lines it counts";
}

}  // namespace
}  // namespace rot13d::blackbox
