#include "supervisor/supervisor.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <vector>

#include "common/capabilities.h"
#include "common/config.h"
#include "common/exit_codes.h"
#include "common/signals.h"
#include "common/log.h"
#include "common/stats.h"
#include "daemon/worker.h"
#include "supervisor/cpus.h"
#include "supervisor/listeners.h"
#include "supervisor/notify.h"
#include "supervisor/planner.h"
#include "supervisor/privileges.h"
#include "supervisor/reload_request.h"

namespace rot13d::supervisor {
namespace {

// Room for a serving generation, a canary and draining ones at the maximum size.
constexpr size_t kStatsSlots = 4 * kMaxWorkers + 64;
constexpr milliseconds kStatusInterval{1000};
// Identical worker-death messages: the first few in a window are logged, the
// rest counted and summarized when it closes (so a crash loop cannot flood the journal).
constexpr milliseconds kRepeatWindow{10000};
constexpr uint64_t kRepeatBurst = 5;

enum : uint64_t { kTagSignal = 1, kTagTimer, kTagReady };

// All but SIGABRT (see SetUp) and SIGPIPE (ignored). Real faults (SIGSEGV...)
// are delivered whatever the mask; only a stray kill(2) of them is caught.
const SignalSet kSupervisorSignals = SignalSet::AllBlockable().Without({SIGABRT, SIGPIPE});
// A signal rot13d does not use is logged once per window per signal.
constexpr milliseconds kStraySignalWindow{60000};

std::string Num(uint64_t v) { return std::to_string(v); }

std::string HumanBytes(uint64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  std::ostringstream s;
  s.precision(u == 0 ? 0 : 1);
  s << std::fixed << v << ' ' << units[u];
  return s.str();
}

class Supervisor {
 public:
  explicit Supervisor(Options options) : options_(std::move(options)) {}
  int Run();

 private:
  // Set-up.
  Status SetUp();
  std::optional<Config> ReadConfig(bool at_start);
  Status OpenListeners(const Config& config);
  void StartGeneration(const Config& config);

  // Events.
  void OnSignals();
  void OnStraySignal(const signalfd_siginfo& si);
  void Reap();
  void Reload();
  void BeginStop(bool immediately);
  void RefreshPhases();
  void HaltGeneration(const WorkerRecord& w, const std::string& last_failure);
  void RecordBootFailure(uint64_t generation, TimePoint now);
  void LogRepeatedDeaths(TimePoint now);
  void AnswerReload(int answer);
  void AnswerQueuedRequestsToo();  // the reload starting now answers the queued requests
  Status DropPrivileges(const Config& config);
  std::vector<std::string> RetiredListeners() const;
  void ApplyListenerSettings(const Config& config);

  // The executor: performs what the planner decided.
  void ExecutePlan();
  void Spawn(WorkerRecord& w);
  void SignalWorker(pid_t pid, int sig);
  void AbortHung(pid_t pid);
  void Promote(uint64_t generation);
  void Abandon(uint64_t generation);
  void CloseRetiredListeners();
  void KillAllAndReap();

  SupervisorView View(TimePoint now) const;
  WorkerRecord* FindByPid(pid_t pid);
  const Config& ConfigOf(uint64_t generation) const;
  std::vector<std::string> ListenerNamesFor(const Config& config) const;
  std::string StatusLine() const;
  void ArmTimer();
  void Tick();

  Options options_;
  RestartPolicy policy_;
  Notifier notify_;
  pid_t self_ = 0;

  UniqueFd epoll_, signals_, timer_, ready_;
  UniqueFd nudge_;  // workers' shared doorbell for accept balance (see daemon/worker.h)
  std::optional<StatsTable> stats_;
  std::vector<int> free_stats_;

  std::map<std::string, Listener> listeners_;  // by configured address text
  bool activated_ = false;

  Config serving_config_;
  std::optional<Config> canary_config_;
  uint64_t serving_generation_ = 0;
  std::optional<uint64_t> canary_generation_;
  int canary_size_ = 0;
  TimePoint canary_deadline_{};
  uint64_t next_generation_ = 1;
  std::set<uint64_t> halted_;
  std::vector<WorkerRecord> workers_;

  bool stopping_ = false;
  bool reload_queued_ = false;
  std::optional<int> exit_code_;
  std::string last_reload_ = "none";
  bool config_unreadable_ = false;  // the last ReadConfig failed to read the file at all
  std::string canary_failure_;
  uint64_t retired_connections_ = 0;
  uint64_t retired_bytes_ = 0;
  TimePoint last_tick_{};
  TimePoint last_watchdog_{};

