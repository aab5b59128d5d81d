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

bool Matches(const uint8_t* network, const uint8_t* address, int prefix) {
  int whole = prefix / 8;
  if (std::memcmp(network, address, static_cast<size_t>(whole)) != 0) return false;
  int rest = prefix % 8;
  if (rest == 0) return true;
  auto mask = static_cast<uint8_t>(0xFF << (8 - rest));
  return (network[whole] & mask) == (address[whole] & mask);
}

}  // namespace

const char* ProxyProtocolName(ProxyProtocol p) {
  switch (p) {
    case ProxyProtocol::kOff: return "off";
    case ProxyProtocol::kV1: return "v1";
    case ProxyProtocol::kV2: return "v2";
    case ProxyProtocol::kAny: return "any";
  }
  return "off";
}

Result<Cidr> ParseCidr(std::string_view text) {
  Cidr c;
  size_t slash = text.find('/');
  std::string host(text.substr(0, slash));
  if (host.find(':') != std::string::npos) {
    c.family = AF_INET6;
    if (inet_pton(AF_INET6, host.c_str(), c.bytes) != 1) return Err() << "invalid IPv6 network \"" << text << "\"";
  } else if (inet_pton(AF_INET, host.c_str(), c.bytes) != 1) {
    return Err() << "invalid network \"" << text << "\" (expected ADDRESS/PREFIX, such as 10.0.0.0/8 or fd00::/8)";
  }
  const int bits = c.family == AF_INET ? 32 : 128;
  c.prefix = bits;
  if (slash != std::string_view::npos) {
    std::string_view digits = text.substr(slash + 1);
    int value = -1;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() || value < 0 || value > bits) {
      return Err() << "invalid prefix length in \"" << text << "\" (expected 0.." << bits << ")";
    }
    c.prefix = value;
  }
  Cidr network = c;
  for (int bit = c.prefix; bit < bits; ++bit) network.bytes[bit / 8] &= static_cast<uint8_t>(~(0x80 >> (bit % 8)));
  if (network != c) {
    return Err() << "\"" << text << "\" has bits set past its prefix (the network is " << network.ToString() << ")";
  }
  return c;
}

std::string Cidr::ToString() const {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(family, bytes, buf, sizeof buf);
  return std::string(buf) + "/" + std::to_string(prefix);
}

bool Cidr::Contains(const sockaddr* address) const {
  if (address->sa_family == AF_INET) {
    const auto* sin = reinterpret_cast<const sockaddr_in*>(address);
    return family == AF_INET && Matches(bytes, reinterpret_cast<const uint8_t*>(&sin->sin_addr), prefix);
  }
  if (address->sa_family != AF_INET6) return false;
  const auto* raw = reinterpret_cast<const sockaddr_in6*>(address)->sin6_addr.s6_addr;
  if (family == AF_INET6) return Matches(bytes, raw, prefix);
  static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
  return std::memcmp(raw, kMapped, sizeof kMapped) == 0 && Matches(bytes, raw + 12, prefix);
}

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
