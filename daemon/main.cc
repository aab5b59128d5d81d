// rot13d: command line, --check-config, and the hand-over to the supervisor.
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include "common/config.h"
#include "common/exit_codes.h"
#include "common/log.h"
#include "supervisor/supervisor.h"

#ifndef ROT13D_VERSION
#define ROT13D_VERSION "unknown"
#endif

namespace {

constexpr const char* kUsage =
    "Usage: rot13d [--config PATH] [--check-config]\n"
    "       rot13d --version | --help\n"
    "\n"
    "A rot13 network service: a supervisor that binds its listeners once and\n"
    "forks workers that serve them. It stays in the foreground.\n"
    "\n"
    "  -c, --config PATH    configuration file (default /etc/rot13d/rot13d.toml;\n"
    "                       when that file does not exist, embedded defaults)\n"
    "  -t, --check-config   validate the configuration, print the effective\n"
    "                       settings, exit 0 if valid and 3 if not\n"
    "  -v, --version        print the version\n"
    "  -h, --help           print this help\n"
    "\n"
    "Signals: HUP reloads the configuration, TERM or INT stop gracefully,\n"
    "QUIT stops at once. See rot13d(8).\n";

int CheckConfig(const std::string& path, bool given) {
  using namespace rot13d;
  FILE* probe = given ? nullptr : std::fopen(path.c_str(), "r");
  if (!given && !probe && errno == ENOENT) {
    std::fputs(FormatConfig(Config::Defaults()).c_str(), stdout);
    std::fprintf(stderr, "rot13d: no configuration file at %s; the embedded defaults above are valid\n",
                 path.c_str());
    return kExitOk;
  }
  if (probe) std::fclose(probe);
  ConfigLoad load = LoadConfigFile(path);
  if (!load.config) {
    for (const ConfigError& e : load.errors) std::fprintf(stderr, "%s\n", e.ToString().c_str());
    std::fprintf(stderr, "rot13d: %s is invalid (%zu error%s)\n", path.c_str(), load.errors.size(),
                 load.errors.size() == 1 ? "" : "s");
    return kExitConfig;
  }
  std::fputs(FormatConfig(*load.config).c_str(), stdout);
  std::fprintf(stderr, "rot13d: %s is valid\n", path.c_str());
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace rot13d;
  supervisor::Options options;
  options.config_path = kDefaultConfigPath;
  bool check = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      return kExitOk;
    } else if (arg == "-v" || arg == "--version") {
      std::printf("rot13d %s\n", ROT13D_VERSION);
      return kExitOk;
    } else if (arg == "-t" || arg == "--check-config") {
      check = true;
    } else if (arg == "-c" || arg == "--config") {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "rot13d: %s needs a path\n%s", argv[i], kUsage);
        return kExitUsage;
      }
      options.config_path = argv[++i];
      options.config_path_given = true;
    } else if (arg.starts_with("--config=")) {
      options.config_path = std::string(arg.substr(9));
      options.config_path_given = true;
    } else {
      std::fprintf(stderr, "rot13d: unknown argument '%s'\n%s", argv[i], kUsage);
      return kExitUsage;
    }
  }
  if (check) return CheckConfig(options.config_path, options.config_path_given);
  ConfigureLogging(LogLevel::kInfo, LogTarget::kAuto);
  return supervisor::Run(options);
}