  // Crash-loop governor: boot failures and last fork time per generation.
  std::map<uint64_t, std::deque<TimePoint>> boot_failures_;
  std::map<uint64_t, TimePoint> last_fork_;
  std::set<uint64_t> governed_;  // generations whose governor engagement was logged
  // Worker deaths: repeated identical messages are counted, not logged each time.
  RepeatFilter deaths_{kRepeatWindow, kRepeatBurst};
  std::map<std::string, std::pair<LogLevel, std::string>> death_summaries_;
  RepeatFilter stray_signals_{kStraySignalWindow, 1};
  // Requesters of `rot13d --reload`, for the reload in progress and for the
  // next, as pidfds of the processes waiting for an answer: a pidfd,
  // not a pid, so an answer never reaches a stranger that reused the pid of a
  // requester that gave up (the answer is a real-time signal, which kills).
  std::vector<UniqueFd> reload_answer_to_;
  std::vector<UniqueFd> reload_next_answer_to_;
  std::optional<Identity> identity_;  // who we became after binding, when started as root
};

Status Supervisor::SetUp() {
  self_ = getpid();
  // A log line to a stderr pipe whose reader left must not kill the service.
  if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) return ErrnoErr() << "ignoring SIGPIPE";
  // Blocked before the first fork, read synchronously from a signalfd: no
  // handlers. Every signal is, so that none whose default is to terminate or
  // stop (SIGALRM, SIGTTIN, SIGRTMIN+5...) can take the service down; those
  // rot13d has no use for are logged and ignored. SIGABRT keeps its default:
  // it is how systemd's watchdog (and an operator) asks for a core dump.
  if (Status s = SetSignalMask(kSupervisorSignals); !s) return s.error();
  auto signals = OpenSignalFd(kSupervisorSignals);
  if (!signals) return signals.error();
  signals_ = std::move(*signals);
  timer_.reset(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  if (!timer_) return ErrnoErr() << "timerfd_create";
  ready_.reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!ready_) return ErrnoErr() << "eventfd";
  nudge_.reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!nudge_) return ErrnoErr() << "eventfd";
  epoll_.reset(epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_) return ErrnoErr() << "epoll_create1";
  for (auto [fd, tag] : {std::pair{signals_.get(), kTagSignal}, {timer_.get(), kTagTimer},
                         {ready_.get(), kTagReady}}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = tag;
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) return ErrnoErr() << "epoll_ctl";
  }
  auto table = StatsTable::Create(kStatsSlots);
  if (!table) return table.error();
  stats_.emplace(std::move(*table));
  for (int i = static_cast<int>(kStatsSlots) - 1; i >= 0; --i) free_stats_.push_back(i);

  // Each connection is a descriptor: use the hard limit the service manager allows.
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }
  return OkStatus();
}

std::optional<Config> Supervisor::ReadConfig(bool at_start) {
  config_unreadable_ = false;
  struct stat st {};
  // Only at start: a reload must never trade the running configuration for the
  // defaults (0.0.0.0) because the file was moved aside for editing.
  if (at_start && !options_.config_path_given && stat(options_.config_path.c_str(), &st) != 0 &&
      errno == ENOENT) {
    Log(LogLevel::kNotice, "no configuration file at " + options_.config_path +
                               "; running on embedded defaults (listen 0.0.0.0:1067, workers \"auto\")");
    return Config::Defaults();
  }
  ConfigLoad load = LoadConfigFile(options_.config_path);
  if (!load.config) {
    LogConfigErrors(load.errors);
    config_unreadable_ = load.unreadable;
    if (!at_start) last_reload_ = "failed: " + load.errors.front().ToString();
    return std::nullopt;
  }
  return load.config;
}

std::vector<std::string> Supervisor::ListenerNamesFor(const Config& config) const {
  std::vector<std::string> names;
  if (activated_) {
    for (const auto& [name, l] : listeners_) names.push_back(name);
  } else {
    for (const ListenAddress& a : config.listen) names.push_back(a.ToString());
  }
  return names;
}

// Binds the addresses not bound yet; all or nothing.
Status Supervisor::OpenListeners(const Config& config) {
  if (activated_) {
    if (config.listen_set) {
      Log(LogLevel::kWarning, "'listen' in " + options_.config_path +
                                  " is ignored: the listening sockets come from socket activation");
    }
    return OkStatus();
  }
  auto owner = ResolveSocketOwner(config.socket_user, config.socket_group);
  if (!owner) return Err() << "unix socket owner: " << owner.error().ToString();
  std::vector<std::string> added;
  for (const ListenAddress& a : config.listen) {
    std::string name = a.ToString();
    auto it = listeners_.find(name);
    if (it != listeners_.end()) continue;  // kept; new settings apply when the reload commits
    auto bound = BindListener(a, config.backlog, config.socket_mode);
    if (!bound) {
      for (const std::string& n : added) listeners_.erase(n);
      return bound.error();
    }
    if (a.kind == ListenAddress::Kind::kUnix && !owner->unchanged() &&
        chown(a.path.c_str(), owner->uid, owner->gid) != 0) {
      Error e = ErrnoErr() << "chown " << a.path;
      for (const std::string& n : added) listeners_.erase(n);
      return e;
    }
    Log(LogLevel::kInfo, "listening on " + bound->Describe());
    listeners_.emplace(name, std::move(*bound));
    added.push_back(name);
  }
  return OkStatus();
}

// A new generation starts as the canary: its workers are spawned now, and it
// takes over only once every one of them is accepting.
void Supervisor::StartGeneration(const Config& config) {
  uint64_t generation = next_generation_++;
  canary_generation_ = generation;
  canary_failure_.clear();
  canary_config_ = config;
  canary_size_ = config.workers > 0 ? config.workers : AutoWorkerCount();
  auto now = Clock::now();
  canary_deadline_ = now + policy_.boot_timeout;
  for (int slot = 0; slot < canary_size_; ++slot) {
    WorkerRecord w;
    w.slot = slot;
    w.generation = generation;
    w.state = WorkerState::kBackoff;  // due at once: the planner spawns it
    w.restart_at = now;
    workers_.push_back(w);
  }
  Log(LogLevel::kInfo, "starting generation " + Num(generation) + " with " + Count(canary_size_, "worker"), {{"GENERATION", Num(generation)}});
}

