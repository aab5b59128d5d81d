// kill -9 under load: of random workers (only their own connections may
// suffer, new clients are never refused, the slot is refilled within 1 s), in
// a storm such as the OOM killer's (the service never sits without workers),
// and of the supervisor (no worker outlives it by 2 s).
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <optional>
#include <random>
#include <thread>

#include "tests/fault/fault_test.h"

namespace rot13d::fault {
namespace {

using KillFaultTest = FaultTest;

TEST_F(KillFaultTest, FiftyKillNinesOfRandomWorkersUnderLoad) {
  constexpr int kKills = 50;
  constexpr size_t kWorkers = 8;
  Figures fig;
  ASSERT_NO_FATAL_FAILURE(Start("workers = " + std::to_string(kWorkers) + "\n", kWorkers));

  // Long sessions (they outlive the test) doing 4 KiB requests every few ms,
  // and probes that open a new connection every few ms.
  LoadOptions o = Load(48, 1ull << 40, 1ull << 40, 4096, 20ms);
  o.threads = 2;
  LoadEngine load(o);
  LoadEngine probes(Probes(2, 5ms));
  ASSERT_TRUE(load.Start().ok());
  ASSERT_TRUE(probes.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return load.ServedPorts().size() >= 40; }, 10s)) << load.Stats().Summary();

  // When each worker was first seen.
  std::map<pid_t, Clock::time_point> born;
  for (pid_t p : daemon_->Workers()) born[p] = Clock::now();

  const unsigned seed = static_cast<unsigned>(std::random_device{}());
  std::mt19937 rng(seed);
  std::vector<WorkerFault> faults;
  std::vector<double> refill_ms;
  size_t victim_connections = 0;
  for (int k = 0; k < kKills; ++k) {
    SCOPED_TRACE("kill " + std::to_string(k + 1) + " (seed " + std::to_string(seed) + ")");
    pid_t victim = 0;
    WorkerFault fault;
    std::vector<pid_t> workers;
    ASSERT_TRUE(WaitFor([&] {
      workers = LiveChildren(daemon_->pid());
      if (workers.size() != kWorkers) return false;
      auto now = Clock::now();
      std::vector<pid_t> owners_seen;
      for (auto [port, pid] : ServerSideOwners(port_, workers)) owners_seen.push_back(pid);
      std::vector<pid_t> eligible;
      for (pid_t w : workers) {
        auto it = born.find(w);
        if (it == born.end()) continue;
        // Killed before it accepts, a worker counts as a boot failure (with its
        // backoff): only kill one seen holding a connection, or one old enough
        // to be long past booting. One that served is replaced at once.
        bool booted = std::count(owners_seen.begin(), owners_seen.end(), w) > 0 || now - it->second >= 1s;
        if (booted) eligible.push_back(w);
      }
      if (eligible.empty()) return false;
      victim = eligible[std::uniform_int_distribution<size_t>(0, eligible.size() - 1)(rng)];
      return true;
    }, 20s, 20ms)) << "no worker eligible to be killed";

    fault = SnapshotOwners(load, port_, workers, victim);
    victim_connections += fault.victim_ports.size();
    born.erase(victim);
    fault.at = Clock::now();
    ASSERT_TRUE(daemon_->SignalWorker(victim, SIGKILL));
    faults.push_back(fault);

    pid_t replacement = 0;
    ASSERT_TRUE(WaitFor([&] {
      std::vector<pid_t> now = LiveChildren(daemon_->pid());
      if (now.size() != kWorkers || std::count(now.begin(), now.end(), victim)) return false;
      for (pid_t p : now) {
        if (!std::count(workers.begin(), workers.end(), p)) replacement = p;
      }
      return replacement != 0;
    }, 5s, 1ms)) << "worker " << victim << " not replaced";
    auto refilled = Clock::now();
    refill_ms.push_back(Millis(refilled - fault.at));
    born[replacement] = refilled;
    EXPECT_LE(refill_ms.back(), 1000.0) << "slot of worker " << victim << " refilled after " << refill_ms.back()
                                        << " ms";
    // Pacing, not waiting for a state: kills 50-250 ms apart.
    std::this_thread::sleep_for(milliseconds(std::uniform_int_distribution<int>(50, 250)(rng)));
  }
  // Every long session makes a request every 20 ms or so: two rounds of them
  // means the failures the last kill caused have surfaced.
  EXPECT_TRUE(WaitForProgress(load, 2 * 48)) << load.Stats().Summary();
  load.Stop();
  probes.Stop();

