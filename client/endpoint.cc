#include "client/endpoint.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/un.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <utility>

#include "client/exit_codes.h"
#include "common/address.h"

namespace rot13d::client {
namespace {

Result<uint16_t> ParsePort(std::string_view text, std::string_view whole) {
  unsigned value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || value == 0 || value > 65535) {
    return Err() << "invalid port in \"" << whole << "\" (expected 1..65535)";
  }
  return static_cast<uint16_t>(value);
}

// An IPv6 literal, optionally with a zone ("fe80::1%eth0") that getaddrinfo resolves.
bool IsIpv6Literal(std::string_view host) {
  std::string address(host.substr(0, host.find('%')));
  in6_addr ignored{};
  return inet_pton(AF_INET6, address.c_str(), &ignored) == 1;
}

bool StartsWithNoCase(std::string_view text, std::string_view prefix) {
  if (text.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(text[i])) != prefix[i]) return false;
  }
  return true;
}

// socat's "tcp:", "tcp4:" or "tcp6:" in front of HOST:PORT: the family it
// asks for, and the length of the prefix (0 when there is none).
struct SocatPrefix {
  size_t length = 0;
  Family family = Family::kAny;
};
SocatPrefix FindSocatPrefix(std::string_view text) {
  static constexpr std::pair<std::string_view, Family> kPrefixes[] = {
      {"tcp:", Family::kAny}, {"tcp4:", Family::kIpv4}, {"tcp6:", Family::kIpv6}};
  for (const auto& [prefix, family] : kPrefixes) {
    // Without a port after it, "tcp:80" is the host tcp, port 80.
    if (StartsWithNoCase(text, prefix) && text.find(':', prefix.size()) != std::string_view::npos) {
      return {prefix.size(), family};
    }
  }
  return {};
}

// Why a host with colons that is no IPv6 address is wrong, with a hint built
// from what was typed.
Error HostWithColons(std::string_view text) {
  size_t last = text.rfind(':');
  std::string_view before = text.substr(0, last);
  std::string_view port = text.substr(last + 1);
  if (IsIpv6Literal(before) && ParsePort(port, text)) {
    return Err() << "invalid address \"" << text << "\" (an IPv6 address with a port goes in brackets: [" << before
                 << "]:" << port << ")";
  }
  return Err() << "invalid address \"" << text
               << "\" (expected HOST:PORT, [IPv6]:PORT, tcp:HOST:PORT, unix:PATH, or HOST and PORT as two arguments)";
}

// Binds a socket for `target` to the local `source` address before its
// connect. IP_BIND_ADDRESS_NO_PORT defers the choice of the port to connect(),
// which then picks one free for this 4-tuple; a plain bind would take a port
// free for every destination, and with it the source's whole range.
Status BindSource(BorrowedFd fd, const SocketAddress& source, const SocketAddress& target) {
  if (source.family() != target.family() || (source.family() != AF_INET && source.family() != AF_INET6)) {
    return Error("source address " + source.HostToString() + " is not of the family of " + target.ToString(),
                 EAFNOSUPPORT);
  }
  int one = 1;
  if (setsockopt(fd.get(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one) != 0) {
    return ErrnoErr() << "IP_BIND_ADDRESS_NO_PORT";
  }
  if (bind(fd.get(), source.get(), source.length) != 0) return ErrnoErr() << "bind to " << source.HostToString();
  return OkStatus();
}

Status CheckHost(std::string_view host, std::string_view text) {
  if (host.find_first_of(" \t\n[]/") != std::string_view::npos) {
    return Err() << "invalid host in \"" << text << "\"";
  }
  return OkStatus();
}

}  // namespace