const Config& Supervisor::ConfigOf(uint64_t generation) const {
  if (canary_generation_ && generation == *canary_generation_) return *canary_config_;
  return serving_config_;
}

SupervisorView Supervisor::View(TimePoint now) const {
  SupervisorView v;
  for (const auto& [generation, failures] : boot_failures_) {
    const Config& config = ConfigOf(generation);
    if (CrashLoopEngaged(failures, now, config.crash_loop_failures, config.crash_loop_window)) {
      auto last = last_fork_.find(generation);
      v.next_governed_fork[generation] =
          last == last_fork_.end() ? now : last->second + policy_.governed_fork_interval;
    }
  }
  v.workers = &workers_;
  v.serving_generation = serving_generation_;
  v.canary_generation = canary_generation_;
  v.canary_size = canary_size_;
  v.canary_deadline = canary_deadline_;
  v.serving_halted = halted_.count(serving_generation_) > 0;
  v.canary_halted = canary_generation_ && halted_.count(*canary_generation_) > 0;
  v.stopping = stopping_;
  v.retired_listeners = !RetiredListeners().empty();
  return v;
}

WorkerRecord* Supervisor::FindByPid(pid_t pid) {
  for (WorkerRecord& w : workers_) {
    if (w.pid == pid) return &w;
  }
  return nullptr;
}

void Supervisor::Spawn(WorkerRecord& w) {
  const Config& config = ConfigOf(w.generation);
  if (free_stats_.empty()) {
    Log(LogLevel::kError, "no free worker counter slot; retrying slot " + Num(w.slot) + " later");
    w.restart_at = Clock::now() + policy_.max_delay;
    return;
  }
  int stats_index = free_stats_.back();
  WorkerStats& stats = stats_->at(static_cast<size_t>(stats_index));
  stats.open_connections.store(0);
  stats.connections_total.store(0);
  stats.bytes_total.store(0);
  stats.heartbeat_ns.store(0);
  stats.SetPhase(WorkerPhase::kBooting);

  pid_t pid = fork();
  if (pid < 0) {
    // A fork that fails is a boot that fails: same backoff, same give-up.
    std::string error = std::string("fork failed: ") + std::strerror(errno);
    stats.SetPhase(WorkerPhase::kFree);
    RecordBootFailure(w.generation, Clock::now());
    w.failures += 1;
    w.boot_failures += 1;
    w.restart_at = Clock::now() + BackoffDelay(policy_, w.failures);
    Log(LogLevel::kError, "slot " + Num(w.slot) + " of generation " + Num(w.generation) + ": " + error,
        {{"WORKER_SLOT", Num(w.slot)}, {"GENERATION", Num(w.generation)}});
    if (w.boot_failures >= policy_.max_boot_failures) {
      w.state = WorkerState::kFailed;
      HaltGeneration(w, error);
    }
    return;
  }
  if (pid == 0) {
    // The worker. Nothing here returns: supervisor objects are never destroyed
    // in the child (that would unlink socket files), it leaves with _exit.
    // Signals stay blocked as the supervisor had them until RunWorker sets
    // the worker's own mask and dispositions.
    epoll_.reset();
    reload_answer_to_.clear();
    reload_next_answer_to_.clear();
    signals_.reset();
    timer_.reset();
    ConfigureLogging(config.log_level, config.log_target);  // a canary logs as its config says
    daemon::WorkerParams params;
    std::vector<std::string> mine = ListenerNamesFor(config);
    for (auto& [name, listener] : listeners_) {
      UniqueFd fd = listener.TakeForChild();
      if (std::find(mine.begin(), mine.end(), name) != mine.end()) params.listeners.push_back(std::move(fd));
    }
    params.buffer_size = config.buffer_size;
    params.max_connections = config.max_connections;
    params.idle_timeout = config.idle_timeout;
    // Four heartbeats per heartbeat_timeout at least, so an idle worker never looks hung.
    if (config.heartbeat_timeout.count() > 0) params.tick = std::min(params.tick, config.heartbeat_timeout / 4);
    params.stats = &stats;
    params.all_stats = &stats_->at(0);
    params.all_stats_count = stats_->size();
    params.ready_fd = ready_.borrow();
    params.nudge_fd = nudge_.borrow();
    params.supervisor_pid = self_;
    _exit(daemon::RunWorker(std::move(params)));
  }
  free_stats_.pop_back();
  w.pid = pid;
  w.state = WorkerState::kRunning;
  w.booted = false;
  w.started = Clock::now();
  last_fork_[w.generation] = w.started;
  w.heartbeat = {};
  w.heartbeat_timeout = config.heartbeat_timeout;
  w.hung = false;
  w.kill_sent = false;
  w.stopped_accepting = false;
  w.stats_index = stats_index;
  Log(LogLevel::kDebug, "worker " + Num(static_cast<uint64_t>(pid)) + " started in slot " + Num(w.slot) +
                            " of generation " + Num(w.generation),
      {{"WORKER_PID", Num(static_cast<uint64_t>(pid))}, {"WORKER_SLOT", Num(w.slot)},
       {"GENERATION", Num(w.generation)}});
}

