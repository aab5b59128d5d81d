// Live upgrade (`rot13d --upgrade PID`, SIGUSR2, a reload after the binary was
// replaced): the supervisor executes its installed binary in place. Same pid,
// the same listening socket (no connection refused meanwhile), open
// connections served to their end by the adopted workers, counters and
// generation numbers carried over; and a new binary that fails its
// pre-flight, or whose workers cannot boot, changes nothing.
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <filesystem>
#include <thread>

#include "common/exit_codes.h"
#include "tests/blackbox/daemon_test.h"

namespace rot13d::blackbox {
namespace {

namespace fs = std::filesystem;

class UpgradeTest : public DaemonTest {
 protected:
  RunResult Ask(const std::string& what, const std::vector<std::string>& extra = {},
                const std::string& binary = DaemonPath()) {
    std::vector<std::string> argv{binary};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back(what);
    argv.push_back(std::to_string(daemon_->pid()));
    return RunToCompletion(argv, 60s);
  }

  // A copy of `from` at dir/name, put there as a package manager does: a new
  // file renamed over the old one (a new inode; the running image is untouched).
  std::string Install(const std::string& from, const std::string& name) {
    std::string target = dir_.File(name);
    std::string tmp = target + ".new";
    fs::copy_file(from, tmp, fs::copy_options::overwrite_existing);
    fs::permissions(tmp, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec);
    fs::rename(tmp, target);
    return target;
  }

  std::string Get(const std::string& path) {
    Client c = Client::Connect("127.0.0.1:" + std::to_string(admin_port_));
    if (!c.connected()) return "<" + c.error() + ">";
    c.SendAll("GET " + path + " HTTP/1.0\r\nHost: x\r\n\r\n");
    std::string answer = c.ReceiveToEof();
    size_t body = answer.find("\r\n\r\n");
    return body == std::string::npos ? answer : answer.substr(body + 4);
  }
  std::string Admin() const { return "admin_listen = [\"127.0.0.1:" + std::to_string(admin_port_) + "\"]\n"; }

