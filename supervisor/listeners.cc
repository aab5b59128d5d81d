#include "supervisor/listeners.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "common/log.h"
#include "supervisor/privileges.h"

namespace rot13d::supervisor {

Listener& Listener::operator=(Listener&& other) noexcept {
  if (this != &other) {
    Close();
    name_ = std::move(other.name_);
    fd_ = std::move(other.fd_);
    owned_path_ = std::exchange(other.owned_path_, {});
  }
  return *this;
}

Listener::~Listener() { Close(); }

// Removing the socket file is tidiness: a file left behind (someone removed
// or replaced it meanwhile) is replaced as stale at the next bind.
void Listener::Close() {
  fd_.reset();
  if (!owned_path_.empty()) (void)::unlink(owned_path_.c_str());
  owned_path_.clear();
}

std::string Listener::Describe() const {
  sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (!fd_ || getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&ss), &len) != 0) return name_;
  return DescribeSockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

UniqueFd Listener::TakeForChild() {
  owned_path_.clear();
  return std::move(fd_);
}

namespace {

// A socket file left by a process that is gone refuses connections; one that
// accepts belongs to a live server and must not be stolen.
Status ClearStaleUnixSocket(const ListenAddress& address) {
  struct stat st {};
  if (lstat(address.path.c_str(), &st) != 0) {
    if (errno == ENOENT) return OkStatus();
    return ErrnoErr() << "stat " << address.path;
  }
  if (!S_ISSOCK(st.st_mode)) return Err() << address.path << " exists and is not a socket";
  // Non-blocking: a live server with a full backlog must not stall our loop.
  UniqueFd probe(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!probe) return ErrnoErr() << "socket";
  sockaddr_storage ss;
  socklen_t len = ToSockaddr(address, &ss);
  if (connect(probe.get(), reinterpret_cast<sockaddr*>(&ss), len) == 0 || errno == EAGAIN ||
      errno == EINPROGRESS) {
    return Err() << address.path << " is in use by another server";
  }
  if (errno != ECONNREFUSED) return ErrnoErr() << "probing " << address.path;
  if (unlink(address.path.c_str()) != 0) return ErrnoErr() << "removing stale " << address.path;
  return OkStatus();
}

}  // namespace

Result<Listener> BindListener(const ListenAddress& address, int backlog, mode_t socket_mode) {
  const std::string name = address.ToString();
  int family = address.kind == ListenAddress::Kind::kIpv4   ? AF_INET
               : address.kind == ListenAddress::Kind::kIpv6 ? AF_INET6
                                                            : AF_UNIX;
  UniqueFd fd(socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return ErrnoErr() << "socket for " << name;
  int one = 1;
  if (family != AF_UNIX) {
    if (setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) {
      return ErrnoErr() << "SO_REUSEADDR on " << name;
    }
  }
  if (family == AF_INET6 &&
      setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0) {
    return ErrnoErr() << "IPV6_V6ONLY on " << name;
  }
  if (family == AF_UNIX) {
    if (Status s = ClearStaleUnixSocket(address); !s) return s.error();
  }
  sockaddr_storage ss;
  socklen_t len = ToSockaddr(address, &ss);
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    Error e = ErrnoErr() << "bind " << name;
    if (e.errno_value() == EACCES && family != AF_UNIX && address.port < 1024) {
      return Err() << e.ToString() << " (a port below 1024 needs root or CAP_NET_BIND_SERVICE)";
    }
    return e;
  }
  std::string owned_path;
  if (family == AF_UNIX) {
    owned_path = address.path;
    if (chmod(address.path.c_str(), socket_mode) != 0) {
      int e = errno;
      (void)unlink(address.path.c_str());  // best effort, as in Close
      return ErrorBuilder(e) << "chmod " << address.path;
    }
  }
  if (listen(fd.get(), backlog) != 0) {
    int e = errno;
    if (!owned_path.empty()) (void)unlink(owned_path.c_str());  // best effort, as in Close
    return ErrorBuilder(e) << "listen on " << name;
  }
  return Listener(name, std::move(fd), owned_path);
}

