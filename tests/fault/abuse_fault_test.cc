// Clients that misbehave at the TCP level: reset mid-stream, half-close early,
// connect and close at once. No worker may die, and well-behaved clients on
// the same workers must not notice.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <random>
#include <thread>

#include "tests/fault/fault_test.h"

namespace rot13d::fault {
namespace {

using blackbox::Fd;
using AbuseFaultTest = FaultTest;

Fd ConnectBlocking(uint16_t port) {
  Fd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{5, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) fd.Reset();
  return fd;
}

void CloseWithReset(Fd& fd) {
  linger lg{1, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  fd.Reset();
}

struct Tally {
  std::atomic<int> done{0}, connect_failed{0}, wrong{0};
};

TEST_F(AbuseFaultTest, ResetsHalfClosesAndInstantClosesKillNoWorker) {
  constexpr int kResets = 1000, kHalfCloses = 1000, kInstant = 2000, kResetAfterHalfClose = 500;
  Figures fig;
  ASSERT_NO_FATAL_FAILURE(Start("workers = 2\n", 2));
  const std::vector<pid_t> workers = daemon_->Workers();
  LoadOptions o = Load(8, 16 * 1024, 512 * 1024, 8192, 5ms);
  LoadEngine good(o);
  ASSERT_TRUE(good.Start().ok());
  const Pattern pattern(client::Expect::kRot13);
  const auto deadline = Clock::now() + 90s;

  // Reset mid-stream: send a burst without reading (the worker is writing
  // answers back), maybe read part of them, then RST.
  Tally resets;
  std::thread resetter([&] {
    std::mt19937_64 rng(1);
    for (int i = 0; i < kResets && Clock::now() < deadline; ++i) {
      Fd fd = ConnectBlocking(port_);
      if (!fd.valid()) {
        ++resets.connect_failed;
        continue;
      }
      size_t burst = 1024 + rng() % (256 * 1024);
      uint64_t start = rng();
      size_t sent = 0;
      while (sent < burst) {
        ssize_t w = send(fd.get(), pattern.SendAt(start + sent), std::min(burst - sent, Pattern::kPeriod),
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w <= 0) break;
        sent += static_cast<size_t>(w);
      }
      if (rng() % 2) {
        char buf[4096];
        (void)!recv(fd.get(), buf, sizeof buf, MSG_DONTWAIT);
      }
      CloseWithReset(fd);
      ++resets.done;
    }
  });

  // Half-close early: a short request (sometimes none), SHUT_WR at once; the
  // answer must still come back whole, then EOF.
  Tally halves;
  std::thread half_closer([&] {
    std::mt19937_64 rng(2);
    std::vector<uint8_t> got;
    for (int i = 0; i < kHalfCloses && Clock::now() < deadline; ++i) {
      Fd fd = ConnectBlocking(port_);
      if (!fd.valid()) {
        ++halves.connect_failed;
        continue;
      }
      size_t n = i % 10 == 0 ? 0 : rng() % 8192;  // fits the socket buffers: send all, then read
      uint64_t start = rng();
      bool ok = n == 0 || send(fd.get(), pattern.SendAt(start), n, MSG_NOSIGNAL) == static_cast<ssize_t>(n);
      shutdown(fd.get(), SHUT_WR);
      got.clear();
      uint8_t buf[8192];
      while (ok) {
        ssize_t r = recv(fd.get(), buf, sizeof buf, 0);
        if (r > 0) got.insert(got.end(), buf, buf + r);
        else {
          ok = r == 0;  // EOF; an error or the 5 s timeout is wrong
          break;
        }
      }
      if (!ok || got.size() != n || pattern.Verify(start, got.data(), n) != n) ++halves.wrong;
      ++halves.done;
    }
  });

  // Connect and close at once, half of them with a reset.
  Tally instants;
  std::thread instant_closer([&] {
    for (int i = 0; i < kInstant && Clock::now() < deadline; ++i) {
      Fd fd = ConnectBlocking(port_);
      if (!fd.valid()) {
        ++instants.connect_failed;
        continue;
      }
      if (i % 2) CloseWithReset(fd);
      else fd.Reset();
      ++instants.done;
    }
  });

  // Half-close, then reset before reading the answer.
  Tally late_resets;
  std::thread late_resetter([&] {
    std::mt19937_64 rng(3);
    for (int i = 0; i < kResetAfterHalfClose && Clock::now() < deadline; ++i) {
      Fd fd = ConnectBlocking(port_);
      if (!fd.valid()) {
        ++late_resets.connect_failed;
        continue;
      }
      size_t n = 1 + rng() % 16384;
      (void)!send(fd.get(), pattern.SendAt(rng()), n, MSG_NOSIGNAL | MSG_DONTWAIT);
      shutdown(fd.get(), SHUT_WR);
      CloseWithReset(fd);
      ++late_resets.done;
    }
  });

  resetter.join();
  half_closer.join();
  instant_closer.join();
  late_resetter.join();
  // The workers caught up with the last of them: the good load moves on.
  EXPECT_TRUE(WaitForProgress(good, 100)) << good.Stats().Summary();
  good.Stop();
  LoadStats s = good.Stats();
  std::vector<pid_t> after = daemon_->Workers();
  const size_t deaths = daemon_->LogCount(") exited") + daemon_->LogCount(") killed");

  fig.Add("resets_mid_stream", resets.done.load())
      .Add("half_closes", halves.done.load())
      .Add("half_close_wrong_answers", halves.wrong.load())
      .Add("instant_closes", instants.done.load())
      .Add("resets_after_half_close", late_resets.done.load())
      .Add("connect_failures", resets.connect_failed + halves.connect_failed + instants.connect_failed +
                                   late_resets.connect_failed)
      .Add("worker_deaths", deaths)
      .AddLoad("good_", s);

  EXPECT_EQ(resets.done + halves.done + instants.done + late_resets.done,
            kResets + kHalfCloses + kInstant + kResetAfterHalfClose)
      << "the abuse did not finish in 90 s";
  EXPECT_EQ(resets.connect_failed + halves.connect_failed + instants.connect_failed + late_resets.connect_failed, 0);
  EXPECT_EQ(halves.wrong, 0) << "half-closed clients did not get their answer whole";
  EXPECT_EQ(after, workers) << "a worker died or was replaced";
  EXPECT_EQ(deaths, 0u) << daemon_->Log();
  EXPECT_EQ(s.total_failures(), 0u) << s.Summary() << Describe(good.Failures());
  EXPECT_EQ(FreshRoundTrip("still fine"), blackbox::Rot13("still fine"));
}

}  // namespace
}  // namespace rot13d::fault
