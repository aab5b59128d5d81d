// max_connections_per_address: counted per client address over every worker
// (the PROXY header's address on a PROXY listener), refused at once without a
// byte, freed by closes and by a worker's death, changed by a reload.
#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "tests/blackbox/daemon_test.h"
#include "tests/blackbox/proxy_header.h"

namespace rot13d::blackbox {
namespace {

const std::string kRefused = "rot13d_connections_rejected_total{reason=\"per_address_limit\"}";

class PerAddressLimitTest : public DaemonTest {
 protected:
  std::string admin() const { return "unix:" + dir_.File("admin.sock"); }
  std::string proxy_address() const { return "127.0.0.1:" + std::to_string(proxy_port_); }

  // Two workers, the limit, refusals in the connection log, metrics on a unix socket.
  std::string Settings(int limit) const {
    return "workers = 2\nmax_connections_per_address = " + std::to_string(limit) +
           "\nconnection_log = \"errors\"\nadmin_listen = [\"" + admin() + "\"]\n";
  }

  // A connection from `source` that was answered, or a failure.
  Client Served(const std::string& source, const std::string& where = {}) {
    Client c = Client::Connect(where.empty() ? address() : where, kIoTimeout, source);
    EXPECT_TRUE(c.connected()) << c.error();
    EXPECT_EQ(c.RoundTrip("limit"), "yvzvg") << "from " << source;
    return c;
  }

  // A connection from `source` closed by the daemon with no byte of answer;
  // `first` is sent first (a PROXY header), "" for none.
  bool ClosedUnanswered(const std::string& source, const std::string& where = {}, const std::string& first = {}) {
    Client c = Client::Connect(where.empty() ? address() : where, kIoTimeout, source);
    if (!c.connected()) return false;
    if (!first.empty() && !c.SendAll(first)) return false;
    std::string got = c.ReceiveToEof();
    return got.empty() && c.eof();
  }

  double Metric(const std::string& series) { return MetricValue(admin(), series); }

  // Reloads to `limit` and waits until only the new generation accepts: an
  // old worker takes what is queued when its drain begins, under the old
  // limit, as with any setting. A draining worker says so in its title.
  void ReloadTo(int limit, int generation) {
    WriteConfig(Settings(limit));
    daemon_->Signal(SIGHUP);
    ASSERT_TRUE(daemon_->WaitForLog("reload complete: generation " + std::to_string(generation))) << daemon_->Log();
    const std::string old = "(generation " + std::to_string(generation - 1) + ")";
    ASSERT_TRUE(WaitFor([&] {
      for (pid_t w : daemon_->Workers()) {
        if (ReadFile("/proc/" + std::to_string(w) + "/cmdline").find(old) != std::string::npos) return false;
      }
      return true;
    }, kIoTimeout, 10ms)) << "an old worker still accepts";
  }

  // Which workers hold the server side of `clients`.
  std::set<pid_t> Holders(const std::vector<Client>& clients) {
    std::set<uint16_t> ports;
    for (const Client& c : clients) {
      std::string own = OwnAddress(c);
      ports.insert(static_cast<uint16_t>(std::stoi(own.substr(own.rfind(':') + 1))));
    }
    std::set<pid_t> holders;
    for (auto [client_port, pid] : ServerSideOwners(port_, daemon_->Workers())) {
      if (ports.count(client_port)) holders.insert(pid);
    }
    return holders;
  }

