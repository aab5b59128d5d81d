// Errors as values: Error carries errno and a message; Result<T> is a value or an Error.
#pragma once

#include <cstring>
#include <sstream>
#include <string>
#include <utility>
#include <variant>

namespace rot13d {

class Error {
 public:
  Error() = default;
  explicit Error(std::string message, int errno_value = 0)
      : message_(std::move(message)), errno_(errno_value) {}

  int errno_value() const { return errno_; }
  const std::string& message() const { return message_; }
  // The message with ": strerror" appended when an errno is attached.
  std::string ToString() const {
    if (errno_ == 0) return message_;
    return message_ + ": " + std::strerror(errno_);
  }

 private:
  std::string message_;
  int errno_ = 0;
};

// A small stream helper so call sites read like: return Err() << "bind " << addr;
class ErrorBuilder {
 public:
  explicit ErrorBuilder(int errno_value = 0) : errno_(errno_value) {}
  template <typename T>
  ErrorBuilder& operator<<(const T& v) {
    out_ << v;
    return *this;
  }
  operator Error() const { return Error(out_.str(), errno_); }  // NOLINT: implicit by design

 private:
  std::ostringstream out_;
  int errno_;
};

inline ErrorBuilder Err() { return ErrorBuilder(0); }
inline ErrorBuilder ErrnoErr() { return ErrorBuilder(errno); }

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}          // NOLINT: implicit by design
  Result(Error error) : v_(std::move(error)) {}      // NOLINT
  Result(const ErrorBuilder& error) : v_(Error(error)) {}  // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

struct Ok {};
using Status = Result<Ok>;
inline Status OkStatus() { return Ok{}; }

}  // namespace rot13d
