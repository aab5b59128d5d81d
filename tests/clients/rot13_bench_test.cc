// rot13-bench against rot13d (each mode succeeds, its JSON parses and adds up) and
// against wrong servers (a mismatch is found and reported, and fails the run).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <map>
#include <mutex>
#include <sstream>

#include "tests/clients/client_fixture.h"
#include "common/json.h"
#include "tests/clients/test_server.h"

namespace rot13d::clienttest {
namespace {

using BenchTest = ClientTest;

ToolResult Bench(std::vector<std::string> args, milliseconds timeout = 30s) {
  args.insert(args.begin(), BenchPath());
  return RunTool(args, {}, {}, timeout);
}

// Runs with --json and parses the one object it prints; a fatal failure when it is not one.
Json BenchJson(std::vector<std::string> args, int expected_exit, ToolResult* raw = nullptr) {
  args.push_back("--json");
  ToolResult r = Bench(args);
  if (raw) *raw = r;
  EXPECT_EQ(r.exit_code, expected_exit) << r.err << r.out;
  auto json = ParseJson(r.out);
  EXPECT_TRUE(json && json->type == Json::Type::kObject) << "not one JSON object: " << r.out;
  return json ? *json : Json{};
}

double Num(const Json& j, const std::string& key) {
  EXPECT_EQ(j[key].type, Json::Type::kNumber) << key << " is not a number";
  return j[key].number;
}

// What every successful run must show.
void ExpectClean(const Json& j) {
  EXPECT_EQ(Num(j, "errors"), 0);
  for (const char* kind : {"refused", "reset", "timeout", "mismatch", "other"}) {
    EXPECT_EQ(Num(j["failures"], kind), 0) << kind;
  }
  EXPECT_TRUE(j["mismatch"].is_null());
  EXPECT_TRUE(j["first_error"].is_null());
  EXPECT_TRUE(j["complete"].boolean);
  EXPECT_EQ(Num(j, "exit_status"), 0);
}

void ExpectOrderedLatencies(const Json& j) {
  const Json& l = j["latency_us"];
  EXPECT_GT(Num(l, "p50"), 0);
  EXPECT_LE(Num(l, "p50"), Num(l, "p75"));
  EXPECT_LE(Num(l, "p75"), Num(l, "p90"));
  EXPECT_LE(Num(l, "p90"), Num(l, "p99"));
  EXPECT_LE(Num(l, "p99"), Num(l, "p999"));
  EXPECT_LE(Num(l, "p999"), Num(l, "max"));
  EXPECT_GT(Num(l, "mean"), 0);
  EXPECT_LE(Num(l, "mean"), Num(l, "max"));
  EXPECT_GE(Num(l, "stdev"), 0);
  EXPECT_LE(Num(l, "stdev"), Num(l, "max"));
}

// The histogram of --json holds every message (or cycle) counted, in buckets
// that rise, and gives back the p99 the report states: what lets the
// benchmark merge rounds and take a p99 over all of them.
void ExpectBucketsAgree(const Json& j) {
  const Json& buckets = j["latency_buckets_ns"];
  ASSERT_EQ(buckets.type, Json::Type::kArray);
  ASSERT_FALSE(buckets.array.empty());
  double total = 0, previous = -1;
  for (const Json& b : buckets.array) {
    ASSERT_EQ(b.type, Json::Type::kArray);
    ASSERT_EQ(b.array.size(), 2u);
    EXPECT_GT(b.array[0].number, previous) << "buckets come lowest first, each once";
    EXPECT_GT(b.array[1].number, 0) << "only buckets that hold a value";
    previous = b.array[0].number;
    total += b.array[1].number;
  }
  EXPECT_EQ(total, Num(j, "requests"));
  const double rank = std::ceil(0.99 * total);
  double seen = 0, p99_us = 0;
  for (const Json& b : buckets.array) {
    seen += b.array[1].number;
    if (seen >= rank) {
      p99_us = std::min(b.array[0].number / 1000, Num(j["latency_us"], "max"));
      break;
    }
  }
  EXPECT_NEAR(p99_us, Num(j["latency_us"], "p99"), 0.051);
}

TEST_F(BenchTest, StreamModeVerifiesEveryByte) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  Json j = BenchJson({"stream", "-c", "3", "-n", "2M", v4()}, kExitOk);
  ExpectClean(j);
  EXPECT_EQ(j["mode"].string, "stream");
  EXPECT_EQ(j["address"].string, v4());
  EXPECT_EQ(j["expect"].string, "rot13");
  EXPECT_EQ(Num(j, "connections"), 3);
  EXPECT_EQ(Num(j, "bytes_per_connection"), 2 << 20);
  EXPECT_EQ(Num(j, "bytes_sent"), 3 * (2 << 20));
  EXPECT_EQ(Num(j, "bytes"), 3 * (2 << 20)) << "every byte sent came back, verified";
  EXPECT_EQ(Num(j, "requests"), 3) << "completed connections";
  EXPECT_TRUE(j["latency_buckets_ns"].type == Json::Type::kArray && j["latency_buckets_ns"].array.empty())
      << "stream measures no latency";
  EXPECT_GT(Num(j, "seconds"), 0);
  EXPECT_GT(Num(j, "mib_per_s"), 0);
  EXPECT_NEAR(Num(j, "mib_per_s"), 6 / Num(j, "seconds"), 0.01 * Num(j, "mib_per_s") + 0.01);
}

TEST_F(BenchTest, RequestResponseModeReportsRateAndLatency) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  Json j = BenchJson({"rr", "-c", "4", "-s", "100", "-d", "1", v4()}, kExitOk);
  ExpectClean(j);
  EXPECT_EQ(j["mode"].string, "rr");
  EXPECT_EQ(Num(j, "message_size"), 100);
  EXPECT_GE(Num(j, "seconds"), 0.99);
  EXPECT_LT(Num(j, "seconds"), 3);
  double requests = Num(j, "requests");
  EXPECT_GT(requests, 0);
  EXPECT_EQ(Num(j, "bytes"), requests * 100) << "only whole answers count";
  EXPECT_NEAR(Num(j, "requests_per_s"), requests / Num(j, "seconds"), 0.01 * requests);
  ExpectOrderedLatencies(j);
  ExpectBucketsAgree(j);
}

