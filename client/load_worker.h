// One thread of the load engine: an edge-triggered epoll loop over its share of the
// connections, each running the sessions LoadOptions describes (the state machine).
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <queue>
#include <random>
#include <vector>

#include "client/load.h"

namespace rot13d::client {

// What every thread of an engine shares.
struct LoadShared {
  const LoadOptions* options = nullptr;
  const Pattern* pattern = nullptr;
  LoadClock::time_point start{};
  LoadClock::time_point end = LoadClock::time_point::max();  // of the duration
  std::atomic<bool> stop{false};
  BorrowedFd stop_event;  // an eventfd, readable once stop is set
  std::atomic<int64_t> budget{0};  // units still to begin, when options->budget is set
};

// What one thread counted.
struct LoadTally {
  LoadStats stats;
  Histogram latency;
  std::vector<Failure> failures;  // the first options->failure_log ones
  std::optional<Failure> first;
  std::optional<Failure> first_mismatch;
  std::optional<LoadClock::time_point> end;  // when the thread ended
};

class LoadWorker {
 public:
  LoadWorker(LoadShared& shared, std::vector<uint32_t> connection_ids, uint64_t seed);
  ~LoadWorker();
  LoadWorker(const LoadWorker&) = delete;
  LoadWorker& operator=(const LoadWorker&) = delete;

  // Runs until every connection is finished, the end of the duration, or stop.
  void Run();

  // For other threads, while it runs: f(const LoadTally&).
  template <typename F>
  auto Read(F f) const {
    std::lock_guard lock(mu_);
    return f(tally_);
  }
  void AddServedPorts(std::vector<uint16_t>& out) const;

 private:
  struct Conn;
  struct Wakeup {
    LoadClock::time_point when;
    uint32_t index;
    bool operator>(const Wakeup& other) const { return when > other.when; }
  };

  // The loop.
  void Loop();
  void Dispatch(Conn& c);
  void RunDue(LoadClock::time_point now);
  void ScanTimeouts(LoadClock::time_point now);
  void Schedule(Conn& c, LoadClock::time_point when);
  LoadClock::time_point NextWake(LoadClock::time_point now) const;

  // A session.
  void BeginSession(Conn& c);
  void OnConnected(Conn& c);
  bool BeginMessage(Conn& c);
  void Pump(Conn& c);
  bool Send(Conn& c);
  bool Receive(Conn& c);
  bool Check(Conn& c, size_t got);
  bool OnAnswered(Conn& c);
  void OnEof(Conn& c);
  void CompleteUnit(Conn& c, uint64_t bytes);
  void CompleteSession(Conn& c);
  void EndSession(Conn& c, bool failed);
  void Finish(Conn& c);

  // Failures.
  void Fail(Conn& c, FailureKind kind, const std::string& what, std::optional<MismatchReport> mismatch = {});
  void Mismatch(Conn& c, uint64_t offset_in_message, int expected, int got);
  void Record(Failure f);
  bool TakeBudget();
  uint64_t Random(uint64_t lo, uint64_t hi);
  // The source address of the next session, in turn; null without sources.
  const SocketAddress* NextSource();

  LoadShared& shared_;
  const LoadOptions& options_;
  const Pattern& pattern_;
  std::mt19937_64 rng_;
  UniqueFd epoll_;
  std::vector<Conn> conns_;
  size_t active_ = 0;  // connections not finished for good
  std::priority_queue<Wakeup, std::vector<Wakeup>, std::greater<>> wakeups_;
  LoadClock::time_point next_scan_{};
  std::vector<uint8_t> scratch_;
  size_t next_source_ = 0;  // this thread's turn in options_.sources

  // Held by Run while it handles a turn's events: guards tally_ and the
  // connections' ports, which other threads read.
  mutable std::mutex mu_;
  LoadTally tally_;
};

}  // namespace rot13d::client