  LoadStats s = load.Stats(), p = probes.Stats();
  FailureVerdicts lv = JudgeFailures(load.Failures(), faults, 1500ms);
  FailureVerdicts pv = JudgeFailures(probes.Failures(), faults, 1500ms);
  std::sort(refill_ms.begin(), refill_ms.end());
  double sum = 0;
  for (double r : refill_ms) sum += r;
  fig.Add("kills", static_cast<int>(faults.size()))
      .Add("workers", static_cast<int>(kWorkers))
      .Add("refill_ms_min", refill_ms.empty() ? 0 : refill_ms.front())
      .Add("refill_ms_avg", refill_ms.empty() ? 0 : sum / static_cast<double>(refill_ms.size()))
      .Add("refill_ms_max", refill_ms.empty() ? 0 : refill_ms.back())
      .Add("connections_on_victims", victim_connections)
      .Add("failures_on_victims", lv.on_victim)
      .Add("failures_unmapped_near_kill", lv.unmapped_near_fault + pv.unmapped_near_fault + pv.on_victim)
      .Add("failures_elsewhere", lv.violations.size() + pv.violations.size())
      .AddLoad("", s)
      .Add("probe_sessions", p.sessions_started)
      .Add("probe_completed", p.sessions_completed)
      .Add("probe_refused", p.Failures(FailureKind::kRefused))
      .Add("probe_reset_or_eof", p.Failures(FailureKind::kReset) + p.closed_early)
      .Add("seed", seed);

  EXPECT_EQ(static_cast<int>(faults.size()), kKills);
  EXPECT_TRUE(lv.violations.empty()) << "connections not on the killed worker failed:" << Join(lv.violations);
  EXPECT_TRUE(pv.violations.empty()) << "new connections failed:" << Join(pv.violations);
  EXPECT_EQ(s.Failures(FailureKind::kRefused) + p.Failures(FailureKind::kRefused) + s.Failures(FailureKind::kOther) +
                p.Failures(FailureKind::kOther),
            0u)
      << "new connections refused";
  EXPECT_EQ(s.wrong_answers() + p.wrong_answers(), 0u);
  EXPECT_GT(p.sessions_completed, 500u) << "probes barely ran";
  EXPECT_FALSE(daemon_->exited());
}

// The OOM killer's storm: a SIGKILL every 50 ms for 20 s, each at a random
// live worker of four. Killed from outside, a worker that was serving did not
// fail: it is replaced at once, so the service is never without workers for
// long, and the clients queued meanwhile are served, none times out.
TEST_F(KillFaultTest, StormOfKillNinesNeverLeavesTheServiceWithoutWorkers) {
  constexpr size_t kWorkers = 4;
  constexpr auto kStorm = 20s;
  constexpr auto kInterval = 50ms;
  Figures fig;
  ASSERT_NO_FATAL_FAILURE(Start("workers = " + std::to_string(kWorkers) + "\n", kWorkers));
  // New short connections all the time; waiting 1 s for an answer is a timeout.
  LoadOptions po = Probes(4, 2ms);
  po.timeout = 1s;
  LoadEngine probes(po);
  ASSERT_TRUE(probes.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return probes.Stats().sessions_completed >= 20; }, 10s)) << probes.Stats().Summary();

  // Samples the live workers every millisecond: how long were there none?
  std::atomic<bool> sampling{true};
  Clock::duration zero_total{}, zero_longest{};
  uint64_t samples = 0;
  std::thread sampler([&] {
    std::optional<Clock::time_point> zero_since;
    while (sampling.load()) {
      auto now = Clock::now();
      bool none = LiveChildren(daemon_->pid()).empty();
      ++samples;
      if (none && !zero_since) zero_since = now;
      if (!none && zero_since) {
        zero_total += now - *zero_since;
        zero_longest = std::max(zero_longest, now - *zero_since);
        zero_since.reset();
      }
      std::this_thread::sleep_for(1ms);
    }
    if (zero_since) {
      zero_total += Clock::now() - *zero_since;
      zero_longest = std::max(zero_longest, Clock::now() - *zero_since);
    }
  });

  const unsigned seed = static_cast<unsigned>(std::random_device{}());
  std::mt19937 rng(seed);
  int kills = 0;
  auto start = Clock::now();
  for (auto next = start; Clock::now() - start < kStorm; next += kInterval) {
    std::this_thread::sleep_until(next);
    std::vector<pid_t> live = LiveChildren(daemon_->pid());
    if (live.empty()) continue;
    pid_t victim = live[std::uniform_int_distribution<size_t>(0, live.size() - 1)(rng)];
    if (daemon_->SignalWorker(victim, SIGKILL)) ++kills;
  }
  auto storm_end = Clock::now();
  // The service recovers its full size at once afterwards.
  bool refilled = WaitFor([&] { return LiveChildren(daemon_->pid()).size() == kWorkers; }, 2s, 1ms);
  double refill_ms = Millis(Clock::now() - storm_end);
  sampling = false;
  sampler.join();
  // Sessions still waiting for a worker get it now; then none may have timed out.
  EXPECT_TRUE(WaitForProgress(probes, 20)) << probes.Stats().Summary();
  probes.Stop();
  LoadStats p = probes.Stats();
  LatencySummary lat = Summarize(probes.Latency());

  fig.Add("kills", kills)
      .Add("workers", static_cast<int>(kWorkers))
      .Add("storm_seconds", Seconds(storm_end - start))
      .Add("zero_workers_ms_total", Millis(zero_total))
      .Add("zero_workers_ms_longest", Millis(zero_longest))
      .Add("samples", samples)
      .Add("refill_after_storm_ms", refill_ms)
      .AddLoad("probe_", p)
      .Add("probe_latency_p99_ms", lat.p99_ms)
      .Add("probe_latency_max_ms", lat.max_ms)
      .Add("seed", seed);

  EXPECT_GE(kills, 300) << "the storm did not rage";
  EXPECT_LE(zero_longest, 1s) << "no worker at all for " << Millis(zero_longest) << " ms";
  EXPECT_TRUE(refilled) << "not back to " << kWorkers << " workers 2 s after the storm";
  EXPECT_EQ(p.Failures(FailureKind::kRefused), 0u) << "the listening socket stays open: nobody is refused";
  EXPECT_EQ(p.Failures(FailureKind::kTimeout), 0u) << "clients waited over 1 s for a worker:" << Describe(probes.Failures());
  EXPECT_EQ(p.wrong_answers(), 0u);
  EXPECT_GT(p.sessions_completed, 1000u) << p.Summary();
  EXPECT_FALSE(daemon_->exited()) << daemon_->Log();
  EXPECT_FALSE(daemon_->LogContains("not respawning")) << daemon_->Log();
}

