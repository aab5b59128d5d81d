// Accept balance: which worker takes a new connection, by load first and by
// count only where memory is at stake, read from the siblings' shared slots.
//
// A few busy connections are best served by one warm worker: spread over two,
// they pay context switches and, on a small machine, a worker that competes
// with its clients for a CPU (p99 several times higher). The kernel's wakeup
// under EPOLLEXCLUSIVE keeps them together only some of the time, so a
// worker leaves new connections to a sibling that accepts, has time, is
// awake (waiting in epoll_wait or turning its loop: a stopped or stuck one
// would leave them to the backlog rescue), and
// holds fewer than 32 connections but more than this worker (the first slot
// on a tie): one worker fills up to 32 while it has time. Once accepting
// beside it, a worker steps back for it again only below 30 (32 less 1/16),
// so that one going back and forth across 32 does not flip it. A worker steps
// back in two more cases, and only while some sibling accepts (the
// listeners are never left unwatched):
//   - it is saturated (its loop worked, rather than waited, for 90 % of the
//     last busy window) and a sibling is not: new clients go where there is
//     time to serve them;
//   - it holds more than 32 connections and more than its fair share (the
//     mean over itself and its siblings) by 1/16: beyond 32 the counts are
//     kept close, for idle connections' memory and for streams begun
//     together (placed before any is busy, they would load the workers as
//     unevenly as they are counted). It comes back at or below the share
//     (the gap is the hysteresis that keeps it from flapping). It steps
//     back for a sibling the balance holds back too, if that one holds
//     fewer connections and is awake, and nudges it: nudged, it accepts,
//     since nobody else does. (Not for one paused, full or unable to watch:
//     that one would not.)
// A worker with no connection is never saturated: its last busy window
// closes only at its next turn, and until then it would wrongly step back.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "common/stats.h"

namespace rot13d::daemon {

// What a worker sees of a sibling that serves the same listeners.
struct PeerLoad {
  uint32_t open = 0;       // open connections
  bool accepting = false;  // watching the listeners now (so it has room)
  bool saturated = false;  // working, not waiting, most of its last busy window
  bool earlier = false;    // its slot comes before this worker's (a tie goes to it)
  bool held = false;       // not watching only because the balance holds it back
  bool awake = true;       // asleep in epoll_wait, or its loop turned lately: not stuck or stopped
};

// The pure rule above.
bool BalanceWantsAccepting(uint32_t own_open, bool own_saturated, bool accepting_now,
                           std::span<const PeerLoad> peers);

class AcceptBalance {
 public:
  using Clock = std::chrono::steady_clock;
  using milliseconds = std::chrono::milliseconds;

  // `own` is this worker's slot of `table` (count slots); a null table: no
  // balancing, the kernel's choice stands.
  AcceptBalance(const WorkerStats* own, const WorkerStats* table, size_t count)
      : own_(own), table_(table), count_(count) {}

  // At boot: which listeners this worker serves (siblings must have the same key).
  void Start(uint64_t listener_key, Clock::time_point now);
  // Reads the table for siblings when due: often just after boot (the
  // workers of a generation boot together), then every kPeerScanInterval.
  void MaybeScan(Clock::time_point now);
  // Whether this worker, with own_open connections, may accept now.
  bool Allows(uint32_t own_open, bool accepting_now, Clock::time_point now);

  // Each loop turn, as it goes back to epoll_wait: it woke at `woke` and has
  // worked since. When that closes a busy window, the window's share of work
  // in permille, for the worker to publish in its slot (busy_permille).
  std::optional<uint32_t> Worked(Clock::time_point woke, Clock::time_point waits);
  bool Saturated(Clock::time_point now) const;

  // After each loop turn: whether this worker is held back. A held worker must
  // look again soon (nothing else wakes it as the others fill up): every few
  // ms while the siblings' total moves, backing off while nothing changes.
  void AfterTurn(bool held);
  milliseconds recheck() const { return recheck_; }

  // A held worker's insurance: connections left in the backlog are meant for
  // its siblings, but none may wake for them (EPOLLEXCLUSIVE wakes one waiter
  // per arrival, none for what is already queued; a stopped sibling looks
  // alive until its heartbeat is stale). Whether to look at the backlog now,
  // and, given what it saw, whether to take it anyway.
  bool BacklogCheckDue(Clock::time_point now);
  bool RescueDue(bool backlog_queued, Clock::time_point now);

 private:
  void Scan(Clock::time_point now);

  const WorkerStats* own_;
  const WorkerStats* table_;
  size_t count_;
  uint64_t key_ = 0;
  std::vector<const WorkerStats*> peers_;  // slots that may serve the same listeners
  std::vector<PeerLoad> loads_;            // reused by each decision
  uint64_t total_ = 0;                     // open connections of this worker and its siblings
  uint64_t total_seen_ = 0;                // ... at the previous loop turn
  milliseconds recheck_{5};
  Clock::time_point started_{};
  Clock::time_point last_scan_{};
  Clock::time_point backlog_checked_{};  // when a held worker last looked at the backlog
  Clock::time_point backlog_seen_{};     // since when it has seen connections waiting there
  Clock::time_point window_start_{};     // of the busy window under way
  Clock::duration worked_{};             // in it so far
  Clock::time_point last_wait_began_{};  // when the loop last went to epoll_wait
  uint32_t busy_permille_ = 0;           // of the last window closed
};

}  // namespace rot13d::daemon
