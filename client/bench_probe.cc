// rot13-bench's probe: one round trip before any load, so that an absent or wrong server is
// named at once, with the exit status of its kind.
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <string>

#include "client/bench.h"
#include "common/rot13.h"

namespace rot13d::client {
namespace {

// Letters of both cases and every byte value, so any wrong transform shows.
std::string ProbeMessage() {
  std::string message = "Hello, rot13-bench! ";
  for (int i = 0; i < 256; ++i) message.push_back(static_cast<char>(i));
  return message;
}

// Why an answer differs from the expected one, in the user's terms.
std::string DescribeWrongAnswer(const std::string& sent, const std::string& got, Expect expect) {
  std::string rot13 = sent;
  Rot13InPlace(reinterpret_cast<uint8_t*>(rot13.data()), rot13.size());
  if (expect == Expect::kRot13 && got == sent) {
    return "the server echoes bytes unchanged instead of applying rot13 (for an echo server, use --expect echo)";
  }
  if (expect == Expect::kEcho && got == rot13) {
    return "the server applies rot13 where an echo was expected (drop --expect echo)";
  }
  const std::string& want = expect == Expect::kRot13 ? rot13 : sent;
  size_t i = 0;
  while (i < got.size() && got[i] == want[i]) ++i;
  return "wrong answer at byte " + std::to_string(i) + ": expected " + FormatByte(static_cast<uint8_t>(want[i])) +
         ", got " + FormatByte(static_cast<uint8_t>(got[i]));
}

// What came back for the message, until `want` bytes or more came, the server
// closed, an error, or the deadline.
struct Exchange {
  std::string got;
  bool closed = false;
  FailureKind failure = FailureKind::kNone;
  std::string why;
};

Exchange RoundTrip(BorrowedFd fd, const std::string& message, size_t want, LoadClock::time_point deadline) {
  Exchange x;
  auto fail = [&](FailureKind kind, const char* what, int err) {
    x.failure = kind;
    x.why = err == 0 ? what : std::string(what) + ": " + std::strerror(err);
    return x;
  };
  size_t sent = 0;
  while (x.got.size() < want) {
    pollfd p{fd.get(), static_cast<short>(POLLIN | (sent < message.size() ? POLLOUT : 0)), 0};
    int n = poll(&p, 1, PollMs(deadline));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(FailureKind::kOther, "poll", errno);
    if (n == 0) return fail(FailureKind::kTimeout, "", 0);
    if (sent < message.size() && (p.revents & POLLOUT)) {
      ssize_t k = send(fd.get(), message.data() + sent, message.size() - sent, MSG_NOSIGNAL);
      if (k > 0) sent += static_cast<size_t>(k);
      else if (int err = errno; err != EAGAIN && err != EINTR) return fail(ClassifyErrno(err), "send", err);
    }
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      char buf[1024];
      ssize_t k = recv(fd.get(), buf, sizeof buf, 0);
      if (k > 0) {
        x.got.append(buf, static_cast<size_t>(k));
      } else if (k == 0) {
        x.closed = true;
        return x;
      } else if (int err = errno; err != EAGAIN && err != EINTR) {
        return fail(ClassifyErrno(err), "receive", err);
      }
    }
  }
  return x;
}

}  // namespace

int PollMs(LoadClock::time_point deadline) {
  auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - LoadClock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(left, 0, 60'000));
}

ProbeResult Probe(BorrowedFd fd, const SocketAddress& address, std::chrono::nanoseconds timeout, Expect expect) {
  const std::string message = ProbeMessage();
  std::string want = message;
  if (expect == Expect::kRot13) Rot13InPlace(reinterpret_cast<uint8_t*>(want.data()), want.size());
  Exchange x = RoundTrip(fd, message, want.size(), LoadClock::now() + timeout);
  const std::string& got = x.got;

  ProbeResult r;
  auto fail = [&](FailureKind kind, std::string why, std::optional<MismatchReport> mismatch = {}) {
    r.failure = kind;
    r.message = "probe of " + address.ToString() + ": " + std::move(why);
    r.mismatch = mismatch;
    return r;
  };
  if (x.failure == FailureKind::kTimeout) {
    return fail(x.failure, "no complete answer within " + std::to_string(timeout.count() / 1'000'000) + " ms (" +
                               std::to_string(got.size()) + " of " + std::to_string(want.size()) + " bytes)");
  }
  if (x.failure != FailureKind::kNone) return fail(x.failure, x.why);
  if (x.closed) {
    return fail(FailureKind::kMismatch,
                "the server closed the connection after " + std::to_string(got.size()) + " of " +
                    std::to_string(want.size()) + " bytes",
                MismatchReport{0, 0, got.size(), static_cast<uint8_t>(want[got.size()]), -1});
  }
  if (got.size() > want.size()) {
    return fail(FailureKind::kMismatch,
                "the server sent " + std::to_string(got.size()) + " bytes for " + std::to_string(want.size()),
                MismatchReport{0, 0, want.size(), -1, static_cast<uint8_t>(got[want.size()])});
  }
  if (got != want) {
    size_t i = 0;
    while (got[i] == want[i]) ++i;
    return fail(FailureKind::kMismatch, DescribeWrongAnswer(message, got, expect),
                MismatchReport{0, 0, i, static_cast<uint8_t>(want[i]), static_cast<uint8_t>(got[i])});
  }
  return r;
}

}  // namespace rot13d::client
