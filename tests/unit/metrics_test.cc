// The admin endpoint's pages from a snapshot: the Prometheus exposition and the status JSON.
#include "supervisor/metrics.h"

#include <gtest/gtest.h>

#include "common/json.h"

namespace rot13d::supervisor {
namespace {

Snapshot Sample() {
  Snapshot s;
  s.version = "1.2.3";
  s.pid = 812;
  s.uptime_seconds = 61.5;
  s.serving_generation = 3;
  s.canary_generation = 4;
  s.last_reload = "ok (generation 3)";
  s.reloads[static_cast<size_t>(ReloadResult::kOk)] = 2;
  s.restarts[static_cast<size_t>(RestartReason::kKilled)] = 5;
  s.totals.connections_total = 100;
  s.totals.bytes_received = 4096;
  s.totals.bytes_sent = 4000;
  s.totals.closed[static_cast<size_t>(CloseReason::kReset)] = 7;
  s.totals.duration_buckets[0] = 1;  // <= 1 ms
  s.totals.duration_buckets[3] = 2;  // <= 1 s
  s.totals.duration_buckets[kDurationBuckets - 1] = 1;  // > 3600 s
  s.totals.duration_sum_us = 5'000'000;
  WorkerSnapshot w;
  w.pid = 900;
  w.slot = 1;
  w.generation = 3;
  w.state = "accepting";
  w.open_connections = 6;
  w.accepted = 50;
  s.workers = {w};
  w.pid = 0;
  w.state = "waiting";
  w.open_connections = 0;
  s.workers.push_back(w);
  return s;
}

bool Has(const std::string& text, const std::string& line) { return text.find("\n" + line + "\n") != std::string::npos; }

TEST(RenderMetrics, FamiliesAndSamples) {
  std::string m = "\n" + RenderMetrics(Sample());
  EXPECT_TRUE(Has(m, "# TYPE rot13d_connections_accepted_total counter")) << m;
  EXPECT_TRUE(Has(m, "rot13d_build_info{version=\"1.2.3\"} 1"));
  EXPECT_TRUE(Has(m, "rot13d_generation 3"));
  EXPECT_TRUE(Has(m, "rot13d_reloads_total{result=\"ok\"} 2"));
  EXPECT_TRUE(Has(m, "rot13d_reloads_total{result=\"boot_failed\"} 0")) << "every label value, zero or not";
  EXPECT_TRUE(Has(m, "rot13d_worker_restarts_total{reason=\"killed\"} 5"));
  EXPECT_TRUE(Has(m, "rot13d_workers{state=\"accepting\"} 1"));
  EXPECT_TRUE(Has(m, "rot13d_workers{state=\"waiting\"} 1"));
  EXPECT_TRUE(Has(m, "rot13d_connections_active 6"));
  EXPECT_TRUE(Has(m, "rot13d_connections_closed_total{reason=\"reset\"} 7"));
  EXPECT_TRUE(Has(m, "rot13d_bytes_received_total 4096"));
  EXPECT_TRUE(Has(m, "rot13d_bytes_sent_total 4000"));
}

// Buckets are cumulative, end at +Inf, and count equals it.
TEST(RenderMetrics, HistogramIsCumulative) {
  std::string m = "\n" + RenderMetrics(Sample());
  EXPECT_TRUE(Has(m, "rot13d_connection_duration_seconds_bucket{le=\"0.001\"} 1")) << m;
  EXPECT_TRUE(Has(m, "rot13d_connection_duration_seconds_bucket{le=\"0.1\"} 1"));
  EXPECT_TRUE(Has(m, "rot13d_connection_duration_seconds_bucket{le=\"1\"} 3"));
  EXPECT_TRUE(Has(m, "rot13d_connection_duration_seconds_bucket{le=\"3600\"} 3"));
  EXPECT_TRUE(Has(m, "rot13d_connection_duration_seconds_bucket{le=\"+Inf\"} 4"));
  EXPECT_TRUE(Has(m, "rot13d_connection_duration_seconds_count 4"));
  EXPECT_TRUE(Has(m, "rot13d_connection_duration_seconds_sum 5"));
}

TEST(DurationBucket, BoundsAreInclusive) {
  EXPECT_EQ(DurationBucket(0), 0u);
  EXPECT_EQ(DurationBucket(1000), 0u);  // exactly 1 ms
  EXPECT_EQ(DurationBucket(1001), 1u);
  EXPECT_EQ(DurationBucket(3'600'000'001ull), kDurationBuckets - 1);
}

TEST(RenderStatusJson, IsOneObjectWithEveryWorker) {
  std::optional<Json> j = ParseJson(RenderStatusJson(Sample()));
  ASSERT_TRUE(j);
  EXPECT_EQ((*j)["version"].string, "1.2.3");
  EXPECT_EQ((*j)["pid"].number, 812);
  EXPECT_EQ((*j)["generation"].number, 3);
  EXPECT_EQ((*j)["canary_generation"].number, 4);
  EXPECT_EQ((*j)["last_reload"].string, "ok (generation 3)");
  ASSERT_EQ((*j)["workers"].array.size(), 2u);
  EXPECT_EQ((*j)["workers"].array[0]["state"].string, "accepting");
  EXPECT_EQ((*j)["workers"].array[0]["open_connections"].number, 6);
  EXPECT_EQ((*j)["workers"].array[1]["pid"].number, 0);
  Snapshot none = Sample();
  none.canary_generation = 0;
  EXPECT_TRUE((*ParseJson(RenderStatusJson(none)))["canary_generation"].is_null());
}

TEST(JsonString, EscapesWhatJsonMust) {
  EXPECT_EQ(JsonString("a\"b\\c\n\x01\xff"), "\"a\\\"b\\\\c\\u000a\\u0001\\u00ff\"");
}

}  // namespace
}  // namespace rot13d::supervisor

namespace rot13d {
namespace {

// The status document comes from whoever answers: nesting is bounded.
TEST(ParseJson, RefusesNestingDeeperThan64) {
  EXPECT_TRUE(ParseJson(std::string(64, '[') + std::string(64, ']')));
  EXPECT_FALSE(ParseJson(std::string(65, '[') + std::string(65, ']')));
  EXPECT_FALSE(ParseJson(std::string(100000, '[')));
}

}  // namespace
}  // namespace rot13d
