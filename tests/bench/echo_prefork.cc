// Benchmark reference: the limit of rot13d's process model. A parent binds once
// and forks N workers that accept on the shared listener with EPOLLEXCLUSIVE
// and echo bytes unchanged from a non-blocking epoll loop; no transform, no
// counters, no timers, no balancing. It is as tight as an echo of this model
// can be: TCP_NODELAY on every accepted socket, reads until the socket is
// empty (at most kReadsPerWakeup per connection and wakeup, for fairness),
// a 64 KiB buffer, and a pending tail allocated only while a send falls
// short. Loopback only.
//
//   bench_echo_prefork --listen 127.0.0.1:PORT --workers N
//
// Prints "listening on 127.0.0.1:PORT" (the port bound when PORT is 0) once
// every worker runs; SIGTERM or SIGINT stops it, workers die with the parent.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "tests/bench/bench_server_util.h"

namespace {

constexpr uint64_t kListenerTag = ~uint64_t{0};
constexpr size_t kBufferSize = 64 * 1024;
constexpr int kReadsPerWakeup = 16;

struct Conn {
  int fd = -1;
  std::unique_ptr<uint8_t[]> pending;  // unsent tail of a partial write
  size_t begin = 0, end = 0;
};

void CloseConn(std::vector<std::unique_ptr<Conn>>& conns, int fd) {
  close(fd);
  conns[static_cast<size_t>(fd)].reset();
}

// Sends [data, data+n); keeps what the socket does not take. False on a fatal error.
bool SendOrKeep(Conn& c, const uint8_t* data, size_t n) {
  size_t sent = 0;
  while (sent < n) {
    ssize_t w = send(c.fd, data + sent, n - sent, MSG_NOSIGNAL);
    if (w > 0) {
      sent += static_cast<size_t>(w);
    } else if (w < 0 && errno == EINTR) {
      continue;
    } else if (w < 0 && errno == EAGAIN) {
      break;
    } else {
      return false;
    }
  }
  if (sent < n) {
    size_t rest = n - sent;
    if (data != c.pending.get() + c.begin) c.pending.reset(new uint8_t[rest]);
    std::memmove(c.pending.get(), data + sent, rest);
    c.begin = 0;
    c.end = rest;
  } else {
    c.pending.reset();
    c.begin = c.end = 0;
  }
  return true;
}

void SetInterest(int epfd, Conn& c) {
  epoll_event ev{};
  ev.events = c.end > c.begin ? EPOLLOUT : (EPOLLIN | EPOLLRDHUP);
  ev.data.u64 = static_cast<uint64_t>(c.fd);
  epoll_ctl(epfd, EPOLL_CTL_MOD, c.fd, &ev);
}

[[noreturn]] void WorkerLoop(int listener) {
  int epfd = epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLEXCLUSIVE;
  ev.data.u64 = kListenerTag;
  if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, listener, &ev) != 0) _exit(1);
  std::vector<std::unique_ptr<Conn>> conns;
  auto buffer = std::make_unique<uint8_t[]>(kBufferSize);
  epoll_event events[256];
  for (;;) {
    int n = epoll_wait(epfd, events, 256, -1);
    for (int i = 0; i < n; ++i) {
      uint64_t tag = events[i].data.u64;
      if (tag == kListenerTag) {
        for (int k = 0; k < 64; ++k) {
          int fd = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (fd < 0) break;
          if (static_cast<size_t>(fd) >= conns.size()) conns.resize(static_cast<size_t>(fd) + 1);
          int one = 1;
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          auto c = std::make_unique<Conn>();
          c->fd = fd;
          epoll_event cev{};
          cev.events = EPOLLIN | EPOLLRDHUP;
          cev.data.u64 = static_cast<uint64_t>(fd);
          if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &cev) != 0) {
            close(fd);
            continue;
          }
          conns[static_cast<size_t>(fd)] = std::move(c);
        }
        continue;
      }
      if (tag >= conns.size() || !conns[tag]) continue;
      Conn& c = *conns[tag];
      int fd = c.fd;
      if (c.end > c.begin) {
        if (!SendOrKeep(c, c.pending.get() + c.begin, c.end - c.begin)) {
          CloseConn(conns, fd);
          continue;
        }
        if (c.end == c.begin) SetInterest(epfd, c);  // flushed: read again
        continue;
      }
      bool closed = false;
      for (int reads = 0; reads < kReadsPerWakeup && c.end == c.begin; ++reads) {
        ssize_t r = recv(fd, buffer.get(), kBufferSize, 0);
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) break;
        if (r <= 0 || !SendOrKeep(c, buffer.get(), static_cast<size_t>(r))) {
          closed = true;  // EOF (everything read was sent), an error, or a failed send
          break;
        }
        if (static_cast<size_t>(r) < kBufferSize) break;  // the socket is empty
      }
      if (closed) {
        CloseConn(conns, fd);
        continue;
      }
      if (c.end > c.begin) SetInterest(epfd, c);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  bench::ServerArgs args = bench::ParseServerArgs(argc, argv, "bench_echo_prefork");
  bench::RaiseFdLimit();
  int listener = bench::Listen(args.address, /*nonblocking=*/true);
  return bench::RunPrefork(listener, args.workers, WorkerLoop);
}
