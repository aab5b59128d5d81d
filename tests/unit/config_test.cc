// ParseConfig on TOML text: defaults, each key, each kind of error with its exact position, and FormatConfig.
#include "common/config.h"

#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

namespace rot13d {
namespace {

using std::chrono::milliseconds;

constexpr const char* kFile = "rot13d.toml";

// Parses text that must be valid and returns the configuration.
Config Valid(const std::string& text) {
  ConfigLoad load = ParseConfig(text, kFile);
  for (const ConfigError& e : load.errors) ADD_FAILURE() << "unexpected error: " << e.ToString();
  if (!load.config) {
    ADD_FAILURE() << "no configuration for:\n" << text;
    return Config::Defaults();
  }
  return *load.config;
}

// Parses text that must be invalid and returns the errors as "line:col: message" strings.
std::vector<std::string> Errors(const std::string& text) {
  ConfigLoad load = ParseConfig(text, kFile);
  EXPECT_FALSE(load.config.has_value()) << "a configuration was returned despite errors for:\n" << text;
  std::vector<std::string> out;
  for (const ConfigError& e : load.errors) {
    EXPECT_EQ(e.file, kFile);
    out.push_back(std::to_string(e.line) + ":" + std::to_string(e.column) + ": " + e.message);
  }
  return out;
}

using Strings = std::vector<std::string>;

// Field by field, so a failure names the field that differs.
void ExpectSameConfig(const Config& got, const Config& want) {
  EXPECT_EQ(got.listen, want.listen);
  EXPECT_EQ(got.listen_set, want.listen_set);
  EXPECT_EQ(got.backlog, want.backlog);
  EXPECT_EQ(got.workers, want.workers);
  EXPECT_EQ(got.max_connections, want.max_connections);
  EXPECT_EQ(got.max_connections_per_address, want.max_connections_per_address);
  EXPECT_EQ(got.buffer_size, want.buffer_size);
  EXPECT_EQ(got.idle_timeout.count(), want.idle_timeout.count());
  EXPECT_EQ(got.shutdown_timeout.count(), want.shutdown_timeout.count());
  EXPECT_EQ(got.log_level, want.log_level);
  EXPECT_EQ(got.log_target, want.log_target);
  EXPECT_EQ(got.socket_mode, want.socket_mode);
  EXPECT_EQ(got.socket_user, want.socket_user);
  EXPECT_EQ(got.socket_group, want.socket_group);
  EXPECT_EQ(got.heartbeat_timeout.count(), want.heartbeat_timeout.count());
  EXPECT_EQ(got.crash_loop_failures, want.crash_loop_failures);
  EXPECT_EQ(got.crash_loop_window.count(), want.crash_loop_window.count());
  EXPECT_EQ(got.user, want.user);
  EXPECT_EQ(got.user_set, want.user_set);
  EXPECT_EQ(got.group, want.group);
  EXPECT_EQ(got.connection_log, want.connection_log);
  EXPECT_EQ(got.proxy_trusted, want.proxy_trusted);
  EXPECT_EQ(got.proxy_header_timeout.count(), want.proxy_header_timeout.count());
}

ListenAddress Ipv4(const char* host, uint16_t port) {
  ListenAddress a;
  a.kind = ListenAddress::Kind::kIpv4;
  a.host = host;
  a.port = port;
  return a;
}

// ---- Defaults -------------------------------------------------------------

// The documented defaults, written out rather than taken from Config::Defaults().
TEST(ParseConfig, EmptyTextGivesTheDocumentedDefaults) {
  Config c = Valid("");
  EXPECT_EQ(c.listen, std::vector<ListenAddress>{Ipv4("0.0.0.0", 1067)});
  EXPECT_FALSE(c.listen_set);
  EXPECT_EQ(c.backlog, 4096);
  EXPECT_EQ(c.workers, 0);  // auto
  EXPECT_EQ(c.max_connections, 10000);
  EXPECT_EQ(c.buffer_size, 65536u);
  EXPECT_EQ(c.idle_timeout, milliseconds(300000));
  EXPECT_EQ(c.shutdown_timeout, milliseconds(30000));
  EXPECT_EQ(c.log_level, LogLevel::kInfo);
  EXPECT_EQ(c.log_target, LogTarget::kAuto);
  EXPECT_EQ(c.socket_mode, 0666u);
  EXPECT_EQ(c.socket_user, "");
  EXPECT_EQ(c.socket_group, "");
  EXPECT_EQ(c.heartbeat_timeout, milliseconds(10000));
  EXPECT_EQ(c.crash_loop_failures, 3);
  EXPECT_EQ(c.crash_loop_window, milliseconds(10000));
  EXPECT_EQ(c.user, "nobody");
  EXPECT_FALSE(c.user_set);
  EXPECT_EQ(c.group, "");
}

TEST(ParseConfig, CommentsAndBlankLinesOnlyGiveDefaults) {
  ExpectSameConfig(Valid("# nothing here\n\n   # indented comment\n"), Config::Defaults());
}

// ---- Each key, valid --------------------------------------------------------

TEST(ParseConfig, ListenEachForm) {
  Config c = Valid(R"(listen = ["127.0.0.1:80", "[::1]:8080", "unix:/run/rot13d/rot13d.sock"])");
  EXPECT_TRUE(c.listen_set);
  ASSERT_EQ(c.listen.size(), 3u);
  EXPECT_EQ(c.listen[0], Ipv4("127.0.0.1", 80));
  EXPECT_EQ(c.listen[1].kind, ListenAddress::Kind::kIpv6);
  EXPECT_EQ(c.listen[1].host, "::1");
  EXPECT_EQ(c.listen[1].port, 8080);
  EXPECT_EQ(c.listen[2].kind, ListenAddress::Kind::kUnix);
  EXPECT_EQ(c.listen[2].path, "/run/rot13d/rot13d.sock");
}

// The file's list replaces the default rather than adding to it.
TEST(ParseConfig, ListenReplacesTheDefault) {
  Config c = Valid("listen = [\"10.0.0.1:7\"]\n");
  EXPECT_EQ(c.listen, std::vector<ListenAddress>{Ipv4("10.0.0.1", 7)});
}

TEST(ParseConfig, ListenMultilineArrayWithTrailingComma) {
  Config c = Valid("listen = [\n  \"0.0.0.0:1067\",\n  \"[::]:1067\",\n]\n");
  ASSERT_EQ(c.listen.size(), 2u);
  EXPECT_EQ(c.listen[1].ToString(), "[::]:1067");
}

TEST(ParseConfig, WorkersIntegerAndAuto) {
  EXPECT_EQ(Valid("workers = 1").workers, 1);
  EXPECT_EQ(Valid("workers = 8").workers, 8);
  EXPECT_EQ(Valid("workers = 1024").workers, 1024);
  EXPECT_EQ(Valid("workers = \"auto\"").workers, 0);
}

TEST(ParseConfig, IntegerKeysAtTheirBounds) {
  EXPECT_EQ(Valid("backlog = 1").backlog, 1);
  EXPECT_EQ(Valid("backlog = 65535").backlog, 65535);
  EXPECT_EQ(Valid("max_connections = 1").max_connections, 1);
  EXPECT_EQ(Valid("max_connections = 1048576").max_connections, 1048576);
  EXPECT_EQ(Valid("max_connections_per_address = 0").max_connections_per_address, 0);
  EXPECT_EQ(Valid("max_connections_per_address = 1048576").max_connections_per_address, 1048576);
  EXPECT_EQ(Errors("max_connections_per_address = -1"),
            Strings{"1:31: 'max_connections_per_address': -1 is out of range (0..1048576)"});
  EXPECT_EQ(Errors("max_connections_per_address = \"10\""),
            Strings{"1:31: 'max_connections_per_address': expected an integer, got string"});
  EXPECT_EQ(Valid("buffer_size = 1024").buffer_size, 1024u);
  EXPECT_EQ(Valid("buffer_size = 67108864").buffer_size, 67108864u);
  EXPECT_EQ(Valid("buffer_size = 4_096").buffer_size, 4096u);  // TOML digit separators
  EXPECT_EQ(Valid("backlog = 0x100").backlog, 256);             // and hex
}

TEST(ParseConfig, TimeoutsIntegerAndFractionalSeconds) {
  EXPECT_EQ(Valid("idle_timeout = 0").idle_timeout, milliseconds(0));
  EXPECT_EQ(Valid("idle_timeout = 5").idle_timeout, milliseconds(5000));
  EXPECT_EQ(Valid("idle_timeout = 1.5").idle_timeout, milliseconds(1500));
  EXPECT_EQ(Valid("idle_timeout = 0.25").idle_timeout, milliseconds(250));
  EXPECT_EQ(Valid("idle_timeout = 0.001").idle_timeout, milliseconds(1));
  EXPECT_EQ(Valid("idle_timeout = 604800").idle_timeout, milliseconds(604800000));
  EXPECT_EQ(Valid("shutdown_timeout = 0").shutdown_timeout, milliseconds(0));
  EXPECT_EQ(Valid("shutdown_timeout = 2.5").shutdown_timeout, milliseconds(2500));
  EXPECT_EQ(Valid("shutdown_timeout = 3600").shutdown_timeout, milliseconds(3600000));
}

// idle_timeout = 0 means "never": a positive value, however small, must not
// silently turn into "never" by rounding. Either reject it or keep at least 1 ms.
TEST(ParseConfig, TinyPositiveIdleTimeoutDoesNotBecomeNever) {
  ConfigLoad load = ParseConfig("idle_timeout = 0.0004\n", kFile);
  if (load.config) {
    EXPECT_GT(load.config->idle_timeout.count(), 0)
        << "idle_timeout = 0.0004 was accepted as 0 ms, which disables the idle timeout";
  } else {
    EXPECT_EQ(load.errors.size(), 1u);
  }
}

TEST(ParseConfig, LogLevelEachName) {
  EXPECT_EQ(Valid("log_level = \"debug\"").log_level, LogLevel::kDebug);
  EXPECT_EQ(Valid("log_level = \"info\"").log_level, LogLevel::kInfo);
  EXPECT_EQ(Valid("log_level = \"notice\"").log_level, LogLevel::kNotice);
  EXPECT_EQ(Valid("log_level = \"warning\"").log_level, LogLevel::kWarning);
  EXPECT_EQ(Valid("log_level = \"error\"").log_level, LogLevel::kError);
}

TEST(ParseConfig, LogTargetEachName) {
  EXPECT_EQ(Valid("log_target = \"auto\"").log_target, LogTarget::kAuto);
  EXPECT_EQ(Valid("log_target = \"stderr\"").log_target, LogTarget::kStderr);
  EXPECT_EQ(Valid("log_target = \"journal\"").log_target, LogTarget::kJournal);
}

TEST(ParseConfig, ConnectionLogEachName) {
  EXPECT_EQ(Config::Defaults().connection_log, ConnectionLog::kOff);
  EXPECT_EQ(Valid("connection_log = \"off\"").connection_log, ConnectionLog::kOff);
  EXPECT_EQ(Valid("connection_log = \"errors\"").connection_log, ConnectionLog::kErrors);
  EXPECT_EQ(Valid("connection_log = \"all\"").connection_log, ConnectionLog::kAll);
  EXPECT_EQ(Errors("connection_log = \"on\""),
            Strings{"1:18: 'connection_log': unknown setting \"on\" (off, errors or all)"});
  EXPECT_EQ(Errors("connection_log = true"), Strings{"1:18: 'connection_log': expected a string, got boolean"});
}

TEST(ParseConfig, SocketModeIsOctal) {
  EXPECT_EQ(Valid("socket_mode = \"0660\"").socket_mode, 0660u);
  EXPECT_EQ(Valid("socket_mode = \"600\"").socket_mode, 0600u);
  EXPECT_EQ(Valid("socket_mode = \"0\"").socket_mode, 0u);
  EXPECT_EQ(Valid("socket_mode = \"0777\"").socket_mode, 0777u);
}

TEST(ParseConfig, EveryKeyAtOnce) {
  Config c = Valid(R"(
listen = ["127.0.0.1:1", "[::1]:2"]
backlog = 128
workers = 3
max_connections = 50
buffer_size = 2048
idle_timeout = 7.5
shutdown_timeout = 4
log_level = "debug"
log_target = "stderr"
socket_mode = "0600"
socket_user = "www-data"
socket_group = "adm"
heartbeat_timeout = 2.5
crash_loop_failures = 7
crash_loop_window = 30
user = "rot13d"
group = "1234"
)");
  Config want = Config::Defaults();
  want.socket_user = "www-data";
  want.socket_group = "adm";
  want.heartbeat_timeout = milliseconds(2500);
  want.crash_loop_failures = 7;
  want.crash_loop_window = milliseconds(30000);
  want.user = "rot13d";
  want.user_set = true;
  want.group = "1234";
  want.listen = {Ipv4("127.0.0.1", 1), *ParseListenAddress("[::1]:2")};
  want.listen_set = true;
  want.backlog = 128;
  want.workers = 3;
  want.max_connections = 50;
  want.buffer_size = 2048;
  want.idle_timeout = milliseconds(7500);
  want.shutdown_timeout = milliseconds(4000);
  want.log_level = LogLevel::kDebug;
  want.log_target = LogTarget::kStderr;
  want.socket_mode = 0600;
  ExpectSameConfig(c, want);
}

TEST(ParseConfig, ZeroHeartbeatTimeoutAndWindowMeanOff) {
  Config c = Valid("heartbeat_timeout = 0\ncrash_loop_window = 0\n");
  EXPECT_EQ(c.heartbeat_timeout, milliseconds(0));
  EXPECT_EQ(c.crash_loop_window, milliseconds(0));
}

// ---- Each kind of error, with its position -----------------------------------

TEST(ParseConfig, BadUserGroupAndGovernorValues) {
  ConfigLoad load = ParseConfig("user = \"\"\ngroup = \"a b\"\nsocket_user = 5\ncrash_loop_failures = 0\n"
                                "heartbeat_timeout = -1\nsocket_group = \"x:y\"\n",
                                "f.toml");
  ASSERT_EQ(load.errors.size(), 6u);
  EXPECT_EQ(load.errors[0].ToString(),
            "f.toml:1:8: 'user': expected a user or group name or a numeric id, got \"\"");
  EXPECT_EQ(load.errors[1].line, 2);
  EXPECT_NE(load.errors[2].message.find("'socket_user': expected a string"), std::string::npos);
  EXPECT_NE(load.errors[3].message.find("'crash_loop_failures': 0 is out of range (1..1000)"), std::string::npos);
  EXPECT_NE(load.errors[4].message.find("'heartbeat_timeout'"), std::string::npos);
  EXPECT_EQ(load.errors[5].line, 6);
}

TEST(ParseConfig, WrongTypeIsReportedAtTheValue) {
  EXPECT_EQ(Errors("\n  workers = 1.5\n"), Strings{"2:13: 'workers': expected an integer, got floating-point"});
  EXPECT_EQ(Errors("workers = true"), Strings{"1:11: 'workers': expected an integer, got boolean"});
  EXPECT_EQ(Errors("backlog = \"4096\""), Strings{"1:11: 'backlog': expected an integer, got string"});
  EXPECT_EQ(Errors("idle_timeout = true"),
            Strings{"1:16: 'idle_timeout': expected a number of seconds or a duration, got boolean"});
  EXPECT_EQ(Errors("idle_timeout = \"5 s\""),
            Strings{"1:16: 'idle_timeout': expected seconds or a duration such as \"250ms\", \"30s\" or \"5m\", got "
                    "\"5 s\""});
  EXPECT_EQ(Errors("log_level = 3"), Strings{"1:13: 'log_level': expected a string, got integer"});
  EXPECT_EQ(Errors("socket_mode = 660"), Strings{"1:15: 'socket_mode': expected a string, got integer"});
  EXPECT_EQ(Errors("listen = \"0.0.0.0:1\""),
            Strings{"1:10: 'listen': expected an array of addresses, got string"});
  EXPECT_EQ(Errors("listen = [1067]"), Strings{"1:11: 'listen': expected an address string or a table { address = ..., proxy_protocol = ... }, got integer"});
}

TEST(ParseConfig, WorkersOtherStringThanAuto) {
  EXPECT_EQ(Errors("workers = \"many\""),
            Strings{"1:11: 'workers': expected an integer 1..1024 or \"auto\", got \"many\""});
  EXPECT_EQ(Errors("workers = \"Auto\"").size(), 1u);  // case matters
}

TEST(ParseConfig, OutOfRange) {
  EXPECT_EQ(Errors("workers = 0"), Strings{"1:11: 'workers': 0 is out of range (1..1024)"});
  EXPECT_EQ(Errors("workers = 1025"), Strings{"1:11: 'workers': 1025 is out of range (1..1024)"});
  EXPECT_EQ(Errors("workers = -1"), Strings{"1:11: 'workers': -1 is out of range (1..1024)"});
  EXPECT_EQ(Errors("buffer_size = 1023"),
            Strings{"1:15: 'buffer_size': 1023 is out of range (1024..67108864)"});
  EXPECT_EQ(Errors("buffer_size = 67108865"),
            Strings{"1:15: 'buffer_size': 67108865 is out of range (1024..67108864)"});
  EXPECT_EQ(Errors("backlog = 0"), Strings{"1:11: 'backlog': 0 is out of range (1..65535)"});
  EXPECT_EQ(Errors("backlog = 65536"), Strings{"1:11: 'backlog': 65536 is out of range (1..65535)"});
  // Larger than int: must not wrap into range on the way.
  EXPECT_EQ(Errors("backlog = 4294967297"),
            Strings{"1:11: 'backlog': 4294967297 is out of range (1..65535)"});
  EXPECT_EQ(Errors("max_connections = 0"),
            Strings{"1:19: 'max_connections': 0 is out of range (1..1048576)"});
  EXPECT_EQ(Errors("idle_timeout = -1"),
            Strings{"1:16: 'idle_timeout': -1 seconds is out of range (0..604800)"});
  EXPECT_EQ(Errors("idle_timeout = 604801"),
            Strings{"1:16: 'idle_timeout': 604801 seconds is out of range (0..604800)"});
  EXPECT_EQ(Errors("shutdown_timeout = 3600.5"),
            Strings{"1:20: 'shutdown_timeout': 3600.5 seconds is out of range (0..3600)"});
  EXPECT_EQ(Errors("shutdown_timeout = nan").size(), 1u);
  EXPECT_EQ(Errors("shutdown_timeout = inf").size(), 1u);
}

TEST(ParseConfig, UnknownKeyIsReportedAtTheKey) {
  EXPECT_EQ(Errors("backlog = 10\n   listen_on = 5\n"), Strings{"2:4: unknown key 'listen_on'"});
  // A table header is a key too: a [section] this file does not have.
  EXPECT_EQ(Errors("[server]\nport = 1\n"), Strings{"1:2: unknown key 'server'"});
}

TEST(ParseConfig, SyntaxErrorHasPosition) {
  Strings e = Errors("backlog = 10\nworkers = \n");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].rfind("2:11: syntax error: ", 0), 0u) << e[0];

