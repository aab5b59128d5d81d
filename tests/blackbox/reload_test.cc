// SIGHUP: a valid file brings a new generation while old connections drain; a broken
// one is reported by position and changes nothing.
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>

#include "tests/blackbox/daemon_test.h"

namespace rot13d::blackbox {
namespace {

using ReloadTest = DaemonTest;

size_t CountIn(const std::vector<pid_t>& pids, const std::vector<pid_t>& among) {
  return static_cast<size_t>(std::count_if(pids.begin(), pids.end(), [&](pid_t p) {
    return std::find(among.begin(), among.end(), p) != among.end();
  }));
}

TEST_F(ReloadTest, NewWorkerCountTakesOverWhileOldConnectionDrains) {
  ASSERT_NO_FATAL_FAILURE(Start("workers = 2\nshutdown_timeout = 20\n", 2));
  std::vector<pid_t> old = daemon_->Workers();
  Client held = Client::Connect(address());
  ASSERT_TRUE(held.connected()) << held.error();
  ASSERT_EQ(held.RoundTrip("before"), "orsber");

  WriteConfig("workers = 3\nshutdown_timeout = 20\n");
  daemon_->Signal(SIGHUP);
  ASSERT_TRUE(daemon_->WaitForLog("reload complete: generation 2 serving with 3 worker"));

  // The idle old worker leaves at once; the one holding our connection drains.
  std::vector<pid_t> now;
  ASSERT_TRUE(WaitFor([&] {
    now = daemon_->Workers();
    return now.size() == 4 && CountIn(now, old) == 1;
  }, kStartTimeout)) << now.size() << " workers, " << CountIn(now, old) << " of them old";
  EXPECT_EQ(held.RoundTrip("after"), "nsgre") << "a connection from before the reload lost service";
  for (int i = 0; i < 6; ++i) EXPECT_EQ(FreshRoundTrip("new"), "arj");

  held.Close();
  ASSERT_TRUE(WaitFor([&] {
    now = daemon_->Workers();
    return now.size() == 3 && CountIn(now, old) == 0;
  }, kStartTimeout)) << now.size() << " workers, " << CountIn(now, old) << " of them old";
  EXPECT_EQ(FreshRoundTrip("Hello"), "Uryyb");
  EXPECT_FALSE(daemon_->LogContains("error:")) << "a planned retirement is not an error";
}

TEST_F(ReloadTest, BrokenFileIsReportedByPositionAndChangesNothing) {
  ASSERT_NO_FATAL_FAILURE(Start("workers = 2\n", 2));
  std::vector<pid_t> before = daemon_->Workers();
  Client held = Client::Connect(address());
  ASSERT_TRUE(held.connected()) << held.error();
  ASSERT_EQ(held.RoundTrip("x"), "k");

  struct Case {
    std::string extra;  // from line 3 of the file (see WriteConfig)
    std::string where;  // expected "PATH:LINE:" prefix, after the path
    std::string what;
  };
  const std::vector<Case> cases = {
      {"# a comment\nworkers = \"lots\"\n", ":4:11: 'workers'", "lots"},
      {"workers = 2\nbacklog = = 7\n", ":4:", "syntax error"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases[i].extra);
    std::string path = WriteConfig(cases[i].extra);
    daemon_->Signal(SIGHUP);
    ASSERT_TRUE(daemon_->WaitForLogCount("reload failed: " + path + " is invalid", i + 1));
    // Only this reload's lines: earlier cases name the same file.
    std::string log = daemon_->Log();
    log = log.substr(log.rfind("reloading configuration from"));
    size_t at = log.find(path + cases[i].where);
    ASSERT_NE(at, std::string::npos) << "no \"" << path << cases[i].where << "\" in the log";
    std::string line = log.substr(at, log.find('\n', at) - at);
    EXPECT_NE(line.find(cases[i].what), std::string::npos) << line;

    EXPECT_EQ(daemon_->Workers(), before) << "a failed reload must keep the same workers";
    EXPECT_EQ(held.RoundTrip("still"), "fgvyy");
    EXPECT_EQ(FreshRoundTrip("fresh"), "serfu");
  }
  EXPECT_FALSE(daemon_->LogContains("starting generation 2"));
}

TEST_F(ReloadTest, ListenerRemovedAndRestoredWhileOldWorkerDrainsStaysOpen) {
  // Dropping a listener retires it until the old workers are gone; restoring it
  // before then must cancel that, or the serving generation loses its socket.
  std::string unix_path = dir_.File("restored.sock");
  std::string unix_address = "unix:" + unix_path;
  const std::string both = "workers = 1\nshutdown_timeout = 20\nlisten = [\"" + address() + "\", \"" +
                           unix_address + "\"]\n";
  const std::string tcp_only = "workers = 1\nshutdown_timeout = 20\nlisten = [\"" + address() + "\"]\n";
  daemon_ = std::make_unique<Daemon>(dir_, dir_.Write("rot13d.toml", "log_target = \"stderr\"\nuser = \"root\"\n" + both));
  ASSERT_TRUE(daemon_->WaitReady());
  ASSERT_TRUE(daemon_->WaitForWorkerCount(1));
  pid_t first_worker = daemon_->Workers().at(0);
  Client held = Client::Connect(address());  // keeps generation 1 draining
  ASSERT_TRUE(held.connected()) << held.error();
  ASSERT_EQ(held.RoundTrip("held"), "uryq");

  dir_.Write("rot13d.toml", "log_target = \"stderr\"\nuser = \"root\"\n" + tcp_only);
  daemon_->Signal(SIGHUP);
  ASSERT_TRUE(daemon_->WaitForLog("reload complete: generation 2"));
  dir_.Write("rot13d.toml", "log_target = \"stderr\"\nuser = \"root\"\n" + both);
  daemon_->Signal(SIGHUP);
  ASSERT_TRUE(daemon_->WaitForLog("reload complete: generation 3"));
  EXPECT_EQ(FreshRoundTrip("Hello", unix_address), "Uryyb");

  // Let generation 1 go. The socket dropped by the first reload may already
  // have been closed (once generation 1 stopped accepting) and bound afresh by
  // the second; what must not happen is a close after it is configured again.
  const std::string closing = "closing listener " + unix_address;
  size_t closes_so_far = daemon_->LogCount(closing);
  held.Close();
  ASSERT_TRUE(daemon_->WaitForLog("worker " + std::to_string(first_worker) + " (slot 0, generation 1) exited"));
  EXPECT_FALSE(daemon_->WaitForLogCount(closing, closes_so_far + 1, 300ms))
      << "generation 3 is configured to listen on " << unix_address;
  struct stat st {};
  EXPECT_EQ(stat(unix_path.c_str(), &st), 0) << unix_path << " was removed while configured";
  EXPECT_EQ(FreshRoundTrip("Hello", unix_address), "Uryyb");
}

}  // namespace
}  // namespace rot13d::blackbox
