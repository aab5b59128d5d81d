// The supervisor's pure decisions: exit decoding, backoff, what to do on an exit, and the plan.
#include "supervisor/planner.h"

#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <csignal>
#include <filesystem>
#include <ostream>
#include <string>
#include <vector>

#include "common/exit_codes.h"

namespace rot13d::supervisor {

// gtest prints Actions as bytes otherwise. Found by ADL, so it lives in Action's namespace.
void PrintTo(const Action& a, std::ostream* os);
void PrintTo(const Action& a, std::ostream* os) {
  static const char* names[] = {"Spawn", "Signal", "Promote", "Abandon", "CloseRetired", "Exit", "AbortHung"};
  *os << names[static_cast<int>(a.kind)] << "{slot=" << a.slot << " gen=" << a.generation << " pid=" << a.pid
      << " sig=" << a.signal << " code=" << a.exit_code << "}";
}

namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Kind = Action::Kind;

// ---- ExitStatus from real children ---------------------------------------------

// Forks a child that runs body (which must not return) and returns its raw wait status.
template <typename Body>
int WaitStatusOf(Body body) {
  pid_t pid = fork();
  if (pid == 0) {
    body();
    _exit(120);  // body returned: not what the test meant
  }
  EXPECT_GT(pid, 0);
  int status = 0;
  pid_t r;
  do {
    r = waitpid(pid, &status, 0);
  } while (r < 0 && errno == EINTR);
  EXPECT_EQ(r, pid);
  return status;
}

// A child killed by sig, never dumping core (not dumpable), so the result is
// the same whatever core_pattern and ulimit -c the machine has.
int KilledBy(int sig) {
  return WaitStatusOf([sig] {
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    signal(sig, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    sigprocmask(SIG_UNBLOCK, &set, nullptr);
    raise(sig);
  });
}

TEST(ExitStatus, FromExitCodes) {
  for (int code : {0, 1, 3, 4, 127, 255}) {
    int status = WaitStatusOf([code] { _exit(code); });
    ExitStatus s = ExitStatus::FromWaitStatus(status);
    EXPECT_EQ(s.code, code);
    EXPECT_EQ(s.signal, 0);
    EXPECT_FALSE(s.core_dumped);
    EXPECT_EQ(s.Clean(), code == 0);
    EXPECT_EQ(s.Describe(), "exited with code " + std::to_string(code));
  }
}

TEST(ExitStatus, FromSignals) {
  struct Case {
    int sig;
    const char* text;
  } cases[] = {
      {SIGTERM, "killed by SIGTERM"},
      {SIGKILL, "killed by SIGKILL"},
      {SIGHUP, "killed by SIGHUP"},
      {SIGSEGV, "killed by SIGSEGV"},  // would dump core, but the child is not dumpable
      {SIGABRT, "killed by SIGABRT"},
  };
  for (const Case& c : cases) {
    ExitStatus s = ExitStatus::FromWaitStatus(KilledBy(c.sig));
    EXPECT_EQ(s.signal, c.sig);
    EXPECT_EQ(s.code, 0);
    EXPECT_FALSE(s.core_dumped);
    EXPECT_FALSE(s.Clean());
    EXPECT_EQ(s.Describe(), c.text);
  }
}

// The Linux encoding of "killed by SIGSEGV, core dumped", built with the libc
// macros, so the test does not depend on the machine allowing core dumps.
TEST(ExitStatus, CoreDumpFlag) {
  ExitStatus s = ExitStatus::FromWaitStatus(W_EXITCODE(0, SIGSEGV) | WCOREFLAG);
  EXPECT_EQ(s.signal, SIGSEGV);
  EXPECT_TRUE(s.core_dumped);
  EXPECT_FALSE(s.Clean());
  EXPECT_EQ(s.Describe(), "killed by SIGSEGV (core dumped)");
}

// A real core dump, where the machine allows one: a shell (small, unlike this
// test binary) with ulimit -c unlimited, in a scratch directory, sends itself SIGQUIT.
TEST(ExitStatus, RealCoreDumpWhereAllowed) {
  char tmpl[] = "/tmp/rot13d-core-test-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  int status = WaitStatusOf([&dir] {
    rlimit unlimited{RLIM_INFINITY, RLIM_INFINITY};
    setrlimit(RLIMIT_CORE, &unlimited);
    if (chdir(dir.c_str()) != 0) _exit(121);
    execl("/bin/sh", "sh", "-c", "kill -QUIT $$", static_cast<char*>(nullptr));
    _exit(122);
  });
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(WIFSIGNALED(status)) << "status " << status;
  ExitStatus s = ExitStatus::FromWaitStatus(status);
  EXPECT_EQ(s.signal, SIGQUIT);
  EXPECT_EQ(s.core_dumped, static_cast<bool>(WCOREDUMP(status)));
  if (!WCOREDUMP(status)) GTEST_SKIP() << "this machine produced no core dump";
  EXPECT_EQ(s.Describe(), "killed by SIGQUIT (core dumped)");
}

TEST(SignalName, KnownAndUnknown) {
  EXPECT_EQ(SignalName(SIGHUP), "SIGHUP");
  EXPECT_EQ(SignalName(SIGINT), "SIGINT");
  EXPECT_EQ(SignalName(SIGKILL), "SIGKILL");
  EXPECT_EQ(SignalName(SIGSEGV), "SIGSEGV");
  EXPECT_EQ(SignalName(SIGTERM), "SIGTERM");
  EXPECT_EQ(SignalName(SIGCHLD), "SIGCHLD");
  EXPECT_EQ(SignalName(77), "signal 77");
  EXPECT_EQ(SignalName(0), "signal 0");
  EXPECT_EQ(SignalName(-1), "signal -1");
  EXPECT_EQ((ExitStatus{.code = 0, .signal = 77, .core_dumped = false}).Describe(), "killed by signal 77");
}

// ---- BackoffDelay -----------------------------------------------------------------

TEST(BackoffDelay, DoublesFrom100msAndCapsAt30s) {
  RestartPolicy p;
  const int64_t want[] = {100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000, 30000};
  for (int n = 1; n <= 12; ++n) {
    EXPECT_EQ(BackoffDelay(p, n).count(), want[n - 1]) << "failures " << n;
  }
}

// Many failures must stay at the cap, not overflow into a tiny or negative delay.
TEST(BackoffDelay, StaysCappedForHugeCounts) {
  RestartPolicy p;
  for (int n : {20, 63, 64, 100, 1000, 1 << 30}) EXPECT_EQ(BackoffDelay(p, n), milliseconds(30000)) << n;
}

