// The supervisor's messages to systemd (sd_notify); silent when NOTIFY_SOCKET is unset.
#pragma once

#include <chrono>
#include <string>

namespace rot13d::supervisor {

class Notifier {
 public:
  Notifier();
  bool enabled() const { return enabled_; }
  void Ready(const std::string& status);
  void Reloading();  // RELOADING=1 with MONOTONIC_USEC, as systemd 253+ wants
  void Stopping();
  void Status(const std::string& status);
  // Zero when the service manager set no watchdog.
  std::chrono::microseconds watchdog_interval() const { return watchdog_; }
  void Watchdog();

 private:
  void Send(const std::string& state);
  bool enabled_ = false;
  std::chrono::microseconds watchdog_{0};
  std::string last_status_;
};

}  // namespace rot13d::supervisor