Result<std::vector<Listener>> TakeActivatedListeners() {
  char** names = nullptr;
  int n = sd_listen_fds_with_names(/*unset_environment=*/1, &names);
  if (n < 0) return ErrorBuilder(-n) << "reading LISTEN_FDS";
  std::vector<Listener> out;
  std::string problem;
  for (int i = 0; i < n; ++i) {
    int fd = SD_LISTEN_FDS_START + i;
    std::string fd_name = names && names[i] ? names[i] : "unknown";
    UniqueFd owned(fd);
    int r = sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, /*listening=*/1);
    if (r <= 0 && problem.empty()) {
      problem = Error("passed descriptor " + std::to_string(fd) + " (" + fd_name + ") is not a listening stream socket",
                      r < 0 ? -r : 0)
                    .ToString();
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
      if (problem.empty()) problem = Error(ErrnoErr() << "fcntl on passed descriptor " << fd).ToString();
    }
    sockaddr_storage ss;
    socklen_t len = sizeof ss;
    std::string where = "fd " + std::to_string(fd);
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
      where = DescribeSockaddr(reinterpret_cast<sockaddr*>(&ss), len);
    }
    out.emplace_back("activated:" + fd_name + ":" + where, std::move(owned));
    if (names) free(names[i]);
  }
  free(names);
  if (!problem.empty()) return Err() << "socket activation: " << problem;
  return out;
}

Status SetBacklog(BorrowedFd fd, int backlog) {
  if (listen(fd.get(), backlog) != 0) return ErrnoErr() << "listen";
  return OkStatus();
}

namespace {

// An FDNAME may not hold ':' (systemd's separator in LISTEN_FDNAMES).
std::string StoreName(const std::string& address) {
  std::string name = ListenerSet::kStoredPrefix + address;
  std::replace(name.begin(), name.end(), ':', '_');
  return name.substr(0, 255);
}

}  // namespace

void ListenerSet::Store(const std::string& name, BorrowedFd fd) {
  if (!getenv("NOTIFY_SOCKET")) return;
  std::string state = "FDSTORE=1\nFDNAME=" + StoreName(name);
  int raw = fd.get();
  if (int r = sd_pid_notify_with_fds(0, /*unset_environment=*/0, state.c_str(), &raw, 1); r < 0) {
    Log(LogLevel::kDebug, "storing listener " + name + " with systemd failed: " + std::to_string(r));
  }
}

void ListenerSet::Unstore(const std::string& name) {
  if (!getenv("NOTIFY_SOCKET")) return;
  std::string state = "FDSTOREREMOVE=1\nFDNAME=" + StoreName(name);
  (void)sd_notify(/*unset_environment=*/0, state.c_str());
}

Status ListenerSet::TakeActivated() {
  auto activated = TakeActivatedListeners();
  if (!activated) return activated.error();
  const std::string stored = std::string("activated:") + kStoredPrefix;
  for (Listener& l : *activated) {
    if (l.name().starts_with(stored)) {
      // Ours, from before a restart: keyed by the address it is bound to.
      std::string address = l.Describe();
      stored_.emplace(address, l.TakeForChild());
      continue;
    }
    Log(LogLevel::kInfo, "using socket-activated listener " + l.name());
    std::string name = l.name();
    listeners_.emplace(name, std::move(l));
  }
  activated_ = !listeners_.empty();
  return OkStatus();
}

void ListenerSet::Adopt(std::vector<Listener> listeners, bool activated) {
  activated_ = activated;
  for (Listener& l : listeners) {
    std::string name = l.name();
    listeners_.emplace(name, std::move(l));
  }
}

