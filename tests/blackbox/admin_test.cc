// The admin endpoint (admin_listen): /metrics in the Prometheus text format
// (checked by Debian's promtool), /status as JSON and as `rot13d --status`,
// counters that survive worker deaths, process titles, and a supervisor that
// silent admin clients cannot stall.
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <fstream>
#include <regex>

#include "common/exit_codes.h"
#include "tests/blackbox/daemon_test.h"

namespace rot13d::blackbox {
namespace {

constexpr const char* kPromtool = "/usr/bin/promtool";

class AdminTest : public DaemonTest {
 protected:
  std::string admin_socket() const { return dir_.File("admin.sock"); }
  std::string admin() const { return "unix:" + admin_socket(); }
  void StartWithAdmin(std::string_view extra, size_t workers) {
    Start(std::string(extra) + "admin_listen = [\"" + admin() + "\", \"127.0.0.1:" + std::to_string(admin_port_) +
              "\"]\n",
          workers);
  }
  // The body of GET path, or "" (and a failure) when the answer is not a 200.
  std::string Get(const std::string& path, const std::string& where = "") {
    Client c = Client::Connect(where.empty() ? admin() : where);
    if (!c.connected()) {
      ADD_FAILURE() << "connect to the admin endpoint: " << c.error();
      return "";
    }
    c.SendAll("GET " + path + " HTTP/1.0\r\nHost: x\r\n\r\n");
    std::string answer = c.ReceiveToEof();
    size_t body = answer.find("\r\n\r\n");
    if (!answer.starts_with("HTTP/1.") || answer.find(" 200 ") > answer.find("\r\n") || body == std::string::npos) {
      ADD_FAILURE() << "GET " << path << ": " << answer.substr(0, 200);
      return "";
    }
    return answer.substr(body + 4);
  }
  // The value of one sample line of the exposition ("name{labels} value").
  static double Sample(const std::string& metrics, const std::string& series) {
    size_t at = metrics.find("\n" + series + " ");
    if (at == std::string::npos) return -1;
    return std::stod(metrics.substr(at + series.size() + 2));
  }
  uint16_t admin_port_ = FreePort();
};

TEST_F(AdminTest, MetricsAreValidPrometheusAndCountWhatHappened) {
  ASSERT_NO_FATAL_FAILURE(StartWithAdmin("workers = 2\n", 2));
  for (int i = 0; i < 10; ++i) ASSERT_EQ(FreshRoundTrip("Hello"), "Uryyb");
  std::string metrics;
  // The last connection's close is counted when its worker sees the EOF, in
  // counters a scrape reads one at a time (relaxed atomics, no snapshot).
  ASSERT_TRUE(WaitFor([&] {
    metrics = Get("/metrics");
    return Sample(metrics, "rot13d_connections_closed_total{reason=\"client_eof\"}") >= 10 &&
           Sample(metrics, "rot13d_connection_duration_seconds_count") >= 10;
  }, 5s)) << metrics;
  EXPECT_EQ(Sample(metrics, "rot13d_connections_accepted_total"), 10);
  EXPECT_EQ(Sample(metrics, "rot13d_bytes_received_total"), 50);
  EXPECT_EQ(Sample(metrics, "rot13d_bytes_sent_total"), 50);
  EXPECT_EQ(Sample(metrics, "rot13d_workers{state=\"accepting\"}"), 2);
  EXPECT_EQ(Sample(metrics, "rot13d_generation"), 1);
  EXPECT_EQ(Sample(metrics, "rot13d_connection_duration_seconds_count"), 10);
  EXPECT_NE(metrics.find("rot13d_build_info{version=\""), std::string::npos);
  EXPECT_EQ(Get("/metrics", "127.0.0.1:" + std::to_string(admin_port_)).find("rot13d_generation"), metrics.find("rot13d_generation"))
      << "the TCP address serves the same";

  if (access(kPromtool, X_OK) != 0) GTEST_SKIP() << "promtool (Debian's prometheus package) is not installed";
  std::string file = dir_.Write("metrics.txt", metrics);
  RunResult check = RunToCompletion({"/bin/sh", "-c", std::string(kPromtool) + " check metrics < " + file});
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err << metrics;
}

// Unlike HAProxy's per-process counters, a worker's death loses nothing.
TEST_F(AdminTest, CountersSurviveWorkerRestartsAndRestartsAreCountedByCause) {
  ASSERT_NO_FATAL_FAILURE(StartWithAdmin("workers = 2\n", 2));
  for (int i = 0; i < 6; ++i) ASSERT_EQ(FreshRoundTrip("abc"), "nop");
  // A worker counts what it sent just after send() returns: the client may
  // hold the answer a moment before the count is in. Kill only once it is.
  std::string metrics;
  ASSERT_TRUE(WaitFor([&] {
    metrics = Get("/metrics");
    return Sample(metrics, "rot13d_bytes_sent_total") == 18;
  }, 5s)) << metrics;
  std::vector<pid_t> before = daemon_->Workers();
  for (pid_t w : before) ASSERT_TRUE(daemon_->SignalWorker(w, SIGKILL));
  ASSERT_TRUE(WaitFor([&] {
    std::vector<pid_t> now = daemon_->Workers();
    return now.size() == 2 && std::none_of(now.begin(), now.end(), [&](pid_t p) {
             return std::count(before.begin(), before.end(), p) > 0;
           });
  }, kStartTimeout));
  metrics = Get("/metrics");
  EXPECT_EQ(Sample(metrics, "rot13d_connections_accepted_total"), 6) << metrics;
  EXPECT_EQ(Sample(metrics, "rot13d_bytes_sent_total"), 18) << metrics;
  EXPECT_EQ(Sample(metrics, "rot13d_worker_restarts_total{reason=\"killed\"}"), 2) << metrics;
  // A reload is counted too.
  WriteConfig("workers = 2\nadmin_listen = [\"" + admin() + "\", \"127.0.0.1:" + std::to_string(admin_port_) + "\"]\n");
  daemon_->Signal(SIGHUP);
  ASSERT_TRUE(daemon_->WaitForLog("reload complete: generation 2"));
  metrics = Get("/metrics");
  EXPECT_EQ(Sample(metrics, "rot13d_reloads_total{result=\"ok\"}"), 1) << metrics;
  EXPECT_EQ(Sample(metrics, "rot13d_generation"), 2) << metrics;
}

TEST_F(AdminTest, StatusAsJsonAndAsTheTableOfRot13dStatus) {
  ASSERT_NO_FATAL_FAILURE(StartWithAdmin("workers = 2\n", 2));
  ASSERT_EQ(FreshRoundTrip("Hello"), "Uryyb");
  std::string status = Get("/status");
  EXPECT_NE(status.find("\"pid\":" + std::to_string(daemon_->pid())), std::string::npos) << status;
  for (pid_t w : daemon_->Workers()) EXPECT_NE(status.find("\"pid\":" + std::to_string(w)), std::string::npos) << status;
  EXPECT_NE(status.find("\"state\":\"accepting\""), std::string::npos) << status;

  RunResult table = RunToCompletion({DaemonPath(), "--status", admin()});
  EXPECT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find("pid " + std::to_string(daemon_->pid())), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("generation 1 serving"), std::string::npos) << table.out;
  for (pid_t w : daemon_->Workers()) {
    EXPECT_TRUE(std::regex_search(table.out, std::regex("\n" + std::to_string(w) + " +[01] +1 accepting ")))
        << table.out;
  }
  // Without an address: the configuration's first admin_listen.
  RunResult from_config = RunToCompletion({DaemonPath(), "-c", dir_.File("rot13d.toml"), "--status"});
  EXPECT_EQ(from_config.exit_code, 0) << from_config.err;
  EXPECT_NE(from_config.out.find("generation 1 serving"), std::string::npos) << from_config.out;
  // Nobody there: a failure, said plainly.
  RunResult nobody = RunToCompletion({DaemonPath(), "--status", "unix:" + dir_.File("nothing.sock")});
  EXPECT_EQ(nobody.exit_code, 1);
  EXPECT_NE(nobody.err.find("cannot get the status"), std::string::npos) << nobody.err;
}

// The supervisor answers admin clients in its own loop: a hundred that
// connect and say nothing cost it nothing. A worker killed meanwhile is
// replaced as fast as ever, and the endpoint still answers.
TEST_F(AdminTest, SilentAdminClientsNeverStallSupervision) {
  ASSERT_NO_FATAL_FAILURE(StartWithAdmin("workers = 2\n", 2));
  std::vector<Client> silent;
  for (int i = 0; i < 100; ++i) {
    silent.push_back(Client::Connect(i % 2 ? admin() : "127.0.0.1:" + std::to_string(admin_port_)));
    ASSERT_TRUE(silent.back().connected()) << i << ": " << silent.back().error();
  }
  std::vector<pid_t> before = daemon_->Workers();
  auto killed = Clock::now();
  ASSERT_TRUE(daemon_->SignalWorker(before[0], SIGKILL));
  ASSERT_TRUE(WaitFor([&] {
    std::vector<pid_t> now = daemon_->Workers();
    return now.size() == 2 && std::count(now.begin(), now.end(), before[0]) == 0;
  }, 5s, 1ms));
  EXPECT_LT(Clock::now() - killed, 1s) << "the replacement took "
                                       << std::chrono::duration_cast<milliseconds>(Clock::now() - killed).count()
                                       << " ms";
  EXPECT_EQ(FreshRoundTrip("Hello"), "Uryyb");
  EXPECT_NE(Get("/metrics").find("rot13d_workers"), std::string::npos);
}

// Workers never hold the admin endpoint's sockets: only the supervisor does.
TEST_F(AdminTest, WorkersHoldNoAdminDescriptor) {
  ASSERT_NO_FATAL_FAILURE(StartWithAdmin("workers = 2\n", 2));
  Client held = Client::Connect(admin());  // an admin connection open while workers fork
  ASSERT_TRUE(held.connected());
  ASSERT_TRUE(daemon_->SignalWorker(daemon_->Workers()[0], SIGKILL));  // a fork after it
  ASSERT_TRUE(WaitFor([&] { return daemon_->Workers().size() == 2; }, kStartTimeout));
  auto socket_inodes = [](pid_t pid) {
    std::vector<std::string> out;
    for (int fd = 0; fd < 1024; ++fd) {
      char link[256] = {};
      std::string path = "/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd);
      ssize_t n = readlink(path.c_str(), link, sizeof link - 1);
      if (n > 0 && std::string(link).starts_with("socket:")) out.push_back(link);
    }
    return out;
  };
  std::vector<std::string> supervisor = socket_inodes(daemon_->pid());
  for (pid_t w : daemon_->Workers()) {
    std::vector<std::string> worker = socket_inodes(w);
    // A worker holds its listener and client connections, all shared with
    // nobody but the supervisor's listener: count what it shares beyond that.
    size_t shared = 0;
    for (const std::string& s : worker) shared += std::count(supervisor.begin(), supervisor.end(), s);
    EXPECT_EQ(shared, 1u) << "worker " << w << " shares " << shared
                          << " sockets with the supervisor; only the one listener is expected";
  }
}

// libmicrohttpd and the TLS stack it brings are mapped only once an admin
// endpoint is configured: not at start without admin_listen, nor in workers
// forked then; a reload that adds admin_listen loads it and serves.
TEST_F(AdminTest, TheHttpLibraryIsLoadedOnlyWhenAnAdminEndpointIsConfigured) {
  auto maps_http = [](pid_t pid) {
    std::string maps = ReadFile("/proc/" + std::to_string(pid) + "/maps");
    EXPECT_FALSE(maps.empty()) << "cannot read the maps of " << pid;
    return maps.find("/libmicrohttpd.so") != std::string::npos || maps.find("/libgnutls.so") != std::string::npos;
  };
  ASSERT_NO_FATAL_FAILURE(Start("workers = 2\n", 2));
  EXPECT_FALSE(maps_http(daemon_->pid())) << "the supervisor mapped libmicrohttpd or GnuTLS with no admin_listen";
  for (pid_t w : daemon_->Workers()) EXPECT_FALSE(maps_http(w)) << "worker " << w;

  WriteConfig("workers = 2\nadmin_listen = [\"" + admin() + "\"]\n");
  daemon_->Signal(SIGHUP);
  ASSERT_TRUE(daemon_->WaitForLog("reload complete: generation 2")) << daemon_->Log();
  EXPECT_NE(Get("/metrics").find("rot13d_workers"), std::string::npos);
  EXPECT_TRUE(maps_http(daemon_->pid()));
}

// A libmicrohttpd that cannot be loaded fails the reload that asks for an
// admin endpoint, with the library's name, and the running generation stays.
TEST_F(AdminTest, AReloadAddingAdminFailsCleanlyWhenTheLibraryCannotLoad) {
  Daemon::Options options;
  options.binary = TestHooksDaemonPath();
  options.extra_env.push_back("ROT13D_TEST_MICROHTTPD_SONAME=librot13d-no-such-library.so.0");
  ASSERT_NO_FATAL_FAILURE(Start("workers = 1\n", 1, options));
  std::vector<pid_t> before = daemon_->Workers();

  WriteConfig("workers = 1\nadmin_listen = [\"" + admin() + "\"]\n");
  daemon_->Signal(SIGHUP);
  ASSERT_TRUE(daemon_->WaitForLog("reload failed: ")) << daemon_->Log();
  EXPECT_TRUE(daemon_->LogContains(
      "libmicrohttpd, which admin_listen needs, cannot be loaded: librot13d-no-such-library.so.0: "))
      << daemon_->Log();
  EXPECT_TRUE(daemon_->LogContains("keeping generation 1")) << daemon_->Log();
  EXPECT_EQ(daemon_->Workers(), before);
  EXPECT_EQ(FreshRoundTrip("Hello"), "Uryyb");
  EXPECT_NE(access(admin_socket().c_str(), F_OK), 0) << "the admin socket exists after a failed reload";
}

// At start the same library failure stops rot13d before it serves anything.
TEST_F(AdminTest, WithoutItsLibraryAnAdminEndpointStopsTheStart) {
  Daemon::Options options;
  options.binary = TestHooksDaemonPath();
  options.extra_env.push_back("ROT13D_TEST_MICROHTTPD_SONAME=librot13d-no-such-library.so.0");
  daemon_ = std::make_unique<Daemon>(dir_, WriteConfig("workers = 1\nadmin_listen = [\"" + admin() + "\"]\n"),
                                     options);
  ASSERT_TRUE(daemon_->started());
  std::optional<int> status = daemon_->WaitExit(kStartTimeout);
  ASSERT_TRUE(status.has_value()) << daemon_->Log();
  ASSERT_TRUE(WIFEXITED(*status)) << daemon_->Log();
  EXPECT_EQ(WEXITSTATUS(*status), kExitFailure) << daemon_->Log();
  EXPECT_TRUE(daemon_->LogContains(
      "libmicrohttpd, which admin_listen needs, cannot be loaded: librot13d-no-such-library.so.0: "))
      << daemon_->Log();
  EXPECT_FALSE(daemon_->LogContains("ready: ")) << daemon_->Log();
}

TEST_F(AdminTest, PsShowsWhatEachProcessIs) {
  ASSERT_NO_FATAL_FAILURE(Start("workers = 2\n", 2));
  auto cmdline = [](pid_t pid) {
    std::string s = ReadFile("/proc/" + std::to_string(pid) + "/cmdline");
    return s.substr(0, s.find('\0'));
  };
  EXPECT_EQ(cmdline(daemon_->pid()), "rot13d: supervisor (generation 1)");
  std::vector<std::string> titles;
  for (pid_t w : daemon_->Workers()) titles.push_back(cmdline(w));
  std::sort(titles.begin(), titles.end());
  EXPECT_EQ(titles, (std::vector<std::string>{"rot13d: worker 0 (generation 1)", "rot13d: worker 1 (generation 1)"}));
  daemon_->Signal(SIGHUP);
  ASSERT_TRUE(daemon_->WaitForLog("reload complete: generation 2"));
  EXPECT_EQ(cmdline(daemon_->pid()), "rot13d: supervisor (generation 2)");
}

}  // namespace
}  // namespace rot13d::blackbox