TEST_F(BenchTest, ConnectModeCountsCycles) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  Json j = BenchJson({"connect", "-c", "2", "-d", "1", v4()}, kExitOk);
  ExpectClean(j);
  EXPECT_EQ(j["mode"].string, "connect");
  double cycles = Num(j, "cycles");
  EXPECT_GT(cycles, 0);
  EXPECT_EQ(Num(j, "requests"), cycles);
  EXPECT_EQ(Num(j, "bytes"), cycles * 16);
  EXPECT_GT(Num(j, "cycles_per_s"), 0);
  ExpectOrderedLatencies(j);
  ExpectBucketsAgree(j);
}

TEST_F(BenchTest, RequestLimitEndsTheRunEarly) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  Json j = BenchJson({"rr", "-c", "4", "-r", "200", "-d", "30", v4()}, kExitOk);
  ExpectClean(j);
  EXPECT_EQ(Num(j, "requests"), 200);
  EXPECT_LT(Num(j, "seconds"), 20);
  j = BenchJson({"connect", "-c", "3", "-r", "50", "-d", "30", unix_address()}, kExitOk);
  ExpectClean(j);
  EXPECT_EQ(Num(j, "cycles"), 50);
}

// wrk's durations: a unit, or a plain number of seconds.
TEST_F(BenchTest, DurationsTakeUnits) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  Json j = BenchJson({"rr", "-c", "2", "-d", "700ms", v4()}, kExitOk);
  ExpectClean(j);
  EXPECT_NEAR(Num(j, "duration_s"), 0.7, 1e-9);
  EXPECT_GE(Num(j, "seconds"), 0.69);
  EXPECT_LT(Num(j, "seconds"), 2);
  j = BenchJson({"connect", "-c", "2", "-d", "0.3", "--timeout", "2s", "--max-time", "1m", v4()}, kExitOk);
  ExpectClean(j);
  EXPECT_NEAR(Num(j, "duration_s"), 0.3, 1e-9);
  // 2m is longer than a --max-time of 90s: the units were understood.
  ToolResult r = Bench({"rr", "-d", "2m", "--max-time", "90s", v4()});
  EXPECT_EQ(r.exit_code, kExitUsage) << r.err;
  EXPECT_NE(r.err.find("-d is longer than --max-time"), std::string::npos) << r.err;
  r = Bench({"rr", "-d", "10sec", v4()});
  EXPECT_EQ(r.exit_code, kExitUsage) << r.err;
  EXPECT_NE(r.err.find("10s, 500ms, 2m"), std::string::npos) << "the error shows the forms: " << r.err;
}

