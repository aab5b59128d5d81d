// Small misbehaving servers for the client tests: each connection runs a handler on its
// own thread, on loopback, until the test ends.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/blackbox/harness.h"

namespace rot13d::clienttest {

class TestServer {
 public:
  // handler(fd, index, stopping) owns nothing: the server closes fd after it
  // returns. index counts connections from 0; stopping turns true when the
  // test ends, and blocked reads and writes are then woken by a shutdown.
  using Handler = std::function<void(int fd, size_t index, const std::atomic<bool>& stopping)>;

  // Listens on 127.0.0.1, an ephemeral port, with this accept backlog.
  explicit TestServer(Handler handler, int backlog = 128);
  // A listening socket that never accepts: its queue is filled, so further
  // connection attempts get no answer at all (SYNs are dropped).
  static TestServer FullBacklog();
  ~TestServer();
  TestServer(TestServer&&) = delete;

  uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  size_t accepted() const { return accepted_.load(); }

  // Handlers.
  // Echoes every byte, and half-closes after the client's EOF (a pure echo server).
  static void Echo(int fd, size_t index, const std::atomic<bool>& stopping);
  // rot13 like rot13d, but the byte at stream offset `corrupt_at` of every
  // connection comes back with its low bit flipped.
  static Handler Rot13Corrupting(uint64_t corrupt_at);
  // Reads the client's input up to its EOF, answers (rot13) only the first
  // `answered` bytes of it, and closes: a server that drops part of its answer.
  static Handler AnswersOnly(uint64_t answered);
  // Answers (rot13) the first `answered` bytes, then half-closes while it reads
  // and discards the rest up to the client's EOF (so that its close sends no
  // RST): a server that ends before the client's input is all sent.
  static Handler HalfClosesAfter(uint64_t answered);
  // Reads until the client has sent something, then resets the connection.
  static void ResetAfterFirstBytes(int fd, size_t index, const std::atomic<bool>& stopping);
  // Reads nothing and answers nothing until the test ends.
  static void Silent(int fd, size_t index, const std::atomic<bool>& stopping);
  // The first connection gets `first`, every later one `rest`: a server that
  // passes rot13-bench's probe and then misbehaves.
  static Handler FirstThen(Handler first, Handler rest);

 private:
  struct FullBacklogTag {};
  explicit TestServer(FullBacklogTag);
  void AcceptLoop();

  Handler handler_;
  blackbox::Fd listener_;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<size_t> accepted_{0};
  std::mutex mu_;
  std::vector<int> open_fds_;  // guarded by mu_: shut down at the end to wake handlers
  std::vector<std::thread> threads_;  // guarded by mu_
  std::vector<blackbox::Fd> fillers_;  // FullBacklog: the connections that fill the queue
  std::thread acceptor_;
};

}  // namespace rot13d::clienttest
