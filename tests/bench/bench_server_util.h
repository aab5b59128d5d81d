// Shared by the benchmark reference servers: arguments, a loopback listener, the "listening on" line.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace bench {

struct ServerArgs {
  std::string address = "127.0.0.1:0";  // IPv4 "host:port"; port 0 picks a free one
  int workers = 2;
};

inline ServerArgs ParseServerArgs(int argc, char** argv, const char* name) {
  ServerArgs a;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--listen" && i + 1 < argc) {
      a.address = argv[++i];
    } else if (arg == "--workers" && i + 1 < argc) {
      a.workers = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: %s [--listen 127.0.0.1:PORT] [--workers N]\n", name);
      std::exit(2);
    }
  }
  if (a.workers < 1 || a.workers > 64) {
    std::fprintf(stderr, "%s: --workers must be 1..64\n", name);
    std::exit(2);
  }
  return a;
}

// Connections are descriptors: the benchmark holds thousands at once.
inline void RaiseFdLimit() {
  rlimit r{};
  if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
    r.rlim_cur = r.rlim_max;
    setrlimit(RLIMIT_NOFILE, &r);
  }
}

// Binds and listens on an IPv4 address (backlog 4096, like rot13d's default); exits on failure.
inline int Listen(const std::string& address, bool nonblocking) {
  size_t colon = address.rfind(':');
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  if (colon == std::string::npos || inet_pton(AF_INET, address.substr(0, colon).c_str(), &sa.sin_addr) != 1) {
    std::fprintf(stderr, "bad address %s (want IPv4 host:port)\n", address.c_str());
    std::exit(2);
  }
  sa.sin_port = htons(static_cast<uint16_t>(std::atoi(address.c_str() + colon + 1)));
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || listen(fd, 4096) != 0) {
    std::fprintf(stderr, "cannot listen on %s: %s\n", address.c_str(), std::strerror(errno));
    std::exit(1);
  }
  return fd;
}

// Tells the script which port to use.
inline void AnnounceListening(int fd) {
  sockaddr_in sa{};
  socklen_t len = sizeof sa;
  getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  char host[INET_ADDRSTRLEN] = "?";
  inet_ntop(AF_INET, &sa.sin_addr, host, sizeof host);
  std::printf("listening on %s:%u\n", host, ntohs(sa.sin_port));
  std::fflush(stdout);
}

// The prefork model of the echo references: forks `workers` children that run
// worker(listener) and die with the parent, announces the port, and waits for
// SIGTERM or SIGINT to kill them. Returns main's exit code.
inline int RunPrefork(int listener, int workers, void (*worker)(int listener)) {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  pid_t parent = getpid();
  std::vector<pid_t> children;
  for (int i = 0; i < workers; ++i) {
    pid_t pid = fork();
    if (pid < 0) {
      std::perror("fork");
      return 1;
    }
    if (pid == 0) {
      sigprocmask(SIG_UNBLOCK, &mask, nullptr);
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(1);
      signal(SIGPIPE, SIG_IGN);
      worker(listener);
      _exit(1);
    }
    children.push_back(pid);
  }
  AnnounceListening(listener);
  int sig = 0;
  sigwait(&mask, &sig);
  for (pid_t pid : children) kill(pid, SIGKILL);
  for (pid_t pid : children) waitpid(pid, nullptr, 0);
  return 0;
}

}  // namespace bench
