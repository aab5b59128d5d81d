#include "client/relay.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "client/args.h"

namespace rot13d::client {
namespace {

using Clock = std::chrono::steady_clock;

// One direction's buffer: bytes read but not yet written on.
struct Buffer {
  explicit Buffer(size_t size) : data(size) {}
  std::vector<char> data;
  size_t begin = 0;
  size_t end = 0;

  bool empty() const { return begin == end; }
  size_t pending() const { return end - begin; }
  void Consumed(size_t n) {
    begin += n;
    if (begin == end) begin = end = 0;
  }
};

bool Retry(int err) { return err == EAGAIN || err == EWOULDBLOCK || err == EINTR; }

RelayResult Fail(FailureKind kind, std::string message) {
  RelayResult r;
  r.failure = kind;
  r.message = std::move(message);
  return r;
}

RelayResult SocketFailure(const char* what, int err) {
  FailureKind kind = ClassifyErrno(err);
  if (kind == FailureKind::kReset) return Fail(kind, "connection reset by the server");
  return Fail(kind, std::string(what) + ": " + std::strerror(err));
}

class Relayer {
 public:
  Relayer(BorrowedFd socket, const RelayOptions& options)
      : socket_(socket), options_(options), up_(options.buffer_size), down_(options.buffer_size) {}

  RelayResult Run() {
    last_activity_ = Clock::now();
    while (true) {
      if (input_eof_ && up_.empty() && !write_shut_) {
        // The server answers what it has and then closes: keep reading until it does.
        shutdown(socket_.get(), SHUT_WR);
        write_shut_ = true;
      }
      if (socket_eof_ && down_.empty()) return OnServerClosed();
      Watch w = WhatToWatch();
      int ready = poll(w.fds, static_cast<nfds_t>(w.n), PollTimeoutMs());
      if (ready < 0) {
        if (errno == EINTR) continue;
        return Fail(FailureKind::kOther, std::string("poll: ") + std::strerror(errno));
      }
      if (ready == 0) {
        if (IdleExpired()) {
          return Fail(FailureKind::kTimeout, "timed out: nothing sent or received for " + FormatDuration(options_.idle_timeout));
        }
        continue;
      }
      if (RelayResult r = OnReady(w); Ends(r)) return r;
    }
  }

 private:
  // The descriptors to poll now, and where each one is in fds (-1: not polled).
  struct Watch {
    pollfd fds[3]{};
    int n = 0;
    int in_at = -1, sock_at = -1, out_at = -1;
    bool Ready(int at) const { return at >= 0 && fds[at].revents != 0; }
  };

  // Each buffer is filled only once it is empty: one read in flight per direction.
  Watch WhatToWatch() const {
    Watch w;
    if (!input_eof_ && up_.empty()) {
      w.in_at = w.n;
      w.fds[w.n++] = {options_.input.get(), POLLIN, 0};
    }
    short sock_events = static_cast<short>((!socket_eof_ && down_.empty() ? POLLIN : 0) |
                                           (!up_.empty() ? POLLOUT : 0));
    if (sock_events != 0) {
      w.sock_at = w.n;
      w.fds[w.n++] = {socket_.get(), sock_events, 0};
    }
    if (!down_.empty()) {
      w.out_at = w.n;
      w.fds[w.n++] = {options_.output.get(), POLLOUT, 0};
    }
    return w;
  }

  // The server answers each byte with one byte and closes only after the
  // client's half-close: anything less is input it never answered, which
  // both tools count as a mismatch (too few bytes), exit status 7.
  RelayResult OnServerClosed() const {
    auto n = [](uint64_t v) { return std::to_string(v); };
    if (!input_eof_ || !up_.empty()) {
      return Fail(FailureKind::kMismatch, "the server closed the connection before all input was sent (" +
                                                 n(sent_) + " bytes sent, " + n(received_) + " answered)");
    }
    if (received_ < sent_) {
      return Fail(FailureKind::kMismatch,
                  "the server closed the connection after answering " + n(received_) + " of " + n(sent_) + " bytes");
    }
    return {};
  }

  static bool Ends(const RelayResult& r) { return r.failure != FailureKind::kNone || r.output_closed; }

