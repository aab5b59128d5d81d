#include "supervisor/handover.h"

#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <chrono>

namespace rot13d::supervisor {
namespace {

// Bytes outside printable ASCII, spaces and '%' as %XX: one token per string.
std::string Encode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (c > ' ' && c < 0x7f && c != '%') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out.empty() ? "%" : out;  // "%" alone: the empty string
}

std::optional<std::string> Decode(std::string_view s) {
  if (s == "%") return std::string();
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    unsigned v = 0;
    if (i + 2 >= s.size()) return std::nullopt;
    auto [end, ec] = std::from_chars(s.data() + i + 1, s.data() + i + 3, v, 16);
    if (ec != std::errc() || end != s.data() + i + 3) return std::nullopt;
    out += static_cast<char>(v);
    i += 2;
  }
  return out;
}

int64_t Ns(TimePoint t) { return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count(); }
TimePoint FromNs(int64_t ns) {
  return TimePoint(std::chrono::duration_cast<Clock::duration>(std::chrono::nanoseconds(ns)));
}

// One record being written: "key v1 v2 ...\n".
class Line {
 public:
  Line(std::string& out, std::string_view key) : out_(out) { out_ += key; }
  ~Line() { out_ += '\n'; }
  template <typename T>
  Line& operator<<(const T& v) {
    out_ += ' ';
    if constexpr (std::is_same_v<T, std::string> || std::is_convertible_v<T, std::string_view>) {
      out_ += Encode(v);
    } else if constexpr (std::is_same_v<T, bool>) {
      out_ += v ? '1' : '0';
    } else {
      out_ += std::to_string(v);
    }
    return *this;
  }

 private:
  std::string& out_;
};

void WriteCounters(std::string& out, const CounterTotals& t) {
  Line l(out, "retired");
  l << t.connections_total << t.bytes_received << t.bytes_sent << t.accept_errors << t.duration_sum_us
    << kCloseReasons;
  for (uint64_t v : t.closed) l << v;
  l << kDurationBuckets;
  for (uint64_t v : t.duration_buckets) l << v;
}

// One record being read: its values in order, each parsed or the record is bad.
class Fields {
 public:
  explicit Fields(std::string_view rest) : rest_(rest) {}
  std::string_view Next() {
    size_t sp = rest_.find(' ');
    std::string_view tok = rest_.substr(0, sp);
    rest_ = sp == std::string_view::npos ? std::string_view() : rest_.substr(sp + 1);
    if (tok.empty()) ok_ = false;
    return tok;
  }
  template <typename T>
  T Number() {
    std::string_view tok = Next();
    T v{};
    auto [end, ec] = std::from_chars(tok.data(), tok.data() + tok.size(), v);
    if (ec != std::errc() || end != tok.data() + tok.size()) ok_ = false;
    return v;
  }
  bool Flag() { return Number<int>() != 0; }
  std::string Text() {
    auto s = Decode(Next());
    if (!s) ok_ = false;
    return s.value_or("");
  }
  // A counted array: the values this image knows, the rest skipped.
  template <size_t N>
  void Array(uint64_t (&a)[N]) {
    size_t n = Number<size_t>();
    for (size_t i = 0; i < n && ok_; ++i) {
      uint64_t v = Number<uint64_t>();
      if (i < N) a[i] = v;
    }
  }
  bool ok() const { return ok_; }

 private:
  std::string_view rest_;
  bool ok_ = true;
};

}  // namespace

Executable Executable::OfThisProcess() {
  Executable e;
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n > 0) {
    e.path.assign(buf, static_cast<size_t>(n));
    constexpr std::string_view kDeleted = " (deleted)";
    if (e.path.ends_with(kDeleted)) e.path.resize(e.path.size() - kDeleted.size());
  }
  struct stat st {};
  if (stat("/proc/self/exe", &st) == 0) {
    e.dev = st.st_dev;
    e.ino = st.st_ino;
  }
  return e;
}

bool Executable::Replaced() const {
  struct stat st {};
  if (path.empty() || stat(path.c_str(), &st) != 0) return false;
  return st.st_dev != dev || st.st_ino != ino;
}

