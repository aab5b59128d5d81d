#include "daemon/connection_log.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdio>
#include <vector>

#include "common/address.h"

namespace rot13d::daemon {

bool ConnectionLogWants(ConnectionLog mode, CloseReason reason) {
  switch (mode) {
    case ConnectionLog::kOff: return false;
    case ConnectionLog::kErrors: return reason == CloseReason::kReset || reason == CloseReason::kError;
    case ConnectionLog::kAll: return true;
  }
  return false;
}

LogLevel ConnectionLogLevel(CloseReason reason) {
  switch (reason) {
    case CloseReason::kReset: return LogLevel::kNotice;
    case CloseReason::kError: return LogLevel::kWarning;
    case CloseReason::kClientEof:
    case CloseReason::kIdleTimeout:
    case CloseReason::kShutdown: return LogLevel::kInfo;
  }
  return LogLevel::kWarning;
}

namespace {

// Seconds to the microsecond: "0.001234".
std::string Seconds(uint64_t micros) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%llu.%06llu", static_cast<unsigned long long>(micros / 1000000),
                static_cast<unsigned long long>(micros % 1000000));
  return buf;
}

std::string Describe(const sockaddr_storage& ss, socklen_t len) {
  if (ss.ss_family == AF_UNIX && len <= offsetof(sockaddr_un, sun_path)) return "unix";  // unnamed
  return DescribeSockaddr(reinterpret_cast<const sockaddr*>(&ss), len);
}

}  // namespace

std::string ConnectionLogMessage(const ClosedConnection& c) {
  std::string out = "connection from " + c.peer + " to " + c.local + " closed: " + CloseReasonName(c.reason) +
                    " after " + Seconds(c.duration_us) + " s, " + Count(c.bytes_in, "byte") + " in, " +
                    Count(c.bytes_out, "byte") + " out";
  if (!c.via.empty()) {
    out += " (via " + c.via;
    if (!c.unique_id.empty()) out += ", unique id \"" + c.unique_id + "\"";
    out += ")";
  }
  if (!c.proxy_error.empty()) out += "; PROXY header " + c.proxy_error;
  if (!c.refused.empty()) out += "; refused: " + c.refused;
  return out;
}

std::string EscapedUniqueId(std::string_view id) {
  std::string out;
  for (unsigned char ch : id) {
    if (ch >= 0x20 && ch < 0x7f && ch != '\\' && ch != '"') {
      out += static_cast<char>(ch);
    } else {
      char escape[8];
      std::snprintf(escape, sizeof escape, "\\x%02x", ch);
      out += escape;
    }
  }
  return out;
}

SocketEnds EndsOf(BorrowedFd fd) {
  SocketEnds ends{"unknown", "unknown"};
  sockaddr_storage local{};
  socklen_t local_len = sizeof local;
  if (getsockname(fd.get(), reinterpret_cast<sockaddr*>(&local), &local_len) != 0) return ends;
  ends.local = Describe(local, local_len);
  sockaddr_storage peer{};
  socklen_t peer_len = sizeof peer;
  int got = -1;
  if (local.ss_family == AF_INET || local.ss_family == AF_INET6) {
    // SO_PEERNAME wants a buffer no larger than the address (EINVAL otherwise).
    peer_len = local.ss_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
    got = getsockopt(fd.get(), SOL_SOCKET, SO_PEERNAME, &peer, &peer_len);
  } else {
    got = getpeername(fd.get(), reinterpret_cast<sockaddr*>(&peer), &peer_len);
  }
  if (got == 0) ends.peer = Describe(peer, peer_len);
  return ends;
}

bool LineLimit::Admit(LogLevel level, Clock::time_point now) {
  if (refilled_ == Clock::time_point{}) refilled_ = now;
  double elapsed = std::chrono::duration<double>(now - refilled_).count();
  tokens_ = std::min<double>(settings_.burst, tokens_ + elapsed * settings_.per_second);
  refilled_ = now;
  if (tokens_ >= 1) {
    tokens_ -= 1;
    return true;
  }
  if (pending_.suppressed++ == 0) first_refused_ = now;
  if (static_cast<int>(level) < static_cast<int>(pending_.level)) pending_.level = level;
  return false;
}

std::optional<LineLimit::Summary> LineLimit::TakeSummary(Clock::time_point now, bool flush) {
  if (pending_.suppressed == 0 || (!flush && now - first_refused_ < settings_.summary_interval)) return std::nullopt;
  Summary s = pending_;
  s.over = now - first_refused_;
  pending_ = Summary{};
  return s;
}

std::string SuppressedMessage(const LineLimit::Summary& s, const LineLimit::Settings& settings) {
  char over[32];
  std::snprintf(over, sizeof over, "%.1f", std::chrono::duration<double>(s.over).count());
  return "connection log: " + Count(s.suppressed, "line") + " suppressed over the last " + over +
         " s (at most " + std::to_string(settings.per_second) + " a second per worker after a burst of " +
         std::to_string(settings.burst) + ")";
}

ConnectionLogger::ConnectionLogger(ConnectionLog mode, LineLimit::Settings limit)
    : mode_(mode), limit_(limit), worker_pid_(std::to_string(getpid())) {}

void ConnectionLogger::Closed(BorrowedFd fd, CloseReason reason, uint64_t duration_us, uint64_t bytes_in,
                              uint64_t bytes_out, Clock::time_point now, const ProxyContext& proxy,
                              const char* refused) {
  LogLevel level = ConnectionLogLevel(reason);
  if (!limit_.Admit(level, now)) return;  // counted; no address looked up
  SocketEnds ends = EndsOf(fd);
  ClosedConnection c{std::move(ends.peer), std::move(ends.local), reason, duration_us, bytes_in, bytes_out};
  if (const ProxyHeader* h = proxy.proxied) {
    // The header's ends are the connection's as the client saw it; the balancer is the way it came.
    c.via = std::move(c.peer);
    c.peer = DescribeSockaddr(reinterpret_cast<const sockaddr*>(&h->source), h->source_len);
    c.local = DescribeSockaddr(reinterpret_cast<const sockaddr*>(&h->destination), h->destination_len);
    c.unique_id = EscapedUniqueId(h->unique_id());
  }
  if (proxy.note.failure) c.proxy_error = std::string(proxy.note.failure) + ": " + proxy.note.detail;
  if (refused) c.refused = refused;
  std::vector<LogField> fields{
      {"PEER", c.peer},
      {"LOCAL", c.local},
      {"CLOSE_REASON", CloseReasonName(reason)},
      {"DURATION_USEC", std::to_string(duration_us)},
      {"BYTES_IN", std::to_string(bytes_in)},
      {"BYTES_OUT", std::to_string(bytes_out)},
      {"WORKER_PID", worker_pid_},
  };
  if (!c.via.empty()) fields.push_back({"PROXY_VIA", c.via});
  if (!c.unique_id.empty()) fields.push_back({"UNIQUE_ID", c.unique_id});
  if (!c.proxy_error.empty()) fields.push_back({"PROXY_ERROR", c.proxy_error});
  if (!c.refused.empty()) fields.push_back({"REFUSED", c.refused});
  Log(level, ConnectionLogMessage(c), fields);
}

void ConnectionLogger::Summarize(Clock::time_point now, bool flush) {
  std::optional<LineLimit::Summary> s = limit_.TakeSummary(now, flush);
  if (!s) return;
  Log(s->level, SuppressedMessage(*s, limit_.settings()),
      {{"SUPPRESSED", std::to_string(s->suppressed)}, {"WORKER_PID", worker_pid_}});
}

}  // namespace rot13d::daemon
