// The Supervisor's configurations and generations: reading the file, starting
// a generation as the canary, promoting or abandoning it, and the reload that
// ties them together.
#include "supervisor/supervisor_impl.h"

namespace rot13d::supervisor::internal {

std::optional<Config> Supervisor::ReadConfig(bool at_start) {
  ConfigLoad load = at_start ? LoadStartConfig(options_.config_path, options_.config_path_given)
                             : LoadConfigFile(options_.config_path, {.resolve_names = false});
  OverrideListen(load, options_.listen);
  config_unreadable_ = load.unreadable;
  if (load.defaults) {
    Log(LogLevel::kNotice, "no configuration file at " + options_.config_path + "; running on embedded defaults" +
                               (options_.listen.empty() ? " (listen 0.0.0.0:1067, workers \"auto\")" : ""));
  }
  if (!load.config) {
    LogConfigErrors(load.errors);
    if (!at_start) last_reload_ = "failed: " + load.errors.front().ToString();
  }
  return load.config;
}

// A new generation starts as the canary: its workers are spawned now, and it
// takes over only once every one of them is accepting.
void Supervisor::StartGeneration(const Config& config) {
  auto now = Clock::now();
  Generation& g = gens_.StartCanary(config, config.workers > 0 ? config.workers : AutoWorkerCount(),
                                    now + policy_.boot_timeout);
  pool_.AddGeneration(g.id, g.size, now);  // due at once: the planner spawns them
  Log(LogLevel::kInfo, "starting generation " + Num(g.id) + " with " + Count(g.size, "worker"),
      {{"GENERATION", Num(g.id)}});
}

void Supervisor::Promote() {
  bool first = gens_.PromoteCanary();
  const Generation& g = gens_.serving();
  UpdateTitle();  // before the log line announces it: whoever reads the log then sees the new title
  ConfigureLogging(g.config.log_level, g.config.log_target);
  listeners_.ApplySettings(g.config);
  if (Status s = ServeAdmin(g.config.admin_listen); !s) Log(LogLevel::kWarning, s.error().ToString());
  if (Status s = ServeAgent(g.config.agent_listen); !s) Log(LogLevel::kWarning, s.error().ToString());
  // Retire every older generation: drain, then kill at the deadline.
  size_t retiring = pool_.RetireAllBut(g.id, g.config.shutdown_timeout);
  if (first) {
    Log(LogLevel::kInfo, "ready: " + Count(g.size, "worker") + " of generation " + Num(g.id) + " accepting",
        {{"GENERATION", Num(g.id)}});
  } else if (std::exchange(upgrading_, false)) {
    last_reload_ = "ok (upgrade to " + options_.version + ", generation " + Num(g.id) + ")";
    activity_.Count(ReloadResult::kOk);
    Log(LogLevel::kNotice, "upgrade complete: rot13d " + options_.version + ", generation " + Num(g.id) +
                               " serving with " + Count(g.size, "worker") + "; retiring " +
                               Count(retiring, "old worker"),
        {{"GENERATION", Num(g.id)}, {"VERSION", options_.version}});
    requesters_.Answer(static_cast<int>(g.id));
  } else {
    last_reload_ = "ok (generation " + Num(g.id) + ")";
    activity_.Count(ReloadResult::kOk);
    Log(LogLevel::kNotice, "reload complete: generation " + Num(g.id) + " serving with " + Count(g.size, "worker") +
                               "; retiring " + Count(retiring, "old worker"),
        {{"GENERATION", Num(g.id)}});
    requesters_.Answer(static_cast<int>(g.id));
  }
  notify_.Ready(StatusLine());
}

// What ps and top show for the supervisor.
void Supervisor::UpdateTitle() const {
  SetProcTitle("rot13d: supervisor (generation " + Num(gens_.serving().id) + (stopping_ ? ", stopping)" : ")"));
}

// The planner has signalled the canary's workers; what is left is the record.
void Supervisor::Abandon() {
  Generation g = gens_.AbandonCanary();
  std::string why = g.failure.empty() ? "its workers were not all accepting within " +
                                            Num(static_cast<uint64_t>(policy_.boot_timeout.count() / 1000)) + " s"
                                      : g.failure;
  pool_.DropWaiting(g.id);
  if (Status s = ServeAdmin(gens_.serving().config.admin_listen); !s) Log(LogLevel::kWarning, s.error().ToString());
  if (Status s = ServeAgent(gens_.serving().config.agent_listen); !s) Log(LogLevel::kWarning, s.error().ToString());
  if (gens_.serving().id == 0 || gens_.serving().halted) {
    Log(LogLevel::kError, "workers cannot boot: " + why + "; giving up", {{"GENERATION", Num(g.id)}});
    return;
  }
  last_reload_ = "failed: new workers did not boot";
  activity_.Count(ReloadResult::kBootFailed);
  Log(LogLevel::kError, std::string(std::exchange(upgrading_, false) ? "upgrade" : "reload") + " failed: generation " + Num(g.id) + " abandoned (" + why + "); generation " +
                            Num(gens_.serving().id) + " keeps serving",
      {{"GENERATION", Num(g.id)}});
  requesters_.Answer(kReloadBootFailed);
  notify_.Ready(StatusLine());
}

// At the top of a loop turn, never from inside the executor: a reload asked
// for while a canary was out waits for it to settle.
void Supervisor::StartReload() {
  // A reload after the binary was replaced (a package upgrade) runs the new one.
  if (upgrade_asked_ || exe_.Replaced()) return StartUpgrade();
  reload_pending_ = false;
  requesters_.StartReload();  // whoever asked until now gets this reload's answer
  notify_.Reloading();
  Log(LogLevel::kInfo, "reloading configuration from " + options_.config_path,
      {{"CONFIG_FILE", options_.config_path}});
  TryGeneration(ReadConfig(/*at_start=*/false));
}

void Supervisor::TryGeneration(std::optional<Config> config) {
  if (!config) {
    return FailReload(config_unreadable_ ? kReloadUnreadable : kReloadInvalidConfig,
                      options_.config_path + (config_unreadable_ ? " cannot be read" : " is invalid"));
  }
  Status opened = listeners_.Open(*config, options_.config_path);
  // Admin and agent addresses the new file adds are served now; those it
  // drops go only when it takes over (Promote), so that a failed reload
  // changes nothing. (An agent address added here answers for the whole
  // instance, as every agent address does.)
  auto both = [](std::vector<ListenAddress> now, const std::vector<ListenAddress>& next) {
    for (const ListenAddress& a : next) {
      if (std::find(now.begin(), now.end(), a) == now.end()) now.push_back(a);
    }
    return now;
  };
  if (opened) opened = ServeAdmin(both(gens_.serving().config.admin_listen, config->admin_listen));
  if (opened) {
    opened = ServeAgent(both(gens_.serving().config.agent_listen, config->agent_listen));
    if (!opened) (void)ServeAdmin(gens_.serving().config.admin_listen);  // as it was: it binds nothing new
  }
  if (!opened) {
    last_reload_ = "failed: " + opened.error().ToString();
    return FailReload(kReloadCannotListen, opened.error().ToString());
  }
  if (auto ignored = IdentityChangeIgnored(identity_, *config)) Log(LogLevel::kWarning, *ignored);
  StartGeneration(*config);
}

void Supervisor::FailReload(int answer, const std::string& why) {
  if (std::exchange(upgrading_, false)) {
    Log(LogLevel::kNotice, "the upgrade's new image serves with the adopted workers of generation " +
                               Num(gens_.serving().id) + " (their binary: the previous one)");
  }
  activity_.Count(answer == kReloadUnreadable    ? ReloadResult::kUnreadable
                  : answer == kReloadCannotListen ? ReloadResult::kCannotListen
                                                   : ReloadResult::kInvalid);
  Log(LogLevel::kError, "reload failed: " + why + "; keeping generation " + Num(gens_.serving().id) +
                            " and its configuration",
      {{"CONFIG_FILE", options_.config_path}});
  notify_.Ready(StatusLine());
  requesters_.Answer(answer);
}

Status Supervisor::ServeAdmin(const std::vector<ListenAddress>& addresses) {
  if (Status s = admin_.Serve(addresses); !s) return s;
  WatchEndpoints();
  return OkStatus();
}

Status Supervisor::ServeAgent(const std::vector<ListenAddress>& addresses) {
  if (Status s = agent_.Serve(addresses); !s) return s;
  WatchEndpoints();
  return OkStatus();
}

void Supervisor::WatchEndpoints() {
  std::vector<int> fds = admin_.WatchFds();
  for (int fd : agent_.WatchFds()) fds.push_back(fd);
  loop_.WatchAlso(fds);
}

// Workers taking new clients, of whichever generation (a canary's share the
// listeners), and the room they have left.
AgentInputs Supervisor::AgentState() const {
  AgentInputs in{.stopping = stopping_};
  const Generation* canary = gens_.canary();
  for (const AcceptingWorker& w : pool_.Accepting()) {
    const Config& c = canary && canary->id == w.generation ? canary->config : gens_.serving().config;
    ++in.accepting_workers;
    in.open_connections += w.open_connections;
    in.capacity += static_cast<uint64_t>(c.max_connections);
  }
  return in;
}

Snapshot Supervisor::TakeSnapshot() const {
  Snapshot snap = activity_.Snapshot(options_.version, self_);
  snap.serving_generation = gens_.serving().id;
  if (const Generation* canary = gens_.canary()) snap.canary_generation = canary->id;
  snap.stopping = stopping_;
  snap.last_reload = last_reload_;
  snap.totals = pool_.Totals();
  snap.refused_per_address = pool_.addresses().refused();
  snap.per_address_uncounted = pool_.addresses().uncounted();
  snap.workers = pool_.Describe();
  return snap;
}

}  // namespace rot13d::supervisor::internal
