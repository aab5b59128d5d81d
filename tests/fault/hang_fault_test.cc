// A worker that stops (SIGSTOP: alive, holding its connections and its place
// on the listeners, doing nothing) is found by its stale heartbeat and replaced
// within heartbeat_timeout + 1 s.
#include <signal.h>

#include <algorithm>
#include <random>
#include <thread>

#include "tests/fault/fault_test.h"

namespace rot13d::fault {
namespace {

using HangFaultTest = FaultTest;

TEST_F(HangFaultTest, StoppedWorkerIsReplacedWithinHeartbeatTimeoutPlusOneSecond) {
  constexpr int kRounds = 3;
  constexpr double kHeartbeatTimeoutS = 1.0;
  Figures fig;
  ASSERT_NO_FATAL_FAILURE(Start("workers = 2\nheartbeat_timeout = 1\n", 2));
  LoadOptions o = Load(8, 1ull << 40, 1ull << 40, 4096, 20ms);
  o.stall_timeout = 20s;  // a session on the stopped worker ends with it, not by our patience
  LoadEngine load(o);
  LoadEngine probes(Probes(1, 10ms));
  load.Start();
  probes.Start();
  ASSERT_TRUE(WaitFor([&] { return load.ServedPorts().size() >= 6; }, 10s));

  std::mt19937 rng(42);
  std::vector<WorkerFault> faults;
  std::vector<double> replaced_ms;
  int hung_lines_named = 0;
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round + 1));
    std::vector<pid_t> workers = LiveChildren(daemon_->pid());
    ASSERT_EQ(workers.size(), 2u);
    pid_t victim = workers[std::uniform_int_distribution<size_t>(0, 1)(rng)];
    WorkerFault fault = SnapshotOwners(load, port_, workers, victim);
    fault.at = Clock::now();
    ASSERT_EQ(kill(victim, SIGSTOP), 0);
    faults.push_back(fault);

    bool replaced = WaitFor([&] {
      std::vector<pid_t> now = LiveChildren(daemon_->pid());
      return now.size() == 2 && !std::count(now.begin(), now.end(), victim);
    }, 10s, 2ms);
    replaced_ms.push_back(Millis(Clock::now() - fault.at));
    if (!replaced) kill(victim, SIGKILL);  // never leave a stopped process behind
    ASSERT_TRUE(replaced) << "stopped worker " << victim << " not replaced in 10 s";
    EXPECT_LE(replaced_ms.back(), (kHeartbeatTimeoutS + 1.0) * 1000)
        << "stopped worker " << victim << " replaced after " << replaced_ms.back() << " ms";
    // The supervisor says which worker hung.
    bool named = WaitFor([&] {
      for (const LogLine& l : ParseLog(daemon_->Log())) {
        if (l.level == "error" && l.message.find("hung") != std::string::npos &&
            l.message.find(std::to_string(victim)) != std::string::npos) {
          return true;
        }
      }
      return false;
    }, 2s);
    hung_lines_named += named;
    EXPECT_TRUE(named) << "no error line with \"hung\" and pid " << victim;
    // Let the replacement settle and the load reconnect before the next round.
    std::this_thread::sleep_for(1s);
  }
  load.Stop();
  probes.Stop();

  LoadStats s = load.Stats(), p = probes.Stats();
  FailureVerdicts lv = JudgeFailures(load.Failures(), faults, 3s);
  FailureVerdicts pv = JudgeFailures(probes.Failures(), faults, 3s);
  LatencySummary plat = probes.Latency();
  fig.Add("stops", kRounds)
      .Add("heartbeat_timeout_s", kHeartbeatTimeoutS)
      .Add("replaced_ms_min", *std::min_element(replaced_ms.begin(), replaced_ms.end()))
      .Add("replaced_ms_max", *std::max_element(replaced_ms.begin(), replaced_ms.end()))
      .Add("hung_lines", hung_lines_named)
      .Add("failures_on_stopped", lv.on_victim + pv.on_victim)
      .Add("failures_elsewhere", lv.violations.size() + pv.violations.size())
      .AddLoad("", s)
      .Add("probe_sessions", p.sessions_started)
      .Add("probe_refused", p.refused)
      .Add("probe_latency_p99_ms", plat.p99_ms)
      .Add("probe_latency_max_ms", plat.max_ms);

  EXPECT_TRUE(lv.violations.empty()) << "connections not on the stopped worker failed:" << Join(lv.violations);
  EXPECT_TRUE(pv.violations.empty()) << "new connections failed:" << Join(pv.violations);
  EXPECT_EQ(s.refused + p.refused, 0u);
  EXPECT_EQ(s.corrupt_bytes + p.corrupt_bytes, 0u);
}

}  // namespace
}  // namespace rot13d::fault
