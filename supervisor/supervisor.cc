#include "supervisor/supervisor.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <optional>
#include <vector>

#include "common/capabilities.h"
#include "common/config.h"
#include "common/exit_codes.h"
#include "common/log.h"
#include "common/signals.h"
#include "common/stats.h"
#include "daemon/worker.h"
#include "supervisor/cpus.h"
#include "supervisor/generation.h"
#include "supervisor/listeners.h"
#include "supervisor/notify.h"
#include "supervisor/planner.h"
#include "supervisor/privileges.h"
#include "supervisor/reload_request.h"
#include "supervisor/repeat_log.h"
#include "supervisor/status_line.h"

namespace rot13d::supervisor {
namespace {

// Room for a serving generation, a canary and draining ones at the maximum size.
constexpr size_t kStatsSlots = 4 * kMaxWorkers + 64;
constexpr milliseconds kStatusInterval{1000};
// Identical worker-death messages: the first few in a window are logged, the
// rest counted and summarized when it closes (a crash loop cannot flood the journal).
constexpr milliseconds kRepeatWindow{10000};
constexpr uint64_t kRepeatBurst = 5;
// A signal rot13d does not use is logged once per window per signal.
constexpr milliseconds kStraySignalWindow{60000};
// Each action changes the table, so re-planning settles in a few rounds; more
// than this is a bug, said out loud rather than spun on.
constexpr int kMaxPlanRounds = 64;

enum : uint64_t { kTagSignal = 1, kTagTimer, kTagReady };

// All but SIGABRT (see SetUp) and SIGPIPE (ignored). Real faults (SIGSEGV...)
// are delivered whatever the mask; only a stray kill(2) of them is caught.
const SignalSet kSupervisorSignals = SignalSet::AllBlockable().Without({SIGABRT, SIGPIPE});

std::string Num(uint64_t v) { return std::to_string(v); }

std::vector<LogField> WorkerFields(pid_t pid, const WorkerRecord& w) {
  return {{"WORKER_PID", Num(static_cast<uint64_t>(pid))}, {"WORKER_SLOT", Num(w.slot)},
          {"GENERATION", Num(w.generation)}};
}

class Supervisor {
 public:
  explicit Supervisor(Options options) : options_(std::move(options)) {}
  int Run();

 private:
  // Set-up.
  Status SetUp();
  std::optional<Config> ReadConfig(bool at_start);
  Status DropPrivileges(const Config& config);
  void StartGeneration(const Config& config);

  // Events.
  void OnSignals();
  void OnStraySignal(const signalfd_siginfo& si);
  void Reap();
  void ApplyExit(WorkerRecord& w, pid_t pid, const ExitStatus& exit);
  bool ReloadDue() const { return reload_pending_ && !canary_ && !stopping_; }
  void StartReload();
  void FailReload(int answer, const std::string& why);
  void BeginStop(bool immediately);
  void RefreshPhases();

  // The executor: performs what the planner decided, and logs it.
  void ExecutePlan();
  void Perform(const Action& a);
  void Spawn(WorkerRecord& w);
  [[noreturn]] void RunChild(const Config& config, WorkerStats& stats);
  void ReleaseStats(WorkerRecord& w);
  void SignalWorker(pid_t pid, int sig);
  void AbortHung(pid_t pid);
  void HaltGeneration(const WorkerRecord& w, const std::string& reason);
  void Promote();
  void Abandon();
  void CloseRetiredListeners();
  void KillAllAndReap();

  SupervisorView View(TimePoint now) const;
  WorkerRecord* FindByPid(pid_t pid);
  // The generation a worker belongs to; a retiring one's settings are the serving one's.
  Generation& GenerationOf(uint64_t id) { return canary_ && canary_->id == id ? *canary_ : serving_; }
  std::vector<const Config*> ConfigsInForce() const;
  std::string StatusLine() const;
  void Tick();
  void ArmTimer();

  Options options_;
  RestartPolicy policy_;
  Notifier notify_;
  pid_t self_ = getpid();

