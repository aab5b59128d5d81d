// A reload whose workers crash at boot (a real boot failure, from the test-hook
// build): the crash-loop governor caps forks at one per second, the log stays
// bounded, the old generation serves throughout, and the canary is abandoned.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <thread>

#include "tests/fault/fault_test.h"

namespace rot13d::fault {
namespace {

class CrashLoopFaultTest : public FaultTest {
 protected:
  Daemon::Options HookedOptions() {
    Daemon::Options options;
    options.binary = blackbox::TestHooksDaemonPath();
    options.extra_env.push_back("ROT13D_TEST_FAIL_BOOT_FILE=" + fail_file_);
    return options;
  }
  std::string fail_file_ = dir_.File("fail-boot");
};

TEST_F(CrashLoopFaultTest, CanaryCrashingAtBootIsGovernedAndOldGenerationServes) {
  Figures fig;
  // Debug level: the supervisor logs each fork ("worker PID started in slot S of generation G").
  const std::string common =
      "log_level = \"debug\"\ncrash_loop_failures = 3\ncrash_loop_window = 10\nshutdown_timeout = 30\n";
  ASSERT_NO_FATAL_FAILURE(Start(common + "workers = 2\n", 2, HookedOptions()));
  const std::vector<pid_t> old = daemon_->Workers();

  LoadEngine load(Load(12, 4096, 64 * 1024, 4096, 20ms));
  LoadEngine probes(Probes(2, 10ms));
  ASSERT_TRUE(load.Start().ok());
  ASSERT_TRUE(probes.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return load.Stats().sessions_completed >= 10; }, 10s)) << load.Stats().Summary();

  dir_.Write("fail-boot", "crash");  // exit 1 at boot: retried, unlike exit 4
  WriteConfig(common + "workers = 4\n");
  const size_t log_offset = daemon_->Log().size();
  auto hup_at = Clock::now();
  daemon_->Signal(SIGHUP);

  // Until the canary is given up: the old workers stay, every one of them.
  int old_changed = 0;
  bool abandoned = WaitFor([&] {
    if (daemon_->Workers() != old) {
      // Canary workers come and go; the old ones must all be there.
      std::vector<pid_t> now = daemon_->Workers();
      for (pid_t p : old) old_changed += std::count(now.begin(), now.end(), p) == 0;
    }
    return daemon_->LogContains("reload failed: generation 2 abandoned");
  }, 60s, 20ms);
  auto abandoned_at = Clock::now();
  ASSERT_TRUE(abandoned) << "the canary was never abandoned";
  // Deaths past the burst were only counted: their summary closes the window
  // (10 s after the first). Meanwhile the old generation serves on.
  bool summarized = daemon_->WaitForLog("repeated messages suppressed", 20s);
  EXPECT_TRUE(WaitForProgress(probes, 20)) << "the old generation stopped answering: " << probes.Stats().Summary();
  ASSERT_EQ(unlink(fail_file_.c_str()), 0);
  load.Stop();
  probes.Stop();

  std::vector<LogLine> lines = ParseLog(daemon_->Log().substr(log_offset));
  ASSERT_FALSE(lines.empty());
  std::vector<double> forks;  // wall-clock seconds of generation 2's forks
  std::vector<double> non_debug;
  double governor_at = 0, abandon_at = 0;
  const double first_at = lines.front().wall_seconds;
  size_t death_lines = 0;
  uint64_t suppressed = 0;
  for (const LogLine& l : lines) {
    const std::string& m = l.message;
    if (l.level != "debug") non_debug.push_back(l.wall_seconds);
    if (m.find("started in slot") != std::string::npos && m.find("of generation 2") != std::string::npos) {
      forks.push_back(l.wall_seconds);
    }
    if (m.find(", generation 2) exited") != std::string::npos) ++death_lines;
    if (m.find("generation 2:") != std::string::npos && m.find("repeated messages suppressed") != std::string::npos) {
      // "worker of generation 2: exited with code 4 before it was accepting: 3 more times within 10 s (...)"
      size_t more = m.find(" more time");
      size_t num = m.rfind(' ', more - 1);
      if (more != std::string::npos && num != std::string::npos) suppressed += std::stoull(m.substr(num + 1, more - num - 1));
    }
    if (governor_at == 0 && m.find("crash loop") != std::string::npos) governor_at = l.wall_seconds;
    if (abandon_at == 0 && m.find("abandoned") != std::string::npos) abandon_at = l.wall_seconds;
  }
  ASSERT_FALSE(forks.empty()) << "no \"started in slot ... of generation 2\" debug lines";
  ASSERT_GT(governor_at, 0) << "no \"crash loop\" line: the governor never engaged";
  ASSERT_GT(abandon_at, 0);

