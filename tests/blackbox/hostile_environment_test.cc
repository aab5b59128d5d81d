// What the filesystem and stray signals may do to rot13d: a configuration path
// that is not a regular file (a FIFO above all, whose open(2) would block for
// ever) is refused at once; no signal rot13d does not use stops or kills the
// supervisor or a worker; the check finds what would only fail at start.
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>

#include "tests/blackbox/daemon_test.h"

namespace rot13d::blackbox {
namespace {

using HostileEnvironmentTest = DaemonTest;

constexpr int kExitConfig = 3;
constexpr int kMaxSignal = 64;  // SIGRTMAX

// The one-letter state of /proc/PID/stat: 'T' is stopped, 'Z' a zombie.
char ProcessState(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(in, line);
  size_t paren = line.rfind(')');
  return paren == std::string::npos || paren + 2 >= line.size() ? '?' : line[paren + 2];
}

std::string NotRegularKinds(const TempDir& dir, std::vector<std::string>* paths) {
  std::string fifo = dir.File("fifo.toml");
  if (mkfifo(fifo.c_str(), 0600) != 0) return "mkfifo failed";
  std::string directory = dir.File("dir.toml");
  if (mkdir(directory.c_str(), 0700) != 0) return "mkdir failed";
  std::string sock = dir.File("sock.toml");
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  std::snprintf(sun.sun_path, sizeof sun.sun_path, "%s", sock.c_str());
  bool bound = bind(fd, reinterpret_cast<sockaddr*>(&sun), sizeof sun) == 0;
  close(fd);
  if (!bound) return "bind failed";
  *paths = {fifo, directory, sock, "/dev/zero"};
  return "";
}

// Each kind is refused at once, by name, by each of the three readers of the
// file: the check, the reload requester and the daemon's start.
TEST_F(HostileEnvironmentTest, ConfigPathThatIsNotARegularFileIsRefusedAtOnce) {
  std::vector<std::string> paths;
  ASSERT_EQ(NotRegularKinds(dir_, &paths), "");
  for (const std::string& path : paths) {
    SCOPED_TRACE(path);
    auto t0 = Clock::now();
    RunResult check = RunToCompletion({DaemonPath(), "--check-config", "-c", path}, 5s);
    EXPECT_EQ(check.exit_code, kExitConfig) << check.err;
    EXPECT_NE(check.err.find(path + ": cannot read: it is "), std::string::npos) << check.err;
    EXPECT_NE(check.err.find("not a regular file"), std::string::npos) << check.err;
    EXPECT_NE(check.err.find("cannot be read"), std::string::npos) << check.err;
    EXPECT_EQ(check.err.find("invalid"), std::string::npos) << check.err;

    RunResult reload = RunToCompletion({DaemonPath(), "--reload", std::to_string(getpid()), "-c", path}, 5s);
    EXPECT_EQ(reload.exit_code, kExitConfig) << reload.err;
    EXPECT_NE(reload.err.find("cannot be read"), std::string::npos) << reload.err;

    Daemon daemon(dir_, path);
    std::optional<int> status = daemon.WaitExit(5s);
    ASSERT_TRUE(status) << "rot13d kept running on " << path;
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == kExitConfig) << "wait status " << *status;
    EXPECT_TRUE(daemon.LogContains("cannot be read")) << daemon.Log();
    // Not a hang cut short: each of the three answered well inside its deadline.
    EXPECT_LT(Clock::now() - t0, 4s);
  }
}

// The running supervisor's reload: the file became a FIFO with no writer. The
// reload fails at once and the loop goes on: a killed worker is replaced, a
// stop is obeyed.
TEST_F(HostileEnvironmentTest, ReloadOfAFifoFailsAtOnceAndTheLoopGoesOn) {
  ASSERT_NO_FATAL_FAILURE(Start("workers = 2\n", 2));
  std::string config = dir_.File("rot13d.toml");
  ASSERT_EQ(unlink(config.c_str()), 0);
  ASSERT_EQ(mkfifo(config.c_str(), 0600), 0);
  daemon_->Signal(SIGHUP);
  ASSERT_TRUE(daemon_->WaitForLog("reload failed: " + config + " cannot be read", 5s)) << daemon_->Log();
  EXPECT_TRUE(daemon_->LogContains("it is a FIFO, not a regular file")) << daemon_->Log();

  std::vector<pid_t> before = daemon_->Workers();
  ASSERT_EQ(before.size(), 2u);
  ASSERT_TRUE(daemon_->SignalWorker(before[0], SIGKILL));
  EXPECT_TRUE(WaitFor([&] {
    std::vector<pid_t> now = daemon_->Workers();
    return now.size() == 2 && std::find(now.begin(), now.end(), before[0]) == now.end();
  }, 5s)) << "the killed worker was not replaced";
  EXPECT_EQ(FreshRoundTrip("Hello"), "Uryyb");

  daemon_->Signal(SIGTERM);
  std::optional<int> status = daemon_->WaitExit(5s);
  ASSERT_TRUE(status) << "SIGTERM not obeyed";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "wait status " << *status;
}

// Every signal number 1..SIGRTMAX, glibc's reserved 32 and 33 among them, to
// the supervisor and to a worker, but those with a documented meaning (and
// SIGKILL/SIGSTOP, which nothing can catch). Nobody dies or stops, the same
// workers serve, and the supervisor says once what it ignored.
TEST_F(HostileEnvironmentTest, NoSignalWithoutAMeaningStopsOrKillsAnyone) {
  ASSERT_NO_FATAL_FAILURE(Start("workers = 2\n", 2));
  std::vector<pid_t> workers = daemon_->Workers();
  ASSERT_EQ(workers.size(), 2u);
  // The supervisor: HUP reloads, USR2 upgrades, INT/TERM/QUIT stop; USR1 is logged.
  // A worker: INT/TERM drain it, QUIT stops it. SIGABRT keeps its default in
  // both (systemd's watchdog and the hung-worker check abort with a core).
  const std::vector<int> meaningful_to_supervisor = {SIGHUP,  SIGUSR2, SIGINT, SIGQUIT,
                                                     SIGTERM, SIGABRT, SIGKILL, SIGSTOP};
  const std::vector<int> meaningful_to_worker = {SIGINT, SIGQUIT, SIGTERM, SIGABRT, SIGKILL, SIGSTOP};
  auto has = [](const std::vector<int>& v, int s) { return std::find(v.begin(), v.end(), s) != v.end(); };
  for (int round = 0; round < 3; ++round) {
    for (int sig = 1; sig <= kMaxSignal; ++sig) {
      if (!has(meaningful_to_supervisor, sig)) {
        ASSERT_EQ(kill(daemon_->pid(), sig), 0) << sig;
      }
      if (!has(meaningful_to_worker, sig)) {
        ASSERT_TRUE(daemon_->SignalWorker(workers[1], sig)) << sig;
      }
    }
  }
  // Let them act on it (a default action is immediate; the log lines are not).
  ASSERT_TRUE(daemon_->WaitForLog("unexpected SIGRTMAX", 5s)) << daemon_->Log();
  for (int i = 0; i < 20; ++i) ASSERT_EQ(FreshRoundTrip("Hello"), "Uryyb") << "connection " << i;
  EXPECT_FALSE(daemon_->exited());
  EXPECT_NE(ProcessState(daemon_->pid()), 'T') << "the supervisor is stopped";
  EXPECT_EQ(daemon_->Workers(), workers) << daemon_->Log();
  for (pid_t w : workers) EXPECT_NE(ProcessState(w), 'T') << "worker " << w << " is stopped";

  // One line per signal, whatever the repeats (three rounds were sent).
  for (const char* name : {"SIGALRM", "SIGTTIN", "SIGTSTP", "SIGPWR", "SIGRTMIN+2", "SIGRTMIN+5", "SIGSEGV",
                           "signal 32", "signal 33"}) {
    EXPECT_EQ(daemon_->LogCount(std::string("ignoring unexpected ") + name + " from pid"), 1u) << name;
  }
  EXPECT_EQ(daemon_->LogCount("worker "), 0u) << "no worker died:\n" << daemon_->Log();
  // systemd sends SIGCONT after the SIGTERM of every stop: not worth a warning.
  EXPECT_EQ(daemon_->LogCount("SIGCONT"), 0u) << daemon_->Log();

  // The signals with a meaning still have it.
  daemon_->Signal(SIGTERM);
  std::optional<int> status = daemon_->WaitExit(10s);
  ASSERT_TRUE(status);
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "wait status " << *status;
}

// What would only fail at start (after "listening on") or bind a random port
// is found by the check, with its place in the file.
TEST_F(HostileEnvironmentTest, CheckFindsPortZeroAndUnknownUsersAndGroups) {
  std::string path = dir_.Write("port0.toml", "listen = [\"127.0.0.1:0\"]\n");
  RunResult r = RunToCompletion({DaemonPath(), "-t", "-c", path});
  EXPECT_EQ(r.exit_code, kExitConfig);
  EXPECT_NE(r.err.find(path + ":1:11: 'listen': port 0"), std::string::npos) << r.err;

  path = dir_.Write("users.toml",
                    "workers = 1\nuser = \"nosuchuser\"\nsocket_user = \"nosuchuser2\"\n"
                    "socket_group = \"nosuchgroup\"\n");
  r = RunToCompletion({DaemonPath(), "-t", "-c", path});
  EXPECT_EQ(r.exit_code, kExitConfig);
  EXPECT_NE(r.err.find(path + ":2:8: 'user': no such user 'nosuchuser'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(path + ":3:15: 'socket_user': no such user 'nosuchuser2'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(path + ":4:16: 'socket_group': no such group 'nosuchgroup'"), std::string::npos) << r.err;

  // A numeric uid without a passwd entry has no primary group to fall back on.
  path = dir_.Write("uid.toml", "user = \"54321\"\n");
  r = RunToCompletion({DaemonPath(), "-t", "-c", path});
  EXPECT_EQ(r.exit_code, kExitConfig);
  EXPECT_NE(r.err.find("set 'group' too"), std::string::npos) << r.err;
  path = dir_.Write("uidgid.toml", "user = \"54321\"\ngroup = \"54321\"\n");
  r = RunToCompletion({DaemonPath(), "-t", "-q", "-c", path});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "") << "--quiet prints no configuration";
  EXPECT_EQ(r.err, "") << "--quiet prints no verdict";
}

}  // namespace
}  // namespace rot13d::blackbox