void Supervisor::RefreshPhases() {
  for (WorkerRecord& w : workers_) {
    if (w.pid <= 0 || w.stats_index < 0) continue;
    const WorkerStats& stats = stats_->at(static_cast<size_t>(w.stats_index));
    WorkerPhase phase = stats.Phase();
    // CLOCK_MONOTONIC nanoseconds; steady_clock is CLOCK_MONOTONIC.
    if (int64_t ns = stats.heartbeat_ns.load(std::memory_order_relaxed); ns > 0) {
      w.heartbeat = TimePoint(std::chrono::duration_cast<Clock::duration>(std::chrono::nanoseconds(ns)));
    }
    if (phase == WorkerPhase::kAccepting || phase == WorkerPhase::kDraining) w.booted = true;
    if (phase == WorkerPhase::kDraining) w.stopped_accepting = true;
  }
}

// A slot that cannot boot stops its whole generation's respawning.
void Supervisor::HaltGeneration(const WorkerRecord& w, const std::string& last_failure) {
  uint64_t g = w.generation;
  halted_.insert(g);
  for (WorkerRecord& other : workers_) {
    if (other.generation == g && other.pid == 0) other.state = WorkerState::kFailed;
  }
  std::string why = "slot " + Num(w.slot) + " of generation " + Num(g) + " failed to boot " +
                    Count(static_cast<unsigned>(policy_.max_boot_failures), "time") + " in a row (last: " +
                    last_failure + ")";
  if (canary_generation_ && g == *canary_generation_) canary_failure_ = why;
  Log(LogLevel::kError, "worker " + why + "; not respawning generation " + Num(g),
      {{"WORKER_SLOT", Num(w.slot)}, {"GENERATION", Num(g)}});
}

std::vector<std::string> Supervisor::RetiredListeners() const {
  std::vector<std::string> used = ListenerNamesFor(serving_config_);
  if (canary_config_) {
    std::vector<std::string> starting = ListenerNamesFor(*canary_config_);
    used.insert(used.end(), starting.begin(), starting.end());
  }
  std::vector<std::string> retired;
  for (const auto& [name, l] : listeners_) {
    if (std::find(used.begin(), used.end(), name) == used.end()) retired.push_back(name);
  }
  return retired;
}

// Settings of listeners that are kept across a reload, applied once it commits.
void Supervisor::ApplyListenerSettings(const Config& config) {
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
      Log(LogLevel::kWarning, "chmod " + a.path + ": " + std::strerror(errno));
    }
  }
}

void Supervisor::Reap() {
  RefreshPhases();  // a worker that reported accepting and then died did boot
  int status = 0;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    WorkerRecord* w = FindByPid(pid);
    if (!w) continue;
    ExitStatus exit = ExitStatus::FromWaitStatus(status);
    if (w->stats_index >= 0) {
      WorkerStats& s = stats_->at(static_cast<size_t>(w->stats_index));
      retired_connections_ += s.connections_total.load();
      retired_bytes_ += s.bytes_total.load();
      s.SetPhase(WorkerPhase::kFree);
      free_stats_.push_back(w->stats_index);
      w->stats_index = -1;
    }
    bool wanted = !stopping_ && !halted_.count(w->generation) &&
                  (w->generation == serving_generation_ ||
                   (canary_generation_ && w->generation == *canary_generation_));
    ExitDecision d = DecideOnExit(*w, exit, Clock::now(), policy_, wanted);

    std::string who = "worker " + Num(static_cast<uint64_t>(pid)) + " (slot " + Num(w->slot) +
                      ", generation " + Num(w->generation) + ")";
    std::string what = who + " " + exit.Describe();
    bool expected = w->state == WorkerState::kDraining || !wanted;
    // A worker that left cleanly without being asked (someone sent it SIGTERM)
    // is replaced, but it did not fail: a warning, not an error.
    LogLevel level = expected ? (exit.Clean() ? LogLevel::kInfo : LogLevel::kNotice)
                              : (exit.Clean() ? LogLevel::kWarning : LogLevel::kError);
    if (exit.signal == SIGKILL && !w->kill_sent && !w->hung) {
      what += "; SIGKILL from outside often means the OOM killer";
    }
    if (w->hung) what += " after it hung";
    if (!w->booted && !expected) {
      what += " before it was accepting";
      RecordBootFailure(w->generation, Clock::now());
    }
    // The same failure again and again (a crash loop) is logged once per window
    // and then summarized with a count: the pid differs, the story does not.
    std::string story = "generation " + Num(w->generation) + ": " + exit.Describe() +
                        (w->hung ? " after it hung" : "") +
                        (!w->booted && !expected ? " before it was accepting" : "");
    bool log_it = expected || deaths_.Admit(story, Clock::now());
    if (!log_it) death_summaries_[story] = {level, story};
    if (d.kind == ExitDecision::Kind::kRespawn) {
      what += d.delay.count() == 0 ? "; restarting now"
                                   : "; restarting in " + Num(static_cast<uint64_t>(d.delay.count())) + " ms";
    }
    if (log_it) Log(level, what,
        {{"WORKER_PID", Num(static_cast<uint64_t>(pid))}, {"WORKER_SLOT", Num(w->slot)},
         {"GENERATION", Num(w->generation)},
         exit.signal ? LogField{"EXIT_SIGNAL", SignalName(exit.signal)}
                     : LogField{"EXIT_CODE", Num(static_cast<uint64_t>(exit.code))},
         {"COREDUMP", exit.core_dumped ? "1" : "0"}});

    w->pid = 0;
    switch (d.kind) {
      case ExitDecision::Kind::kForget:
        workers_.erase(workers_.begin() + (w - workers_.data()));
        break;
      case ExitDecision::Kind::kRespawn:
        w->state = WorkerState::kBackoff;
        w->failures = d.failures;
        w->boot_failures = d.boot_failures;
        w->restart_at = Clock::now() + d.delay;
        break;
      case ExitDecision::Kind::kGiveUp:
        w->state = WorkerState::kFailed;
        HaltGeneration(*w, exit.Describe());
        break;
    }
  }
}

