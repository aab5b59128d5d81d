// The connection engine driven by scripted I/O: partial writes, back-pressure, EOF, errors, and a random model.
#include "daemon/connection.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <deque>
#include <ostream>
#include <random>
#include <string>
#include <vector>

namespace rot13d::daemon {
namespace {

// rot13 written independently of the code under test.
std::string Rot13(std::string s) {
  for (char& c : s) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>('a' + (c - 'a' + 13) % 26);
    else if (c >= 'A' && c <= 'Z') c = static_cast<char>('A' + (c - 'A' + 13) % 26);
  }
  return s;
}

// A socket whose recv and send results follow a script.
//  - Recv: takes the next scripted entry: data (delivered up to n bytes at a
//    time, like a stream socket), EOF, or an errno. With no script left it
//    fails with EAGAIN: nothing more has arrived.
//  - Send: takes the next scripted entry: accept at most k bytes, or an errno.
//    With no script left it accepts everything: a client that keeps up.
class ScriptedIo {
 public:
  void Data(std::string s) { recv_.push_back({RecvKind::kData, std::move(s), 0}); }
  void Eof() { recv_.push_back({RecvKind::kEof, {}, 0}); }
  void RecvError(int e) { recv_.push_back({RecvKind::kError, {}, e}); }
  void Accept(size_t k) { send_.push_back({k, 0}); }
  void SendError(int e) { send_.push_back({0, e}); }

  ssize_t Recv(uint8_t* buf, size_t n) {
    ++recv_calls;
    last_recv_size = n;
    if (recv_.empty()) {
      errno = EAGAIN;
      return -1;
    }
    RecvEntry& r = recv_.front();
    switch (r.kind) {
      case RecvKind::kEof:
        recv_.pop_front();
        return 0;
      case RecvKind::kError: {
        int e = r.error;
        recv_.pop_front();
        errno = e;
        return -1;
      }
      case RecvKind::kData: {
        size_t k = std::min(n, r.data.size());
        std::copy_n(r.data.begin(), k, buf);
        r.data.erase(0, k);
        if (r.data.empty()) recv_.pop_front();
        return static_cast<ssize_t>(k);
      }
    }
    return -1;
  }

  ssize_t Send(const uint8_t* buf, size_t n) {
    ++send_calls;
    EXPECT_GT(n, 0u) << "a zero-length send is a wasted system call";
    size_t k = n;
    if (!send_.empty()) {
      SendEntry s = send_.front();
      send_.pop_front();
      if (s.error != 0) {
        errno = s.error;
        return -1;
      }
      k = std::min(n, s.accept);
    }
    out.append(reinterpret_cast<const char*>(buf), k);
    return static_cast<ssize_t>(k);
  }

  std::string out;  // every byte the peer has been sent
  int recv_calls = 0;
  int send_calls = 0;
  size_t last_recv_size = 0;

 private:
  enum class RecvKind { kData, kEof, kError };
  struct RecvEntry {
    RecvKind kind;
    std::string data;
    int error;
  };
  struct SendEntry {
    size_t accept;
    int error;
  };
  std::deque<RecvEntry> recv_;
  std::deque<SendEntry> send_;
};

constexpr Interest kReading{.read = true, .write = false};
constexpr Interest kWriting{.read = false, .write = true};
constexpr Interest kNothing{.read = false, .write = false};

class ConnectionEngineTest : public ::testing::Test {
 protected:
  std::span<uint8_t> scratch() { return {scratch_.data(), scratch_.size()}; }

