#include "supervisor/worker_launch.h"

#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "common/log.h"
#include "daemon/worker.h"

namespace rot13d::supervisor {

void BecomeWorker(const WorkerLaunch& l) {
  ConfigureLogging(l.config.log_level, l.config.log_target);  // a canary logs as its config says
  daemon::WorkerParams params = daemon::ParamsFor(l.config);
  std::vector<std::string> mine = l.listeners.NamesFor(l.config);
  for (auto& [name, listener] : l.listeners.all()) {
    UniqueFd fd = listener.TakeForChild();  // ours to close if not ours to serve
    if (std::find(mine.begin(), mine.end(), name) == mine.end()) continue;
    params.listeners.push_back(std::move(fd));
    // By the configured address; an activated socket has none, so no header.
    auto entry = std::find_if(l.config.listen.begin(), l.config.listen.end(),
                              [&](const ListenAddress& a) { return a.ToString() == name; });
    params.listener_proxy.push_back(entry == l.config.listen.end() ? ProxyProtocol::kOff : entry->proxy_protocol);
  }
  params.stats = &l.own;
  params.all_stats = &l.all.at(0);
  params.all_stats_count = l.all.size();
  params.addresses = &l.addresses;
  params.address_owner = static_cast<uint32_t>(&l.own - &l.all.at(0));
  params.ready_fd = l.ready_fd;
  params.nudge_fd = l.nudge_fd;
  params.supervisor_pid = l.supervisor;
  params.title = "rot13d: worker " + std::to_string(l.slot) + " (generation " + std::to_string(l.generation);
  _exit(daemon::RunWorker(std::move(params)));
}

}  // namespace rot13d::supervisor