void Supervisor::SignalWorker(pid_t pid, int sig) {
  WorkerRecord* w = FindByPid(pid);
  if (!w) return;
  if (::kill(pid, sig) != 0 && errno != ESRCH) {
    Log(LogLevel::kWarning, "kill " + Num(static_cast<uint64_t>(pid)) + ": " + std::strerror(errno));
  }
  if (sig == SIGKILL) {
    // A hung worker that outlived its SIGABRT stays a serving one, to be
    // replaced in its slot when it is reaped; any other is on its way out.
    if (!w->hung) w->state = WorkerState::kDraining;
    w->kill_sent = true;
  } else if (w->state != WorkerState::kDraining) {
    w->state = WorkerState::kDraining;
    w->kill_at = Clock::now() + serving_config_.shutdown_timeout;
  }
}

void Supervisor::AbortHung(pid_t pid) {
  WorkerRecord* w = FindByPid(pid);
  if (!w) return;
  auto now = Clock::now();
  auto silent = std::chrono::duration_cast<milliseconds>(now - std::max(w->heartbeat, w->started));
  Log(LogLevel::kError, "worker " + Num(static_cast<uint64_t>(pid)) + " (slot " + Num(w->slot) + ", generation " +
                            Num(w->generation) + ") is hung: no heartbeat for " + Num(static_cast<uint64_t>(silent.count())) +
                            " ms (heartbeat_timeout " + Num(static_cast<uint64_t>(w->heartbeat_timeout.count())) +
                            " ms); sending SIGABRT, then SIGKILL in " +
                            Num(static_cast<uint64_t>(policy_.hung_kill_grace.count())) + " ms",
      {{"WORKER_PID", Num(static_cast<uint64_t>(pid))}, {"WORKER_SLOT", Num(w->slot)},
       {"GENERATION", Num(w->generation)}});
  // SIGCONT too: a stopped worker must run to take the SIGABRT (and dump its core).
  ::kill(pid, SIGABRT);
  ::kill(pid, SIGCONT);
  w->hung = true;
  w->kill_at = now + policy_.hung_kill_grace;
}

// Started as root: the sockets are bound, so become `user` before any worker
// exists. Not root: nothing to drop (systemd's User= or DynamicUser= did it).
Status Supervisor::DropPrivileges(const Config& config) {
  if (geteuid() != 0) {
    if (config.user_set) {
      Log(LogLevel::kDebug, "'user' is ignored: not started as root");
    }
    return OkStatus();
  }
  auto id = ResolveIdentity(config.user, config.group);
  if (!id) return Err() << "cannot drop privileges to user '" << config.user << "': " << id.error().ToString();
  if (id->uid == 0) {
    Log(LogLevel::kWarning, "running as root, as configured (user = \"" + config.user + "\")");
    return OkStatus();
  }
  if (Status s = BecomeIdentity(*id); !s) return s.error();
  identity_ = *id;
  Log(LogLevel::kInfo, "running as " + id->Describe() + ", keeping only the capabilities " +
                           EffectiveCapabilities() + " for reloads; workers keep none");
  return OkStatus();
}

void Supervisor::LogRepeatedDeaths(TimePoint now) {
  for (const RepeatFilter::Summary& summary : deaths_.Flush(now)) {
    auto it = death_summaries_.find(summary.key);
    if (it == death_summaries_.end()) continue;
    Log(it->second.first, "worker of " + it->second.second + ": " + Count(summary.suppressed, "more time") +
                              " within " + Num(static_cast<uint64_t>(kRepeatWindow.count() / 1000)) +
                              " s (repeated messages suppressed)");
    death_summaries_.erase(it);
  }
}

void Supervisor::RecordBootFailure(uint64_t generation, TimePoint now) {
  const Config& config = ConfigOf(generation);
  std::deque<TimePoint>& times = boot_failures_[generation];
  times.push_back(now);
  while (!times.empty() && (config.crash_loop_window.count() <= 0 || now - times.front() >= config.crash_loop_window)) {
    times.pop_front();
  }
  if (times.empty()) boot_failures_.erase(generation);
  if (CrashLoopEngaged(times, now, config.crash_loop_failures, config.crash_loop_window) &&
      governed_.insert(generation).second) {
    Log(LogLevel::kWarning, "crash loop: generation " + Num(generation) + " had " +
                                Count(times.size(), "boot failure") + " within " +
                                Num(static_cast<uint64_t>(config.crash_loop_window.count())) +
                                " ms; forking at most one of its workers per second",
        {{"GENERATION", Num(generation)}});
  }
}

void Supervisor::AnswerQueuedRequestsToo() {
  for (UniqueFd& fd : reload_next_answer_to_) reload_answer_to_.push_back(std::move(fd));
  reload_next_answer_to_.clear();
}

