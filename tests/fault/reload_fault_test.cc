// 100 SIGHUP reloads under continuous verified load, valid and invalid files in
// turn: no client may notice, a broken file changes no process, and the
// supervisor leaks no descriptor.
#include <signal.h>

#include <algorithm>
#include <random>

#include "tests/fault/fault_test.h"

namespace rot13d::fault {
namespace {

using ReloadFaultTest = FaultTest;

bool Contains(const std::vector<pid_t>& pids, pid_t p) { return std::find(pids.begin(), pids.end(), p) != pids.end(); }

TEST_F(ReloadFaultTest, HundredReloadsUnderLoadAlternatingValidAndInvalid) {
  constexpr int kReloads = 100;
  Figures fig;
  const std::string common = "shutdown_timeout = 30\n";
  ASSERT_NO_FATAL_FAILURE(Start(common + "workers = 2\n", 2));
  const int fds_at_start = OpenFdCount(daemon_->pid());

  // Sessions of up to 256 KiB in 16 KiB requests with pauses: each lives a few
  // hundred ms, so most reloads find connections open on the old generation.
  LoadOptions o = Load(24, 1024, 256 * 1024, 16 * 1024, 10ms);
  o.threads = 2;
  LoadEngine load(o);
  LoadEngine probes(Probes(2, 5ms));
  ASSERT_TRUE(load.Start().ok());
  ASSERT_TRUE(probes.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return load.Stats().requests >= 100; }, 10s)) << load.Stats().Summary();

  struct Variant {
    std::string extra;
    size_t workers;
  };
  const std::vector<Variant> valid = {
      {"workers = 3\n", 3},
      {"workers = 2\nbuffer_size = 16384\n", 2},
      {"workers = 3\nidle_timeout = 60\nbacklog = 1024\n", 3},
      {"workers = 2\nmax_connections = 5000\n", 2},
  };
  const std::vector<std::string> invalid = {
      "workers = \"lots\"\n",  // wrong type
      "backlog = = 7\n",       // syntax
      "no_such_key = 1\n",     // unknown key
      "buffer_size = 1\n",     // out of range
      "listen = []\n",         // empty listen list
  };

  std::mt19937 rng(20240501);
  std::vector<pid_t> serving = daemon_->Workers();
  size_t serving_count = 2;
  int valid_done = 0, invalid_done = 0, kept_violations = 0;
  double max_reload_ms = 0, sum_reload_ms = 0;
  int max_fds = fds_at_start;
  for (int i = 0; i < kReloads; ++i) {
    SCOPED_TRACE("reload " + std::to_string(i + 1));
    const bool is_valid = i % 2 == 0;
    std::vector<pid_t> before = daemon_->Workers();
    auto t0 = Clock::now();
    if (is_valid) {
      const Variant& v = valid[static_cast<size_t>(valid_done) % valid.size()];
      WriteConfig(common + v.extra);
      daemon_->Signal(SIGHUP);
      ASSERT_TRUE(daemon_->WaitForLogCount("reload complete: generation", static_cast<size_t>(valid_done) + 1, 20s))
          << "valid reload " << valid_done + 1 << " did not complete";
      double ms = Millis(Clock::now() - t0);
      max_reload_ms = std::max(max_reload_ms, ms);
      sum_reload_ms += ms;
      ++valid_done;
      std::vector<pid_t> now = daemon_->Workers();
      serving.clear();
      for (pid_t p : now) {
        if (!Contains(before, p)) serving.push_back(p);
      }
      serving_count = v.workers;
      ASSERT_EQ(serving.size(), v.workers) << "new generation's workers";
    } else {
      WriteConfig(common + invalid[static_cast<size_t>(invalid_done) % invalid.size()]);
      daemon_->Signal(SIGHUP);
      ASSERT_TRUE(daemon_->WaitForLogCount("is invalid; keeping generation", static_cast<size_t>(invalid_done) + 1, 20s))
          << "invalid reload " << invalid_done + 1 << " was not reported";
      ++invalid_done;
      // The serving workers are all still there, and nothing new was started
      // (old generations may meanwhile have finished draining).
      std::vector<pid_t> now = daemon_->Workers();
      for (pid_t p : serving) {
        if (!Contains(now, p)) {
          ++kept_violations;
          ADD_FAILURE() << "serving worker " << p << " gone after an invalid reload";
        }
      }
      for (pid_t p : now) {
        if (!Contains(before, p)) {
          ++kept_violations;
          ADD_FAILURE() << "worker " << p << " started by an invalid reload";
        }
      }
    }
    max_fds = std::max(max_fds, OpenFdCount(daemon_->pid()));
    // Pacing, not waiting for a state: reloads 0-60 ms apart.
    std::this_thread::sleep_for(milliseconds(std::uniform_int_distribution<int>(0, 60)(rng)));
  }

  // Let the last old generation drain, then compare descriptors.
  EXPECT_TRUE(daemon_->WaitForWorkerCount(serving_count, 30s)) << daemon_->Workers().size() << " workers";
  load.Stop();
  probes.Stop();
  const int fds_at_end = OpenFdCount(daemon_->pid());
  LoadStats s = load.Stats(), p = probes.Stats();
  LatencySummary lat = Summarize(load.Latency());

  fig.Add("reloads", valid_done + invalid_done)
      .Add("valid_reloads", valid_done)
      .Add("invalid_reloads", invalid_done)
      .Add("reload_ms_avg", valid_done ? sum_reload_ms / valid_done : 0.0)
      .Add("reload_ms_max", max_reload_ms)
      .Add("pid_changes_on_invalid", kept_violations)
      .AddLoad("", s)
      .Add("probe_sessions", p.sessions_started)
      .Add("probe_refused", p.Failures(FailureKind::kRefused))
      .Add("probe_reset", p.Failures(FailureKind::kReset))
      .Add("probe_wrong_answers", p.wrong_answers())
      .Add("latency_p99_ms", lat.p99_ms)
      .Add("latency_max_ms", lat.max_ms)
      .Add("supervisor_fds_start", fds_at_start)
      .Add("supervisor_fds_max", max_fds)
      .Add("supervisor_fds_end", fds_at_end);

  EXPECT_EQ(valid_done + invalid_done, kReloads);
  EXPECT_EQ(s.total_failures() + p.total_failures(), 0u)
      << "load: " << s.Summary() << "\nprobes: " << p.Summary() << Describe(load.Failures())
      << Describe(probes.Failures());
  EXPECT_EQ(s.Failures(FailureKind::kRefused) + p.Failures(FailureKind::kRefused), 0u);
  EXPECT_EQ(s.Failures(FailureKind::kReset) + p.Failures(FailureKind::kReset), 0u);
  EXPECT_EQ(s.wrong_answers() + p.wrong_answers(), 0u);
  EXPECT_GT(s.sessions_completed, 100u) << "the load barely ran";
  EXPECT_EQ(fds_at_end, fds_at_start) << "supervisor descriptors before and after " << kReloads << " reloads";
  EXPECT_FALSE(daemon_->LogContains("before it was accepting")) << "a worker failed during the reloads";
}

}  // namespace
}  // namespace rot13d::fault
