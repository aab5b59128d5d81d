#include "tests/clients/test_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace rot13d::clienttest {
namespace {

blackbox::Fd Listen(int backlog, uint16_t* port) {
  blackbox::Fd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sin;
  if (!fd.valid() || bind(fd.get(), reinterpret_cast<sockaddr*>(&sin), len) != 0 || listen(fd.get(), backlog) != 0 ||
      getsockname(fd.get(), reinterpret_cast<sockaddr*>(&sin), &len) != 0) {
    ADD_FAILURE() << "test server: " << std::strerror(errno);
    return {};
  }
  *port = ntohs(sin.sin_port);
  return fd;
}

bool WriteAll(int fd, const char* data, size_t n) {
  while (n > 0) {
    ssize_t k = send(fd, data, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    data += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}

// Reads and answers each piece with transform applied, until the client's EOF,
// then half-closes: the protocol's end of a connection.
void Serve(int fd, const std::function<void(uint64_t offset, char* data, size_t n)>& transform) {
  char buf[64 * 1024];
  uint64_t offset = 0;
  while (true) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    transform(offset, buf, static_cast<size_t>(n));
    if (!WriteAll(fd, buf, static_cast<size_t>(n))) return;
    offset += static_cast<uint64_t>(n);
  }
  shutdown(fd, SHUT_WR);
}

}  // namespace

TestServer::TestServer(Handler handler, int backlog) : handler_(std::move(handler)) {
  listener_ = Listen(backlog, &port_);
  acceptor_ = std::thread([this] { AcceptLoop(); });
}

TestServer::TestServer(FullBacklogTag) {
  listener_ = Listen(0, &port_);
  // With a backlog of 0 the queue holds one connection; a few more make sure.
  // Their handshakes complete or not; either way the queue stays full, since
  // nobody accepts.
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sin.sin_port = htons(port_);
  for (int i = 0; i < 3; ++i) {
    blackbox::Fd c(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    connect(c.get(), reinterpret_cast<sockaddr*>(&sin), sizeof sin);
    fillers_.push_back(std::move(c));
  }
  // Give the first handshake time to finish: the queue is full only once it has.
  blackbox::WaitFor([&] {
    pollfd p{fillers_[0].get(), POLLOUT, 0};
    return poll(&p, 1, 0) == 1;
  }, std::chrono::milliseconds(2000));
}

TestServer TestServer::FullBacklog() { return TestServer(FullBacklogTag{}); }

TestServer::~TestServer() {
  stopping_ = true;
  if (acceptor_.joinable()) acceptor_.join();
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (int fd : open_fds_) shutdown(fd, SHUT_RDWR);
    threads.swap(threads_);
  }
  for (std::thread& t : threads) t.join();
}

void TestServer::AcceptLoop() {
  while (!stopping_) {
    pollfd p{listener_.get(), POLLIN, 0};
    if (poll(&p, 1, 20) <= 0) continue;
    int fd = accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    size_t index = accepted_++;
    std::lock_guard<std::mutex> lock(mu_);
    open_fds_.push_back(fd);
    threads_.emplace_back([this, fd, index] {
      handler_(fd, index, stopping_);
      std::lock_guard<std::mutex> inner(mu_);
      std::erase(open_fds_, fd);
      close(fd);
    });
  }
}

void TestServer::Echo(int fd, size_t, const std::atomic<bool>&) {
  Serve(fd, [](uint64_t, char*, size_t) {});
}

TestServer::Handler TestServer::Rot13Corrupting(uint64_t corrupt_at) {
  return [corrupt_at](int fd, size_t, const std::atomic<bool>&) {
    Serve(fd, [corrupt_at](uint64_t offset, char* data, size_t n) {
      std::string rotated = blackbox::Rot13(std::string_view(data, n));
      std::memcpy(data, rotated.data(), n);
      if (corrupt_at >= offset && corrupt_at < offset + n) data[corrupt_at - offset] ^= 1;
    });
  };
}

TestServer::Handler TestServer::AnswersOnly(uint64_t answered) {
  return [answered](int fd, size_t, const std::atomic<bool>&) {
    std::string input;
    char buf[64 * 1024];
    while (true) {
      ssize_t n = recv(fd, buf, sizeof buf, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      input.append(buf, static_cast<size_t>(n));
    }
    std::string answer = blackbox::Rot13(std::string_view(input).substr(0, answered));
    WriteAll(fd, answer.data(), answer.size());
  };
}

TestServer::Handler TestServer::HalfClosesAfter(uint64_t answered) {
  return [answered](int fd, size_t, const std::atomic<bool>& stopping) {
    char buf[64 * 1024];
    uint64_t done = 0;
    while (!stopping) {
      size_t want = done < answered ? static_cast<size_t>(std::min<uint64_t>(answered - done, sizeof buf)) : sizeof buf;
      ssize_t n = recv(fd, buf, want, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      if (done < answered) {
        std::string answer = blackbox::Rot13(std::string_view(buf, static_cast<size_t>(n)));
        if (!WriteAll(fd, answer.data(), answer.size())) break;
        done += static_cast<uint64_t>(n);
        if (done == answered) shutdown(fd, SHUT_WR);
      }
    }
  };
}

void TestServer::ResetAfterFirstBytes(int fd, size_t, const std::atomic<bool>&) {
  char buf[256];
  while (recv(fd, buf, sizeof buf, 0) < 0 && errno == EINTR) {
  }
  // Linger with a zero timeout: close() sends RST instead of FIN (socket(7)).
  linger l{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
}

void TestServer::Silent(int, size_t, const std::atomic<bool>& stopping) {
  while (!stopping) std::this_thread::sleep_for(std::chrono::milliseconds(10));
}

TestServer::Handler TestServer::FirstThen(Handler first, Handler rest) {
  return [first = std::move(first), rest = std::move(rest)](int fd, size_t index, const std::atomic<bool>& stopping) {
    (index == 0 ? first : rest)(fd, index, stopping);
  };
}

}  // namespace rot13d::clienttest
