// Black-box test harness: runs the built rot13d in a temp dir and talks to it like a user would.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace rot13d::blackbox {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using namespace std::chrono_literals;

// Generous: a deadline only costs time when something is already wrong.
inline constexpr milliseconds kStartTimeout = 10s;
inline constexpr milliseconds kIoTimeout = 5s;

// The binary under test and helpers, from compile definitions.
const char* DaemonPath();
const char* TestHooksDaemonPath();  // rot13d built with ROT13D_TEST_HOOKS
const char* SocketActivatePath();  // empty when systemd-socket-activate was not found

// A private directory under /tmp (short, so unix socket paths fit), removed with its contents.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string File(std::string_view name) const;
  // Writes (atomically, by rename) and returns the file's path.
  std::string Write(std::string_view name, std::string_view text) const;

 private:
  std::string path_;
};

// A move-only owned descriptor; the harness does not borrow the daemon's own types.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(other.Release()) {}
  Fd& operator=(Fd&& other) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { Reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int Release();
  void Reset(int fd = -1);

 private:
  int fd_ = -1;
};

// A loopback TCP port nobody listens on right now (bind port 0, read it, close).
uint16_t FreePort(int family = 2 /* AF_INET */);

// Polls cond until it holds or the deadline passes; true if it held.
bool WaitFor(const std::function<bool()>& cond, milliseconds timeout, milliseconds poll = 5ms);

std::string ReadFile(const std::string& path);

// Live (not zombie) processes whose parent is `parent`, in pid order.
std::vector<pid_t> ChildPids(pid_t parent);
// Live (not zombie) processes in process group `pgid`. Read only: a group id
// names our group only while one of its members is our unreaped child.
std::vector<pid_t> GroupPids(pid_t pgid);
// False once the process is gone or a zombie (reparented zombies may never be reaped here).
bool ProcessAlive(pid_t pid);
// True while the process is stopped (SIGSTOP, or by a tracer).
bool ProcessStopped(pid_t pid);
// VmRSS in bytes, or -1 when it cannot be read.
long RssBytes(pid_t pid);
// For each established loopback IPv4 TCP connection to server_port whose server side one of
// `pids` holds: client port -> that pid. Read as an operator would: the
// sockets of /proc/net/tcp matched by inode against each pid's /proc/PID/fd.
std::vector<std::pair<uint16_t, pid_t>> ServerSideOwners(uint16_t server_port, const std::vector<pid_t>& pids);

// rot13 as the daemon should apply it: letters rotate, every other byte passes.
std::string Rot13(std::string_view in);
// Every byte value 0..255 once, in order.
std::string AllBytes();

// Result of running a short-lived command to completion.
struct RunResult {
  int exit_code = -1;  // -1 when killed or timed out
  std::string out;
  std::string err;
};
RunResult RunToCompletion(const std::vector<std::string>& argv, milliseconds timeout = kStartTimeout);

// How to start rot13d: extra environment, and the ways of socket activation.
struct DaemonOptions {
  std::vector<std::string> extra_env;  // "NAME=value"
  // Run through systemd-socket-activate listening on this address ("127.0.0.1:PORT").
  std::string activate_on;
  // Socket activation done by hand: these become fds 3.. with LISTEN_FDS and
  // LISTEN_PID set as systemd would.
  std::vector<int> listen_fds;
  // Restrict the daemon to one CPU (what workers = "auto" should follow).
  bool single_cpu = false;
  // The binary to run; empty means DaemonPath().
  std::string binary;
  // Arguments after `--config PATH`.
  std::vector<std::string> extra_args;
};

// rot13d running in its own process group, stderr (the log) and stdout to files in dir.
// The supervisor is reaped only by the destructor (a zombie until then once it
// exits), so pid() and the group it leads stay ours for the Daemon's lifetime.
class Daemon {
 public:
  using Options = DaemonOptions;

  Daemon(const TempDir& dir, const std::string& config_path, Options options = {});
  // Kills the whole process group it created, then reaps the supervisor.
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  pid_t pid() const { return pid_; }
  bool started() const { return pid_ > 0; }
  const std::string& log_path() const { return log_path_; }

