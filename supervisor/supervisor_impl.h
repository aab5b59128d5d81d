// The Supervisor class, for its own implementation files only: supervisor.cc
// (the loop, signals, the executor) and generations.cc (configurations,
// reloads, promoting and abandoning canaries). Everyone else uses supervisor.h.
#pragma once

#include "supervisor/supervisor.h"

#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <optional>
#include <vector>

#include "common/config.h"
#include "common/exit_codes.h"
#include "common/log.h"
#include "common/proctitle.h"
#include "common/signals.h"
#include "common/stats.h"
#include "supervisor/cpus.h"
#include "supervisor/admin.h"
#include "supervisor/agent.h"
#include "supervisor/event_loop.h"
#include "supervisor/generation.h"
#include "supervisor/handover.h"
#include "supervisor/listeners.h"
#include "supervisor/metrics.h"
#include "supervisor/notify.h"
#include "supervisor/planner.h"
#include "supervisor/privileges.h"
#include "supervisor/reload_request.h"
#include "supervisor/repeat_log.h"
#include "supervisor/status_line.h"
#include "supervisor/worker_launch.h"
#include "supervisor/worker_pool.h"

namespace rot13d::supervisor::internal {


// Room for a serving generation, a canary and draining ones at the maximum size.
inline constexpr size_t kStatsSlots = 4 * kMaxWorkers + 64;
inline constexpr milliseconds kStatusInterval{1000};
// Identical worker-death messages: the first few in a window are logged, the
// rest counted and summarized when it closes (a crash loop cannot flood the journal).
inline constexpr milliseconds kRepeatWindow{10000};
inline constexpr uint64_t kRepeatBurst = 5;
// Each action changes the table, so re-planning settles in a few rounds; more
// than this is a bug, said out loud rather than spun on.
inline constexpr int kMaxPlanRounds = 64;

// All but SIGABRT (see SetUp) and SIGPIPE (ignored). Real faults (SIGSEGV...)
// are delivered whatever the mask; only a stray kill(2) of them is caught.
inline const SignalSet kSupervisorSignals = SignalSet::AllBlockable().Without({SIGABRT, SIGPIPE});

inline std::string Num(uint64_t v) { return std::to_string(v); }

class Supervisor {
 public:
  explicit Supervisor(Options options) : options_(std::move(options)) {}
  int Run();

 private:
  // Set-up.
  std::optional<int> Start();
  Status SetUp(UniqueFd ready = {}, UniqueFd nudge = {});
  std::optional<Config> ReadConfig(bool at_start);
  void StartGeneration(const Config& config);

  // Events.
  void OnSignal(const signalfd_siginfo& si);
  void ApplyExit(WorkerRecord& w, pid_t pid, const ExitStatus& exit, uint32_t open = 0);
  bool ReloadDue() const { return reload_pending_ && !gens_.has_canary() && !stopping_ && !preflight_; }
  void StartReload();
  // What a reload does once it has read the file: listeners, admin and agent, the canary.
  void TryGeneration(std::optional<Config> config);
  void FailReload(int answer, const std::string& why);

  // Live upgrade (upgrade.cc): pre-flight the installed binary, then execve it
  // with a handover; the new image resumes in Resume().
  void StartUpgrade();
  void OnOtherChildExit(pid_t pid, const ExitStatus& exit);
  void ExecUpgrade();
  void FailUpgrade(int answer, const std::string& why);
  Handover BuildHandover() const;
  std::optional<int> Resume(const std::string& handover_fd);
  std::optional<Config> ReadConfigForUpgrade();
  void BeginStop(bool immediately);

  // The executor: performs what the planner decided, and logs it.
  void ExecutePlan();
  void Perform(const Action& a);
  void Spawn(WorkerRecord& w);
  [[noreturn]] void RunChild(const WorkerRecord& w, const Config& config, WorkerStats& own, const StatsTable& all);
  void UpdateTitle() const;
  void AbortHung(pid_t pid);
  void HaltGeneration(const WorkerRecord& w, const std::string& reason);
  void Promote();
  void Abandon();
  void CloseRetiredListeners();

  SupervisorView View(TimePoint now) const;
  std::string StatusLine() const;
  Snapshot TakeSnapshot() const;
  Status ServeAdmin(const std::vector<ListenAddress>& addresses);
  Status ServeAgent(const std::vector<ListenAddress>& addresses);
  // Both endpoints' descriptors, for the loop to watch.
  void WatchEndpoints();
  // What the agent-check answer depends on, now.
  AgentInputs AgentState() const;
  void Tick();
  TimePoint NextWake() const;

  Options options_;
  RestartPolicy policy_;
  Notifier notify_;
  pid_t self_ = getpid();

  EventLoop loop_;
  UniqueFd nudge_;  // workers' shared doorbell for accept balance (see daemon/worker.h)
  ListenerSet listeners_;
  WorkerPool pool_;

  Generations gens_;

  bool stopping_ = false;
  bool reload_pending_ = false;  // asked for; starts at the top of a loop turn once no canary is out
  bool upgrade_asked_ = false;   // with reload_pending_: re-execute the binary first
  Executable exe_;               // the running image, and where it was installed
  struct Preflight {
    pid_t pid = 0;
    UniqueFd output;  // what it prints (a memfd: nothing to drain while it runs)
    TimePoint deadline{};
  };
  std::optional<Preflight> preflight_;
  bool upgrading_ = false;       // the canary out is the first generation of an upgraded image
  std::optional<int> exit_code_;
  std::string last_reload_ = "none";
  bool config_unreadable_ = false;  // the last ReadConfig failed to read the file at all
  TimePoint last_tick_{};
  TimePoint last_watchdog_{};

  AdminServer admin_{[this] { return TakeSnapshot(); }};
  AgentServer agent_{[this] { return AgentState(); }};
  Activity activity_;  // reloads and restarts counted, start time

  RepeatLog deaths_{kRepeatWindow, kRepeatBurst};
  StraySignalLog strays_;
  ReloadRequesters requesters_{self_};
  std::optional<Identity> identity_;  // who we became after binding, when started as root
};

}  // namespace rot13d::supervisor::internal