  // Moves what the ready descriptors allow; a result that Ends() the relay, or none.
  RelayResult OnReady(const Watch& w) {
    if (w.Ready(w.in_at)) {
      if (auto r = ReadInput(); Ends(r)) return r;
      if (!up_.empty()) {
        if (auto r = Send(); Ends(r)) return r;
      }
    }
    if (w.Ready(w.sock_at)) {
      if (!up_.empty()) {
        if (auto r = Send(); Ends(r)) return r;
      }
      if (!socket_eof_ && down_.empty()) {
        if (auto r = Receive(); Ends(r)) return r;
        if (!down_.empty()) {
          if (auto r = WriteOutput(); Ends(r)) return r;
        }
      }
    }
    if (w.Ready(w.out_at) && !down_.empty()) {
      if (auto r = WriteOutput(); Ends(r)) return r;
    }
    return {};
  }

  int PollTimeoutMs() const {
    if (options_.idle_timeout.count() == 0) return -1;
    auto left = std::chrono::ceil<std::chrono::milliseconds>(last_activity_ + options_.idle_timeout - Clock::now());
    return static_cast<int>(std::clamp<int64_t>(left.count(), 0, 60'000));
  }

  bool IdleExpired() const {
    return options_.idle_timeout.count() != 0 && Clock::now() >= last_activity_ + options_.idle_timeout;
  }

  // Standard input may be a terminal, pipe, file or /dev/null; POLLHUP or
  // POLLNVAL are answered by read(), which then reports EOF or the error.
  RelayResult ReadInput() {
    ssize_t n = read(options_.input.get(), up_.data.data(), up_.data.size());
    if (n > 0) {
      up_.end = static_cast<size_t>(n);
    } else if (n == 0) {
      input_eof_ = true;
    } else if (errno == EBADF) {
      input_eof_ = true;  // no standard input at all: nothing to send
    } else if (!Retry(errno)) {
      return Fail(FailureKind::kOther, std::string("read standard input: ") + std::strerror(errno));
    }
    return {};
  }

  RelayResult Send() {
    while (!up_.empty()) {
      ssize_t n = send(socket_.get(), up_.data.data() + up_.begin, up_.pending(), MSG_NOSIGNAL);
      if (n > 0) {
        up_.Consumed(static_cast<size_t>(n));
        sent_ += static_cast<uint64_t>(n);
        last_activity_ = Clock::now();
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && Retry(errno)) {
        break;
      } else {
        return SocketFailure("send", errno);
      }
    }
    return {};
  }

  RelayResult Receive() {
    ssize_t n = recv(socket_.get(), down_.data.data(), down_.data.size(), 0);
    if (n > 0) {
      down_.end = static_cast<size_t>(n);
      received_ += static_cast<uint64_t>(n);
      last_activity_ = Clock::now();
    } else if (n == 0) {
      socket_eof_ = true;
    } else if (!Retry(errno)) {
      return SocketFailure("receive", errno);
    }
    return {};
  }

  RelayResult WriteOutput() {
    while (!down_.empty()) {
      ssize_t n = write(options_.output.get(), down_.data.data() + down_.begin, down_.pending());
      if (n > 0) {
        down_.Consumed(static_cast<size_t>(n));
        // A slow reader downstream is not an idle connection.
        last_activity_ = Clock::now();
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && Retry(errno)) {
        break;  // standard output is non-blocking and full: poll for room
      } else if (n < 0 && errno == EPIPE) {
        RelayResult r;
        r.output_closed = true;
        return r;
      } else {
        return Fail(FailureKind::kOther, std::string("write standard output: ") + std::strerror(errno));
      }
    }
    return {};
  }

  BorrowedFd socket_;
  const RelayOptions& options_;
  Buffer up_;
  Buffer down_;
  bool input_eof_ = false;
  bool socket_eof_ = false;
  bool write_shut_ = false;
  uint64_t sent_ = 0;
  uint64_t received_ = 0;
  Clock::time_point last_activity_;
};

}  // namespace

RelayResult Relay(BorrowedFd socket, const RelayOptions& options) { return Relayer(socket, options).Run(); }

}  // namespace rot13d::client
