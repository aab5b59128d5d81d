#include "supervisor/admin.h"

#include <fcntl.h>

#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "common/log.h"
#include "supervisor/microhttpd.h"

namespace rot13d::supervisor {
namespace {

// Enough for any number of scrapers and operators; a flood of idle clients
// beyond it is refused by libmicrohttpd, not queued in the supervisor.
constexpr unsigned kConnectionLimit = 256;
constexpr unsigned kConnectionTimeoutSeconds = 10;
constexpr size_t kConnectionMemory = 32 * 1024;  // a request line and headers; no bodies are taken

void Close(int fd) {
  // Closing a descriptor in a worker that will never use it: nothing to do if it fails.
  if (fd >= 0) (void)::close(fd);
}

}  // namespace

MHD_Result AdminServer::Answer(void* cls, MHD_Connection* connection, const char* url, const char* method,
                               const char* /*version*/, const char* /*upload*/, size_t* upload_size, void** request) {
  auto* self = static_cast<AdminServer*>(cls);
  // libmicrohttpd calls once with the headers, then again: answer on the second.
  static int headers_seen;
  if (*request == nullptr) {
    *request = &headers_seen;
    return MHD_YES;
  }
  if (*upload_size != 0) {
    *upload_size = 0;  // a body is ignored; the request is refused below
  }
  std::optional<Page> page;
  unsigned status = MHD_HTTP_OK;
  if (std::strcmp(method, MHD_HTTP_METHOD_GET) != 0 && std::strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
    status = MHD_HTTP_METHOD_NOT_ALLOWED;
    page = Page{"text/plain; charset=utf-8", "only GET\n"};
  } else if (!(page = self->Render(url))) {
    status = MHD_HTTP_NOT_FOUND;
    page = Page{"text/plain; charset=utf-8", "not found: try /metrics or /status\n"};
  }
  const Microhttpd& mhd = *self->mhd_;
  MHD_Response* response =
      mhd.create_response_from_buffer(page->body.size(), page->body.data(), MHD_RESPMEM_MUST_COPY);
  if (!response) return MHD_NO;
  mhd.add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, page->content_type.c_str());
  if (status == MHD_HTTP_METHOD_NOT_ALLOWED) mhd.add_response_header(response, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
  MHD_Result queued = mhd.queue_response(connection, status, response);
  mhd.destroy_response(response);
  return queued;
}

std::optional<AdminServer::Page> AdminServer::Render(const std::string& path) const {
  if (path == "/metrics") return Page{"text/plain; version=0.0.4; charset=utf-8", RenderMetrics(source_())};
  if (path == "/status") return Page{"application/json", RenderStatusJson(source_())};
  return std::nullopt;
}

void AdminServer::Track(void* cls, MHD_Connection* connection, void** /*socket_context*/,
                        MHD_ConnectionNotificationCode event) {
  auto* self = static_cast<AdminServer*>(cls);
  const MHD_ConnectionInfo* info = self->mhd_->get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
  if (!info) return;
  if (event == MHD_CONNECTION_NOTIFY_STARTED) {
    self->connection_fds_.insert(info->connect_fd);
  } else {
    self->connection_fds_.erase(info->connect_fd);
  }
}

Result<AdminServer::Endpoint> AdminServer::Start(const ListenAddress& address) {
  auto bound = BindListener(address, /*backlog=*/64, /*socket_mode=*/0600);
  if (!bound) return bound.error();
  Endpoint e{.address = address, .listener = std::move(*bound)};
  // Close-on-exec like every descriptor of ours: an upgrade's execve must not
  // carry the endpoint into the new image, which binds its own.
  e.daemon_fd = fcntl(e.listener.fd().get(), F_DUPFD_CLOEXEC, 0);
  if (e.daemon_fd < 0) return ErrnoErr() << "dup of the admin listener " << address.ToString();
  MHD_AccessHandlerCallback answer = &AdminServer::Answer;
  MHD_NotifyConnectionCallback track = &AdminServer::Track;
  e.daemon = mhd_->start_daemon(MHD_USE_EPOLL | MHD_USE_SUPPRESS_DATE_NO_CLOCK, 0, nullptr, nullptr, answer, this,
                                MHD_OPTION_LISTEN_SOCKET, e.daemon_fd, MHD_OPTION_CONNECTION_LIMIT, kConnectionLimit,
                                MHD_OPTION_CONNECTION_TIMEOUT, kConnectionTimeoutSeconds,
                                MHD_OPTION_CONNECTION_MEMORY_LIMIT, kConnectionMemory, MHD_OPTION_NOTIFY_CONNECTION,
                                track, this, MHD_OPTION_END);
  if (!e.daemon) {
    Close(e.daemon_fd);
    return Err() << "libmicrohttpd could not serve " << address.ToString();
  }
  const MHD_DaemonInfo* info = mhd_->get_daemon_info(e.daemon, MHD_DAEMON_INFO_EPOLL_FD);
  e.epoll_fd = info ? info->epoll_fd : -1;
  if (e.epoll_fd < 0) {
    mhd_->stop_daemon(e.daemon);
    return Err() << "libmicrohttpd gave no epoll descriptor for " << address.ToString();
  }
  return e;
}

Status AdminServer::Serve(const std::vector<ListenAddress>& addresses) {
  auto served = [&](const ListenAddress& a) {
    return std::find_if(endpoints_.begin(), endpoints_.end(), [&](const Endpoint& e) { return e.address == a; });
  };
  std::vector<Endpoint> added;
  for (const ListenAddress& a : addresses) {
    if (served(a) != endpoints_.end()) continue;
    if (!mhd_) {
      auto loaded = LoadMicrohttpd();
      if (!loaded) return Err() << "admin endpoint: " << loaded.error().ToString();
      mhd_ = *loaded;
    }
    auto e = Start(a);
    if (!e) {
      for (Endpoint& s : added) StopEndpoint(s);
      return Err() << "admin endpoint: " << e.error().ToString();
    }
    Log(LogLevel::kInfo, "admin endpoint (GET /metrics, /status) on " + e->listener.Describe());
    added.push_back(std::move(*e));
  }
  std::vector<Endpoint> kept;
  for (Endpoint& e : endpoints_) {
    if (std::find(addresses.begin(), addresses.end(), e.address) != addresses.end()) {
      kept.push_back(std::move(e));
    } else {
      Log(LogLevel::kInfo, "closing admin endpoint " + e.address.ToString() + " (no longer configured)");
      StopEndpoint(e);
    }
  }
  for (Endpoint& e : added) kept.push_back(std::move(e));
  endpoints_ = std::move(kept);
  return OkStatus();
}

// libmicrohttpd closes its copy of the listener and its connections; the
// Listener, destroyed with the endpoint, closes ours and removes the file.
void AdminServer::StopEndpoint(Endpoint& e) {
  if (e.daemon) mhd_->stop_daemon(e.daemon);
  e.daemon = nullptr;
}

void AdminServer::Stop() {
  for (Endpoint& e : endpoints_) StopEndpoint(e);
  endpoints_.clear();
  connection_fds_.clear();
}

std::vector<int> AdminServer::WatchFds() const {
  std::vector<int> fds;
  for (const Endpoint& e : endpoints_) fds.push_back(e.epoll_fd);
  return fds;
}

void AdminServer::Run() {
  for (Endpoint& e : endpoints_) {
    if (mhd_->run(e.daemon) != MHD_YES) Log(LogLevel::kWarning, "admin endpoint: libmicrohttpd run failed");
  }
}

std::optional<TimePoint> AdminServer::NextTimeout() const {
  std::optional<TimePoint> next;
  for (const Endpoint& e : endpoints_) {
    MHD_UNSIGNED_LONG_LONG ms = 0;
    if (mhd_->get_timeout(e.daemon, &ms) == MHD_YES) {
      TimePoint t = Clock::now() + milliseconds(ms);
      if (!next || t < *next) next = t;
    }
  }
  return next;
}

void AdminServer::CloseInChild() {
  for (Endpoint& e : endpoints_) {
    Close(e.daemon_fd);
    Close(e.epoll_fd);
    UniqueFd ours = e.listener.TakeForChild();  // closed here; the file stays the supervisor's
  }
  for (int fd : connection_fds_) Close(fd);
}

}  // namespace rot13d::supervisor
