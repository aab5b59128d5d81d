#include "tests/blackbox/harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

extern char** environ;

namespace rot13d::blackbox {
namespace {

// Milliseconds left until deadline, for poll(2); never negative.
int RemainingMs(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(left, 0, 60'000));
}

// Waits for events on fd until the deadline; false on timeout.
bool PollFor(int fd, short events, Clock::time_point deadline) {
  while (true) {
    pollfd p{fd, events, 0};
    int n = poll(&p, 1, RemainingMs(deadline));
    if (n > 0) return true;
    if (n == 0) return false;
    if (errno != EINTR) return false;
  }
}

struct ProcStat {
  char state = '?';
  pid_t ppid = 0;
  pid_t pgrp = 0;
};

std::optional<ProcStat> ReadProcStat(pid_t pid) {
  std::string text = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  // The command name may contain spaces and parentheses: parse after the last ')'.
  size_t close = text.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  ProcStat s;
  std::istringstream in(text.substr(close + 1));
  if (!(in >> s.state >> s.ppid >> s.pgrp)) return std::nullopt;
  return s;
}

bool Dead(const ProcStat& s) { return s.state == 'Z' || s.state == 'X' || s.state == 'x'; }

// Glibc 2.36's <sys/pidfd.h> lacks extern "C", so C++ cannot link its wrappers.
int PidfdOpen(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }
int PidfdSendSignal(int pidfd, int sig) {
  return static_cast<int>(syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

// waitpid(2)'s status word, from what waitid(2) reports.
int WaitStatus(const siginfo_t& info) {
  switch (info.si_code) {
    case CLD_EXITED: return W_EXITCODE(info.si_status, 0);
    case CLD_DUMPED: return W_EXITCODE(0, info.si_status) | WCOREFLAG;
    default: return W_EXITCODE(0, info.si_status);  // CLD_KILLED
  }
}

template <typename Pred>
std::vector<pid_t> ScanProc(Pred pred) {
  std::vector<pid_t> out;
  DIR* dir = opendir("/proc");
  if (!dir) return out;
  while (dirent* e = readdir(dir)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (*end != '\0' || pid <= 0) continue;
    auto s = ReadProcStat(static_cast<pid_t>(pid));
    if (s && !Dead(*s) && pred(*s)) out.push_back(static_cast<pid_t>(pid));
  }
  closedir(dir);
  std::sort(out.begin(), out.end());
  return out;
}

// The test process's environment without what would make rot13d think it runs under systemd.
std::vector<std::string> CleanEnvironment() {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    std::string_view v(*e);
    if (v.starts_with("NOTIFY_SOCKET=") || v.starts_with("LISTEN_") || v.starts_with("JOURNAL_STREAM=") ||
        v.starts_with("WATCHDOG_")) {
      continue;
    }
    env.emplace_back(v);
  }
  return env;
}

std::vector<char*> CStrings(std::vector<std::string>& v) {
  std::vector<char*> out;
  for (std::string& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

struct SpawnOptions {
  std::vector<int> pass_fds;  // become 3, 4, ... in the child
  bool single_cpu = false;
};

// Forks and execs argv in a new process group with stdout and stderr to files.
// Everything the child needs is prepared before fork: after it, only
// async-signal-safe calls (the test process may have threads).
pid_t Spawn(std::vector<std::string> argv, std::vector<std::string> env, const std::string& out_path,
            const std::string& err_path, const SpawnOptions& options = {}) {
  // LISTEN_PID must name the child, known only after fork: reserve room for its digits.
  size_t listen_pid_index = SIZE_MAX;
  if (!options.pass_fds.empty()) {
    env.push_back("LISTEN_FDS=" + std::to_string(options.pass_fds.size()));
    env.push_back("LISTEN_PID=" + std::string(20, '\0'));
    listen_pid_index = env.size() - 1;
  }
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  if (options.single_cpu) {
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    sched_getaffinity(0, sizeof allowed, &allowed);
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
      if (CPU_ISSET(cpu, &allowed)) {
        CPU_SET(cpu, &cpus);
        break;
      }
    }
  }
  std::vector<char*> c_argv = CStrings(argv);
  std::vector<char*> c_env = CStrings(env);
  const int pass_count = static_cast<int>(options.pass_fds.size());

  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    signal(SIGPIPE, SIG_DFL);
    if (options.single_cpu && sched_setaffinity(0, sizeof cpus, &cpus) != 0) _exit(127);
    if (listen_pid_index != SIZE_MAX) {
      char* digits = c_env[listen_pid_index] + std::strlen("LISTEN_PID=");
      char reversed[20];
      int n = 0;
      for (pid_t self = getpid(); self > 0; self /= 10) reversed[n++] = static_cast<char>('0' + self % 10);
      for (int i = 0; i < n; ++i) digits[i] = reversed[n - 1 - i];
      digits[n] = '\0';
    }
    int null_fd = open("/dev/null", O_RDONLY);
    int out_fd = open(out_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    int err_fd = open(err_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (null_fd < 0 || out_fd < 0 || err_fd < 0) _exit(127);
    // Move passed fds out of the way first: one may sit where another must go.
    constexpr int kHigh = 512;
    for (int i = 0; i < pass_count; ++i) {
      if (dup2(options.pass_fds[static_cast<size_t>(i)], kHigh + i) < 0) _exit(127);
    }
    dup2(null_fd, 0);
    dup2(out_fd, 1);
    dup2(err_fd, 2);
    for (int i = 0; i < pass_count; ++i) {
      if (dup2(kHigh + i, 3 + i) < 0) _exit(127);  // dup2 leaves the copy without CLOEXEC
    }
    close_range(static_cast<unsigned>(3 + pass_count), ~0u, 0);  // the test's fds are not the daemon's
    execve(c_argv[0], c_argv.data(), c_env.data());
    _exit(127);
  }
  setpgid(pid, pid);  // also from the parent, so kill(-pid) works without a race
  return pid;
}

}  // namespace

const char* DaemonPath() { return ROT13D_BINARY; }
const char* TestHooksDaemonPath() { return ROT13D_TESTHOOKS_BINARY; }
const char* SocketActivatePath() { return ROT13D_SOCKET_ACTIVATE; }

// ---------------------------------------------------------------- TempDir, Fd

TempDir::TempDir() {
  char templ[] = "/tmp/rot13d-bb.XXXXXX";
  if (mkdtemp(templ) == nullptr) {
    ADD_FAILURE() << "mkdtemp: " << std::strerror(errno);
    return;
  }
  path_ = templ;
}

TempDir::~TempDir() {
  if (path_.empty()) return;
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string TempDir::File(std::string_view name) const { return path_ + "/" + std::string(name); }

std::string TempDir::Write(std::string_view name, std::string_view text) const {
  std::string path = File(name);
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
  }
  // A reload must never see half a file.
  std::filesystem::rename(tmp, path);
  return path;
}

Fd& Fd::operator=(Fd&& other) noexcept {
  if (this != &other) Reset(other.Release());
  return *this;
}

int Fd::Release() { return std::exchange(fd_, -1); }

void Fd::Reset(int fd) {
  int old = std::exchange(fd_, fd);
  if (old >= 0) ::close(old);
}

// ---------------------------------------------------------------- free functions

uint16_t FreePort(int family) {
  Fd fd(socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (family == AF_INET6) {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_addr = in6addr_loopback;
    len = sizeof *sin6;
  } else {
    auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof *sin;
  }
  if (!fd.valid() || bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0 ||
      getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    ADD_FAILURE() << "FreePort: " << std::strerror(errno);
    return 0;
  }
  return ntohs(family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                  : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
}

bool WaitFor(const std::function<bool()>& cond, milliseconds timeout, milliseconds poll) {
  auto deadline = Clock::now() + timeout;
  while (!cond()) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(poll);
  }
  return true;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<pid_t> ChildPids(pid_t parent) {
  return ScanProc([parent](const ProcStat& s) { return s.ppid == parent; });
}

std::vector<pid_t> GroupPids(pid_t pgid) {
  return ScanProc([pgid](const ProcStat& s) { return s.pgrp == pgid; });
}

bool ProcessAlive(pid_t pid) {
  auto s = ReadProcStat(pid);
  return s && !Dead(*s);
}

bool ProcessStopped(pid_t pid) {
  auto s = ReadProcStat(pid);
  return s && (s->state == 'T' || s->state == 't');
}

long RssBytes(pid_t pid) {
  std::istringstream in(ReadFile("/proc/" + std::to_string(pid) + "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("VmRSS:")) return std::strtol(line.c_str() + 6, nullptr, 10) * 1024;
  }
  return -1;
}

double MetricValue(const std::string& admin, const std::string& series) {
  Client c = Client::Connect(admin);
  if (!c.connected() || !c.SendAll("GET /metrics HTTP/1.0\r\n\r\n")) return -1;
  std::string answer = c.ReceiveToEof();
  size_t at = answer.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(answer.substr(at + series.size() + 2));
}

std::string OwnAddress(const Client& c) {
  sockaddr_in sin{};
  socklen_t len = sizeof sin;
  if (getsockname(c.fd(), reinterpret_cast<sockaddr*>(&sin), &len) != 0) return "?";
  char host[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, &sin.sin_addr, host, sizeof host);
  return std::string(host) + ":" + std::to_string(ntohs(sin.sin_port));
}

std::string Rot13(std::string_view in) {
  std::string out(in);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>('a' + (c - 'a' + 13) % 26);
    else if (c >= 'A' && c <= 'Z') c = static_cast<char>('A' + (c - 'A' + 13) % 26);
  }
  return out;
}

std::string AllBytes() {
  std::string s(256, '\0');
  for (int i = 0; i < 256; ++i) s[static_cast<size_t>(i)] = static_cast<char>(i);
  return s;
}

RunResult RunToCompletion(const std::vector<std::string>& argv, milliseconds timeout) {
  TempDir dir;
  RunResult r;
  pid_t pid = Spawn(argv, CleanEnvironment(), dir.File("out"), dir.File("err"));
  if (pid < 0) return r;
  int status = 0;
  bool done = WaitFor([&] { return waitpid(pid, &status, WNOHANG) == pid; }, timeout);
  if (!done) {
    kill(-pid, SIGKILL);  // pid is not reaped yet, so the group it leads is still ours
    waitpid(pid, &status, 0);
  } else if (WIFEXITED(status)) {
    r.exit_code = WEXITSTATUS(status);
  }
  r.out = ReadFile(dir.File("out"));
  r.err = ReadFile(dir.File("err"));
  return r;
}

// ---------------------------------------------------------------- Daemon

Daemon::Daemon(const TempDir& dir, const std::string& config_path, Options options)
    : log_path_(dir.File("rot13d.log")) {
  std::vector<std::string> env = CleanEnvironment();
  std::vector<std::string> argv;
  if (!options.activate_on.empty()) {
    // systemd-socket-activate passes on only the environment named with -E.
    argv = {SocketActivatePath(), "-l", options.activate_on};
    for (const std::string& e : options.extra_env) argv.insert(argv.end(), {"-E", e});
    argv.push_back("--");
  }
  env.insert(env.end(), options.extra_env.begin(), options.extra_env.end());
  std::string binary = options.binary.empty() ? DaemonPath() : options.binary;
  argv.insert(argv.end(), {binary, "--config", config_path});
  argv.insert(argv.end(), options.extra_args.begin(), options.extra_args.end());
  SpawnOptions spawn;
  spawn.pass_fds = options.listen_fds;
  spawn.single_cpu = options.single_cpu;
  pid_ = Spawn(argv, env, dir.File("rot13d.out"), log_path_, spawn);
  if (pid_ < 0) ADD_FAILURE() << "fork: " << std::strerror(errno);
}

Daemon::~Daemon() {
  if (pid_ <= 0) return;
  // The supervisor is our child and not reaped yet (WaitExit only looks), alive
  // or a zombie. Until it is reaped the kernel keeps its pid, which is also the
  // id of the group Spawn made it lead, allocated: no other process can take
  // that pid or lead a group of that id, so kill(-pid_) reaches only our group,
  // the supervisor and its live workers. A worker that died and was reaped has
  // left the group; a process that took its pid since is not in it. A fork
  // racing the group kill is restarted by the kernel, so no new member escapes
  // (kernel/fork.c). Reaping after the kill, not before, is what makes this safe.
  kill(-pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  if (::testing::Test::HasFailure()) {
    std::fprintf(stderr, "---- rot13d log %s ----\n%s---- end of log ----\n", log_path_.c_str(),
                 Log().c_str());
  }
}

std::string Daemon::Log() const { return ReadFile(log_path_); }

bool Daemon::LogContains(std::string_view needle) const { return Log().find(needle) != std::string::npos; }

size_t Daemon::LogCount(std::string_view needle) const {
  std::string log = Log();
  size_t n = 0;
  for (size_t at = log.find(needle); at != std::string::npos; at = log.find(needle, at + needle.size())) ++n;
  return n;
}

bool Daemon::WaitForLog(std::string_view needle, milliseconds timeout) const {
  return WaitForLogCount(needle, 1, timeout);
}

bool Daemon::WaitForLogCount(std::string_view needle, size_t n, milliseconds timeout) const {
  return WaitFor([&] { return LogCount(needle) >= n; }, timeout);
}

bool Daemon::WaitForWorkerCount(size_t n, milliseconds timeout) const {
  return WaitFor([&] { return Workers().size() == n; }, timeout);
}

void Daemon::Signal(int sig) const {
  if (pid_ > 0 && !status_) kill(pid_, sig);
}

bool Daemon::SignalWorker(pid_t worker, int sig) const {
  if (pid_ <= 0 || worker <= 0) return false;
  // The pidfd names, for good, the process P that has the pid now. A signal
  // through it reaches P only while P is not reaped, and then P still held the
  // pid when /proc was read below: what /proc said (a child of our unreaped
  // supervisor, so a worker) was said of P. Otherwise it fails with ESRCH.
  Fd pidfd(PidfdOpen(worker));
  if (!pidfd.valid()) return false;
  std::optional<ProcStat> s = ReadProcStat(worker);
  if (!s || s->ppid != pid_) return false;
  return PidfdSendSignal(pidfd.get(), sig) == 0;
}

std::optional<int> Daemon::WaitExit(milliseconds timeout) {
  if (status_) return status_;
  // WNOWAIT: observe the exit but leave the zombie, which keeps pid_ ours (see ~Daemon).
  siginfo_t info{};
  auto exited = [&] {
    info.si_pid = 0;
    return waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid_;
  };
  if (WaitFor(exited, timeout)) status_ = WaitStatus(info);
  return status_;
}

// ---------------------------------------------------------------- Client

Client Client::Connect(const std::string& address, milliseconds timeout, const std::string& source) {
  Client c;
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (address.starts_with("unix:")) {
    auto* sun = reinterpret_cast<sockaddr_un*>(&ss);
    sun->sun_family = AF_UNIX;
    std::string path = address.substr(5);
    std::memcpy(sun->sun_path, path.data(), std::min(path.size(), sizeof sun->sun_path - 1));
    len = sizeof *sun;
  } else if (address.starts_with("[")) {
    size_t close = address.find("]:");
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
    sin6->sin6_family = AF_INET6;
    inet_pton(AF_INET6, address.substr(1, close - 1).c_str(), &sin6->sin6_addr);
    sin6->sin6_port = htons(static_cast<uint16_t>(std::stoi(address.substr(close + 2))));
    len = sizeof *sin6;
  } else {
    size_t colon = address.rfind(':');
    auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
    sin->sin_family = AF_INET;
    inet_pton(AF_INET, address.substr(0, colon).c_str(), &sin->sin_addr);
    sin->sin_port = htons(static_cast<uint16_t>(std::stoi(address.substr(colon + 1))));
    len = sizeof *sin;
  }
  c.fd_.Reset(socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!c.fd_.valid()) {
    c.error_ = std::string("socket: ") + std::strerror(errno);
    return c;
  }
  if (!source.empty()) {
    sockaddr_in from{};
    from.sin_family = AF_INET;
    inet_pton(AF_INET, source.c_str(), &from.sin_addr);
    if (bind(c.fd_.get(), reinterpret_cast<sockaddr*>(&from), sizeof from) != 0) {
      c.error_ = "bind " + source + ": " + std::strerror(errno);
      return c;
    }
  }
  if (connect(c.fd_.get(), reinterpret_cast<sockaddr*>(&ss), len) == 0) return c;
  if (errno != EINPROGRESS) {
    c.error_ = "connect " + address + ": " + std::strerror(errno);
    return c;
  }
  if (!PollFor(c.fd_.get(), POLLOUT, Clock::now() + timeout)) {
    c.error_ = "connect " + address + ": timed out";
    return c;
  }
  int err = 0;
  socklen_t err_len = sizeof err;
  getsockopt(c.fd_.get(), SOL_SOCKET, SO_ERROR, &err, &err_len);
  if (err != 0) c.error_ = "connect " + address + ": " + std::strerror(err);
  return c;
}

bool Client::SendAll(std::string_view data, milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  size_t sent = 0;
  while (sent < data.size()) {
    ssize_t n = send(fd_.get(), data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
    } else if (n < 0 && errno == EAGAIN) {
      if (!PollFor(fd_.get(), POLLOUT, deadline)) return false;
    } else if (!(n < 0 && errno == EINTR)) {
      return false;
    }
  }
  return true;
}

std::string Client::Receive(size_t n, milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  std::string out;
  char buf[64 * 1024];
  while (out.size() < n && !eof_) {
    ssize_t got = recv(fd_.get(), buf, std::min(sizeof buf, n - out.size()), 0);
    if (got > 0) {
      out.append(buf, static_cast<size_t>(got));
    } else if (got == 0) {
      eof_ = true;
    } else if (errno == EAGAIN) {
      if (!PollFor(fd_.get(), POLLIN, deadline)) break;
    } else if (errno != EINTR) {
      error_ = std::string("recv: ") + std::strerror(errno);
      break;
    }
  }
  return out;
}

std::string Client::ReceiveToEof(milliseconds timeout) { return Receive(SIZE_MAX, timeout); }

std::string Client::RoundTrip(std::string_view data, milliseconds timeout) {
  // Send and receive interleaved: the daemon stops reading while its answers
  // are not read, so a large payload sent before reading would deadlock.
  auto deadline = Clock::now() + timeout;
  size_t sent = 0;
  std::string out;
  char buf[64 * 1024];
  while (out.size() < data.size() && !eof_) {
    pollfd p{fd_.get(), static_cast<short>(POLLIN | (sent < data.size() ? POLLOUT : 0)), 0};
    int ready = poll(&p, 1, RemainingMs(deadline));
    if (ready == 0) break;
    if (ready < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if ((p.revents & POLLOUT) && sent < data.size()) {
      ssize_t n = send(fd_.get(), data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
      if (n > 0) sent += static_cast<size_t>(n);
      else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        error_ = std::string("send: ") + std::strerror(errno);
        break;
      }
    }
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t got = recv(fd_.get(), buf, std::min(sizeof buf, data.size() - out.size()), 0);
      if (got > 0) out.append(buf, static_cast<size_t>(got));
      else if (got == 0) eof_ = true;
      else if (errno != EAGAIN && errno != EINTR) {
        error_ = std::string("recv: ") + std::strerror(errno);
        break;
      }
    }
  }
  return out;
}

void Client::ShutdownWrite() { shutdown(fd_.get(), SHUT_WR); }

// ---------------------------------------------------------------- NotifySocket

NotifySocket::NotifySocket(std::string path) : path_(std::move(path)) {
  fd_.Reset(socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  int one = 1;
  // Credentials tell which process sent each message (only the supervisor should).
  setsockopt(fd_.get(), SOL_SOCKET, SO_PASSCRED, &one, sizeof one);
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  std::memcpy(sun.sun_path, path_.data(), std::min(path_.size(), sizeof sun.sun_path - 1));
  if (bind(fd_.get(), reinterpret_cast<sockaddr*>(&sun), sizeof sun) != 0) {
    ADD_FAILURE() << "bind " << path_ << ": " << std::strerror(errno);
  }
}

std::optional<NotifySocket::Message> NotifySocket::Receive(milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (true) {
    char data[4096];
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred)) + CMSG_SPACE(8 * sizeof(int))];
    iovec iov{data, sizeof data};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = recvmsg(fd_.get(), &msg, MSG_CMSG_CLOEXEC);
    if (n >= 0) {
      Message m;
      m.text.assign(data, static_cast<size_t>(n));
      for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
          ucred cred{};
          std::memcpy(&cred, CMSG_DATA(c), sizeof cred);
          m.sender = cred.pid;
        } else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
          size_t n_fds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
          for (size_t i = 0; i < n_fds; ++i) {
            int raw = -1;
            std::memcpy(&raw, CMSG_DATA(c) + i * sizeof(int), sizeof raw);
            Fd passed(raw);
            int listening = 0;
            socklen_t len = sizeof listening;
            sockaddr_in sin{};
            socklen_t sin_len = sizeof sin;
            if (getsockopt(raw, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening ||
                getsockname(raw, reinterpret_cast<sockaddr*>(&sin), &sin_len) != 0 || sin.sin_family != AF_INET) {
              m.listening_sockets.push_back("not listening");
              continue;
            }
            char host[INET_ADDRSTRLEN] = {};
            inet_ntop(AF_INET, &sin.sin_addr, host, sizeof host);
            m.listening_sockets.push_back(std::string(host) + ":" + std::to_string(ntohs(sin.sin_port)));
          }
        }
      }
      return m;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN || !PollFor(fd_.get(), POLLIN, deadline)) return std::nullopt;
  }
}

std::optional<NotifySocket::Message> NotifySocket::WaitFor(std::string_view needle, std::vector<Message>* seen,
                                                           milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (auto m = Receive(std::chrono::duration_cast<milliseconds>(deadline - Clock::now()))) {
    seen->push_back(*m);
    if (m->text.find(needle) != std::string::npos) return m;
  }
  return std::nullopt;
}

bool HasLine(std::string_view text, std::string_view line_prefix) {
  std::istringstream in{std::string(text)};
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with(line_prefix)) return true;
  }
  return false;
}

std::optional<std::string> LineValue(std::string_view text, std::string_view key) {
  std::istringstream in{std::string(text)};
  std::string line;
  std::string prefix = std::string(key) + "=";
  while (std::getline(in, line)) {
    if (line.starts_with(prefix)) return line.substr(prefix.size());
  }
  return std::nullopt;
}

std::vector<std::pair<uint16_t, pid_t>> ServerSideOwners(uint16_t server_port, const std::vector<pid_t>& pids) {
  // /proc/net/tcp: "sl local rem st tx:rx tr:when retr uid timeout inode ...", addresses in hex.
  std::map<unsigned long, uint16_t> client_by_inode;
  std::istringstream table(ReadFile("/proc/net/tcp"));
  std::string line;
  std::getline(table, line);  // header
  while (std::getline(table, line)) {
    std::istringstream f(line);
    std::string sl, local, remote, st, queues, timer, retr, uid, timeout;
    unsigned long inode = 0;
    if (!(f >> sl >> local >> remote >> st >> queues >> timer >> retr >> uid >> timeout >> inode)) continue;
    size_t lc = local.find(':'), rc = remote.find(':');
    if (lc == std::string::npos || rc == std::string::npos || inode == 0 || st != "01") continue;  // 01: ESTABLISHED
    if (std::stoul(local.substr(lc + 1), nullptr, 16) != server_port) continue;
    client_by_inode[inode] = static_cast<uint16_t>(std::stoul(remote.substr(rc + 1), nullptr, 16));
  }
  std::vector<std::pair<uint16_t, pid_t>> out;
  for (pid_t pid : pids) {
    std::string dir_path = "/proc/" + std::to_string(pid) + "/fd";
    DIR* dir = opendir(dir_path.c_str());
    if (!dir) continue;
    while (dirent* e = readdir(dir)) {
      if (e->d_name[0] == '.') continue;
      char target[64];
      ssize_t n = readlink((dir_path + "/" + e->d_name).c_str(), target, sizeof target - 1);
      if (n <= 0) continue;
      target[n] = '\0';
      unsigned long inode = 0;
      if (std::sscanf(target, "socket:[%lu]", &inode) != 1) continue;
      auto it = client_by_inode.find(inode);
      if (it != client_by_inode.end()) out.emplace_back(it->second, pid);
    }
    closedir(dir);
  }
  return out;
}

}  // namespace rot13d::blackbox