// Without a mode, rr; the address may be HOST PORT.
TEST_F(BenchTest, DefaultModeIsRr) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  Json j = BenchJson({"-c", "2", "-d", "300ms", v4()}, kExitOk);
  ExpectClean(j);
  EXPECT_EQ(j["mode"].string, "rr");
  EXPECT_EQ(Num(j, "message_size"), 64);
  EXPECT_GT(Num(j, "requests"), 0);
  j = BenchJson({"-c", "2", "-d", "300ms", "127.0.0.1", std::to_string(port_)}, kExitOk);
  ExpectClean(j);
  EXPECT_EQ(j["mode"].string, "rr");
  EXPECT_EQ(j["address"].string, v4());
  j = BenchJson({"stream", "-c", "1", "-n", "64K", "::1", std::to_string(port6_)}, kExitOk);
  ExpectClean(j);
  EXPECT_EQ(j["address"].string, v6());
}

// iperf3's habit: a stream that runs for a time rather than a number of bytes.
TEST_F(BenchTest, StreamForADuration) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  Json j = BenchJson({"stream", "-c", "2", "-d", "500ms", v4()}, kExitOk);
  ExpectClean(j);
  EXPECT_EQ(j["mode"].string, "stream");
  EXPECT_NEAR(Num(j, "duration_s"), 0.5, 1e-9);
  EXPECT_EQ(Num(j, "bytes_per_connection"), 0) << "no byte limit with -d alone";
  EXPECT_GE(Num(j, "seconds"), 0.49);
  EXPECT_LT(Num(j, "seconds"), 2);
  EXPECT_GT(Num(j, "bytes"), 1 << 20) << "a loopback stream moves more than a MiB in half a second";
  EXPECT_GE(Num(j, "bytes_sent"), Num(j, "bytes"));
  EXPECT_EQ(Num(j, "requests"), 0) << "no connection ran out of bytes";
  EXPECT_GT(Num(j, "mib_per_s"), 0);

  // -n and -d together: whichever ends first; here the bytes.
  j = BenchJson({"stream", "-c", "2", "-n", "1M", "-d", "30s", v4()}, kExitOk);
  ExpectClean(j);
  EXPECT_EQ(Num(j, "requests"), 2);
  EXPECT_EQ(Num(j, "bytes"), 2 << 20);
  EXPECT_LT(Num(j, "seconds"), 20);
}

TEST_F(BenchTest, IdleConnectionsStayOpenThroughTheRun) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  Json j = BenchJson({"rr", "-c", "2", "-d", "0.5", "--idle", "300", v4()}, kExitOk);
  ExpectClean(j);
  EXPECT_EQ(Num(j, "idle"), 300);
  EXPECT_EQ(Num(j, "idle_open"), 300);
  EXPECT_EQ(Num(j, "idle_dropped"), 0);
}

TEST_F(BenchTest, ThreadsIpv6AndUnixSockets) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  Json j = BenchJson({"rr", "-t", "2", "-c", "4", "-d", "0.5", v6()}, kExitOk);
  ExpectClean(j);
  EXPECT_EQ(Num(j, "threads"), 2);
  EXPECT_EQ(j["address"].string, v6());
  j = BenchJson({"stream", "-t", "2", "-c", "2", "-n", "1M", unix_address()}, kExitOk);
  ExpectClean(j);
  EXPECT_EQ(Num(j, "bytes"), 2 << 20);
}