std::string SerializeHandover(const Handover& h) {
  std::string out = "rot13d-handover " + std::to_string(h.format) + "\n";
  Line(out, "from") << h.from_version;
  Line(out, "stats") << h.stats_fd << h.stats_slots << h.stats_slot_size << h.stats_layout;
  if (h.addresses_fd >= 0) {
    Line(out, "addresses") << h.addresses_fd << h.addresses_entries << h.addresses_owners << h.addresses_layout;
  }
  Line(out, "ready") << h.ready_fd;
  Line(out, "nudge") << h.nudge_fd;
  Line(out, "activated") << h.activated;
  for (const HandoverListener& l : h.listeners) Line(out, "listener") << l.fd << l.name << l.owned_path;
  Line(out, "generation") << h.serving_id << h.next_id << h.serving_size << h.serving_halted << h.serving_failure;
  for (const WorkerRecord& w : h.workers) {
    Line(out, "worker") << w.slot << w.generation << w.pid << static_cast<int>(w.state) << w.booted
                        << w.stopped_accepting << Ns(w.started) << w.failures << w.boot_failures << Ns(w.restart_at)
                        << Ns(w.kill_at) << w.kill_sent << w.stats_index << Ns(w.heartbeat)
                        << static_cast<int64_t>(w.heartbeat_timeout.count()) << w.hung;
  }
  WriteCounters(out, h.retired);
  {
    Line l(out, "activity");
    l << h.activity.started_wall_ns << h.activity.started_steady_ns << kReloadResults;
    for (uint64_t v : h.activity.reloads) l << v;
    l << kRestartReasons;
    for (uint64_t v : h.activity.restarts) l << v;
  }
  Line(out, "last_reload") << h.last_reload;
  if (h.identity) Line(out, "identity") << h.identity->uid << h.identity->gid << h.identity->user << h.identity->group;
  for (int fd : h.requesters) Line(out, "requester") << fd;
  out += "config " + std::to_string(h.config.size()) + "\n" + h.config;
  return out;
}