  e = Errors("backlog = 12x\n");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].rfind("1:13: syntax error: ", 0), 0u) << e[0];

  // TOML forbids defining a key twice; the second definition is the error.
  e = Errors("backlog = 1\nbacklog = 2\n");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].rfind("2:", 0), 0u) << e[0];
  EXPECT_NE(e[0].find("syntax error"), std::string::npos) << e[0];
}

TEST(ParseConfig, BadAddressIsReportedAtTheArrayItem) {
  EXPECT_EQ(Errors("listen = [\"0.0.0.0:1067\", \"localhost:1067\"]"),
            Strings{"1:27: 'listen': invalid IPv4 address in \"localhost:1067\" (host names are not resolved)"});
  Strings e = Errors("listen = [\n  \"[::1]:99999\",\n]\n");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].rfind("2:3: 'listen': invalid port", 0), 0u) << e[0];
}

TEST(ParseConfig, DuplicateListenAddress) {
  EXPECT_EQ(Errors("listen = [\"1.2.3.4:1\", \"1.2.3.4:1\"]"),
            Strings{"1:24: 'listen': 1.2.3.4:1 is listed twice"});
  // Two spellings of one IPv6 address are the same address.
  EXPECT_EQ(Errors("listen = [\"[::1]:5\",\n \"[0:0::1]:5\"]"), Strings{"2:2: 'listen': [::1]:5 is listed twice"});
  EXPECT_EQ(Errors("listen = [\"unix:/a\", \"unix:/a\"]"), Strings{"1:22: 'listen': unix:/a is listed twice"});
}