  ConnectionEngine engine;
  ScriptedIo io;
  uint64_t bytes = 0;
  std::vector<uint8_t> scratch_ = std::vector<uint8_t>(64);
};

TEST_F(ConnectionEngineTest, StartsReadingAndHoldsNothing) {
  EXPECT_EQ(engine.interest(), kReading);
  EXPECT_EQ(engine.pending_size(), 0u);
  EXPECT_FALSE(engine.holds_buffer());
  EXPECT_FALSE(engine.peer_closed());
}

TEST_F(ConnectionEngineTest, FullWriteSendsEverythingTransformed) {
  io.Data("Hello, World! 123");
  EXPECT_EQ(engine.OnReadable(io, scratch(), &bytes), Step::kKeep);
  EXPECT_EQ(io.out, "Uryyb, Jbeyq! 123");
  EXPECT_EQ(bytes, 17u);
  EXPECT_EQ(engine.pending_size(), 0u);
  EXPECT_FALSE(engine.holds_buffer());  // a client that keeps up costs no buffer
  EXPECT_EQ(engine.interest(), kReading);
}

// bytes_done is a running total the caller owns: the engine adds to it.
TEST_F(ConnectionEngineTest, BytesDoneAccumulates) {
  bytes = 1000;
  io.Data("abc");
  engine.OnReadable(io, scratch(), &bytes);
  EXPECT_EQ(bytes, 1003u);
}

// What was read is counted apart from what was sent (a partial write keeps the rest).
TEST_F(ConnectionEngineTest, BytesReadAreCountedApart) {
  uint64_t read = 0;
  io.Data("abcdef");
  io.Accept(4);
  io.SendError(EAGAIN);
  engine.OnReadable(io, scratch(), &bytes, &read);
  EXPECT_EQ(read, 6u);
  EXPECT_EQ(bytes, 4u);
}

// Why a connection ends, for the metrics and the connection log.
TEST_F(ConnectionEngineTest, CloseReasonSaysHowItEnded) {
  io.Eof();
  EXPECT_EQ(engine.OnReadable(io, scratch(), &bytes), Step::kClose);
  EXPECT_EQ(engine.close_reason(), CloseReason::kClientEof);

  ConnectionEngine reset;
  ScriptedIo io2;
  io2.RecvError(ECONNRESET);
  EXPECT_EQ(reset.OnReadable(io2, scratch(), &bytes), Step::kClose);
  EXPECT_EQ(reset.close_reason(), CloseReason::kReset);

  ConnectionEngine gone;
  ScriptedIo io3;
  io3.Data("abc");
  io3.SendError(EPIPE);
  EXPECT_EQ(gone.OnReadable(io3, scratch(), &bytes), Step::kClose);
  EXPECT_EQ(gone.close_reason(), CloseReason::kReset);

  ConnectionEngine broken;
  ScriptedIo io4;
  io4.RecvError(EIO);
  EXPECT_EQ(broken.OnReadable(io4, scratch(), &bytes), Step::kClose);
  EXPECT_EQ(broken.close_reason(), CloseReason::kError);
}

// One readiness event reads at most one scratch buffer: the per-read limit.
TEST_F(ConnectionEngineTest, ReadsScratchSizedPiecesUntilAShortRead) {
  std::string input(150, 'a');
  io.Data(input);
  EXPECT_EQ(engine.OnReadable(io, scratch(), &bytes), Step::kKeep);
  EXPECT_EQ(io.last_recv_size, scratch_.size()) << "each read is at most the scratch size";
  // 64 + 64 + 22: the short read means the socket is empty; no fourth recv
  // just to hear EAGAIN.
  EXPECT_EQ(io.recv_calls, 3);
  EXPECT_EQ(io.send_calls, 3);
  EXPECT_EQ(io.out, std::string(150, 'n'));
  EXPECT_EQ(bytes, 150u);
}

TEST_F(ConnectionEngineTest, AFullReadIsFollowedByAnotherUntilEagain) {
  io.Data(std::string(128, 'a'));
  EXPECT_EQ(engine.OnReadable(io, scratch(), &bytes), Step::kKeep);
  EXPECT_EQ(io.recv_calls, 3) << "two full reads, then the EAGAIN that says the socket is empty";
  EXPECT_EQ(io.out, std::string(128, 'n'));
}

// One busy connection gets at most kReadsPerEvent reads per wakeup; the rest
// waits for the next one, after the worker has served the others.
TEST_F(ConnectionEngineTest, ReadsAtMostTheBudgetPerEvent) {
  const size_t budget = ConnectionEngine::kReadsPerEvent;
  io.Data(std::string(budget * scratch_.size() + 10, 'a'));
  EXPECT_EQ(engine.OnReadable(io, scratch(), &bytes), Step::kKeep);
  EXPECT_EQ(static_cast<size_t>(io.recv_calls), budget);
  EXPECT_EQ(bytes, budget * scratch_.size());
  EXPECT_EQ(engine.interest(), kReading) << "nothing is held: the rest is still in the socket";
  EXPECT_EQ(engine.OnReadable(io, scratch(), &bytes), Step::kKeep);
  EXPECT_EQ(io.out, std::string(budget * scratch_.size() + 10, 'n'));
}

TEST_F(ConnectionEngineTest, EofAfterSeveralReadsInOneEventCloses) {
  io.Data(std::string(100, 'a'));
  io.Eof();
  // 64, then 36 (short: stop); the EOF is the next event's.
  EXPECT_EQ(engine.OnReadable(io, scratch(), &bytes), Step::kKeep);
  EXPECT_EQ(engine.OnReadable(io, scratch(), &bytes), Step::kClose);
  EXPECT_EQ(engine.close_reason(), CloseReason::kClientEof);
  EXPECT_EQ(io.out, std::string(100, 'n'));
}

TEST_F(ConnectionEngineTest, EofRightAfterFullReadsClosesInTheSameEvent) {
  io.Data(std::string(128, 'a'));
  io.Eof();
  EXPECT_EQ(engine.OnReadable(io, scratch(), &bytes), Step::kClose);
  EXPECT_EQ(engine.close_reason(), CloseReason::kClientEof);
  EXPECT_EQ(io.out, std::string(128, 'n'));
}

TEST_F(ConnectionEngineTest, AShortSendStopsReadingInTheSameEvent) {
  io.Data(std::string(200, 'a'));
  io.Accept(64);  // the first read goes out whole
  io.Accept(10);  // the second only in part:
  io.SendError(EAGAIN);  // the socket buffer is full
  EXPECT_EQ(engine.OnReadable(io, scratch(), &bytes), Step::kKeep);
  EXPECT_EQ(io.recv_calls, 2) << "no read while bytes are owed";
  EXPECT_EQ(engine.pending_size(), 54u);
  EXPECT_EQ(engine.interest(), kWriting);
  EXPECT_EQ(bytes, 74u);
}

TEST_F(ConnectionEngineTest, PartialWriteKeepsTheRestAndStopsReading) {
  io.Data("abcdefghij");
  io.Data("more input that must wait");
  io.Accept(4);
  io.SendError(EAGAIN);  // socket buffer full
  EXPECT_EQ(engine.OnReadable(io, scratch(), &bytes), Step::kKeep);
  EXPECT_EQ(io.out, "nopq");
  EXPECT_EQ(bytes, 4u);
  EXPECT_EQ(engine.pending_size(), 6u);
  EXPECT_TRUE(engine.holds_buffer());
  EXPECT_EQ(engine.interest(), kWriting);

  // Back-pressure: while bytes are owed, a readable event reads nothing.
  int recvs = io.recv_calls;
  EXPECT_EQ(engine.OnReadable(io, scratch(), &bytes), Step::kKeep);
  EXPECT_EQ(io.recv_calls, recvs);
  EXPECT_EQ(engine.pending_size(), 6u);

  io.Accept(3);
  io.SendError(EAGAIN);
  EXPECT_EQ(engine.OnWritable(io, &bytes), Step::kKeep);
  EXPECT_EQ(io.out, "nopqrst");
  EXPECT_EQ(bytes, 7u);
  EXPECT_EQ(engine.pending_size(), 3u);
  EXPECT_TRUE(engine.holds_buffer());
  EXPECT_EQ(engine.interest(), kWriting);

  EXPECT_EQ(engine.OnWritable(io, &bytes), Step::kKeep);  // accepts everything now
  EXPECT_EQ(io.out, "nopqrstuvw");
  EXPECT_EQ(bytes, 10u);
  EXPECT_EQ(engine.pending_size(), 0u);
  EXPECT_FALSE(engine.holds_buffer());  // released once flushed
  EXPECT_EQ(engine.interest(), kReading);

  // Reading resumes where it stopped.
  EXPECT_EQ(engine.OnReadable(io, scratch(), &bytes), Step::kKeep);
  EXPECT_EQ(io.out, Rot13("abcdefghijmore input that must wait"));
}

TEST_F(ConnectionEngineTest, NothingAcceptedKeepsTheWholeRead) {
  io.Data("xyz");
  io.SendError(EWOULDBLOCK);
  EXPECT_EQ(engine.OnReadable(io, scratch(), &bytes), Step::kKeep);
  EXPECT_EQ(io.out, "");
  EXPECT_EQ(bytes, 0u);
  EXPECT_EQ(engine.pending_size(), 3u);
  EXPECT_EQ(engine.OnWritable(io, &bytes), Step::kKeep);
  EXPECT_EQ(io.out, "klm");
  EXPECT_EQ(bytes, 3u);
}

// The worker shares one scratch buffer among all its connections, so what is
// kept must be a copy: the next connection's read overwrites the scratch.
TEST_F(ConnectionEngineTest, PendingBytesSurviveScratchReuse) {
  io.Data("Secret");
  io.Accept(2);
  io.SendError(EAGAIN);
  engine.OnReadable(io, scratch(), &bytes);
  std::fill(scratch_.begin(), scratch_.end(), uint8_t{'#'});
  engine.OnWritable(io, &bytes);
  EXPECT_EQ(io.out, "Frperg");
}

TEST_F(ConnectionEngineTest, SeveralShortWritesInOneEvent) {
  io.Data("abcdef");
  io.Accept(1);
  io.Accept(2);
  io.Accept(3);
  EXPECT_EQ(engine.OnReadable(io, scratch(), &bytes), Step::kKeep);
  EXPECT_EQ(io.out, "nopqrs");
  EXPECT_EQ(bytes, 6u);
  EXPECT_FALSE(engine.holds_buffer());
}

TEST_F(ConnectionEngineTest, InterruptedSendIsRetried) {
  io.Data("abc");
  io.SendError(EINTR);
  EXPECT_EQ(engine.OnReadable(io, scratch(), &bytes), Step::kKeep);
  EXPECT_EQ(io.out, "nop");
  EXPECT_EQ(engine.pending_size(), 0u);

  io.Data("def");
  io.SendError(EAGAIN);
  engine.OnReadable(io, scratch(), &bytes);
  io.SendError(EINTR);
  EXPECT_EQ(engine.OnWritable(io, &bytes), Step::kKeep);
  EXPECT_EQ(io.out, "nopqrs");
  EXPECT_EQ(engine.pending_size(), 0u);
}

TEST_F(ConnectionEngineTest, EofWithNothingPendingCloses) {
  io.Eof();
  EXPECT_EQ(engine.OnReadable(io, scratch(), &bytes), Step::kClose);
  EXPECT_TRUE(engine.peer_closed());
  EXPECT_EQ(io.out, "");
  EXPECT_EQ(engine.interest(), kNothing);
}

TEST_F(ConnectionEngineTest, EofAfterDataClosesOnceAllIsDelivered) {
  io.Data("abc");
  io.Eof();
  EXPECT_EQ(engine.OnReadable(io, scratch(), &bytes), Step::kKeep);
  EXPECT_EQ(engine.OnReadable(io, scratch(), &bytes), Step::kClose);
  EXPECT_EQ(io.out, "nop");
}

// A client that half-closes (shutdown(SHUT_WR)) still gets every byte back:
// the EOF waits behind the pending bytes, and closing waits for the flush.
TEST_F(ConnectionEngineTest, EofBehindPendingBytesClosesOnlyAfterFlush) {
  io.Data("abcdef");
  io.Eof();
  io.Accept(2);
  io.SendError(EAGAIN);
  EXPECT_EQ(engine.OnReadable(io, scratch(), &bytes), Step::kKeep);
  EXPECT_EQ(engine.pending_size(), 4u);
  EXPECT_EQ(engine.OnReadable(io, scratch(), &bytes), Step::kKeep);  // not read: bytes owed
  EXPECT_FALSE(engine.peer_closed());
  io.Accept(1);
  io.SendError(EAGAIN);
  EXPECT_EQ(engine.OnWritable(io, &bytes), Step::kKeep);
  EXPECT_EQ(engine.OnWritable(io, &bytes), Step::kKeep);  // flushed; the EOF is still unread
  EXPECT_EQ(io.out, "nopqrs");
  EXPECT_EQ(engine.interest(), kReading);
  EXPECT_EQ(engine.OnReadable(io, scratch(), &bytes), Step::kClose);
  EXPECT_EQ(bytes, 6u);
}

TEST_F(ConnectionEngineTest, ResetOnRecvCloses) {
  io.RecvError(ECONNRESET);
  EXPECT_EQ(engine.OnReadable(io, scratch(), &bytes), Step::kClose);
  EXPECT_EQ(io.send_calls, 0);
}

TEST_F(ConnectionEngineTest, WouldBlockOrInterruptedRecvKeeps) {
  for (int e : {EAGAIN, EWOULDBLOCK, EINTR}) {
    io.RecvError(e);
    EXPECT_EQ(engine.OnReadable(io, scratch(), &bytes), Step::kKeep) << e;
  }
  EXPECT_EQ(io.send_calls, 0);
  EXPECT_EQ(bytes, 0u);
  EXPECT_EQ(engine.interest(), kReading);
  EXPECT_FALSE(engine.holds_buffer());
}

TEST_F(ConnectionEngineTest, BrokenPipeOnSendCloses) {
  io.Data("abc");
  io.SendError(EPIPE);
  EXPECT_EQ(engine.OnReadable(io, scratch(), &bytes), Step::kClose);
  EXPECT_EQ(bytes, 0u);
}

TEST_F(ConnectionEngineTest, ErrorWhileFlushingCloses) {
  for (int e : {EPIPE, ECONNRESET}) {
    ConnectionEngine c;
    ScriptedIo s;
    uint64_t n = 0;
    s.Data("abcdef");
    s.Accept(1);
    s.SendError(EAGAIN);
    ASSERT_EQ(c.OnReadable(s, scratch(), &n), Step::kKeep);
    s.Accept(2);
    s.SendError(e);
    EXPECT_EQ(c.OnWritable(s, &n), Step::kClose) << e;
    EXPECT_EQ(n, 3u) << "bytes sent before the error were delivered";
  }
}

// bytes_done counts what reached the socket, also when the connection then
// fails: OnWritable does so, and OnReadable should agree.
TEST_F(ConnectionEngineTest, BytesSentBeforeASendErrorAreCounted) {
  io.Data("abcdefgh");
  io.Accept(5);
  io.SendError(EPIPE);
  EXPECT_EQ(engine.OnReadable(io, scratch(), &bytes), Step::kClose);
  EXPECT_EQ(io.out, "nopqr");
  EXPECT_EQ(bytes, 5u);
}

TEST_F(ConnectionEngineTest, WritableWithNothingPendingDoesNothing) {
  EXPECT_EQ(engine.OnWritable(io, &bytes), Step::kKeep);
  EXPECT_EQ(io.send_calls, 0);
  EXPECT_EQ(engine.interest(), kReading);
}

// ---- Random model ---------------------------------------------------------------

// A peer that sends `input` in random pieces and reads back in random amounts,
// with EAGAIN and EINTR sprinkled in; the EOF comes after the last byte.
class RandomIo {
 public:
  RandomIo(const std::string& input, const ConnectionEngine* engine, uint32_t seed)
      : input_(input), engine_(engine), rng_(seed) {}

