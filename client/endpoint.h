// Where the client tools connect: parsing "[HOST][:PORT]", "[IPv6]:PORT", "tcp:HOST:PORT",
// "unix:PATH" and HOST PORT, resolving names, connecting with a deadline, and sorting
// failures into kinds.
#pragma once

#include <sys/socket.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <span>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"

namespace rot13d::client {

inline constexpr uint16_t kDefaultPort = 1067;
inline constexpr std::string_view kDefaultHost = "localhost";

enum class Family { kAny, kIpv4, kIpv6 };

// What the user typed, before any name is resolved.
struct Endpoint {
  enum class Kind { kInet, kUnix };
  Kind kind = Kind::kInet;
  std::string host = std::string(kDefaultHost);  // a name or a numeric address, without brackets
  uint16_t port = kDefaultPort;
  Family family = Family::kAny;  // kInet: socat's tcp4: and tcp6: ask for one
  std::string path;  // kUnix; a leading '@' names the abstract namespace

  // "localhost:1067", "[::1]:1067", "unix:/run/rot13d.sock".
  std::string ToString() const;
};

// Parses an address argument. An empty host means localhost and an absent port
// 1067; an IPv6 address with a port needs brackets, one without may go bare
// ("::1"). socat's spelling is taken too: tcp:HOST:PORT, and tcp4: or tcp6:
// for one family (any case; a port is then required, so that "tcp:80" stays
// the host "tcp").
Result<Endpoint> ParseEndpoint(std::string_view text);
// netcat's spelling, two arguments: a host (a name, an IPv4 address, or an
// IPv6 address bare or in brackets) and a port.
Result<Endpoint> ParseEndpoint(std::string_view host, std::string_view port);
// What the command line gave: nothing (the default), one ADDRESS, or HOST PORT.
// At most two arguments.
Result<Endpoint> ParseEndpointArgs(std::span<const std::string> args);

// One concrete address to connect to.
struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;

  int family() const { return storage.ss_family; }
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
  std::string ToString() const;
  // The numeric host alone, without brackets or port: "127.0.0.2", "::1".
  std::string HostToString() const;
};

// A local address to connect from (rot13-bench --source): a numeric IPv4 or
// IPv6 address, bare or an IPv6 one in brackets, without a port (its port is 0).
Result<SocketAddress> ParseSourceAddress(std::string_view text);

// The addresses to try, in getaddrinfo's order (one for a Unix endpoint), of
// `family` (-4, -6) and the endpoint's own (tcp4:, tcp6:), which must agree.
// Failures carry no errno unless the resolver reported a system error.
Result<std::vector<SocketAddress>> Resolve(const Endpoint& endpoint, Family family = Family::kAny);

// How an operation failed, in the terms both tools report.
enum class FailureKind { kNone, kRefused, kReset, kTimeout, kMismatch, kOther };
inline constexpr size_t kFailureKinds = 6;  // for arrays indexed by FailureKind
const char* FailureKindName(FailureKind kind);
// ECONNREFUSED and ENOENT (no Unix socket there) are refused; ECONNRESET, EPIPE
// and ECONNABORTED are reset; ETIMEDOUT is a timeout; EBADMSG, which the tools
// attach to a wrong answer, is a mismatch; anything else is other.
FailureKind ClassifyErrno(int err);
// The exit code for a failure of this kind (client/exit_codes.h).
int ExitCodeFor(FailureKind kind);

// Starts a non-blocking connect: the socket (CLOEXEC, O_NONBLOCK; TCP_NODELAY
// for TCP) and whether the connection is already complete (Unix sockets and
// some loopback cases). Every connection of both tools starts here.
//
// With a `source` (a TCP address of the target's family, port 0), the socket
// is bound to it first with IP_BIND_ADDRESS_NO_PORT: the kernel picks the
// local port only at connect(), against the whole 4-tuple, so that every
// source address has a range of ephemeral ports of its own. A source of
// another family fails with EAFNOSUPPORT.
struct PendingConnect {
  UniqueFd fd;
  bool connected = false;
};
// SO_RCVBUF and SO_SNDBUF, set before connecting (the window scale is agreed
// then); 0 leaves the kernel's.
struct SocketBuffers {
  int receive = 0;
  int send = 0;
};
Result<PendingConnect> StartConnect(const SocketAddress& address, SocketBuffers buffers = {},
                                    const SocketAddress* source = nullptr);
// The result of a non-blocking connect once the socket is writable (SO_ERROR).
int ConnectError(BorrowedFd fd);

// Connects to one address within timeout, from `source` when one is given (as
// StartConnect); the socket stays non-blocking. A timeout is reported with
// errno ETIMEDOUT.
Result<UniqueFd> ConnectWithTimeout(const SocketAddress& address, std::chrono::milliseconds timeout,
                                    const SocketAddress* source = nullptr);

struct Connection {
  UniqueFd fd;
  SocketAddress address;
};
// Tries each address in order, each with its own timeout (and from `source`,
// when one is given). On failure the error's message() names every attempt
// with its cause, complete as it is; its errno, that of the last attempt, is
// for ClassifyErrno.
Result<Connection> ConnectAny(const std::vector<SocketAddress>& addresses, std::chrono::milliseconds timeout,
                              const SocketAddress* source = nullptr);

}  // namespace rot13d::client
