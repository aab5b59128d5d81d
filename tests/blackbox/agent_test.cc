// HAProxy's agent-check (agent_listen): "up ready N%" while serving, the weight
// following the connections held, "drain" from the moment a stop begins,
// "down" while no worker accepts; addresses follow reloads; silent agent
// clients cost the supervisor nothing.
#include <csignal>
#include <optional>
#include <vector>

#include "tests/blackbox/daemon_test.h"

namespace rot13d::blackbox {
namespace {

class AgentTest : public DaemonTest {
 protected:
  std::string agent() const { return "127.0.0.1:" + std::to_string(agent_port_); }
  std::string agent_unix() const { return "unix:" + dir_.File("agent.sock"); }
  std::string AgentConfig(std::string_view extra) const {
    return std::string(extra) + "agent_listen = [\"" + agent() + "\", \"" + agent_unix() + "\"]\n";
  }
  // What the agent says to a fresh connection, or "<why not>".
  static std::string Ask(const std::string& where) {
    Client c = Client::Connect(where);
    if (!c.connected()) return "<" + c.error() + ">";
    std::string line = c.ReceiveToEof();
    return c.eof() ? line : "<no EOF after \"" + line + "\">";
  }
  bool WaitForAnswer(const std::string& want, milliseconds timeout = kStartTimeout) {
    return WaitFor([&] { return (last_ = Ask(agent())) == want; }, timeout, 20ms);
  }
  // A connection the daemon has accepted and answered, held open.
  Client Hold() {
    Client c = Client::Connect(address());
    EXPECT_EQ(c.RoundTrip("held"), Rot13("held"));
    return c;
  }

  uint16_t agent_port_ = FreePort();
  std::string last_;
};

TEST_F(AgentTest, UpWithAWeightThatFollowsTheConnectionsHeld) {
  // Room for 2 × 2 connections: each one held takes 25%.
  ASSERT_NO_FATAL_FAILURE(Start(AgentConfig("workers = 2\nmax_connections = 2\n"), 2));
  EXPECT_EQ(Ask(agent()), "up ready 100%\n");
  EXPECT_EQ(Ask(agent_unix()), "up ready 100%\n");
  std::vector<Client> held;
  held.push_back(Hold());
  ASSERT_TRUE(WaitForAnswer("up ready 75%\n")) << last_;
  held.push_back(Hold());
  ASSERT_TRUE(WaitForAnswer("up ready 50%\n")) << last_;
  held.clear();  // closed: the room comes back
  ASSERT_TRUE(WaitForAnswer("up ready 100%\n")) << last_;
  EXPECT_TRUE(daemon_->LogContains("HAProxy agent-check on 127.0.0.1:" + std::to_string(agent_port_)));
}

TEST_F(AgentTest, DrainFromTheMomentAStopBeginsWhileConnectionsFinish) {
  ASSERT_NO_FATAL_FAILURE(Start(AgentConfig("workers = 1\nshutdown_timeout = 30\n"), 1));
  ASSERT_EQ(Ask(agent()), "up ready 100%\n");
  std::optional<Client> held = Hold();
  daemon_->Signal(SIGTERM);
  ASSERT_TRUE(WaitForAnswer("drain\n")) << last_;
  EXPECT_EQ(Ask(agent_unix()), "drain\n");
  // The connection still held is still served while the balancer drains.
  EXPECT_EQ(held->RoundTrip("still"), Rot13("still"));
  EXPECT_FALSE(daemon_->exited());
  held.reset();
  ASSERT_TRUE(daemon_->WaitExit()) << daemon_->Log();
}

TEST_F(AgentTest, DownWhileNoWorkerAccepts) {
  // Workers that crash at boot: respawned with backoff (about 1.5 s) until the
  // supervisor gives up; meanwhile it answers, and no worker ever accepts.
  std::string fail_file = dir_.File("fail-boot");
  dir_.Write("fail-boot", "crash");
  Daemon::Options options;
  options.binary = TestHooksDaemonPath();
  options.extra_env.push_back("ROT13D_TEST_FAIL_BOOT_FILE=" + fail_file);
  daemon_ = std::make_unique<Daemon>(dir_, WriteConfig(AgentConfig("workers = 1\n")), options);
  ASSERT_TRUE(daemon_->started());
  std::vector<std::string> answers;
  WaitFor([&] {
    std::string a = Ask(agent());
    if (!a.starts_with("<")) answers.push_back(a);
    return daemon_->LogContains("workers cannot boot");
  }, kStartTimeout, 20ms);
  ASSERT_FALSE(answers.empty()) << daemon_->Log();
  for (const std::string& a : answers) EXPECT_EQ(a, "down#no worker accepting\n");
}

TEST_F(AgentTest, AddressesFollowAReload) {
  ASSERT_NO_FATAL_FAILURE(Start(AgentConfig("workers = 1\n"), 1));
  ASSERT_EQ(Ask(agent()), "up ready 100%\n");
  uint16_t old_port = agent_port_;
  agent_port_ = FreePort();
  WriteConfig("workers = 1\nagent_listen = [\"" + agent() + "\"]\n");
  daemon_->Signal(SIGHUP);
  ASSERT_TRUE(daemon_->WaitForLog("reload complete")) << daemon_->Log();
  // A reload refuses nobody: still up, on the new address only.
  ASSERT_TRUE(WaitForAnswer("up ready 100%\n")) << last_;
  EXPECT_TRUE(Ask("127.0.0.1:" + std::to_string(old_port)).starts_with("<")) << "the old address still answers";
  EXPECT_TRUE(Ask(agent_unix()).starts_with("<")) << "the old unix address still answers";
}

TEST_F(AgentTest, SilentClientsStallNothing) {
  ASSERT_NO_FATAL_FAILURE(Start(AgentConfig("workers = 1\n"), 1));
  // Clients that never read and never send, left open: fewer per address than
  // its listen queue (64), which the kernel fills before the supervisor's
  // next turn (a unix connect beyond it fails at once with EAGAIN).
  std::vector<Client> silent;
  for (int i = 0; i < 80; ++i) {
    silent.push_back(Client::Connect(i % 2 ? agent() : agent_unix()));
    ASSERT_TRUE(silent.back().connected()) << silent.back().error();
  }
  // Each was answered and closed at once; the supervisor still answers, serves and reloads.
  EXPECT_EQ(silent.front().ReceiveToEof(), "up ready 100%\n");
  EXPECT_TRUE(silent.front().eof());
  EXPECT_EQ(Ask(agent()), "up ready 100%\n");
  EXPECT_EQ(FreshRoundTrip("Hello"), "Uryyb");
  daemon_->Signal(SIGHUP);
  EXPECT_TRUE(daemon_->WaitForLog("reload complete")) << daemon_->Log();
  EXPECT_EQ(silent.back().ReceiveToEof(), "up ready 100%\n");
}

}  // namespace
}  // namespace rot13d::blackbox