TEST(BackoffDelay, CapThatIsNotAPowerOfTwoMultiple) {
  RestartPolicy p;
  p.initial_delay = milliseconds(100);
  p.max_delay = milliseconds(350);
  EXPECT_EQ(BackoffDelay(p, 1), milliseconds(100));
  EXPECT_EQ(BackoffDelay(p, 2), milliseconds(200));
  EXPECT_EQ(BackoffDelay(p, 3), milliseconds(350));
  EXPECT_EQ(BackoffDelay(p, 4), milliseconds(350));
}

// ---- DecideOnExit ---------------------------------------------------------------

const TimePoint kT0 = TimePoint{} + hours(24);  // any fixed point; steady_clock's epoch is arbitrary

WorkerRecord Booted(TimePoint started, int failures = 0) {
  WorkerRecord w;
  w.slot = 0;
  w.generation = 1;
  w.pid = 100;
  w.state = WorkerState::kRunning;
  w.booted = true;
  w.started = started;
  w.failures = failures;
  return w;
}

const ExitStatus kCrash{.code = 0, .signal = SIGSEGV, .core_dumped = false};

TEST(DecideOnExit, DrainingWorkerIsForgotten) {
  WorkerRecord w = Booted(kT0);
  w.state = WorkerState::kDraining;
  ExitDecision d = DecideOnExit(w, kCrash, kT0 + seconds(1), RestartPolicy{}, /*respawn_wanted=*/true);
  EXPECT_EQ(d.kind, ExitDecision::Kind::kForget);
}

TEST(DecideOnExit, UnwantedWorkerIsForgotten) {
  WorkerRecord w = Booted(kT0);
  ExitDecision d = DecideOnExit(w, kCrash, kT0 + seconds(1), RestartPolicy{}, /*respawn_wanted=*/false);
  EXPECT_EQ(d.kind, ExitDecision::Kind::kForget);
  w.booted = false;
  w.boot_failures = 100;  // even a crash-looping one: it is not wanted, so no give-up either
  d = DecideOnExit(w, kCrash, kT0 + seconds(1), RestartPolicy{}, false);
  EXPECT_EQ(d.kind, ExitDecision::Kind::kForget);
}

// A booted worker that keeps crashing young is respawned forever: at once the
// first time, then each time later.
TEST(DecideOnExit, CrashOfBootedWorkerRespawnsWithGrowingDelay) {
  RestartPolicy p;
  WorkerRecord w = Booted(kT0);
  const int64_t want[] = {0, 100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000};
  TimePoint now = kT0;
  for (int i = 0; i < 12; ++i) {
    now += seconds(1);  // lived 1 s: well short of healthy_after
    ExitDecision d = DecideOnExit(w, kCrash, now, p, true);
    ASSERT_EQ(d.kind, ExitDecision::Kind::kRespawn) << "exit " << i + 1;
    EXPECT_EQ(d.failures, i + 1);
    EXPECT_EQ(d.boot_failures, 0);
    EXPECT_EQ(d.delay.count(), want[i]) << "exit " << i + 1;
    // What the executor does: record the counts, restart, boot again.
    w.failures = d.failures;
    w.boot_failures = d.boot_failures;
    w.started = now + d.delay;
    now = w.started;
    w.booted = true;
  }
}

// Every unexpected exit is replaced, a clean one too: the worker was meant to be running.
TEST(DecideOnExit, CleanExitOfWantedWorkerIsRespawnedAtOnce) {
  ExitDecision d = DecideOnExit(Booted(kT0), ExitStatus{}, kT0 + seconds(1), RestartPolicy{}, true);
  EXPECT_EQ(d.kind, ExitDecision::Kind::kRespawn);
  EXPECT_EQ(d.delay, milliseconds(0));
}

// The OOM killer's storm: a booted worker SIGKILLed from outside did not fail.
// However often and however young, it is replaced at once and its slot's
// streak does not grow.
TEST(DecideOnExit, SigkillFromOutsideOfBootedWorkerIsReplacedAtOnceEveryTime) {
  RestartPolicy p;
  const ExitStatus killed{.signal = SIGKILL};
  WorkerRecord w = Booted(kT0);
  TimePoint now = kT0;
  for (int i = 0; i < 100; ++i) {
    now += milliseconds(50);
    ExitDecision d = DecideOnExit(w, killed, now, p, true);
    ASSERT_EQ(d.kind, ExitDecision::Kind::kRespawn) << "kill " << i + 1;
    EXPECT_EQ(d.delay, milliseconds(0)) << "kill " << i + 1;
    EXPECT_EQ(d.failures, 0);
    EXPECT_EQ(d.boot_failures, 0);
    w.failures = d.failures;
    w.started = now;
  }
  // A crash of its own after that starts the streak at one: still at once.
  EXPECT_EQ(DecideOnExit(w, kCrash, now + milliseconds(50), p, true).delay, milliseconds(0));
  // A streak of its own crashes is neither reset nor grown by a kill from
  // outside in between, and does not delay its replacement.
  w.failures = 3;
  ExitDecision d = DecideOnExit(w, killed, now + milliseconds(50), p, true);
  EXPECT_EQ(d.failures, 3);
  EXPECT_EQ(d.delay, milliseconds(0));
}

// SIGKILL that rot13d sent itself (a drain deadline, a hung worker) is no
// reprieve: the worker is accounted as it would be otherwise.
TEST(DecideOnExit, OwnSigkillIsNotFromOutside) {
  RestartPolicy p;
  WorkerRecord w = Booted(kT0, /*failures=*/2);
  w.hung = true;
  w.kill_sent = true;
  ExitDecision d = DecideOnExit(w, ExitStatus{.signal = SIGKILL}, kT0 + seconds(1), p, true);
  EXPECT_EQ(d.failures, 3);
  EXPECT_EQ(d.delay, BackoffDelay(p, 2));
}