  ssize_t Recv(uint8_t* buf, size_t n) {
    // The engine must not read while it owes bytes: that is the memory bound.
    EXPECT_EQ(engine_->pending_size(), 0u);
    ++recv_calls;
    int roll = Roll(100);
    if (roll < 10) return Fail(EAGAIN);
    if (roll < 13) return Fail(EINTR);
    if (pos_ == input_.size()) return 0;
    // Pieces from one byte up to twice the buffer, as the kernel would coalesce them.
    size_t piece = 1 + static_cast<size_t>(Roll(static_cast<int>(2 * n)));
    size_t k = std::min({n, piece, input_.size() - pos_});
    std::copy_n(input_.data() + pos_, k, buf);
    pos_ += k;
    return static_cast<ssize_t>(k);
  }

  ssize_t Send(const uint8_t* buf, size_t n) {
    EXPECT_GT(n, 0u);
    int roll = Roll(100);
    if (roll < 15) return Fail(EAGAIN);
    if (roll < 18) return Fail(EINTR);
    size_t k = roll < 60 ? n : 1 + static_cast<size_t>(Roll(static_cast<int>(n)));
    out.append(reinterpret_cast<const char*>(buf), k);
    return static_cast<ssize_t>(k);
  }

  std::string out;
  uint64_t recv_calls = 0;

