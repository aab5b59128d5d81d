#include "common/address.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <charconv>
#include <cstring>

namespace rot13d {
namespace {

Result<uint16_t> ParsePort(std::string_view text, std::string_view whole) {
  unsigned value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || value > 65535) {
    return Err() << "invalid port in \"" << whole << "\" (expected 0..65535)";
  }
  return static_cast<uint16_t>(value);
}

}  // namespace

std::string ListenAddress::ToString() const {
  switch (kind) {
    case Kind::kIpv4: return host + ":" + std::to_string(port);
    case Kind::kIpv6: return "[" + host + "]:" + std::to_string(port);
    case Kind::kUnix: return "unix:" + path;
  }
  return {};
}

Result<ListenAddress> ParseListenAddress(std::string_view text) {
  ListenAddress a;
  if (text.starts_with("unix:")) {
    a.kind = ListenAddress::Kind::kUnix;
    a.path = std::string(text.substr(5));
    if (a.path.empty() || a.path[0] != '/') {
      return Err() << "unix socket path in \"" << text << "\" must be absolute";
    }
    if (a.path.size() >= sizeof(sockaddr_un::sun_path)) {
      return Err() << "unix socket path in \"" << text << "\" is longer than "
                   << sizeof(sockaddr_un::sun_path) - 1 << " bytes";
    }
    if (a.path.find('\0') != std::string::npos) {
      return Err() << "unix socket path contains a NUL byte";
    }
    return a;
  }
  if (text.starts_with("[")) {
    size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return Err() << "invalid address \"" << text << "\" (expected [IPv6]:PORT)";
    }
    a.kind = ListenAddress::Kind::kIpv6;
    a.host = std::string(text.substr(1, close - 1));
    in6_addr tmp{};
    if (inet_pton(AF_INET6, a.host.c_str(), &tmp) != 1) {
      return Err() << "invalid IPv6 address in \"" << text << "\"";
    }
    char canon[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, &tmp, canon, sizeof canon);
    a.host = canon;
    auto port = ParsePort(text.substr(close + 2), text);
    if (!port) return port.error();
    a.port = *port;
    return a;
  }
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    return Err() << "invalid address \"" << text
                 << "\" (expected HOST:PORT, [IPv6]:PORT or unix:/PATH)";
  }
  a.kind = ListenAddress::Kind::kIpv4;
  a.host = std::string(text.substr(0, colon));
  in_addr tmp{};
  if (a.host.find(':') != std::string::npos) {
    return Err() << "invalid address \"" << text << "\" (IPv6 addresses go in brackets: [::1]:1067)";
  }
  if (inet_pton(AF_INET, a.host.c_str(), &tmp) != 1) {
    return Err() << "invalid IPv4 address in \"" << text << "\" (host names are not resolved)";
  }
  auto port = ParsePort(text.substr(colon + 1), text);
  if (!port) return port.error();
  a.port = *port;
  return a;
}

socklen_t ToSockaddr(const ListenAddress& address, sockaddr_storage* out) {
  std::memset(out, 0, sizeof *out);
  switch (address.kind) {
    case ListenAddress::Kind::kIpv4: {
      auto* sin = reinterpret_cast<sockaddr_in*>(out);
      sin->sin_family = AF_INET;
      sin->sin_port = htons(address.port);
      inet_pton(AF_INET, address.host.c_str(), &sin->sin_addr);
      return sizeof *sin;
    }
    case ListenAddress::Kind::kIpv6: {
      auto* sin6 = reinterpret_cast<sockaddr_in6*>(out);
      sin6->sin6_family = AF_INET6;
      sin6->sin6_port = htons(address.port);
      inet_pton(AF_INET6, address.host.c_str(), &sin6->sin6_addr);
      return sizeof *sin6;
    }
    case ListenAddress::Kind::kUnix: {
      auto* sun = reinterpret_cast<sockaddr_un*>(out);
      sun->sun_family = AF_UNIX;
      std::memcpy(sun->sun_path, address.path.data(), address.path.size());
      return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address.path.size() + 1);
    }
  }
  return 0;
}

std::string DescribeSockaddr(const sockaddr* sa, socklen_t len) {
  char buf[INET6_ADDRSTRLEN] = {};
  switch (sa->sa_family) {
    case AF_INET: {
      auto* sin = reinterpret_cast<const sockaddr_in*>(sa);
      inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof buf);
      return std::string(buf) + ":" + std::to_string(ntohs(sin->sin_port));
    }
    case AF_INET6: {
      auto* sin6 = reinterpret_cast<const sockaddr_in6*>(sa);
      inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof buf);
      return "[" + std::string(buf) + "]:" + std::to_string(ntohs(sin6->sin6_port));
    }
    case AF_UNIX: {
      auto* sun = reinterpret_cast<const sockaddr_un*>(sa);
      size_t max = len > offsetof(sockaddr_un, sun_path) ? len - offsetof(sockaddr_un, sun_path) : 0;
      if (max == 0) return "unix:(unnamed)";
      if (sun->sun_path[0] == '\0') return "unix:@" + std::string(sun->sun_path + 1, max - 1);
      return "unix:" + std::string(sun->sun_path, strnlen(sun->sun_path, max));
    }
  }
  return "(family " + std::to_string(sa->sa_family) + ")";
}

}  // namespace rot13d