// Killed from outside while booting, a worker did not fail to boot either:
// never a step toward the give-up. The first kill in a row is replaced at
// once; kills of every new worker back off, so they never make a fork loop.
TEST(DecideOnExit, SigkillFromOutsideDuringBootNeverGivesUpAndBacksOffWhenRepeated) {
  RestartPolicy p;
  WorkerRecord w = Booted(kT0);
  w.booted = false;
  w.boot_failures = 2;  // its own, earlier
  TimePoint now = kT0;
  for (int i = 1; i <= 3 * p.max_boot_failures; ++i) {
    now += milliseconds(50);
    ExitDecision d = DecideOnExit(w, ExitStatus{.signal = SIGKILL}, now, p, true);
    ASSERT_EQ(d.kind, ExitDecision::Kind::kRespawn) << "kill " << i;
    EXPECT_EQ(d.boot_failures, 2) << "kept, not grown";
    EXPECT_EQ(d.delay, i == 1 ? milliseconds(0) : BackoffDelay(p, i - 1)) << "kill " << i;
    EXPECT_EQ(d.failures, 0) << "not its failure";
    w.failures = d.failures;
    w.boot_failures = d.boot_failures;
    w.boot_kills = d.boot_kills;
    w.started = now;
  }
  // Nor does the crash-loop governor count it.
  DeathNote n = DescribeDeath(w, 5, ExitStatus{.signal = SIGKILL}, ExitDecision{.kind = ExitDecision::Kind::kRespawn}, true);
  EXPECT_FALSE(n.boot_failure);
  EXPECT_NE(n.text.find("before it was accepting"), std::string::npos) << n.text;
  EXPECT_EQ(RestartCause(w, ExitStatus{.signal = SIGKILL}, ExitDecision{.kind = ExitDecision::Kind::kRespawn}),
            RestartReason::kKilled);
}

// A storm of kills from outside hits workers booting and serving alike: a
// worker of the slot that booted in between breaks the row, so the slot is
// replaced at once again; only kills of every new worker back off.
TEST(DecideOnExit, ABootedWorkerBetweenTwoKillsWhileBootingBreaksTheRow) {
  RestartPolicy p;
  const ExitStatus killed{.signal = SIGKILL};
  WorkerRecord w = Booted(kT0);
  TimePoint now = kT0;
  auto die = [&](bool booted) {
    now += milliseconds(50);
    w.booted = booted;
    ExitDecision d = DecideOnExit(w, killed, now, p, true);
    w.failures = d.failures;
    w.boot_failures = d.boot_failures;
    w.boot_kills = d.boot_kills;
    w.started = now;
    return d.delay;
  };
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(die(false), milliseconds(0)) << "round " << i << ": the first kill while booting in a row";
    EXPECT_EQ(die(true), milliseconds(0)) << "round " << i << ": killed while serving";
  }
  EXPECT_EQ(die(false), milliseconds(0));
  EXPECT_EQ(die(false), BackoffDelay(p, 1)) << "two in a row";
  EXPECT_EQ(die(false), BackoffDelay(p, 2));
  EXPECT_EQ(die(true), milliseconds(0));
  EXPECT_EQ(die(false), milliseconds(0)) << "the row starts over";
}

TEST(DecideOnExit, FailuresResetAfterHealthyAfter) {
  RestartPolicy p;  // healthy_after 10 s
  WorkerRecord w = Booted(kT0, /*failures=*/7);
  ExitDecision young = DecideOnExit(w, kCrash, kT0 + p.healthy_after - milliseconds(1), p, true);
  EXPECT_EQ(young.failures, 8);
  EXPECT_EQ(young.delay, milliseconds(6400));
  ExitDecision healthy = DecideOnExit(w, kCrash, kT0 + p.healthy_after, p, true);
  EXPECT_EQ(healthy.kind, ExitDecision::Kind::kRespawn);
  EXPECT_EQ(healthy.failures, 1);
  EXPECT_EQ(healthy.delay, milliseconds(0));
}

// A worker that never gets to accepting is counted apart, and the generation
// gives up on the max_boot_failures-th consecutive one. The same for a worker
// short of a resource at boot (exit 5), and for a fork that fails.
TEST(DecideOnExit, BootFailuresAccumulateAndGiveUp) {
  for (ExitStatus how : {ExitStatus{.code = 1}, ExitStatus{.code = kExitBootShortage}, ExitStatus{.signal = SIGSEGV},
                         ExitStatus::ForkFailed(EAGAIN)}) {
  SCOPED_TRACE(how.Describe());
  RestartPolicy p;  // max_boot_failures 5
  WorkerRecord w = Booted(kT0);
  w.booted = false;
  TimePoint now = kT0;
  for (int i = 1; i < p.max_boot_failures; ++i) {
    now += milliseconds(50);
    ExitDecision d = DecideOnExit(w, how, now, p, true);
    ASSERT_EQ(d.kind, ExitDecision::Kind::kRespawn) << "boot failure " << i;
    EXPECT_EQ(d.boot_failures, i);
    EXPECT_EQ(d.failures, i);
    EXPECT_EQ(d.delay, BackoffDelay(p, i));
    w.failures = d.failures;
    w.boot_failures = d.boot_failures;
    w.started = now + d.delay;
    now = w.started;
  }
  ExitDecision last = DecideOnExit(w, how, now + milliseconds(50), p, true);
  EXPECT_EQ(last.kind, ExitDecision::Kind::kGiveUp);
  EXPECT_EQ(last.boot_failures, p.max_boot_failures);
  }
}

// Exit code 4 is the worker saying that trying again will not help: its
// generation gives up at once (gunicorn's WORKER_BOOT_ERROR).
TEST(DecideOnExit, CannotBootExitCodeGivesUpAtOnce) {
  WorkerRecord w = Booted(kT0);
  w.booted = false;
  ExitDecision d = DecideOnExit(w, ExitStatus{.code = kExitCannotBoot}, kT0 + milliseconds(5), RestartPolicy{}, true);
  EXPECT_EQ(d.kind, ExitDecision::Kind::kGiveUp);
  EXPECT_EQ(GiveUpReason(w, ExitStatus{.code = kExitCannotBoot}, RestartPolicy{}),
            "slot 0 of generation 1 cannot boot (its worker exited with code 4; its log line says why)");
  // Unless nobody wants it any more.
  EXPECT_EQ(DecideOnExit(w, ExitStatus{.code = kExitCannotBoot}, kT0, RestartPolicy{}, false).kind,
            ExitDecision::Kind::kForget);
}

// ---- DescribeDeath ----------------------------------------------------------------

TEST(DescribeDeath, UnaskedCrashIsAnErrorWithItsRestart) {
  WorkerRecord w = Booted(kT0);
  ExitDecision d{.kind = ExitDecision::Kind::kRespawn, .delay = milliseconds(200)};
  DeathNote n = DescribeDeath(w, 812, kCrash, d, true);
  EXPECT_EQ(n.level, LogLevel::kError);
  EXPECT_EQ(n.text, "worker 812 (slot 0, generation 1) killed by SIGSEGV; restarting in 200 ms");
  EXPECT_EQ(n.story, "generation 1: killed by SIGSEGV");
  EXPECT_TRUE(n.repeatable);
  EXPECT_FALSE(n.boot_failure);
}