// What sigqueue(3) sends, through the requester's pidfd. (syscall(2): the
// <sys/pidfd.h> of Debian 12's glibc 2.36 lacks extern "C" for C++.)
void Supervisor::AnswerReload(int answer) {
  for (const UniqueFd& fd : reload_answer_to_) {
    siginfo_t info;
    std::memset(&info, 0, sizeof info);
    info.si_signo = ReloadAnswerSignal();
    info.si_code = SI_QUEUE;
    info.si_pid = self_;
    info.si_uid = getuid();
    info.si_value.sival_int = answer;
    if (syscall(SYS_pidfd_send_signal, fd.get(), ReloadAnswerSignal(), &info, 0) != 0 && errno != ESRCH) {
      Log(LogLevel::kWarning, std::string("answering a reload request: ") + std::strerror(errno));
    }
  }
  reload_answer_to_.clear();
}

void Supervisor::Promote(uint64_t generation) {
  bool first = serving_generation_ == 0;
  serving_config_ = std::move(*canary_config_);
  serving_generation_ = generation;
  canary_config_.reset();
  canary_generation_.reset();
  ConfigureLogging(serving_config_.log_level, serving_config_.log_target);
  ApplyListenerSettings(serving_config_);

  // Retire every older generation: drain, then kill at the deadline.
  std::vector<pid_t> old;
  for (const WorkerRecord& w : workers_) {
    if (w.generation != generation && w.pid > 0) old.push_back(w.pid);
  }
  std::erase_if(workers_, [&](const WorkerRecord& w) { return w.generation != generation && w.pid == 0; });
  for (pid_t pid : old) SignalWorker(pid, SIGTERM);
  std::erase_if(boot_failures_, [&](const auto& e) { return e.first < generation; });
  std::erase_if(last_fork_, [&](const auto& e) { return e.first < generation; });

  if (first) {
    Log(LogLevel::kInfo, "ready: " + Count(canary_size_, "worker") + " of generation " + Num(generation) +
                             " accepting", {{"GENERATION", Num(generation)}});
  } else {
    last_reload_ = "ok (generation " + Num(generation) + ")";
    Log(LogLevel::kNotice, "reload complete: generation " + Num(generation) + " serving with " +
                               Count(canary_size_, "worker") + "; retiring " + Count(old.size(), "old worker"), {{"GENERATION", Num(generation)}});
    AnswerReload(static_cast<int>(generation));
  }
  notify_.Ready(StatusLine());
  if (reload_queued_) {
    reload_queued_ = false;
    Reload();
  }
}

void Supervisor::Abandon(uint64_t generation) {
  std::string why = canary_failure_.empty() ? "its workers were not all accepting within " +
                                                  Num(static_cast<uint64_t>(policy_.boot_timeout.count() / 1000)) + " s"
                                            : canary_failure_;
  // New workers that already accept may hold clients: they drain like any
  // retired worker. Those that never booted are killed.
  for (WorkerRecord& w : workers_) {
    if (w.generation == generation && w.pid > 0) SignalWorker(w.pid, w.booted ? SIGTERM : SIGKILL);
  }
  std::erase_if(workers_, [&](const WorkerRecord& w) { return w.generation == generation && w.pid == 0; });
  // Listeners only this canary used are now retired: the plan closes them.
  canary_config_.reset();
  canary_generation_.reset();
  canary_failure_.clear();
  boot_failures_.erase(generation);
  last_fork_.erase(generation);
  if (serving_generation_ == 0 || halted_.count(serving_generation_)) {
    Log(LogLevel::kError, "workers cannot boot: " + why + "; giving up", {{"GENERATION", Num(generation)}});
    return;
  }
  last_reload_ = "failed: new workers did not boot";
  Log(LogLevel::kError, "reload failed: generation " + Num(generation) + " abandoned (" + why +
                            "); generation " + Num(serving_generation_) + " keeps serving",
      {{"GENERATION", Num(generation)}});
  AnswerReload(kReloadBootFailed);
  notify_.Ready(StatusLine());
  if (reload_queued_) {
    reload_queued_ = false;
    Reload();
  }
}

void Supervisor::CloseRetiredListeners() {
  for (const std::string& n : RetiredListeners()) {
    Log(LogLevel::kInfo, "closing listener " + n + " (no longer configured)");
    listeners_.erase(n);
  }
}

void Supervisor::KillAllAndReap() {
  for (const WorkerRecord& w : workers_) {
    if (w.pid > 0) ::kill(w.pid, SIGKILL);
  }
  for (const WorkerRecord& w : workers_) {
    if (w.pid > 0) {
      while (waitpid(w.pid, nullptr, 0) < 0 && errno == EINTR) {
      }
    }
  }
  workers_.clear();
}

void Supervisor::ExecutePlan() {
  // Each action changes the table, so re-planning converges.
  for (int rounds = 0; rounds < 16 && !exit_code_; ++rounds) {
    RefreshPhases();
    auto now = Clock::now();
    std::vector<Action> actions = Plan(View(now), now);
    if (actions.empty()) return;
    for (const Action& a : actions) {
      switch (a.kind) {
        case Action::Kind::kSpawn:
          for (WorkerRecord& w : workers_) {
            if (w.slot == a.slot && w.generation == a.generation && w.state == WorkerState::kBackoff) {
              Spawn(w);
              break;
            }
          }
          break;
        case Action::Kind::kSignal: SignalWorker(a.pid, a.signal); break;
        case Action::Kind::kAbortHung: AbortHung(a.pid); break;
        case Action::Kind::kPromote: Promote(a.generation); break;
        case Action::Kind::kAbandon: Abandon(a.generation); break;
        case Action::Kind::kCloseRetired: CloseRetiredListeners(); break;
        case Action::Kind::kExit:
          if (a.exit_code != kExitOk) KillAllAndReap();
          exit_code_ = a.exit_code;
          return;
      }
    }
  }
}