Result<Handover> ParseHandover(std::string_view text) {
  Handover h;
  size_t nl = text.find('\n');
  std::string_view first = text.substr(0, nl);
  if (!first.starts_with("rot13d-handover ")) return Err() << "not a rot13d handover";
  Fields head(first.substr(16));
  h.format = head.Number<uint32_t>();
  if (!head.ok()) return Err() << "not a rot13d handover: '" << std::string(first) << "'";
  if (h.format != kHandoverFormat) {
    return Err() << "handover format " << h.format << " (this binary reads format " << kHandoverFormat << ")";
  }
  bool have_config = false;
  int line_no = 1;
  while (nl != std::string_view::npos && nl + 1 < text.size()) {
    text.remove_prefix(nl + 1);
    ++line_no;
    nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    size_t sp = line.find(' ');
    std::string_view key = line.substr(0, sp);
    Fields f(sp == std::string_view::npos ? std::string_view() : line.substr(sp + 1));
    if (key == "from") {
      h.from_version = f.Text();
    } else if (key == "stats") {
      h.stats_fd = f.Number<int>();
      h.stats_slots = f.Number<size_t>();
      h.stats_slot_size = f.Number<size_t>();
      h.stats_layout = f.Number<uint32_t>();
    } else if (key == "addresses") {
      h.addresses_fd = f.Number<int>();
      h.addresses_entries = f.Number<size_t>();
      h.addresses_owners = f.Number<size_t>();
      h.addresses_layout = f.Number<uint32_t>();
    } else if (key == "ready") {
      h.ready_fd = f.Number<int>();
    } else if (key == "nudge") {
      h.nudge_fd = f.Number<int>();
    } else if (key == "activated") {
      h.activated = f.Flag();
    } else if (key == "listener") {
      HandoverListener l;
      l.fd = f.Number<int>();
      l.name = f.Text();
      l.owned_path = f.Text();
      h.listeners.push_back(std::move(l));
    } else if (key == "generation") {
      h.serving_id = f.Number<uint64_t>();
      h.next_id = f.Number<uint64_t>();
      h.serving_size = f.Number<int>();
      h.serving_halted = f.Flag();
      h.serving_failure = f.Text();
    } else if (key == "worker") {
      WorkerRecord w;
      w.slot = f.Number<int>();
      w.generation = f.Number<uint64_t>();
      w.pid = f.Number<pid_t>();
      int state = f.Number<int>();
      if (state < 0 || state > static_cast<int>(WorkerState::kFailed)) return Err() << "line " << line_no << ": bad state";
      w.state = static_cast<WorkerState>(state);
      w.booted = f.Flag();
      w.stopped_accepting = f.Flag();
      w.started = FromNs(f.Number<int64_t>());
      w.failures = f.Number<int>();
      w.boot_failures = f.Number<int>();
      w.restart_at = FromNs(f.Number<int64_t>());
      w.kill_at = FromNs(f.Number<int64_t>());
      w.kill_sent = f.Flag();
      w.stats_index = f.Number<int>();
      w.heartbeat = FromNs(f.Number<int64_t>());
      w.heartbeat_timeout = milliseconds(f.Number<int64_t>());
      w.hung = f.Flag();
      h.workers.push_back(w);
    } else if (key == "retired") {
      CounterTotals& t = h.retired;
      t.connections_total = f.Number<uint64_t>();
      t.bytes_received = f.Number<uint64_t>();
      t.bytes_sent = f.Number<uint64_t>();
      t.accept_errors = f.Number<uint64_t>();
      t.duration_sum_us = f.Number<uint64_t>();
      f.Array(t.closed);
      f.Array(t.duration_buckets);
    } else if (key == "activity") {
      h.activity.started_wall_ns = f.Number<int64_t>();
      h.activity.started_steady_ns = f.Number<int64_t>();
      f.Array(h.activity.reloads);
      f.Array(h.activity.restarts);
    } else if (key == "last_reload") {
      h.last_reload = f.Text();
    } else if (key == "identity") {
      Identity id;
      id.uid = f.Number<uid_t>();
      id.gid = f.Number<gid_t>();
      id.user = f.Text();
      id.group = f.Text();
      h.identity = id;
    } else if (key == "requester") {
      h.requesters.push_back(f.Number<int>());
    } else if (key == "config") {
      size_t n = f.Number<size_t>();
      if (!f.ok()) break;
      std::string_view rest = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
      if (rest.size() != n) return Err() << "line " << line_no << ": the configuration is " << rest.size()
                                         << " bytes, not " << n << " (the handover was cut short?)";
      h.config = std::string(rest);
      have_config = true;
      break;
    }
    // Any other key is a newer image's addition: ignored.
    if (!f.ok()) return Err() << "line " << line_no << ": malformed '" << std::string(key) << "' record";
  }
  if (!have_config) return Err() << "the handover has no configuration (cut short?)";
  if (h.stats_fd < 0 || h.ready_fd < 0 || h.nudge_fd < 0) return Err() << "the handover lacks a shared descriptor";
  return h;
}

Status CheckHandover(const Handover& h) {
  if (h.stats_layout != kStatsLayout || h.stats_slot_size != sizeof(WorkerStats)) {
    return Err() << "the workers' counter table has layout " << h.stats_layout << " with " << h.stats_slot_size
                 << "-byte slots; this binary has layout " << kStatsLayout << " with " << sizeof(WorkerStats)
                 << "-byte slots";
  }
  if (h.addresses_fd >= 0 && h.addresses_layout != kAddressTableLayout) {
    return Err() << "the per-address counts have layout " << h.addresses_layout << "; this binary has layout "
                 << kAddressTableLayout;
  }
  if (h.stats_slots == 0 || h.stats_slots > 1000000) return Err() << "the counter table has " << h.stats_slots << " slots";
  for (const WorkerRecord& w : h.workers) {
    if (w.stats_index >= static_cast<int>(h.stats_slots)) return Err() << "a worker's counter slot is out of range";
  }
  return OkStatus();
}

}  // namespace rot13d::supervisor