TEST(DescribeDeath, CleanUnaskedExitIsAWarningAndRestartsNow) {
  ExitDecision d{.kind = ExitDecision::Kind::kRespawn};
  DeathNote n = DescribeDeath(Booted(kT0), 5, ExitStatus{}, d, true);
  EXPECT_EQ(n.level, LogLevel::kWarning);
  EXPECT_EQ(n.text, "worker 5 (slot 0, generation 1) exited with code 0; restarting now");
}

TEST(DescribeDeath, DrainingOrUnwantedIsExpectedAndNeverCollapsed) {
  WorkerRecord w = Booted(kT0);
  w.state = WorkerState::kDraining;
  DeathNote n = DescribeDeath(w, 5, ExitStatus{}, ExitDecision{}, true);
  EXPECT_EQ(n.level, LogLevel::kInfo);
  EXPECT_FALSE(n.repeatable);
  n = DescribeDeath(Booted(kT0), 5, ExitStatus{.signal = SIGKILL}, ExitDecision{}, /*respawn_wanted=*/false);
  EXPECT_EQ(n.level, LogLevel::kNotice);
  EXPECT_FALSE(n.boot_failure);
}

TEST(DescribeDeath, OutsideSigkillHintsAtTheOomKillerAndHungIsSaid) {
  ExitDecision d{.kind = ExitDecision::Kind::kRespawn};
  DeathNote n = DescribeDeath(Booted(kT0), 5, ExitStatus{.signal = SIGKILL}, d, true);
  EXPECT_NE(n.text.find("SIGKILL from outside often means the OOM killer"), std::string::npos) << n.text;
  WorkerRecord hung = Booted(kT0);
  hung.hung = true;
  hung.kill_sent = true;
  n = DescribeDeath(hung, 5, ExitStatus{.signal = SIGKILL}, d, true);
  EXPECT_EQ(n.text.find("OOM"), std::string::npos) << n.text;
  EXPECT_NE(n.text.find("killed by SIGKILL after it hung"), std::string::npos) << n.text;
}

// A stop or reload that cuts connections at shutdown_timeout says how many.
TEST(DescribeDeath, ConnectionsCutAtTheDeadlineAreCounted) {
  WorkerRecord w = Booted(kT0);
  w.state = WorkerState::kDraining;
  w.kill_sent = true;
  DeathNote n = DescribeDeath(w, 9, ExitStatus{.signal = SIGKILL}, ExitDecision{}, true, 17);
  EXPECT_EQ(n.text, "worker 9 (slot 0, generation 1) killed by SIGKILL; 17 open connections cut at shutdown_timeout");
  n = DescribeDeath(Booted(kT0), 9, kCrash, ExitDecision{.kind = ExitDecision::Kind::kRespawn}, true, 1);
  EXPECT_NE(n.text.find("1 open connection lost with it"), std::string::npos) << n.text;
}

TEST(DescribeDeath, BeforeAcceptingIsABootFailureAndAForkFailureHasNoPid) {
  WorkerRecord w = Booted(kT0);
  w.booted = false;
  ExitDecision d{.kind = ExitDecision::Kind::kRespawn, .delay = milliseconds(100)};
  DeathNote n = DescribeDeath(w, 0, ExitStatus::ForkFailed(EAGAIN), d, true);
  EXPECT_TRUE(n.boot_failure);
  EXPECT_EQ(n.text, "worker for slot 0 of generation 1 could not be forked: " + std::string(std::strerror(EAGAIN)) +
                        " before it was accepting; restarting in 100 ms");
}

// ---- RespawnWanted, BootFailureHistory ---------------------------------------------

TEST(RespawnWanted, ServingAndCanaryUnlessHaltedOrStopping) {
  std::vector<WorkerRecord> none;
  SupervisorView v;
  v.workers = &none;
  v.serving_generation = 3;
  v.canary_generation = 4;
  EXPECT_TRUE(RespawnWanted(v, 3));
  EXPECT_TRUE(RespawnWanted(v, 4));
  EXPECT_FALSE(RespawnWanted(v, 2)) << "a retiring generation";
  v.canary_halted = true;
  EXPECT_FALSE(RespawnWanted(v, 4));
  v.serving_halted = true;
  EXPECT_FALSE(RespawnWanted(v, 3));
  v.serving_halted = v.canary_halted = false;
  v.stopping = true;
  EXPECT_FALSE(RespawnWanted(v, 3));
  EXPECT_FALSE(RespawnWanted(v, 4));
}

TEST(BootFailureHistory, EngagesOnceWithinTheWindow) {
  BootFailureHistory h;
  EXPECT_FALSE(h.Record(kT0, 3, seconds(10)));
  EXPECT_FALSE(h.Record(kT0 + seconds(1), 3, seconds(10)));
  EXPECT_TRUE(h.Record(kT0 + seconds(2), 3, seconds(10))) << "the third within 10 s engages";
  EXPECT_FALSE(h.Record(kT0 + seconds(3), 3, seconds(10))) << "told once";
  EXPECT_TRUE(h.Engaged(kT0 + seconds(3), 3, seconds(10)));
  EXPECT_FALSE(h.Engaged(kT0 + seconds(12), 3, seconds(10))) << "old failures age out";
  EXPECT_FALSE(BootFailureHistory{}.Record(kT0, 1, seconds(0))) << "window 0: no governor";
}

// Having booted once ends the streak: one bad boot after that starts counting afresh.
TEST(DecideOnExit, BootingResetsBootFailures) {
  RestartPolicy p;
  WorkerRecord w = Booted(kT0);
  w.boot_failures = p.max_boot_failures - 1;
  ExitDecision d = DecideOnExit(w, kCrash, kT0 + seconds(1), p, true);
  EXPECT_EQ(d.kind, ExitDecision::Kind::kRespawn);
  EXPECT_EQ(d.boot_failures, 0);
}

// Living long without ever accepting is still a boot failure (a stuck boot is not health).
TEST(DecideOnExit, LongLivedButNeverBootedStillCountsAsBootFailure) {
  RestartPolicy p;
  WorkerRecord w = Booted(kT0, /*failures=*/3);
  w.booted = false;
  w.boot_failures = 2;
  ExitDecision d = DecideOnExit(w, kCrash, kT0 + hours(1), p, true);
  EXPECT_EQ(d.kind, ExitDecision::Kind::kRespawn);
  EXPECT_EQ(d.failures, 1);  // lived: the backoff starts over
  EXPECT_EQ(d.boot_failures, 3);
}

TEST(DecideOnExit, CustomMaxBootFailures) {
  RestartPolicy p;
  p.max_boot_failures = 1;
  WorkerRecord w = Booted(kT0);
  w.booted = false;
  EXPECT_EQ(DecideOnExit(w, kCrash, kT0, p, true).kind, ExitDecision::Kind::kGiveUp);
}

