// The rot13 client as a user runs it: every exit path, over every transport, with
// standard input and output as pipes, /dev/null, and a reader that leaves early.
#include <gtest/gtest.h>

#include <cstring>

#include "tests/clients/client_fixture.h"
#include "tests/clients/test_server.h"

namespace rot13d::clienttest {
namespace {

using Rot13ClientTest = ClientTest;

ToolResult Rot13(std::vector<std::string> args, const ToolInput& input = {}, const ToolOutput& output = {},
                 milliseconds timeout = 20s, const std::vector<std::string>& env = {}) {
  args.insert(args.begin(), Rot13Path());
  return RunTool(args, input, output, timeout, env);
}

ToolInput Text(std::string_view text) {
  ToolInput in;
  in.data = text;
  return in;
}

TEST_F(Rot13ClientTest, HelloBecomesUryyb) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  ToolResult r = Rot13({v4()}, Text("Hello\n"));
  EXPECT_EQ(r.exit_code, kExitOk) << r.err;
  EXPECT_EQ(r.out, "Uryyb\n");
  EXPECT_EQ(r.err, "");

  const std::string all = blackbox::AllBytes();
  r = Rot13({v4()}, Text(all));
  EXPECT_EQ(r.exit_code, kExitOk) << r.err;
  EXPECT_TRUE(r.out == blackbox::Rot13(all)) << "every byte value: letters rotate, the rest pass unchanged";
}

TEST_F(Rot13ClientTest, HostNamesAndDefaultHost) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  for (const std::string& where : {"localhost:" + std::to_string(port_), ":" + std::to_string(port_)}) {
    SCOPED_TRACE(where);
    ToolResult r = Rot13({where}, Text("abc"));
    EXPECT_EQ(r.exit_code, kExitOk) << r.err;
    EXPECT_EQ(r.out, "nop");
  }
  ToolResult r = Rot13({"-4", "localhost:" + std::to_string(port_)}, Text("xyz"));
  EXPECT_EQ(r.exit_code, kExitOk) << r.err;
  EXPECT_EQ(r.out, "klm");
}

// nc's habit: HOST and PORT as two arguments.
TEST_F(Rot13ClientTest, HostAndPortAsTwoArguments) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  ToolResult r = Rot13({"127.0.0.1", std::to_string(port_)}, Text("abc"));
  EXPECT_EQ(r.exit_code, kExitOk) << r.err;
  EXPECT_EQ(r.out, "nop");
  r = Rot13({"-w", "5", "::1", std::to_string(port6_)}, Text("xyz"));
  EXPECT_EQ(r.exit_code, kExitOk) << r.err;
  EXPECT_EQ(r.out, "klm");
}

// socat's habit: tcp:HOST:PORT (and tcp4:, tcp6:, in any case).
TEST_F(Rot13ClientTest, SocatTcpAddress) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  for (const std::string& where : {"tcp:127.0.0.1:" + std::to_string(port_), "TCP4:localhost:" + std::to_string(port_),
                                   "tcp6:[::1]:" + std::to_string(port6_)}) {
    SCOPED_TRACE(where);
    ToolResult r = Rot13({where}, Text("abc"));
    EXPECT_EQ(r.exit_code, kExitOk) << r.err;
    EXPECT_EQ(r.out, "nop");
  }
}

// An address rot13 does not take gets a hint built from what was typed.
TEST_F(Rot13ClientTest, WrongAddressHintShowsTheTypedPort) {
  ToolResult r = Rot13({"udp:127.0.0.1:2345"}, Text("abc"));
  EXPECT_EQ(r.exit_code, kExitBadAddress) << r.err;
  EXPECT_NE(r.err.find("tcp:HOST:PORT"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("1067"), std::string::npos) << "no port the user did not type: " << r.err;
  r = Rot13({"::ffff:127.0.0.1:2345"}, Text("abc"));
  EXPECT_EQ(r.exit_code, kExitBadAddress) << r.err;
  EXPECT_NE(r.err.find("[::ffff:127.0.0.1]:2345"), std::string::npos) << r.err;
}

TEST_F(Rot13ClientTest, Ipv6) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  ToolResult r = Rot13({v6()}, Text("Hello over IPv6"));
  EXPECT_EQ(r.exit_code, kExitOk) << r.err;
  EXPECT_EQ(r.out, "Uryyb bire VCi6");
}

