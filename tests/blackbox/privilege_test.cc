// Started as root, rot13d binds and then becomes `user` (default nobody) before
// any worker exists; unix socket files get the configured owner and mode.
#include <arpa/inet.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
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
  // The supervisor keeps exactly what a reload needs: CAP_CHOWN (0),
  // CAP_DAC_READ_SEARCH (2), CAP_FOWNER (3), CAP_NET_BIND_SERVICE (10).
  EXPECT_EQ(StatusLine(daemon_->pid(), "CapEff"), "\t000000000000040d");
  EXPECT_EQ(StatusLine(daemon_->pid(), "CapPrm"), "\t000000000000040d");
  EXPECT_EQ(StatusLine(daemon_->pid(), "CapAmb"), "\t0000000000000000");
  EXPECT_EQ(StatusLine(daemon_->pid(), "CapBnd"), "\t0000000000000000");
  // Workers keep nothing, and cannot gain anything back.
  for (pid_t pid : daemon_->Workers()) {
    SCOPED_TRACE("worker " + std::to_string(pid));
    for (const char* key : {"CapEff", "CapPrm", "CapInh", "CapAmb"}) {
      EXPECT_EQ(StatusLine(pid, key), "\t0000000000000000") << key;
    }
    EXPECT_EQ(StatusLine(pid, "NoNewPrivs"), "\t1");
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
  // Root by uid, but a worker still holds no capability.
  EXPECT_EQ(StatusLine(daemon_->Workers().at(0), "CapEff"), "\t0000000000000000");
  EXPECT_EQ(StatusLine(daemon_->Workers().at(0), "NoNewPrivs"), "\t1");
}

// The unprivileged supervisor re-reads a file only root may read (0600 in a
// 0700 directory, as /etc/rot13d may be) on reload.
TEST_F(PrivilegeTest, RootOnlyConfigInPrivateDirectoryReloads) {
  std::string config = WriteRaw("workers = 1\n");
  struct stat dir_st {};
  ASSERT_EQ(stat(dir_.path().c_str(), &dir_st), 0);
  ASSERT_EQ(dir_st.st_mode & 07777, 0700u) << "the test needs a private directory";
  ASSERT_EQ(chmod(config.c_str(), 0600), 0);
  daemon_ = std::make_unique<Daemon>(dir_, config);
  ASSERT_TRUE(daemon_->WaitReady()) << daemon_->Log();
  ASSERT_TRUE(daemon_->WaitForWorkerCount(1));
  config = WriteRaw("workers = 2\n");
  ASSERT_EQ(chmod(config.c_str(), 0600), 0);
  RunResult r = RunToCompletion({DaemonPath(), "-c", config, "--reload", std::to_string(daemon_->pid())}, 30s);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err << daemon_->Log();
  EXPECT_TRUE(daemon_->WaitForWorkerCount(2)) << daemon_->Log();
  EXPECT_FALSE(daemon_->LogContains("cannot open")) << daemon_->Log();
}

// A port below 1024 is free for a bind by root; -1 when none in 600..1023 is.
int FreePrivilegedPort() {
  for (int port = 600; port < 1024; ++port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(static_cast<uint16_t>(port));
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin) == 0;
    close(fd);
    if (ok) return port;
  }
  return -1;
}

TEST_F(PrivilegeTest, ReloadAddingAPortBelow1024Works) {
  daemon_ = std::make_unique<Daemon>(dir_, WriteRaw("workers = 1\n"));
  ASSERT_TRUE(daemon_->WaitReady()) << daemon_->Log();
  int low = FreePrivilegedPort();
  ASSERT_GT(low, 0) << "no free port in 600..1023 on 127.0.0.1";
  std::string low_address = "127.0.0.1:" + std::to_string(low);
  std::string config = dir_.Write("rot13d.toml", "listen = [\"" + address() + "\", \"" + low_address +
                                                     "\"]\nlog_target = \"stderr\"\nworkers = 1\n");
  RunResult r = RunToCompletion({DaemonPath(), "-c", config, "--reload", std::to_string(daemon_->pid())}, 30s);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err << daemon_->Log();
  EXPECT_TRUE(daemon_->LogContains("listening on " + low_address)) << daemon_->Log();
  EXPECT_EQ(FreshRoundTrip("Hello", low_address), "Uryyb");
  EXPECT_EQ(FreshRoundTrip("Hello"), "Uryyb");
}

TEST_F(PrivilegeTest, UnknownUserRefusesToStartWithAConfigError) {
  std::string config = WriteRaw("user = \"no-such-user-r13\"\n");
  daemon_ = std::make_unique<Daemon>(dir_, config);
  std::optional<int> status = daemon_->WaitExit();
  ASSERT_TRUE(status) << daemon_->Log();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == kExitConfig) << *status;
  // Found while reading the file, before anything listens.
  EXPECT_TRUE(daemon_->LogContains(config + ":3:8: 'user': no such user 'no-such-user-r13'")) << daemon_->Log();
  EXPECT_FALSE(daemon_->LogContains("listening on")) << daemon_->Log();
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

TEST_F(PrivilegeTest, UnknownSocketOwnerIsAConfigError) {
  std::string path = dir_.File("x.sock");
  std::string config = dir_.Write("rot13d.toml", "listen = [\"unix:" + path +
                                                     "\"]\nlog_target = \"stderr\"\nuser = \"root\"\n"
                                                     "socket_user = \"no-such-user-r13\"\n");
  daemon_ = std::make_unique<Daemon>(dir_, config);
  std::optional<int> status = daemon_->WaitExit();
  ASSERT_TRUE(status) << daemon_->Log();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == kExitConfig) << *status;
  EXPECT_TRUE(daemon_->LogContains(config + ":4:15: 'socket_user': no such user 'no-such-user-r13'"))
      << daemon_->Log();
}

}  // namespace
}  // namespace rot13d::blackbox