// ---- Plan -----------------------------------------------------------------------

WorkerRecord Running(int slot, uint64_t generation, pid_t pid, bool booted = true) {
  WorkerRecord w;
  w.slot = slot;
  w.generation = generation;
  w.pid = pid;
  w.state = WorkerState::kRunning;
  w.booted = booted;
  w.started = kT0 - seconds(60);
  return w;
}

WorkerRecord Backoff(int slot, uint64_t generation, TimePoint restart_at) {
  WorkerRecord w;
  w.slot = slot;
  w.generation = generation;
  w.pid = 0;
  w.state = WorkerState::kBackoff;
  w.restart_at = restart_at;
  return w;
}

WorkerRecord Draining(int slot, uint64_t generation, pid_t pid, TimePoint kill_at, bool kill_sent = false) {
  WorkerRecord w = Running(slot, generation, pid);
  w.state = WorkerState::kDraining;
  w.kill_at = kill_at;
  w.kill_sent = kill_sent;
  return w;
}

WorkerRecord Failed(int slot, uint64_t generation) {
  WorkerRecord w;
  w.slot = slot;
  w.generation = generation;
  w.pid = 0;
  w.state = WorkerState::kFailed;
  return w;
}

SupervisorView Serving(const std::vector<WorkerRecord>* workers, uint64_t generation) {
  SupervisorView v;
  v.workers = workers;
  v.serving_generation = generation;
  return v;
}

Action Spawn(int slot, uint64_t generation) { return {.kind = Kind::kSpawn, .slot = slot, .generation = generation}; }
Action Sig(pid_t pid, int sig) { return {.kind = Kind::kSignal, .pid = pid, .signal = sig}; }
Action Promote(uint64_t generation) { return {.kind = Kind::kPromote, .generation = generation}; }
Action Abandon(uint64_t generation) { return {.kind = Kind::kAbandon, .generation = generation}; }
Action CloseRetired() { return {.kind = Kind::kCloseRetired}; }
Action Exit(int code) { return {.kind = Kind::kExit, .exit_code = code}; }
Action AbortHung(pid_t pid) { return {.kind = Kind::kAbortHung, .pid = pid}; }

using Actions = std::vector<Action>;

TEST(Plan, SteadyStateDoesNothing) {
  std::vector<WorkerRecord> w = {Running(0, 1, 101), Running(1, 1, 102)};
  EXPECT_EQ(Plan(Serving(&w, 1), kT0), Actions{});
  EXPECT_EQ(NextDeadline(Serving(&w, 1)), std::nullopt);
}

TEST(Plan, SpawnsDueBackoffSlotsAndNotFutureOnes) {
  std::vector<WorkerRecord> w = {
      Backoff(0, 1, kT0 - milliseconds(1)),  // overdue
      Backoff(1, 1, kT0),                    // due exactly now
      Backoff(2, 1, kT0 + milliseconds(1)),  // not yet
      Running(3, 1, 103),
      Failed(4, 1),  // given up on: never respawned
  };
  EXPECT_EQ(Plan(Serving(&w, 1), kT0), (Actions{Spawn(0, 1), Spawn(1, 1)}));
}

// The plan is a function of the view: the same view, the same plan.
TEST(Plan, IsStable) {
  std::vector<WorkerRecord> w = {Backoff(0, 1, kT0), Draining(1, 1, 50, kT0)};
  SupervisorView v = Serving(&w, 1);
  EXPECT_EQ(Plan(v, kT0), Plan(v, kT0));
}

// Kill once: at kill_at, not before, and never again once the executor marks kill_sent.
TEST(Plan, KillsDrainingWorkersPastKillAtExactlyOnce) {
  std::vector<WorkerRecord> w = {Running(0, 2, 200), Draining(0, 1, 100, kT0)};
  SupervisorView v = Serving(&w, 2);
  EXPECT_EQ(Plan(v, kT0 - milliseconds(1)), Actions{});
  EXPECT_EQ(Plan(v, kT0), Actions{Sig(100, SIGKILL)});
  EXPECT_EQ(Plan(v, kT0 + seconds(5)), Actions{Sig(100, SIGKILL)});
  w[1].kill_sent = true;
  EXPECT_EQ(Plan(v, kT0 + seconds(5)), Actions{});
  EXPECT_EQ(NextDeadline(v), std::nullopt);  // nothing more to wake up for
}

TEST(Plan, DrainingRecordWithoutProcessIsNotKilled) {
  std::vector<WorkerRecord> w = {Running(0, 1, 10), Draining(1, 1, 0, kT0 - seconds(1))};
  EXPECT_EQ(Plan(Serving(&w, 1), kT0), Actions{});
}

TEST(Plan, PromotesCanaryWhenAllBooted) {
  std::vector<WorkerRecord> w = {Running(0, 1, 101), Running(1, 1, 102),  // serving
                                 Running(0, 2, 201), Running(1, 2, 202, /*booted=*/false)};
  SupervisorView v = Serving(&w, 1);
  v.canary_generation = 2;
  v.canary_size = 2;
  v.canary_deadline = kT0 + seconds(30);
  EXPECT_EQ(Plan(v, kT0), Actions{});  // one of two booted: wait
  EXPECT_EQ(NextDeadline(v), kT0 + seconds(30));
  w[3].booted = true;
  EXPECT_EQ(Plan(v, kT0), Actions{Promote(2)});
}

// Only running, live, booted canary workers count towards promotion.
TEST(Plan, CanaryWorkersThatDoNotCountTowardsPromotion) {
  std::vector<WorkerRecord> w = {Running(0, 1, 101), Running(0, 2, 201), Running(1, 2, 0)};
  SupervisorView v = Serving(&w, 1);
  v.canary_generation = 2;
  v.canary_size = 2;
  v.canary_deadline = kT0 + seconds(30);
  EXPECT_EQ(Plan(v, kT0), Actions{}) << "a booted record without a process";
  w[2] = Draining(1, 2, 202, kT0 + seconds(30));
  w[2].booted = true;
  EXPECT_EQ(Plan(v, kT0), Actions{}) << "a draining worker";
  w[2] = Running(1, 1, 202);
  EXPECT_EQ(Plan(v, kT0), Actions{}) << "a worker of another generation";
}

TEST(Plan, FirstGenerationPromotedWhenAllBooted) {
  std::vector<WorkerRecord> w = {Running(0, 1, 101), Running(1, 1, 102)};
  SupervisorView v = Serving(&w, 0);
  v.canary_generation = 1;
  v.canary_size = 2;
  v.canary_deadline = kT0 + seconds(30);
  EXPECT_EQ(Plan(v, kT0), Actions{Promote(1)});
}

