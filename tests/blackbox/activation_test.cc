// Socket activation: listeners handed over by systemd (or systemd-socket-activate) are
// served as they are, the file's `listen` is ignored with a warning, bad ones are refused.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <cstring>

#include "tests/blackbox/daemon_test.h"

namespace rot13d::blackbox {
namespace {

using ActivationTest = DaemonTest;

// A listening (or, for kind SOCK_DGRAM, bound) loopback socket on a free port.
Fd LoopbackSocket(int kind, uint16_t* port) {
  Fd fd(socket(AF_INET, kind | SOCK_CLOEXEC, 0));
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sin;
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&sin), len) != 0 ||
      (kind == SOCK_STREAM && listen(fd.get(), 16) != 0) ||
      getsockname(fd.get(), reinterpret_cast<sockaddr*>(&sin), &len) != 0) {
    ADD_FAILURE() << "loopback socket: " << std::strerror(errno);
  }
  *port = ntohs(sin.sin_port);
  return fd;
}

TEST_F(ActivationTest, SystemdSocketActivateServesAndListenIsIgnored) {
  if (SocketActivatePath()[0] == '\0') {
    // CI installs everything the suite needs (.ci/deps): there, absence is a failure.
    if (std::getenv("CI")) FAIL() << "systemd-socket-activate not installed (package systemd)";
    GTEST_SKIP() << "systemd-socket-activate not installed (package systemd)";
  }
  std::string activated = "127.0.0.1:" + std::to_string(FreePort());
  std::string config = WriteConfig("workers = 1\n");  // its listen (port_) must stay unbound
  Daemon::Options options;
  options.activate_on = activated;
  daemon_ = std::make_unique<Daemon>(dir_, config, options);
  // systemd-socket-activate binds, then execs rot13d (same pid) on the first connection.
  ASSERT_TRUE(daemon_->WaitForLog("Listening on"));
  EXPECT_EQ(FreshRoundTrip("Hello", activated), "Uryyb");
  ASSERT_TRUE(daemon_->WaitReady());
  EXPECT_EQ(FreshRoundTrip(AllBytes(), activated), Rot13(AllBytes()));

  EXPECT_TRUE(daemon_->LogContains("warning: 'listen' in " + config + " is ignored")) << daemon_->Log();
  EXPECT_FALSE(Client::Connect(address()).connected()) << "the configured listen address was bound anyway";
  EXPECT_EQ(daemon_->Workers().size(), 1u);

  daemon_->Signal(SIGTERM);
  std::optional<int> status = daemon_->WaitExit();
  ASSERT_TRUE(status);
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "wait status " << *status;
}

TEST_F(ActivationTest, PassedListenerServesAcrossReload) {
  uint16_t port = 0;
  Fd listener = LoopbackSocket(SOCK_STREAM, &port);
  std::string activated = "127.0.0.1:" + std::to_string(port);
  Daemon::Options options;
  options.listen_fds = {listener.get()};
  ASSERT_NO_FATAL_FAILURE(Start("workers = 2\n", 2, options));
  listener.Reset();  // from now on only the daemon holds it
  EXPECT_TRUE(daemon_->LogContains("using socket-activated listener")) << daemon_->Log();
  EXPECT_TRUE(daemon_->LogContains("is ignored"));
  EXPECT_EQ(FreshRoundTrip("Hello", activated), "Uryyb");
  EXPECT_FALSE(Client::Connect(address()).connected()) << "the configured listen address was bound anyway";

  // A reload keeps the activated socket: it cannot be bound again.
  WriteConfig("workers = 1\n");
  daemon_->Signal(SIGHUP);
  ASSERT_TRUE(daemon_->WaitForLog("reload complete: generation 2"));
  ASSERT_TRUE(daemon_->WaitForWorkerCount(1));
  EXPECT_EQ(FreshRoundTrip("Hello", activated), "Uryyb");
}

TEST_F(ActivationTest, PassedDatagramSocketIsRefused) {
  uint16_t port = 0;
  Fd datagram = LoopbackSocket(SOCK_DGRAM, &port);
  Daemon::Options options;
  options.listen_fds = {datagram.get()};
  daemon_ = std::make_unique<Daemon>(dir_, WriteConfig("workers = 1\n"), options);
  std::optional<int> status = daemon_->WaitExit();
  ASSERT_TRUE(status) << "rot13d started on a datagram socket";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 1) << "wait status " << *status;
  EXPECT_TRUE(daemon_->LogContains("not a listening stream socket")) << daemon_->Log();
  EXPECT_TRUE(daemon_->Workers().empty());
}

