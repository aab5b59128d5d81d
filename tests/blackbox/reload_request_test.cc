// `rot13d --reload PID`: the reload that tells the truth (what ExecReload= runs).
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>

#include "common/exit_codes.h"
#include "tests/blackbox/daemon_test.h"

namespace rot13d::blackbox {
namespace {

class ReloadRequestTest : public DaemonTest {
 protected:
  RunResult RequestReload(const std::string& config, const std::string& binary = DaemonPath(),
                          milliseconds timeout = 60s) {
    return RunToCompletion({binary, "-c", config, "--reload", std::to_string(daemon_->pid())}, timeout);
  }
};

TEST_F(ReloadRequestTest, AnswersZeroOnlyOnceTheNewWorkersServe) {
  ASSERT_NO_FATAL_FAILURE(Start("workers = 1\n", 1));
  std::vector<pid_t> before = daemon_->Workers();
  std::string config = WriteConfig("workers = 3\n");
  RunResult r = RequestReload(config);
  EXPECT_EQ(r.exit_code, kExitOk) << r.err << daemon_->Log();
  EXPECT_NE(r.out.find("reload applied: generation 2"), std::string::npos) << r.out;
  // Already true when the command returns, not merely soon after.
  EXPECT_TRUE(daemon_->LogContains("reload complete: generation 2 serving with 3 workers")) << daemon_->Log();
  size_t new_accepting = 0;
  for (pid_t pid : daemon_->Workers()) {
    if (std::find(before.begin(), before.end(), pid) == before.end()) ++new_accepting;
  }
  EXPECT_EQ(new_accepting, 3u);
  EXPECT_EQ(FreshRoundTrip("Hello"), "Uryyb");
}

TEST_F(ReloadRequestTest, InvalidFileIsRefusedWithItsPlaceAndNothingIsSignalled) {
  ASSERT_NO_FATAL_FAILURE(Start("workers = 2\n", 2));
  std::vector<pid_t> before = daemon_->Workers();
  std::string config = WriteConfig("workers = \"many\"\n");
  RunResult r = RequestReload(config);
  EXPECT_EQ(r.exit_code, kExitConfig);
  EXPECT_NE(r.err.find(config + ":3:11: 'workers'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("reload refused"), std::string::npos) << r.err;
  EXPECT_FALSE(daemon_->LogContains("reloading configuration")) << "the supervisor was signalled";
  EXPECT_EQ(daemon_->Workers(), before);
  EXPECT_EQ(FreshRoundTrip("Hello"), "Uryyb");
}

TEST_F(ReloadRequestTest, WorkersThatCannotBootMakeTheReloadFail) {
  std::string fail_file = dir_.File("fail-boot");
  Daemon::Options options;
  options.binary = TestHooksDaemonPath();
  options.extra_env.push_back("ROT13D_TEST_FAIL_BOOT_FILE=" + fail_file);
  ASSERT_NO_FATAL_FAILURE(Start("workers = 2\n", 2, options));
  std::vector<pid_t> before = daemon_->Workers();
  dir_.Write("fail-boot", "x");
  RunResult r = RequestReload(WriteConfig("workers = 2\n"), TestHooksDaemonPath());
  EXPECT_EQ(r.exit_code, kExitFailure) << r.out << r.err;
  EXPECT_NE(r.err.find("the new workers did not boot; the previous ones keep serving"), std::string::npos) << r.err;
  EXPECT_TRUE(daemon_->LogContains("reload failed: generation 2 abandoned")) << daemon_->Log();
  // The answer can come before a new worker, SIGKILLed with the abandon, is gone.
  EXPECT_TRUE(WaitFor([&] { return daemon_->Workers() == before; }, 2s)) << daemon_->Workers().size() << " workers";
  EXPECT_EQ(FreshRoundTrip("still"), "fgvyy");
}

TEST_F(ReloadRequestTest, BadPidsAreUsageErrorsOrFailures) {
  std::string config = WriteConfig("");
  EXPECT_EQ(RunToCompletion({DaemonPath(), "-c", config, "--reload", "abc"}).exit_code, kExitUsage);
  EXPECT_EQ(RunToCompletion({DaemonPath(), "-c", config, "--reload"}).exit_code, kExitUsage);
  // A pid that cannot exist (above pid_max's ceiling).
  RunResult r = RunToCompletion({DaemonPath(), "-c", config, "--reload", "2147483647"});
  EXPECT_EQ(r.exit_code, kExitFailure);
  EXPECT_NE(r.err.find("no process with pid 2147483647"), std::string::npos) << r.err;
  // A live process that is not rot13d is left alone (the request signal would kill it).
  r = RunToCompletion({DaemonPath(), "-c", config, "--reload", std::to_string(getpid())});
  EXPECT_EQ(r.exit_code, kExitFailure);
  EXPECT_NE(r.err.find("is not a rot13d supervisor"), std::string::npos) << r.err;
  // Nor is a worker the supervisor.
  ASSERT_NO_FATAL_FAILURE(Start("workers = 1\n", 1));
  r = RunToCompletion({DaemonPath(), "-c", config, "--reload", std::to_string(daemon_->Workers().at(0))});
  EXPECT_EQ(r.exit_code, kExitFailure);
  EXPECT_NE(r.err.find("is not a rot13d supervisor"), std::string::npos) << r.err;
}

TEST_F(ReloadRequestTest, RequestsQueueBehindPendingHangupsAndEachGetsItsAnswer) {
  ASSERT_NO_FATAL_FAILURE(Start("workers = 1\n", 1));
  std::string config = WriteConfig("workers = 2\n");
  for (int i = 0; i < 20; ++i) {
    SCOPED_TRACE(i);
    daemon_->Signal(SIGHUP);  // a plain reload in flight or pending
    RunResult r = RequestReload(config, DaemonPath(), 20s);
    ASSERT_EQ(r.exit_code, kExitOk) << r.err;
  }
  EXPECT_EQ(FreshRoundTrip("Hello"), "Uryyb");
}

}  // namespace
}  // namespace rot13d::blackbox
