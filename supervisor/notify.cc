#include "supervisor/notify.h"

#include <systemd/sd-daemon.h>
#include <time.h>

#include <cstdint>
#include <cstdlib>

#include "common/log.h"

namespace rot13d::supervisor {

Notifier::Notifier() {
  enabled_ = std::getenv("NOTIFY_SOCKET") != nullptr;
  uint64_t usec = 0;
  if (enabled_ && sd_watchdog_enabled(/*unset_environment=*/0, &usec) > 0) {
    watchdog_ = std::chrono::microseconds(usec);
  }
}

void Notifier::Send(const std::string& state) {
  if (!enabled_) return;
  int r = sd_notify(/*unset_environment=*/0, state.c_str());
  if (r < 0) Log(LogLevel::kDebug, "sd_notify failed: " + std::to_string(r));
}

void Notifier::Ready(const std::string& status) {
  last_status_ = status;
  Send("READY=1\nSTATUS=" + status);
}

void Notifier::Reloading() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t usec = static_cast<uint64_t>(ts.tv_sec) * 1000000u + static_cast<uint64_t>(ts.tv_nsec) / 1000u;
  Send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec));
}

void Notifier::Stopping() { Send("STOPPING=1"); }

void Notifier::Status(const std::string& status) {
  if (status == last_status_) return;
  last_status_ = status;
  Send("STATUS=" + status);
}

void Notifier::Watchdog() { Send("WATCHDOG=1"); }

}  // namespace rot13d::supervisor
