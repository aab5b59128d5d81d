// The supervisor: binds once, forks workers, and runs one loop over signals and timers.
#pragma once

#include <string>
#include <vector>

#include "common/address.h"

namespace rot13d::supervisor {

struct Options {
  std::string config_path;  // the file to read and re-read on SIGHUP
  bool config_path_given = false;  // --config: a missing file is then an error
  // --listen: these addresses instead of the file's `listen`, at every reload too.
  std::vector<ListenAddress> listen;
  std::string version;  // for the first log line
};

// Runs the daemon in the foreground until it is stopped; returns the exit code.
// Expects to be called with no other threads running.
int Run(const Options& options);

}  // namespace rot13d::supervisor