  uint16_t proxy_port_ = FreePort();
};

TEST_F(PerAddressLimitTest, NAllowedPerAddressAcrossWorkersAndClosingFreesAPlace) {
  // Forty: more than one worker takes before the accept balance moves new
  // connections to its sibling (up to 32 stay where the kernel put them),
  // so both hold some.
  constexpr int kLimit = 40;
  ASSERT_NO_FATAL_FAILURE(Start(Settings(kLimit), 2));
  std::vector<Client> held;
  for (int i = 0; i < kLimit; ++i) held.push_back(Served("127.0.0.1"));
  ASSERT_FALSE(HasFailure());
  EXPECT_EQ(Holders(held).size(), 2u) << "the connections are all in one worker: the test proves less";

  EXPECT_TRUE(ClosedUnanswered("127.0.0.1")) << "one over the limit from 127.0.0.1 was served";
  EXPECT_EQ(Metric(kRefused), 1);
  EXPECT_TRUE(daemon_->WaitForLog(" closed: error after 0.000000 s, 0 bytes in, 0 bytes out; refused: over "
                                  "max_connections_per_address"))
      << daemon_->Log();
  EXPECT_TRUE(daemon_->LogContains("connection from 127.0.0.1:")) << daemon_->Log();
  // Another address is served meanwhile.
  std::vector<Client> other;
  for (int i = 0; i < 3; ++i) other.push_back(Served("127.0.0.2"));

  // A close frees its place (once the daemon has seen it).
  held.front().Close();
  held.erase(held.begin());
  bool served = WaitFor([&] {
    Client c = Client::Connect(address(), kIoTimeout, "127.0.0.1");
    if (c.RoundTrip("again") != Rot13("again")) return false;
    held.push_back(std::move(c));
    return true;
  }, kIoTimeout, 20ms);
  EXPECT_TRUE(served) << "no place freed by a close";
  EXPECT_TRUE(ClosedUnanswered("127.0.0.1")) << "a close let two in, not one";
}

TEST_F(PerAddressLimitTest, AKilledWorkersCountsAreFreed) {
  ASSERT_NO_FATAL_FAILURE(Start(Settings(2), 2));
  std::vector<Client> held;
  for (int i = 0; i < 2; ++i) held.push_back(Served("127.0.0.1"));
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(ClosedUnanswered("127.0.0.1"));
  std::set<pid_t> holders;
  ASSERT_TRUE(WaitFor([&] { return !(holders = Holders(held)).empty(); }, kIoTimeout));
  const pid_t victim = *holders.begin();
  ASSERT_TRUE(daemon_->SignalWorker(victim, SIGKILL));
  ASSERT_TRUE(WaitFor([&] { return !ProcessAlive(victim); }, kIoTimeout));
  // Its connections are gone, and so are their counts: as many new ones are
  // served as it held, and not one more.
  size_t lost = 0;
  for (Client& c : held) lost += c.RoundTrip("x", 1s) != "k";
  ASSERT_GE(lost, 1u);
  size_t served = 0;
  ASSERT_TRUE(WaitFor([&] {
    Client c = Client::Connect(address(), kIoTimeout, "127.0.0.1");
    if (c.RoundTrip("again") != Rot13("again")) return false;
    held.push_back(std::move(c));
    return ++served == lost;
  }, kStartTimeout, 20ms)) << "the killed worker's counts were not freed: " << daemon_->Log();
  EXPECT_TRUE(ClosedUnanswered("127.0.0.1"));
}

// Behind a balancer every connection comes from its address: the header's
// source is what is counted.
TEST_F(PerAddressLimitTest, AProxyV2ListenerLimitsTheHeadersAddress) {
  std::string extra = Settings(2) + "proxy_trusted = [\"127.0.0.0/8\"]\n";
  std::string text = "listen = [{ address = \"" + proxy_address() + "\", proxy_protocol = \"v2\" }]\n" +
                     "log_target = \"stderr\"\nuser = \"root\"\n" + extra;
  daemon_ = std::make_unique<Daemon>(dir_, dir_.Write("rot13d.toml", text));
  ASSERT_TRUE(daemon_->started());
  ASSERT_TRUE(daemon_->WaitReady()) << daemon_->Log();
  ASSERT_TRUE(daemon_->WaitForWorkerCount(2));

  auto proxied = [&](const char* client, uint16_t port) {
    Client c = Client::Connect(proxy_address());
    EXPECT_TRUE(c.connected()) << c.error();
    EXPECT_TRUE(c.SendAll(ProxyV2(AF_INET, client, "192.0.2.1", port, 1068)));
    EXPECT_EQ(c.RoundTrip("proxied"), "cebkvrq") << client;
    return c;
  };
  std::vector<Client> held;
  held.push_back(proxied("203.0.113.7", 1000));
  held.push_back(proxied("203.0.113.7", 1001));
  ASSERT_FALSE(HasFailure());
  EXPECT_TRUE(ClosedUnanswered("127.0.0.1", proxy_address(), ProxyV2(AF_INET, "203.0.113.7", "192.0.2.1", 1002, 1068)));
  EXPECT_TRUE(daemon_->WaitForLog("connection from 203.0.113.7:1002 to 192.0.2.1:1068 closed: error")) << daemon_->Log();
  EXPECT_TRUE(daemon_->WaitForLog("refused: over max_connections_per_address")) << daemon_->Log();
  // Three connections from the balancer's 127.0.0.1 so far; another client's are served.
  held.push_back(proxied("203.0.113.8", 2000));
  held.push_back(proxied("203.0.113.8", 2001));
  EXPECT_EQ(Metric(kRefused), 1);
}

TEST_F(PerAddressLimitTest, AReloadChangesTheLimitForNewConnections) {
  ASSERT_NO_FATAL_FAILURE(Start(Settings(1), 2));
  std::vector<Client> held;
  held.push_back(Served("127.0.0.1"));
  ASSERT_TRUE(ClosedUnanswered("127.0.0.1"));

  ASSERT_NO_FATAL_FAILURE(ReloadTo(3, 2));
  // The first connection, still open in a draining worker, still counts.
  held.push_back(Served("127.0.0.1"));
  held.push_back(Served("127.0.0.1"));
  EXPECT_TRUE(ClosedUnanswered("127.0.0.1"));

  ASSERT_NO_FATAL_FAILURE(ReloadTo(0, 3));
  for (int i = 0; i < 3; ++i) held.push_back(Served("127.0.0.1"));
  EXPECT_EQ(Metric(kRefused), 2);
}

}  // namespace
}  // namespace rot13d::blackbox
