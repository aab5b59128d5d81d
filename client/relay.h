// The rot13 client's data path: standard input to the socket and the socket to standard
// output at the same time, half-closing at the end of input, until the server closes.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>

#include "client/endpoint.h"
#include "common/unique_fd.h"

namespace rot13d::client {

struct RelayOptions {
  BorrowedFd input{0};
  BorrowedFd output{1};
  // Give up when nothing was sent or received for this long; zero means never.
  std::chrono::nanoseconds idle_timeout{0};
  size_t buffer_size = 256 * 1024;
};

struct RelayResult {
  FailureKind failure = FailureKind::kNone;
  std::string message;  // what went wrong; empty on success
  // The reader of standard output went away (EPIPE). Not a failure: a filter
  // in a pipeline that ends early, as in `rot13 < big | head`, just stops.
  bool output_closed = false;
};

// Runs until the server closes and everything it sent is written out, or until
// a failure. A server that closes before all the input was sent, or before it
// answered every byte sent (one byte back for each), fails with kMismatch. The socket must be connected and non-blocking; the input and
// output are used as they are (blocking or not, pipes, files or terminals) and
// only read or written once poll(2) says they are ready, so their file status
// flags, shared with other processes, are never changed.
RelayResult Relay(BorrowedFd socket, const RelayOptions& options);

}  // namespace rot13d::client
