// The Supervisor's loop: signals, the executor of the planner's actions, and reporting.
#include "supervisor/supervisor_impl.h"

namespace rot13d::supervisor::internal {

Status Supervisor::SetUp(UniqueFd ready, UniqueFd nudge) {
  // A log line to a stderr pipe whose reader left must not kill the service.
  if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) return ErrnoErr() << "ignoring SIGPIPE";
  // Blocked before the first fork, read synchronously from a signalfd: no
  // handlers. Every signal is, so that none whose default is to terminate or
  // stop (SIGALRM, SIGTTIN, SIGRTMIN+5...) can take the service down; those
  // rot13d has no use for are logged and ignored. SIGABRT keeps its default:
  // it is how systemd's watchdog (and an operator) asks for a core dump.
  if (Status s = loop_.Open(kSupervisorSignals, std::move(ready)); !s) return s.error();
  const bool resuming = nudge.valid();  // an upgrade's new image: the table is adopted too
  nudge_ = nudge ? std::move(nudge) : UniqueFd(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!nudge_) return ErrnoErr() << "eventfd";
  if (!resuming) {
    if (Status s = pool_.Init(kStatsSlots); !s) return s.error();
  }
  // Each connection is a descriptor: use the hard limit the service manager
  // allows. Failing that, the soft limit stands: not worth refusing to start.
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &nofile) != 0) Log(LogLevel::kWarning, Error(ErrnoErr() << "setrlimit").ToString());
  }
  return OkStatus();
}



SupervisorView Supervisor::View(TimePoint now) const {
  SupervisorView v;
  v.workers = &pool_.all();
  gens_.Describe(&v, now, policy_.governed_fork_interval);
  v.stopping = stopping_;
  v.retired_listeners = !listeners_.Unused(gens_.ConfigsInForce()).empty();
  return v;
}

void Supervisor::Spawn(WorkerRecord& w) {
  Generation& g = gens_.Of(w.generation);
  g.last_fork = Clock::now();
  auto child = [&](WorkerStats& own, const StatsTable& all) { RunChild(w, g.config, own, all); };
  if (std::optional<ExitStatus> failed = pool_.Spawn(w, g.config, child)) return ApplyExit(w, 0, *failed);
  Log(LogLevel::kDebug, "worker " + Num(static_cast<uint64_t>(w.pid)) + " started in slot " + Num(w.slot) +
                            " of generation " + Num(w.generation),
      WorkerFields(w.pid, w));
}

// The child of a fork: what only the supervisor may hold is closed here, the
// rest is BecomeWorker's. Signals stay blocked as the supervisor had them
// until RunWorker sets the worker's own mask, dispositions and (no) privileges.
void Supervisor::RunChild(const WorkerRecord& w, const Config& config, WorkerStats& own, const StatsTable& all) {
  loop_.CloseInChild();
  admin_.CloseInChild();
  agent_.CloseInChild();
  requesters_.Forget();
  BecomeWorker({config, listeners_, w.slot, w.generation, own, all, pool_.addresses(), loop_.ready_fd(), nudge_.borrow(), self_});
}

// Wait, decide, apply: the planner decides what the death means and how it
// is told; this applies it to the table and the log.
void Supervisor::ApplyExit(WorkerRecord& w, pid_t pid, const ExitStatus& exit, uint32_t open) {
  auto now = Clock::now();
  const bool wanted = RespawnWanted(View(now), w.generation);
  const ExitDecision d = DecideOnExit(w, exit, now, policy_, wanted);
  const DeathNote note = DescribeDeath(w, pid, exit, d, wanted, open);
  if (note.boot_failure) {
    if (auto engaged = gens_.Of(w.generation).RecordBootFailure(now)) {
      Log(LogLevel::kWarning, *engaged, {{"GENERATION", Num(w.generation)}});
    }
  }
  // The same failure again and again (a crash loop) is logged once per window
  // and then summarized with a count.
  if (!note.repeatable || deaths_.Admit(note.story, note.level, "worker of " + note.story, now)) {
    Log(note.level, note.text, note.fields);
  }
  if (auto cause = RestartCause(w, exit, d)) activity_.Count(*cause);
  if (d.kind == ExitDecision::Kind::kGiveUp) HaltGeneration(w, GiveUpReason(w, exit, policy_));
  pool_.Apply(w, d, now);
}