  // After the governor engaged: at most one fork per second (ms stamps, 100 ms of slack).
  std::vector<double> governed;
  for (double f : forks) {
    if (f > governor_at) governed.push_back(f);
  }
  double min_gap = 1e9;
  for (size_t i = 1; i < governed.size(); ++i) min_gap = std::min(min_gap, governed[i] - governed[i - 1]);
  // Log volume: the most non-debug lines in any 60 s window since the reload.
  size_t per_min = 0;
  for (size_t i = 0, j = 0; i < non_debug.size(); ++i) {
    while (non_debug[i] - non_debug[j] >= 60.0) ++j;
    per_min = std::max(per_min, i - j + 1);
  }
  size_t forks_after_abandon = static_cast<size_t>(std::count_if(forks.begin(), forks.end(), [&](double f) {
    return f > abandon_at + 0.001;
  }));
  LoadStats s = load.Stats(), p = probes.Stats();

  fig.Add("forks_gen2", forks.size())
      .Add("forks_before_governor", forks.size() - governed.size())
      .Add("forks_after_governor", governed.size())
      .Add("min_gap_after_governor_s", governed.size() > 1 ? min_gap : 0.0)
      .Add("fork_rate_after_governor_per_s",
           governed.size() > 1 ? static_cast<double>(governed.size() - 1) / (governed.back() - governed.front()) : 0.0)
      .Add("governor_engaged_after_s", governor_at - first_at)
      .Add("abandoned_after_s", Seconds(abandoned_at - hup_at))
      .Add("death_lines_logged", death_lines)
      .Add("deaths_suppressed", suppressed)
      .Add("log_lines_max_per_60s", per_min)
      .Add("log_lines_total", non_debug.size())
      .Add("forks_after_abandon", forks_after_abandon)
      .Add("old_pid_changes", old_changed)
      .AddLoad("", s)
      .Add("probe_sessions", p.sessions_started)
      .Add("probe_failures", p.total_failures());

  EXPECT_GE(governed.size(), 2u) << "too few governed forks to measure a rate";
  if (governed.size() > 1) {
    EXPECT_GE(min_gap, 0.9) << "two forks of the crash-looping generation " << min_gap << " s apart";
  }
  EXPECT_EQ(forks_after_abandon, 0u);
  // Every death is told, either on its own line or in a summary's count.
  EXPECT_TRUE(summarized) << "no summary of the suppressed repeats";
  EXPECT_EQ(death_lines + suppressed, forks.size()) << death_lines << " death lines + " << suppressed
                                                     << " suppressed for " << forks.size() << " forks";
  EXPECT_LE(death_lines, 6u) << "repeated deaths were not collapsed";
  EXPECT_LE(per_min, 30u) << "log lines in one minute";
  EXPECT_EQ(old_changed, 0) << "an old worker was replaced during the failed reload";
  EXPECT_EQ(daemon_->Workers(), old) << "the old generation must keep its pids";
  EXPECT_EQ(s.total_failures() + p.total_failures(), 0u)
      << "load: " << s.Summary() << "\nprobes: " << p.Summary() << Describe(load.Failures())
      << Describe(probes.Failures());
  EXPECT_GT(p.sessions_completed, 100u);
  EXPECT_EQ(FreshRoundTrip("still serving"), blackbox::Rot13("still serving"));
}

}  // namespace
}  // namespace rot13d::fault