TEST(Plan, AbandonsHaltedCanaryAndKeepsServing) {
  std::vector<WorkerRecord> w = {Running(0, 1, 101), Running(0, 2, 201, false), Failed(1, 2)};
  SupervisorView v = Serving(&w, 1);
  v.canary_generation = 2;
  v.canary_size = 2;
  v.canary_deadline = kT0 + seconds(30);
  v.canary_halted = true;
  // The canary's worker that never booted is killed, then the canary dropped.
  EXPECT_EQ(Plan(v, kT0), (Actions{Sig(201, SIGKILL), Abandon(2)}));
}

// A canary worker that already accepts may hold clients: it drains.
TEST(Plan, AbandonedCanaryDrainsItsBootedWorkers) {
  std::vector<WorkerRecord> w = {Running(0, 1, 101), Running(0, 2, 201), Running(1, 2, 202, false),
                                 Draining(2, 2, 203, kT0 + seconds(5))};
  SupervisorView v = Serving(&w, 1);
  v.canary_generation = 2;
  v.canary_size = 3;
  v.canary_deadline = kT0;
  EXPECT_EQ(Plan(v, kT0), (Actions{Sig(201, SIGTERM), Sig(202, SIGKILL), Abandon(2)}));
}

TEST(Plan, AbandonsCanaryAtItsDeadline) {
  std::vector<WorkerRecord> w = {Running(0, 1, 101), Running(0, 2, 201, /*booted=*/false)};
  SupervisorView v = Serving(&w, 1);
  v.canary_generation = 2;
  v.canary_size = 1;
  v.canary_deadline = kT0;
  EXPECT_EQ(Plan(v, kT0 - milliseconds(1)), Actions{});
  EXPECT_EQ(Plan(v, kT0), (Actions{Sig(201, SIGKILL), Abandon(2)}));
  EXPECT_EQ(Plan(v, kT0 + seconds(1)), (Actions{Sig(201, SIGKILL), Abandon(2)}));
}

// Nothing was serving: a first generation that cannot boot ends the supervisor.
TEST(Plan, AbandonedFirstGenerationExitsCannotBoot) {
  std::vector<WorkerRecord> w = {Failed(0, 1), Failed(1, 1)};
  SupervisorView v = Serving(&w, 0);
  v.canary_generation = 1;
  v.canary_size = 2;
  v.canary_deadline = kT0 + seconds(30);
  v.canary_halted = true;
  EXPECT_EQ(Plan(v, kT0), (Actions{Abandon(1), Exit(kExitCannotBoot)}));

  v.canary_halted = false;  // and by deadline
  EXPECT_EQ(Plan(v, kT0 + seconds(30)), (Actions{Abandon(1), Exit(kExitCannotBoot)}));
}

TEST(Plan, StoppingSignalsRunningWorkersAndKillsOverdueDrainers) {
  std::vector<WorkerRecord> w = {
      Running(0, 2, 201),
      Running(1, 2, 202, /*booted=*/false),
      Draining(0, 1, 101, kT0 - seconds(1)),                       // overdue: kill
      Draining(1, 1, 102, kT0 + seconds(1)),                       // not yet
      Draining(2, 1, 103, kT0 - seconds(1), /*kill_sent=*/true),   // already killed
      Backoff(2, 2, kT0 - seconds(1)),                             // due, but we are stopping
  };
  SupervisorView v = Serving(&w, 2);
  v.stopping = true;
  EXPECT_EQ(Plan(v, kT0), (Actions{Sig(201, SIGTERM), Sig(202, SIGTERM), Sig(101, SIGKILL)}));
  // While stopping only kill deadlines matter, not backoff.
  EXPECT_EQ(NextDeadline(v), kT0 - seconds(1));
}

TEST(Plan, StoppingWithNothingAliveExitsOk) {
  std::vector<WorkerRecord> w = {Backoff(0, 1, kT0), Failed(1, 1)};
  SupervisorView v = Serving(&w, 1);
  v.stopping = true;
  EXPECT_EQ(Plan(v, kT0), Actions{Exit(kExitOk)});
  std::vector<WorkerRecord> none;
  v.workers = &none;
  EXPECT_EQ(Plan(v, kT0), Actions{Exit(kExitOk)});
}

TEST(Plan, StoppingWaitsForDrainingWorkers) {
  std::vector<WorkerRecord> w = {Draining(0, 1, 101, kT0 + seconds(10))};
  SupervisorView v = Serving(&w, 1);
  v.stopping = true;
  EXPECT_EQ(Plan(v, kT0), Actions{});
  EXPECT_EQ(NextDeadline(v), kT0 + seconds(10));
}

// Stopping wins over a canary: no promotion or abandonment while shutting down.
TEST(Plan, StoppingIgnoresCanary) {
  std::vector<WorkerRecord> w = {Running(0, 2, 201)};
  SupervisorView v = Serving(&w, 1);
  v.canary_generation = 2;
  v.canary_size = 1;
  v.canary_deadline = kT0 - seconds(1);
  v.stopping = true;
  EXPECT_EQ(Plan(v, kT0), Actions{Sig(201, SIGTERM)});
}

// Serving on fewer workers than configured, for good, is a failure: the
// supervisor exits non-zero even while other workers still serve, and lets the
// service manager's Restart= decide (STYLE.md 7).
TEST(Plan, ServingHaltedExitsCannotBootEvenWithLiveWorkers) {
  std::vector<WorkerRecord> w = {Failed(0, 1), Running(1, 1, 102)};
  SupervisorView v = Serving(&w, 1);
  v.serving_halted = true;
  EXPECT_EQ(Plan(v, kT0), Actions{Exit(kExitCannotBoot)});
  w[1] = Failed(1, 1);
  EXPECT_EQ(Plan(v, kT0), Actions{Exit(kExitCannotBoot)});
}

TEST(Plan, AbandonedCanaryOverHaltedServingGenerationExits) {
  std::vector<WorkerRecord> w = {Failed(0, 1), Running(1, 1, 102), Failed(0, 2)};
  SupervisorView v = Serving(&w, 1);
  v.serving_halted = true;
  v.canary_generation = 2;
  v.canary_size = 1;
  v.canary_halted = true;
  v.canary_deadline = kT0 + seconds(30);
  EXPECT_EQ(Plan(v, kT0), (Actions{{.kind = Action::Kind::kAbandon, .generation = 2}, Exit(kExitCannotBoot)}));
}