TEST_F(KillFaultTest, KillNineOfTheSupervisorLeavesNoWorkerAfterTwoSeconds) {
  constexpr int kRounds = 3;
  Figures fig;
  double worst_ms = 0;
  uint64_t wrong = 0;
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round + 1));
    TempDir dir;
    uint16_t port = blackbox::FreePort();
    std::string addr = "127.0.0.1:" + std::to_string(port);
    std::string config = dir.Write("rot13d.toml", "listen = [\"" + addr +
                                                      "\"]\nlog_target = \"stderr\"\nworkers = 4\nuser = \"root\"\n");
    Daemon d(dir, config);
    ASSERT_TRUE(d.WaitReady()) << d.Log();
    ASSERT_TRUE(d.WaitForWorkerCount(4));
    LoadOptions o = LoadAt(addr);
    o.connections = 16;
    o.min_bytes = o.max_bytes = 1ull << 40;
    o.message = 4096;
    o.think = 5ms;
    LoadEngine load(o);
    ASSERT_TRUE(load.Start().ok());
    ASSERT_TRUE(WaitFor([&] { return load.ServedPorts().size() >= 12; }, 10s));
    std::vector<pid_t> workers = d.Workers();
    ASSERT_EQ(workers.size(), 4u);

    auto t0 = Clock::now();
    ASSERT_EQ(kill(d.pid(), SIGKILL), 0);
    ASSERT_TRUE(d.WaitExit());
    bool gone = WaitFor([&] { return std::none_of(workers.begin(), workers.end(), blackbox::ProcessAlive); }, 5s, 1ms);
    double ms = Millis(Clock::now() - t0);
    worst_ms = std::max(worst_ms, ms);
    EXPECT_TRUE(gone) << "workers alive 5 s after the supervisor died";
    EXPECT_LE(ms, 2000.0) << "the last worker died " << ms << " ms after the supervisor";
    // Nobody holds the listening socket any more: a client is refused, not queued.
    EXPECT_TRUE(WaitFor([&] { return !Client::Connect(addr, 500ms).connected(); }, 2s));
    // Every session ends (reset or EOF), none hangs on a dead worker.
    EXPECT_TRUE(WaitFor([&] { return load.ServedPorts().empty(); }, 3s));
    load.Stop();
    wrong += load.Stats().wrong_answers();
  }
  fig.Add("rounds", kRounds).Add("workers", 4).Add("last_worker_gone_ms_max", worst_ms).Add("wrong_answers", wrong);
  EXPECT_EQ(wrong, 0u);
}

}  // namespace
}  // namespace rot13d::fault