std::string Endpoint::ToString() const {
  if (kind == Kind::kUnix) return "unix:" + path;
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

Result<Endpoint> ParseEndpoint(std::string_view text) {
  Endpoint e;
  if (text.starts_with("unix:")) {
    e.kind = Endpoint::Kind::kUnix;
    e.path = std::string(text.substr(5));
    if (e.path.empty()) return Err() << "empty Unix socket path in \"" << text << "\"";
    if (e.path.find('\0') != std::string::npos) return Err() << "Unix socket path contains a NUL byte";
    // An abstract name has no terminating NUL, a path needs one.
    size_t room = sizeof(sockaddr_un::sun_path) - (e.path[0] == '@' ? 0 : 1);
    if (e.path.size() > room) {
      return Err() << "Unix socket path in \"" << text << "\" is longer than " << room << " bytes";
    }
    return e;
  }
  const std::string_view whole = text;
  SocatPrefix socat = FindSocatPrefix(text);
  text.remove_prefix(socat.length);
  e.family = socat.family;
  std::string_view host;
  std::string_view port;
  bool has_port = false;
  if (text.starts_with("[")) {
    size_t close = text.find(']');
    if (close == std::string_view::npos) return Err() << "invalid address \"" << whole << "\" (no closing ']')";
    host = text.substr(1, close - 1);
    if (host.empty()) return Err() << "invalid address \"" << whole << "\" (empty host in brackets)";
    std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest[0] != ':') return Err() << "invalid address \"" << whole << "\" (expected [IPv6]:PORT)";
      port = rest.substr(1);
      has_port = true;
    }
  } else {
    size_t first = text.find(':');
    if (first == std::string_view::npos) {
      host = text;
    } else if (text.find(':', first + 1) != std::string_view::npos) {
      host = text;  // two or more colons: a bare IPv6 address, default port
    } else {
      host = text.substr(0, first);
      port = text.substr(first + 1);
      has_port = true;
    }
  }
  if (Status ok = CheckHost(host, whole); !ok) return ok.error();
  if (host.find(':') != std::string_view::npos && !IsIpv6Literal(host)) return HostWithColons(whole);
  if (!host.empty()) e.host = std::string(host);
  if (has_port) {
    auto p = ParsePort(port, whole);
    if (!p) return p.error();
    e.port = *p;
  }
  return e;
}

Result<Endpoint> ParseEndpoint(std::string_view host, std::string_view port) {
  const std::string whole = std::string(host) + " " + std::string(port);
  if (host.starts_with("unix:")) return Err() << "a unix: address takes no port (\"" << whole << "\")";
  if (host.starts_with("[") && host.ends_with("]") && host.size() > 2) host = host.substr(1, host.size() - 2);
  if (Status ok = CheckHost(host, whole); !ok) return ok.error();
  if (host.find(':') != std::string_view::npos && !IsIpv6Literal(host)) {
    return Err() << "invalid host \"" << host << "\": with the port as a second argument, give the host alone";
  }
  Endpoint e;
  if (!host.empty()) e.host = std::string(host);
  auto p = ParsePort(port, whole);
  if (!p) return p.error();
  e.port = *p;
  return e;
}

Result<Endpoint> ParseEndpointArgs(std::span<const std::string> args) {
  switch (args.size()) {
    case 0: return Endpoint{};
    case 1: return ParseEndpoint(args[0]);
    case 2: return ParseEndpoint(args[0], args[1]);
    default: return Err() << "too many arguments for an address (expected ADDRESS, or HOST and PORT)";
  }
}

std::string SocketAddress::ToString() const { return DescribeSockaddr(get(), length); }

std::string SocketAddress::HostToString() const {
  char host[NI_MAXHOST];
  if ((family() == AF_INET || family() == AF_INET6) &&
      getnameinfo(get(), length, host, sizeof host, nullptr, 0, NI_NUMERICHOST) == 0) {
    return host;
  }
  return ToString();
}