// One error per repeated item: a third copy is one more duplicate, not two.
TEST(ParseConfig, AddressListedThreeTimesGivesOneErrorPerRepeat) {
  EXPECT_EQ(Errors("listen = [\"1.2.3.4:1\",\n\"1.2.3.4:1\",\n\"1.2.3.4:1\"]"),
            (Strings{"2:1: 'listen': 1.2.3.4:1 is listed twice", "3:1: 'listen': 1.2.3.4:1 is listed twice"}));
}

TEST(ParseConfig, EmptyListenArray) {
  EXPECT_EQ(Errors("listen = []"), Strings{"1:10: 'listen': needs at least one address"});
}

TEST(ParseConfig, BadLogLevelAndTarget) {
  EXPECT_EQ(Errors("log_level = \"verbose\""),
            Strings{"1:13: 'log_level': unknown level \"verbose\" (debug, info, notice, warning or error)"});
  EXPECT_EQ(Errors("log_level = \"INFO\"").size(), 1u);  // names are lower case
  EXPECT_EQ(Errors("log_target = \"syslog\""),
            Strings{"1:14: 'log_target': unknown target \"syslog\" (auto, stderr or journal)"});
}

TEST(ParseConfig, BadSocketMode) {
  for (const char* mode : {"888", "0668", "1777", "rw-rw-rw-", "", "0o660", "0660 "}) {
    std::string text = std::string("socket_mode = \"") + mode + "\"";
    EXPECT_EQ(Errors(text), Strings{"1:15: 'socket_mode': expected an octal mode such as \"0660\", got \"" +
                                    std::string(mode) + "\""})
        << text;
  }
}