Status ListenerSet::Open(const Config& config, const std::string& config_path) {
  if (activated_) {
    if (config.listen_set) {
      Log(LogLevel::kWarning, "'listen' in " + config_path +
                                  " is ignored: the listening sockets come from socket activation");
    }
    return OkStatus();
  }
  auto owner = ResolveSocketOwner(config.socket_user, config.socket_group);
  if (!owner) return Err() << "unix socket owner: " << owner.error().ToString();
  std::vector<std::string> added;
  auto roll_back = [&](Error e) {
    for (const std::string& n : added) Close(n);
    return e;
  };
  for (const ListenAddress& a : config.listen) {
    std::string name = a.ToString();
    if (listeners_.count(name)) continue;  // kept; new settings apply when the reload commits
    if (auto kept = stored_.find(name); kept != stored_.end()) {
      std::string owned = a.kind == ListenAddress::Kind::kUnix ? a.path : std::string();
      Listener l(name, std::move(kept->second), owned);
      stored_.erase(kept);
      (void)SetBacklog(l.fd(), config.backlog);
      Log(LogLevel::kInfo, "listening on " + l.Describe() + " (the socket systemd kept across the restart)");
      listeners_.emplace(name, std::move(l));
      continue;
    }
    auto bound = BindListener(a, config.backlog, config.socket_mode);
    if (!bound) return roll_back(bound.error());
    if (a.kind == ListenAddress::Kind::kUnix && !owner->unchanged() &&
        chown(a.path.c_str(), owner->uid, owner->gid) != 0) {
      return roll_back(ErrnoErr() << "chown " << a.path);
    }
    Log(LogLevel::kInfo, "listening on " + bound->Describe());
    Store(name, bound->fd());
    listeners_.emplace(name, std::move(*bound));
    added.push_back(name);
  }
  // Stored sockets of addresses no longer configured: closed for good.
  for (auto& [address, fd] : stored_) {
    Log(LogLevel::kInfo, "closing " + address + ", kept by systemd but no longer configured");
    Unstore(address);
  }
  stored_.clear();
  return OkStatus();
}

std::vector<std::string> ListenerSet::NamesFor(const Config& config) const {
  std::vector<std::string> names;
  if (activated_) {
    for (const auto& [name, l] : listeners_) names.push_back(name);
  } else {
    for (const ListenAddress& a : config.listen) names.push_back(a.ToString());
  }
  return names;
}

std::vector<std::string> ListenerSet::Unused(const std::vector<const Config*>& in_force) const {
  std::vector<std::string> used;
  for (const Config* c : in_force) {
    std::vector<std::string> names = NamesFor(*c);
    used.insert(used.end(), names.begin(), names.end());
  }
  std::vector<std::string> unused;
  for (const auto& [name, l] : listeners_) {
    if (std::find(used.begin(), used.end(), name) == used.end()) unused.push_back(name);
  }
  return unused;
}

void ListenerSet::Close(const std::string& name) {
  listeners_.erase(name);
  Unstore(name);
}

void ListenerSet::CloseOwn() {
  if (!activated_) listeners_.clear();
}

void ListenerSet::ApplySettings(const Config& config) {
  if (activated_) return;
  for (const ListenAddress& a : config.listen) {
    auto it = listeners_.find(a.ToString());
    if (it == listeners_.end()) continue;
    if (Status s = SetBacklog(it->second.fd(), config.backlog); !s) {
      Log(LogLevel::kWarning, "changing the backlog of " + it->first + ": " + s.error().ToString());
    }
    struct stat st {};
    if (a.kind == ListenAddress::Kind::kUnix && stat(a.path.c_str(), &st) == 0 &&
        (st.st_mode & 07777) != config.socket_mode && chmod(a.path.c_str(), config.socket_mode) != 0) {
      Log(LogLevel::kWarning, Error(ErrnoErr() << "chmod " << a.path).ToString());
    }
  }
}

}  // namespace rot13d::supervisor
