// The common fixture: a temp dir, a free loopback port, and a daemon started on them.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <string_view>

#include "tests/blackbox/harness.h"

namespace rot13d::blackbox {

class DaemonTest : public ::testing::Test {
 protected:
  // The address every config written here listens on.
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  // rot13d.toml: line 1 listen, line 2 log_target, then `extra` from line 3.
  // The suite runs as root in temp dirs only root may read, so unless `extra`
  // says otherwise the daemon keeps root (`user = "root"`, after `extra`)
  // instead of dropping to the default user "nobody".
  std::string WriteConfig(std::string_view extra) {
    std::string text = "listen = [\"" + address() + "\"]\nlog_target = \"stderr\"\n" + std::string(extra);
    if (text.find("\nuser =") == std::string::npos) text += "\nuser = \"root\"\n";
    return dir_.Write("rot13d.toml", text);
  }

  // Starts rot13d on WriteConfig(extra) and waits until `workers` workers serve.
  // Callers wrap it in ASSERT_NO_FATAL_FAILURE.
  void Start(std::string_view extra, size_t workers, Daemon::Options options = {}) {
    daemon_ = std::make_unique<Daemon>(dir_, WriteConfig(extra), std::move(options));
    ASSERT_TRUE(daemon_->started());
    ASSERT_TRUE(daemon_->WaitReady()) << "no ready line";
    ASSERT_TRUE(daemon_->WaitForWorkerCount(workers)) << daemon_->Workers().size() << " workers";
  }

  // A fresh connection's round trip of text, or a description of what went wrong.
  std::string FreshRoundTrip(std::string_view text, const std::string& where = {}) {
    Client c = Client::Connect(where.empty() ? address() : where);
    if (!c.connected()) return "<" + c.error() + ">";
    return c.RoundTrip(text);
  }

  TempDir dir_;
  uint16_t port_ = FreePort();
  std::unique_ptr<Daemon> daemon_;
};

}  // namespace rot13d::blackbox
