// Workers that cannot boot: the supervisor gives up instead of forking in a
// loop, and a reload whose new workers cannot boot leaves the old generation
// serving. Uses rot13d_testhooks, whose workers fail to boot while a file exists.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>

#include "common/exit_codes.h"
#include "tests/blackbox/daemon_test.h"

namespace rot13d::blackbox {
namespace {

class BootFailureTest : public DaemonTest {
 protected:
  Daemon::Options HookedOptions() {
    Daemon::Options options;
    options.binary = TestHooksDaemonPath();
    options.extra_env.push_back("ROT13D_TEST_FAIL_BOOT_FILE=" + fail_file_);
    return options;
  }
  // Workers exit with code 4, "cannot boot" (the file empty), or crash at boot
  // with code 1 (the file says "crash").
  void BreakBoot(const std::string& how = "") { dir_.Write("fail-boot", how); }
  void MendBoot() { ASSERT_EQ(unlink(fail_file_.c_str()), 0); }

  std::string fail_file_ = dir_.File("fail-boot");
};

// Exit code 4 is a worker saying that trying again will not help: the
// generation gives up at its first such death (gunicorn's WORKER_BOOT_ERROR).
TEST_F(BootFailureTest, FirstGenerationThatCannotBootGivesUpAtOnceWithExitCode4) {
  BreakBoot();
  daemon_ = std::make_unique<Daemon>(dir_, WriteConfig("workers = 2\n"), HookedOptions());
  ASSERT_TRUE(daemon_->started());
  std::optional<int> status = daemon_->WaitExit(10s);
  ASSERT_TRUE(status) << daemon_->Log();
  ASSERT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), kExitCannotBoot) << daemon_->Log();
  EXPECT_TRUE(daemon_->LogContains("worker cannot boot: test hook")) << "the worker says why\n" << daemon_->Log();
  EXPECT_TRUE(daemon_->LogContains("cannot boot (its worker exited with code 4")) << daemon_->Log();
  EXPECT_TRUE(daemon_->LogContains("workers cannot boot")) << daemon_->Log();
  EXPECT_FALSE(daemon_->LogContains("ready:"));
  EXPECT_FALSE(daemon_->LogContains("restarting")) << "no retry:\n" << daemon_->Log();
  // One fork per slot at most: both slots may be forked before the first death is seen.
  size_t deaths = daemon_->LogCount("before it was accepting");
  EXPECT_GE(deaths, 1u);
  EXPECT_LE(deaths, 2u) << daemon_->Log();
  EXPECT_TRUE(GroupPids(daemon_->pid()).empty()) << "a worker outlived the supervisor";
}

// A crash at boot (any other death before accepting) may be passing: the slot
// backs off, and the generation gives up on the fifth in a row.
TEST_F(BootFailureTest, FirstGenerationCrashingAtBootGivesUpAfterFiveTries) {
  BreakBoot("crash");
  daemon_ = std::make_unique<Daemon>(dir_, WriteConfig("workers = 2\n"), HookedOptions());
  ASSERT_TRUE(daemon_->started());
  // Backoff 100+200+400+800 ms before the fifth failure: well inside 10 s.
  std::optional<int> status = daemon_->WaitExit(10s);
  ASSERT_TRUE(status) << daemon_->Log();
  ASSERT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), kExitCannotBoot) << daemon_->Log();
  EXPECT_TRUE(daemon_->LogContains("failed to boot 5 times in a row")) << daemon_->Log();
  EXPECT_TRUE(daemon_->LogContains("workers cannot boot")) << daemon_->Log();
  EXPECT_FALSE(daemon_->LogContains("ready:"));
  // Forks are bounded: at most 5 per slot before the generation is halted.
  size_t deaths = daemon_->LogCount("before it was accepting");
  EXPECT_GE(deaths, 5u);
  EXPECT_LE(deaths, 10u) << daemon_->Log();
  EXPECT_TRUE(GroupPids(daemon_->pid()).empty()) << "a worker outlived the supervisor";
}

TEST_F(BootFailureTest, ReloadWhoseWorkersCannotBootKeepsTheOldGenerationServing) {
  ASSERT_NO_FATAL_FAILURE(Start("workers = 2\n", 2, HookedOptions()));
  std::vector<pid_t> before = daemon_->Workers();
  Client held = Client::Connect(address());
  ASSERT_TRUE(held.connected()) << held.error();
  ASSERT_EQ(held.RoundTrip("before"), Rot13("before"));

  // The failing reload also adds an address: bound for the new generation, it
  // must be closed (and its socket file removed) when that generation is abandoned.
  std::string added_path = dir_.File("added.sock");
  BreakBoot();
  dir_.Write("rot13d.toml", "listen = [\"" + address() + "\", \"unix:" + added_path +
                                "\"]\nlog_target = \"stderr\"\nworkers = 3\nuser = \"root\"\n");
  daemon_->Signal(SIGHUP);
  ASSERT_TRUE(daemon_->WaitForLog("listening on unix:" + added_path)) << daemon_->Log();
  ASSERT_TRUE(daemon_->WaitForLog("reload failed: generation 2 abandoned", 10s)) << daemon_->Log();
  ASSERT_TRUE(daemon_->WaitForLog("closing listener unix:" + added_path)) << daemon_->Log();
  EXPECT_NE(access(added_path.c_str(), F_OK), 0) << added_path << " outlived the abandoned generation";
  EXPECT_TRUE(daemon_->LogContains("cannot boot (its worker exited with code 4")) << daemon_->Log();
  // The old generation never stopped: same pids, old and new connections served.
  EXPECT_TRUE(WaitFor([&] { return daemon_->Workers() == before; }, kStartTimeout))
      << "workers changed after a failed reload";
  EXPECT_EQ(held.RoundTrip("during"), Rot13("during"));
  EXPECT_EQ(FreshRoundTrip("fresh"), Rot13("fresh"));
  EXPECT_LE(daemon_->LogCount("before it was accepting"), 3u) << "forked again after exit code 4";

  // Mended, the same file applies. (Closing the held connection lets its old
  // worker finish draining, so only the new generation remains.)
  held.Close();
  MendBoot();
  daemon_->Signal(SIGHUP);
  ASSERT_TRUE(daemon_->WaitForLog("reload complete: generation 3", 10s)) << daemon_->Log();
  ASSERT_TRUE(daemon_->WaitForWorkerCount(3));
  std::vector<pid_t> after = daemon_->Workers();
  for (pid_t p : before) EXPECT_EQ(std::count(after.begin(), after.end(), p), 0) << "old worker " << p;
  EXPECT_EQ(FreshRoundTrip("after"), Rot13("after"));
}

}  // namespace
}  // namespace rot13d::blackbox
