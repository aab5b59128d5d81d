// Accept balance: the pure rule, and a worker's view of its siblings' shared slots.
#include "daemon/accept_balance.h"

#include <gtest/gtest.h>

#include <optional>
#include <vector>

namespace rot13d::daemon {
namespace {

using Clock = AcceptBalance::Clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

const Clock::time_point kT0 = Clock::time_point{} + std::chrono::hours(24);

// ---- BalanceWantsAccepting --------------------------------------------------------

TEST(BalanceWantsAccepting, AloneOrWithNobodyElseAcceptingAlwaysAccepts) {
  EXPECT_TRUE(BalanceWantsAccepting(1000, true, true, {}));
  // Siblings that do not accept, and hold as many or more: they will not.
  std::vector<PeerLoad> will_not = {{1000, false, false}, {1200, false, true}};
  EXPECT_TRUE(BalanceWantsAccepting(1000, true, true, will_not)) << "never leave the listeners unwatched";
  EXPECT_TRUE(BalanceWantsAccepting(1000, false, true, will_not)) << "never leave the listeners unwatched";
}

TEST(BalanceWantsAccepting, UpTo32ConnectionsMayStayOnOneWorker) {
  // Up to 32 on this worker, whatever the siblings hold.
  std::vector<PeerLoad> idle = {{0, true, false}};
  EXPECT_TRUE(BalanceWantsAccepting(16, false, true, idle));
  EXPECT_TRUE(BalanceWantsAccepting(32, false, true, idle));
  EXPECT_FALSE(BalanceWantsAccepting(33, false, true, idle));  // share 16.5
  std::vector<PeerLoad> three_idle = {{0, true, false}, {0, true, false}, {0, true, false}};
  EXPECT_TRUE(BalanceWantsAccepting(32, false, true, three_idle));  // share 8
  EXPECT_FALSE(BalanceWantsAccepting(33, false, true, three_idle));
}

TEST(BalanceWantsAccepting, ABurstOfSixtyFourEndsNearlyEven) {
  // Streams begun together are placed before any is busy: beyond 32 the
  // counts are what keeps their load even. 64 over two: share 32, 1/16 is 2.
  EXPECT_TRUE(BalanceWantsAccepting(34, false, true, std::vector<PeerLoad>{{30, true, false}}));
  EXPECT_FALSE(BalanceWantsAccepting(35, false, true, std::vector<PeerLoad>{{29, true, false}}));
}

TEST(BalanceWantsAccepting, StepsBackAboveTheShareByTheMarginAndReturnsAtTheShare) {
  std::vector<PeerLoad> peer = {{1000, true, false}};
  // 1,100 + 1,000 over two: share 1,050, margin 65.6 (1/16).
  EXPECT_TRUE(BalanceWantsAccepting(1100, false, true, peer));
  EXPECT_TRUE(BalanceWantsAccepting(1130, false, true, peer));   // share 1,065, margin 66.6
  EXPECT_FALSE(BalanceWantsAccepting(1140, false, true, peer));  // share 1,070, margin 66.9
  // Held back, it comes back only at or below the share: hysteresis.
  EXPECT_FALSE(BalanceWantsAccepting(1010, false, false, peer));  // share 1,005
  EXPECT_TRUE(BalanceWantsAccepting(1000, false, false, peer));   // share 1,000
}

TEST(BalanceWantsAccepting, MarginGrowsWithTheShare) {
  // 5,000 over 2: share 5,000, margin 312.5: 10,000 idle within 1.14.
  std::vector<PeerLoad> peer = {{4700, true, false}};
  EXPECT_TRUE(BalanceWantsAccepting(5300, false, true, peer));   // share 5,000
  EXPECT_FALSE(BalanceWantsAccepting(5700, false, true, peer));  // share 5,200, margin 325
}

TEST(BalanceWantsAccepting, ASaturatedWorkerLeavesNewClientsToOneWithTime) {
  std::vector<PeerLoad> has_time = {{40, true, false}};
  EXPECT_FALSE(BalanceWantsAccepting(10, true, true, has_time)) << "fewer connections, but no time for them";
  EXPECT_TRUE(BalanceWantsAccepting(10, false, true, has_time));
  // Every sibling saturated too, or not accepting: the counts decide.
  std::vector<PeerLoad> busy = {{40, true, true}};
  EXPECT_TRUE(BalanceWantsAccepting(10, true, true, busy));
  std::vector<PeerLoad> not_accepting = {{0, false, false}};
  EXPECT_TRUE(BalanceWantsAccepting(10, true, true, not_accepting));
}

TEST(BalanceWantsAccepting, FewConnectionsGoToOneWorkerWithTime) {
  // A sibling with more connections, under 32, accepting and with time: it takes them.
  EXPECT_FALSE(BalanceWantsAccepting(0, false, true, std::vector<PeerLoad>{{5, true, false}}));
  EXPECT_FALSE(BalanceWantsAccepting(3, false, false, std::vector<PeerLoad>{{31, true, false}})) << "held stays held";
  // Not if it does not accept, has no time, or is full.
  EXPECT_TRUE(BalanceWantsAccepting(0, false, true, std::vector<PeerLoad>{{5, false, false}}));
  EXPECT_TRUE(BalanceWantsAccepting(0, false, true, std::vector<PeerLoad>{{5, true, true}}));
  EXPECT_TRUE(BalanceWantsAccepting(0, false, true, std::vector<PeerLoad>{{32, true, false}}));
  // Fewer than this worker: this one is the one to fill.
  EXPECT_TRUE(BalanceWantsAccepting(6, false, true, std::vector<PeerLoad>{{5, true, false}}));
  // A tie goes to the first slot, so exactly one of two idle workers accepts.
  EXPECT_FALSE(BalanceWantsAccepting(0, false, true, std::vector<PeerLoad>{{0, true, false, /*earlier=*/true}}));
  EXPECT_TRUE(BalanceWantsAccepting(0, false, true, std::vector<PeerLoad>{{0, true, false, /*earlier=*/false}}));
}

TEST(BalanceWantsAccepting, AWorkerFullerThanAHeldSiblingStepsBackForIt) {
  // The sibling held back while this worker filled up to 32, or while it was
  // busy a moment; it accepts again once it looks (the step back nudges it).
  // Taking all 64 of a burst because it was not accepting that instant would
  // undo the balance for the connections' whole life.
  std::vector<PeerLoad> held = {{.open = 0, .held = true}};
  EXPECT_TRUE(BalanceWantsAccepting(32, false, true, held));
  EXPECT_FALSE(BalanceWantsAccepting(33, false, true, held));
  EXPECT_FALSE(BalanceWantsAccepting(33, false, true, std::vector<PeerLoad>{{.open = 3, .saturated = true, .held = true}}))
      << "busy too";
  // And the sibling, nudged, does take them: nobody else accepts now.
  EXPECT_TRUE(BalanceWantsAccepting(3, true, false, std::vector<PeerLoad>{{.open = 33, .held = true}}));
  // Not for one that does not watch for another reason (accepts paused after
  // EMFILE, its listeners could not be registered): nudged, it still would
  // not, and nobody would watch the listeners.
  EXPECT_TRUE(BalanceWantsAccepting(33, false, true, std::vector<PeerLoad>{{.open = 0, .held = false}}));
}

TEST(BalanceWantsAccepting, ASiblingGoingBackAndForthAcross32DoesNotFlipAWorker) {
  // Held while the sibling fills up; accepting beside it once it reaches 32.
  EXPECT_FALSE(BalanceWantsAccepting(0, false, false, std::vector<PeerLoad>{{31, true, false}}));
  EXPECT_TRUE(BalanceWantsAccepting(0, false, false, std::vector<PeerLoad>{{32, true, false}}));
  // Accepting, it steps back again only when the sibling is under 30.
  EXPECT_TRUE(BalanceWantsAccepting(0, false, true, std::vector<PeerLoad>{{31, true, false}}));
  EXPECT_TRUE(BalanceWantsAccepting(0, false, true, std::vector<PeerLoad>{{30, true, false}}));
  EXPECT_FALSE(BalanceWantsAccepting(0, false, true, std::vector<PeerLoad>{{29, true, false}}));
}

TEST(BalanceWantsAccepting, AFullerSiblingThatIsNotAwakeIsNotWaitedFor) {
  // Its loop has not turned for a busy window: asleep, or stopped or hung,
  // and then only the backlog rescue would take the connections it is left.
  // Both watch instead; an asleep one is woken by what it is given.
  EXPECT_FALSE(BalanceWantsAccepting(0, false, true, std::vector<PeerLoad>{{.open = 5, .accepting = true}}));
  EXPECT_TRUE(
      BalanceWantsAccepting(0, false, true, std::vector<PeerLoad>{{.open = 5, .accepting = true, .awake = false}}));
  EXPECT_TRUE(
      BalanceWantsAccepting(0, false, false, std::vector<PeerLoad>{{.open = 5, .accepting = true, .awake = false}}))
      << "held, it comes back";
}

TEST(BalanceWantsAccepting, AWorkerWithNoConnectionIsNotSaturated) {
  // Its window of work closes only at its next turn: a worker whose streams
  // have just ended still reads as saturated. Held back by that, it would
  // leave a burst that follows at once to its sibling alone.
  std::vector<PeerLoad> has_time = {{0, true, false}};
  EXPECT_TRUE(BalanceWantsAccepting(0, true, true, has_time));
  EXPECT_TRUE(BalanceWantsAccepting(0, true, false, has_time)) << "held, it comes back";
  // And a sibling with none is one with time, whatever its slot says.
  std::vector<PeerLoad> emptied = {{0, true, true}};
  EXPECT_FALSE(BalanceWantsAccepting(10, true, true, emptied));
  std::vector<PeerLoad> busy = {{5, true, true}};
  EXPECT_TRUE(BalanceWantsAccepting(10, true, true, busy));
}

// ---- AcceptBalance over a table of slots --------------------------------------------

class AcceptBalanceTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kKey = 42;
  void SetSlot(size_t i, WorkerPhase phase, uint32_t open, bool accepting, Clock::time_point heartbeat,
               uint64_t key = kKey, uint32_t busy_permille = 0, bool held = false, bool waiting = false) {
    table_[i].SetPhase(phase);
    table_[i].held.store(held ? 1 : 0);
    table_[i].waiting.store(waiting ? 1 : 0);
    table_[i].busy_permille.store(busy_permille);
    table_[i].open_connections.store(open);
    table_[i].accepting.store(accepting ? 1 : 0);
    table_[i].listener_key.store(key);
    table_[i].heartbeat_ns.store(std::chrono::duration_cast<std::chrono::nanoseconds>(heartbeat.time_since_epoch()).count());
  }
  std::vector<WorkerStats> table_ = std::vector<WorkerStats>(4);
};

TEST_F(AcceptBalanceTest, NoTableMeansNoBalancing) {
  AcceptBalance b(nullptr, nullptr, 0);
  b.Start(kKey, kT0);
  EXPECT_TRUE(b.Allows(100000, true, kT0));
}

TEST_F(AcceptBalanceTest, BalancesAgainstLiveSiblingsOfTheSameListenersOnly) {
  SetSlot(1, WorkerPhase::kAccepting, 0, true, kT0);
  AcceptBalance b(&table_[0], table_.data(), table_.size());
  b.Start(kKey, kT0);
  EXPECT_FALSE(b.Allows(100, true, kT0)) << "100 against an idle sibling";
  // A sibling on other listeners, a draining one, a stale one: none counts.
  SetSlot(1, WorkerPhase::kAccepting, 0, true, kT0, /*key=*/7);
  EXPECT_TRUE(b.Allows(100, true, kT0));
  SetSlot(1, WorkerPhase::kDraining, 0, false, kT0);
  EXPECT_TRUE(b.Allows(100, true, kT0));
  SetSlot(1, WorkerPhase::kAccepting, 0, true, kT0 - seconds(4));
  EXPECT_TRUE(b.Allows(100, true, kT0)) << "a sibling silent for 4 s is stuck or stopped";
}

TEST_F(AcceptBalanceTest, FindsSiblingsThatBootAfterItOnTheNextScan) {
  AcceptBalance b(&table_[0], table_.data(), table_.size());
  b.Start(kKey, kT0);
  table_[1].SetPhase(WorkerPhase::kFree);  // used before, free now
  SetSlot(2, WorkerPhase::kAccepting, 0, true, kT0);
  EXPECT_TRUE(b.Allows(100, true, kT0)) << "not scanned yet";
  b.MaybeScan(kT0 + milliseconds(5));  // often at boot
  EXPECT_FALSE(b.Allows(100, true, kT0 + milliseconds(5)));
}

// The slots ever used are a prefix of the table (supervisor/worker_pool.h):
// the scan stops at the first one never used, so that the pages past it are
// never allocated by reading them.
TEST_F(AcceptBalanceTest, TheScanEndsAtTheFirstSlotNeverUsed) {
  SetSlot(2, WorkerPhase::kAccepting, 0, true, kT0);  // slot 1 never used: out of reach
  AcceptBalance b(&table_[0], table_.data(), table_.size());
  b.Start(kKey, kT0);
  EXPECT_TRUE(b.Allows(50, true, kT0));
  table_[1].SetPhase(WorkerPhase::kFree);
  b.MaybeScan(kT0 + milliseconds(5));
  EXPECT_FALSE(b.Allows(50, true, kT0 + milliseconds(5)));
}

TEST_F(AcceptBalanceTest, RecheckBacksOffWhileNothingMovesAndResetsWhenItDoes) {
  SetSlot(1, WorkerPhase::kAccepting, 0, true, kT0);
  AcceptBalance b(&table_[0], table_.data(), table_.size());
  b.Start(kKey, kT0);
  std::vector<int64_t> seen;
  for (int i = 0; i < 6; ++i) {
    EXPECT_FALSE(b.Allows(100, false, kT0));
    b.AfterTurn(/*held=*/true);
    seen.push_back(b.recheck().count());
  }
  EXPECT_EQ(seen, (std::vector<int64_t>{5, 10, 20, 40, 50, 50}));
  SetSlot(1, WorkerPhase::kAccepting, 3, true, kT0);  // the siblings' total moved
  EXPECT_FALSE(b.Allows(100, false, kT0));
  b.AfterTurn(true);
  EXPECT_EQ(b.recheck(), milliseconds(5));
}

TEST_F(AcceptBalanceTest, BusyWindowsMeasureWorkAgainstWaiting) {
  AcceptBalance b(&table_[0], table_.data(), table_.size());
  b.Start(kKey, kT0);
  // Turns of 9 ms of work and 1 ms of waiting: the window closes on the
  // first turn that ends 50 ms or more after it began.
  Clock::time_point t = kT0;
  std::optional<uint32_t> published;
  for (int i = 0; i < 6; ++i, t += milliseconds(10)) {
    EXPECT_FALSE(published) << "published before its window closed, at turn " << i;
    published = b.Worked(t, t + milliseconds(9));
  }
  ASSERT_TRUE(published);
  EXPECT_EQ(*published, 54u * 1000 / 59);  // 54 ms of work in 59
  EXPECT_TRUE(b.Saturated(t));
  EXPECT_TRUE(b.Saturated(t + milliseconds(3))) << "woke from a wait of 4 ms";
  EXPECT_FALSE(b.Saturated(t + milliseconds(4))) << "woke from a wait of 5 ms: the load has gone";
  EXPECT_FALSE(b.Saturated(t + milliseconds(200))) << "a verdict that old hides a wait since";
  // Mostly waiting: 1 ms of work a turn.
  published.reset();
  for (int i = 0; i < 6; ++i, t += milliseconds(10)) {
    EXPECT_FALSE(published) << i;
    published = b.Worked(t, t + milliseconds(1));
  }
  ASSERT_TRUE(published);
  EXPECT_EQ(*published, 6u * 1000 / 52);
  EXPECT_FALSE(b.Saturated(t));
}

TEST_F(AcceptBalanceTest, SaturatedSiblingsCountOnlyWhileAwake) {
  // A sibling with more connections but time to spare takes the new ones
  // from a saturated worker; asleep since long, its last verdict is void.
  SetSlot(1, WorkerPhase::kAccepting, 40, true, kT0, kKey, /*busy_permille=*/950);
  AcceptBalance b(&table_[0], table_.data(), table_.size());
  b.Start(kKey, kT0);
  Clock::time_point t = kT0;
  for (int i = 0; i < 6; ++i, t += milliseconds(10)) (void)b.Worked(t, t + milliseconds(10));
  ASSERT_TRUE(b.Saturated(t));
  SetSlot(1, WorkerPhase::kAccepting, 40, true, t, kKey, 950);
  EXPECT_TRUE(b.Allows(10, true, t)) << "both saturated: the counts decide";
  SetSlot(1, WorkerPhase::kAccepting, 40, true, t, kKey, 100);
  EXPECT_FALSE(b.Allows(10, true, t)) << "the sibling has time";
  SetSlot(1, WorkerPhase::kAccepting, 40, true, t - milliseconds(500), kKey, 950);
  EXPECT_FALSE(b.Allows(10, true, t)) << "a sibling asleep in epoll_wait is not busy";
}

TEST_F(AcceptBalanceTest, OfTwoIdleWorkersTheFirstSlotAccepts) {
  // Idle: asleep in epoll_wait since their last turn, long ago.
  SetSlot(0, WorkerPhase::kAccepting, 0, true, kT0 - milliseconds(900), kKey, 0, false, /*waiting=*/true);
  SetSlot(1, WorkerPhase::kAccepting, 0, true, kT0 - milliseconds(900), kKey, 0, false, /*waiting=*/true);
  AcceptBalance first(&table_[0], table_.data(), table_.size());
  AcceptBalance second(&table_[1], table_.data(), table_.size());
  first.Start(kKey, kT0);
  second.Start(kKey, kT0);
  EXPECT_TRUE(first.Allows(0, true, kT0));
  EXPECT_FALSE(second.Allows(0, true, kT0));
}

TEST_F(AcceptBalanceTest, ReadsWhetherASiblingIsHeldAndWhetherItIsAwake) {
  AcceptBalance b(&table_[0], table_.data(), table_.size());
  // Not watching, 0 connections: held by the balance, it will take them.
  SetSlot(1, WorkerPhase::kAccepting, 0, false, kT0, kKey, 0, /*held=*/true);
  b.Start(kKey, kT0);
  EXPECT_FALSE(b.Allows(40, true, kT0));
  SetSlot(1, WorkerPhase::kAccepting, 0, false, kT0, kKey, 0, /*held=*/false);
  EXPECT_TRUE(b.Allows(40, true, kT0)) << "paused or unable to watch: it would not";
  // ... and only while it looks again: one stopped or stuck does not.
  SetSlot(1, WorkerPhase::kAccepting, 0, false, kT0 - milliseconds(100), kKey, 0, /*held=*/true, /*waiting=*/true);
  EXPECT_FALSE(b.Allows(40, true, kT0));
  SetSlot(1, WorkerPhase::kAccepting, 0, false, kT0 - milliseconds(101), kKey, 0, /*held=*/true, /*waiting=*/true);
  EXPECT_TRUE(b.Allows(40, true, kT0)) << "held, it turns every 50 ms at most: this one is stopped";
  // A fuller sibling under 32 takes the few connections while it is awake:
  // asleep in epoll_wait however long, or working with a recent turn.
  SetSlot(1, WorkerPhase::kAccepting, 5, true, kT0 - milliseconds(900), kKey, 0, false, /*waiting=*/true);
  EXPECT_FALSE(b.Allows(0, true, kT0)) << "asleep: an arrival wakes it";
  SetSlot(1, WorkerPhase::kAccepting, 5, true, kT0 - milliseconds(100));
  EXPECT_FALSE(b.Allows(0, true, kT0));
  SetSlot(1, WorkerPhase::kAccepting, 5, true, kT0 - milliseconds(101));
  EXPECT_TRUE(b.Allows(0, true, kT0)) << "working, and no turn for two busy windows: stuck or stopped";
}

TEST_F(AcceptBalanceTest, BacklogIsRescuedAfterItWaited20Ms) {
  AcceptBalance b(&table_[0], table_.data(), table_.size());
  b.Start(kKey, kT0);
  EXPECT_TRUE(b.BacklogCheckDue(kT0));
  EXPECT_FALSE(b.BacklogCheckDue(kT0 + milliseconds(1))) << "polled at most every 5 ms";
  EXPECT_FALSE(b.RescueDue(true, kT0));
  EXPECT_FALSE(b.RescueDue(true, kT0 + milliseconds(19)));
  EXPECT_TRUE(b.RescueDue(true, kT0 + milliseconds(20)));
  // An empty backlog in between starts the wait over.
  EXPECT_FALSE(b.RescueDue(true, kT0 + milliseconds(30)));
  EXPECT_FALSE(b.RescueDue(false, kT0 + milliseconds(40)));
  EXPECT_FALSE(b.RescueDue(true, kT0 + milliseconds(55)));
  EXPECT_TRUE(b.RescueDue(true, kT0 + milliseconds(75)));
}

}  // namespace
}  // namespace rot13d::daemon
