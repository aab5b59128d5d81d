// rot13: a netcat for the rot13 protocol. Sends standard input, writes the answer to
// standard output, half-closes at the end of input and exits when the server closes.
#include <fcntl.h>
#include <getopt.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "client/args.h"
#include "client/endpoint.h"
#include "client/exit_codes.h"
#include "client/relay.h"

#ifndef ROT13D_VERSION
#define ROT13D_VERSION "unknown"
#endif

namespace rot13d::client {
namespace {

constexpr const char* kUsage =
    "Usage: rot13 [-4|-6] [--connect-timeout TIME] [-w TIME] [ADDRESS | HOST PORT]\n"
    "       rot13 --version | --help\n"
    "\n"
    "Sends standard input to a rot13 server and writes its answer to standard\n"
    "output; half-closes at the end of input and exits when the server closes.\n"
    "\n"
    "ADDRESS is [HOST][:PORT], [IPv6]:PORT, tcp:HOST:PORT or unix:PATH (default\n"
    "localhost:1067); or HOST and PORT as two arguments, as for nc.\n"
    "\n"
    "  -4, --ipv4                   use IPv4 addresses of HOST only\n"
    "  -6, --ipv6                   use IPv6 addresses of HOST only\n"
    "      --connect-timeout TIME   give up on each address after TIME (default 10s)\n"
    "  -w, --timeout TIME           give up when nothing is sent or received for\n"
    "                               TIME (default 0: wait forever)\n"
    "  -h, --help                   print this help\n"
    "  -v, --version                print the version\n"
    "\n"
    "A TIME is a number with a unit, us, ms, s, m or h (10s, 500ms, 2m); a plain\n"
    "number is seconds.\n"
    "\n"
    "Exit status: 0 ok, 1 other I/O error, 2 usage, 3 bad address or unknown host,\n"
    "4 connection refused, 5 connection reset, 6 timeout, 7 the server closed before\n"
    "all input was sent or answered. See rot13(1).\n";

int Usage(const std::string& message) {
  std::fprintf(stderr, "rot13: %s\nTry 'rot13 --help'.\n", message.c_str());
  return kExitUsage;
}

// Descriptors 0-2 closed by the caller would otherwise be taken by the socket,
// and the relay would then talk to the server as if it were standard input.
void OpenStandardDescriptors() {
  for (int fd = 0; fd <= 2; ++fd) {
    if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF) continue;
    UniqueFd null_fd(open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY));
    if (null_fd.get() == fd) {
      null_fd.release();  // it is the standard descriptor now
    } else if (null_fd) {
      dup2(null_fd.get(), fd);
    }
  }
}

struct Rot13Args {
  enum class Action { kRun, kHelp, kVersion };
  Action action = Action::kRun;
  Family family = Family::kAny;
  std::chrono::nanoseconds connect_timeout = std::chrono::seconds(10);
  RelayOptions relay;
  std::vector<std::string> address;  // ADDRESS, HOST PORT, or none for the default
};

// A usage error's message says what is wrong, without the program's name.
Result<Rot13Args> ParseArgs(int argc, char** argv) {
  enum { kConnectTimeout = 256 };
  static const option kOptions[] = {
      {"ipv4", no_argument, nullptr, '4'},
      {"ipv6", no_argument, nullptr, '6'},
      {"connect-timeout", required_argument, nullptr, kConnectTimeout},
      {"timeout", required_argument, nullptr, 'w'},
      {"help", no_argument, nullptr, 'h'},
      {"version", no_argument, nullptr, 'v'},
      {nullptr, 0, nullptr, 0},
  };
  Rot13Args args;
  opterr = 0;  // our own messages, without argv[0]'s directory
  int c;
  while ((c = getopt_long(argc, argv, ":46w:hv", kOptions, nullptr)) != -1) {
    switch (c) {
      case '4': args.family = Family::kIpv4; break;
      case '6': args.family = Family::kIpv6; break;
      case kConnectTimeout:
      case 'w': {
        auto duration = ParseDuration(optarg);
        if (!duration) return Err() << duration.error().ToString();
        if (c == 'w') {
          args.relay.idle_timeout = *duration;
        } else {
          args.connect_timeout = *duration;
          if (args.connect_timeout.count() == 0) return Err() << "--connect-timeout must be more than 0";
        }
        break;
      }
      case 'h': args.action = Rot13Args::Action::kHelp; return args;
      case 'v': args.action = Rot13Args::Action::kVersion; return args;
      case ':': return Err() << "option '" << argv[optind - 1] << "' needs a value";
      default: return Err() << "unknown option '" << argv[optind - 1] << "'";
    }
  }
  if (argc - optind > 2) return Err() << "too many arguments (expected ADDRESS, or HOST and PORT)";
  args.address.assign(argv + optind, argv + argc);
  return args;
}

int Run(const Rot13Args& args) {
  auto endpoint = ParseEndpointArgs(args.address);
  if (!endpoint) {
    std::fprintf(stderr, "rot13: %s\n", endpoint.error().ToString().c_str());
    return kExitBadAddress;
  }
  OpenStandardDescriptors();
  // A closed standard output must be an EPIPE to handle, not a signal that kills us.
  std::signal(SIGPIPE, SIG_IGN);
  auto addresses = Resolve(*endpoint, args.family);
  if (!addresses) {
    std::fprintf(stderr, "rot13: %s\n", addresses.error().ToString().c_str());
    return kExitBadAddress;
  }
  auto connection = ConnectAny(*addresses, std::chrono::ceil<std::chrono::milliseconds>(args.connect_timeout));
  if (!connection) {
    std::fprintf(stderr, "rot13: %s\n", connection.error().message().c_str());
    return ExitCodeFor(ClassifyErrno(connection.error().errno_value()));
  }
  RelayResult result = Relay(connection->fd.borrow(), args.relay);
  if (result.failure != FailureKind::kNone) {
    std::fprintf(stderr, "rot13: %s: %s\n", connection->address.ToString().c_str(), result.message.c_str());
    return ExitCodeFor(result.failure);
  }
  return kExitOk;
}

int Main(int argc, char** argv) {
  auto args = ParseArgs(argc, argv);
  if (!args) return Usage(args.error().message());
  switch (args->action) {
    case Rot13Args::Action::kHelp: std::fputs(kUsage, stdout); return kExitOk;
    case Rot13Args::Action::kVersion: std::printf("rot13 %s\n", ROT13D_VERSION); return kExitOk;
    case Rot13Args::Action::kRun: break;
  }
  return Run(*args);
}

}  // namespace
}  // namespace rot13d::client

int main(int argc, char** argv) { return rot13d::client::Main(argc, argv); }
