// What a client sees: bytes back over every transport, big streams, half-close, idle
// timeouts, worker count, and bounded memory under a client that never reads.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <map>
#include <thread>
#include <vector>

#include "tests/blackbox/daemon_test.h"

namespace rot13d::blackbox {
namespace {

using ServingTest = DaemonTest;

TEST_F(ServingTest, RoundTripOverIpv4Ipv6AndUnix) {
  uint16_t port6 = FreePort(AF_INET6);
  std::string unix_path = dir_.File("rot13d.sock");
  std::string v6 = "[::1]:" + std::to_string(port6);
  daemon_ = std::make_unique<Daemon>(
      dir_, dir_.Write("rot13d.toml", "listen = [\"" + address() + "\", \"" + v6 + "\", \"unix:" + unix_path +
                                          "\"]\nlog_target = \"stderr\"\nworkers = 1\nuser = \"root\"\n"));
  ASSERT_TRUE(daemon_->WaitReady());

  for (const std::string& where : {address(), v6, "unix:" + unix_path}) {
    SCOPED_TRACE(where);
    Client c = Client::Connect(where);
    ASSERT_TRUE(c.connected()) << c.error();
    EXPECT_EQ(c.RoundTrip("Hello"), "Uryyb");
    EXPECT_EQ(c.RoundTrip(AllBytes()), Rot13(AllBytes()));
    EXPECT_EQ(c.RoundTrip("The Quick Brown Fox Jumps Over The Lazy Dog\n"),
              "Gur Dhvpx Oebja Sbk Whzcf Bire Gur Ynml Qbt\n");
  }
}

TEST_F(ServingTest, SixteenMebibyteStreamWrittenAndReadConcurrently) {
  ASSERT_NO_FATAL_FAILURE(Start("workers = 1\n", 1));
  constexpr size_t kTotal = 16u << 20;
  constexpr size_t kChunk = 64u << 10;
  // Each chunk holds every byte value 256 times, so all of them cross many read boundaries.
  std::string chunk;
  for (size_t i = 0; i < kChunk; ++i) chunk.push_back(static_cast<char>(i & 0xff));
  const std::string expected = Rot13(chunk);

  Client c = Client::Connect(address());
  ASSERT_TRUE(c.connected()) << c.error();
  std::atomic<bool> sent_all{false};
  std::thread writer([&] {
    bool ok = true;
    for (size_t sent = 0; ok && sent < kTotal; sent += kChunk) ok = c.SendAll(chunk, 30s);
    sent_all = ok;
    c.ShutdownWrite();
  });

  size_t received = 0;
  size_t mismatch_at = SIZE_MAX;
  auto deadline = Clock::now() + 60s;
  while (received < kTotal && Clock::now() < deadline && !c.eof()) {
    std::string got = c.Receive(kTotal - received, 1s);
    for (size_t i = 0; i < got.size() && mismatch_at == SIZE_MAX; ++i) {
      if (got[i] != expected[(received + i) % kChunk]) mismatch_at = received + i;
    }
    received += got.size();
  }
  std::string tail = c.ReceiveToEof(10s);
  writer.join();

  EXPECT_TRUE(sent_all.load());
  EXPECT_EQ(received, kTotal);
  EXPECT_EQ(mismatch_at, SIZE_MAX) << "first wrong byte at offset " << mismatch_at;
  EXPECT_TRUE(tail.empty() && c.eof()) << tail.size() << " bytes after the stream; eof " << c.eof();
}

// A reply larger than buffer_size leaves in several send()s. Without
// TCP_NODELAY on the daemon's side, Nagle holds back its tail until the client
// ACKs, and the client, waiting for the whole reply, delays its ACK by 40 ms:
// many exchanges take over 40 ms. Timed, but with a wide margin: 200 KiB of
// loopback rot13 takes a millisecond or two, and at most 3 of 30 exchanges may
// take 35 ms (noise); without TCP_NODELAY 10 to 16 of them do.
TEST_F(ServingTest, LargeRequestResponseHasNoDelayedAckStall) {
  ASSERT_NO_FATAL_FAILURE(Start("workers = 1\nbuffer_size = 16384\n", 1));
  Client c = Client::Connect(address());
  ASSERT_TRUE(c.connected()) << c.error();
  int one = 1;
  ASSERT_EQ(setsockopt(c.fd(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one), 0);  // the client is not under test
  std::string request;
  while (request.size() < 200 * 1024) request += AllBytes();
  request.resize(200 * 1024);
  const std::string expected = Rot13(request);
  std::vector<double> ms;
  for (int i = 0; i < 30; ++i) {
    auto t0 = Clock::now();
    ASSERT_EQ(c.RoundTrip(request), expected) << "exchange " << i;
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  auto stalled = std::count_if(ms.begin(), ms.end(), [](double m) { return m >= 35.0; });
  std::string all;
  for (double m : ms) all += std::to_string(static_cast<int>(m)) + " ";
  // Without TCP_NODELAY, a third to a half of them stall for 40-48 ms.
  EXPECT_LE(stalled, 3) << "exchanges of 35 ms or more, a delayed-ACK stall each; all (ms): " << all;
}

TEST_F(ServingTest, HalfCloseGetsAllDataThenEof) {
  ASSERT_NO_FATAL_FAILURE(Start("workers = 1\n", 1));
  {
    Client c = Client::Connect(address());
    ASSERT_TRUE(c.connected()) << c.error();
    ASSERT_TRUE(c.SendAll("Hello"));
    c.ShutdownWrite();
    EXPECT_EQ(c.ReceiveToEof(), "Uryyb");
    EXPECT_TRUE(c.eof());
  }
  // A megabyte still in flight when the FIN is sent: the daemon must answer
  // all of it before closing. A writer thread, because the daemon stops reading
  // while its answers go unread.
  std::string payload;
  for (int i = 0; i < 4096; ++i) payload += AllBytes();
  Client c = Client::Connect(address());
  ASSERT_TRUE(c.connected()) << c.error();
  std::atomic<bool> sent{false};
  std::thread writer([&] {
    sent = c.SendAll(payload, 20s);
    c.ShutdownWrite();
  });
  std::string got = c.ReceiveToEof(20s);
  writer.join();
  EXPECT_TRUE(sent.load());
  EXPECT_TRUE(c.eof()) << "no EOF after " << got.size() << " bytes";
  EXPECT_EQ(got.size(), payload.size());
  EXPECT_TRUE(got == Rot13(payload)) << "answer differs from the rot13 of the request";
}

TEST_F(ServingTest, WorkersSettingGivesExactlyThatManyChildren) {
  ASSERT_NO_FATAL_FAILURE(Start("workers = 3\n", 3));
  std::vector<pid_t> workers = daemon_->Workers();
  for (int i = 0; i < 10; ++i) ASSERT_EQ(FreshRoundTrip("abc"), "nop");
  EXPECT_EQ(daemon_->Workers(), workers) << "serving must not spawn or lose workers";
  // Workers share the supervisor's process group: a signal to the group reaches all.
  for (pid_t w : workers) EXPECT_EQ(getpgid(w), daemon_->pid());
}

TEST_F(ServingTest, IdleTimeoutClosesIdleConnectionButNotActiveOne) {
  ASSERT_NO_FATAL_FAILURE(Start("workers = 1\nidle_timeout = 0.5\n", 1));
  Client idle = Client::Connect(address());
  ASSERT_TRUE(idle.connected()) << idle.error();
  ASSERT_EQ(idle.RoundTrip("idle"), "vqyr");  // accepted and last active now
  auto idle_since = Clock::now();
  Client active = Client::Connect(address());
  ASSERT_TRUE(active.connected()) << active.error();

  // Keep the active connection busy (a round trip per 100 ms, well inside the
  // timeout) while waiting for the idle one to be closed.
  std::optional<Clock::time_point> closed_at;
  int round_trips = 0;
  while (!closed_at && Clock::now() < idle_since + 5s) {
    ASSERT_EQ(active.RoundTrip("ping", 2s), "cvat") << "after " << round_trips << " round trips";
    ++round_trips;
    pollfd p{idle.fd(), POLLIN, 0};
    if (poll(&p, 1, 100) == 1) {
      std::string got = idle.Receive(1, 1s);
      ASSERT_TRUE(got.empty() && idle.eof()) << "idle connection got data instead of EOF";
      closed_at = Clock::now();
    }
  }
  ASSERT_TRUE(closed_at) << "idle connection still open after 5 s";
  auto idle_for = std::chrono::duration_cast<milliseconds>(*closed_at - idle_since);
  EXPECT_GE(idle_for, 400ms) << "closed before idle_timeout";
  EXPECT_LE(idle_for, 3000ms);
  EXPECT_EQ(active.RoundTrip("still here"), "fgvyy urer");
  EXPECT_FALSE(active.eof());
}

TEST_F(ServingTest, AutoWorkersFollowCpuAffinity) {
  Daemon::Options options;
  options.single_cpu = true;
  ASSERT_NO_FATAL_FAILURE(Start("workers = \"auto\"\n", 1, options));
  EXPECT_EQ(FreshRoundTrip("Hello"), "Uryyb");
  EXPECT_TRUE(daemon_->LogContains("starting generation 1 with 1 worker"));  // singular or plural
}

TEST_F(ServingTest, MaxConnectionsLeavesTheRestQueued) {
  ASSERT_NO_FATAL_FAILURE(Start("workers = 1\nmax_connections = 1\n", 1));
  Client first = Client::Connect(address());
  ASSERT_TRUE(first.connected()) << first.error();
  ASSERT_EQ(first.RoundTrip("one"), "bar");

  // The kernel completes the handshake, but the only worker is full: no answer yet.
  Client second = Client::Connect(address());
  ASSERT_TRUE(second.connected()) << second.error();
  ASSERT_TRUE(second.SendAll("two"));
  EXPECT_EQ(second.Receive(3, 300ms), "") << "answered beyond max_connections";

  first.Close();
  EXPECT_EQ(second.Receive(3), "gjb") << "the queued connection was not taken once there was room";
}

TEST_F(ServingTest, ClientThatNeverReadsDoesNotGrowWorkerMemory) {
  constexpr long kBufferSize = 65536;
  ASSERT_NO_FATAL_FAILURE(Start("workers = 1\nbuffer_size = 65536\n", 1));
  pid_t worker = daemon_->Workers().at(0);
  // Warm up: one full-size read touches the scratch buffer, so the baseline includes it.
  ASSERT_EQ(FreshRoundTrip(std::string(kBufferSize, 'a')), std::string(kBufferSize, 'n'));
  long baseline = RssBytes(worker);
  ASSERT_GT(baseline, 0);

  Client hog = Client::Connect(address());
  ASSERT_TRUE(hog.connected()) << hog.error();
  // Send until the socket stays unwritable for a while: the daemon has stopped
  // reading, and everything in flight sits in kernel buffers, not in the worker.
  constexpr size_t kCap = 64u << 20;
  const std::string block(kBufferSize, 'x');
  size_t sent = 0;
  while (sent < kCap) {
    ssize_t n = send(hog.fd(), block.data(), block.size(), MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    ASSERT_TRUE(n < 0 && errno == EAGAIN) << "send: " << std::strerror(errno);
    pollfd p{hog.fd(), POLLOUT, 0};
    if (poll(&p, 1, 500) == 0) break;
  }
  ASSERT_LT(sent, kCap) << "64 MiB went in without the socket blocking: nothing pushes back";
  EXPECT_GT(sent, static_cast<size_t>(4 * kBufferSize));

  long grown = RssBytes(worker) - baseline;
  constexpr long kSlack = 2 << 20;  // allocator and stack noise, far below what was sent
  EXPECT_LT(grown, 2 * kBufferSize + kSlack) << "worker RSS grew by " << grown << " bytes after the client sent "
                                             << sent << " bytes without reading";

  // The same worker still answers others promptly.
  auto before = Clock::now();
  EXPECT_EQ(FreshRoundTrip("Hello"), "Uryyb");
  EXPECT_LT(Clock::now() - before, 1s);
  EXPECT_EQ(FreshRoundTrip(std::string(256 * 1024, 'N')), std::string(256 * 1024, 'A'));
  EXPECT_LT(RssBytes(worker) - baseline, 2 * kBufferSize + kSlack);
}

// A client that resets and a newcomer in one wakeup of the worker: the worker
// closes the first connection, and the accept later in the same turn gets its
// descriptor number back. The newcomer must be served like any other (a reset
// costs nobody else anything). The worker is stopped while both happen, so
// that one epoll_wait reports the reset before the listener. Whether the
// number was reused is read from /proc/PID/fd (the worker's one connection is
// its one socket that was not there at the start); the kernel may still take
// the RST after the handshake now and then (another CPU's backlog, under
// load), so a round without the reuse is retried, and one with it is required.
TEST_F(ServingTest, NewcomerTakingTheDescriptorOfAResetInTheSameWakeupIsServed) {
  ASSERT_NO_FATAL_FAILURE(Start("workers = 1\nidle_timeout = 10\n", 1));
  const pid_t worker = daemon_->Workers().at(0);
  const std::string fd_dir = "/proc/" + std::to_string(worker) + "/fd";
  auto sockets = [&] {
    std::map<int, std::string> out;  // fd -> "socket:[inode]"
    for (const auto& e : std::filesystem::directory_iterator(fd_dir)) {
      std::error_code ec;
      std::string target = std::filesystem::read_symlink(e.path(), ec).string();
      if (!ec && target.starts_with("socket:")) out[std::stoi(e.path().filename().string())] = target;
    }
    return out;
  };
  const std::map<int, std::string> at_start = sockets();
  // The worker's connections: its sockets that were not there at the start.
  auto connection_fds = [&] {
    std::vector<int> fds;
    for (const auto& [fd, target] : sockets()) {
      auto it = at_start.find(fd);
      if (it == at_start.end() || it->second != target) fds.push_back(fd);
    }
    return fds;
  };
  int reuses = 0;
  for (int round = 0; round < 6 && reuses < 2; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    Client hostile = Client::Connect(address());
    ASSERT_TRUE(hostile.connected()) << hostile.error();
    ASSERT_EQ(hostile.RoundTrip("abc"), "nop");
    const std::vector<int> before = connection_fds();
    ASSERT_EQ(before.size(), 1u);

    ASSERT_TRUE(daemon_->SignalWorker(worker, SIGSTOP));
    ASSERT_TRUE(WaitFor([&] { return ProcessStopped(worker); }, kIoTimeout));
    linger reset{1, 0};
    ASSERT_EQ(setsockopt(hostile.fd(), SOL_SOCKET, SO_LINGER, &reset, sizeof reset), 0);
    hostile.Close();
    std::this_thread::sleep_for(20ms);  // for the RST to land first; well below the worker's 1 s tick
    Client newcomer = Client::Connect(address());
    ASSERT_TRUE(newcomer.connected()) << newcomer.error();
    ASSERT_TRUE(newcomer.SendAll("Hello"));  // waiting before the accept
    ASSERT_TRUE(daemon_->SignalWorker(worker, SIGCONT));

    EXPECT_EQ(newcomer.Receive(5), "Uryyb") << daemon_->Log();
    std::vector<int> after;
    EXPECT_TRUE(WaitFor([&] { return (after = connection_fds()).size() == 1; }, kIoTimeout));
    if (after == before) ++reuses;
    // And what it sends after the wakeup, both ways, in bulk.
    const std::string bulk(1 << 20, 'a');
    EXPECT_EQ(newcomer.RoundTrip(bulk), std::string(1 << 20, 'n'));
    newcomer.ShutdownWrite();
    EXPECT_EQ(newcomer.ReceiveToEof(), "");
    EXPECT_TRUE(newcomer.eof());
    ASSERT_TRUE(WaitFor([&] { return connection_fds().empty(); }, kIoTimeout));
  }
  EXPECT_GE(reuses, 1) << "no round had the accept reuse the reset connection's descriptor";
  EXPECT_FALSE(daemon_->exited());
}

}  // namespace
}  // namespace rot13d::blackbox