TEST(Plan, ServingHaltedWithCanaryPendingDoesNotExit) {
  std::vector<WorkerRecord> w = {Failed(0, 1), Running(0, 2, 201, false)};
  SupervisorView v = Serving(&w, 1);
  v.serving_halted = true;
  v.canary_generation = 2;
  v.canary_size = 1;
  v.canary_deadline = kT0 + seconds(30);
  EXPECT_EQ(Plan(v, kT0), Actions{});
}

// Listeners dropped from the configuration close only when no worker that
// inherited them (an older generation) is still alive.
TEST(Plan, ClosesRetiredListenersOnlyWhenOldGenerationsAreGone) {
  std::vector<WorkerRecord> w = {Running(0, 2, 201), Draining(0, 1, 101, kT0 + seconds(30))};
  SupervisorView v = Serving(&w, 2);
  v.retired_listeners = true;
  EXPECT_EQ(Plan(v, kT0), Actions{});
  w.pop_back();
  EXPECT_EQ(Plan(v, kT0), Actions{CloseRetired()});
  v.retired_listeners = false;
  EXPECT_EQ(Plan(v, kT0), Actions{});
}

// An old worker that is still finishing connections but has published that it
// stopped accepting (and closed its listener copies) does not hold a removed
// address open: keeping it would let the kernel queue connections nobody takes.
TEST(Plan, ClosesRetiredListenersOnceOldWorkersStoppedAccepting) {
  std::vector<WorkerRecord> w = {Running(0, 2, 201), Draining(0, 1, 101, kT0 + seconds(30))};
  SupervisorView v = Serving(&w, 2);
  v.retired_listeners = true;
  EXPECT_EQ(Plan(v, kT0), Actions{}) << "the old worker may still accept";
  w[1].stopped_accepting = true;
  EXPECT_EQ(Plan(v, kT0), Actions{CloseRetired()});
}

TEST(Plan, RetiredListenersNotHeldByNewerOrDeadWorkers) {
  std::vector<WorkerRecord> w = {Running(0, 2, 201),
                                 Running(0, 3, 301, false),  // a canary: newer, not older
                                 Backoff(0, 1, kT0 + seconds(5))};  // old but no process
  SupervisorView v = Serving(&w, 2);
  v.canary_generation = 3;
  v.canary_size = 1;
  v.canary_deadline = kT0 + seconds(30);
  v.retired_listeners = true;
  EXPECT_EQ(Plan(v, kT0), Actions{CloseRetired()});
}

TEST(NextDeadline, PicksTheEarliest) {
  std::vector<WorkerRecord> w = {
      Running(0, 2, 201),
      Backoff(1, 2, kT0 + seconds(7)),
      Draining(0, 1, 101, kT0 + seconds(3)),
      Draining(1, 1, 102, kT0 + seconds(1), /*kill_sent=*/true),  // already killed: no deadline
      Failed(2, 2),
  };
  SupervisorView v = Serving(&w, 2);
  EXPECT_EQ(NextDeadline(v), kT0 + seconds(3));
  v.canary_generation = 3;
  v.canary_deadline = kT0 + seconds(2);
  EXPECT_EQ(NextDeadline(v), kT0 + seconds(2));
  w[1].restart_at = kT0 + milliseconds(500);
  EXPECT_EQ(NextDeadline(v), kT0 + milliseconds(500));
}

TEST(NextDeadline, NoneWhenNothingIsScheduled) {
  std::vector<WorkerRecord> none;
  EXPECT_EQ(NextDeadline(Serving(&none, 1)), std::nullopt);
}

// Drive the plan the way the supervisor does, with a tiny executor, through a
// boot of a first generation: every slot spawns, boots, and the canary is promoted.
TEST(Plan, DrivenFirstBootConverges) {
  std::vector<WorkerRecord> w = {Backoff(0, 1, kT0), Backoff(1, 1, kT0), Backoff(2, 1, kT0)};
  SupervisorView v = Serving(&w, 0);
  v.canary_generation = 1;
  v.canary_size = 3;
  v.canary_deadline = kT0 + seconds(30);
  pid_t next_pid = 500;
  bool promoted = false;
  for (int round = 0; round < 10 && !promoted; ++round) {
    for (const Action& a : Plan(v, kT0)) {
      ASSERT_TRUE(a.kind == Kind::kSpawn || a.kind == Kind::kPromote) << round;
      if (a.kind == Kind::kSpawn) {
        for (WorkerRecord& r : w) {
          if (r.slot == a.slot && r.generation == a.generation && r.state == WorkerState::kBackoff) {
            r.state = WorkerState::kRunning;
            r.pid = next_pid++;
            r.booted = true;  // reports accepting at once
          }
        }
      } else {
        EXPECT_EQ(a.generation, 1u);
        promoted = true;
      }
    }
  }
  EXPECT_TRUE(promoted);
  EXPECT_EQ(next_pid, 503);  // exactly one spawn per slot
}

}  // namespace

// ---- Hung workers ----------------------------------------------------------------

WorkerRecord Watched(int slot, pid_t pid, TimePoint heartbeat, milliseconds timeout = seconds(10)) {
  WorkerRecord w = Running(slot, 1, pid);
  w.heartbeat = heartbeat;
  w.heartbeat_timeout = timeout;
  return w;
}

TEST(HeartbeatStale, OnlyPastTheTimeoutAndOnlyWhenWatched) {
  WorkerRecord w = Watched(0, 10, kT0);
  EXPECT_FALSE(HeartbeatStale(w, kT0 + seconds(10)));  // exactly at the limit: not yet
  EXPECT_TRUE(HeartbeatStale(w, kT0 + seconds(10) + milliseconds(1)));
  w.heartbeat_timeout = milliseconds(0);  // off
  EXPECT_FALSE(HeartbeatStale(w, kT0 + hours(1)));
  w = Watched(0, 10, kT0);
  w.hung = true;  // already being replaced
  EXPECT_FALSE(HeartbeatStale(w, kT0 + hours(1)));
  w = Watched(0, 10, kT0);
  w.state = WorkerState::kDraining;  // draining has its own deadline
  EXPECT_FALSE(HeartbeatStale(w, kT0 + hours(1)));
}

TEST(HeartbeatStale, CountsFromStartUntilTheFirstHeartbeat) {
  WorkerRecord w = Watched(0, 10, TimePoint{});
  w.started = kT0;
  EXPECT_FALSE(HeartbeatStale(w, kT0 + seconds(9)));
  EXPECT_TRUE(HeartbeatStale(w, kT0 + seconds(11)));
}

