// Listening sockets: bound once by the supervisor, or taken from systemd socket activation.
#pragma once

#include <sys/types.h>

#include <string>
#include <utility>
#include <vector>

#include "common/address.h"
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

}  // namespace rot13d::supervisor