// A slot that cannot boot stops its whole generation's respawning.
void Supervisor::HaltGeneration(const WorkerRecord& w, const std::string& reason) {
  Generation& g = gens_.Of(w.generation);
  g.halted = true;
  g.failure = reason;
  pool_.FailWaiting(g.id);
  Log(LogLevel::kError, "worker " + reason + "; not respawning generation " + Num(g.id),
      {{"WORKER_SLOT", Num(w.slot)}, {"GENERATION", Num(g.id)}});
}

void Supervisor::AbortHung(pid_t pid) {
  const WorkerRecord* w = pool_.Find(pid);
  if (!w) return;
  Log(LogLevel::kError, DescribeHang(*w, pid, Clock::now(), policy_.hung_kill_grace), WorkerFields(pid, *w));
  pool_.AbortHung(pid, policy_.hung_kill_grace);
}




void Supervisor::CloseRetiredListeners() {
  for (const std::string& n : listeners_.Unused(gens_.ConfigsInForce())) {
    Log(LogLevel::kInfo, "closing listener " + n + " (no longer configured)");
    listeners_.Close(n);
  }
}

void Supervisor::ExecutePlan() {
  for (int round = 0; !exit_code_; ++round) {
    pool_.RefreshPhases();
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
    case Action::Kind::kSpawn:
      if (WorkerRecord* w = pool_.FindWaiting(a.slot, a.generation)) Spawn(*w);
      break;
    case Action::Kind::kSignal: pool_.Signal(a.pid, a.signal, gens_.serving().config.shutdown_timeout); break;
    case Action::Kind::kAbortHung: AbortHung(a.pid); break;
    case Action::Kind::kPromote: Promote(); break;
    case Action::Kind::kAbandon: Abandon(); break;
    case Action::Kind::kCloseRetired: CloseRetiredListeners(); break;
    case Action::Kind::kExit:
      if (a.exit_code != kExitOk) pool_.KillAllAndReap();
      exit_code_ = a.exit_code;
      break;
  }
}

void Supervisor::BeginStop(bool immediately) {
  bool first = !stopping_;
  stopping_ = true;
  UpdateTitle();
  if (first) {
    notify_.Stopping();
    Log(LogLevel::kNotice, immediately ? "stopping now" : "stopping gracefully: draining workers");
  }
  reload_pending_ = upgrade_asked_ = false;
  requesters_.AnswerAll(kReloadStopping);
  // An upgrade's pre-flight is not wanted any more (unreaped, its pid is still ours).
  if (preflight_) (void)kill(preflight_->pid, SIGKILL);
  // Refuse new clients now instead of letting the kernel queue connections
  // that nobody will accept. Sockets from systemd stay: it keeps their queue
  // for the next start.
  listeners_.CloseOwn();
  if (immediately) pool_.KillAll();
}

void Supervisor::OnSignal(const signalfd_siginfo& si) {
  int sig = static_cast<int>(si.ssi_signo);
  if (sig == ReloadRequestSignal()) {
    // A real-time signal, so requests queue instead of merging with a pending SIGHUP.
    if (!IsReloadRequest(si)) return strays_.Report(si, Clock::now());
    requesters_.Add(static_cast<pid_t>(si.ssi_pid));
    sig = IsUpgradeRequest(si) ? SIGUSR2 : SIGHUP;
  }
  switch (sig) {
    case SIGCHLD:
      pool_.Reap([this](WorkerRecord& w, pid_t pid, const ExitStatus& exit,
                        uint32_t open) { ApplyExit(w, pid, exit, open); },
                 [this](pid_t pid, const ExitStatus& exit) { OnOtherChildExit(pid, exit); });
      break;
    case SIGHUP:
      reload_pending_ = !stopping_;
      if (stopping_) requesters_.AnswerAll(kReloadStopping);
      break;
    case SIGTERM:
    case SIGINT: BeginStop(false); break;
    case SIGQUIT: BeginStop(true); break;
    case SIGUSR2:
      // The nginx and HAProxy habit: execute the binary again (upgrade.cc).
      upgrade_asked_ = reload_pending_ = !stopping_;
      if (stopping_) requesters_.AnswerAll(kReloadStopping);
      break;
    case SIGUSR1:
      // nginx reopens log files on USR1; rot13d writes no files, so a
      // logrotate habit must be harmless.
      Log(LogLevel::kNotice, SignalName(sig) + " ignored (rot13d has no log files to reopen)");
      break;
    case SIGCONT:
      // systemd follows every stop's SIGTERM with a SIGCONT (so that a
      // stopped process sees it); continuing needs nothing from us.
      break;
    default: strays_.Report(si, Clock::now()); break;
  }
}



