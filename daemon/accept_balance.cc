#include "daemon/accept_balance.h"

#include <algorithm>

namespace rot13d::daemon {
namespace {

using std::chrono::milliseconds;

// How soon a held worker looks again, and how far that backs off while the
// siblings' total does not move.
constexpr milliseconds kRecheckMin{5};
constexpr milliseconds kRecheckMax{50};
// A held worker takes connections that have waited in the backlog this long anyway.
constexpr milliseconds kBacklogRescue{20};
// How often the table is scanned for siblings (workers come and go with
// restarts and reloads), and more often during the first seconds.
constexpr milliseconds kPeerScanInterval{100};
constexpr milliseconds kPeerScanIntervalAtBoot{5};
constexpr std::chrono::seconds kBootScanPeriod{2};
// A sibling whose loop has not turned for this long is stuck or stopped: it
// does not count, so nobody steps back in favour of it. Idle loops turn at
// least once a second (WorkerParams::tick).
constexpr std::chrono::seconds kPeerStale{3};
// Up to kKernelShare connections go to one worker with time (a few busy ones
// are best served by one warm worker); beyond that, stepping back takes
// holding more than the share by 1/16: the counts are kept close.
constexpr double kKernelShare = 32;
constexpr double kMarginFraction = 1.0 / 16;
// A worker is saturated when its loop worked for this share of a busy window.
constexpr std::chrono::milliseconds kBusyWindow{50};
constexpr uint32_t kSaturatedPermille = 900;

int64_t Nanos(AcceptBalance::Clock::duration d) { return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count(); }

}  // namespace

bool BalanceWantsAccepting(uint32_t own_open, bool own_saturated, bool accepting_now,
                           std::span<const PeerLoad> peers) {
  uint64_t total = own_open;
  bool someone_else_accepts = false;
  bool someone_else_has_time = false;
  bool a_sibling_fills_up = false;
  const double fill_limit = accepting_now ? kKernelShare - kKernelShare * kMarginFraction : kKernelShare;
  for (const PeerLoad& p : peers) {
    total += p.open;
    // A worker with no connection is not saturated, whatever its last window
    // said: its load has gone (the window closes only at its next turn).
    bool has_time = !p.saturated || p.open == 0;
    // A sibling held back with fewer connections than this worker accepts as
    // soon as it looks again (at once when nudged, and a worker that steps
    // back nudges), even if busy: it is held only while someone else has
    // time. So one that waited for this worker to fill up, or that was busy
    // a moment, does not leave it every connection of a burst.
    someone_else_accepts = someone_else_accepts || p.accepting || (p.held && p.awake && p.open < own_open);
    someone_else_has_time = someone_else_has_time || (p.accepting && has_time);
    // Few connections go to one worker, not wherever the kernel's wakeup
    // lands: to an awake sibling with time that accepts and holds fewer
    // than kKernelShare (less the margin once this worker accepts beside
    // it), but more than this worker (or as many, and its slot comes first).
    a_sibling_fills_up = a_sibling_fills_up ||
                         (p.accepting && p.awake && has_time && p.open < fill_limit &&
                          (p.open > own_open || (p.open == own_open && p.earlier)));
  }
  if (!someone_else_accepts) return true;
  if (own_saturated && own_open > 0 && someone_else_has_time) return false;
  if (a_sibling_fills_up) return false;
  double share = static_cast<double>(total) / static_cast<double>(peers.size() + 1);
  if (!accepting_now) return own_open <= share;
  return own_open <= std::max(kKernelShare, share + share * kMarginFraction);
}

void AcceptBalance::Start(uint64_t listener_key, Clock::time_point now) {
  key_ = listener_key;
  started_ = now;
  Scan(now);
}

void AcceptBalance::MaybeScan(Clock::time_point now) {
  if (now - last_scan_ >= (now - started_ < kBootScanPeriod ? kPeerScanIntervalAtBoot : kPeerScanInterval)) {
    Scan(now);
  }
}

// Booting slots are kept too: siblings of one generation boot together, and a
// worker that missed them would not balance until the next scan. Each decision
// filters on phase and key again.
void AcceptBalance::Scan(Clock::time_point now) {
  last_scan_ = now;
  if (!table_) return;
  peers_.clear();
  for (size_t i = 0; i < count_; ++i) {
    const WorkerStats* s = &table_[i];
    if (s == own_) continue;
    WorkerPhase phase = s->Phase();
    if (phase == WorkerPhase::kUnused) break;  // no slot past it was ever used
    if (phase == WorkerPhase::kBooting ||
        (phase == WorkerPhase::kAccepting && s->listener_key.load(std::memory_order_relaxed) == key_)) {
      peers_.push_back(s);
    }
  }
}

// Siblings accepting on the same listeners whose loop is alive; slots of
// draining, booting or free workers do not count.
bool AcceptBalance::Allows(uint32_t own_open, bool accepting_now, Clock::time_point now) {
  total_ = own_open;
  if (peers_.empty()) return true;
  loads_.clear();
  for (const WorkerStats* s : peers_) {
    if (s->Phase() != WorkerPhase::kAccepting) continue;
    if (s->listener_key.load(std::memory_order_relaxed) != key_) continue;
    const int64_t age = Nanos(now.time_since_epoch()) - s->heartbeat_ns.load(std::memory_order_relaxed);
    if (age > Nanos(kPeerStale)) continue;
    // A sibling asleep in epoll_wait has no fresh heartbeat: it is not busy,
    // whatever its last window said.
    const bool fresh = age <= Nanos(kBusyWindow);
    const bool held = s->held.load(std::memory_order_relaxed) != 0;
    // Awake: it will take what it is left. Asleep in epoll_wait, it is woken
    // by an arrival or a nudge; working, its loop turned within two windows
    // (one working for longer is stuck, or stopped). A held one looks again
    // every 50 ms at most, asleep or not, so only its heartbeat tells.
    const bool awake = (s->waiting.load(std::memory_order_relaxed) != 0 && !held) || age <= 2 * Nanos(kBusyWindow);
    loads_.push_back({.open = s->open_connections.load(std::memory_order_relaxed),
                      .accepting = s->accepting.load(std::memory_order_relaxed) != 0,
                      .saturated = fresh && s->busy_permille.load(std::memory_order_relaxed) >= kSaturatedPermille,
                      .earlier = s < own_,
                      .held = held,
                      .awake = awake});
  }
  for (const PeerLoad& p : loads_) total_ += p.open;
  return BalanceWantsAccepting(own_open, Saturated(now), accepting_now, loads_);
}

std::optional<uint32_t> AcceptBalance::Worked(Clock::time_point woke, Clock::time_point waits) {
  last_wait_began_ = waits;
  if (window_start_ == Clock::time_point{}) window_start_ = woke;
  worked_ += waits - woke;
  Clock::duration span = waits - window_start_;
  if (span < kBusyWindow) return std::nullopt;
  busy_permille_ = static_cast<uint32_t>(std::min<int64_t>(1000, Nanos(worked_) * 1000 / Nanos(span)));
  window_start_ = waits;
  worked_ = {};
  return busy_permille_;
}

// The last window's verdict holds while it is recent: one that closed long
// ago was followed by a wait this turn has not accounted yet. And a turn
// that began with a wait of a tenth of a window has seen time to spare: the
// load has gone (a sibling's streams that just ended), and a burst of new
// connections must not find this worker stepping back on a stale verdict.
bool AcceptBalance::Saturated(Clock::time_point now) const {
  return busy_permille_ >= kSaturatedPermille && now - window_start_ <= 2 * kBusyWindow &&
         now - last_wait_began_ < kBusyWindow / 10;
}

void AcceptBalance::AfterTurn(bool held) {
  recheck_ = held && total_ == total_seen_ ? std::min(2 * recheck_, kRecheckMax) : kRecheckMin;
  total_seen_ = total_;
  if (!held) backlog_seen_ = {};
}

bool AcceptBalance::BacklogCheckDue(Clock::time_point now) {
  if (now - backlog_checked_ < kRecheckMin) return false;
  backlog_checked_ = now;
  return true;
}

bool AcceptBalance::RescueDue(bool backlog_queued, Clock::time_point now) {
  if (!backlog_queued) {
    backlog_seen_ = {};
    return false;
  }
  if (backlog_seen_ == Clock::time_point{}) backlog_seen_ = now;
  if (now - backlog_seen_ < kBacklogRescue) return false;
  backlog_seen_ = {};
  return true;
}

}  // namespace rot13d::daemon