Result<SocketAddress> ParseSourceAddress(std::string_view text) {
  std::string_view host = text;
  if (host.size() > 2 && host.front() == '[' && host.back() == ']' && host.find(':') != std::string_view::npos) {
    host = host.substr(1, host.size() - 2);
  }
  // The daemon's numeric parser, with port 0: names are not resolved, and a
  // port ("127.0.0.1:80", "[::1]:80") leaves no valid address.
  const bool colons = host.find(':') != std::string_view::npos;
  auto parsed = ParseListenAddress(colons ? "[" + std::string(host) + "]:0" : std::string(host) + ":0");
  if (!parsed || parsed->kind == ListenAddress::Kind::kUnix || host.find_first_of("[]") != std::string_view::npos) {
    return Err() << "invalid source address \"" << text
                 << "\" (expected a numeric IPv4 or IPv6 address without a port, such as 127.0.0.2 or ::1)";
  }
  SocketAddress a;
  a.length = ToSockaddr(*parsed, &a.storage);
  return a;
}

Result<std::vector<SocketAddress>> Resolve(const Endpoint& endpoint, Family family) {
  std::vector<SocketAddress> out;
  if (endpoint.kind == Endpoint::Kind::kUnix) {
    SocketAddress a;
    auto* sun = reinterpret_cast<sockaddr_un*>(&a.storage);
    sun->sun_family = AF_UNIX;
    bool abstract = endpoint.path[0] == '@';
    std::memcpy(sun->sun_path, endpoint.path.data(), endpoint.path.size());
    if (abstract) sun->sun_path[0] = '\0';
    // An abstract name is exactly its bytes; a path counts its terminating NUL.
    a.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + endpoint.path.size() + (abstract ? 0 : 1));
    out.push_back(a);
    return out;
  }
  if (family != Family::kAny && endpoint.family != Family::kAny && family != endpoint.family) {
    return Err() << "-" << (family == Family::kIpv4 ? 4 : 6) << " contradicts the tcp"
                 << (endpoint.family == Family::kIpv4 ? 4 : 6) << ": address";
  }
  if (family == Family::kAny) family = endpoint.family;
  addrinfo hints{};
  hints.ai_family = family == Family::kIpv4 ? AF_INET : family == Family::kIpv6 ? AF_INET6 : AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;  // no AI_ADDRCONFIG: it hides ::1 on hosts with only loopback IPv6
  addrinfo* list = nullptr;
  std::string service = std::to_string(endpoint.port);
  int rc = getaddrinfo(endpoint.host.c_str(), service.c_str(), &hints, &list);
  if (rc != 0) {
    if (rc == EAI_SYSTEM) return ErrnoErr() << "cannot resolve \"" << endpoint.host << "\"";
    return Err() << "cannot resolve \"" << endpoint.host << "\": " << gai_strerror(rc);
  }
  for (addrinfo* ai = list; ai; ai = ai->ai_next) {
    if (ai->ai_addrlen > sizeof(sockaddr_storage)) continue;
    SocketAddress a;
    std::memcpy(&a.storage, ai->ai_addr, ai->ai_addrlen);
    a.length = ai->ai_addrlen;
    bool seen = false;  // getaddrinfo may list one address more than once
    for (const SocketAddress& b : out) {
      seen = seen || (b.length == a.length && std::memcmp(&b.storage, &a.storage, a.length) == 0);
    }
    if (!seen) out.push_back(a);
  }
  freeaddrinfo(list);
  if (out.empty()) return Err() << "cannot resolve \"" << endpoint.host << "\": no usable address";
  return out;
}

const char* FailureKindName(FailureKind kind) {
  switch (kind) {
    case FailureKind::kNone: return "none";
    case FailureKind::kRefused: return "refused";
    case FailureKind::kReset: return "reset";
    case FailureKind::kTimeout: return "timeout";
    case FailureKind::kMismatch: return "mismatch";
    case FailureKind::kOther: return "other";
  }
  return "other";
}

FailureKind ClassifyErrno(int err) {
  switch (err) {
    case 0: return FailureKind::kNone;
    case ECONNREFUSED:
    case ENOENT: return FailureKind::kRefused;
    case ECONNRESET:
    case EPIPE:
    case ECONNABORTED: return FailureKind::kReset;
    case ETIMEDOUT: return FailureKind::kTimeout;
    case EBADMSG: return FailureKind::kMismatch;
    default: return FailureKind::kOther;
  }
}

