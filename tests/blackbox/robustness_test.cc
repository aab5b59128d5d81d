// What an operator does by habit or by accident must not hurt the service:
// stray signals, a config file moved aside, stopping or narrowing a busy server.
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>

#include "tests/blackbox/daemon_test.h"

namespace rot13d::blackbox {
namespace {

class RobustnessTest : public DaemonTest {};

TEST_F(RobustnessTest, LogRotationSignalsAreHarmless) {
  ASSERT_NO_FATAL_FAILURE(Start("workers = 2\n", 2));
  std::vector<pid_t> before = daemon_->Workers();
  // logrotate scripts written for nginx send USR1 (USR2 is nginx's binary
  // upgrade, and rot13d's: see UpgradeTest).
  daemon_->Signal(SIGUSR1);
  ASSERT_TRUE(daemon_->WaitForLog("SIGUSR1 ignored")) << daemon_->Log();
  EXPECT_FALSE(daemon_->exited());
  EXPECT_EQ(daemon_->Workers(), before);
  EXPECT_EQ(FreshRoundTrip("still here"), Rot13("still here"));
}

TEST_F(RobustnessTest, ReloadWithTheFileMovedAsideKeepsEverything) {
  ASSERT_NO_FATAL_FAILURE(Start("workers = 2\n", 2));
  std::vector<pid_t> before = daemon_->Workers();
  std::string config = dir_.File("rot13d.toml");
  ASSERT_EQ(std::rename(config.c_str(), dir_.File("rot13d.toml.editing").c_str()), 0);
  daemon_->Signal(SIGHUP);
  ASSERT_TRUE(daemon_->WaitForLog("reload failed")) << daemon_->Log();
  EXPECT_TRUE(daemon_->LogContains(config + ": cannot open")) << daemon_->Log();
  EXPECT_EQ(daemon_->Workers(), before);
  EXPECT_EQ(FreshRoundTrip("kept"), Rot13("kept"));
}

TEST_F(RobustnessTest, GracefulStopRefusesNewClientsInsteadOfQueueingThem) {
  ASSERT_NO_FATAL_FAILURE(Start("workers = 1\nshutdown_timeout = 20\n", 1));
  Client held = Client::Connect(address());
  ASSERT_EQ(held.RoundTrip("held"), Rot13("held"));
  daemon_->Signal(SIGTERM);
  ASSERT_TRUE(daemon_->WaitForLog("stopping gracefully"));
  // The held connection keeps the daemon draining; a newcomer must be refused
  // at once, not accepted by the kernel and reset when the daemon exits.
  ASSERT_TRUE(WaitFor([&] { return !Client::Connect(address(), 1s).connected(); }, 5s))
      << "new connections still accepted while stopping";
  Client late = Client::Connect(address(), 1s);
  EXPECT_FALSE(late.connected());
  EXPECT_NE(late.error().find("refused"), std::string::npos) << late.error();
  EXPECT_EQ(held.RoundTrip("still served"), Rot13("still served"));
  held.ShutdownWrite();
  EXPECT_EQ(held.ReceiveToEof(), "");
  std::optional<int> status = daemon_->WaitExit(10s);
  ASSERT_TRUE(status);
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << *status;
}

TEST_F(RobustnessTest, RemovedAddressIsRefusedPromptlyWhileItsConnectionsFinish) {
  uint16_t other_port = FreePort();
  std::string other = "127.0.0.1:" + std::to_string(other_port);
  auto config_with = [&](bool both) {
    std::string listen = "listen = [\"" + address() + "\"" + (both ? ", \"" + other + "\"" : "") + "]\n";
    return dir_.Write("rot13d.toml", listen + "log_target = \"stderr\"\nworkers = 1\nshutdown_timeout = 20\nuser = \"root\"\n");
  };
  daemon_ = std::make_unique<Daemon>(dir_, config_with(true));
  ASSERT_TRUE(daemon_->WaitReady());
  Client held = Client::Connect(other);
  ASSERT_EQ(held.RoundTrip("on the old address"), Rot13("on the old address"));

  config_with(false);
  daemon_->Signal(SIGHUP);
  ASSERT_TRUE(daemon_->WaitForLog("reload complete")) << daemon_->Log();
  ASSERT_TRUE(daemon_->WaitForLog("closing listener " + other, 5s)) << daemon_->Log();
  Client late = Client::Connect(other, 1s);
  EXPECT_FALSE(late.connected()) << "the removed address still accepts";
  EXPECT_NE(late.error().find("refused"), std::string::npos) << late.error();
  // The old worker still serves what it had; the kept address serves as before.
  EXPECT_EQ(held.RoundTrip("finishing"), Rot13("finishing"));
  EXPECT_EQ(FreshRoundTrip("kept address"), Rot13("kept address"));
}

}  // namespace
}  // namespace rot13d::blackbox
