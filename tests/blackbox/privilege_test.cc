// Started as root, rot13d binds and then becomes `user` (default nobody) before
// any worker exists; unix socket files get the configured owner and mode.
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <sstream>

#include "common/exit_codes.h"
#include "tests/blackbox/daemon_test.h"

namespace rot13d::blackbox {
namespace {

// "Uid:\t0\t0\t0\t0" -> the four ids (real, effective, saved, filesystem).
std::string StatusLine(pid_t pid, const std::string& key) {
  std::istringstream in(ReadFile("/proc/" + std::to_string(pid) + "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0) return line.substr(key.size() + 1);
  }
  return "<no " + key + " line>";
}

std::string FourTimes(unsigned id) {
  std::string s = std::to_string(id);
  return "\t" + s + "\t" + s + "\t" + s + "\t" + s;
}

class PrivilegeTest : public DaemonTest {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: tests dropping root to another user";
    passwd* pw = getpwnam("nobody");
    ASSERT_NE(pw, nullptr) << "no user nobody on this machine";
    nobody_uid_ = pw->pw_uid;
    nobody_gid_ = pw->pw_gid;
  }
  // The config as written, without the fixture's `user = "root"`.
  std::string WriteRaw(const std::string& extra) {
    return dir_.Write("rot13d.toml", "listen = [\"" + address() + "\"]\nlog_target = \"stderr\"\n" + extra);
  }
  uid_t nobody_uid_ = 0;
  gid_t nobody_gid_ = 0;
};

TEST_F(PrivilegeTest, AsRootTheSupervisorAndWorkersBecomeNobodyByDefault) {
  daemon_ = std::make_unique<Daemon>(dir_, WriteRaw("workers = 2\n"));
  ASSERT_TRUE(daemon_->WaitReady()) << daemon_->Log();
  ASSERT_TRUE(daemon_->WaitForWorkerCount(2));
  EXPECT_TRUE(daemon_->LogContains("running as nobody (uid " + std::to_string(nobody_uid_) + ")"))
      << daemon_->Log();
  std::vector<pid_t> all = daemon_->Workers();
  all.push_back(daemon_->pid());
  for (pid_t pid : all) {
    SCOPED_TRACE(pid);
    // Real, effective, saved and filesystem ids: no way back to root.
    EXPECT_EQ(StatusLine(pid, "Uid"), FourTimes(nobody_uid_));
    EXPECT_EQ(StatusLine(pid, "Gid"), FourTimes(nobody_gid_));
    EXPECT_EQ(StatusLine(pid, "Groups").find("\t0 "), std::string::npos) << "kept root's group";
  }
  EXPECT_EQ(FreshRoundTrip("Hello"), "Uryyb");
  // A worker killed is replaced by one forked from the unprivileged supervisor.
  pid_t victim = daemon_->Workers().at(0);
  ASSERT_TRUE(daemon_->SignalWorker(victim, SIGKILL));
  ASSERT_TRUE(WaitFor([&] {
    auto w = daemon_->Workers();
    return w.size() == 2 && std::find(w.begin(), w.end(), victim) == w.end();
  }, kStartTimeout));
  for (pid_t pid : daemon_->Workers()) EXPECT_EQ(StatusLine(pid, "Uid"), FourTimes(nobody_uid_));
}

TEST_F(PrivilegeTest, ExplicitRootKeepsRootAndSaysSo) {
  daemon_ = std::make_unique<Daemon>(dir_, WriteRaw("workers = 1\nuser = \"root\"\n"));
  ASSERT_TRUE(daemon_->WaitReady()) << daemon_->Log();
  ASSERT_TRUE(daemon_->WaitForWorkerCount(1));
  EXPECT_EQ(StatusLine(daemon_->Workers().at(0), "Uid"), FourTimes(0));
  EXPECT_TRUE(daemon_->LogContains("warning: running as root, as configured")) << daemon_->Log();
}

TEST_F(PrivilegeTest, UnknownUserRefusesToStartWithAConfigError) {
  daemon_ = std::make_unique<Daemon>(dir_, WriteRaw("user = \"no-such-user-r13\"\n"));
  std::optional<int> status = daemon_->WaitExit();
  ASSERT_TRUE(status) << daemon_->Log();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == kExitConfig) << *status;
  EXPECT_TRUE(daemon_->LogContains("cannot drop privileges to user 'no-such-user-r13': no such user"))
      << daemon_->Log();
  EXPECT_TRUE(GroupPids(daemon_->pid()).empty()) << "a worker started anyway";
}

TEST_F(PrivilegeTest, UnixSocketGetsTheConfiguredOwnerGroupAndMode) {
  std::string path = dir_.File("owned.sock");
  group* nogroup = getgrgid(nobody_gid_);
  ASSERT_NE(nogroup, nullptr);
  std::string config = dir_.Write(
      "rot13d.toml", "listen = [\"unix:" + path + "\"]\nlog_target = \"stderr\"\nworkers = 1\nuser = \"root\"\n" +
                         "socket_user = \"nobody\"\nsocket_group = \"" + nogroup->gr_name + "\"\nsocket_mode = \"0660\"\n");
  daemon_ = std::make_unique<Daemon>(dir_, config);
  ASSERT_TRUE(daemon_->WaitReady()) << daemon_->Log();
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_uid, nobody_uid_);
  EXPECT_EQ(st.st_gid, nobody_gid_);
  EXPECT_EQ(st.st_mode & 07777, 0660u);
  EXPECT_EQ(FreshRoundTrip("Hello", "unix:" + path), "Uryyb");
}

TEST_F(PrivilegeTest, UnknownSocketOwnerIsACleanStartFailure) {
  std::string path = dir_.File("x.sock");
  std::string config = dir_.Write("rot13d.toml", "listen = [\"unix:" + path +
                                                     "\"]\nlog_target = \"stderr\"\nuser = \"root\"\n"
                                                     "socket_user = \"no-such-user-r13\"\n");
  daemon_ = std::make_unique<Daemon>(dir_, config);
  std::optional<int> status = daemon_->WaitExit();
  ASSERT_TRUE(status) << daemon_->Log();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == kExitFailure) << *status;
  EXPECT_TRUE(daemon_->LogContains("unix socket owner: no such user 'no-such-user-r13'")) << daemon_->Log();
}

}  // namespace
}  // namespace rot13d::blackbox