int ExitCodeFor(FailureKind kind) {
  switch (kind) {
    case FailureKind::kNone: return kExitOk;
    case FailureKind::kRefused: return kExitRefused;
    case FailureKind::kReset: return kExitReset;
    case FailureKind::kTimeout: return kExitTimeout;
    case FailureKind::kMismatch: return kExitMismatch;
    case FailureKind::kOther: return kExitIoError;
  }
  return kExitIoError;
}

Result<PendingConnect> StartConnect(const SocketAddress& address, SocketBuffers buffers, const SocketAddress* source) {
  PendingConnect p;
  p.fd.reset(socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!p.fd) return ErrnoErr() << "socket";
  if (buffers.receive > 0 && setsockopt(p.fd.get(), SOL_SOCKET, SO_RCVBUF, &buffers.receive, sizeof buffers.receive) != 0) {
    return ErrnoErr() << "SO_RCVBUF";
  }
  if (buffers.send > 0 && setsockopt(p.fd.get(), SOL_SOCKET, SO_SNDBUF, &buffers.send, sizeof buffers.send) != 0) {
    return ErrnoErr() << "SO_SNDBUF";
  }
  if (address.family() != AF_UNIX) {
    // Both tools write a message whole and wait for its whole answer; Nagle
    // would hold back a message's tail (or a piece of standard input) until
    // the previous segment is acknowledged, and the server delays that ACK.
    int one = 1;
    if (setsockopt(p.fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) return ErrnoErr() << "TCP_NODELAY";
  }
  if (source) {
    if (Status bound = BindSource(p.fd.borrow(), *source, address); !bound) return bound.error();
  }
  if (connect(p.fd.get(), address.get(), address.length) == 0) {
    p.connected = true;
    return p;
  }
  // A Unix socket whose backlog is full says EAGAIN, where TCP would retry the
  // handshake quietly; report it as what it means to the user.
  if (errno == EAGAIN && address.family() == AF_UNIX) {
    return Error("connect to " + address.ToString() + ": listen queue is full", EAGAIN);
  }
  if (errno != EINPROGRESS) return ErrnoErr() << "connect to " << address.ToString();
  return p;
}

int ConnectError(BorrowedFd fd) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) return errno;
  return err;
}

Result<UniqueFd> ConnectWithTimeout(const SocketAddress& address, std::chrono::milliseconds timeout,
                                    const SocketAddress* source) {
  auto pending = StartConnect(address, {}, source);
  if (!pending) return pending.error();
  if (pending->connected) return std::move(pending->fd);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      return Error("connect to " + address.ToString() + ": no answer within " + std::to_string(timeout.count()) + " ms",
                   ETIMEDOUT);
    }
    pollfd p{pending->fd.get(), POLLOUT, 0};
    int n = poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 60'000)));
    if (n < 0 && errno != EINTR) return ErrnoErr() << "poll";
    if (n > 0) break;
  }
  int err = ConnectError(pending->fd.borrow());
  if (err != 0) return Error("connect to " + address.ToString(), err);
  return std::move(pending->fd);
}

Result<Connection> ConnectAny(const std::vector<SocketAddress>& addresses, std::chrono::milliseconds timeout,
                              const SocketAddress* source) {
  std::string attempts;
  int last_errno = 0;
  for (const SocketAddress& address : addresses) {
    auto fd = ConnectWithTimeout(address, timeout, source);
    if (fd) return Connection{std::move(*fd), address};
    if (!attempts.empty()) attempts += "; ";
    attempts += fd.error().ToString();
    last_errno = fd.error().errno_value();
  }
  if (addresses.empty()) return Err() << "no address to connect to";
  return Error(attempts, last_errno);
}

}  // namespace rot13d::client