// Without socket activation, under systemd: each socket rot13d binds goes to
// the file descriptor store (FDSTORE=1), and one closed for good comes out.
TEST_F(ActivationTest, BoundListenersGoToSystemdsStore) {
  NotifySocket notify(dir_.File("notify.sock"));
  uint16_t second = FreePort();
  std::string config = WriteConfig("workers = 1\n");
  config = dir_.Write("rot13d.toml", "listen = [\"" + address() + "\", \"127.0.0.1:" + std::to_string(second) +
                                         "\"]\nlog_target = \"stderr\"\nuser = \"root\"\nworkers = 1\n");
  Daemon::Options options;
  options.extra_env = {"NOTIFY_SOCKET=" + notify.path()};
  daemon_ = std::make_unique<Daemon>(dir_, config, options);
  std::vector<NotifySocket::Message> seen;
  ASSERT_TRUE(notify.WaitFor("READY=1", &seen)) << daemon_->Log();
  std::vector<std::string> stored;
  for (const auto& m : seen) {
    if (!HasLine(m.text, "FDSTORE=1")) continue;
    EXPECT_EQ(m.listening_sockets.size(), 1u) << m.text;
    for (const std::string& s : m.listening_sockets) stored.push_back(*LineValue(m.text, "FDNAME") + "=" + s);
  }
  std::sort(stored.begin(), stored.end());
  std::vector<std::string> want = {"rot13d-listen-127.0.0.1_" + std::to_string(port_) + "=" + address(),
                                   "rot13d-listen-127.0.0.1_" + std::to_string(second) + "=127.0.0.1:" +
                                       std::to_string(second)};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(stored, want);

  // A reload that drops the second address takes it out of the store.
  WriteConfig("workers = 1\n");
  daemon_->Signal(SIGHUP);
  ASSERT_TRUE(notify.WaitFor("FDSTOREREMOVE=1", &seen)) << daemon_->Log();
  EXPECT_EQ(LineValue(seen.back().text, "FDNAME"), "rot13d-listen-127.0.0.1_" + std::to_string(second));
}

// After a restart, systemd passes the stored sockets back (LISTEN_FDNAMES
// rot13d-listen-...): they are rot13d's own listeners again, not socket
// activation, and a client queued on one meanwhile is served.
TEST_F(ActivationTest, StoredListenersComeBackAfterARestart) {
  uint16_t kept_port = 0, gone_port = 0;
  Fd kept = LoopbackSocket(SOCK_STREAM, &kept_port);
  Fd gone = LoopbackSocket(SOCK_STREAM, &gone_port);
  port_ = kept_port;  // the address the file configures
  std::string config = WriteConfig("workers = 1\n");
  // A client that connected while no rot13d ran: queued by the kernel.
  Client early = Client::Connect(address());
  ASSERT_TRUE(early.connected()) << early.error();
  ASSERT_TRUE(early.SendAll("queued"));
  Daemon::Options options;
  options.listen_fds = {kept.get(), gone.get()};
  options.extra_env = {"LISTEN_FDNAMES=rot13d-listen-127.0.0.1_" + std::to_string(kept_port) +
                       ":rot13d-listen-127.0.0.1_" + std::to_string(gone_port)};
  daemon_ = std::make_unique<Daemon>(dir_, config, options);
  ASSERT_TRUE(daemon_->WaitReady()) << daemon_->Log();
  kept.Reset();
  gone.Reset();
  EXPECT_EQ(early.Receive(6), "dhrhrq");
  EXPECT_TRUE(daemon_->LogContains("listening on " + address() + " (the socket systemd kept across the restart)"))
      << daemon_->Log();
  EXPECT_TRUE(daemon_->LogContains("closing 127.0.0.1:" + std::to_string(gone_port) +
                                   ", kept by systemd but no longer configured"))
      << daemon_->Log();
  EXPECT_FALSE(daemon_->LogContains("is ignored")) << "taken for socket activation:\n" << daemon_->Log();
  EXPECT_FALSE(daemon_->LogContains("socket-activated")) << daemon_->Log();
  EXPECT_EQ(FreshRoundTrip("Hello"), "Uryyb");
  EXPECT_FALSE(Client::Connect("127.0.0.1:" + std::to_string(gone_port)).connected());
}

}  // namespace
}  // namespace rot13d::blackbox
