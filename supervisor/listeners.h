// Listening sockets: bound once by the supervisor, or taken from systemd socket activation.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "common/address.h"
#include "common/config.h"
#include "common/result.h"
#include "common/unique_fd.h"

namespace rot13d::supervisor {

class Listener {
 public:
  // owned_path: a unix socket file this process created and removes on close.
  Listener(std::string name, UniqueFd fd, std::string owned_path = {})
      : name_(std::move(name)), fd_(std::move(fd)), owned_path_(std::move(owned_path)) {}
  Listener(Listener&& other) noexcept
      : name_(std::move(other.name_)), fd_(std::move(other.fd_)),
        owned_path_(std::exchange(other.owned_path_, {})) {}
  Listener& operator=(Listener&& other) noexcept;
  ~Listener();

  const std::string& name() const { return name_; }
  BorrowedFd fd() const { return fd_.borrow(); }
  const std::string& owned_path() const { return owned_path_; }
  // What the kernel bound (shows the real port when the configured one was 0).
  std::string Describe() const;
  // For a forked worker: hands over this process's copy of the descriptor and
  // forgets the socket file, which stays the supervisor's to remove.
  UniqueFd TakeForChild();

 private:
  void Close();
  std::string name_;
  UniqueFd fd_;
  std::string owned_path_;
};

// socket, SO_REUSEADDR, IPV6_V6ONLY for IPv6, bind, listen(backlog); unix
// sockets get socket_mode, and a stale socket file (nobody accepting) is replaced.
Result<Listener> BindListener(const ListenAddress& address, int backlog, mode_t socket_mode);

// The sockets passed by systemd (LISTEN_FDS/LISTEN_PID), checked to be
// listening stream sockets and made non-blocking. Empty when not activated.
// The environment variables are removed so workers never see them.
Result<std::vector<Listener>> TakeActivatedListeners();

// Applies a new backlog to a listening socket (listen(2) may be called again).
Status SetBacklog(BorrowedFd fd, int backlog);

// The supervisor's listening sockets, by configured address text: those passed
// by systemd (then `listen` in the file does not apply), or those bound for
// the generations in force, kept open across reloads for as long as one of
// them uses the address.
class ListenerSet {
 public:
  // Takes what systemd passed, if anything; logs each socket. Sockets named
  // kStoredPrefix... are our own from systemd's file descriptor store (below),
  // not socket activation: Open reuses them for the addresses they are bound to.
  Status TakeActivated();
  // In a re-executed image: the listeners the previous image held, as they
  // were (never closed, never re-bound), and whether they came from systemd.
  void Adopt(std::vector<Listener> listeners, bool activated);
  bool activated() const { return activated_; }

  // Binds the addresses of `config` not bound yet, all or nothing, giving new
  // unix sockets their owner. Under activation: nothing (the file's `listen`
  // is ignored, with a warning when the file sets it).
  Status Open(const Config& config, const std::string& config_path);
  // The names of the listeners workers of `config` serve.
  std::vector<std::string> NamesFor(const Config& config) const;
  // Listeners none of `in_force` uses.
  std::vector<std::string> Unused(const std::vector<const Config*>& in_force) const;
  void Close(const std::string& name);
  // Closes every one; under activation they stay (systemd keeps the queue).
  void CloseOwn();
  void CloseAll() { listeners_.clear(); }
  // The backlog and unix socket mode of kept listeners, applied once a reload commits.
  void ApplySettings(const Config& config);

  std::map<std::string, Listener>& all() { return listeners_; }
  const std::map<std::string, Listener>& all() const { return listeners_; }

  // Under systemd without socket activation, each socket bound is also put in
  // the service's file descriptor store (FDSTORE=1, with FileDescriptorStoreMax=
  // in the unit), so that a restart, or a crash and Restart=, gets it back
  // listening, with its queue, instead of refusing clients while the port is
  // closed; one closed for good (no longer configured) is taken out again.
  static constexpr const char* kStoredPrefix = "rot13d-listen-";

 private:
  void Store(const std::string& name, BorrowedFd fd);
  void Unstore(const std::string& name);
  std::map<std::string, Listener> listeners_;
  std::map<std::string, UniqueFd> stored_;  // handed back by systemd, until Open takes them
  bool activated_ = false;
};

}  // namespace rot13d::supervisor
