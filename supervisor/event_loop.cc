#include "supervisor/event_loop.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>

#include "common/log.h"

namespace rot13d::supervisor {
namespace {

enum : uint64_t { kTagSignal = 1, kTagTimer, kTagReady, kTagAlso };

}  // namespace

Status EventLoop::Open(const SignalSet& signals, UniqueFd ready) {
  if (Status s = SetSignalMask(signals); !s) return s.error();
  auto fd = OpenSignalFd(signals);
  if (!fd) return fd.error();
  signals_ = std::move(*fd);
  timer_.reset(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  if (!timer_) return ErrnoErr() << "timerfd_create";
  ready_ = ready ? std::move(ready) : UniqueFd(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!ready_) return ErrnoErr() << "eventfd";
  epoll_.reset(epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_) return ErrnoErr() << "epoll_create1";
  for (auto [f, tag] : {std::pair{signals_.get(), kTagSignal}, {timer_.get(), kTagTimer}, {ready_.get(), kTagReady}}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = tag;
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, f, &ev) != 0) return ErrnoErr() << "epoll_ctl";
  }
  return OkStatus();
}

void EventLoop::WatchAlso(const std::vector<int>& fds) {
  // A descriptor closed meanwhile left the set by itself (ENOENT, EBADF).
  for (int fd : also_) (void)epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
  also_.clear();
  for (int fd : fds) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kTagAlso;
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
      Log(LogLevel::kError, Error(ErrnoErr() << "epoll_ctl of an admin or agent descriptor").ToString());
      continue;
    }
    also_.push_back(fd);
  }
}

void EventLoop::CloseInChild() {
  epoll_.reset();
  signals_.reset();
  timer_.reset();
}

Status EventLoop::Wait(TimePoint deadline, std::vector<signalfd_siginfo>* signals) {
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - Clock::now()).count();
  if (ns < 1) ns = 1;  // zero would disarm the timer
  itimerspec spec{};
  spec.it_value.tv_sec = ns / 1000000000;
  spec.it_value.tv_nsec = ns % 1000000000;
  if (timerfd_settime(timer_.get(), 0, &spec, nullptr) != 0) return ErrnoErr() << "timerfd_settime";
  constexpr int kMaxEvents = 8;
  epoll_event events[kMaxEvents];
  int n = epoll_wait(epoll_.get(), events, kMaxEvents, -1);
  if (n < 0) return errno == EINTR ? OkStatus() : Status(ErrnoErr() << "epoll_wait");
  for (int i = 0; i < n; ++i) {
    uint64_t drained = 0;
    switch (events[i].data.u64) {
      case kTagSignal: {
        signalfd_siginfo si{};
        while (read(signals_.get(), &si, sizeof si) == static_cast<ssize_t>(sizeof si)) signals->push_back(si);
        break;
      }
      // Reads that only reset a level: nothing to do if they find nothing.
      case kTagTimer: (void)!read(timer_.get(), &drained, sizeof drained); break;
      case kTagReady: (void)!read(ready_.get(), &drained, sizeof drained); break;
    }
  }
  return OkStatus();
}

}  // namespace rot13d::supervisor
