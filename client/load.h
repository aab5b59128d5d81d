// The verifying load engine of rot13-bench and of the fault suite: connections on event-loop
// threads run sessions of messages, every byte that comes back is checked, and what they
// saw is counted (by one failure taxonomy, FailureKind) and timed.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "client/endpoint.h"
#include "client/histogram.h"
#include "client/pattern.h"
#include "common/result.h"
#include "common/unique_fd.h"

namespace rot13d::client {

using LoadClock = std::chrono::steady_clock;

// A byte value for messages: "0x6e", or "none" for -1.
std::string FormatByte(int byte);

// The first wrong byte of an answer.
struct MismatchReport {
  uint32_t connection = 0;
  uint64_t request = 0;  // which unit (LoadOptions::unit) on that connection, from 0
  uint64_t offset = 0;   // byte offset in that unit's answer
  int expected = -1;     // the byte value that should have come, -1 for none (an extra byte)
  int got = -1;          // the byte value that came, -1 for none (the server closed early)

  bool closed_early() const { return got < 0; }
  std::string ToString() const;
};

// One failed session.
struct Failure {
  FailureKind kind = FailureKind::kOther;
  LoadClock::time_point at;  // when it was seen
  uint32_t connection = 0;
  uint16_t local_port = 0;   // the client's TCP port, 0 before connecting or on a Unix socket
  uint64_t received = 0;     // bytes of the session verified before it failed
  std::string message;       // complete: "connection 3: receive: Connection reset by peer",
                             // "connection 3, message 15, byte 40: expected 0x6e, got 0x6f"
  std::optional<MismatchReport> mismatch;  // kMismatch: where
};

// What counts as one request: its latency is what is timed, the budget limits
// how many begin, and its bytes count in request_bytes once it completes.
enum class Unit {
  kMessage,  // a message and its whole answer
  kSession,  // a whole session, from the start of its connect to its end
};

struct LoadOptions {
  // A message that is the whole session; a session that never ends.
  static constexpr uint64_t kWhole = UINT64_MAX;
  static constexpr uint64_t kEndless = UINT64_MAX;

  SocketAddress address;
  Expect expect = Expect::kRot13;
  uint32_t connections = 1;  // each runs its sessions one after another
  uint32_t threads = 1;      // each an epoll loop over its share of the connections

  // A session connects and sends a random number of bytes in [min_bytes,
  // max_bytes] as messages of `message` bytes: each is sent while its answer is
  // read, and answered whole before the next begins. After its last byte the
  // session half-closes, and ends at the server's EOF (or, without await_eof,
  // at the last byte of the answer).
  uint64_t min_bytes = 64;
  uint64_t max_bytes = 64;
  uint64_t message = kWhole;
  bool await_eof = true;
  std::chrono::nanoseconds think{0};  // a random pause of up to this between messages
  std::chrono::nanoseconds pause{0};  // between the sessions of a connection; at least 10 ms after a failure
  uint64_t sessions_per_connection = 0;  // 0: no limit

  Unit unit = Unit::kMessage;
  bool timed = true;    // record the latency of each unit
  uint64_t budget = 0;  // units to begin in all; 0: no limit
  // From Start: no unit begins after it, and the threads end there.
  std::optional<std::chrono::nanoseconds> duration;
  std::chrono::nanoseconds timeout = std::chrono::seconds(10);  // no progress for this long fails a session
  SocketBuffers buffers;  // of each socket, set before it connects
  // Local addresses of the address's family that sessions connect from, each
  // thread taking the next for each session it begins (StartConnect's
  // source); empty: the kernel picks.
  std::vector<SocketAddress> sources;
  size_t failure_log = 0;  // failures kept in full, the first ones (the first failure and mismatch always are)
  uint64_t seed = 1;       // session lengths and think times
};

struct LoadStats {
  uint64_t sessions_started = 0;
  uint64_t sessions_completed = 0;  // every byte back and right (and the EOF, when awaited)
  uint64_t requests = 0;            // units completed
  uint64_t request_bytes = 0;       // the answer bytes of those units
  uint64_t bytes_sent = 0;
  uint64_t bytes_verified = 0;      // every right byte, as it came
  std::array<uint64_t, kFailureKinds> failures{};  // failed sessions by FailureKind
  uint64_t closed_early = 0;        // of the mismatches: the server closed before the whole answer

  uint64_t Failures(FailureKind kind) const { return failures[static_cast<size_t>(kind)]; }
  uint64_t total_failures() const;
  // Mismatches with a wrong or an extra byte: what no fault may cause.
  uint64_t wrong_answers() const { return Failures(FailureKind::kMismatch) - closed_early; }
  void Add(const LoadStats& other);
  std::string Summary() const;
};

class LoadWorker;
struct LoadShared;

class LoadEngine {
 public:
  explicit LoadEngine(LoadOptions options);
  ~LoadEngine();  // Stop()
  LoadEngine(const LoadEngine&) = delete;
  LoadEngine& operator=(const LoadEngine&) = delete;

  // Starts the threads (the duration counts from here); once only.
  Status Start();
  // Ends the threads and closes every connection; idempotent.
  void Stop();
  // Readable once every thread has ended: all its connections finished (their
  // sessions_per_connection, the budget or the duration ran out), or Stop().
  BorrowedFd done_event() const;
  bool WaitDone(std::chrono::milliseconds timeout) const;

  // Safe while the load runs.
  LoadStats Stats() const;
  Histogram Latency() const;  // nanoseconds per unit
  std::vector<Failure> Failures() const;  // those kept, by time
  std::optional<Failure> FirstFailure() const;
  std::optional<Failure> FirstMismatch() const;
  // Client ports of open connections whose session has received right bytes.
  std::vector<uint16_t> ServedPorts() const;
  // From Start to the end of the last thread (now for one still running), at most the duration.
  LoadClock::duration Elapsed() const;

 private:
  LoadOptions options_;
  Pattern pattern_;
  std::unique_ptr<LoadShared> shared_;
  UniqueFd stop_event_;
  UniqueFd done_event_;
  std::vector<std::unique_ptr<LoadWorker>> workers_;
  std::vector<std::thread> threads_;
  std::atomic<uint32_t> running_{0};  // threads not yet ended
};

}  // namespace rot13d::client