// The numbers of one latency cell as wrk prints them: "786.43us", "1.62ms", "2.31s".
bool IsScaledLatency(const std::string& cell) {
  size_t digits = cell.find_first_not_of("0123456789.");
  if (digits == 0 || digits == std::string::npos) return false;
  std::string unit = cell.substr(digits);
  return (unit == "us" || unit == "ms" || unit == "s") && cell.find('.') != std::string::npos;
}

std::vector<std::string> Words(const std::string& line) {
  std::vector<std::string> words;
  std::istringstream in(line);
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}

// The line that starts with `start` (not the first line), and the one after it; "" for none.
std::string LineStarting(const std::string& text, const std::string& start, int after = 0) {
  size_t at = text.find("\n" + start);
  for (int i = 0; i < after && at != std::string::npos; ++i) at = text.find('\n', at + 1);
  if (at == std::string::npos) return "";
  return text.substr(at + 1, text.find('\n', at + 1) - at - 1);
}

TEST_F(BenchTest, HumanSummary) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  ToolResult r = Bench({"rr", "-c", "2", "-d", "300ms", v4()});
  EXPECT_EQ(r.exit_code, kExitOk) << r.err;
  EXPECT_TRUE(r.out.starts_with("Running 300ms rr test @ " + v4() + "\n")) << r.out;
  EXPECT_NE(r.out.find("\n  1 thread and 2 connections, 64-byte messages, checked against rot13\n"),
            std::string::npos)
      << r.out;
  // wrk's Avg and Stdev beside the percentiles, each in us, ms or s.
  EXPECT_EQ(Words(LineStarting(r.out, "  latency ")),
            (std::vector<std::string>{"latency", "avg", "stdev", "p50", "p90", "p99", "p99.9", "max"}))
      << r.out;
  std::vector<std::string> cells = Words(LineStarting(r.out, "  latency ", 1));
  ASSERT_EQ(cells.size(), 7u) << r.out;
  for (const std::string& cell : cells) EXPECT_TRUE(IsScaledLatency(cell)) << cell << " in\n" << r.out;
  EXPECT_EQ(r.out.find("Latency Distribution"), std::string::npos) << "only with --latency";
  EXPECT_NE(r.out.find("failures   none"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("result     ok"), std::string::npos) << r.out;
  EXPECT_EQ(r.err, "") << "no progress line when stderr is not a terminal";

  r = Bench({"stream", "-c", "2", "-n", "2M", v4()});
  EXPECT_EQ(r.exit_code, kExitOk) << r.err;
  EXPECT_TRUE(r.out.starts_with("Running stream test @ " + v4() + "\n")) << r.out;
  EXPECT_NE(r.out.find("2 connections, 2 MiB each,"), std::string::npos) << "not \"2.0 MiB\": " << r.out;
  EXPECT_NE(r.out.find("  sent       4 MiB ("), std::string::npos) << r.out;
  r = Bench({"stream", "-c", "1", "-d", "200ms", v4()});
  EXPECT_TRUE(r.out.starts_with("Running 200ms stream test @ " + v4() + "\n")) << r.out;
  EXPECT_NE(r.out.find("1 connection, no byte limit,"), std::string::npos) << r.out;
}

// wrk's --latency: the 50th, 75th, 90th and 99th percentiles, one a line, in scaled units.
TEST_F(BenchTest, LatencyDistribution) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  ToolResult r = Bench({"connect", "-c", "2", "-d", "300ms", "--latency", v4()});
  EXPECT_EQ(r.exit_code, kExitOk) << r.err;
  size_t at = r.out.find("\n  Latency Distribution\n");
  ASSERT_NE(at, std::string::npos) << r.out;
  std::istringstream lines(r.out.substr(at + 24));
  double previous = 0;
  for (const char* percent : {"50%", "75%", "90%", "99%"}) {
    std::string line;
    std::getline(lines, line);
    std::vector<std::string> w = Words(line);
    ASSERT_EQ(w.size(), 2u) << line;
    EXPECT_EQ(w[0], percent) << line;
    EXPECT_TRUE(IsScaledLatency(w[1])) << line;
    EXPECT_EQ(line.size(), 18u) << "wrk's columns: \"" << line << "\"";
    double scale = w[1].ends_with("us") ? 1e-3 : w[1].ends_with("ms") ? 1 : 1e3;
    double ms = std::stod(w[1]) * scale;
    EXPECT_GE(ms, previous) << line;
    previous = ms;
  }
  // The JSON has the same percentiles, and the standard deviation.
  Json j = BenchJson({"rr", "-c", "2", "-d", "300ms", "--latency", v4()}, kExitOk);
  EXPECT_LE(Num(j["latency_us"], "p50"), Num(j["latency_us"], "p75"));
  EXPECT_LE(Num(j["latency_us"], "p75"), Num(j["latency_us"], "p90"));
  EXPECT_GE(Num(j["latency_us"], "stdev"), 0);
  r = Bench({"stream", "--latency", v4()});
  EXPECT_EQ(r.exit_code, kExitUsage) << "stream measures no latency: " << r.err;
}

