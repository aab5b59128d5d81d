#include "client/bench_report.h"

#include <cstdarg>
#include <iterator>
#include <cstdio>

#include "client/args.h"

namespace rot13d::client {
namespace {

constexpr double kMiB = 1024.0 * 1024.0;

__attribute__((format(printf, 1, 2))) std::string Printf(const char* format, ...) {
  char buf[512];
  va_list args;
  va_start(args, format);
  std::vsnprintf(buf, sizeof buf, format, args);
  va_end(args);
  return buf;
}

double Rate(double amount, double seconds) { return seconds > 0 ? amount / seconds : 0.0; }

double Micros(uint64_t ns) { return static_cast<double>(ns) / 1000.0; }

bool Timed(Mode mode) { return mode != Mode::kStream; }

const char* ExpectName(Expect expect) { return expect == Expect::kRot13 ? "rot13" : "echo"; }

std::string Plural(uint64_t n, const char* noun) {
  return std::to_string(n) + " " + noun + (n == 1 ? "" : "s");
}

}  // namespace

std::string JsonString(std::string_view text) {
  std::string out = "\"";
  for (char ch : text) {
    auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c >= 0x7f) {
          out += Printf("\\u%04x", c);  // bytes of messages are not always UTF-8: keep JSON valid
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

std::string FormatLatency(double nanoseconds, int width) {
  static constexpr const char* kUnits[] = {"us", "ms", "s"};
  double value = nanoseconds / 1000.0;
  size_t unit = 0;
  // Decided after rounding to two decimals: 999.996us is "1.00ms".
  while (value >= 999.995 && unit + 1 < std::size(kUnits)) {
    value /= 1000.0;
    ++unit;
  }
  return Printf("%*.2f%-2s", width - 2, value, kUnits[unit]);
}

std::string FormatHeader(const BenchConfig& config) {
  std::string what = ModeName(config.mode);
  if (config.duration.count() > 0) what = FormatDuration(config.duration) + " " + what;
  std::string out = "Running " + what + " test @ " + config.address.ToString() + "\n";
  out += "  " + Plural(config.threads, "thread") + " and " + Plural(config.connections, "connection");
  if (config.mode == Mode::kStream) {
    out += config.bytes > 0 ? ", " + FormatSize(config.bytes) + " each" : ", no byte limit";
  } else {
    out += ", " + std::to_string(config.size) + "-byte messages";
    if (config.requests > 0) {
      out += ", at most " + Plural(config.requests, config.mode == Mode::kConnect ? "cycle" : "request");
    }
  }
  if (config.idle > 0) out += ", " + std::to_string(config.idle) + " more held idle";
  out += std::string(", checked against ") + ExpectName(config.expect) + "\n";
  if (!config.sources.empty()) {
    // The first few; a long list would drown the header.
    constexpr size_t kNamed = 8;
    size_t n = config.sources.size();
    out += "  from " + std::to_string(n) + (n == 1 ? " source address:" : " source addresses:");
    for (size_t i = 0; i < config.sources.size() && i < kNamed; ++i) {
      out += (i == 0 ? " " : ", ") + config.sources[i].HostToString();
    }
    if (n > kNamed) out += " and " + std::to_string(n - kNamed) + " more";
    out += "\n";
  }
  return out;
}

std::string FormatSummary(const BenchConfig& config, const BenchResult& r, bool latency_distribution) {
  auto u = [](uint64_t v) { return static_cast<unsigned long long>(v); };
  std::string out = Printf("  time       %.3fs%s\n", r.seconds,
                           r.interrupted ? " (interrupted)" : r.out_of_time ? " (stopped by --max-time)" : "");
  if (config.mode == Mode::kStream) {
    if (config.bytes > 0) out += Printf("  done       %llu of %u connections\n", u(r.requests), config.connections);
  } else {
    out += Printf("  %-10s %llu (%.1f/s)\n", config.mode == Mode::kConnect ? "cycles" : "requests", u(r.requests),
                  Rate(static_cast<double>(r.requests), r.seconds));
    const Histogram& h = r.latency;
    if (h.count() == 0) {
      out += "  latency    none measured: nothing was answered\n";
    } else {
      // wrk's Avg and Stdev beside the percentiles, one cell each.
      constexpr int kCell = 9;
      out += Printf("  latency  %*s%*s%*s%*s%*s%*s%*s\n", kCell, "avg", kCell, "stdev", kCell, "p50", kCell, "p90",
                    kCell, "p99", kCell, "p99.9", kCell, "max");
      out += "           ";
      for (double ns : {h.mean(), h.stddev(), static_cast<double>(h.ValueAtQuantile(0.5)),
                        static_cast<double>(h.ValueAtQuantile(0.9)), static_cast<double>(h.ValueAtQuantile(0.99)),
                        static_cast<double>(h.ValueAtQuantile(0.999)), static_cast<double>(h.max())}) {
        out += FormatLatency(ns, kCell);
      }
      // A unit's padding leaves trailing blanks.
      while (out.back() == ' ') out.pop_back();
      out += "\n";
      if (latency_distribution) {
        out += "  Latency Distribution\n";
        for (int percent : {50, 75, 90, 99}) {
          out += Printf("%7d%%", percent) + FormatLatency(static_cast<double>(h.ValueAtQuantile(percent / 100.0)), 10);
          while (out.back() == ' ') out.pop_back();
          out += "\n";
        }
      }
    }
  }
  out += Printf("  sent       %s (%.1f MiB/s)\n", FormatSize(r.bytes_sent).c_str(),
                Rate(static_cast<double>(r.bytes_sent) / kMiB, r.seconds));
  out += Printf("  received   %s (%.1f MiB/s), every byte checked\n", FormatSize(r.bytes_received).c_str(),
                Rate(static_cast<double>(r.bytes_received) / kMiB, r.seconds));
  if (config.idle > 0) {
    out += Printf("  idle       %u of %u held open to the end", r.idle_open, config.idle);
    out += r.idle_dropped ? Printf(", %u dropped by the server\n", r.idle_dropped) : std::string("\n");
  }
  uint64_t failed = 0;
  for (uint64_t f : r.failures) failed += f;
  if (failed == 0) {
    out += "  failures   none\n";
  } else {
    out += Printf("  failures   %llu: refused %llu, reset %llu, timeout %llu, mismatch %llu, other %llu\n", u(failed),
                  u(r.Failures(FailureKind::kRefused)), u(r.Failures(FailureKind::kReset)),
                  u(r.Failures(FailureKind::kTimeout)), u(r.Failures(FailureKind::kMismatch)),
                  u(r.Failures(FailureKind::kOther)));
  }
  if (!r.first_error.empty() && r.errors() > 0) out += "             the first: " + r.first_error + "\n";
  if (r.mismatch) out += "  MISMATCH   " + r.mismatch->ToString() + "\n";
  int status = r.ExitStatus();
  out += status == 0 ? "  result     ok\n" : Printf("  result     FAILED (exit status %d)\n", status);
  return out;
}

namespace {

// The latency object of --json, in microseconds. Buckets are about 1% wide:
// more digits than tenths of a microsecond would be noise.
std::string LatencyJson(const Histogram& h) {
  auto micros = [](double v) { return Printf("%.1f", v); };
  return "{\"p50\":" + micros(Micros(h.ValueAtQuantile(0.5))) + ",\"p75\":" + micros(Micros(h.ValueAtQuantile(0.75))) +
         ",\"p90\":" + micros(Micros(h.ValueAtQuantile(0.9))) + ",\"p99\":" + micros(Micros(h.ValueAtQuantile(0.99))) +
         ",\"p999\":" + micros(Micros(h.ValueAtQuantile(0.999))) + ",\"max\":" + micros(Micros(h.max())) +
         ",\"mean\":" + micros(h.mean() / 1000.0) + ",\"stdev\":" + micros(h.stddev() / 1000.0) + "}";
}

// The latency histogram of --json: [highest nanosecond value of the bucket,
// count] for each bucket that holds a value, lowest first, so that runs can
// be merged and a percentile taken over all of their messages.
std::string BucketsJson(const Histogram& h) {
  std::string out = "[";
  h.ForEachBucket([&](uint64_t highest, uint64_t count) {
    if (out.size() > 1) out += ',';
    out += '[';
    out += std::to_string(highest);
    out += ',';
    out += std::to_string(count);
    out += ']';
  });
  return out + "]";
}

// The --source addresses, an array of strings.
std::string SourcesJson(const std::vector<SocketAddress>& sources) {
  std::string out = "[";
  for (const SocketAddress& source : sources) {
    if (out.size() > 1) out += ',';
    out += JsonString(source.HostToString());  // ("," + string trips GCC 12's -Wrestrict at -O3)
  }
  return out + "]";
}

}  // namespace

std::string FormatJson(const BenchConfig& config, const BenchResult& r, int exit_status) {
  const bool timed = Timed(config.mode);
  const double seconds = r.seconds;
  std::string out = "{";
  auto field = [&](const char* name, const std::string& value) {
    if (out.size() > 1) out += ",";
    out += JsonString(name) + ":" + value;
  };
  auto integer = [](uint64_t v) { return std::to_string(v); };
  auto number = [](double v) { return Printf("%.3f", v); };

  field("mode", JsonString(ModeName(config.mode)));
  field("address", JsonString(config.address.ToString()));
  field("sources", SourcesJson(config.sources));
  field("expect", JsonString(ExpectName(config.expect)));
  field("connections", integer(config.connections));
  field("threads", integer(config.threads));
  field("idle", integer(config.idle));
  field("bytes_per_connection", integer(config.mode == Mode::kStream ? config.bytes : 0));
  field("message_size", integer(timed ? config.size : 0));
  field("duration_s", number(static_cast<double>(config.duration.count()) / 1e9));
  field("seconds", Printf("%.6f", seconds));  // short runs: milliseconds matter for the rates
  field("complete", r.complete() ? "true" : "false");
  field("bytes", integer(r.bytes_received));
  field("bytes_sent", integer(r.bytes_sent));
  field("mib_per_s", number(Rate(static_cast<double>(r.bytes_received) / kMiB, seconds)));
  field("sent_mib_per_s", number(Rate(static_cast<double>(r.bytes_sent) / kMiB, seconds)));
  field("requests", integer(r.requests));
  field("requests_per_s", number(Rate(static_cast<double>(r.requests), seconds)));
  const bool cycles = config.mode == Mode::kConnect;
  field("cycles", integer(cycles ? r.requests : 0));
  field("cycles_per_s", number(cycles ? Rate(static_cast<double>(r.requests), seconds) : 0.0));
  field("latency_us", LatencyJson(r.latency));
  field("latency_buckets_ns", BucketsJson(r.latency));
  field("failures", "{\"refused\":" + integer(r.Failures(FailureKind::kRefused)) +
                        ",\"reset\":" + integer(r.Failures(FailureKind::kReset)) +
                        ",\"timeout\":" + integer(r.Failures(FailureKind::kTimeout)) +
                        ",\"mismatch\":" + integer(r.Failures(FailureKind::kMismatch)) +
                        ",\"other\":" + integer(r.Failures(FailureKind::kOther)) + "}");
  field("errors", integer(r.errors()));
  field("idle_open", integer(r.idle_open));
  field("idle_dropped", integer(r.idle_dropped));
  if (r.mismatch) {
    const MismatchReport& m = *r.mismatch;
    field("mismatch", "{\"connection\":" + integer(m.connection) + ",\"request\":" + integer(m.request) +
                          ",\"offset\":" + integer(m.offset) + ",\"expected\":" + std::to_string(m.expected) +
                          ",\"got\":" + std::to_string(m.got) + "}");
  } else {
    field("mismatch", "null");
  }
  field("first_error", r.first_error.empty() ? "null" : JsonString(r.first_error));
  field("exit_status", std::to_string(exit_status));
  return out + "}\n";
}

}  // namespace rot13d::client
