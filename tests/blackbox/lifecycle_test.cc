// Processes over time: worker deaths and their replacement with backoff, graceful and
// immediate stops, the supervisor's death, and the unix socket file's life.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <future>
#include <thread>

#include "tests/blackbox/daemon_test.h"

namespace rot13d::blackbox {
namespace {

using LifecycleTest = DaemonTest;

bool Contains(const std::vector<pid_t>& pids, pid_t pid) {
  return std::find(pids.begin(), pids.end(), pid) != pids.end();
}

TEST_F(LifecycleTest, KilledWorkerIsReplaced) {
  ASSERT_NO_FATAL_FAILURE(Start("workers = 2\n", 2));
  std::vector<pid_t> before = daemon_->Workers();
  pid_t victim = before[0];
  pid_t survivor = before[1];
  ASSERT_TRUE(daemon_->SignalWorker(victim, SIGKILL));

  std::vector<pid_t> after;
  ASSERT_TRUE(WaitFor([&] {
    after = daemon_->Workers();
    return after.size() == 2 && !Contains(after, victim);
  }, kStartTimeout)) << "no replacement for worker " << victim;
  EXPECT_TRUE(Contains(after, survivor)) << "the other worker should not be touched";
  for (int i = 0; i < 10; ++i) ASSERT_EQ(FreshRoundTrip("Hello"), "Uryyb") << "connection " << i;

  // The log names the dead worker and how it died.
  ASSERT_TRUE(daemon_->WaitForLog("worker " + std::to_string(victim) + " (slot"));
  std::string log = daemon_->Log();
  size_t line_start = log.find("worker " + std::to_string(victim) + " (slot");
  std::string line = log.substr(line_start, log.find('\n', line_start) - line_start);
  EXPECT_NE(line.find("killed by SIGKILL"), std::string::npos) << line;
  // Killed from outside, it did not fail: replaced at once.
  EXPECT_NE(line.find("restarting now"), std::string::npos) << line;
}

// A worker that leaves on its own (here: SIGTERM from outside, which it obeys
// by exiting cleanly; to the supervisor an exit nobody asked for) is replaced
// at once the first time; again and again within 10 s of its start, it backs
// off, the delay doubling from 100 ms.
TEST_F(LifecycleTest, RepeatedUnaskedExitsOfFreshWorkersBackOff) {
  ASSERT_NO_FATAL_FAILURE(Start("workers = 1\n", 1));
  const std::vector<milliseconds> expected = {0ms, 100ms, 200ms, 400ms};
  std::vector<milliseconds> gaps;
  pid_t victim = daemon_->Workers().at(0);
  for (size_t i = 0; i < expected.size(); ++i) {
    // With one worker, an answer proves this worker accepts; killing it before
    // that would count as a boot failure (five of those halt respawning).
    ASSERT_EQ(FreshRoundTrip("Hello"), "Uryyb") << "before kill " << i;
    auto killed_at = Clock::now();
    ASSERT_TRUE(daemon_->SignalWorker(victim, SIGTERM));
    pid_t next = 0;
    ASSERT_TRUE(WaitFor([&] {
      std::vector<pid_t> now = daemon_->Workers();
      if (now.size() == 1 && now[0] != victim) next = now[0];
      return next != 0;
    }, 10s, 1ms)) << "no replacement after kill " << i;
    gaps.push_back(std::chrono::duration_cast<milliseconds>(Clock::now() - killed_at));
    victim = next;
  }
  ASSERT_EQ(FreshRoundTrip("Hello"), "Uryyb");

  for (size_t i = 0; i < expected.size(); ++i) {
    SCOPED_TRACE("kill " + std::to_string(i));
    EXPECT_TRUE(daemon_->LogContains(expected[i] == 0ms ? std::string("restarting now")
                                                        : "restarting in " + std::to_string(expected[i].count()) +
                                                              " ms"));
    // The restart timer starts after the death, so it is never early; lateness
    // is scheduling noise and only bounded loosely.
    EXPECT_GE(gaps[i], expected[i]);
    EXPECT_LT(gaps[i], expected[i] + 2s);
  }
  // Growth, with a margin of 300 ms or more against noise.
  EXPECT_GT(gaps[2], gaps[0]);
  EXPECT_GT(gaps[3], gaps[1]);
}

TEST_F(LifecycleTest, SigtermLetsTransferInProgressFinish) {
  ASSERT_NO_FATAL_FAILURE(Start("workers = 1\nshutdown_timeout = 20\n", 1));
  std::vector<pid_t> workers = daemon_->Workers();
  constexpr size_t kHalf = 4u << 20;
  std::string payload;
  while (payload.size() < 2 * kHalf) payload += AllBytes();
  Client c = Client::Connect(address());
  ASSERT_TRUE(c.connected()) << c.error();

  // The writer sends half, waits until the daemon is stopping, then sends the
  // rest and half-closes: the second half crosses a draining worker.
  std::promise<void> first_half_sent, resume;
  std::atomic<bool> sent_all{false};
  std::thread writer([&] {
    bool ok = c.SendAll(std::string_view(payload).substr(0, kHalf), 20s);
    first_half_sent.set_value();
    resume.get_future().wait();
    ok = ok && c.SendAll(std::string_view(payload).substr(kHalf), 20s);
    sent_all = ok;
    c.ShutdownWrite();
  });
  std::string got;
  auto half_sent = first_half_sent.get_future();
  // Read while the first half goes out, so the writer never blocks on us.
  while (half_sent.wait_for(0s) != std::future_status::ready) got += c.Receive(kHalf - got.size(), 10ms);
  got += c.Receive(kHalf - got.size(), 10s);  // the whole first half is answered

  daemon_->Signal(SIGTERM);
  bool stopping = daemon_->WaitForLog("stopping gracefully");
  resume.set_value();
  got += c.ReceiveToEof(20s);
  writer.join();
  ASSERT_TRUE(stopping);

  EXPECT_TRUE(sent_all.load());
  EXPECT_TRUE(c.eof());
  EXPECT_EQ(got.size(), payload.size());
  EXPECT_TRUE(got == Rot13(payload)) << "answer differs from the rot13 of the request";

  std::optional<int> status = daemon_->WaitExit();
  ASSERT_TRUE(status) << "still running after the last connection closed";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "wait status " << *status;
  EXPECT_TRUE(GroupPids(daemon_->pid()).empty()) << "processes left in the daemon's group";
  for (pid_t w : workers) EXPECT_FALSE(ProcessAlive(w)) << "worker " << w;
}

// At a stop the supervisor closes its copies of the listening sockets and the
// workers theirs; what is still queued when the last copy closes is reset.
// So a worker takes everything queued as it starts to drain, not one batch
// of 64: here 200 connections wait behind a stopped worker when the stop comes.
TEST_F(LifecycleTest, SigtermServesEveryConnectionAlreadyQueued) {
  ASSERT_NO_FATAL_FAILURE(Start("workers = 1\nshutdown_timeout = 20\n", 1));
  const pid_t worker = daemon_->Workers().at(0);
  ASSERT_EQ(FreshRoundTrip("Hello"), "Uryyb");
  ASSERT_TRUE(daemon_->SignalWorker(worker, SIGSTOP));
  ASSERT_TRUE(WaitFor([&] { return ProcessStopped(worker); }, kIoTimeout));
  constexpr int kQueued = 200;
  std::vector<Client> clients;
  for (int i = 0; i < kQueued; ++i) {
    clients.push_back(Client::Connect(address()));
    ASSERT_TRUE(clients.back().connected()) << "connection " << i << ": " << clients.back().error();
    ASSERT_TRUE(clients.back().SendAll("Hello"));
  }
  daemon_->Signal(SIGTERM);
  const bool stopping = daemon_->WaitForLog("stopping gracefully");
  ASSERT_TRUE(daemon_->SignalWorker(worker, SIGCONT));
  ASSERT_TRUE(stopping);
  int answered = 0;
  for (Client& c : clients) {
    c.ShutdownWrite();
    if (c.ReceiveToEof(kIoTimeout) == "Uryyb" && c.eof()) ++answered;
  }
  EXPECT_EQ(answered, kQueued) << daemon_->Log();
  std::optional<int> status = daemon_->WaitExit();
  ASSERT_TRUE(status) << "still running after the last connection closed";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "wait status " << *status;
}

TEST_F(LifecycleTest, SigquitStopsAtOnceWithOpenConnections) {
  ASSERT_NO_FATAL_FAILURE(Start("workers = 2\nshutdown_timeout = 30\n", 2));
  std::vector<pid_t> workers = daemon_->Workers();
  Client c = Client::Connect(address());
  ASSERT_TRUE(c.connected()) << c.error();
  ASSERT_EQ(c.RoundTrip("Hello"), "Uryyb");

  auto before = Clock::now();
  daemon_->Signal(SIGQUIT);
  std::optional<int> status = daemon_->WaitExit(5s);
  ASSERT_TRUE(status) << "SIGQUIT should not wait for connections";
  EXPECT_LT(Clock::now() - before, 3s);
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "wait status " << *status;
  c.ReceiveToEof(2s);
  EXPECT_TRUE(c.eof() || !c.error().empty()) << "connection still open";
  for (pid_t w : workers) EXPECT_FALSE(ProcessAlive(w)) << "worker " << w;
}

TEST_F(LifecycleTest, NoWorkerOutlivesKilledSupervisor) {
  ASSERT_NO_FATAL_FAILURE(Start("workers = 2\n", 2));
  std::vector<pid_t> workers = daemon_->Workers();
  ASSERT_EQ(kill(daemon_->pid(), SIGKILL), 0);
  std::optional<int> status = daemon_->WaitExit();
  ASSERT_TRUE(status);
  EXPECT_TRUE(WIFSIGNALED(*status) && WTERMSIG(*status) == SIGKILL);
  EXPECT_TRUE(WaitFor([&] {
    return std::none_of(workers.begin(), workers.end(), ProcessAlive);
  }, 2s)) << "a worker survived its supervisor by 2 s";
}

// The worker itself cuts what is left just before shutdown_timeout (so the
// connections are counted and logged); the supervisor's SIGKILL at the
// deadline is for a worker that cannot.
TEST_F(LifecycleTest, SigtermCutsStragglersAtShutdownTimeout) {
  ASSERT_NO_FATAL_FAILURE(Start("workers = 1\nshutdown_timeout = 0.5\n", 1));
  pid_t worker = daemon_->Workers().at(0);
  Client lingering = Client::Connect(address());
  ASSERT_TRUE(lingering.connected()) << lingering.error();
  ASSERT_EQ(lingering.RoundTrip("Hello"), "Uryyb");

  auto before = Clock::now();
  daemon_->Signal(SIGTERM);
  std::optional<int> status = daemon_->WaitExit();
  ASSERT_TRUE(status) << "a connection that never closes held up the stop";
  auto took = Clock::now() - before;
  EXPECT_GE(took, 450ms) << "the connection was not given shutdown_timeout to finish";
  EXPECT_LT(took, 5s);
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "wait status " << *status;
  EXPECT_TRUE(daemon_->LogContains("shutdown_timeout reached: closing 1 open connection")) << daemon_->Log();
  EXPECT_TRUE(daemon_->LogContains("worker " + std::to_string(worker) + " (slot 0, generation 1) exited with code 0"))
      << daemon_->Log();
  EXPECT_FALSE(daemon_->LogContains("SIGKILL")) << daemon_->Log();
  lingering.ReceiveToEof(2s);
  EXPECT_TRUE(lingering.eof() || !lingering.error().empty());
}

TEST_F(LifecycleTest, UnixSocketFileModeReuseAndRemoval) {
  std::string path = dir_.File("rot13d.sock");
  std::string config = dir_.Write("unix.toml", "listen = [\"unix:" + path +
                                                   "\"]\nlog_target = \"stderr\"\nworkers = 1\nsocket_mode = \"0600\"\nuser = \"root\"\n");
  auto first = std::make_unique<Daemon>(dir_, config);
  ASSERT_TRUE(first->WaitReady());
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  // A second daemon must not steal a socket file that a live server answers on.
  TempDir other_dir;
  Daemon second(other_dir, config);
  std::optional<int> second_status = second.WaitExit();
  ASSERT_TRUE(second_status);
  EXPECT_TRUE(WIFEXITED(*second_status) && WEXITSTATUS(*second_status) == 1) << "wait status " << *second_status;
  EXPECT_TRUE(second.LogContains("in use by another server")) << second.Log();
  EXPECT_EQ(FreshRoundTrip("abc", "unix:" + path), "nop");

  // A crash leaves the file behind; the next start takes it over.
  kill(first->pid(), SIGKILL);
  ASSERT_TRUE(first->WaitExit());
  first.reset();
  ASSERT_EQ(stat(path.c_str(), &st), 0) << "expected a stale socket file";
  TempDir third_dir;  // a log of its own: the first daemon's "ready" line is not this one's
  Daemon third(third_dir, config);
  ASSERT_TRUE(third.WaitReady()) << third.Log();
  EXPECT_EQ(FreshRoundTrip("abc", "unix:" + path), "nop");

  // A clean stop removes the file it created.
  third.Signal(SIGTERM);
  std::optional<int> status = third.WaitExit();
  ASSERT_TRUE(status);
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
  EXPECT_NE(stat(path.c_str(), &st), 0) << path << " left behind";
}

}  // namespace
}  // namespace rot13d::blackbox