// wrk prints its header before the run, and so does rot13-bench: it must
// arrive while the run still goes on.
TEST_F(BenchTest, HeaderComesBeforeTheRun) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  const auto start = Clock::now();
  std::string out;
  milliseconds first_output{-1};
  ToolOutput watch;
  watch.consume = [&](const char* data, size_t n) {
    if (out.empty()) first_output = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
    out.append(data, n);
  };
  ToolResult r = RunTool({BenchPath(), "-c", "2", "-d", "2s", v4()}, {}, watch, 30s);
  EXPECT_EQ(r.exit_code, kExitOk) << r.err;
  EXPECT_TRUE(out.starts_with("Running 2s rr test @ " + v4() + "\n")) << out;
  EXPECT_GE(r.elapsed, 2s);
  EXPECT_LT(first_output, 1500ms) << "the header came with the report, not before the run";
}

TEST_F(BenchTest, EchoServerFailsTheRot13Check) {
  TestServer echo(TestServer::Echo);
  ToolResult raw;
  Json j = BenchJson({"rr", "-d", "1", echo.address()}, kExitMismatch, &raw);
  EXPECT_GE(Num(j["failures"], "mismatch"), 1);
  EXPECT_FALSE(j["mismatch"].is_null());
  EXPECT_EQ(Num(j, "exit_status"), kExitMismatch);
  EXPECT_NE(raw.err.find("echoes bytes unchanged"), std::string::npos) << raw.err;
}

TEST_F(BenchTest, ExpectEchoPassesAgainstAnEchoServer) {
  TestServer echo(TestServer::Echo);
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"stream", "-c", "2", "-n", "1M"}, {"rr", "-c", "2", "-d", "0.5"}, {"connect", "-c", "2", "-d", "0.5"}}) {
    SCOPED_TRACE(args[0]);
    std::vector<std::string> full = args;
    full.insert(full.end(), {"--expect", "echo", echo.address()});
    Json j = BenchJson(full, kExitOk);
    ExpectClean(j);
    EXPECT_EQ(j["expect"].string, "echo");
    EXPECT_GT(Num(j, "bytes"), 0);
  }
}

