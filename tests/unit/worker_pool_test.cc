// The executor tier: the worker pool forks tiny real children (no rot13d
// worker), reaps them and signals them; generations promote and abandon.
#include "supervisor/worker_pool.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include <csignal>
#include <thread>

#include "supervisor/generation.h"

namespace rot13d::supervisor {
namespace {

using namespace std::chrono_literals;

struct Death {
  int slot;
  pid_t pid;
  ExitStatus exit;
};

class WorkerPoolTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(pool_.Init(8).ok()); }

  // Reaps until `n` deaths were seen or 5 s passed.
  std::vector<Death> ReapDeaths(size_t n) {
    std::vector<Death> deaths;
    auto deadline = Clock::now() + 5s;
    while (deaths.size() < n && Clock::now() < deadline) {
      pool_.Reap([&](WorkerRecord& w, pid_t pid, const ExitStatus& exit, uint32_t) {
        deaths.push_back({w.slot, pid, exit});
        pool_.Apply(w, ExitDecision{}, Clock::now());  // forget it
      }, [](pid_t, const ExitStatus&) {});
      std::this_thread::sleep_for(1ms);
    }
    return deaths;
  }

  WorkerPool pool_;
  Config config_ = Config::Defaults();
};

TEST_F(WorkerPoolTest, SpawnsChildrenThatGetTheirOwnSlotAndReapsTheirExitCodes) {
  pool_.AddGeneration(1, 3, Clock::now());
  for (int slot = 0; slot < 3; ++slot) {
    WorkerRecord* w = pool_.FindWaiting(slot, 1);
    ASSERT_NE(w, nullptr);
    // The child reports through its counter slot, then exits with its slot number.
    auto failed = pool_.Spawn(*w, config_, [slot](WorkerStats& own, const StatsTable&) {
      own.connections_total.store(10 + static_cast<uint64_t>(slot));
      own.SetPhase(WorkerPhase::kAccepting);
      _exit(slot);
    });
    ASSERT_FALSE(failed);
    EXPECT_GT(w->pid, 0);
    EXPECT_EQ(w->state, WorkerState::kRunning);
  }
  EXPECT_EQ(pool_.FindWaiting(0, 1), nullptr);
  std::vector<Death> deaths = ReapDeaths(3);
  ASSERT_EQ(deaths.size(), 3u);
  for (const Death& d : deaths) {
    EXPECT_EQ(d.exit.signal, 0);
    EXPECT_EQ(d.exit.code, d.slot) << "slot " << d.slot;
  }
  EXPECT_TRUE(pool_.all().empty());
  // What they counted outlives them, for the status line.
  EXPECT_EQ(pool_.Figures(1).connections_served, 10u + 11u + 12u);
}

TEST_F(WorkerPoolTest, SignalDrainsAndKillIsFinal) {
  pool_.AddGeneration(1, 2, Clock::now());
  auto forever = [](WorkerStats&, const StatsTable&) {
    for (;;) pause();
  };
  for (int slot = 0; slot < 2; ++slot) ASSERT_FALSE(pool_.Spawn(*pool_.FindWaiting(slot, 1), config_, forever));
  pid_t a = pool_.all()[0].pid, b = pool_.all()[1].pid;
  pool_.Signal(a, SIGTERM, 30s);
  EXPECT_EQ(pool_.Find(a)->state, WorkerState::kDraining);
  EXPECT_GT(pool_.Find(a)->kill_at, Clock::now() + 29s);
  pool_.Signal(b, SIGKILL, 30s);
  EXPECT_TRUE(pool_.Find(b)->kill_sent);
  std::vector<Death> deaths = ReapDeaths(2);
  ASSERT_EQ(deaths.size(), 2u);
  for (const Death& d : deaths) EXPECT_EQ(d.exit.signal, d.pid == a ? SIGTERM : SIGKILL);
}

TEST_F(WorkerPoolTest, RetireAllButKeepsOneGenerationAndKillAllAndReapLeavesNothing) {
  auto forever = [](WorkerStats&, const StatsTable&) {
    for (;;) pause();
  };
  pool_.AddGeneration(1, 2, Clock::now());
  pool_.AddGeneration(2, 2, Clock::now());
  ASSERT_FALSE(pool_.Spawn(*pool_.FindWaiting(0, 1), config_, forever));
  ASSERT_FALSE(pool_.Spawn(*pool_.FindWaiting(0, 2), config_, forever));
  // Generation 1: one live worker to drain, one waiting record to drop.
  EXPECT_EQ(pool_.RetireAllBut(2, 30s), 1u);
  EXPECT_EQ(pool_.FindWaiting(1, 1), nullptr);
  ASSERT_NE(pool_.FindWaiting(1, 2), nullptr);
  pool_.FailWaiting(2);
  EXPECT_EQ(pool_.FindWaiting(1, 2), nullptr) << "failed, no longer waiting";
  pool_.KillAllAndReap();
  EXPECT_TRUE(pool_.all().empty());
  errno = 0;
  EXPECT_EQ(waitpid(-1, nullptr, WNOHANG), -1) << "nothing left to reap";
  EXPECT_EQ(errno, ECHILD);
}