TEST(Plan, AbortsAHungWorkerOnceThenKillsItAfterTheGrace) {
  std::vector<WorkerRecord> workers = {Watched(0, 10, kT0), Watched(1, 11, kT0 + seconds(5))};
  SupervisorView v = Serving(&workers, 1);
  TimePoint now = kT0 + seconds(11);
  EXPECT_EQ(Plan(v, now), (Actions{AbortHung(10)}));
  // What the executor does for kAbortHung:
  workers[0].hung = true;
  workers[0].kill_at = now + milliseconds(500);
  EXPECT_EQ(Plan(v, now), Actions{});
  EXPECT_EQ(NextDeadline(v), workers[0].kill_at);
  EXPECT_EQ(Plan(v, now + milliseconds(500)), (Actions{Sig(10, SIGKILL)}));
}

TEST(NextDeadline, IncludesTheHeartbeatDeadline) {
  std::vector<WorkerRecord> workers = {Watched(0, 10, kT0, seconds(3))};
  SupervisorView v = Serving(&workers, 1);
  auto next = NextDeadline(v);
  ASSERT_TRUE(next);
  EXPECT_GT(*next, kT0 + seconds(3));
  EXPECT_LE(*next, kT0 + seconds(3) + milliseconds(1));
  EXPECT_FALSE(HeartbeatStale(workers[0], *next - milliseconds(1)));
  EXPECT_TRUE(HeartbeatStale(workers[0], *next));
}

TEST(WatchdogHealthy, FalseOnlyWhileAHungWorkerIsUnhandled) {
  std::vector<WorkerRecord> workers = {Watched(0, 10, kT0), Watched(1, 11, kT0 + seconds(20))};
  SupervisorView v = Serving(&workers, 1);
  EXPECT_TRUE(WatchdogHealthy(v, kT0 + seconds(5)));
  EXPECT_FALSE(WatchdogHealthy(v, kT0 + seconds(11)));
  workers[0].hung = true;  // SIGABRT sent: being replaced
  EXPECT_TRUE(WatchdogHealthy(v, kT0 + seconds(11)));
}

// ---- Crash-loop governor -----------------------------------------------------------

TEST(CrashLoopEngaged, ThresholdWithinTheWindow) {
  std::deque<TimePoint> failures = {kT0, kT0 + seconds(1)};
  EXPECT_FALSE(CrashLoopEngaged(failures, kT0 + seconds(2), 3, seconds(10)));
  failures.push_back(kT0 + seconds(2));
  EXPECT_TRUE(CrashLoopEngaged(failures, kT0 + seconds(2), 3, seconds(10)));
  EXPECT_TRUE(CrashLoopEngaged(failures, kT0 + milliseconds(9999), 3, seconds(10)));
  EXPECT_FALSE(CrashLoopEngaged(failures, kT0 + seconds(10), 3, seconds(10)));  // the first aged out
  EXPECT_FALSE(CrashLoopEngaged(failures, kT0 + seconds(2), 3, seconds(0)));    // window 0: off
}

TEST(Plan, GovernedGenerationForksOneWorkerPerPlanAndNotBeforeItsTime) {
  std::vector<WorkerRecord> workers = {Backoff(0, 1, kT0), Backoff(1, 1, kT0), Backoff(2, 1, kT0)};
  SupervisorView v = Serving(&workers, 1);
  EXPECT_EQ(Plan(v, kT0).size(), 3u);  // not governed: all due slots at once
  v.next_governed_fork[1] = kT0 + seconds(1);
  EXPECT_EQ(Plan(v, kT0), Actions{});
  EXPECT_EQ(NextDeadline(v), kT0 + seconds(1));
  EXPECT_EQ(Plan(v, kT0 + seconds(1)), (Actions{Spawn(0, 1)}));
}

TEST(Plan, GovernorOfOneGenerationDoesNotSlowAnother) {
  std::vector<WorkerRecord> workers = {Backoff(0, 1, kT0), Backoff(1, 1, kT0), Backoff(0, 2, kT0),
                                       Backoff(1, 2, kT0)};
  SupervisorView v = Serving(&workers, 1);
  v.canary_generation = 2;
  v.canary_size = 2;
  v.canary_deadline = kT0 + seconds(30);
  v.next_governed_fork[2] = kT0;
  EXPECT_EQ(Plan(v, kT0), (Actions{Spawn(0, 1), Spawn(1, 1), Spawn(0, 2)}));
}

// ---- RepeatFilter ------------------------------------------------------------------

TEST(RepeatFilter, FirstOfAWindowIsLoggedTheRestCountedAndSummarized) {
  RepeatFilter f(seconds(10), 1);
  EXPECT_TRUE(f.Admit("a", kT0));
  EXPECT_FALSE(f.Admit("a", kT0 + seconds(1)));
  EXPECT_FALSE(f.Admit("a", kT0 + seconds(2)));
  EXPECT_TRUE(f.Admit("b", kT0 + seconds(2)));  // another story is logged at once
  EXPECT_TRUE(f.Flush(kT0 + seconds(9)).empty());
  auto summaries = f.Flush(kT0 + seconds(10));
  ASSERT_EQ(summaries.size(), 1u);  // "b" had nothing suppressed
  EXPECT_EQ(summaries[0].key, "a");
  EXPECT_EQ(summaries[0].suppressed, 2u);
  EXPECT_TRUE(f.Admit("a", kT0 + seconds(11)));  // a new window
}

TEST(RepeatFilter, BurstIsLoggedBeforeSuppression) {
  RepeatFilter f(seconds(10), 3);
  EXPECT_TRUE(f.Admit("a", kT0));
  EXPECT_TRUE(f.Admit("a", kT0 + seconds(1)));
  EXPECT_TRUE(f.Admit("a", kT0 + seconds(2)));
  EXPECT_FALSE(f.Admit("a", kT0 + seconds(3)));
  auto summaries = f.Flush(kT0 + seconds(10));
  ASSERT_EQ(summaries.size(), 1u);
  EXPECT_EQ(summaries[0].suppressed, 1u);
}

TEST(RepeatFilter, ACrashLoopLogsABoundedNumberOfLinesPerMinute) {
  RepeatFilter f(seconds(10), 5);
  int lines = 0;
  for (int ms = 0; ms < 60000; ms += 100) {  // ten deaths a second for a minute
    TimePoint now = kT0 + milliseconds(ms);
    if (f.Admit("same", now)) ++lines;
    if (ms % 1000 == 0) lines += static_cast<int>(f.Flush(now).size());
  }
  EXPECT_LE(lines, 36);  // five lines and one summary per window
  EXPECT_GE(lines, 30);
}

}  // namespace rot13d::supervisor
