// Exit codes are a protocol between workers, the supervisor and the service manager.
#pragma once

namespace rot13d {

inline constexpr int kExitOk = 0;
// Run-time failure of the supervisor: a listener could not be bound, the
// activated sockets were not usable, a system call needed to start failed.
inline constexpr int kExitFailure = 1;
// Bad command line.
inline constexpr int kExitUsage = 2;
// The configuration file is invalid (at start, or with --check-config).
inline constexpr int kExitConfig = 3;
// A worker cannot set itself up, and trying again will not help (a system call
// that a worker needs failed for good): its generation stops respawning at
// once, as gunicorn's WORKER_BOOT_ERROR. From the supervisor: the generation
// serving could not boot, so it gave up.
inline constexpr int kExitCannotBoot = 4;
// A worker could not set itself up for want of a resource (descriptors,
// memory): its slot backs off and tries again, like a crash at boot.
inline constexpr int kExitBootShortage = 5;
// Processes killed by signal N report 128+N in the shell, as usual.

}  // namespace rot13d