// strtol skips leading blanks and takes a sign; an octal mode has neither.
TEST(ParseConfig, SocketModeWithBlankOrSignIsRejected) {
  for (const char* mode : {" 0660", "+0660", "-0"}) {
    std::string text = std::string("socket_mode = \"") + mode + "\"";
    EXPECT_EQ(Errors(text).size(), 1u) << text << " was accepted";
  }
}

// toml++ visits keys in sorted order; users read errors top to bottom.
TEST(ParseConfig, MultipleErrorsInFileOrder) {
  EXPECT_EQ(Errors("zzz = 1\n"
                   "workers = 0\n"
                   "listen = [\"bad\", \"[::1]:1\", \"[::1]:1\"]\n"
                   "aaa = 2\n"
                   "backlog = \"x\"\n"),
            (Strings{
                "1:1: unknown key 'zzz'",
                "2:11: 'workers': 0 is out of range (1..1024)",
                "3:11: 'listen': invalid address \"bad\" (expected HOST:PORT, [IPv6]:PORT or unix:/PATH)",
                "3:29: 'listen': [::1]:1 is listed twice",
                "4:1: unknown key 'aaa'",
                "5:11: 'backlog': expected an integer, got string",
            }));
}

// ---- ConfigError, LoadConfigFile ------------------------------------------------

