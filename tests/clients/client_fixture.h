// The fixture of the client tool tests: rot13d on IPv4, IPv6 and a Unix socket in a temp
// dir, and the tools' exit codes restated, since they are a protocol.
#pragma once

#include <sys/socket.h>

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "tests/blackbox/harness.h"
#include "tests/clients/tool_process.h"

namespace rot13d::clienttest {

inline constexpr int kExitOk = 0;
inline constexpr int kExitIoError = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitBadAddress = 3;
inline constexpr int kExitRefused = 4;
inline constexpr int kExitReset = 5;
inline constexpr int kExitTimeout = 6;
inline constexpr int kExitMismatch = 7;

class ClientTest : public ::testing::Test {
 protected:
  std::string v4() const { return "127.0.0.1:" + std::to_string(port_); }
  std::string v6() const { return "[::1]:" + std::to_string(port6_); }
  std::string unix_address() const { return "unix:" + dir_.File("rot13d.sock"); }

  // rot13d with one worker on all three addresses. Callers wrap it in ASSERT_NO_FATAL_FAILURE.
  void StartDaemon() {
    std::string config = "listen = [\"" + v4() + "\", \"" + v6() + "\", \"" + unix_address() +
                         "\"]\n"
                         "log_target = \"stderr\"\n"
                         "workers = 1\n"
                         // Root keeps root: the temp dir is readable by root only.
                         "user = \"root\"\n";
    daemon_ = std::make_unique<blackbox::Daemon>(dir_, dir_.Write("rot13d.toml", config));
    ASSERT_TRUE(daemon_->started());
    ASSERT_TRUE(daemon_->WaitReady()) << "no ready line";
  }

  blackbox::TempDir dir_;
  uint16_t port_ = blackbox::FreePort();
  uint16_t port6_ = blackbox::FreePort(AF_INET6);
  std::unique_ptr<blackbox::Daemon> daemon_;
};

}  // namespace rot13d::clienttest
