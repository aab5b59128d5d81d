// Volume: 1 GiB through one connection, and 1,000 concurrent 1 MiB streams;
// every byte that comes back is checked against the rot13 of what was sent.
#include "tests/fault/fault_test.h"

namespace rot13d::fault {
namespace {

using StreamFaultTest = FaultTest;

TEST_F(StreamFaultTest, OneGibibyteThroughOneConnection) {
  constexpr uint64_t kBytes = 1ull << 30;
  Figures fig;
  ASSERT_NO_FATAL_FAILURE(Start("workers = 1\n", 1));
  LoadOptions o = LoadAt(address());  // one message: sent while its answer is read
  o.connections = 1;
  o.min_bytes = o.max_bytes = kBytes;
  o.sessions_per_connection = 1;
  o.timeout = 30s;
  LoadEngine load(o);
  auto t0 = Clock::now();
  ASSERT_TRUE(load.Start().ok());
  bool done = load.WaitDone(kSanitized ? 600s : 240s);
  const double seconds = Seconds(Clock::now() - t0);
  load.Stop();
  LoadStats s = load.Stats();
  fig.Add("bytes", kBytes)
      .Add("seconds", seconds)
      .Add("mib_per_s", static_cast<double>(s.bytes_verified) / (1 << 20) / seconds)
      .AddLoad("", s);
  EXPECT_TRUE(done) << "not finished after " << seconds << " s: " << s.Summary();
  EXPECT_EQ(s.sessions_completed, 1u) << s.Summary() << Describe(load.Failures());
  EXPECT_EQ(s.bytes_verified, kBytes);
  EXPECT_EQ(s.wrong_answers(), 0u);
  EXPECT_EQ(s.total_failures(), 0u) << Describe(load.Failures());
}

TEST_F(StreamFaultTest, ThousandConcurrentOneMebibyteStreams) {
  constexpr int kStreams = 1000;
  constexpr uint64_t kBytes = 1ull << 20;
  Figures fig;
  ASSERT_NO_FATAL_FAILURE(Start("workers = 2\n", 2));
  LoadOptions o = LoadAt(address());
  o.connections = kStreams;
  o.threads = 2;
  o.min_bytes = o.max_bytes = kBytes;
  o.sessions_per_connection = 1;
  o.timeout = 60s;
  // Bounded client buffers keep the kernel memory of 1,000 streams modest.
  o.buffers = {64 * 1024, 64 * 1024};
  LoadEngine load(o);
  auto t0 = Clock::now();
  ASSERT_TRUE(load.Start().ok());
  bool done = load.WaitDone(kSanitized ? 600s : 240s);
  const double seconds = Seconds(Clock::now() - t0);
  load.Stop();
  LoadStats s = load.Stats();
  fig.Add("streams", kStreams)
      .Add("bytes_each", kBytes)
      .Add("seconds", seconds)
      .Add("mib_per_s", static_cast<double>(s.bytes_verified) / (1 << 20) / seconds)
      .AddLoad("", s);
  EXPECT_TRUE(done) << "not finished after " << seconds << " s: " << s.Summary();
  EXPECT_EQ(s.sessions_completed, static_cast<uint64_t>(kStreams)) << s.Summary() << Describe(load.Failures());
  EXPECT_EQ(s.bytes_verified, kStreams * kBytes);
  EXPECT_EQ(s.wrong_answers(), 0u);
  EXPECT_EQ(s.total_failures(), 0u) << Describe(load.Failures());
}

}  // namespace
}  // namespace rot13d::fault