TEST(ConfigError, ToStringFormat) {
  EXPECT_EQ((ConfigError{"/etc/rot13d/rot13d.toml", 3, 14, "'workers': boom"}).ToString(),
            "/etc/rot13d/rot13d.toml:3:14: 'workers': boom");
  // Line 0 is the file as a whole: no position.
  EXPECT_EQ((ConfigError{"/x.toml", 0, 0, "cannot open: No such file or directory"}).ToString(),
            "/x.toml: cannot open: No such file or directory");
}

TEST(ParseConfig, ErrorsCarryTheFileName) {
  ConfigLoad load = ParseConfig("workers = 0\n", "/etc/rot13d/custom.toml");
  ASSERT_EQ(load.errors.size(), 1u);
  EXPECT_EQ(load.errors[0].ToString(), "/etc/rot13d/custom.toml:1:11: 'workers': 0 is out of range (1..1024)");
}

// A temporary directory removed with its files at the end of the test.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/rot13d-config-test-XXXXXX";
    char* d = mkdtemp(tmpl);
    EXPECT_NE(d, nullptr);
    if (d) path_ = d;
  }
  ~TempDir() {
    for (const std::string& f : files_) std::remove(f.c_str());
    if (!path_.empty()) rmdir(path_.c_str());
  }
  std::string Write(const std::string& name, const std::string& text) {
    std::string p = path_ + "/" + name;
    std::ofstream(p) << text;
    files_.push_back(p);
    return p;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::vector<std::string> files_;
};

