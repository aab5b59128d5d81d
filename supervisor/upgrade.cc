// The Supervisor's live upgrade: the old image pre-flights the installed
// binary and executes it in place (same pid, same children, same listening
// sockets); the new image resumes from the handover (supervisor/handover.h)
// and goes on as a reload would: a canary generation of its own workers,
// which takes over once all of them accept, while the adopted ones drain.
//
//   request ──> StartUpgrade: pre-flight child (the new binary checks the handover)
//          ──> OnOtherChildExit: it passed ──> ExecUpgrade: execve(2)
//                                            └─ fails: FailUpgrade, nothing changed
//   new image: Resume ──> TryGeneration ──> Promote / Abandon (the adopted workers serve on)
#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "supervisor/microhttpd.h"
#include "supervisor/supervisor_impl.h"

namespace rot13d::supervisor {
namespace {

// The pre-flight runs the new binary once; it reads a few kilobytes and a file.
constexpr milliseconds kPreflightTimeout{10000};
// Its output kept for the log: the first lines say why it failed.
constexpr size_t kPreflightOutputMax = 4096;

Result<UniqueFd> WriteMemfd(const char* name, std::string_view text, unsigned flags) {
  UniqueFd fd(memfd_create(name, flags));
  if (!fd) return ErrnoErr() << "memfd_create";
  for (size_t done = 0; done < text.size();) {
    ssize_t n = write(fd.get(), text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return ErrnoErr() << "writing the handover";
    done += static_cast<size_t>(n);
  }
  if (lseek(fd.get(), 0, SEEK_SET) != 0) return ErrnoErr() << "lseek";
  return fd;
}

// From the start of a regular file or memfd, at most `max` bytes.
std::string ReadFrom(BorrowedFd fd, size_t max) {
  std::string out;
  char buf[4096];
  off_t at = 0;
  while (out.size() < max) {
    ssize_t n = pread(fd.get(), buf, std::min(sizeof buf, max - out.size()), at);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
    at += n;
  }
  return out;
}

Status SetCloexec(int fd, bool on) {
  int flags = fcntl(fd, F_GETFD);
  if (flags < 0) return ErrnoErr() << "fcntl F_GETFD of descriptor " << fd;
  flags = on ? flags | FD_CLOEXEC : flags & ~FD_CLOEXEC;
  if (fcntl(fd, F_SETFD, flags) != 0) return ErrnoErr() << "fcntl F_SETFD of descriptor " << fd;
  return OkStatus();
}

// Every descriptor the handover names: what must survive execve.
std::vector<int> HandedOverFds(const Handover& h) {
  std::vector<int> fds{h.stats_fd, h.ready_fd, h.nudge_fd};
  if (h.addresses_fd >= 0) fds.push_back(h.addresses_fd);
  for (const HandoverListener& l : h.listeners) fds.push_back(l.fd);
  fds.insert(fds.end(), h.requesters.begin(), h.requesters.end());
  return fds;
}

// After execve: any descriptor beyond stdio that the handover does not name
// was the old image's and leaked through (one opened without O_CLOEXEC by a
// library): closed, so that the new image holds exactly what it knows of.
void CloseStrayDescriptors(const std::vector<int>& kept) {
  std::vector<int> stray;
  if (DIR* dir = opendir("/proc/self/fd")) {
    int own = dirfd(dir);
    while (dirent* e = readdir(dir)) {
      int fd = std::atoi(e->d_name);
      if (e->d_name[0] == '.' || fd <= 2 || fd == own) continue;
      if (std::find(kept.begin(), kept.end(), fd) == kept.end()) stray.push_back(fd);
    }
    closedir(dir);
  }
  for (int fd : stray) {
    Log(LogLevel::kDebug, "closing descriptor " + std::to_string(fd) + ", left over from the previous image");
    close(fd);
  }
}

std::string FirstLines(std::string text, size_t lines) {
  size_t at = 0;
  for (size_t i = 0; i < lines && at != std::string::npos; ++i) {
    at = text.find('\n', at);
    if (at != std::string::npos) ++at;
  }
  if (at != std::string::npos) text.resize(at);
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  for (char& c : text) {
    if (c == '\n') c = ';';
  }
  return text;
}

// What an upgrade runs on: the file, read as a reload reads it; or, when the
// supervisor runs on the embedded defaults (no file at the default path), the
// running configuration it hands over.
ConfigLoad LoadUpgradeConfig(const Options& o, const std::string& running) {
  struct stat st {};
  if (!o.config_path_given && stat(o.config_path.c_str(), &st) != 0 && errno == ENOENT) {
    return ParseConfig(running, "(the running configuration)");
  }
  ConfigLoad load = LoadConfigFile(o.config_path, {.resolve_names = false});
  OverrideListen(load, o.listen);
  return load;
}

}  // namespace

namespace internal {

Handover Supervisor::BuildHandover() const {
  Handover h;
  h.from_version = options_.version;
  h.stats_fd = pool_.stats_fd().get();
  h.stats_slots = pool_.stats_slots();
  h.stats_slot_size = sizeof(WorkerStats);
  h.stats_layout = kStatsLayout;
  h.addresses_fd = pool_.addresses().fd().get();
  h.addresses_entries = pool_.addresses().entries();
  h.addresses_owners = pool_.addresses().owners();
  h.addresses_layout = kAddressTableLayout;
  h.ready_fd = loop_.ready_fd().get();
  h.nudge_fd = nudge_.get();
  h.activated = listeners_.activated();
  for (const auto& [name, l] : listeners_.all()) {
    h.listeners.push_back({l.fd().get(), name, l.owned_path()});
  }
  const Generation& g = gens_.serving();
  h.serving_id = g.id;
  h.next_id = g.id + 1;
  h.serving_size = g.size;
  h.serving_halted = g.halted;
  h.serving_failure = g.failure;
  h.workers = pool_.all();
  h.retired = pool_.retired();
  h.activity = activity_.Carry();
  h.last_reload = last_reload_;
  h.identity = identity_;
  h.requesters = requesters_.PendingFds();
  h.config = FormatConfig(g.config);
  return h;
}

// At the top of a loop turn, as a reload: no canary is out, not stopping.
void Supervisor::StartUpgrade() {
  reload_pending_ = upgrade_asked_ = false;
  requesters_.StartReload();
  notify_.Reloading();
  Log(LogLevel::kNotice, "upgrading: checking " + exe_.path + " before executing it in place",
      {{"EXECUTABLE", exe_.path}});
  auto handover = WriteMemfd("rot13d-preflight", SerializeHandover(BuildHandover()), MFD_CLOEXEC);
  UniqueFd output(memfd_create("rot13d-preflight-output", MFD_CLOEXEC));
  if (!handover || !output) {
    return FailUpgrade(kReloadUpgradeFailed, "cannot prepare the pre-flight: " +
                                                 (handover ? Error(ErrnoErr() << "memfd_create") : handover.error()).ToString());
  }
  std::vector<std::string> args{exe_.path, "--upgrade-preflight"};
  if (options_.argv.size() > 1) args.insert(args.end(), options_.argv.begin() + 1, options_.argv.end());
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    // The child: stdin the handover, stdout and stderr the output; the
    // binary runs with no signal blocked, as anything we start should.
    if (dup2(handover->get(), 0) < 0 || dup2(output.get(), 1) < 0 || dup2(output.get(), 2) < 0) _exit(126);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execv(exe_.path.c_str(), argv.data());
    dprintf(2, "cannot execute %s: %s\n", exe_.path.c_str(), std::strerror(errno));
    _exit(127);
  }
  if (pid < 0) return FailUpgrade(kReloadUpgradeFailed, Error(ErrnoErr() << "fork for the pre-flight").ToString());
  preflight_ = Preflight{pid, std::move(output), Clock::now() + kPreflightTimeout};
}

// A child that is no worker: the pre-flight, if it is ours.
void Supervisor::OnOtherChildExit(pid_t pid, const ExitStatus& exit) {
  if (!preflight_ || preflight_->pid != pid) return;
  std::string said = FirstLines(ReadFrom(preflight_->output.borrow(), kPreflightOutputMax), 6);
  bool timed_out = Clock::now() >= preflight_->deadline;
  preflight_.reset();
  if (stopping_) return;  // those who asked were told already
  if (exit.Clean()) {
    Log(LogLevel::kInfo, "upgrade pre-flight passed: " + said);
    return ExecUpgrade();
  }
  std::string why = "the pre-flight of " + exe_.path + " " +
                    (timed_out ? "did not finish within " + Num(kPreflightTimeout.count() / 1000) + " s"
                               : exit.Describe()) +
                    (said.empty() ? "" : ": " + said);
  FailUpgrade(exit.code == kExitConfig ? kReloadInvalidConfig : kReloadUpgradeFailed, why);
}

void Supervisor::ExecUpgrade() {
  Handover h = BuildHandover();
  auto text = WriteMemfd("rot13d-handover", SerializeHandover(h), 0);
  if (!text) return FailUpgrade(kReloadUpgradeFailed, text.error().ToString());
  std::vector<int> kept = HandedOverFds(h);
  auto restore = [&] {
    for (int fd : kept) (void)SetCloexec(fd, true);
    unsetenv(kHandoverEnv);
    ClearInheritedCapabilities();
  };
  for (int fd : kept) {
    if (Status s = SetCloexec(fd, false); !s) {
      restore();
      return FailUpgrade(kReloadUpgradeFailed, s.error().ToString());
    }
  }
  if (Status s = KeepCapabilitiesAcrossExec(); !s) {
    Log(LogLevel::kInfo, "the new image will not have the capabilities kept for reloads (" + s.error().ToString() +
                             "): binding a port below 1024 or reading a file only root may read then needs a restart");
  }
  setenv(kHandoverEnv, std::to_string(text->get()).c_str(), 1);
  std::vector<std::string> args = options_.argv;
  if (args.empty()) args.push_back(exe_.path);
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  Log(LogLevel::kNotice, "upgrading: executing " + exe_.path + " in place (pid " +
                             Num(static_cast<uint64_t>(self_)) + ", " + Count(h.workers.size(), "worker") +
                             " and " + Count(h.listeners.size(), "listener") + " handed over)",
      {{"EXECUTABLE", exe_.path}});
  execv(exe_.path.c_str(), argv.data());
  Error failed = ErrnoErr() << "cannot execute " << exe_.path;
  restore();
  FailUpgrade(kReloadUpgradeFailed, failed.ToString());
}

void Supervisor::FailUpgrade(int answer, const std::string& why) {
  activity_.Count(answer == kReloadInvalidConfig ? ReloadResult::kInvalid : ReloadResult::kUpgradeFailed);
  last_reload_ = "failed: upgrade: " + why;
  Log(LogLevel::kError, "upgrade failed: " + why + "; rot13d " + options_.version + " keeps serving with generation " +
                            Num(gens_.serving().id),
      {{"EXECUTABLE", exe_.path}});
  notify_.Ready(StatusLine());
  requesters_.Answer(answer);
}

// The new image's Start(): everything from the handover, then the reload half.
std::optional<int> Supervisor::Resume(const std::string& fd_text) {
  UniqueFd fd(std::atoi(fd_text.c_str()));
  unsetenv(kHandoverEnv);
  ClearInheritedCapabilities();
  std::string text = fd.get() > 2 ? ReadFrom(fd.borrow(), 64 << 20) : std::string();
  fd.reset();
  Result<Handover> h = ParseHandover(text);
  if (h) {
    if (Status s = CheckHandover(*h); !s) h = s.error();
  }
  if (!h) {
    // The pre-flight read this very text: a bug, with no way back. The
    // workers notice their supervisor is gone and stop; the service manager restarts.
    Log(LogLevel::kError, "cannot resume after the upgrade: " + h.error().ToString());
    return kExitFailure;
  }
  std::vector<int> kept = HandedOverFds(*h);
  CloseStrayDescriptors(kept);
  for (int k : kept) (void)SetCloexec(k, true);
  if (Status s = SetUp(UniqueFd(h->ready_fd), UniqueFd(h->nudge_fd)); !s) {
    Log(LogLevel::kError, "cannot resume after the upgrade: " + s.error().ToString());
    return kExitFailure;
  }
  auto table = StatsTable::Adopt(UniqueFd(h->stats_fd), h->stats_slots);
  // An image from before max_connections_per_address hands over none: its
  // workers count nothing, so a new table starts right.
  auto addresses = h->addresses_fd >= 0
                       ? AddressTable::Adopt(UniqueFd(h->addresses_fd), h->addresses_entries, h->addresses_owners)
                       : AddressTable::Create(AddressTable::kDefaultEntries, h->stats_slots);
  ConfigLoad running = ParseConfig(h->config, "(the running configuration)");
  if (!table || !addresses || !running.config) {
    Log(LogLevel::kError, "cannot resume after the upgrade: " +
                                 (!table       ? table.error().ToString()
                                  : !addresses ? addresses.error().ToString()
                                               : "the running configuration does not parse: " +
                                                     running.errors.front().ToString()));
    return kExitFailure;
  }
  Log(LogLevel::kNotice, "rot13d " + options_.version + " executed in place (pid " + Num(static_cast<uint64_t>(self_)) +
                             "), upgraded from " + h->from_version + "; adopting " +
                             Count(h->workers.size(), "worker") + " of generation " + Num(h->serving_id),
      {{"VERSION", options_.version}, {"PREVIOUS_VERSION", h->from_version}});
  ConfigureLogging(running.config->log_level, running.config->log_target);
  Generation serving;
  serving.id = h->serving_id;
  serving.config = *running.config;
  serving.size = h->serving_size;
  serving.halted = h->serving_halted;
  serving.failure = h->serving_failure;
  gens_.Resume(std::move(serving), h->next_id);
  std::vector<Listener> listeners;
  for (const HandoverListener& l : h->listeners) listeners.emplace_back(l.name, UniqueFd(l.fd), l.owned_path);
  listeners_.Adopt(std::move(listeners), h->activated);
  pool_.Adopt(std::move(*table), std::move(*addresses), std::move(h->workers), h->retired);
  activity_.Resume(h->activity);
  last_reload_ = h->last_reload;
  identity_ = h->identity;
  requesters_.Adopt(h->requesters);
  UpdateTitle();
  if (Status s = ServeAdmin(gens_.serving().config.admin_listen); !s) Log(LogLevel::kWarning, s.error().ToString());
  // The previous image's agent sockets closed at execve (close-on-exec): bound again.
  if (Status s = ServeAgent(gens_.serving().config.agent_listen); !s) Log(LogLevel::kWarning, s.error().ToString());
  // The reload half: the new image's own workers, on the file as it is now.
  upgrading_ = true;
  Log(LogLevel::kInfo, "reloading configuration from " + options_.config_path, {{"CONFIG_FILE", options_.config_path}});
  TryGeneration(ReadConfigForUpgrade());
  return std::nullopt;
}

std::optional<Config> Supervisor::ReadConfigForUpgrade() {
  ConfigLoad load = LoadUpgradeConfig(options_, FormatConfig(gens_.serving().config));
  config_unreadable_ = load.unreadable;
  if (!load.config) {
    LogConfigErrors(load.errors);
    last_reload_ = "failed: " + load.errors.front().ToString();
  }
  return load.config;
}

}  // namespace internal

int Preflight(const Options& options) {
  std::string text = ReadFrom(BorrowedFd(0), 64 << 20);
  Result<Handover> h = ParseHandover(text);
  if (h) {
    if (Status s = CheckHandover(*h); !s) h = s.error();
  }
  if (!h) {
    std::printf("rot13d %s cannot take over: %s\n", options.version.c_str(), h.error().ToString().c_str());
    return kExitFailure;
  }
  ConfigLoad running = ParseConfig(h->config, "(the running configuration)");
  ConfigLoad file = running.config ? LoadUpgradeConfig(options, h->config) : ConfigLoad{};
  for (const ConfigLoad* load : {&running, &file}) {
    if (load->config) continue;
    for (const ConfigError& e : load->errors) std::printf("%s\n", e.ToString().c_str());
    std::printf("rot13d %s rejects the configuration\n", options.version.c_str());
    return kExitConfig;
  }
  // The admin endpoint's library is loaded at run time: a binary that cannot
  // load it would take over without the endpoint the configuration names.
  if (!running.config->admin_listen.empty() || !file.config->admin_listen.empty()) {
    if (auto mhd = LoadMicrohttpd(); !mhd) {
      std::printf("rot13d %s cannot serve admin_listen: %s\n", options.version.c_str(),
                  mhd.error().ToString().c_str());
      return kExitFailure;
    }
  }
  std::printf("rot13d %s reads handover format %u and the configuration\n", options.version.c_str(), kHandoverFormat);
  return kExitOk;
}

}  // namespace rot13d::supervisor
