#include "supervisor/status_request.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <sstream>

#include "common/config.h"
#include "common/exit_codes.h"
#include "common/unique_fd.h"
#include "supervisor/status_line.h"

namespace rot13d::supervisor {
namespace {

constexpr int kTimeoutMs = 5000;

// Waits for `events` on fd, at most until the deadline; false on timeout.
bool WaitFor(int fd, short events, std::chrono::steady_clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  pollfd p{fd, events, 0};
  int n = 0;
  do {
    n = poll(&p, 1, static_cast<int>(std::max<int64_t>(0, left.count())));
  } while (n < 0 && errno == EINTR);
  return n > 0;
}

Result<UniqueFd> Connect(const ListenAddress& address, std::chrono::steady_clock::time_point deadline) {
  sockaddr_storage ss{};
  socklen_t len = ToSockaddr(address, &ss);
  UniqueFd fd(socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return ErrnoErr() << "socket";
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    if (errno != EINPROGRESS) return ErrnoErr() << "connect to " << address.ToString();
    if (!WaitFor(fd.get(), POLLOUT, deadline)) return Err() << "connect to " << address.ToString() << ": timed out";
    int error = 0;
    socklen_t size = sizeof error;
    if (getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &size) != 0 || error != 0) {
      return ErrorBuilder(error ? error : errno) << "connect to " << address.ToString();
    }
  }
  return fd;
}

// "3d 4h", "2h 5m", "5m 3s", "42s".
std::string Uptime(double seconds) {
  auto s = static_cast<uint64_t>(seconds);
  char buf[48];
  if (s >= 86400) std::snprintf(buf, sizeof buf, "%llud %lluh", (unsigned long long)(s / 86400), (unsigned long long)(s % 86400 / 3600));
  else if (s >= 3600) std::snprintf(buf, sizeof buf, "%lluh %llum", (unsigned long long)(s / 3600), (unsigned long long)(s % 3600 / 60));
  else if (s >= 60) std::snprintf(buf, sizeof buf, "%llum %llus", (unsigned long long)(s / 60), (unsigned long long)(s % 60));
  else std::snprintf(buf, sizeof buf, "%llus", (unsigned long long)s);
  return buf;
}

// A count from the answer; anything that is not one (negative, huge, NaN) reads 0.
uint64_t Number(const Json& j, const std::string& key) {
  double v = j[key].number;
  return v >= 0 && v < 1.8e19 ? static_cast<uint64_t>(v) : 0;
}

}  // namespace

Result<std::string> HttpGet(const ListenAddress& address, const std::string& path) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kTimeoutMs);
  auto fd = Connect(address, deadline);
  if (!fd) return fd.error();
  std::string request = "GET " + path + " HTTP/1.0\r\nHost: rot13d\r\nConnection: close\r\n\r\n";
  for (size_t sent = 0; sent < request.size();) {
    if (!WaitFor(fd->get(), POLLOUT, deadline)) return Err() << "sending the request: timed out";
    ssize_t n = send(fd->get(), request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EINTR) return ErrnoErr() << "sending the request";
    if (n > 0) sent += static_cast<size_t>(n);
  }
  std::string response;
  char buf[16384];
  while (true) {
    if (!WaitFor(fd->get(), POLLIN, deadline)) return Err() << "reading the answer: timed out";
    ssize_t n = recv(fd->get(), buf, sizeof buf, 0);
    if (n == 0) break;
    if (n < 0 && errno != EAGAIN && errno != EINTR) return ErrnoErr() << "reading the answer";
    if (n > 0) response.append(buf, static_cast<size_t>(n));
  }
  size_t body = response.find("\r\n\r\n");
  if (!response.starts_with("HTTP/1.") || body == std::string::npos) return Err() << "not an HTTP answer";
  std::string status_line = response.substr(0, response.find("\r\n"));
  if (status_line.find(" 200") == std::string::npos) return Err() << "the endpoint answered " << status_line;
  return response.substr(body + 4);
}

std::string FormatStatusTable(const Json& s) {
  std::ostringstream out;
  out << "rot13d " << s["version"].string << ", pid " << Number(s, "pid") << ", up "
      << Uptime(s["uptime_seconds"].number) << (s["stopping"].boolean ? ", stopping" : "") << "\n";
  out << "generation " << Number(s, "generation") << " serving";
  if (!s["canary_generation"].is_null()) out << ", generation " << Number(s, "canary_generation") << " starting";
  out << "; last reload: " << s["last_reload"].string << "\n";
  out << "connections accepted " << Number(s, "connections_accepted") << "; received "
      << HumanBytes(Number(s, "bytes_received")) << ", sent " << HumanBytes(Number(s, "bytes_sent")) << "\n\n";
  char line[160];
  std::snprintf(line, sizeof line, "%-8s %4s %4s %-10s %6s %10s %10s %10s %8s\n", "PID", "SLOT", "GEN", "STATE",
                "OPEN", "ACCEPTED", "RECEIVED", "SENT", "RESTARTS");
  out << line;
  for (const Json& w : s["workers"].array) {
    std::string pid = Number(w, "pid") ? std::to_string(Number(w, "pid")) : "-";
    std::snprintf(line, sizeof line, "%-8s %4llu %4llu %-10s %6llu %10llu %10s %10s %8llu\n", pid.c_str(),
                  (unsigned long long)Number(w, "slot"), (unsigned long long)Number(w, "generation"),
                  w["state"].string.c_str(), (unsigned long long)Number(w, "open_connections"),
                  (unsigned long long)Number(w, "accepted"), HumanBytes(Number(w, "bytes_received")).c_str(),
                  HumanBytes(Number(w, "bytes_sent")).c_str(), (unsigned long long)Number(w, "restarts"));
    out << line;
  }
  return out.str();
}

int RequestStatus(const std::string& address_text, const std::string& config_path, bool config_given) {
  std::optional<ListenAddress> address;
  if (!address_text.empty()) {
    auto parsed = ParseListenAddress(address_text);
    if (!parsed) {
      std::fprintf(stderr, "rot13d: --status %s: %s\n", address_text.c_str(), parsed.error().message().c_str());
      return kExitUsage;
    }
    address = *parsed;
  } else {
    ConfigLoad load = LoadStartConfig(config_path, config_given);
    if (load.config && !load.config->admin_listen.empty()) address = load.config->admin_listen.front();
    if (!address) {
      std::fprintf(stderr, "rot13d: --status: %s sets no admin_listen; give the endpoint's address\n",
                   config_path.c_str());
      return kExitUsage;
    }
  }
  auto body = HttpGet(*address, "/status");
  if (!body) {
    std::fprintf(stderr, "rot13d: cannot get the status from %s: %s (is rot13d running, with admin_listen?)\n",
                 address->ToString().c_str(), body.error().ToString().c_str());
    return kExitFailure;
  }
  std::optional<Json> status = ParseJson(*body);
  if (!status || status->type != Json::Type::kObject) {
    std::fprintf(stderr, "rot13d: %s answered something that is not a status document\n", address->ToString().c_str());
    return kExitFailure;
  }
  std::fputs(FormatStatusTable(*status).c_str(), stdout);
  return kExitOk;
}

}  // namespace rot13d::supervisor