TEST(LoadConfigFile, MissingFileIsAnErrorAtLineZero) {
  TempDir dir;
  std::string path = dir.path() + "/absent.toml";
  ConfigLoad load = LoadConfigFile(path);
  EXPECT_FALSE(load.config.has_value());
  ASSERT_EQ(load.errors.size(), 1u);
  EXPECT_EQ(load.errors[0].file, path);
  EXPECT_EQ(load.errors[0].line, 0);
  EXPECT_EQ(load.errors[0].ToString(), path + ": cannot open: No such file or directory");
}

TEST(LoadConfigFile, ReadsAndValidatesAFile) {
  TempDir dir;
  std::string good = dir.Write("good.toml", "workers = 2\nbacklog = 17\n");
  ConfigLoad load = LoadConfigFile(good);
  ASSERT_TRUE(load.config.has_value());
  EXPECT_EQ(load.config->workers, 2);
  EXPECT_EQ(load.config->backlog, 17);

  std::string bad = dir.Write("bad.toml", "# header\nworkers = 0\n");
  load = LoadConfigFile(bad);
  ASSERT_EQ(load.errors.size(), 1u);
  EXPECT_EQ(load.errors[0].ToString(), bad + ":2:11: 'workers': 0 is out of range (1..1024)");
}

TEST(LoadConfigFile, DirectoryIsAnError) {
  TempDir dir;
  ConfigLoad load = LoadConfigFile(dir.path());
  EXPECT_FALSE(load.config.has_value());
  ASSERT_EQ(load.errors.size(), 1u);
  EXPECT_EQ(load.errors[0].line, 0);
}

// The shipped example says every key is shown at its default; hold it to that.
TEST(LoadConfigFile, ShippedExampleIsValidAndShowsTheDefaults) {
  std::string here = __FILE__;  // .../tests/unit/config_test.cc
  size_t cut = here.rfind("/tests/unit/");
  if (cut == std::string::npos) GTEST_SKIP() << "source tree not found from " << here;
  std::string path = here.substr(0, cut) + "/etc/rot13d.toml";
  if (access(path.c_str(), R_OK) != 0) GTEST_SKIP() << path << " not readable";
  ConfigLoad load = LoadConfigFile(path);
  for (const ConfigError& e : load.errors) ADD_FAILURE() << e.ToString();
  ASSERT_TRUE(load.config.has_value());
  Config want = Config::Defaults();
  want.user_set = true;  // the example names user
  ExpectSameConfig(*load.config, want);

  // listen is commented out, as rot13d warns at every start under rot13d.socket
  // when it is set; the commented line still shows the default.
  std::ifstream in(path);
  std::string line, listen_line;
  while (std::getline(in, line)) {
    if (line.starts_with("#listen = ")) listen_line = line.substr(1);
  }
  ASSERT_FALSE(listen_line.empty()) << "no '#listen = ' line in " << path;
  Config shown = Valid(listen_line);
  EXPECT_EQ(shown.listen, Config::Defaults().listen) << listen_line;
}

// ---- FormatConfig --------------------------------------------------------------

TEST(FormatConfig, DefaultsText) {
  EXPECT_EQ(FormatConfig(Config::Defaults()),
            "listen = [\"0.0.0.0:1067\"]\n"
            "backlog = 4096\n"
            "workers = \"auto\"\n"
            "max_connections = 10000\n"
            "max_connections_per_address = 0\n"
            "buffer_size = 65536\n"
            "idle_timeout = 300\n"
            "shutdown_timeout = 30\n"
            "log_level = \"info\"\n"
            "log_target = \"auto\"\n"
            "socket_mode = \"0666\"\n"
            "socket_user = \"\"\n"
            "socket_group = \"\"\n"
            "heartbeat_timeout = 10\n"
            "crash_loop_failures = 3\n"
            "crash_loop_window = 10\n"
            "user = \"nobody\"\n"
            "group = \"\"\n"
            "admin_listen = []\n"
            "agent_listen = []\n"
            "connection_log = \"off\"\n"
            "proxy_trusted = [\"127.0.0.0/8\", \"::1/128\"]\n"
            "proxy_header_timeout = 5\n");
}

void ExpectRoundTrip(const Config& c) {
  std::string text = FormatConfig(c);
  ConfigLoad load = ParseConfig(text, "formatted");
  for (const ConfigError& e : load.errors) ADD_FAILURE() << e.ToString() << "\nin:\n" << text;
  ASSERT_TRUE(load.config.has_value());
  Config want = c;
  want.listen_set = true;  // FormatConfig always writes listen
  want.user_set = true;    // and user
  SCOPED_TRACE(text);
  ExpectSameConfig(*load.config, want);
}

