// Accept balance: long-lived connections arriving over time spread evenly over the workers.
//
// Who holds a connection is read the way an operator would (ServerSideOwners:
// /proc/net/tcp matched by inode against each worker's /proc/<pid>/fd).
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <sstream>
#include <thread>

#include "tests/blackbox/daemon_test.h"

namespace rot13d::blackbox {
namespace {

class BalanceTest : public DaemonTest, public ::testing::WithParamInterface<int> {
 protected:
  void SetUp() override {
    // The test holds every client end open; raise the soft limit (root may raise the hard one too).
    rlimit r{};
    getrlimit(RLIMIT_NOFILE, &r);
    if (r.rlim_cur < kNeededFds) {
      r.rlim_cur = kNeededFds;
      r.rlim_max = std::max<rlim_t>(r.rlim_max, kNeededFds);
      ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &r), 0) << "cannot raise RLIMIT_NOFILE to " << kNeededFds;
    }
  }

  std::map<pid_t, size_t> PerWorker() const {
    std::vector<pid_t> workers = daemon_->Workers();
    std::map<pid_t, size_t> held;
    for (pid_t w : workers) held[w] = 0;
    for (auto [client_port, pid] : ServerSideOwners(port_, workers)) ++held[pid];
    return held;
  }

  static constexpr size_t kConnections = 1000;
  static constexpr rlim_t kNeededFds = kConnections + 256;
};

TEST_P(BalanceTest, ThousandLongLivedConnectionsSpreadEvenly) {
  const int workers = GetParam();
  ASSERT_NO_FATAL_FAILURE(Start("workers = " + std::to_string(workers) + "\n", static_cast<size_t>(workers)));

  // Arrivals paced evenly over about two seconds, like clients coming in over
  // time rather than in one burst; every connection stays open.
  constexpr std::chrono::microseconds kSpread = 2s;
  std::vector<Client> clients;
  clients.reserve(kConnections);
  const auto start = Clock::now();
  for (size_t i = 0; i < kConnections; ++i) {
    std::this_thread::sleep_until(start + kSpread * i / kConnections);
    clients.push_back(Client::Connect(address()));
    ASSERT_TRUE(clients.back().connected()) << "connection " << i << ": " << clients.back().error();
  }

  std::map<pid_t, size_t> held;
  bool all_accepted = WaitFor(
      [&] {
        held = PerWorker();
        size_t total = 0;
        for (auto& [pid, n] : held) total += n;
        return total == kConnections;
      },
      kIoTimeout, 50ms);
  std::ostringstream counts;
  size_t most = 0, least = SIZE_MAX;
  for (auto& [pid, n] : held) {
    counts << " " << pid << ":" << n;
    most = std::max(most, n);
    least = std::min(least, n);
  }
  ASSERT_TRUE(all_accepted) << "workers hold" << counts.str();
  ASSERT_EQ(held.size(), static_cast<size_t>(workers));
  ASSERT_GT(least, 0u) << counts.str();
  double ratio = static_cast<double>(most) / static_cast<double>(least);
  std::printf("balance over %d workers: busiest/least busy = %zu/%zu = %.3f (%s )\n", workers, most, least, ratio,
              counts.str().c_str());
  EXPECT_LE(ratio, 1.25) << "workers hold" << counts.str();

  // Balancing never leaves a connection unserved: a sample still round-trips.
  for (size_t i = 0; i < kConnections; i += 97) {
    EXPECT_EQ(clients[i].RoundTrip("Hello"), "Uryyb") << "connection " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Workers, BalanceTest, ::testing::Values(2, 4),
                         [](const ::testing::TestParamInfo<int>& param_info) {
                           return std::to_string(param_info.param) + "Workers";
                         });

}  // namespace
}  // namespace rot13d::blackbox
