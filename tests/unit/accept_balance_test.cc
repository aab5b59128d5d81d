// Accept balance: the pure rule, and a worker's view of its siblings' shared slots.
#include "daemon/accept_balance.h"

#include <gtest/gtest.h>

#include <vector>

namespace rot13d::daemon {
namespace {

using Clock = AcceptBalance::Clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

const Clock::time_point kT0 = Clock::time_point{} + std::chrono::hours(24);

// ---- BalanceWantsAccepting --------------------------------------------------------

TEST(BalanceWantsAccepting, AloneOrWithNobodyElseAcceptingAlwaysAccepts) {
  EXPECT_TRUE(BalanceWantsAccepting(1000, true, {}));
  std::vector<PeerLoad> idle_but_full = {{0, false}, {0, false}};
  EXPECT_TRUE(BalanceWantsAccepting(1000, true, idle_but_full)) << "never leave the listeners unwatched";
}

TEST(BalanceWantsAccepting, StepsBackAboveTheShareByTheMarginAndReturnsAtTheShare) {
  std::vector<PeerLoad> peer = {{10, true}};
  // Share of 14+10 over two is 12; the margin is 4 at this size.
  EXPECT_TRUE(BalanceWantsAccepting(14, true, peer));
  EXPECT_TRUE(BalanceWantsAccepting(16, true, peer));   // share 13, 16 <= 13 + 4
  EXPECT_TRUE(BalanceWantsAccepting(18, true, peer));   // share 14: 18 is at the margin, still in
  EXPECT_FALSE(BalanceWantsAccepting(19, true, peer));  // share 14.5: 19 > 18.5, steps back
  // Held back, it comes back only at or below the share: hysteresis.
  EXPECT_FALSE(BalanceWantsAccepting(12, false, peer));  // share 11
  EXPECT_TRUE(BalanceWantsAccepting(10, false, peer));   // share 10
}

TEST(BalanceWantsAccepting, MarginGrowsWithTheShare) {
  // 3200 + 3200 over 2: share 3200, margin 100 (1/32).
  std::vector<PeerLoad> peer = {{3000, true}};
  EXPECT_TRUE(BalanceWantsAccepting(3150, true, peer));   // share 3075, margin 96
  EXPECT_FALSE(BalanceWantsAccepting(3400, true, peer));  // share 3200, margin 100
}

// ---- AcceptBalance over a table of slots --------------------------------------------

class AcceptBalanceTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kKey = 42;
  void SetSlot(size_t i, WorkerPhase phase, uint32_t open, bool accepting, Clock::time_point heartbeat,
               uint64_t key = kKey) {
    table_[i].SetPhase(phase);
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
  EXPECT_FALSE(b.Allows(50, true, kT0)) << "50 against an idle sibling";
  // A sibling on other listeners, a draining one, a stale one: none counts.
  SetSlot(1, WorkerPhase::kAccepting, 0, true, kT0, /*key=*/7);
  EXPECT_TRUE(b.Allows(50, true, kT0));
  SetSlot(1, WorkerPhase::kDraining, 0, false, kT0);
  EXPECT_TRUE(b.Allows(50, true, kT0));
  SetSlot(1, WorkerPhase::kAccepting, 0, true, kT0 - seconds(4));
  EXPECT_TRUE(b.Allows(50, true, kT0)) << "a sibling silent for 4 s is stuck or stopped";
}

TEST_F(AcceptBalanceTest, FindsSiblingsThatBootAfterItOnTheNextScan) {
  AcceptBalance b(&table_[0], table_.data(), table_.size());
  b.Start(kKey, kT0);
  SetSlot(2, WorkerPhase::kAccepting, 0, true, kT0);
  EXPECT_TRUE(b.Allows(50, true, kT0)) << "not scanned yet";
  b.MaybeScan(kT0 + milliseconds(5));  // often at boot
  EXPECT_FALSE(b.Allows(50, true, kT0 + milliseconds(5)));
}

TEST_F(AcceptBalanceTest, RecheckBacksOffWhileNothingMovesAndResetsWhenItDoes) {
  SetSlot(1, WorkerPhase::kAccepting, 0, true, kT0);
  AcceptBalance b(&table_[0], table_.data(), table_.size());
  b.Start(kKey, kT0);
  std::vector<int64_t> seen;
  for (int i = 0; i < 6; ++i) {
    EXPECT_FALSE(b.Allows(50, false, kT0));
    b.AfterTurn(/*held=*/true);
    seen.push_back(b.recheck().count());
  }
  EXPECT_EQ(seen, (std::vector<int64_t>{5, 10, 20, 40, 50, 50}));
  SetSlot(1, WorkerPhase::kAccepting, 3, true, kT0);  // the siblings' total moved
  EXPECT_FALSE(b.Allows(50, false, kT0));
  b.AfterTurn(true);
  EXPECT_EQ(b.recheck(), milliseconds(5));
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