void Supervisor::Reload() {
  if (stopping_) return;
  if (canary_generation_) {
    reload_queued_ = true;  // one generation proves itself at a time
    return;
  }
  // Whoever asked for this reload (or while the last one was in progress) gets its answer.
  AnswerQueuedRequestsToo();
  notify_.Reloading();
  Log(LogLevel::kInfo, "reloading configuration from " + options_.config_path,
      {{"CONFIG_FILE", options_.config_path}});
  std::optional<Config> config = ReadConfig(/*at_start=*/false);
  if (!config) {
    Log(LogLevel::kError, "reload failed: " + options_.config_path +
                              (config_unreadable_ ? " cannot be read" : " is invalid") + "; keeping generation " +
                              Num(serving_generation_) + " and its configuration",
        {{"CONFIG_FILE", options_.config_path}});
    notify_.Ready(StatusLine());
    AnswerReload(config_unreadable_ ? kReloadUnreadable : kReloadInvalidConfig);
    return;
  }
  if (Status s = OpenListeners(*config); !s) {
    last_reload_ = "failed: " + s.error().ToString();
    Log(LogLevel::kError, "reload failed: " + s.error().ToString() + "; keeping generation " +
                              Num(serving_generation_));
    notify_.Ready(StatusLine());
    AnswerReload(kReloadCannotListen);
    return;
  }
  if (identity_ && (config->user != identity_->user || (!config->group.empty() && config->group != identity_->group))) {
    Log(LogLevel::kWarning, "'user'/'group' changes need a restart; still running as " + identity_->Describe());
  }
  StartGeneration(*config);
}

void Supervisor::BeginStop(bool immediately) {
  if (!stopping_) {
    notify_.Stopping();
    Log(LogLevel::kNotice, immediately ? "stopping now" : "stopping gracefully: draining workers");
  }
  stopping_ = true;
  reload_queued_ = false;
  AnswerQueuedRequestsToo();
  AnswerReload(kReloadStopping);
  // Refuse new clients now instead of letting the kernel queue connections
  // that nobody will accept. Sockets from systemd stay: it keeps their queue
  // for the next start.
  if (!activated_) listeners_.clear();
  if (immediately) {
    for (WorkerRecord& w : workers_) {
      if (w.pid > 0) SignalWorker(w.pid, SIGKILL);
    }
  }
}

