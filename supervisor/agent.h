// HAProxy's agent-check (agent_listen): the balancer connects, reads one line
// saying whether to send this instance clients and with what weight, and the
// connection ends. Served inside the supervisor's loop: the answer is short
// enough for any socket buffer, so accept, one write and close never block.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/address.h"
#include "common/result.h"
#include "supervisor/listeners.h"

namespace rot13d::supervisor {

// What the answer depends on, taken fresh for each connection.
struct AgentInputs {
  bool stopping = false;              // SIGTERM/SIGINT/SIGQUIT: draining for good
  unsigned accepting_workers = 0;     // live workers (any generation) taking new clients
  uint64_t open_connections = 0;      // held by those workers
  uint64_t capacity = 0;              // their max_connections added up
};

// The line for HAProxy (doc/configuration.txt, "agent-check"), "\n" included:
//   "drain\n"                     stopping: no new clients, open ones finish;
//   "down#no worker accepting\n"  booting, every worker dead or its generation halted;
//   "up ready N%\n"               serving, N = the share of capacity still free,
//                                 1..100 (0% would mean drain). "ready" undoes
//                                 a drain this agent said before a restart.
std::string AgentAnswer(const AgentInputs& in);

// The listening sockets and the answering; the decision is AgentAnswer's.
class AgentServer {
 public:
  using Source = std::function<AgentInputs()>;
  explicit AgentServer(Source source) : source_(std::move(source)) {}

  // Serves on `addresses`: one served already stays, a new one is bound, one
  // no longer listed is closed. All or nothing, like the admin endpoint.
  Status Serve(const std::vector<ListenAddress>& addresses);
  void Stop() { endpoints_.clear(); }
  // The listening descriptors, for the loop to watch.
  std::vector<int> WatchFds() const;
  // Answers every connection waiting on every address, then closes it.
  void Run();
  // In a forked worker: closes the listeners; the socket files stay the supervisor's.
  void CloseInChild();

 private:
  struct Endpoint {
    ListenAddress address;
    Listener listener;
  };
  Source source_;
  std::vector<Endpoint> endpoints_;
};

}  // namespace rot13d::supervisor