std::string Supervisor::StatusLine() const {
  StatusFigures f = pool_.Figures(gens_.serving().id);
  f.last_reload = last_reload_;
  f.stopping = stopping_;
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
  // A pre-flight past its time is killed; its reap fails the upgrade.
  if (preflight_ && now >= preflight_->deadline) (void)kill(preflight_->pid, SIGKILL);
}

// The earliest of: the next status line, the next WATCHDOG=1, and whatever
// the plan waits for (a backoff, a kill deadline, a heartbeat going stale).
TimePoint Supervisor::NextWake() const {
  auto now = Clock::now();
  TimePoint next = now + kStatusInterval;
  if (auto wd = notify_.watchdog_interval(); wd.count() > 0) {
    next = std::min(next, last_watchdog_ + std::chrono::duration_cast<Clock::duration>(wd / 2));
  }
  if (auto d = NextDeadline(View(now))) next = std::min(next, *d);
  if (auto t = admin_.NextTimeout()) next = std::min(next, *t);
  if (preflight_) next = std::min(next, preflight_->deadline);
  return next;
}

// Everything before the loop: the file, the sockets, who we run as, and the
// first generation. A failure here is the process's exit code.
std::optional<int> Supervisor::Start() {
  exe_ = Executable::OfThisProcess();
  if (const char* handover = getenv(kHandoverEnv)) return Resume(handover);
  Log(LogLevel::kInfo, "rot13d " + options_.version + " starting (pid " + Num(static_cast<uint64_t>(self_)) +
                           ") with " + options_.config_path,
      {{"CONFIG_FILE", options_.config_path}, {"VERSION", options_.version}});
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
  gens_.SetInitialConfig(*config);
  if (Status s = listeners_.TakeActivated(); !s) {
    Log(LogLevel::kError, s.error().ToString());
    return kExitFailure;
  }
  if (Status s = listeners_.Open(*config, options_.config_path); !s) {
    Log(LogLevel::kError, "cannot listen: " + s.error().ToString());
    return kExitFailure;
  }
  if (Status s = ServeAdmin(config->admin_listen); !s) {
    Log(LogLevel::kError, "cannot listen: " + s.error().ToString());
    return kExitFailure;
  }
  if (Status s = ServeAgent(config->agent_listen); !s) {
    Log(LogLevel::kError, "cannot listen: " + s.error().ToString());
    return kExitFailure;
  }
  auto identity = DropRoot(*config);
  if (!identity) {
    Log(LogLevel::kError, "not starting: " + identity.error().ToString());
    return kExitConfig;
  }
  identity_ = *identity;
  StartGeneration(*config);
  return std::nullopt;
}

int Supervisor::Run() {
  if (std::optional<int> failed = Start()) return *failed;
  std::vector<signalfd_siginfo> signals;
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
    signals.clear();
    if (Status s = loop_.Wait(NextWake(), &signals); !s) {
      Log(LogLevel::kError, s.error().ToString());
      pool_.KillAllAndReap();
      return kExitFailure;
    }
    for (const signalfd_siginfo& si : signals) OnSignal(si);
    admin_.Run();  // cheap when idle: one epoll_wait(0) per admin address
    agent_.Run();  // likewise: one accept(2) per agent address
  }
  deaths_.Flush(Clock::now() + kRepeatWindow);  // the counts not told yet
  if (*exit_code_ == kExitOk) Log(LogLevel::kNotice, "stopped");
  admin_.Stop();
  agent_.Stop();
  listeners_.CloseAll();  // closes sockets and removes the socket files we created
  return *exit_code_;
}

}  // namespace rot13d::supervisor::internal

namespace rot13d::supervisor {

int Run(const Options& options) {
  internal::Supervisor supervisor(options);
  return supervisor.Run();
}

}  // namespace rot13d::supervisor