void Supervisor::OnSignals() {
  signalfd_siginfo si{};
  while (read(signals_.get(), &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
    // A real-time signal, so requests queue instead of merging with a pending SIGHUP.
    if (static_cast<int>(si.ssi_signo) == ReloadRequestSignal()) {
      if (si.ssi_code != SI_QUEUE || si.ssi_int != kReloadRequest) {
        OnStraySignal(si);
        continue;
      }
      // A requester already gone (ESRCH) gets no answer; the reload still runs.
      if (int fd = static_cast<int>(syscall(SYS_pidfd_open, static_cast<pid_t>(si.ssi_pid), 0)); fd >= 0) reload_next_answer_to_.emplace_back(fd);
      si.ssi_signo = SIGHUP;
    }
    switch (si.ssi_signo) {
      case SIGCHLD: Reap(); break;
      case SIGHUP:
        Reload();
        if (stopping_) {
          reload_answer_to_ = std::move(reload_next_answer_to_);
          reload_next_answer_to_.clear();
          AnswerReload(kReloadStopping);
        }
        break;
      case SIGTERM:
      case SIGINT: BeginStop(false); break;
      case SIGQUIT: BeginStop(true); break;
      case SIGUSR1:
      case SIGUSR2:
        // nginx reopens log files on USR1; rot13d writes no files, so a
        // logrotate habit must be harmless.
        Log(LogLevel::kNotice, SignalName(static_cast<int>(si.ssi_signo)) + " ignored (rot13d has no log files to reopen)");
        break;
      case SIGCONT:
        // systemd follows every stop's SIGTERM with a SIGCONT (so that a
        // stopped process sees it); continuing needs nothing from us.
        break;
      default: OnStraySignal(si); break;
    }
  }
}

// A signal that would have killed or stopped us by default (SIGALRM from a
// stray alarm(1), SIGTTIN from a shell, SIGRTMIN+2...) is ignored, and said once.
void Supervisor::OnStraySignal(const signalfd_siginfo& si) {
  std::string name = SignalName(static_cast<int>(si.ssi_signo));
  if (!stray_signals_.Admit(name, Clock::now())) return;
  Log(LogLevel::kWarning, "ignoring unexpected " + name + " from pid " + Num(si.ssi_pid) + " (uid " +
                              Num(si.ssi_uid) + "); repeats within " +
                              Num(static_cast<uint64_t>(kStraySignalWindow.count() / 1000)) + " s are counted",
      {{"SIGNAL", name}, {"SENDER_PID", Num(si.ssi_pid)}});
}

std::string Supervisor::StatusLine() const {
  uint64_t open = 0, total = retired_connections_, bytes = retired_bytes_;
  int live = 0;
  for (const WorkerRecord& w : workers_) {
    if (w.stats_index < 0) continue;
    const WorkerStats& s = stats_->at(static_cast<size_t>(w.stats_index));
    open += s.open_connections.load(std::memory_order_relaxed);
    total += s.connections_total.load(std::memory_order_relaxed);
    bytes += s.bytes_total.load(std::memory_order_relaxed);
    if (w.generation == serving_generation_ && w.pid > 0) ++live;
  }
  std::string line = Count(static_cast<unsigned>(live), "worker") + " (generation " + Num(serving_generation_) +
                     "); " + Count(open, "open connection") + "; " + Num(total) + " served, " +
                     HumanBytes(bytes) + "; last reload: " + last_reload_;
  if (stopping_) line = "stopping; " + line;
  return line;
}

void Supervisor::Tick() {
  auto now = Clock::now();
  if (now - last_tick_ >= kStatusInterval) {
    last_tick_ = now;
    notify_.Status(StatusLine());
    LogRepeatedDeaths(now);
    for (const RepeatFilter::Summary& summary : stray_signals_.Flush(now)) {
      Log(LogLevel::kWarning, "ignored " + summary.key + " " + Count(summary.suppressed, "more time") + " within " +
                                  Num(static_cast<uint64_t>(kStraySignalWindow.count() / 1000)) + " s");
    }
  }
  auto wd = notify_.watchdog_interval();
  // Sent from the loop itself, and only while no worker is hung unnoticed.
  if (wd.count() > 0 && now - last_watchdog_ >= wd / 2 && WatchdogHealthy(View(now), now)) {
    last_watchdog_ = now;
    notify_.Watchdog();  // sent from the loop itself: it proves the loop turns
  }
}

void Supervisor::ArmTimer() {
  auto now = Clock::now();
  TimePoint next = now + kStatusInterval;
  if (auto wd = notify_.watchdog_interval(); wd.count() > 0) {
    next = std::min(next, last_watchdog_ + std::chrono::duration_cast<Clock::duration>(wd / 2));
  }
  if (auto d = NextDeadline(View(now))) next = std::min(next, *d);
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(next - now).count();
  if (ns < 1) ns = 1;  // zero would disarm the timer
  itimerspec spec{};
  spec.it_value.tv_sec = ns / 1000000000;
  spec.it_value.tv_nsec = ns % 1000000000;
  timerfd_settime(timer_.get(), 0, &spec, nullptr);
}

int Supervisor::Run() {
  if (Status s = SetUp(); !s) {
    Log(LogLevel::kError, "start-up failed: " + s.error().ToString());
    return kExitFailure;
  }
  std::optional<Config> config = ReadConfig(/*at_start=*/true);
  if (!config) {
    Log(LogLevel::kError, "not starting: " + options_.config_path +
                              (config_unreadable_ ? " cannot be read" : " is invalid"),
        {{"CONFIG_FILE", options_.config_path}});
    return kExitConfig;
  }
  ConfigureLogging(config->log_level, config->log_target);
  serving_config_ = *config;

  auto activated = TakeActivatedListeners();
  if (!activated) {
    Log(LogLevel::kError, activated.error().ToString());
    return kExitFailure;
  }
  activated_ = !activated->empty();
  for (Listener& l : *activated) {
    Log(LogLevel::kInfo, "using socket-activated listener " + l.name());
    std::string name = l.name();
    listeners_.emplace(name, std::move(l));
  }
  if (Status s = OpenListeners(*config); !s) {
    Log(LogLevel::kError, "cannot listen: " + s.error().ToString());
    return kExitFailure;
  }
  if (Status s = DropPrivileges(*config); !s) {
    Log(LogLevel::kError, "not starting: " + s.error().ToString());
    return kExitConfig;
  }
  StartGeneration(*config);

  constexpr int kMaxEvents = 8;
  epoll_event events[kMaxEvents];
  while (true) {
    // Again each turn: glibc's sigprocmask, which NSS modules call around a
    // user lookup (nss_systemd does), unblocks signals 32 and 33 when it
    // restores a mask, and those would kill us.
    if (Status s = SetSignalMask(kSupervisorSignals); !s) Log(LogLevel::kError, s.error().ToString());
    ExecutePlan();
    if (exit_code_) break;
    Tick();
    ArmTimer();
    int n = epoll_wait(epoll_.get(), events, kMaxEvents, -1);
    if (n < 0 && errno != EINTR) {
      Log(LogLevel::kError, std::string("epoll_wait: ") + std::strerror(errno));
      KillAllAndReap();
      return kExitFailure;
    }
    for (int i = 0; i < n; ++i) {
      uint64_t drained = 0;
      switch (events[i].data.u64) {
        case kTagSignal: OnSignals(); break;
        case kTagTimer: (void)!read(timer_.get(), &drained, sizeof drained); break;
        case kTagReady: (void)!read(ready_.get(), &drained, sizeof drained); break;
      }
    }
  }
  LogRepeatedDeaths(Clock::now() + kRepeatWindow);  // the counts not told yet
  if (*exit_code_ == kExitOk) Log(LogLevel::kNotice, "stopped");
  listeners_.clear();  // closes sockets and removes the socket files we created
  return *exit_code_;
}

}  // namespace

int Run(const Options& options) {
  Supervisor supervisor(options);
  return supervisor.Run();
}

}  // namespace rot13d::supervisor
