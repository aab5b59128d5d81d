// Listen addresses: "0.0.0.0:1067", "[::1]:1067", "unix:/run/rot13d/rot13d.sock".
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"

namespace rot13d {

struct ListenAddress {
  enum class Kind { kIpv4, kIpv6, kUnix };
  Kind kind = Kind::kIpv4;
  std::string host;  // numeric IPv4 or IPv6 text, without brackets
  uint16_t port = 0;
  std::string path;  // for kUnix

  // The canonical text form; equal addresses have equal text.
  std::string ToString() const;
  bool operator==(const ListenAddress&) const = default;
};

// Parses one address. Hosts must be numeric: a daemon that resolves names at
// start-up depends on DNS being up, which is exactly what it must not assume.
Result<ListenAddress> ParseListenAddress(std::string_view text);

// Fills a sockaddr for the address; returns its length.
socklen_t ToSockaddr(const ListenAddress& address, sockaddr_storage* out);

// Describes a bound socket address (getsockname output) in the same text form.
std::string DescribeSockaddr(const sockaddr* sa, socklen_t len);

}  // namespace rot13d
