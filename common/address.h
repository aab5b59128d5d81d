// Listen addresses: "0.0.0.0:1067", "[::1]:1067", "unix:/run/rot13d/rot13d.sock".
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"

namespace rot13d {

// Whether a listener expects a PROXY protocol header on each connection, and which versions.
enum class ProxyProtocol : uint8_t { kOff, kV1, kV2, kAny };
// "off", "v1", "v2", "any".
const char* ProxyProtocolName(ProxyProtocol p);

struct ListenAddress {
  enum class Kind { kIpv4, kIpv6, kUnix };
  Kind kind = Kind::kIpv4;
  std::string host;  // numeric IPv4 or IPv6 text, without brackets
  uint16_t port = 0;
  std::string path;  // for kUnix
  // A setting of what is served there, not of the socket: a reload that
  // changes it keeps the socket (its name is ToString, without it).
  ProxyProtocol proxy_protocol = ProxyProtocol::kOff;

  // The canonical text form of the socket's address; the same socket, the same text.
  std::string ToString() const;
  bool operator==(const ListenAddress&) const = default;
};

// A network in CIDR notation: "127.0.0.0/8", "::1/128" (a bare address is one host).
struct Cidr {
  int family = AF_INET;  // AF_INET or AF_INET6
  uint8_t bytes[16] = {};
  int prefix = 0;

  // Canonical: "10.0.0.0/8", "2001:db8::/32".
  std::string ToString() const;
  // Whether the address is in this network. An IPv4-mapped IPv6 address
  // (::ffff:a.b.c.d) counts as its IPv4 address.
  bool Contains(const sockaddr* address) const;
  bool operator==(const Cidr&) const = default;
};

// Parses "ADDRESS/PREFIX" or a bare address; bits set past the prefix are an error.
Result<Cidr> ParseCidr(std::string_view text);

// Parses one address. Hosts must be numeric: a daemon that resolves names at
// start-up depends on DNS being up, which is exactly what it must not assume.
Result<ListenAddress> ParseListenAddress(std::string_view text);

// Fills a sockaddr for the address; returns its length.
socklen_t ToSockaddr(const ListenAddress& address, sockaddr_storage* out);

// Describes a bound socket address (getsockname output) in the same text form.
std::string DescribeSockaddr(const sockaddr* sa, socklen_t len);

}  // namespace rot13d
