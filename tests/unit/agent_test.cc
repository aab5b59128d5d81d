// The agent-check answer (supervisor/agent.h) for each state of the instance.
#include "supervisor/agent.h"

#include <gtest/gtest.h>

namespace rot13d::supervisor {
namespace {

AgentInputs Serving(unsigned workers, uint64_t open, uint64_t max_connections) {
  return {.stopping = false, .accepting_workers = workers, .open_connections = open,
          .capacity = workers * max_connections};
}

TEST(AgentAnswerTest, IdleInstanceOffersItsFullWeightAndCancelsAnEarlierDrain) {
  EXPECT_EQ(AgentAnswer(Serving(4, 0, 10000)), "up ready 100%\n");
}

TEST(AgentAnswerTest, WeightIsTheShareOfCapacityStillFreeRoundedDown) {
  EXPECT_EQ(AgentAnswer(Serving(2, 5, 10)), "up ready 75%\n");    // 15 of 20 free
  EXPECT_EQ(AgentAnswer(Serving(1, 1, 3)), "up ready 66%\n");     // 2 of 3 free
  EXPECT_EQ(AgentAnswer(Serving(4, 1, 10000)), "up ready 99%\n"); // not 100% once anyone is served
}

TEST(AgentAnswerTest, FullInstanceSaysOnePercentNotZeroWhichWouldMeanDrain) {
  EXPECT_EQ(AgentAnswer(Serving(2, 20, 10)), "up ready 1%\n");
  EXPECT_EQ(AgentAnswer(Serving(2, 19, 10)), "up ready 5%\n");
  EXPECT_EQ(AgentAnswer(Serving(100, 999999, 10000)), "up ready 1%\n");  // 0.0001% free
  // More open than the accepting workers allow (counters read one at a time): still 1%.
  EXPECT_EQ(AgentAnswer(Serving(1, 12, 10)), "up ready 1%\n");
}

TEST(AgentAnswerTest, NoWorkerAcceptingIsDown) {
  EXPECT_EQ(AgentAnswer({}), "down#no worker accepting\n");  // starting
  EXPECT_EQ(AgentAnswer({.accepting_workers = 0, .open_connections = 3, .capacity = 0}),
            "down#no worker accepting\n");  // all dead or draining
}

TEST(AgentAnswerTest, StoppingDrainsWhateverTheWorkersDo) {
  AgentInputs in = Serving(4, 10, 100);
  in.stopping = true;
  EXPECT_EQ(AgentAnswer(in), "drain\n");
  EXPECT_EQ(AgentAnswer({.stopping = true}), "drain\n");  // and once they are all gone
}

TEST(AgentAnswerTest, EveryAnswerIsOneShortLine) {
  for (const AgentInputs& in : {AgentInputs{}, AgentInputs{.stopping = true}, Serving(1, 0, 1), Serving(3, 2, 7)}) {
    std::string a = AgentAnswer(in);
    EXPECT_LT(a.size(), 32u) << a;
    EXPECT_EQ(a.find('\n'), a.size() - 1) << a;
  }
}

}  // namespace
}  // namespace rot13d::supervisor
