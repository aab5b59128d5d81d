// The per-connection engine: read, transform in place, write back; keep bytes only on partial writes.
#pragma once

#include <sys/types.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>

#include "common/rot13.h"
#include "common/stats.h"

namespace rot13d::daemon {

// What the event loop should want from the socket next.
struct Interest {
  bool read = false;
  bool write = false;
  bool operator==(const Interest&) const = default;
};

enum class Step { kKeep, kClose };

// The I/O is a template parameter so tests and fuzzers can drive the engine
// with scripted reads and partial writes. Io needs:
//   ssize_t Recv(uint8_t* buf, size_t n);        // like recv(2): >0, 0 = EOF, -1 + errno
//   ssize_t Send(const uint8_t* buf, size_t n);  // like send(2)
//
// Memory: while the client keeps up, nothing is held between events; the
// shared scratch buffer is used and written straight back. Only the tail of a
// partial write is kept (at most one read's worth, <= buffer_size), and while
// anything is kept the engine stops reading, so a client that never reads
// costs at most buffer_size bytes here and its own kernel buffers.
class ConnectionEngine {
 public:
  // Handles readability: reads, transforms and answers until the socket is
  // empty, a send falls short, or kReadsPerEvent reads were made (so one busy
  // connection cannot starve the others in the same wakeup). scratch.size()
  // is the per-read limit (buffer_size). Adds what it sent to *bytes_done
  // and, if given, what it read to *bytes_read.
  static constexpr int kReadsPerEvent = 16;
  template <typename Io>
  Step OnReadable(Io& io, std::span<uint8_t> scratch, uint64_t* bytes_done, uint64_t* bytes_read = nullptr);
  // Answers bytes the caller read itself (those that followed a PROXY
  // header in its read), as if the engine had read them: transforms `data`
  // in place and sends it, keeping what the socket would not take.
  template <typename Io>
  Step OnData(Io& io, std::span<uint8_t> data, uint64_t* bytes_done) {
    Rot13InPlace(data.data(), data.size());
    return Answer(io, data, bytes_done);
  }
  // Handles writability: flushes pending bytes.
  template <typename Io>
  Step OnWritable(Io& io, uint64_t* bytes_done);

  Interest interest() const { return {!peer_closed_ && pending_size() == 0, pending_size() > 0}; }
  size_t pending_size() const { return pending_end_ - pending_begin_; }
  bool peer_closed() const { return peer_closed_; }
  // True when the pending buffer is allocated (for memory accounting in tests).
  bool holds_buffer() const { return pending_ != nullptr; }
  // Why the last kClose was returned.
  CloseReason close_reason() const { return reason_; }

 private:
  template <typename Io>
  Step Flush(Io& io, uint64_t* bytes_done);
  // Sends one read's transformed bytes; keeps what the socket would not take.
  template <typename Io>
  Step Answer(Io& io, std::span<const uint8_t> data, uint64_t* bytes_done);
  // After any event: closes once the peer is done and we owe nothing.
  Step Settle() {
    if (!peer_closed_ || pending_size() != 0) return Step::kKeep;
    reason_ = CloseReason::kClientEof;
    return Step::kClose;
  }
  // A failed recv or send: the client reset it (or is gone), or something else.
  Step Failed(int error) {
    reason_ = error == ECONNRESET || error == EPIPE ? CloseReason::kReset : CloseReason::kError;
    return Step::kClose;
  }

  std::unique_ptr<uint8_t[]> pending_;
  size_t pending_begin_ = 0;
  size_t pending_end_ = 0;
  bool peer_closed_ = false;
  CloseReason reason_ = CloseReason::kError;
};

template <typename Io>
Step ConnectionEngine::OnReadable(Io& io, std::span<uint8_t> scratch, uint64_t* bytes_done, uint64_t* bytes_read) {
  for (int reads = 0; reads < kReadsPerEvent && interest().read; ++reads) {
    ssize_t n = io.Recv(scratch.data(), scratch.size());
    if (n == 0) {
      peer_closed_ = true;
      break;
    }
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return Step::kKeep;
      return Failed(errno);  // ECONNRESET and friends: nothing more can be delivered
    }
    size_t got = static_cast<size_t>(n);
    if (bytes_read) *bytes_read += got;
    Rot13InPlace(scratch.data(), got);
    if (Step step = Answer(io, scratch.first(got), bytes_done); step != Step::kKeep) return step;
    // A short read emptied the socket's queue: asking again would only
    // return EAGAIN. Level-triggered epoll reports whatever arrives later.
    if (got < scratch.size()) break;
  }
  return Settle();
}

template <typename Io>
Step ConnectionEngine::Answer(Io& io, std::span<const uint8_t> data, uint64_t* bytes_done) {
  size_t sent = 0;
  while (sent < data.size()) {
    ssize_t w = io.Send(data.data() + sent, data.size() - sent);
    if (w > 0) {
      sent += static_cast<size_t>(w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      *bytes_done += sent;
      return Failed(errno);
    }
    break;  // socket buffer full: keep the rest
  }
  *bytes_done += sent;
  if (sent < data.size()) {
    size_t rest = data.size() - sent;
    pending_ = std::make_unique_for_overwrite<uint8_t[]>(rest);
    std::memcpy(pending_.get(), data.data() + sent, rest);
    pending_begin_ = 0;
    pending_end_ = rest;
  }
  return Step::kKeep;
}

template <typename Io>
Step ConnectionEngine::OnWritable(Io& io, uint64_t* bytes_done) {
  if (pending_size() == 0) return Settle();
  return Flush(io, bytes_done);
}

template <typename Io>
Step ConnectionEngine::Flush(Io& io, uint64_t* bytes_done) {
  while (pending_size() > 0) {
    ssize_t w = io.Send(pending_.get() + pending_begin_, pending_size());
    if (w > 0) {
      pending_begin_ += static_cast<size_t>(w);
      *bytes_done += static_cast<uint64_t>(w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return Failed(errno);
    return Step::kKeep;
  }
  pending_.reset();  // an idle connection holds no buffer
  pending_begin_ = pending_end_ = 0;
  return Settle();
}

}  // namespace rot13d::daemon
