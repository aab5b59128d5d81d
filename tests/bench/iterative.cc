// Benchmark reference: the textbook rot13 server. One process, blocking I/O,
// one client at a time: accept, read/rot13/write until EOF, close, next.
//
//   bench_iterative --listen 127.0.0.1:PORT
//
// Prints "listening on 127.0.0.1:PORT"; SIGTERM or SIGINT stops it.
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>

#include "common/rot13.h"
#include "tests/bench/bench_server_util.h"

namespace {

bool WriteAll(int fd, const uint8_t* data, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, data, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    data += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  bench::ServerArgs args = bench::ParseServerArgs(argc, argv, "bench_iterative");
  int listener = bench::Listen(args.address, /*nonblocking=*/false);
  signal(SIGPIPE, SIG_IGN);
  bench::AnnounceListening(listener);
  static uint8_t buf[64 * 1024];
  for (;;) {
    int fd = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    for (;;) {
      ssize_t r = recv(fd, buf, sizeof buf, 0);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      for (ssize_t i = 0; i < r; ++i) buf[i] = rot13d::Rot13Byte(buf[i]);
      if (!WriteAll(fd, buf, static_cast<size_t>(r))) break;
    }
    close(fd);
  }
}
