#include "supervisor/agent.h"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include "common/log.h"
#include "common/unique_fd.h"

namespace rot13d::supervisor {
namespace {

// Answers per address per loop turn at most: a flood of connections waits in
// the listen queue (the loop comes back at once, the socket still readable)
// instead of keeping the supervisor from its workers.
constexpr int kAnswersPerTurn = 64;
// The agent's answer is no secret (HAProxy may run as any user); the mode of a
// unix agent socket lets anyone read it.
constexpr mode_t kSocketMode = 0666;
constexpr int kBacklog = 64;

}  // namespace

std::string AgentAnswer(const AgentInputs& in) {
  if (in.stopping) return "drain\n";
  if (in.accepting_workers == 0 || in.capacity == 0) return "down#no worker accepting\n";
  uint64_t free = in.open_connections >= in.capacity ? 0 : in.capacity - in.open_connections;
  // Rounded down, so that a full instance says 1% rather than a hopeful 100%.
  uint64_t percent = std::clamp<uint64_t>(free * 100 / in.capacity, 1, 100);
  return "up ready " + std::to_string(percent) + "%\n";
}

Status AgentServer::Serve(const std::vector<ListenAddress>& addresses) {
  auto served = [&](const ListenAddress& a) {
    return std::any_of(endpoints_.begin(), endpoints_.end(), [&](const Endpoint& e) { return e.address == a; });
  };
  std::vector<Endpoint> added;  // destroyed (closed, files removed) if one fails
  for (const ListenAddress& a : addresses) {
    if (served(a)) continue;
    // Non-blocking and close-on-exec (BindListener): an upgrade's execve
    // drops it, and the new image binds its own.
    auto bound = BindListener(a, kBacklog, kSocketMode);
    if (!bound) return Err() << "agent-check: " << bound.error().ToString();
    Log(LogLevel::kInfo, "HAProxy agent-check on " + bound->Describe());
    added.push_back({a, std::move(*bound)});
  }
  std::vector<Endpoint> kept;
  for (Endpoint& e : endpoints_) {
    if (std::find(addresses.begin(), addresses.end(), e.address) != addresses.end()) {
      kept.push_back(std::move(e));
    } else {
      Log(LogLevel::kInfo, "closing agent-check " + e.address.ToString() + " (no longer configured)");
    }
  }
  for (Endpoint& e : added) kept.push_back(std::move(e));
  endpoints_ = std::move(kept);
  return OkStatus();
}

std::vector<int> AgentServer::WatchFds() const {
  std::vector<int> fds;
  for (const Endpoint& e : endpoints_) fds.push_back(e.listener.fd().get());
  return fds;
}

void AgentServer::Run() {
  std::string answer;  // decided once per turn, and only when someone asks
  for (const Endpoint& e : endpoints_) {
    for (int i = 0; i < kAnswersPerTurn; ++i) {
      UniqueFd c(accept4(e.listener.fd().get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
      if (!c) {
        // EAGAIN: nobody else waits. ECONNABORTED and the like: that one is gone.
        // EMFILE/ENFILE: the queue waits for a descriptor; the next turn retries.
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ECONNABORTED && errno != EINTR) {
          Log(LogLevel::kWarning, Error(ErrnoErr() << "agent-check accept on " << e.address.ToString()).ToString());
        }
        if (errno == ECONNABORTED || errno == EINTR) continue;
        break;
      }
      if (answer.empty()) answer = AgentAnswer(source_());
      // A fresh socket's send buffer takes a short line whole, or the peer is
      // gone (then nothing is owed). Never SIGPIPE.
      (void)send(c.get(), answer.data(), answer.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      // Bytes the client sent (agent-send) left unread would turn the close
      // into a reset, which may discard the answer at the client: read what
      // has arrived, without waiting for more.
      char sink[512];
      for (int reads = 0; reads < 8 && recv(c.get(), sink, sizeof sink, MSG_DONTWAIT) > 0; ++reads) {
      }
    }
  }
}

void AgentServer::CloseInChild() {
  for (Endpoint& e : endpoints_) {
    UniqueFd ours = e.listener.TakeForChild();  // closed here; the file stays the supervisor's
  }
}

}  // namespace rot13d::supervisor