TEST(FormatConfig, RoundTripsDefaults) { ExpectRoundTrip(Config::Defaults()); }

TEST(FormatConfig, RoundTripsEveryKey) {
  Config c = Config::Defaults();
  c.listen = {Ipv4("127.0.0.1", 1), *ParseListenAddress("[2001:db8::1]:443"),
              *ParseListenAddress("unix:/run/rot13d/a.sock")};
  c.backlog = 1;
  c.workers = 1024;
  c.max_connections = 1048576;
  c.max_connections_per_address = 1048576;
  c.buffer_size = 1024;
  c.idle_timeout = milliseconds(1500);
  c.shutdown_timeout = milliseconds(250);
  c.log_level = LogLevel::kWarning;
  c.log_target = LogTarget::kJournal;
  c.socket_mode = 0600;
  c.socket_user = "1000";
  c.socket_group = "www-data";
  c.heartbeat_timeout = milliseconds(1);
  c.crash_loop_failures = 1000;
  c.crash_loop_window = milliseconds(3600000);
  c.user = "root";
  c.group = "wheel";
  c.connection_log = ConnectionLog::kAll;
  c.listen[0].proxy_protocol = ProxyProtocol::kV2;
  c.listen[2].proxy_protocol = ProxyProtocol::kAny;
  c.proxy_trusted = {*ParseCidr("10.0.0.0/8"), *ParseCidr("2001:db8::/32"), *ParseCidr("192.0.2.7")};
  c.proxy_header_timeout = milliseconds(3001);
  ExpectRoundTrip(c);

  c.idle_timeout = milliseconds(0);
  c.shutdown_timeout = milliseconds(3600000);
  c.log_level = LogLevel::kError;
  c.log_target = LogTarget::kStderr;
  c.socket_mode = 0;
  c.connection_log = ConnectionLog::kErrors;
  ExpectRoundTrip(c);
}

// ---- PROXY protocol listeners ------------------------------------------------------

TEST(ParseConfig, ListenTablesNameAProxyProtocol) {
  Config c = Valid(R"(listen = ["127.0.0.1:1067", { address = "127.0.0.1:1068", proxy_protocol = "v1" },
                                 { address = "[::1]:1069", proxy_protocol = "v2" },
                                 { proxy_protocol = "any", address = "unix:/run/p.sock" },
                                 { address = "127.0.0.1:1070" }])");
  ASSERT_EQ(c.listen.size(), 5u);
  EXPECT_EQ(c.listen[0].proxy_protocol, ProxyProtocol::kOff);
  EXPECT_EQ(c.listen[1].proxy_protocol, ProxyProtocol::kV1);
  EXPECT_EQ(c.listen[1].ToString(), "127.0.0.1:1068");
  EXPECT_EQ(c.listen[2].proxy_protocol, ProxyProtocol::kV2);
  EXPECT_EQ(c.listen[2].ToString(), "[::1]:1069");
  EXPECT_EQ(c.listen[3].proxy_protocol, ProxyProtocol::kAny);
  EXPECT_EQ(c.listen[4].proxy_protocol, ProxyProtocol::kOff);
  EXPECT_EQ(FormatConfig(c).substr(0, FormatConfig(c).find('\n')),
            R"(listen = ["127.0.0.1:1067", { address = "127.0.0.1:1068", proxy_protocol = "v1" }, )"
            R"({ address = "[::1]:1069", proxy_protocol = "v2" }, )"
            R"({ address = "unix:/run/p.sock", proxy_protocol = "any" }, "127.0.0.1:1070"])");
}

TEST(ParseConfig, ListenTableErrorsArePlaced) {
  EXPECT_EQ(Errors("listen = [{ address = \"127.0.0.1:1\", proxy_protocol = \"v3\" }]"),
            Strings{"1:55: 'listen.proxy_protocol': unknown setting \"v3\" (off, v1, v2 or any)"});
  EXPECT_EQ(Errors("listen = [{ address = \"127.0.0.1:1\", proxy = \"v2\" }]"),
            Strings{"1:38: 'listen': unknown key 'proxy' in a listen table (address, proxy_protocol)"});
  EXPECT_EQ(Errors("listen = [{ proxy_protocol = \"v2\" }]"), Strings{"1:11: 'listen': a listen table needs an address"});
  EXPECT_EQ(Errors("listen = [{ address = 1 }]"), Strings{"1:23: 'listen.address': expected a string, got integer"});
  EXPECT_EQ(Errors("listen = [{ address = \"127.0.0.1:x\" }]"),
            Strings{"1:11: 'listen': invalid port in \"127.0.0.1:x\" (expected 0..65535)"});
  // The same socket twice, whatever its PROXY setting.
  EXPECT_EQ(Errors("listen = [\"127.0.0.1:1\", { address = \"127.0.0.1:1\", proxy_protocol = \"v2\" }]"),
            Strings{"1:26: 'listen': 127.0.0.1:1 is listed twice"});
  // The admin endpoint takes no PROXY header.
  EXPECT_EQ(Errors("admin_listen = [{ address = \"127.0.0.1:1\" }]"),
            Strings{"1:17: 'admin_listen': expected an address string, got table"});
}

