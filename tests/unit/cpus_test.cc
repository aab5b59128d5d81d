// The cgroup v2 cpu.max parser and the "auto" worker count.
#include "supervisor/cpus.h"

#include <sched.h>

#include <gtest/gtest.h>

namespace rot13d::supervisor {
namespace {

TEST(ParseCpuMax, UnlimitedIsNone) {
  EXPECT_FALSE(ParseCpuMax("max 100000").has_value());
  EXPECT_FALSE(ParseCpuMax("max 100000\n").has_value());
}

TEST(ParseCpuMax, QuotaOverPeriod) {
  auto two = ParseCpuMax("200000 100000");
  ASSERT_TRUE(two.has_value());
  EXPECT_DOUBLE_EQ(*two, 2.0);

  auto one_and_a_half = ParseCpuMax("150000 100000\n");  // as read from the file
  ASSERT_TRUE(one_and_a_half.has_value());
  EXPECT_DOUBLE_EQ(*one_and_a_half, 1.5);

  auto tenth = ParseCpuMax("10000 100000");
  ASSERT_TRUE(tenth.has_value());
  EXPECT_DOUBLE_EQ(*tenth, 0.1);
}

TEST(ParseCpuMax, GarbageIsNone) {
  for (const char* text : {"", "\n", "200000", "abc 100000", "200000 abc", "200000x 100000",
                           "200000 0", "200000 -100000", "0 100000", "-200000 100000", "max"}) {
    EXPECT_FALSE(ParseCpuMax(text).has_value()) << '"' << text << '"';
  }
}

// The cgroup quota can only lower the count, and there is always at least one worker.
TEST(AutoWorkerCount, BetweenOneAndTheAffinityCount) {
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(sched_getaffinity(0, sizeof set, &set), 0);
  int affinity = CPU_COUNT(&set);
  int n = AutoWorkerCount();
  EXPECT_GE(n, 1);
  EXPECT_LE(n, affinity);
}

// Narrowing the affinity mask to one CPU must narrow the count with it.
TEST(AutoWorkerCount, FollowsANarrowedAffinityMask) {
  cpu_set_t saved;
  CPU_ZERO(&saved);
  ASSERT_EQ(sched_getaffinity(0, sizeof saved, &saved), 0);
  int first = -1;
  for (int i = 0; i < CPU_SETSIZE; ++i) {
    if (CPU_ISSET(i, &saved)) {
      first = i;
      break;
    }
  }
  ASSERT_GE(first, 0);
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(first, &one);
  ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
  int n = AutoWorkerCount();
  ASSERT_EQ(sched_setaffinity(0, sizeof saved, &saved), 0);
  EXPECT_EQ(n, 1);
}

}  // namespace
}  // namespace rot13d::supervisor