 private:
  int Roll(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }
  ssize_t Fail(int e) {
    errno = e;
    return -1;
  }

  const std::string& input_;
  const ConnectionEngine* engine_;
  std::mt19937 rng_;
  size_t pos_ = 0;
};

struct ModelCase {
  size_t scratch_size;
  size_t input_size;
  uint32_t seed;
};

void PrintTo(const ModelCase& c, std::ostream* os) {
  *os << "{scratch " << c.scratch_size << ", input " << c.input_size << ", seed " << c.seed << "}";
}

class ConnectionEngineModel : public ::testing::TestWithParam<ModelCase> {};

// Drives the engine like the worker's level-triggered loop: writable first,
// then readable if it still wants to read. Whatever the schedule, the peer
// gets exactly rot13 of what it sent, and the engine never holds more than one read.
TEST_P(ConnectionEngineModel, OutputIsExactlyRot13OfInput) {
  const ModelCase& mc = GetParam();
  std::mt19937 rng(mc.seed);
  std::string input(mc.input_size, '\0');
  for (char& c : input) c = static_cast<char>(std::uniform_int_distribution<int>(0, 255)(rng));

  ConnectionEngine engine;
  RandomIo io(input, &engine, mc.seed * 7919u + 1);
  std::vector<uint8_t> scratch(mc.scratch_size);
  uint64_t bytes = 0;
  size_t max_pending = 0;
  Step step = Step::kKeep;
  // Generous: every event makes progress with probability well above 1/2.
  const uint64_t max_events = 50 * (mc.input_size + 100);
  uint64_t events = 0;
  for (; step == Step::kKeep && events < max_events; ++events) {
    Interest want = engine.interest();
    ASSERT_FALSE(want.read && want.write) << "reading while owing bytes";
    ASSERT_TRUE(want.read || want.write) << "a kept connection that wants nothing would hang";
    if (want.write) step = engine.OnWritable(io, &bytes);
    if (step == Step::kKeep && engine.interest().read) {
      step = engine.OnReadable(io, {scratch.data(), scratch.size()}, &bytes);
    }
    // The worker reuses the scratch for other connections between events.
    std::fill(scratch.begin(), scratch.end(), uint8_t{0xA5});
    max_pending = std::max(max_pending, engine.pending_size());
    ASSERT_LE(engine.pending_size(), scratch.size());
    ASSERT_EQ(engine.holds_buffer(), engine.pending_size() > 0) << "a buffer held while idle";
    ASSERT_EQ(bytes, io.out.size()) << "bytes_done must count what the peer received";
  }
  ASSERT_EQ(step, Step::kClose) << "no close after " << events << " events";
  EXPECT_TRUE(engine.peer_closed());
  EXPECT_EQ(io.out.size(), input.size());
  EXPECT_TRUE(io.out == Rot13(input)) << "output differs from rot13(input)";  // not printed: megabytes
  EXPECT_EQ(bytes, input.size());
  EXPECT_GT(max_pending, 0u) << "the schedule never exercised a partial write";
}

INSTANTIATE_TEST_SUITE_P(Schedules, ConnectionEngineModel,
                         ::testing::Values(ModelCase{1, 64 << 10, 1}, ModelCase{3, 128 << 10, 2},
                                           ModelCase{1024, 1 << 20, 3}, ModelCase{4096, 3 << 20, 4},
                                           ModelCase{65536, 4 << 20, 5}, ModelCase{65536, 4 << 20, 6},
                                           ModelCase{1000, 1 << 20, 7}),
                         [](const ::testing::TestParamInfo<ModelCase>& param_info) {
                           return "Scratch" + std::to_string(param_info.param.scratch_size) + "Seed" +
                                  std::to_string(param_info.param.seed);
                         });

}  // namespace
}  // namespace rot13d::daemon