// A server that passes the probe's short round trip and corrupts one byte far
// into each connection: the run itself must find it, and say where.
TEST_F(BenchTest, OneCorruptedByteMidStreamIsFound) {
  TestServer corrupting(TestServer::Rot13Corrupting(300'000));
  ToolResult raw;
  Json j = BenchJson({"stream", "-c", "2", "-n", "1M", corrupting.address()}, kExitMismatch, &raw);
  EXPECT_EQ(Num(j["failures"], "mismatch"), 2) << "one per connection";
  const Json& m = j["mismatch"];
  ASSERT_FALSE(m.is_null());
  EXPECT_EQ(Num(m, "offset"), 300'000);
  EXPECT_EQ(static_cast<int>(Num(m, "got")), static_cast<int>(Num(m, "expected")) ^ 1);
  EXPECT_LT(Num(j, "bytes"), 2 << 20) << "bytes after a wrong one are not counted as verified";

  // rr: byte 1000 of the connection is byte 1000 - 15 * 64 = 40 of its message 15.
  TestServer corrupting_early(TestServer::Rot13Corrupting(1000));
  j = BenchJson({"rr", "-c", "1", "-s", "64", "-d", "1", corrupting_early.address()}, kExitMismatch);
  ASSERT_FALSE(j["mismatch"].is_null());
  EXPECT_EQ(Num(j["mismatch"], "request"), 15);
  EXPECT_EQ(Num(j["mismatch"], "offset"), 40);

  // And the summary for people says so too, naming the connection once.
  raw = Bench({"stream", "-c", "1", "-n", "1M", corrupting.address()});
  EXPECT_EQ(raw.exit_code, kExitMismatch);
  EXPECT_NE(raw.out.find("MISMATCH   connection 0, byte 300000"), std::string::npos) << raw.out;
  EXPECT_NE(raw.out.find("the first: connection 0, byte 300000: expected"), std::string::npos) << raw.out;
  EXPECT_EQ(raw.out.find("connection 0: connection 0"), std::string::npos) << raw.out;
}

TEST_F(BenchTest, ResetsDuringTheRunAreCountedByKind) {
  TestServer server(TestServer::FirstThen(TestServer::Rot13Corrupting(UINT64_MAX), TestServer::ResetAfterFirstBytes));
  Json j = BenchJson({"connect", "-c", "2", "-d", "0.5", server.address()}, kExitIoError);
  EXPECT_GT(Num(j["failures"], "reset"), 0);
  EXPECT_EQ(Num(j["failures"], "mismatch"), 0);
  EXPECT_EQ(Num(j, "cycles"), 0);
  EXPECT_EQ(Num(j, "errors"), Num(j["failures"], "reset") + Num(j["failures"], "other"));
  EXPECT_FALSE(j["first_error"].is_null());
}

TEST_F(BenchTest, StalledConnectionsTimeOut) {
  TestServer server(TestServer::FirstThen(TestServer::Rot13Corrupting(UINT64_MAX), TestServer::Silent));
  ToolResult raw;
  Json j = BenchJson({"stream", "-c", "2", "-n", "64K", "--timeout", "0.5", server.address()}, kExitIoError, &raw);
  EXPECT_EQ(Num(j["failures"], "timeout"), 2);
  EXPECT_LT(raw.elapsed, 10s);
}

TEST_F(BenchTest, MaxTimeEndsAStalledRun) {
  TestServer server(TestServer::FirstThen(TestServer::Rot13Corrupting(UINT64_MAX), TestServer::Silent));
  ToolResult raw;
  Json j = BenchJson({"stream", "-c", "1", "-n", "64K", "--timeout", "30", "--max-time", "1", server.address()},
                     kExitTimeout, &raw);
  EXPECT_FALSE(j["complete"].boolean);
  EXPECT_GE(raw.elapsed, 900ms);
  EXPECT_LT(raw.elapsed, 10s);
}

TEST_F(BenchTest, NoServerExits4) {
  uint16_t nobody = blackbox::FreePort();
  ToolResult r = Bench({"rr", "-d", "1", "127.0.0.1:" + std::to_string(nobody)});
  EXPECT_EQ(r.exit_code, kExitRefused) << r.err;
  EXPECT_NE(r.err.find("Connection refused"), std::string::npos) << r.err;
}

TEST_F(BenchTest, BadAddressExits3) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"rr", "127.0.0.1:0"}, {"stream", "[::1"}, {"rr", "a:1", "b:2"}, {"127.0.0.1", "0"}}) {
    SCOPED_TRACE(args[0] + " " + args[1]);
    ToolResult r = Bench(args);
    EXPECT_EQ(r.exit_code, kExitBadAddress) << r.err;
  }
  // A mistyped mode reads as a host name; when that does not resolve, the
  // message says that it is no mode either. The resolver is told not to wait long.
  ToolResult r = RunTool({BenchPath(), "strem"}, {}, {}, 20s, {"RES_OPTIONS=timeout:1 attempts:1"});
  EXPECT_EQ(r.exit_code, kExitBadAddress) << r.err;
  EXPECT_NE(r.err.find("cannot resolve \"strem\""), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("the modes are rr, connect and stream"), std::string::npos) << r.err;
}

