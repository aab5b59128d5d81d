#include "tests/clients/tool_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

extern char** environ;

namespace rot13d::clienttest {
namespace {

std::vector<char*> CStrings(std::vector<std::string>& v) {
  std::vector<char*> out;
  for (std::string& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

int RemainingMs(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(left, 0, 1000));
}

}  // namespace

const char* Rot13Path() { return ROT13_BINARY; }
const char* BenchPath() { return ROT13_BENCH_BINARY; }

ToolResult RunTool(const std::vector<std::string>& argv, const ToolInput& input, const ToolOutput& output,
                   milliseconds timeout, const std::vector<std::string>& env) {
  // A child that exits while we still write to its stdin must not kill the test.
  signal(SIGPIPE, SIG_IGN);
  ToolResult r;
  blackbox::TempDir dir;
  const std::string err_path = dir.File("stderr");
  int in_pipe[2], out_pipe[2];
  if (pipe2(in_pipe, O_CLOEXEC) != 0 || pipe2(out_pipe, O_CLOEXEC) != 0) {
    r.err = std::string("pipe: ") + std::strerror(errno);
    return r;
  }
  blackbox::Fd in_read(in_pipe[0]), in_write(in_pipe[1]), out_read(out_pipe[0]), out_write(out_pipe[1]);
  blackbox::Fd in_file;
  if (!input.file.empty()) in_file.Reset(open(input.file.c_str(), O_RDONLY | O_CLOEXEC));

  std::vector<std::string> args = argv;
  std::vector<std::string> environment;
  for (char** e = environ; *e; ++e) environment.emplace_back(*e);
  environment.insert(environment.end(), env.begin(), env.end());
  std::vector<char*> c_argv = CStrings(args);
  std::vector<char*> c_env = CStrings(environment);
  const int child_in = in_file.valid() ? in_file.get() : in_read.get();

  auto start = Clock::now();
  pid_t pid = fork();
  if (pid < 0) {
    r.err = std::string("fork: ") + std::strerror(errno);
    return r;
  }
  if (pid == 0) {
    // Only async-signal-safe calls from here: the test may have threads.
    setpgid(0, 0);
    signal(SIGPIPE, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    int err_fd = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (err_fd < 0 || dup2(child_in, 0) < 0 || dup2(out_write.get(), 1) < 0 || dup2(err_fd, 2) < 0) _exit(127);
    close_range(3, ~0u, 0);
    execve(c_argv[0], c_argv.data(), c_env.data());
    _exit(127);
  }
  setpgid(pid, pid);
  in_read.Reset();
  out_write.Reset();
  in_file.Reset();
  fcntl(in_write.get(), F_SETFL, O_NONBLOCK);
  fcntl(out_read.get(), F_SETFL, O_NONBLOCK);

  const uint64_t input_size = input.size != 0 ? input.size : input.data.size();
  uint64_t written = 0;
  uint64_t read_total = 0;
  std::string chunk;
  size_t chunk_at = 0;
  if (!input.file.empty() || input_size == 0) in_write.Reset();
  auto deadline = start + timeout;
  char buf[64 * 1024];
  int status = 0;
  bool reaped = false;
  while (Clock::now() < deadline) {
    if (in_write.valid() && chunk_at == chunk.size()) {
      if (written == input_size) {
        in_write.Reset();
      } else {
        size_t n = static_cast<size_t>(std::min<uint64_t>(input_size - written, 256 * 1024));
        if (input.size != 0) {
          chunk.resize(n);
          input.produce(written, chunk.data(), n);
        } else {
          chunk.assign(input.data.substr(written, n));
        }
        chunk_at = 0;
      }
    }
    pollfd fds[2];
    nfds_t n = 0;
    if (out_read.valid()) fds[n++] = {out_read.get(), POLLIN, 0};
    if (in_write.valid()) fds[n++] = {in_write.get(), POLLOUT, 0};
    if (n == 0) break;
    if (poll(fds, n, RemainingMs(deadline)) < 0 && errno != EINTR) break;
    if (in_write.valid()) {
      ssize_t k = write(in_write.get(), chunk.data() + chunk_at, chunk.size() - chunk_at);
      if (k > 0) {
        chunk_at += static_cast<size_t>(k);
        written += static_cast<uint64_t>(k);
      } else if (k < 0 && errno != EAGAIN && errno != EINTR) {
        in_write.Reset();  // the child closed its input (EPIPE): stop feeding
      }
    }
    if (out_read.valid()) {
      ssize_t k = read(out_read.get(), buf, sizeof buf);
      if (k > 0) {
        size_t take = static_cast<size_t>(std::min<uint64_t>(static_cast<uint64_t>(k), output.close_after - read_total));
        if (output.consume) {
          output.consume(buf, take);
        } else {
          r.out.append(buf, take);
        }
        read_total += take;
        if (read_total >= output.close_after) out_read.Reset();
      } else if (k == 0) {
        out_read.Reset();
      } else if (errno != EAGAIN && errno != EINTR) {
        out_read.Reset();
      }
    }
  }
  in_write.Reset();
  out_read.Reset();
  reaped = blackbox::WaitFor([&] { return waitpid(pid, &status, WNOHANG) == pid; },
                             std::chrono::duration_cast<milliseconds>(
                                 std::max<Clock::duration>(deadline - Clock::now(), Clock::duration(0))) +
                                 100ms,
                             2ms);
  if (!reaped) {
    r.timed_out = true;
    kill(-pid, SIGKILL);  // pid is not reaped yet, so the group it leads is still ours
    waitpid(pid, &status, 0);
  }
  r.elapsed = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
  if (!r.timed_out && WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  r.err = blackbox::ReadFile(err_path);
  return r;
}

}  // namespace rot13d::clienttest