  UniqueFd epoll_, signals_, timer_, ready_;
  UniqueFd nudge_;  // workers' shared doorbell for accept balance (see daemon/worker.h)
  std::optional<StatsTable> stats_;
  std::vector<int> free_stats_;
  ListenerSet listeners_;

  Generation serving_;
  std::optional<Generation> canary_;
  uint64_t next_generation_ = 1;
  std::vector<WorkerRecord> workers_;

  bool stopping_ = false;
  bool reload_pending_ = false;  // asked for; starts at the top of a loop turn once no canary is out
  std::optional<int> exit_code_;
  std::string last_reload_ = "none";
  bool config_unreadable_ = false;  // the last ReadConfig failed to read the file at all
  uint64_t retired_connections_ = 0;  // of workers gone, for the status line
  uint64_t retired_bytes_ = 0;
  TimePoint last_tick_{};
  TimePoint last_watchdog_{};

  RepeatLog deaths_{kRepeatWindow, kRepeatBurst};
  RepeatLog strays_{kStraySignalWindow, 1};
  ReloadRequesters requesters_{self_};
  std::optional<Identity> identity_;  // who we became after binding, when started as root
};

Status Supervisor::SetUp() {
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

  // Each connection is a descriptor: use the hard limit the service manager
  // allows. Failing that, the soft limit stands: not worth refusing to start.
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &nofile) != 0) Log(LogLevel::kWarning, Error(ErrnoErr() << "setrlimit").ToString());
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

// A new generation starts as the canary: its workers are spawned now, and it
// takes over only once every one of them is accepting.
void Supervisor::StartGeneration(const Config& config) {
  auto now = Clock::now();
  canary_.emplace();
  canary_->id = next_generation_++;
  canary_->config = config;
  canary_->size = config.workers > 0 ? config.workers : AutoWorkerCount();
  canary_->deadline = now + policy_.boot_timeout;
  for (int slot = 0; slot < canary_->size; ++slot) {
    // Due at once: the planner spawns it.
    workers_.push_back({.slot = slot, .generation = canary_->id, .state = WorkerState::kBackoff, .restart_at = now});
  }
  Log(LogLevel::kInfo, "starting generation " + Num(canary_->id) + " with " + Count(canary_->size, "worker"),
      {{"GENERATION", Num(canary_->id)}});
}

std::vector<const Config*> Supervisor::ConfigsInForce() const {
  std::vector<const Config*> in_force{&serving_.config};
  if (canary_) in_force.push_back(&canary_->config);
  return in_force;
}

SupervisorView Supervisor::View(TimePoint now) const {
  SupervisorView v;
  for (const Generation* g : {&serving_, canary_ ? &*canary_ : nullptr}) {
    if (!g) continue;
    if (auto next = g->NextGovernedFork(now, policy_.governed_fork_interval)) v.next_governed_fork[g->id] = *next;
  }
  v.workers = &workers_;
  v.serving_generation = serving_.id;
  if (canary_) {
    v.canary_generation = canary_->id;
    v.canary_size = canary_->size;
    v.canary_deadline = canary_->deadline;
    v.canary_halted = canary_->halted;
  }
  v.serving_halted = serving_.halted;
  v.stopping = stopping_;
  v.retired_listeners = !listeners_.Unused(ConfigsInForce()).empty();
  return v;
}

WorkerRecord* Supervisor::FindByPid(pid_t pid) {
  auto it = std::find_if(workers_.begin(), workers_.end(), [pid](const WorkerRecord& w) { return w.pid == pid; });
  return it == workers_.end() ? nullptr : &*it;
}

void Supervisor::Spawn(WorkerRecord& w) {
  Generation& g = GenerationOf(w.generation);
  if (free_stats_.empty()) {
    Log(LogLevel::kError, "no free worker counter slot; retrying slot " + Num(w.slot) + " later");
    w.restart_at = Clock::now() + policy_.max_delay;
    return;
  }
  w.stats_index = free_stats_.back();
  free_stats_.pop_back();
  WorkerStats& stats = stats_->at(static_cast<size_t>(w.stats_index));
  stats.open_connections.store(0);
  stats.connections_total.store(0);
  stats.bytes_total.store(0);
  stats.heartbeat_ns.store(0);
  stats.SetPhase(WorkerPhase::kBooting);
  auto now = Clock::now();
  g.last_fork = now;
  w.started = now;
  pid_t pid = fork();
  if (pid == 0) RunChild(g.config, stats);
  if (pid < 0) {
    // A fork that fails is a boot that fails: same backoff, same give-up.
    ExitStatus failed = ExitStatus::ForkFailed(errno);
    ReleaseStats(w);
    ApplyExit(w, 0, failed);
    return;
  }
  w.pid = pid;
  w.state = WorkerState::kRunning;
  w.booted = w.hung = w.kill_sent = w.stopped_accepting = false;
  w.heartbeat = {};
  w.heartbeat_timeout = g.config.heartbeat_timeout;
  Log(LogLevel::kDebug, "worker " + Num(static_cast<uint64_t>(pid)) + " started in slot " + Num(w.slot) +
                            " of generation " + Num(w.generation),
      {{"WORKER_PID", Num(static_cast<uint64_t>(pid))}, {"WORKER_SLOT", Num(w.slot)},
       {"GENERATION", Num(w.generation)}});
}

// The child of a fork, on its way to daemon::RunWorker. Nothing here returns:
// supervisor objects are never destroyed in the child (that would unlink
// socket files), it leaves with _exit. It closes what only the supervisor may
// hold; signals stay blocked as the supervisor had them until RunWorker sets
// the worker's own mask, dispositions and (no) privileges.
void Supervisor::RunChild(const Config& config, WorkerStats& stats) {
  epoll_.reset();
  signals_.reset();
  timer_.reset();
  requesters_.Forget();
  ConfigureLogging(config.log_level, config.log_target);  // a canary logs as its config says
  daemon::WorkerParams params = daemon::ParamsFor(config);
  std::vector<std::string> mine = listeners_.NamesFor(config);
  for (auto& [name, listener] : listeners_.all()) {
    UniqueFd fd = listener.TakeForChild();  // ours to close if not ours to serve
    if (std::find(mine.begin(), mine.end(), name) != mine.end()) params.listeners.push_back(std::move(fd));
  }
  params.stats = &stats;
  params.all_stats = &stats_->at(0);
  params.all_stats_count = stats_->size();
  params.ready_fd = ready_.borrow();
  params.nudge_fd = nudge_.borrow();
  params.supervisor_pid = self_;
  _exit(daemon::RunWorker(std::move(params)));
}

void Supervisor::ReleaseStats(WorkerRecord& w) {
  if (w.stats_index < 0) return;
  WorkerStats& s = stats_->at(static_cast<size_t>(w.stats_index));
  retired_connections_ += s.connections_total.load();
  retired_bytes_ += s.bytes_total.load();
  s.SetPhase(WorkerPhase::kFree);
  free_stats_.push_back(w.stats_index);
  w.stats_index = -1;
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

void Supervisor::Reap() {
  RefreshPhases();  // a worker that reported accepting and then died did boot
  int status = 0;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    WorkerRecord* w = FindByPid(pid);
    if (!w) continue;
    ReleaseStats(*w);
    ApplyExit(*w, pid, ExitStatus::FromWaitStatus(status));
  }
}

// Wait, decide, apply: the planner decides what the death means and how it
// is told; this applies it to the table and the log.
void Supervisor::ApplyExit(WorkerRecord& w, pid_t pid, const ExitStatus& exit) {
  auto now = Clock::now();
  const bool wanted = RespawnWanted(View(now), w.generation);
  const ExitDecision d = DecideOnExit(w, exit, now, policy_, wanted);
  const DeathNote note = DescribeDeath(w, pid, exit, d, wanted);
  Generation& g = GenerationOf(w.generation);
  if (note.boot_failure &&
      g.boot_failures.Record(now, g.config.crash_loop_failures, g.config.crash_loop_window)) {
    Log(LogLevel::kWarning, "crash loop: generation " + Num(g.id) + " had " +
                                Count(g.boot_failures.count(), "boot failure") + " within " +
                                Num(static_cast<uint64_t>(g.config.crash_loop_window.count())) +
                                " ms; forking at most one of its workers per second",
        {{"GENERATION", Num(g.id)}});
  }
  // The same failure again and again (a crash loop) is logged once per window
  // and then summarized with a count.
  if (!note.repeatable || deaths_.Admit(note.story, note.level, "worker of " + note.story, now)) {
    std::vector<LogField> fields = WorkerFields(pid, w);
    fields.push_back(exit.signal ? LogField{"EXIT_SIGNAL", SignalName(exit.signal)}
                                 : LogField{"EXIT_CODE", Num(static_cast<uint64_t>(exit.code))});
    fields.push_back({"COREDUMP", exit.core_dumped ? "1" : "0"});
    Log(note.level, note.text, fields);
  }
  w.pid = 0;
  switch (d.kind) {
    case ExitDecision::Kind::kForget: workers_.erase(workers_.begin() + (&w - workers_.data())); break;
    case ExitDecision::Kind::kRespawn:
      w.state = WorkerState::kBackoff;
      w.failures = d.failures;
      w.boot_failures = d.boot_failures;
      w.restart_at = now + d.delay;
      break;
    case ExitDecision::Kind::kGiveUp:
      w.state = WorkerState::kFailed;
      HaltGeneration(w, GiveUpReason(w, exit, policy_));
      break;
  }
}

// A slot that cannot boot stops its whole generation's respawning.
void Supervisor::HaltGeneration(const WorkerRecord& w, const std::string& reason) {
  Generation& g = GenerationOf(w.generation);
  g.halted = true;
  g.failure = reason;
  for (WorkerRecord& other : workers_) {
    if (other.generation == g.id && other.pid == 0) other.state = WorkerState::kFailed;
  }
  Log(LogLevel::kError, "worker " + reason + "; not respawning generation " + Num(g.id),
      {{"WORKER_SLOT", Num(w.slot)}, {"GENERATION", Num(g.id)}});
}

void Supervisor::SignalWorker(pid_t pid, int sig) {
  WorkerRecord* w = FindByPid(pid);
  if (!w) return;
  if (::kill(pid, sig) != 0 && errno != ESRCH) {
    Log(LogLevel::kWarning, Error(ErrnoErr() << "kill " << pid).ToString());
  }
  if (sig == SIGKILL) {
    // A hung worker that outlived its SIGABRT stays a serving one, to be
    // replaced in its slot when it is reaped; any other is on its way out.
    if (!w->hung) w->state = WorkerState::kDraining;
    w->kill_sent = true;
  } else if (w->state != WorkerState::kDraining) {
    w->state = WorkerState::kDraining;
    w->kill_at = Clock::now() + serving_.config.shutdown_timeout;
  }
}

void Supervisor::AbortHung(pid_t pid) {
  WorkerRecord* w = FindByPid(pid);
  if (!w) return;
  auto now = Clock::now();
  auto silent = std::chrono::duration_cast<milliseconds>(now - std::max(w->heartbeat, w->started));
  Log(LogLevel::kError, "worker " + Num(static_cast<uint64_t>(pid)) + " (slot " + Num(w->slot) + ", generation " +
                            Num(w->generation) + ") is hung: no heartbeat for " +
                            Num(static_cast<uint64_t>(silent.count())) + " ms (heartbeat_timeout " +
                            Num(static_cast<uint64_t>(w->heartbeat_timeout.count())) +
                            " ms); sending SIGABRT, then SIGKILL in " +
                            Num(static_cast<uint64_t>(policy_.hung_kill_grace.count())) + " ms",
      WorkerFields(pid, *w));
  // SIGCONT too: a stopped worker must run to take the SIGABRT (and dump its core).
  for (int sig : {SIGABRT, SIGCONT}) {
    if (::kill(pid, sig) != 0 && errno != ESRCH) {
      Log(LogLevel::kWarning, Error(ErrnoErr() << "kill " << pid).ToString());
    }
  }
  w->hung = true;
  w->kill_at = now + policy_.hung_kill_grace;
}

// Started as root: the sockets are bound, so become `user` before any worker
// exists. Not root: nothing to drop (systemd's User= or DynamicUser= did it).
Status Supervisor::DropPrivileges(const Config& config) {
  if (geteuid() != 0) {
    if (config.user_set) Log(LogLevel::kDebug, "'user' is ignored: not started as root");
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

void Supervisor::Promote() {
  bool first = serving_.id == 0;
  serving_ = std::move(*canary_);
  canary_.reset();
  ConfigureLogging(serving_.config.log_level, serving_.config.log_target);
  listeners_.ApplySettings(serving_.config);

  // Retire every older generation: drain, then kill at the deadline.
  std::vector<pid_t> old;
  for (const WorkerRecord& w : workers_) {
    if (w.generation != serving_.id && w.pid > 0) old.push_back(w.pid);
  }
  std::erase_if(workers_, [&](const WorkerRecord& w) { return w.generation != serving_.id && w.pid == 0; });
  for (pid_t pid : old) SignalWorker(pid, SIGTERM);

  if (first) {
    Log(LogLevel::kInfo, "ready: " + Count(serving_.size, "worker") + " of generation " + Num(serving_.id) +
                             " accepting", {{"GENERATION", Num(serving_.id)}});
  } else {
    last_reload_ = "ok (generation " + Num(serving_.id) + ")";
    Log(LogLevel::kNotice, "reload complete: generation " + Num(serving_.id) + " serving with " +
                               Count(serving_.size, "worker") + "; retiring " + Count(old.size(), "old worker"),
        {{"GENERATION", Num(serving_.id)}});
    requesters_.Answer(static_cast<int>(serving_.id));
  }
  notify_.Ready(StatusLine());
}

// The planner has signalled the canary's workers; what is left is the record.
void Supervisor::Abandon() {
  Generation g = std::move(*canary_);
  canary_.reset();
  std::string why = g.failure.empty() ? "its workers were not all accepting within " +
                                            Num(static_cast<uint64_t>(policy_.boot_timeout.count() / 1000)) + " s"
                                      : g.failure;
  std::erase_if(workers_, [&](const WorkerRecord& w) { return w.generation == g.id && w.pid == 0; });
  if (serving_.id == 0 || serving_.halted) {
    Log(LogLevel::kError, "workers cannot boot: " + why + "; giving up", {{"GENERATION", Num(g.id)}});
    return;
  }
  last_reload_ = "failed: new workers did not boot";
  Log(LogLevel::kError, "reload failed: generation " + Num(g.id) + " abandoned (" + why + "); generation " +
                            Num(serving_.id) + " keeps serving",
      {{"GENERATION", Num(g.id)}});
  requesters_.Answer(kReloadBootFailed);
  notify_.Ready(StatusLine());
}

void Supervisor::CloseRetiredListeners() {
  for (const std::string& n : listeners_.Unused(ConfigsInForce())) {
    Log(LogLevel::kInfo, "closing listener " + n + " (no longer configured)");
    listeners_.Close(n);
  }
}

void Supervisor::KillAllAndReap() {
  for (const WorkerRecord& w : workers_) {
    if (w.pid > 0 && ::kill(w.pid, SIGKILL) != 0 && errno != ESRCH) {
      Log(LogLevel::kWarning, Error(ErrnoErr() << "kill " << w.pid).ToString());
    }
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
  for (int round = 0; !exit_code_; ++round) {
    RefreshPhases();
    auto now = Clock::now();
    std::vector<Action> actions = Plan(View(now), now);
    if (actions.empty()) return;
    if (round == kMaxPlanRounds) {
      Log(LogLevel::kError, "the plan did not settle after " + Num(kMaxPlanRounds) +
                                " rounds; carrying on at the next event (a bug: please report it)");
      return;
    }
    for (const Action& a : actions) {
      Perform(a);
      if (exit_code_) return;
    }
  }
}

void Supervisor::Perform(const Action& a) {
  switch (a.kind) {
    case Action::Kind::kSpawn: {
      auto it = std::find_if(workers_.begin(), workers_.end(), [&](const WorkerRecord& w) {
        return w.slot == a.slot && w.generation == a.generation && w.state == WorkerState::kBackoff;
      });
      if (it != workers_.end()) Spawn(*it);
      break;
    }
    case Action::Kind::kSignal: SignalWorker(a.pid, a.signal); break;
    case Action::Kind::kAbortHung: AbortHung(a.pid); break;
    case Action::Kind::kPromote: Promote(); break;
    case Action::Kind::kAbandon: Abandon(); break;
    case Action::Kind::kCloseRetired: CloseRetiredListeners(); break;
    case Action::Kind::kExit:
      if (a.exit_code != kExitOk) KillAllAndReap();
      exit_code_ = a.exit_code;
      break;
  }
}

// At the top of a loop turn, never from inside the executor: a reload asked
// for while a canary was out waits for it to settle.
void Supervisor::StartReload() {
  reload_pending_ = false;
  requesters_.StartReload();  // whoever asked until now gets this reload's answer
  notify_.Reloading();
  Log(LogLevel::kInfo, "reloading configuration from " + options_.config_path,
      {{"CONFIG_FILE", options_.config_path}});
  std::optional<Config> config = ReadConfig(/*at_start=*/false);
  if (!config) {
    return FailReload(config_unreadable_ ? kReloadUnreadable : kReloadInvalidConfig,
                      options_.config_path + (config_unreadable_ ? " cannot be read" : " is invalid"));
  }
  if (Status s = listeners_.Open(*config, options_.config_path); !s) {
    last_reload_ = "failed: " + s.error().ToString();
    return FailReload(kReloadCannotListen, s.error().ToString());
  }
  if (identity_ && (config->user != identity_->user || (!config->group.empty() && config->group != identity_->group))) {
    Log(LogLevel::kWarning, "'user'/'group' changes need a restart; still running as " + identity_->Describe());
  }
  StartGeneration(*config);
}

void Supervisor::FailReload(int answer, const std::string& why) {
  Log(LogLevel::kError, "reload failed: " + why + "; keeping generation " + Num(serving_.id) +
                            " and its configuration",
      {{"CONFIG_FILE", options_.config_path}});
  notify_.Ready(StatusLine());
  requesters_.Answer(answer);
}

void Supervisor::BeginStop(bool immediately) {
  if (!stopping_) {
    notify_.Stopping();
    Log(LogLevel::kNotice, immediately ? "stopping now" : "stopping gracefully: draining workers");
  }
  stopping_ = true;
  reload_pending_ = false;
  requesters_.AnswerAll(kReloadStopping);
  // Refuse new clients now instead of letting the kernel queue connections
  // that nobody will accept. Sockets from systemd stay: it keeps their queue
  // for the next start.
  listeners_.CloseOwn();
  if (immediately) {
    for (WorkerRecord& w : workers_) {
      if (w.pid > 0) SignalWorker(w.pid, SIGKILL);
    }
  }
}

void Supervisor::OnSignals() {
  signalfd_siginfo si{};
  while (read(signals_.get(), &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
    int sig = static_cast<int>(si.ssi_signo);
    if (sig == ReloadRequestSignal()) {
      // A real-time signal, so requests queue instead of merging with a pending SIGHUP.
      if (!IsReloadRequest(si)) {
        OnStraySignal(si);
        continue;
      }
      requesters_.Add(static_cast<pid_t>(si.ssi_pid));
      sig = SIGHUP;
    }
    switch (sig) {
      case SIGCHLD: Reap(); break;
      case SIGHUP:
        reload_pending_ = !stopping_;
        if (stopping_) requesters_.AnswerAll(kReloadStopping);
        break;
      case SIGTERM:
      case SIGINT: BeginStop(false); break;
      case SIGQUIT: BeginStop(true); break;
      case SIGUSR1:
      case SIGUSR2:
        // nginx reopens log files on USR1; rot13d writes no files, so a
        // logrotate habit must be harmless.
        Log(LogLevel::kNotice, SignalName(sig) + " ignored (rot13d has no log files to reopen)");
        break;
      default: OnStraySignal(si); break;
    }
  }
}

// A signal that would have killed or stopped us by default (SIGALRM from a
// stray alarm(1), SIGTTIN from a shell, SIGRTMIN+2...) is ignored, and said once.
void Supervisor::OnStraySignal(const signalfd_siginfo& si) {
  std::string name = SignalName(static_cast<int>(si.ssi_signo));
  if (!strays_.Admit(name, LogLevel::kWarning, "ignored " + name, Clock::now())) return;
  Log(LogLevel::kWarning, "ignoring unexpected " + name + " from pid " + Num(si.ssi_pid) + " (uid " +
                              Num(si.ssi_uid) + "); repeats within " +
                              Num(static_cast<uint64_t>(kStraySignalWindow.count() / 1000)) + " s are counted",
      {{"SIGNAL", name}, {"SENDER_PID", Num(si.ssi_pid)}});
}

std::string Supervisor::StatusLine() const {
  StatusFigures f{.generation = serving_.id, .connections_served = retired_connections_,
                  .bytes = retired_bytes_, .last_reload = last_reload_, .stopping = stopping_};
  for (const WorkerRecord& w : workers_) {
    if (w.stats_index < 0) continue;
    const WorkerStats& s = stats_->at(static_cast<size_t>(w.stats_index));
    f.open_connections += s.open_connections.load(std::memory_order_relaxed);
    f.connections_served += s.connections_total.load(std::memory_order_relaxed);
    f.bytes += s.bytes_total.load(std::memory_order_relaxed);
    if (w.generation == serving_.id && w.pid > 0) ++f.workers;
  }
  return FormatStatus(f);
}

void Supervisor::Tick() {
  auto now = Clock::now();
  if (now - last_tick_ >= kStatusInterval) {
    last_tick_ = now;
    notify_.Status(StatusLine());
    deaths_.Flush(now);
    strays_.Flush(now);
  }
  auto wd = notify_.watchdog_interval();
  // Sent from the loop itself (it proves the loop turns), and only while no
  // worker is hung unnoticed.
  if (wd.count() > 0 && now - last_watchdog_ >= wd / 2 && WatchdogHealthy(View(now), now)) {
    last_watchdog_ = now;
    notify_.Watchdog();
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
  // Cannot fail with a valid timerfd and value; if it did, the loop would wait for signals only.
  if (timerfd_settime(timer_.get(), 0, &spec, nullptr) != 0) {
    Log(LogLevel::kError, Error(ErrnoErr() << "timerfd_settime").ToString());
  }
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
  serving_.config = *config;
  if (Status s = listeners_.TakeActivated(); !s) {
    Log(LogLevel::kError, s.error().ToString());
    return kExitFailure;
  }
  if (Status s = listeners_.Open(*config, options_.config_path); !s) {
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
    if (ReloadDue()) StartReload();
    ExecutePlan();
    if (exit_code_) break;
    if (ReloadDue()) continue;  // a canary just settled with a reload waiting: start it now
    Tick();
    ArmTimer();
    int n = epoll_wait(epoll_.get(), events, kMaxEvents, -1);
    if (n < 0 && errno != EINTR) {
      Log(LogLevel::kError, Error(ErrnoErr() << "epoll_wait").ToString());
      KillAllAndReap();
      return kExitFailure;
    }
    for (int i = 0; i < n; ++i) {
      uint64_t drained = 0;
      switch (events[i].data.u64) {
        case kTagSignal: OnSignals(); break;
        // Reads that only reset a level: nothing to do if they find nothing.
        case kTagTimer: (void)!read(timer_.get(), &drained, sizeof drained); break;
        case kTagReady: (void)!read(ready_.get(), &drained, sizeof drained); break;
      }
    }
  }
  deaths_.Flush(Clock::now() + kRepeatWindow);  // the counts not told yet
  if (*exit_code_ == kExitOk) Log(LogLevel::kNotice, "stopped");
  listeners_.CloseAll();  // closes sockets and removes the socket files we created
  return *exit_code_;
}

}  // namespace

int Run(const Options& options) {
  Supervisor supervisor(options);
  return supervisor.Run();
}

}  // namespace rot13d::supervisor