TEST_F(BenchTest, UsageErrorsExit2) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"walk", "a:1"}, {"walk", "a", "1"}, {"stream", "-r", "5"}, {"stream", "-s", "10"}, {"rr", "-n", "1M"},
           {"rr", "-c", "0"}, {"rr", "--expect", "rot47"}, {"rr", "-d", "0"}, {"rr", "-d", "700"},
           {"stream", "-d", "11m"}, {"rr", "a", "1", "2"}, {"connect", "--bogus"}}) {
    SCOPED_TRACE(args.empty() ? "(no arguments)" : args[0] + " " + (args.size() > 1 ? args[1] : ""));
    ToolResult r = Bench(args);
    EXPECT_EQ(r.exit_code, kExitUsage) << r.err;
    EXPECT_NE(r.err.find("Try 'rot13-bench --help'"), std::string::npos) << r.err;
  }
  ToolResult r = Bench({"--help"});
  EXPECT_EQ(r.exit_code, kExitOk);
  EXPECT_NE(r.out.find("Usage: rot13-bench [rr]"), std::string::npos) << r.out;
  for (const char* flag : {"--version", "-v"}) {
    r = Bench({flag});
    EXPECT_EQ(r.exit_code, kExitOk) << flag;
    EXPECT_EQ(r.out, "rot13-bench " ROT13D_VERSION "\n") << flag;
  }
}

// The hosts that connections to a TestServer came from, by count.
class PeerLog {
 public:
  // A rot13 server's handler that notes each connection's peer address first.
  TestServer::Handler Rot13() {
    return [this, rot13 = TestServer::Rot13Corrupting(UINT64_MAX)](int fd, size_t index,
                                                                     const std::atomic<bool>& stopping) {
      sockaddr_in peer{};
      socklen_t len = sizeof peer;
      char host[INET_ADDRSTRLEN] = "(unknown)";
      if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) == 0) {
        inet_ntop(AF_INET, &peer.sin_addr, host, sizeof host);
      }
      {
        std::lock_guard lock(mu_);
        ++hosts_[host];
        ++total_;
      }
      seen_.notify_all();
      rot13(fd, index, stopping);
    };
  }
  // The peers once `connections` were accepted, or after 5 s. rot13-bench may
  // close a connection it had no message left for before the server's accept
  // thread took it from the queue: it is accepted a moment later.
  std::map<std::string, size_t> hosts(size_t connections) const {
    std::unique_lock lock(mu_);
    seen_.wait_for(lock, std::chrono::seconds(5), [&] { return total_ >= connections; });
    return hosts_;
  }

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable seen_;
  std::map<std::string, size_t> hosts_;
  size_t total_ = 0;
};

std::vector<std::string> Strings(const Json& array) {
  EXPECT_EQ(array.type, Json::Type::kArray);
  std::vector<std::string> out;
  for (const Json& item : array.array) out.push_back(item.string);
  return out;
}

// Every connection, the probe's and the idle ones included, comes from one of
// the --source addresses, which take turns.
TEST_F(BenchTest, SourceAddressesTakeTurns) {
  PeerLog peers;
  TestServer server(peers.Rot13());
  Json j = BenchJson({"connect", "-c", "2", "-r", "40", "-d", "30s", "--idle", "2", "--source", "127.0.0.2",
                      "--source", "127.0.0.3", server.address()},
                     kExitOk);
  ExpectClean(j);
  EXPECT_EQ(Num(j, "cycles"), 40);
  EXPECT_EQ(Num(j, "idle_open"), 2);
  EXPECT_EQ(Strings(j["sources"]), (std::vector<std::string>{"127.0.0.2", "127.0.0.3"}));
  // The server saw every connection before it answered, and rot13-bench ended
  // only once all were answered: the probe, the idle ones and the cycles.
  std::map<std::string, size_t> hosts = peers.hosts(1 + 2 + 40);
  ASSERT_EQ(hosts.size(), 2u) << "peers other than the sources";
  EXPECT_EQ(hosts["127.0.0.2"] + hosts["127.0.0.3"], 1u + 2u + 40u);
  // In turn: one thread alternates, so neither source has many more.
  EXPECT_GE(hosts["127.0.0.2"], 20u);
  EXPECT_GE(hosts["127.0.0.3"], 20u);
}

