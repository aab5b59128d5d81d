// kill -9 under load: of random workers (only their own connections may
// suffer, new clients are never refused, the slot is refilled within 1 s), and
// of the supervisor (no worker outlives it by 2 s).
#include <signal.h>

#include <algorithm>
#include <map>
#include <random>
#include <thread>

#include "tests/fault/fault_test.h"

namespace rot13d::fault {
namespace {

using KillFaultTest = FaultTest;

TEST_F(KillFaultTest, FiftyKillNinesOfRandomWorkersUnderLoad) {
  constexpr int kKills = 50;
  constexpr size_t kWorkers = 8;
  // The restart delay doubles from 100 ms for a slot whose worker lived < 10 s
  // (the daemon's backoff). A victim is chosen so that its slot's next delay is
  // at most 400 ms: "refilled within 1 s" then measures the daemon, not the backoff.
  constexpr int kMaxQuickKillsPerSlot = 3;
  constexpr auto kHealthyAfter = 10s;
  Figures fig;
  ASSERT_NO_FATAL_FAILURE(Start("workers = " + std::to_string(kWorkers) + "\n", kWorkers));

  // Long sessions (they outlive the test) doing 4 KiB requests every few ms,
  // and probes that open a new connection every few ms.
  LoadOptions o = Load(48, 1ull << 40, 1ull << 40, 4096, 20ms);
  o.threads = 2;
  LoadEngine load(o);
  LoadEngine probes(Probes(2, 5ms));
  load.Start();
  probes.Start();
  ASSERT_TRUE(WaitFor([&] { return load.ServedPorts().size() >= 40; }, 10s)) << load.Stats().Summary();

  struct Slot {
    int quick_kills = 0;  // consecutive kills of workers that lived < kHealthyAfter
    Clock::time_point born;
  };
  std::map<pid_t, Slot> slots;
  for (pid_t p : daemon_->Workers()) slots[p] = {0, Clock::now()};

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
        auto it = slots.find(w);
        if (it == slots.end()) continue;
        bool healthy = now - it->second.born >= kHealthyAfter;
        int next = (healthy ? 0 : it->second.quick_kills) + 1;
        // Killed before it accepts, a worker counts as a boot failure: only kill
        // one seen holding a connection, or one old enough to be long past booting.
        bool booted = std::count(owners_seen.begin(), owners_seen.end(), w) > 0 || now - it->second.born >= 1s;
        if (next <= kMaxQuickKillsPerSlot && booted) eligible.push_back(w);
      }
      if (eligible.empty()) return false;
      victim = eligible[std::uniform_int_distribution<size_t>(0, eligible.size() - 1)(rng)];
      return true;
    }, 20s, 20ms)) << "no worker eligible to be killed";

    fault = SnapshotOwners(load, port_, workers, victim);
    victim_connections += fault.victim_ports.size();
    Slot slot = slots[victim];
    slots.erase(victim);
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
    bool healthy = fault.at - slot.born >= kHealthyAfter;
    slots[replacement] = {(healthy ? 0 : slot.quick_kills) + 1, refilled};
    EXPECT_LE(refill_ms.back(), 1000.0) << "slot of worker " << victim << " refilled after " << refill_ms.back()
                                        << " ms";
    std::this_thread::sleep_for(milliseconds(std::uniform_int_distribution<int>(50, 250)(rng)));
  }
  std::this_thread::sleep_for(500ms);  // failures caused by the last kill surface
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
      .Add("probe_refused", p.refused)
      .Add("probe_reset_or_eof", p.resets + p.early_eofs)
      .Add("seed", seed);

  EXPECT_EQ(static_cast<int>(faults.size()), kKills);
  EXPECT_TRUE(lv.violations.empty()) << "connections not on the killed worker failed:" << Join(lv.violations);
  EXPECT_TRUE(pv.violations.empty()) << "new connections failed:" << Join(pv.violations);
  EXPECT_EQ(s.refused + p.refused + s.connect_errors + p.connect_errors, 0u) << "new connections refused";
  EXPECT_EQ(s.corrupt_bytes + p.corrupt_bytes, 0u);
  EXPECT_GT(p.sessions_completed, 500u) << "probes barely ran";
  EXPECT_FALSE(daemon_->exited());
}

TEST_F(KillFaultTest, KillNineOfTheSupervisorLeavesNoWorkerAfterTwoSeconds) {
  constexpr int kRounds = 3;
  Figures fig;
  double worst_ms = 0;
  uint64_t corrupt = 0;
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
    LoadOptions o;
    o.address = addr;
    o.connections = 16;
    o.min_bytes = o.max_bytes = 1ull << 40;
    o.chunk = 4096;
    o.think = 5ms;
    LoadEngine load(o);
    load.Start();
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
    corrupt += load.Stats().corrupt_bytes;
  }
  fig.Add("rounds", kRounds).Add("workers", 4).Add("last_worker_gone_ms_max", worst_ms).Add("corrupt_bytes", corrupt);
  EXPECT_EQ(corrupt, 0u);
}

}  // namespace
}  // namespace rot13d::fault