TEST_F(WorkerPoolTest, ApplyTurnsADecisionIntoTheRecord) {
  pool_.AddGeneration(1, 1, Clock::now());
  WorkerRecord& w = *pool_.FindWaiting(0, 1);
  auto now = Clock::now();
  pool_.Apply(w, ExitDecision{.kind = ExitDecision::Kind::kRespawn, .delay = 200ms, .failures = 2}, now);
  ASSERT_NE(pool_.FindWaiting(0, 1), nullptr);
  EXPECT_EQ(pool_.FindWaiting(0, 1)->restart_at, now + 200ms);
  EXPECT_EQ(pool_.FindWaiting(0, 1)->failures, 2);
  pool_.Apply(*pool_.FindWaiting(0, 1), ExitDecision{.kind = ExitDecision::Kind::kGiveUp}, now);
  EXPECT_EQ(pool_.all().at(0).state, WorkerState::kFailed);
}

// A slot whose fork fails starts from nothing: what its last process did
// (booted, hung) must not make the planner read the failure as a crash of a
// serving worker.
TEST(WorkerPoolSlots, AFailedSpawnForgetsTheLastProcessOfItsSlot) {
  WorkerPool pool;
  ASSERT_TRUE(pool.Init(1).ok());  // one counter slot: the second spawn finds none
  Config config = Config::Defaults();
  auto forever = [](WorkerStats&, const StatsTable&) {
    for (;;) pause();
  };
  pool.AddGeneration(1, 2, Clock::now());
  ASSERT_FALSE(pool.Spawn(*pool.FindWaiting(0, 1), config, forever));
  WorkerRecord& second = *pool.FindWaiting(1, 1);
  second.booted = second.hung = second.kill_sent = true;
  std::optional<ExitStatus> failed = pool.Spawn(second, config, forever);
  ASSERT_TRUE(failed);
  EXPECT_NE(failed->fork_errno, 0);
  EXPECT_FALSE(second.booted);
  EXPECT_FALSE(second.hung);
  EXPECT_FALSE(second.kill_sent);
  pool.KillAllAndReap();
}

// The counter table costs only the pages of slots in use: a new table has no
// page at all, the slots handed out are a prefix (freed ones first), and the
// rest stays unallocated in every process (see WorkerPhase::kUnused).
TEST(WorkerPoolSlots, OnlyThePagesOfSlotsInUseAreAllocated) {
  WorkerPool pool;
  ASSERT_TRUE(pool.Init(4160).ok());  // the supervisor's size: 1 MiB of slots
  auto blocks = [&] {
    struct stat st {};
    EXPECT_EQ(fstat(pool.stats_fd().get(), &st), 0);
    return st.st_blocks;
  };
  EXPECT_EQ(blocks(), 0) << "a new table allocated pages";
  Config config = Config::Defaults();
  auto done = [](WorkerStats&, const StatsTable& all) {
    // What a worker's accept balance reads: up to the first slot never used.
    size_t seen = 0;
    while (seen < all.size() && all.at(seen).Phase() != WorkerPhase::kUnused) ++seen;
    _exit(static_cast<int>(seen));
  };
  pool.AddGeneration(1, 3, Clock::now());
  for (int slot = 0; slot < 3; ++slot) ASSERT_FALSE(pool.Spawn(*pool.FindWaiting(slot, 1), config, done));
  std::vector<int> indexes;
  for (const WorkerRecord& w : pool.all()) indexes.push_back(w.stats_index);
  EXPECT_EQ(indexes, (std::vector<int>{0, 1, 2}));
  std::vector<int> seen;
  auto deadline = Clock::now() + 5s;
  while (seen.size() < 3 && Clock::now() < deadline) {
    pool.Reap([&](WorkerRecord& w, pid_t, const ExitStatus& exit, uint32_t) {
      seen.push_back(exit.code);
      pool.Apply(w, ExitDecision{}, Clock::now());
    }, [](pid_t, const ExitStatus&) {});
    std::this_thread::sleep_for(1ms);
  }
  ASSERT_EQ(seen.size(), 3u);
  for (int n : seen) EXPECT_GE(n, 1) << "a worker's scan ends at the first slot never used";
  // Freed slots go out again before a new one is touched.
  pool.AddGeneration(2, 1, Clock::now());
  auto forever = [](WorkerStats&, const StatsTable&) {
    for (;;) pause();
  };
  ASSERT_FALSE(pool.Spawn(*pool.FindWaiting(0, 2), config, forever));
  EXPECT_LE(pool.all().at(0).stats_index, 2);
  EXPECT_LE(blocks() * 512, 4096) << "one page holds the slots used";
  pool.KillAllAndReap();
}

// ---- Generations ---------------------------------------------------------------------

TEST(Generations, CanaryIsPromotedOrAbandonedAndIdsNeverRepeat) {
  Generations g;
  Config c = Config::Defaults();
  EXPECT_EQ(g.serving().id, 0u);
  Generation& first = g.StartCanary(c, 2, Clock::now());
  EXPECT_EQ(first.id, 1u);
  EXPECT_TRUE(g.PromoteCanary()) << "the first generation to serve";
  EXPECT_EQ(g.serving().id, 1u);
  EXPECT_FALSE(g.has_canary());
  c.workers = 3;
  g.StartCanary(c, 3, Clock::now());
  EXPECT_EQ(&g.Of(2), g.canary());
  EXPECT_EQ(&g.Of(1), &g.serving());
  EXPECT_EQ(&g.Of(0), &g.serving()) << "a retiring generation's settings are the serving one's";
  EXPECT_EQ(g.ConfigsInForce().size(), 2u);
  Generation abandoned = g.AbandonCanary();
  EXPECT_EQ(abandoned.id, 2u);
  EXPECT_EQ(g.serving().id, 1u);
  EXPECT_EQ(g.StartCanary(c, 3, Clock::now()).id, 3u);
  EXPECT_FALSE(g.PromoteCanary());
}

}  // namespace
}  // namespace rot13d::supervisor
