// The command line: --check-config, --version, --help, bad arguments and exit codes.
#include <sys/wait.h>

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

}  // namespace
}  // namespace rot13d::blackbox