TEST(ParseConfig, ProxyTrustedAndTimeout) {
  Config c = Valid("proxy_trusted = [\"10.0.0.0/8\", \"192.0.2.7\", \"fd00::/8\", \"::/0\"]\nproxy_header_timeout = 3\n");
  ASSERT_EQ(c.proxy_trusted.size(), 4u);
  EXPECT_EQ(c.proxy_trusted[1].ToString(), "192.0.2.7/32");
  EXPECT_EQ(c.proxy_trusted[3].ToString(), "::/0");
  EXPECT_EQ(c.proxy_header_timeout, milliseconds(3000));
  EXPECT_TRUE(Valid("proxy_trusted = []").proxy_trusted.empty());
  EXPECT_EQ(Errors("proxy_header_timeout = 2.999"),
            Strings{"1:24: 'proxy_header_timeout': 2.999 seconds is out of range (3..3600)"});
  EXPECT_EQ(Errors("proxy_header_timeout = 0"), Strings{"1:24: 'proxy_header_timeout': 0 seconds is out of range (3..3600)"});
  EXPECT_EQ(Errors("proxy_trusted = [\"10.0.0.1/8\", \"10.0.0.0/33\", \"example.com\", 7]"),
            (Strings{"1:18: 'proxy_trusted': \"10.0.0.1/8\" has bits set past its prefix (the network is 10.0.0.0/8)",
                     "1:32: 'proxy_trusted': invalid prefix length in \"10.0.0.0/33\" (expected 0..32)",
                     "1:47: 'proxy_trusted': invalid network \"example.com\" (expected ADDRESS/PREFIX, such as "
                     "10.0.0.0/8 or fd00::/8)",
                     "1:62: 'proxy_trusted': expected a string, got integer"}));
  EXPECT_EQ(Errors("proxy_trusted = \"10.0.0.0/8\""),
            Strings{"1:17: 'proxy_trusted': expected an array of networks such as [\"10.0.0.0/8\"], got string"});
}

// --check-config prints the effective configuration; a timeout the parser kept
// to the millisecond must not be printed rounded to six significant digits.
TEST(FormatConfig, RoundTripsMillisecondTimeouts) {
  Config c = Config::Defaults();
  for (int64_t ms : {1, 999, 1001, 12345678, 604799999}) {
    c.idle_timeout = milliseconds(ms);
    c.shutdown_timeout = milliseconds(ms % 3600000);
    SCOPED_TRACE(ms);
    ExpectRoundTrip(c);
  }
}

// Durations as operators write them elsewhere (systemd, nginx): with a unit.
TEST(ParseConfig, DurationsTakeUnits) {
  ConfigLoad load = ParseConfig("idle_timeout = \"250ms\"\nshutdown_timeout = \"5m\"\nheartbeat_timeout = \"1.5s\"\n"
                                "crash_loop_window = \"1h\"\n",
                                "x.toml");
  ASSERT_TRUE(load.config) << load.errors.front().ToString();
  EXPECT_EQ(load.config->idle_timeout, std::chrono::milliseconds(250));
  EXPECT_EQ(load.config->shutdown_timeout, std::chrono::minutes(5));
  EXPECT_EQ(load.config->heartbeat_timeout, std::chrono::milliseconds(1500));
  EXPECT_EQ(load.config->crash_loop_window, std::chrono::hours(1));
  EXPECT_EQ(Errors("shutdown_timeout = \"2h\""), Strings{"1:20: 'shutdown_timeout': 7200 seconds is out of range (0..3600)"});
  for (const char* bad : {"\"\"", "\"s\"", "\"5sec\"", "\"1.2.3s\"", "\"-5s\"", "\"5d\""}) {
    EXPECT_EQ(Errors(std::string("idle_timeout = ") + bad).size(), 1u) << bad;
  }
}

TEST(ParseConfig, UnknownKeyCloseToAKnownOneGetsASuggestion) {
  EXPECT_EQ(Errors("wrokers = 2"), Strings{"1:1: unknown key 'wrokers'; did you mean 'workers'?"});
  EXPECT_EQ(Errors("bufer_size = 4096"), Strings{"1:1: unknown key 'bufer_size'; did you mean 'buffer_size'?"});
  EXPECT_EQ(Errors("log-level = \"info\""), Strings{"1:1: unknown key 'log-level'; did you mean 'log_level'?"});
  EXPECT_EQ(Errors("colour = \"blue\""), Strings{"1:1: unknown key 'colour'"}) << "nothing close: no guess";
}

TEST(ParseConfig, SyntaxErrorsSayWhatWasMeant) {
  std::vector<std::string> e = Errors("listen = [127.0.0.1:23071]");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_NE(e[0].find("syntax error: text such as an address must be in quotes"), std::string::npos) << e[0];
  e = Errors("workers 3");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_NE(e[0].find("syntax error: each setting is a line `key = value`"), std::string::npos) << e[0];
}

}  // namespace
}  // namespace rot13d