  std::string Log() const;
  bool LogContains(std::string_view needle) const;
  size_t LogCount(std::string_view needle) const;
  bool WaitForLog(std::string_view needle, milliseconds timeout = kStartTimeout) const;
  // Waits for the n-th occurrence of needle.
  bool WaitForLogCount(std::string_view needle, size_t n, milliseconds timeout = kStartTimeout) const;
  // Waits for the "ready:" line of the first generation.
  bool WaitReady(milliseconds timeout = kStartTimeout) const { return WaitForLog("] info: ready: ", timeout); }

  std::vector<pid_t> Workers() const { return ChildPids(pid_); }
  bool WaitForWorkerCount(size_t n, milliseconds timeout = kStartTimeout) const;

  void Signal(int sig) const;
  // Sends sig to a worker (a pid from Workers()) if it is still the supervisor's
  // child; false if not (it died, and its pid may already be someone else's).
  bool SignalWorker(pid_t worker, int sig) const;
  // The raw wait status once the supervisor exits within timeout; it is not reaped.
  std::optional<int> WaitExit(milliseconds timeout = kStartTimeout);
  bool exited() const { return status_.has_value(); }

 private:
  pid_t pid_ = -1;
  std::string log_path_;
  std::optional<int> status_;
};

// A stream client with deadlines on every operation; its socket is non-blocking.
class Client {
 public:
  // address: "127.0.0.1:PORT", "[::1]:PORT" or "unix:/path". source: an IPv4
  // address to connect from ("127.0.0.2"), or "" for the kernel's choice.
  static Client Connect(const std::string& address, milliseconds timeout = kIoTimeout,
                        const std::string& source = {});

  bool connected() const { return fd_.valid() && error_.empty(); }
  const std::string& error() const { return error_; }
  int fd() const { return fd_.get(); }
  bool eof() const { return eof_; }

  // Sends everything or fails at the deadline (or on error). Safe to call from
  // a writer thread while another thread receives.
  bool SendAll(std::string_view data, milliseconds timeout = kIoTimeout);
  // Returns as soon as n bytes arrived, or less on EOF, error or deadline.
  std::string Receive(size_t n, milliseconds timeout = kIoTimeout);
  // Everything until EOF; eof() tells whether it came before the deadline.
  std::string ReceiveToEof(milliseconds timeout = kIoTimeout);
  // Sends data and reads back as many bytes.
  std::string RoundTrip(std::string_view data, milliseconds timeout = kIoTimeout);
  void ShutdownWrite();
  void Close() { fd_.Reset(); }

 private:
  Fd fd_;
  std::string error_;
  bool eof_ = false;
};

// The value of one sample of the admin endpoint's /metrics at `admin`
// ("unix:/path" or "127.0.0.1:PORT"), e.g. "rot13d_connections_accepted_total"; -1 if absent.
double MetricValue(const std::string& admin, const std::string& series);

// A TCP client's own end, as the server sees it as the peer: "127.0.0.1:PORT"
// ("?" when it cannot be read).
std::string OwnAddress(const Client& c);

// A datagram socket standing in for systemd's NOTIFY_SOCKET.
class NotifySocket {
 public:
  explicit NotifySocket(std::string path);
  const std::string& path() const { return path_; }

  struct Message {
    std::string text;
    pid_t sender = 0;  // from SCM_CREDENTIALS
    // Descriptors passed with it (SCM_RIGHTS, as FDSTORE=1 sends them): the
    // local address of each listening socket ("127.0.0.1:PORT"), or
    // "not listening"; the descriptors themselves are closed on receipt.
    std::vector<std::string> listening_sockets;
  };
  std::optional<Message> Receive(milliseconds timeout);
  // Receives until a message contains needle; every message read is appended to seen.
  std::optional<Message> WaitFor(std::string_view needle, std::vector<Message>* seen,
                                 milliseconds timeout = kStartTimeout);

 private:
  std::string path_;
  Fd fd_;
};

// Each KEY=VALUE line of a notification.
bool HasLine(std::string_view text, std::string_view line_prefix);
std::optional<std::string> LineValue(std::string_view text, std::string_view key);

}  // namespace rot13d::blackbox