TEST_F(Rot13ClientTest, UnixSocket) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  ToolResult r = Rot13({unix_address()}, Text("Hello over a Unix socket"));
  EXPECT_EQ(r.exit_code, kExitOk) << r.err;
  EXPECT_EQ(r.out, "Uryyb bire n Havk fbpxrg");
}

// 64 MiB in through one pipe and out through another: the client must read and
// write at once (the daemon stops reading while its answers go unread), or it
// deadlocks and this test hits its deadline.
TEST_F(Rot13ClientTest, SixtyFourMebibytesThroughPipesWithoutDeadlock) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  constexpr uint64_t kTotal = 64u << 20;
  // A period that is no power of two, so misplaced blocks show.
  std::string block;
  for (int i = 0; i < 65521; ++i) block.push_back(static_cast<char>((i * 7 + i / 256) & 0xff));
  const std::string expected = blackbox::Rot13(block);
  ToolInput in;
  in.size = kTotal;
  in.produce = [&](uint64_t offset, char* buffer, size_t n) {
    for (size_t i = 0; i < n; ++i) buffer[i] = block[(offset + i) % block.size()];
  };
  uint64_t received = 0;
  uint64_t first_wrong = UINT64_MAX;
  ToolOutput out;
  out.consume = [&](const char* data, size_t n) {
    for (size_t i = 0; i < n && first_wrong == UINT64_MAX; ++i) {
      if (data[i] != expected[(received + i) % expected.size()]) first_wrong = received + i;
    }
    received += n;
  };
  ToolResult r = Rot13({v4()}, in, out, 50s);
  EXPECT_FALSE(r.timed_out) << "deadlock? " << received << " bytes came back";
  EXPECT_EQ(r.exit_code, kExitOk) << r.err;
  EXPECT_EQ(received, kTotal);
  EXPECT_EQ(first_wrong, UINT64_MAX) << "first wrong byte at offset " << first_wrong;
  std::printf("64 MiB through rot13 and rot13d in %lld ms\n", static_cast<long long>(r.elapsed.count()));
}

TEST_F(Rot13ClientTest, EmptyInputHalfClosesAndExits) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  ToolInput in;
  in.file = "/dev/null";
  ToolResult r = Rot13({unix_address()}, in, {}, 10s);
  EXPECT_EQ(r.exit_code, kExitOk) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_LT(r.elapsed, 5s) << "the server closes once it sees the half-close";
}

// `rot13 < big | head -c 1000`: the reader leaves, the client stops quietly
// (no SIGPIPE death, no message) and with success, as a pipeline filter should.
TEST_F(Rot13ClientTest, ReaderLeavingEarlyEndsQuietly) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  ToolInput in;
  in.size = 64u << 20;
  in.produce = [](uint64_t, char* buffer, size_t n) { std::memset(buffer, 'a', n); };
  ToolOutput out;
  out.close_after = 1000;
  ToolResult r = Rot13({v4()}, in, out, 30s);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.signal, 0) << "killed by signal " << r.signal;
  EXPECT_EQ(r.exit_code, kExitOk) << r.err;
  EXPECT_EQ(r.out, std::string(1000, 'n'));
  EXPECT_EQ(r.err, "");
}

