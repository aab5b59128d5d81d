// The command line: --check-config, --version, --help, bad arguments and exit codes.
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <regex>

#include "tests/blackbox/daemon_test.h"

namespace rot13d::blackbox {
namespace {

using CliTest = DaemonTest;

// The documented exit codes (common/exit_codes.h), restated: they are a protocol.
constexpr int kExitOk = 0;
constexpr int kExitUsage = 2;
constexpr int kExitConfig = 3;

RunResult Rot13d(std::vector<std::string> args) {
  args.insert(args.begin(), DaemonPath());
  return RunToCompletion(args);
}

TEST_F(CliTest, CheckConfigPrintsEffectiveConfigOfValidFile) {
  std::string path = WriteConfig("workers = 2\nidle_timeout = 0.5\n");
  RunResult r = Rot13d({"--check-config", "--config", path});
  EXPECT_EQ(r.exit_code, kExitOk) << r.err;
  EXPECT_NE(r.out.find("listen = [\"" + address() + "\"]"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("workers = 2\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("idle_timeout = 0.5\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("buffer_size = 65536\n"), std::string::npos) << "defaults belong in the effective config\n"
                                                                    << r.out;
  EXPECT_NE(r.err.find("is valid"), std::string::npos) << r.err;
}

TEST_F(CliTest, CheckConfigReportsErrorsByPosition) {
  std::string path = WriteConfig("# workers below\nworkers = \"lots\"\n");
  RunResult r = Rot13d({"-t", "-c", path});
  EXPECT_EQ(r.exit_code, kExitConfig);
  EXPECT_NE(r.err.find(path + ":4:11: 'workers'"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty()) << "nothing effective to print: " << r.out;

  path = WriteConfig("backlog = [1,\n");
  r = Rot13d({"--check-config", "--config=" + path});
  EXPECT_EQ(r.exit_code, kExitConfig);
  EXPECT_NE(r.err.find(path + ":"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("syntax error"), std::string::npos) << r.err;
}

TEST_F(CliTest, CheckConfigNamesUnknownKey) {
  std::string path = WriteConfig("workers = 1\ncolour = \"blue\"\n");
  RunResult r = Rot13d({"--check-config", "--config", path});
  EXPECT_EQ(r.exit_code, kExitConfig);
  EXPECT_NE(r.err.find(path + ":4:1: unknown key 'colour'"), std::string::npos) << r.err;
}

TEST_F(CliTest, CheckConfigOfMissingFileFails) {
  RunResult r = Rot13d({"--check-config", "--config", dir_.File("nonexistent.toml")});
  EXPECT_EQ(r.exit_code, kExitConfig);
  EXPECT_NE(r.err.find(dir_.File("nonexistent.toml")), std::string::npos) << r.err;
}

TEST_F(CliTest, VersionAndHelp) {
  RunResult version = Rot13d({"--version"});
  EXPECT_EQ(version.exit_code, kExitOk);
  EXPECT_TRUE(version.out.starts_with("rot13d ")) << version.out;
  EXPECT_EQ(Rot13d({"-v"}).out, version.out);

  RunResult help = Rot13d({"--help"});
  EXPECT_EQ(help.exit_code, kExitOk);
  EXPECT_TRUE(help.out.starts_with("Usage: rot13d")) << help.out;
  EXPECT_NE(help.out.find("--check-config"), std::string::npos);
}

TEST_F(CliTest, BadArgumentsAreUsageErrors) {
  RunResult r = Rot13d({"--frobnicate"});
  EXPECT_EQ(r.exit_code, kExitUsage);
  EXPECT_NE(r.err.find("unknown argument '--frobnicate'"), std::string::npos) << r.err;
  EXPECT_EQ(Rot13d({"--config"}).exit_code, kExitUsage);
}

TEST_F(CliTest, InvalidConfigAtStartExitsWithConfigError) {
  std::string path = WriteConfig("buffer_size = 12\n");
  Daemon daemon(dir_, path);
  std::optional<int> status = daemon.WaitExit();
  ASSERT_TRUE(status) << "rot13d kept running on an invalid file";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == kExitConfig) << "wait status " << *status;
  EXPECT_TRUE(daemon.LogContains(path + ":3:15: 'buffer_size'")) << daemon.Log();
  EXPECT_TRUE(daemon.LogContains("not starting"));
  EXPECT_FALSE(Client::Connect(address()).connected()) << "nothing should listen";
}

// --listen (the socat/ncat/gunicorn -b habit) replaces the file's addresses,
// repeatable, and keeps doing so at a reload. The first log line says the
// version and the file in use.
TEST_F(CliTest, ListenOptionReplacesTheFilesAddresses) {
  uint16_t other = FreePort();
  const std::string a = "127.0.0.1:" + std::to_string(other), b = "[::1]:" + std::to_string(other);
  RunResult check = Rot13d({"-t", "-c", WriteConfig("workers = 1\n"), "-l", a, "--listen", b});
  EXPECT_EQ(check.exit_code, kExitOk) << check.err;
  EXPECT_NE(check.out.find("listen = [\"" + a + "\", \"" + b + "\"]"), std::string::npos) << check.out;

  Daemon::Options options;
  options.extra_args = {"--listen", a};
  daemon_ = std::make_unique<Daemon>(dir_, WriteConfig("workers = 1\n"), options);
  ASSERT_TRUE(daemon_->WaitReady()) << daemon_->Log();
  EXPECT_EQ(FreshRoundTrip("Hello", a), "Uryyb");
  EXPECT_FALSE(Client::Connect(address(), 500ms).connected()) << "the file's address is not used";
  WriteConfig("workers = 2\n");
  daemon_->Signal(SIGHUP);
  ASSERT_TRUE(daemon_->WaitForLog("reload complete: generation 2")) << daemon_->Log();
  EXPECT_EQ(FreshRoundTrip("Hello", a), "Uryyb");
  EXPECT_FALSE(Client::Connect(address(), 500ms).connected()) << "a reload keeps the command line's addresses";
  std::string first = daemon_->Log().substr(0, daemon_->Log().find('\n'));
  EXPECT_NE(first.find("info: rot13d "), std::string::npos) << first;
  // Local time with its UTC offset, to the millisecond.
  EXPECT_TRUE(std::regex_search(first, std::regex(R"(^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}[+-]\d{4} rot13d\[)")))
      << first;
  EXPECT_NE(first.find(" starting (pid " + std::to_string(daemon_->pid()) + ") with " + dir_.File("rot13d.toml")),
            std::string::npos)
      << first;

  RunResult bad = Rot13d({"-l", "127.0.0.1:0"});
  EXPECT_EQ(bad.exit_code, kExitUsage);
  EXPECT_NE(bad.err.find("--listen 127.0.0.1:0: port 0 would bind a random port"), std::string::npos) << bad.err;
}

// A port below 1024 without the privilege: the error says what is missing.
TEST_F(CliTest, PrivilegedPortWithoutPrivilegeSaysWhatIsNeeded) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root: runs rot13d as nobody through setpriv";
  if (access("/usr/bin/setpriv", X_OK) != 0) GTEST_SKIP() << "needs /usr/bin/setpriv (util-linux)";
  std::string config = dir_.Write("low.toml", "listen = [\"127.0.0.1:999\"]\nlog_target = \"stderr\"\n");
  ASSERT_EQ(chmod(dir_.path().c_str(), 0755), 0);
  ASSERT_EQ(chmod(config.c_str(), 0644), 0);
  RunResult r = RunToCompletion({"/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", DaemonPath(),
                                 "-c", config});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("bind 127.0.0.1:999: Permission denied (a port below 1024 needs root or "
                       "CAP_NET_BIND_SERVICE)"),
            std::string::npos)
      << r.err;
}

}  // namespace
}  // namespace rot13d::blackbox
