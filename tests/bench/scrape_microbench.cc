// What one scrape of the admin endpoint costs the supervisor: taking the
// snapshot of 64 workers' shared counters and rendering /metrics and /status
// (Google Benchmark; the goal is well under 1 ms of supervisor CPU).
#include <benchmark/benchmark.h>

#include "common/stats.h"
#include "supervisor/metrics.h"
#include "supervisor/worker_pool.h"

namespace {

using namespace rot13d;
using namespace rot13d::supervisor;

constexpr int kWorkers = 64;

// A pool of 64 worker records with busy counters, as the supervisor holds them.
struct BusyPool {
  BusyPool() {
    if (!pool.Init(4 * kMaxWorkers + 64).ok()) std::abort();
    pool.AddGeneration(1, kWorkers, Clock::now());
  }
  WorkerPool pool;
};

Snapshot Take(const WorkerPool& pool, const Activity& activity) {
  Snapshot s = activity.Snapshot("0.1.0", 1234);
  s.serving_generation = 1;
  s.totals = pool.Totals();
  s.workers = pool.Describe();
  for (WorkerSnapshot& w : s.workers) {  // as if each served and held some
    w.state = "accepting";
    w.open_connections = 150;
    w.accepted = 1234567;
    w.bytes_received = w.bytes_sent = 987654321;
  }
  return s;
}

void BM_ScrapeMetrics64Workers(benchmark::State& state) {
  BusyPool busy;
  Activity activity;
  for (auto _ : state) {
    std::string body = RenderMetrics(Take(busy.pool, activity));
    benchmark::DoNotOptimize(body.data());
  }
}
BENCHMARK(BM_ScrapeMetrics64Workers)->Unit(benchmark::kMicrosecond);

void BM_ScrapeStatus64Workers(benchmark::State& state) {
  BusyPool busy;
  Activity activity;
  for (auto _ : state) {
    std::string body = RenderStatusJson(Take(busy.pool, activity));
    benchmark::DoNotOptimize(body.data());
  }
}
BENCHMARK(BM_ScrapeStatus64Workers)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