// rr and stream connect from the sources too, on several threads, and a
// comma-separated list is several sources.
TEST_F(BenchTest, SourceAddressesInEveryMode) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"rr", "-c", "3", "-t", "2", "-r", "30"}, {"stream", "-c", "3", "-t", "3", "-n", "64K"}}) {
    SCOPED_TRACE(args[0]);
    PeerLog peers;
    TestServer server(peers.Rot13());
    std::vector<std::string> run = args;
    run.insert(run.end(), {"--source", "127.0.0.2,127.0.0.3", server.address()});
    Json j = BenchJson(run, kExitOk);
    ExpectClean(j);
    EXPECT_EQ(Strings(j["sources"]), (std::vector<std::string>{"127.0.0.2", "127.0.0.3"}));
    std::map<std::string, size_t> hosts = peers.hosts(4);
    ASSERT_EQ(hosts.size(), 2u) << "peers other than the sources";
    EXPECT_EQ(hosts["127.0.0.2"] + hosts["127.0.0.3"], 4u) << "the probe and 3 connections";
    EXPECT_GE(hosts["127.0.0.2"], 1u);
    EXPECT_GE(hosts["127.0.0.3"], 1u);
  }
}

// An IPv6 source for an IPv6 server; of a host name's addresses, those of the
// sources' family.
TEST_F(BenchTest, SourceAddressesOfTheServersFamily) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  Json j = BenchJson({"rr", "-c", "2", "-r", "20", "--source", "[::1]", v6()}, kExitOk);
  ExpectClean(j);
  EXPECT_EQ(Strings(j["sources"]), std::vector<std::string>{"::1"});
  j = BenchJson({"rr", "-c", "2", "-r", "20", "--source", "127.0.0.2", "localhost:" + std::to_string(port_)}, kExitOk);
  ExpectClean(j);
  EXPECT_EQ(j["address"].string, v4());
  j = BenchJson({"rr", "-c", "2", "-r", "20", v4()}, kExitOk);
  EXPECT_EQ(Strings(j["sources"]), std::vector<std::string>{}) << "none without --source";
}

TEST_F(BenchTest, BadSourcesAreUsageErrors) {
  const std::string v4_target = "127.0.0.1:" + std::to_string(port_);  // nobody listens: no probe is made
  const std::string v6_target = "[::1]:" + std::to_string(port6_);
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  for (const Case& c : std::vector<Case>{
           {{"connect", "--source", "::1", v4_target}, "IPv6, but " + v4_target + " is IPv4"},
           {{"connect", "--source", "127.0.0.2", v6_target}, "IPv4, but " + v6_target + " is IPv6"},
           {{"connect", "-6", "--source", "127.0.0.2", v6_target}, "-6 contradicts --source 127.0.0.2"},
           {{"connect", "--source", "127.0.0.2", "--source", "::1", v4_target}, "::1 is IPv6 but 127.0.0.2 is IPv4"},
           {{"connect", "--source", "127.0.0.2,::1", v4_target}, "::1 is IPv6 but 127.0.0.2 is IPv4"},
           {{"connect", "--source", "127.0.0.2", unix_address()}, "not to a Unix socket"},
           {{"connect", "--source", "localhost", v4_target}, "invalid source address \"localhost\""},
           {{"connect", "--source", "127.0.0.1:80", v4_target}, "invalid source address \"127.0.0.1:80\""},
           {{"connect", "--source", "[::1]:80", v6_target}, "invalid source address \"[::1]:80\""},
           {{"connect", "--source", "300.0.0.1", v4_target}, "invalid source address"},
           {{"connect", "--source", "", v4_target}, "invalid source address"},
           {{"connect", "--source", "127.0.0.2,", v4_target}, "invalid source address \"\""},
           {{"connect", v4_target, "--source"}, "needs a value"}}) {
    SCOPED_TRACE(c.args[1] + " " + c.args[2]);
    ToolResult r = Bench(c.args);
    EXPECT_EQ(r.exit_code, kExitUsage) << r.err;
    EXPECT_NE(r.err.find(c.says), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("Try 'rot13-bench --help'"), std::string::npos) << r.err;
  }
}

}  // namespace
}  // namespace rot13d::clienttest
