// sd_notify as systemd would receive it: readiness, reload, stop and status, from the supervisor only.
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include "tests/blackbox/daemon_test.h"

namespace rot13d::blackbox {
namespace {

using NotifyTest = DaemonTest;

uint64_t MonotonicUsec() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000u + static_cast<uint64_t>(ts.tv_nsec) / 1000u;
}

std::string Texts(const std::vector<NotifySocket::Message>& messages) {
  std::string all;
  for (const auto& m : messages) all += "[" + m.text + "] ";
  return all;
}

TEST_F(NotifyTest, ReadyReloadingStoppingAndStatus) {
  NotifySocket notify(dir_.File("notify.sock"));
  Daemon::Options options;
  options.extra_env = {"NOTIFY_SOCKET=" + notify.path()};
  ASSERT_NO_FATAL_FAILURE(Start("workers = 1\n", 1, options));
  std::vector<NotifySocket::Message> seen;

  auto ready = notify.WaitFor("READY=1", &seen);
  ASSERT_TRUE(ready) << "no READY=1; got " << Texts(seen);
  EXPECT_TRUE(HasLine(ready->text, "READY=1"));
  auto status = LineValue(ready->text, "STATUS");
  ASSERT_TRUE(status) << ready->text;
  EXPECT_TRUE(status->starts_with("1 worker")) << *status;  // "1 worker" or "1 workers"
  EXPECT_NE(status->find("(generation 1)"), std::string::npos) << *status;
  EXPECT_EQ(FreshRoundTrip("Hello"), "Uryyb") << "READY=1 must mean serving";

  uint64_t before_hup = MonotonicUsec();
  daemon_->Signal(SIGHUP);
  seen.clear();
  auto reloading = notify.WaitFor("RELOADING=1", &seen);
  ASSERT_TRUE(reloading) << "no RELOADING=1; got " << Texts(seen);
  auto usec_text = LineValue(reloading->text, "MONOTONIC_USEC");
  ASSERT_TRUE(usec_text) << reloading->text;
  uint64_t usec = std::stoull(*usec_text);
  // systemd compares this with the time it sent SIGHUP: it must be the same clock.
  EXPECT_GE(usec, before_hup);
  EXPECT_LE(usec, MonotonicUsec());
  auto reloaded = notify.WaitFor("READY=1", &seen);
  ASSERT_TRUE(reloaded) << "no READY=1 after the reload; got " << Texts(seen);
  ASSERT_TRUE(LineValue(reloaded->text, "STATUS"));
  EXPECT_NE(LineValue(reloaded->text, "STATUS")->find("generation 2"), std::string::npos) << reloaded->text;

  // A failed reload is announced too, and readiness restored: systemd waits for it.
  WriteConfig("workers = \"lots\"\n");
  daemon_->Signal(SIGHUP);
  seen.clear();
  ASSERT_TRUE(notify.WaitFor("RELOADING=1", &seen)) << "no RELOADING=1; got " << Texts(seen);
  auto kept = notify.WaitFor("READY=1", &seen);
  ASSERT_TRUE(kept) << "no READY=1 after a failed reload; got " << Texts(seen);
  EXPECT_NE(kept->text.find("last reload: failed"), std::string::npos) << kept->text;

  daemon_->Signal(SIGTERM);
  seen.clear();
  auto stopping = notify.WaitFor("STOPPING=1", &seen);
  ASSERT_TRUE(stopping) << "no STOPPING=1; got " << Texts(seen);
  std::optional<int> exit = daemon_->WaitExit();
  ASSERT_TRUE(exit);
  EXPECT_TRUE(WIFEXITED(*exit) && WEXITSTATUS(*exit) == 0);

  // Everything that arrived came from the supervisor: workers know nothing of systemd.
  while (auto m = notify.Receive(0ms)) seen.push_back(*m);
  for (const auto* m : {&*ready, &*reloading, &*reloaded, &*kept, &*stopping}) {
    EXPECT_EQ(m->sender, daemon_->pid()) << m->text;
  }
  for (const auto& m : seen) EXPECT_EQ(m.sender, daemon_->pid()) << m.text;
}

TEST_F(NotifyTest, WatchdogIsPetFromTheLoop) {
  NotifySocket notify(dir_.File("notify.sock"));
  Daemon::Options options;
  options.extra_env = {"NOTIFY_SOCKET=" + notify.path(), "WATCHDOG_USEC=200000"};
  ASSERT_NO_FATAL_FAILURE(Start("workers = 1\n", 1, options));
  // Pets come at half the interval; three in a row show a loop that keeps turning.
  std::vector<NotifySocket::Message> seen;
  for (int i = 0; i < 3; ++i) {
    auto pet = notify.WaitFor("WATCHDOG=1", &seen, 2s);
    ASSERT_TRUE(pet) << "pet " << i << " missing; got " << Texts(seen);
    EXPECT_EQ(pet->sender, daemon_->pid());
  }
}

}  // namespace
}  // namespace rot13d::blackbox
