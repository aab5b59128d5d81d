// The connection log: a line per closed connection (connection_log), rate-limited per worker.
//
// Which connections: "all", or with "errors" those that ended by a reset or an
// error only. An idle timeout or a cut at shutdown is rot13d applying its own
// configured policy, and a client EOF is the normal end: none is an error.
//
// Priorities: info for those three orderly ends, notice for a reset (the
// client's doing, common and harmless), warning for an error. log_level
// applies as to any line: below it nothing is formatted, limited or counted.
//
// A worker logs a burst of lines at once, then a steady rate; what it refuses
// beyond that is counted and told in one summary line per interval, so a
// flood of connections can neither make logging the bottleneck nor flood the
// journal.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "common/config.h"
#include "common/log.h"
#include "common/proxy_protocol.h"
#include "common/stats.h"
#include "common/unique_fd.h"

namespace rot13d::daemon {

// What a closed connection's line tells.
struct ClosedConnection {
  std::string peer;   // "203.0.113.7:41234", "[2001:db8::7]:41234", "unix:/path", or "unix" (unnamed)
  std::string local;  // the address the client connected to, in the same forms
  CloseReason reason = CloseReason::kError;
  uint64_t duration_us = 0;
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  // On a PROXY listener: the balancer's address when peer and local came
  // from the header, the header's UNIQUE_ID (escaped), and why a header
  // failed ("timeout: no complete header within proxy_header_timeout").
  std::string via{};
  std::string unique_id{};
  std::string proxy_error{};
  // Why it was refused at once ("over max_connections_per_address"), if it was.
  std::string refused{};
};

// Why a connection on a PROXY listener was closed before its header was complete.
struct ProxyNote {
  const char* failure = nullptr;  // ProxyFailureName; null when none
  const char* detail = nullptr;
};

// What the PROXY protocol adds to a connection's line.
struct ProxyContext {
  const ProxyHeader* proxied = nullptr;  // the header that named the client
  ProxyNote note;
};

// A UNIQUE_ID as text: printable ASCII as it is, other bytes (and \ and ")
// as \xHH.
std::string EscapedUniqueId(std::string_view id);

// Whether `mode` logs a connection that ended for `reason`.
bool ConnectionLogWants(ConnectionLog mode, CloseReason reason);
// The priority of the line of a connection that ended for `reason`.
LogLevel ConnectionLogLevel(CloseReason reason);
// "connection from 127.0.0.1:41234 to 127.0.0.1:1067 closed: client_eof after
// 0.001234 s, 5 bytes in, 5 bytes out", then " (via 127.0.0.1:50312, unique
// id \"abc\")" for a proxied one and "; PROXY header timeout: ..." for a failed
// header; "; refused: over max_connections_per_address" for one refused at once.
std::string ConnectionLogMessage(const ClosedConnection& c);

struct SocketEnds {
  std::string peer;
  std::string local;
};
// The two ends of a connected socket, as the log shows them. The peer comes
// from SO_PEERNAME, which, unlike getpeername(2), still answers once a reset
// has closed the socket (net/ipv4/af_inet.c: inet_getname, peer == 2).
SocketEnds EndsOf(BorrowedFd fd);

// A token bucket of log lines, and a count of those it refused.
class LineLimit {
 public:
  using Clock = std::chrono::steady_clock;

  struct Settings {
    uint32_t burst;       // lines at once, from full
    uint32_t per_second;  // lines a second after the burst
    Clock::duration summary_interval;
  };
  // What was refused since the last summary.
  struct Summary {
    uint64_t suppressed = 0;
    LogLevel level = LogLevel::kDebug;  // the most important line refused
    Clock::duration over{};             // since the first of them
  };

  explicit LineLimit(Settings settings) : settings_(settings), tokens_(settings.burst) {}

  // True: log this line now. False: it was counted for the next summary.
  bool Admit(LogLevel level, Clock::time_point now);
  // The summary, once `summary_interval` has passed since the first line it
  // counts (at once with `flush`); nullopt when nothing is due.
  std::optional<Summary> TakeSummary(Clock::time_point now, bool flush = false);
  const Settings& settings() const { return settings_; }

 private:
  Settings settings_;
  double tokens_;
  Clock::time_point refilled_{};
  Summary pending_;
  Clock::time_point first_refused_{};
};

// "connection log: 312 lines suppressed over the last 5 s (at most 100 a
// second per worker after a burst of 500)"
std::string SuppressedMessage(const LineLimit::Summary& s, const LineLimit::Settings& settings);

// A worker's connection log: the setting, the limit and the summaries.
class ConnectionLogger {
 public:
  using Clock = LineLimit::Clock;
  // The limit of each worker: 500 lines, then 100 a second; a summary every 5 s at most.
  static constexpr LineLimit::Settings kLimit{500, 100, std::chrono::seconds(5)};

  explicit ConnectionLogger(ConnectionLog mode, LineLimit::Settings limit = kLimit);

  // Whether a connection that ended for `reason` gets a line (before any cost).
  bool Wants(CloseReason reason) const {
    return mode_ != ConnectionLog::kOff && ConnectionLogWants(mode_, reason) && LogEnabled(ConnectionLogLevel(reason));
  }
  // Logs (or counts) the connection on `fd`, which is still open.
  void Closed(BorrowedFd fd, CloseReason reason, uint64_t duration_us, uint64_t bytes_in, uint64_t bytes_out,
              Clock::time_point now, const ProxyContext& proxy = {}, const char* refused = nullptr);
  // Every loop turn: the summary line when one is due.
  void Tick(Clock::time_point now) {
    if (mode_ != ConnectionLog::kOff) Summarize(now, false);
  }
  // At the worker's exit: the summary of whatever is left.
  void Flush(Clock::time_point now) {
    if (mode_ != ConnectionLog::kOff) Summarize(now, true);
  }

 private:
  void Summarize(Clock::time_point now, bool flush);

  ConnectionLog mode_;
  LineLimit limit_;
  std::string worker_pid_;
};

}  // namespace rot13d::daemon