  uint16_t admin_port_ = FreePort();
};

// One number from the /status JSON ("key":N).
uint64_t JsonNumber(const std::string& json, const std::string& key) {
  size_t at = json.find("\"" + key + "\":");
  if (at == std::string::npos) return UINT64_MAX;
  return std::stoull(json.substr(at + key.size() + 3));
}

TEST_F(UpgradeTest, KeepsThePidTheListenerAndOpenConnections) {
  ASSERT_NO_FATAL_FAILURE(Start("workers = 2\nshutdown_timeout = 20\n" + Admin(), 2));
  std::vector<pid_t> old_workers = daemon_->Workers();
  Client open = Client::Connect(address());
  ASSERT_TRUE(open.connected()) << open.error();
  ASSERT_EQ(open.RoundTrip("before"), "orsber");

  // New connections all through the upgrade: none may be refused or lost.
  std::atomic<bool> stop{false};
  std::atomic<int> served{0}, failed{0};
  std::string first_failure;
  std::thread load([&] {
    while (!stop) {
      Client c = Client::Connect(address(), 2s);
      std::string got = c.connected() ? c.RoundTrip("Hello", 2s) : "<" + c.error() + ">";
      if (got == "Uryyb") {
        ++served;
      } else if (failed++ == 0) {
        first_failure = got;
      }
    }
  });
  RunResult r = Ask("--upgrade");
  // A little more load after the switch, then stop.
  int at_switch = served.load();
  WaitFor([&] { return served.load() >= at_switch + 20; }, 5s);
  stop = true;
  load.join();

  EXPECT_EQ(r.exit_code, kExitOk) << r.out << r.err << daemon_->Log();
  EXPECT_NE(r.out.find("upgrade applied: generation 2 is serving"), std::string::npos) << r.out;
  EXPECT_EQ(failed.load(), 0) << first_failure;
  EXPECT_GT(served.load(), 20);
  std::string pid = std::to_string(daemon_->pid());
  EXPECT_TRUE(daemon_->LogContains("executed in place (pid " + pid + ")")) << daemon_->Log();
  EXPECT_TRUE(daemon_->LogContains("upgrade complete: rot13d ")) << daemon_->Log();
  EXPECT_FALSE(daemon_->exited());
  EXPECT_EQ(daemon_->LogCount("listening on"), 1u) << "the listener was bound again:\n" << daemon_->Log();

  // The connection opened before is served on by its (adopted, draining) worker.
  EXPECT_EQ(open.RoundTrip("after"), "nsgre");
  // The worker holding the open connection drains; the other one, idle, leaves.
  auto old_ones = [&] {
    size_t n = 0;
    for (pid_t w : daemon_->Workers()) n += std::count(old_workers.begin(), old_workers.end(), w);
    return n;
  };
  EXPECT_TRUE(WaitFor([&] { return old_ones() == 1; }, 5s)) << old_ones() << " old workers\n" << daemon_->Log();
  EXPECT_EQ(open.RoundTrip("still"), "fgvyy");
  ::shutdown(open.fd(), SHUT_WR);
  EXPECT_EQ(open.ReceiveToEof(), "");
  EXPECT_TRUE(open.eof());
  // Its worker then exits, and only the new generation is left.
  EXPECT_TRUE(WaitFor([&] {
    std::vector<pid_t> now = daemon_->Workers();
    return now.size() == 2 && std::none_of(now.begin(), now.end(), [&](pid_t w) {
             return std::count(old_workers.begin(), old_workers.end(), w) > 0;
           });
  }, 10s)) << daemon_->Log();
  EXPECT_EQ(FreshRoundTrip("Hello"), "Uryyb");
}

TEST_F(UpgradeTest, CountersGenerationsAndStartTimeCarryOver) {
  ASSERT_NO_FATAL_FAILURE(Start("workers = 2\n" + Admin(), 2));
  for (int i = 0; i < 5; ++i) ASSERT_EQ(FreshRoundTrip("Hello"), "Uryyb");
  // Each close is counted when its worker sees the EOF: wait for all five.
  ASSERT_TRUE(WaitFor([&] { return Get("/metrics").find("rot13d_connections_closed_total{reason=\"client_eof\"} 5") !=
                                   std::string::npos; }, 5s)) << Get("/metrics");
  std::string before = Get("/status");
  ASSERT_EQ(JsonNumber(before, "connections_accepted"), 5u) << before;
  std::string metrics_before = Get("/metrics");
  size_t start = metrics_before.find("rot13d_start_time_seconds ");
  ASSERT_NE(start, std::string::npos) << metrics_before;
  std::string start_line = metrics_before.substr(start, metrics_before.find('\n', start) - start);

  RunResult r = Ask("--upgrade");
  ASSERT_EQ(r.exit_code, kExitOk) << r.err << daemon_->Log();
  for (int i = 0; i < 3; ++i) ASSERT_EQ(FreshRoundTrip("Hello"), "Uryyb");
  std::string after = Get("/status");
  EXPECT_EQ(JsonNumber(after, "pid"), static_cast<uint64_t>(daemon_->pid())) << after;
  EXPECT_EQ(JsonNumber(after, "generation"), 2u) << after;
  EXPECT_EQ(JsonNumber(after, "connections_accepted"), 8u) << after;
  EXPECT_NE(after.find("\"last_reload\":\"ok (upgrade to "), std::string::npos) << after;
  std::string metrics = Get("/metrics");
  EXPECT_NE(metrics.find(start_line + "\n"), std::string::npos) << start_line << "\n" << metrics;
  EXPECT_NE(metrics.find("rot13d_reloads_total{result=\"ok\"} 1\n"), std::string::npos) << metrics;

  // The next upgrade goes on from there: generation 3.
  r = Ask("--upgrade");
  EXPECT_EQ(r.exit_code, kExitOk) << r.err << daemon_->Log();
  EXPECT_NE(r.out.find("generation 3 is serving"), std::string::npos) << r.out;
  EXPECT_EQ(JsonNumber(Get("/status"), "connections_accepted"), 8u);
}

TEST_F(UpgradeTest, ABinaryThatFailsItsPreflightChangesNothing) {
  Daemon::Options options;
  options.binary = Install(DaemonPath(), "rot13d");
  ASSERT_NO_FATAL_FAILURE(Start("workers = 2\n", 2, options));
  std::vector<pid_t> before = daemon_->Workers();
  std::string broken = dir_.Write("broken", "#!/bin/sh\necho 'this build is broken'\nexit 1\n");
  Install(broken, "rot13d");

  RunResult r = Ask("--upgrade");
  EXPECT_EQ(r.exit_code, kExitFailure) << r.out << r.err;
  EXPECT_NE(r.err.find("upgrade failed: the new binary failed its pre-flight"), std::string::npos) << r.err;
  EXPECT_TRUE(daemon_->LogContains("upgrade failed: the pre-flight of " + dir_.File("rot13d") +
                                   " exited with code 1: this build is broken"))
      << daemon_->Log();
  EXPECT_FALSE(daemon_->LogContains("executed in place"));
  EXPECT_EQ(daemon_->Workers(), before);
  EXPECT_EQ(FreshRoundTrip("still"), "fgvyy");

  // A plain reload is then refused too: it would be an upgrade to the broken binary.
  r = Ask("--reload");
  EXPECT_EQ(r.exit_code, kExitFailure) << r.out << r.err;
  EXPECT_EQ(daemon_->Workers(), before);

  // A file that cannot be executed at all fails the same way.
  ASSERT_EQ(chmod(dir_.File("rot13d").c_str(), 0644), 0);
  r = Ask("--upgrade");
  EXPECT_EQ(r.exit_code, kExitFailure) << r.out << r.err;
  EXPECT_EQ(daemon_->Workers(), before);
  EXPECT_EQ(FreshRoundTrip("still"), "fgvyy");
}

// A new binary that cannot load libmicrohttpd (loaded at run time) fails its
// pre-flight while admin_listen is set, instead of taking over without the
// admin endpoint.
TEST_F(UpgradeTest, ABinaryThatCannotLoadTheAdminLibraryFailsItsPreflight) {
  Daemon::Options options;
  options.binary = Install(DaemonPath(), "rot13d");
  // Read only by the test-hooks binary installed below, and by its pre-flight.
  options.extra_env.push_back("ROT13D_TEST_MICROHTTPD_SONAME=librot13d-no-such-library.so.0");
  ASSERT_NO_FATAL_FAILURE(Start("workers = 2\n" + Admin(), 2, options));
  std::vector<pid_t> before = daemon_->Workers();
  Install(TestHooksDaemonPath(), "rot13d");

  RunResult r = Ask("--upgrade");
  EXPECT_EQ(r.exit_code, kExitFailure) << r.out << r.err;
  EXPECT_TRUE(daemon_->LogContains("cannot serve admin_listen: libmicrohttpd, which admin_listen needs, cannot be "
                                   "loaded: librot13d-no-such-library.so.0: "))
      << daemon_->Log();
  EXPECT_FALSE(daemon_->LogContains("executed in place"));
  EXPECT_EQ(daemon_->Workers(), before);
  EXPECT_EQ(FreshRoundTrip("still"), "fgvyy");
  EXPECT_NE(Get("/metrics").find("rot13d_workers"), std::string::npos);
}

TEST_F(UpgradeTest, AReloadAfterTheBinaryWasReplacedRunsTheNewOne) {
  Daemon::Options options;
  options.binary = Install(DaemonPath(), "rot13d");
  ASSERT_NO_FATAL_FAILURE(Start("workers = 1\n", 1, options));
  Install(DaemonPath(), "rot13d");  // "the package was upgraded"
  RunResult r = Ask("--reload", {"-c", dir_.File("rot13d.toml")});
  EXPECT_EQ(r.exit_code, kExitOk) << r.err << daemon_->Log();
  EXPECT_EQ(daemon_->LogCount("executed in place"), 1u) << daemon_->Log();
  // The binary did not change since: a plain reload.
  r = Ask("--reload", {"-c", dir_.File("rot13d.toml")});
  EXPECT_EQ(r.exit_code, kExitOk) << r.err << daemon_->Log();
  EXPECT_EQ(daemon_->LogCount("executed in place"), 1u) << daemon_->Log();
  EXPECT_TRUE(daemon_->LogContains("reload complete: generation 3")) << daemon_->Log();
  EXPECT_EQ(FreshRoundTrip("Hello"), "Uryyb");
}

TEST_F(UpgradeTest, NewWorkersThatCannotBootLeaveTheAdoptedOnesServing) {
  std::string fail_file = dir_.File("fail-boot");
  Daemon::Options options;
  options.binary = TestHooksDaemonPath();
  options.extra_env.push_back("ROT13D_TEST_FAIL_BOOT_FILE=" + fail_file);
  ASSERT_NO_FATAL_FAILURE(Start("workers = 2\n", 2, options));
  std::vector<pid_t> before = daemon_->Workers();
  dir_.Write("fail-boot", "x");
  RunResult r = Ask("--upgrade", {}, TestHooksDaemonPath());
  EXPECT_EQ(r.exit_code, kExitFailure) << r.out << r.err;
  EXPECT_NE(r.err.find("the new workers did not boot"), std::string::npos) << r.err;
  EXPECT_TRUE(daemon_->LogContains("executed in place")) << daemon_->Log();
  EXPECT_TRUE(daemon_->LogContains("upgrade failed: generation 2 abandoned")) << daemon_->Log();
  EXPECT_TRUE(WaitFor([&] { return daemon_->Workers() == before; }, 2s)) << daemon_->Workers().size() << " workers";
  EXPECT_EQ(FreshRoundTrip("still"), "fgvyy");
  // Once the workers can boot again, the next reload takes over.
  ASSERT_EQ(unlink(fail_file.c_str()), 0);
  r = Ask("--reload", {}, TestHooksDaemonPath());
  EXPECT_EQ(r.exit_code, kExitOk) << r.err << daemon_->Log();
  EXPECT_EQ(FreshRoundTrip("Hello"), "Uryyb");
}

TEST_F(UpgradeTest, Usr2UpgradesWithoutAnAnswer) {
  ASSERT_NO_FATAL_FAILURE(Start("workers = 1\n", 1));
  daemon_->Signal(SIGUSR2);
  EXPECT_TRUE(daemon_->WaitForLog("upgrade complete: rot13d ")) << daemon_->Log();
  EXPECT_FALSE(daemon_->LogContains("ignored"));
  EXPECT_EQ(FreshRoundTrip("Hello"), "Uryyb");
  // And SIGTERM still stops the new image gracefully.
  daemon_->Signal(SIGTERM);
  auto status = daemon_->WaitExit();
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << daemon_->Log();
}

TEST_F(UpgradeTest, AUnixListenerAndItsFileSurvive) {
  std::string sock = dir_.File("rot13.sock");
  Daemon::Options options;
  options.extra_args = {"--listen", "unix:" + sock};
  ASSERT_NO_FATAL_FAILURE(Start("workers = 1\n", 1, options));
  struct stat before {};
  ASSERT_EQ(stat(sock.c_str(), &before), 0);
  RunResult r = Ask("--upgrade");
  ASSERT_EQ(r.exit_code, kExitOk) << r.err << daemon_->Log();
  struct stat after {};
  ASSERT_EQ(stat(sock.c_str(), &after), 0);
  EXPECT_EQ(after.st_ino, before.st_ino) << "the socket file was replaced";
  EXPECT_EQ(FreshRoundTrip("Hello", "unix:" + sock), "Uryyb");
  // The new image owns the file now: removed at stop.
  daemon_->Signal(SIGTERM);
  ASSERT_TRUE(daemon_->WaitExit().has_value());
  EXPECT_NE(stat(sock.c_str(), &after), 0) << "the socket file was left behind";
}

// Under socket activation (the packaged service): the sockets systemd passed
// go over as they are, and are still the only ones served.
TEST_F(UpgradeTest, SocketsFromSystemdGoOverAsTheyAre) {
  Fd listener(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sin;
  ASSERT_EQ(bind(listener.get(), reinterpret_cast<sockaddr*>(&sin), len), 0);
  ASSERT_EQ(listen(listener.get(), 16), 0);
  ASSERT_EQ(getsockname(listener.get(), reinterpret_cast<sockaddr*>(&sin), &len), 0);
  std::string activated = "127.0.0.1:" + std::to_string(ntohs(sin.sin_port));
  Daemon::Options options;
  options.listen_fds = {listener.get()};
  ASSERT_NO_FATAL_FAILURE(Start("workers = 2\n", 2, options));
  listener.Reset();  // from now on only the daemon holds it
  Client open = Client::Connect(activated);
  ASSERT_EQ(open.RoundTrip("before"), "orsber");
  RunResult r = Ask("--upgrade");
  ASSERT_EQ(r.exit_code, kExitOk) << r.err << daemon_->Log();
  EXPECT_EQ(FreshRoundTrip("Hello", activated), "Uryyb");
  EXPECT_EQ(open.RoundTrip("after"), "nsgre");
  EXPECT_FALSE(Client::Connect(address()).connected()) << "the file's listen address was bound by the new image";
  // A reload after it still knows the sockets are systemd's.
  r = Ask("--reload");
  EXPECT_EQ(r.exit_code, kExitOk) << r.err << daemon_->Log();
  EXPECT_EQ(daemon_->LogCount("is ignored"), 3u) << daemon_->Log();
  EXPECT_EQ(FreshRoundTrip("Hello", activated), "Uryyb");
}

// --reload and --upgrade without --config leave the file to the supervisor,
// which knows which one it runs with.
TEST_F(UpgradeTest, RequestsWithoutConfigCheckTheSupervisorsOwnFile) {
  ASSERT_NO_FATAL_FAILURE(Start("workers = 1\n", 1));
  RunResult r = Ask("--reload");
  EXPECT_EQ(r.exit_code, kExitOk) << r.err << daemon_->Log();
  WriteConfig("workers = \"many\"\n");
  for (const char* what : {"--reload", "--upgrade"}) {
    r = Ask(what);
    EXPECT_EQ(r.exit_code, kExitConfig) << what << ": " << r.out << r.err;
    EXPECT_NE(r.err.find("found its configuration file invalid"), std::string::npos) << r.err;
  }
  EXPECT_TRUE(daemon_->LogContains(dir_.File("rot13d.toml") + ":3:11: 'workers'")) << daemon_->Log();
  EXPECT_EQ(FreshRoundTrip("Hello"), "Uryyb");
}

}  // namespace
}  // namespace rot13d::blackbox