TEST_F(Rot13ClientTest, RefusedExits4) {
  uint16_t nobody = blackbox::FreePort();
  ToolResult r = Rot13({"127.0.0.1:" + std::to_string(nobody)}, Text("Hello"));
  EXPECT_EQ(r.exit_code, kExitRefused) << r.err;
  EXPECT_NE(r.err.find("Connection refused"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");

  r = Rot13({"unix:" + dir_.File("nobody-here.sock")}, Text("Hello"));
  EXPECT_EQ(r.exit_code, kExitRefused) << r.err;
  EXPECT_NE(r.err.find("nobody-here.sock"), std::string::npos) << r.err;
}

TEST_F(Rot13ClientTest, ResetExits5) {
  TestServer server(TestServer::ResetAfterFirstBytes);
  ToolResult r = Rot13({server.address()}, Text("Hello"));
  EXPECT_EQ(r.exit_code, kExitReset) << r.err;
  EXPECT_NE(r.err.find("reset"), std::string::npos) << r.err;
}

// A server that closes before it answered all the input is a failure, not
// success: exit status 7, as rot13-bench's "too few bytes".
TEST_F(Rot13ClientTest, ServerClosingBeforeAnsweringAllExits7) {
  TestServer partial(TestServer::AnswersOnly(5));
  ToolResult r = Rot13({partial.address()}, Text("Hello, world"));
  EXPECT_EQ(r.exit_code, kExitMismatch) << r.err;
  EXPECT_EQ(r.out, "Uryyb") << "what did come is still written out";
  EXPECT_NE(r.err.find("after answering 5 of 12 bytes"), std::string::npos) << r.err;

  TestServer early(TestServer::HalfClosesAfter(1000));
  ToolInput in;
  in.size = 1ull << 30;  // far more than goes through before the close is seen
  in.produce = [](uint64_t, char* buffer, size_t n) { std::memset(buffer, 'a', n); };
  r = Rot13({early.address()}, in, {}, 30s);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code, kExitMismatch) << r.err;
  EXPECT_EQ(r.out, std::string(1000, 'n'));
  EXPECT_NE(r.err.find("before all input was sent"), std::string::npos) << r.err;
}

TEST_F(Rot13ClientTest, IdleTimeoutExits6) {
  TestServer server(TestServer::Silent);
  ToolResult r = Rot13({"-w", "500ms", server.address()}, Text("Hello"));
  EXPECT_EQ(r.exit_code, kExitTimeout) << r.err;
  EXPECT_NE(r.err.find("timed out"), std::string::npos) << r.err;
  EXPECT_GE(r.elapsed, 450ms);
  EXPECT_LT(r.elapsed, 5s);
}

TEST_F(Rot13ClientTest, ConnectTimeoutExits6) {
  // A full accept queue drops further SYNs, so the connect gets no answer at all.
  TestServer server = TestServer::FullBacklog();
  ToolResult r = Rot13({"--connect-timeout", "0.5", server.address()}, Text("Hello"));
  EXPECT_EQ(r.exit_code, kExitTimeout) << r.err;
  EXPECT_NE(r.err.find("no answer within"), std::string::npos) << r.err;
  EXPECT_GE(r.elapsed, 450ms);
  EXPECT_LT(r.elapsed, 5s);
}

TEST_F(Rot13ClientTest, BadAddressExits3) {
  for (const std::vector<std::string>& bad : std::vector<std::vector<std::string>>{
           {"127.0.0.1:99999"}, {"127.0.0.1:"}, {"127.0.0.1:http"}, {"[::1"}, {"[::1]x"}, {"[]:5"}, {"1:2:3:x"},
           {"unix:"}, {"host name:5"}, {"127.0.0.1", "0"}, {"127.0.0.1:5", "6"}, {"a:1", "b:2"}, {"unix:/x", "5"}}) {
    SCOPED_TRACE(bad[0] + (bad.size() > 1 ? " " + bad[1] : ""));
    ToolResult r = Rot13(bad, Text("Hello"));
    EXPECT_EQ(r.exit_code, kExitBadAddress) << r.err;
    EXPECT_NE(r.err.find("rot13: "), std::string::npos) << r.err;
  }
  // A name that does not resolve; the resolver is told not to wait long.
  ToolResult r = Rot13({"no-such-host.invalid:5"}, Text("Hello"), {}, 20s, {"RES_OPTIONS=timeout:1 attempts:1"});
  EXPECT_EQ(r.exit_code, kExitBadAddress) << r.err;
  EXPECT_NE(r.err.find("cannot resolve \"no-such-host.invalid\""), std::string::npos) << r.err;
}

TEST_F(Rot13ClientTest, UsageErrorsExit2) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"--no-such-option"}, {"-x"}, {"a", "1", "2"}, {"-w"}, {"-w", "soon"}, {"--connect-timeout", "0"},
           {"--connect-timeout=-1"}}) {
    SCOPED_TRACE(args[0]);
    ToolResult r = Rot13(args, Text("Hello"));
    EXPECT_EQ(r.exit_code, kExitUsage) << r.err;
    EXPECT_NE(r.err.find("Try 'rot13 --help'"), std::string::npos) << r.err;
    EXPECT_EQ(r.out, "");
  }
}

TEST_F(Rot13ClientTest, HelpAndVersion) {
  ToolResult r = Rot13({"--help"});
  EXPECT_EQ(r.exit_code, kExitOk);
  EXPECT_NE(r.out.find("Usage: rot13 "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Exit status"), std::string::npos) << r.out;
  // -v as well, like rot13d -v: the project's version from CMake.
  for (const char* flag : {"--version", "-v"}) {
    r = Rot13({flag});
    EXPECT_EQ(r.exit_code, kExitOk) << flag;
    EXPECT_EQ(r.out, "rot13 " ROT13D_VERSION "\n") << flag;
  }
}

}  // namespace
}  // namespace rot13d::clienttest
