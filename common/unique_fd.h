// Owning and borrowed file descriptor types: every fd the program opens lives in a UniqueFd.
#pragma once

#include <unistd.h>

#include <cerrno>
#include <utility>

namespace rot13d {

// A non-owning view of a descriptor, for parameters. Never closes.
class BorrowedFd {
 public:
  constexpr BorrowedFd() = default;
  constexpr explicit BorrowedFd(int fd) : fd_(fd) {}
  constexpr int get() const { return fd_; }
  constexpr bool valid() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// Move-only owner of one descriptor. No implicit conversion to int; close() is
// never retried on EINTR (on Linux the fd is released even when close fails).
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }
  BorrowedFd borrow() const { return BorrowedFd(fd_); }

  // Gives up ownership without closing.
  int release() { return std::exchange(fd_, -1); }

  void reset(int fd = -1) {
    int old = std::exchange(fd_, fd);
    if (old >= 0) {
      int saved = errno;  // a destructor must not clobber the caller's errno
      ::close(old);
      errno = saved;
    }
  }

 private:
  int fd_ = -1;
};

}  // namespace rot13d
