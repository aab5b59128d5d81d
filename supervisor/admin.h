// The HTTP admin endpoint (GET /metrics, GET /status), served by libmicrohttpd
// inside the supervisor's own loop: no thread, no blocking. libmicrohttpd
// keeps its sockets in an epoll set of its own, whose descriptor the
// supervisor watches; each wakeup runs it once. A slow or silent client is
// cut off at the connection timeout and costs the loop nothing meanwhile.
#pragma once

#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/result.h"
#include "supervisor/listeners.h"
#include "supervisor/metrics.h"
#include "supervisor/microhttpd.h"
#include "supervisor/planner.h"

namespace rot13d::supervisor {

class AdminServer {
 public:
  // What the pages show, taken fresh for each request.
  using Source = std::function<Snapshot()>;

  explicit AdminServer(Source source) : source_(std::move(source)) {}
  ~AdminServer() { Stop(); }
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // Serves on `addresses` (unix sockets get mode 0600): an address served
  // already stays as it is, a new one is bound, one no longer listed is
  // closed. All or nothing: if a new one cannot be served, nothing changes.
  // The first address to serve loads libmicrohttpd (LoadMicrohttpd).
  Status Serve(const std::vector<ListenAddress>& addresses);
  void Stop();

  // The descriptors to watch for readability, one per address.
  std::vector<int> WatchFds() const;
  // Runs every daemon once: after a wakeup, or at NextTimeout.
  void Run();
  // When a daemon must run though nothing happened (a connection timing out).
  std::optional<TimePoint> NextTimeout() const;
  // In a forked worker: closes every descriptor of the endpoint (listeners,
  // libmicrohttpd's copies and epoll sets, client connections) without a
  // word to libmicrohttpd, whose objects the worker never touches.
  void CloseInChild();

 private:
  struct Endpoint {
    ListenAddress address;
    Listener listener;  // ours: removes a unix socket file at the end
    MHD_Daemon* daemon = nullptr;
    int daemon_fd = -1;  // libmicrohttpd's copy of the listener, closed by it
    int epoll_fd = -1;
  };
  Result<Endpoint> Start(const ListenAddress& address);
  // libmicrohttpd's callbacks, with exactly its signatures.
  static MHD_Result Answer(void* cls, MHD_Connection* connection, const char* url, const char* method,
                           const char* version, const char* upload, size_t* upload_size, void** request);
  static void Track(void* cls, MHD_Connection* connection, void** socket_context,
                    MHD_ConnectionNotificationCode event);

  void StopEndpoint(Endpoint& e);

  struct Page {
    std::string content_type;
    std::string body;
  };
  // /metrics and /status; nothing else.
  std::optional<Page> Render(const std::string& path) const;

  Source source_;
  std::optional<Microhttpd> mhd_;  // loaded with the first endpoint
  std::vector<Endpoint> endpoints_;
  std::set<int> connection_fds_;  // open client connections, for CloseInChild
};

}  // namespace rot13d::supervisor
