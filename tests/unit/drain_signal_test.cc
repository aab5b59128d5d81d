// The drain request: who may set a worker's deadline, and when it cuts what is left.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <chrono>

#include "common/unique_fd.h"
#include "daemon/drain_signal.h"

namespace rot13d::daemon {
namespace {

TEST(DrainSignal, OnlyTheSupervisorsQueuedSignalCarriesADeadline) {
  signalfd_siginfo si{};
  si.ssi_signo = SIGTERM;
  si.ssi_code = SI_QUEUE;
  si.ssi_pid = 812;
  si.ssi_int = 30000;
  EXPECT_EQ(DrainTimeOf(si, 812), std::chrono::milliseconds(30000));
  EXPECT_EQ(DrainTimeOf(si, 813), std::nullopt) << "from someone else";
  si.ssi_code = SI_USER;  // kill(2)
  EXPECT_EQ(DrainTimeOf(si, 812), std::nullopt);
}

// Both sides: what SendDrainSignal sends, a signalfd reads back with its drain time.
TEST(DrainSignal, RoundTripThroughASignalfd) {
  sigset_t set, old;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR2);  // not SIGTERM: harmless should the test go wrong
  ASSERT_EQ(sigprocmask(SIG_BLOCK, &set, &old), 0);
  UniqueFd fd(signalfd(-1, &set, SFD_CLOEXEC));
  ASSERT_TRUE(fd.valid());
  ASSERT_TRUE(SendDrainSignal(getpid(), SIGUSR2, std::chrono::milliseconds(1234)));
  signalfd_siginfo si{};
  EXPECT_EQ(read(fd.get(), &si, sizeof si), static_cast<ssize_t>(sizeof si));
  EXPECT_EQ(DrainTimeOf(si, getpid()), std::chrono::milliseconds(1234));
  sigprocmask(SIG_SETMASK, &old, nullptr);
}

TEST(DrainSignal, CutoffLeavesATenthAtMost250Ms) {
  using std::chrono::milliseconds;
  EXPECT_EQ(DrainCutoff(milliseconds(30000)), milliseconds(29750));
  EXPECT_EQ(DrainCutoff(milliseconds(1000)), milliseconds(900));
  EXPECT_EQ(DrainCutoff(milliseconds(500)), milliseconds(450));
  EXPECT_EQ(DrainCutoff(milliseconds(0)), milliseconds(0));
}

}  // namespace
}  // namespace rot13d::daemon
