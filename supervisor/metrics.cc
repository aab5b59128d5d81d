#include "supervisor/metrics.h"

#include <algorithm>
#include <cstdio>
#include <string_view>

namespace rot13d::supervisor {
namespace {

constexpr const char* kWorkerStates[] = {"booting", "accepting", "draining", "hung", "waiting"};

// Prometheus values: integers exactly, others in full precision.
std::string Value(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}
std::string Value(uint64_t v) { return std::to_string(v); }
std::string Seconds3(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.3f", v);
  return buf;
}

class Exposition {
 public:
  // One metric family: its HELP and TYPE lines.
  void Family(std::string_view name, std::string_view type, std::string_view help) {
    out_ += "# HELP rot13d_" + std::string(name) + " " + std::string(help) + "\n";
    out_ += "# TYPE rot13d_" + std::string(name) + " " + std::string(type) + "\n";
  }
  template <typename V>
  void Sample(std::string_view name, V value, std::string_view label = {}, std::string_view label_value = {}) {
    out_ += "rot13d_" + std::string(name);
    if (!label.empty()) out_ += "{" + std::string(label) + "=\"" + std::string(label_value) + "\"}";
    out_ += " " + Value(value) + "\n";
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

void RenderProcess(const Snapshot& s, Exposition& e) {
  e.Family("build_info", "gauge", "The version of rot13d running, as a label; always 1.");
  e.Sample("build_info", uint64_t{1}, "version", s.version);
  e.Family("start_time_seconds", "gauge", "When the supervisor started, in seconds since the epoch.");
  e.Sample("start_time_seconds", s.start_time_seconds);
  e.Family("generation", "gauge", "The generation of workers serving (a reload starts the next).");
  e.Sample("generation", s.serving_generation);
  e.Family("reloads_total", "counter", "Reloads asked for, by how they ended.");
  for (size_t i = 0; i < kReloadResults; ++i) {
    e.Sample("reloads_total", s.reloads[i], "result", ReloadResultName(static_cast<ReloadResult>(i)));
  }
  e.Family("worker_restarts_total", "counter", "Workers replaced after an unasked death, by cause.");
  for (size_t i = 0; i < kRestartReasons; ++i) {
    e.Sample("worker_restarts_total", s.restarts[i], "reason", RestartReasonName(static_cast<RestartReason>(i)));
  }
  e.Family("workers", "gauge", "Worker slots, by state (waiting: no process, being restarted).");
  for (const char* state : kWorkerStates) {
    uint64_t n = 0;
    for (const WorkerSnapshot& w : s.workers) n += w.state == state;
    e.Sample("workers", n, "state", state);
  }
}

void RenderConnections(const Snapshot& s, Exposition& e) {
  const CounterTotals& t = s.totals;
  e.Family("connections_accepted_total", "counter", "Connections accepted.");
  e.Sample("connections_accepted_total", t.connections_total);
  uint64_t active = 0;
  for (const WorkerSnapshot& w : s.workers) active += w.open_connections;
  e.Family("connections_active", "gauge", "Connections open now.");
  e.Sample("connections_active", active);
  e.Family("connections_closed_total", "counter", "Connections closed, by how they ended.");
  for (size_t i = 0; i < kCloseReasons; ++i) {
    e.Sample("connections_closed_total", t.closed[i], "reason", CloseReasonName(static_cast<CloseReason>(i)));
  }
  e.Family("bytes_received_total", "counter", "Bytes read from clients.");
  e.Sample("bytes_received_total", t.bytes_received);
  e.Family("bytes_sent_total", "counter", "Bytes written to clients.");
  e.Sample("bytes_sent_total", t.bytes_sent);
  e.Family("accept_errors_total", "counter", "accept(2) failures (descriptors or memory short, aborted handshakes).");
  e.Sample("accept_errors_total", t.accept_errors);
  e.Family("proxy_protocol_errors_total", "counter",
           "Connections on PROXY protocol listeners closed unanswered before a complete header, by why.");
  for (size_t i = 0; i < kProxyFailures; ++i) {
    e.Sample("proxy_protocol_errors_total", t.proxy_errors[i], "reason", ProxyFailureName(static_cast<ProxyFailure>(i)));
  }
  e.Family("connections_rejected_total", "counter", "Connections closed unanswered as soon as their client was known, by why.");
  e.Sample("connections_rejected_total", s.refused_per_address, "reason", "per_address_limit");
  e.Family("per_address_table_full_total", "counter",
           "Connections admitted without being counted against max_connections_per_address: no room in its table.");
  e.Sample("per_address_table_full_total", s.per_address_uncounted);
  e.Family("connection_duration_seconds", "histogram", "How long closed connections were open.");
  uint64_t cumulative = 0;
  for (size_t i = 0; i < kDurationBuckets; ++i) {
    cumulative += t.duration_buckets[i];
    std::string le = "+Inf";
    if (i < std::size(kDurationBounds)) {
      char bound[32];
      std::snprintf(bound, sizeof bound, "%g", kDurationBounds[i]);  // "0.1", not 0.10000000000000001
      le = bound;
    }
    e.Sample("connection_duration_seconds_bucket", cumulative, "le", le);
  }
  e.Sample("connection_duration_seconds_sum", static_cast<double>(t.duration_sum_us) / 1e6);
  e.Sample("connection_duration_seconds_count", cumulative);
}

}  // namespace

const char* RestartReasonName(RestartReason reason) {
  switch (reason) {
    case RestartReason::kCrash: return "crash";
    case RestartReason::kKilled: return "killed";
    case RestartReason::kExit: return "exit";
    case RestartReason::kHung: return "hung";
    case RestartReason::kBootFailure: return "boot_failure";
  }
  return "crash";
}

const char* ReloadResultName(ReloadResult result) {
  switch (result) {
    case ReloadResult::kOk: return "ok";
    case ReloadResult::kInvalid: return "invalid";
    case ReloadResult::kUnreadable: return "unreadable";
    case ReloadResult::kCannotListen: return "cannot_listen";
    case ReloadResult::kBootFailed: return "boot_failed";
    case ReloadResult::kUpgradeFailed: return "upgrade_failed";
  }
  return "ok";
}

Snapshot Activity::Snapshot(const std::string& version, pid_t pid) const {
  supervisor::Snapshot s;
  s.version = version;
  s.pid = pid;
  s.start_time_seconds = std::chrono::duration<double>(started_wall_.time_since_epoch()).count();
  s.uptime_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  std::copy(std::begin(reloads_), std::end(reloads_), s.reloads);
  std::copy(std::begin(restarts_), std::end(restarts_), s.restarts);
  return s;
}

Activity::Carried Activity::Carry() const {
  Carried c;
  std::copy(std::begin(reloads_), std::end(reloads_), c.reloads);
  std::copy(std::begin(restarts_), std::end(restarts_), c.restarts);
  c.started_wall_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(started_wall_.time_since_epoch()).count();
  c.started_steady_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(started_.time_since_epoch()).count();
  return c;
}

void Activity::Resume(const Carried& c) {
  std::copy(std::begin(c.reloads), std::end(c.reloads), reloads_);
  std::copy(std::begin(c.restarts), std::end(c.restarts), restarts_);
  started_wall_ = std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::nanoseconds(c.started_wall_ns)));
  started_ = std::chrono::steady_clock::time_point(std::chrono::nanoseconds(c.started_steady_ns));
}

std::string RenderMetrics(const Snapshot& s) {
  Exposition e;
  RenderProcess(s, e);
  RenderConnections(s, e);
  return e.Take();
}

std::string JsonString(std::string_view text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c >= 0x7f) {
      char escape[8];
      std::snprintf(escape, sizeof escape, "\\u%04x", c);
      out += escape;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

std::string RenderStatusJson(const Snapshot& s) {
  auto field = [](std::string_view name, const std::string& value) { return JsonString(name) + ":" + value; };
  std::string out = "{" + field("version", JsonString(s.version)) + "," + field("pid", std::to_string(s.pid)) + "," +
                    field("uptime_seconds", Seconds3(s.uptime_seconds)) + "," +
                    field("generation", std::to_string(s.serving_generation)) + "," +
                    field("canary_generation", s.canary_generation ? std::to_string(s.canary_generation) : "null") +
                    "," + field("stopping", s.stopping ? "true" : "false") + "," +
                    field("last_reload", JsonString(s.last_reload)) + "," +
                    field("connections_accepted", std::to_string(s.totals.connections_total)) + "," +
                    field("bytes_received", std::to_string(s.totals.bytes_received)) + "," +
                    field("bytes_sent", std::to_string(s.totals.bytes_sent)) + ",\"workers\":[";
  for (size_t i = 0; i < s.workers.size(); ++i) {
    const WorkerSnapshot& w = s.workers[i];
    out += std::string(i ? "," : "") + "{" + field("pid", std::to_string(w.pid)) + "," +
           field("slot", std::to_string(w.slot)) + "," + field("generation", std::to_string(w.generation)) + "," +
           field("state", JsonString(w.state)) + "," + field("open_connections", std::to_string(w.open_connections)) +
           "," + field("accepted", std::to_string(w.accepted)) + "," +
           field("bytes_received", std::to_string(w.bytes_received)) + "," +
           field("bytes_sent", std::to_string(w.bytes_sent)) + "," + field("restarts", std::to_string(w.restarts)) +
           "}";
  }
  return out + "]}\n";
}

}  // namespace rot13d::supervisor
