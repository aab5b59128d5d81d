// One rot13-bench thread: an edge-triggered epoll loop over its share of the connections.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "client/bench.h"
#include "common/unique_fd.h"

namespace rot13d::client {

int64_t NowNs();

// What every worker of a run shares.
struct RunShared {
  const BenchConfig* config = nullptr;
  const Pattern* pattern = nullptr;
  int64_t start_ns = 0;
  int64_t end_ns = INT64_MAX;  // rr, connect: the end of -d
  std::atomic<bool> stop{false};
  BorrowedFd stop_event;  // an eventfd, readable once stop is set
  BorrowedFd done_event;  // an eventfd each worker adds 1 to when it ends
  // Messages (rr) or cycles (connect) still to start when -r is given.
  std::atomic<int64_t> budget{0};
};

// Running totals for the progress line, written by one worker, read by the main thread.
struct alignas(64) LiveCounters {
  std::atomic<uint64_t> bytes_sent{0};
  std::atomic<uint64_t> bytes_received{0};
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> errors{0};
};

struct WorkerResult {
  Histogram latency;
  std::array<uint64_t, kFailureKinds> failures{};
  std::string first_error;
  std::optional<MismatchReport> mismatch;
  int64_t end_ns = 0;  // when the last measured work ended
};

class Worker {
 public:
  Worker(RunShared& shared, LiveCounters& live, std::vector<uint32_t> connection_ids);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Runs until every connection is done, the deadline, or stop.
  void Run();
  WorkerResult& result() { return result_; }

 private:
  struct Conn;

  uint32_t IndexOf(const Conn& c) const;
  void Open(Conn& c);
  void BeginCycle(Conn& c);
  void OnConnected(Conn& c);
  bool BeginMessage(Conn& c);
  void Pump(Conn& c);
  void Complete(Conn& c);
  void Fail(Conn& c, FailureKind kind, std::string message);
  void Mismatch(Conn& c, uint64_t offset, int expected, int got);
  void Finish(Conn& c);
  void ScanTimeouts(int64_t now);
  bool TakeBudget();

  RunShared& shared_;
  const BenchConfig& config_;
  const Pattern& pattern_;
  LiveCounters& live_;
  UniqueFd epoll_;
  std::vector<Conn> conns_;
  // Connections to open again, by index, and not before when_ns: done outside
  // the event handlers, so a stale event of a closed socket finds it waiting,
  // and after a short pause when it failed, so a dead server is not hammered.
  struct Restart {
    int64_t when_ns;
    uint32_t index;
  };
  std::vector<Restart> restart_;
  size_t active_ = 0;              // connections not yet finished for good
  std::unique_ptr<uint8_t[]> scratch_;
  WorkerResult result_;
};

}  // namespace rot13d::client
