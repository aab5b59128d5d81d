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
  // The command line as given, which an upgrade executes again (the process
  // title overwrites the original).
  std::vector<std::string> argv;
};

// Runs the daemon in the foreground until it is stopped; returns the exit code.
// Expects to be called with no other threads running. When ROT13D_HANDOVER is
// set, this is an upgrade's new image: it adopts what the old one handed over.
int Run(const Options& options);

// `rot13d --upgrade-preflight`: run by a supervisor on the binary it is about
// to execute, with the handover (supervisor/handover.h) on stdin. Checks that
// this binary reads its format, can adopt its workers' counters, accepts the
// running configuration and the file's; prints its version on stdout.
// Returns 0 if so, 3 if a configuration is invalid, 1 otherwise (the reason
// on stdout).
int Preflight(const Options& options);

}  // namespace rot13d::supervisor
