// Exit codes of the client tools (rot13, rot13-bench): a protocol for scripts, documented in their man pages.
#pragma once

namespace rot13d::client {

inline constexpr int kExitOk = 0;
// An I/O error that fits none of the kinds below; for rot13-bench also: the run
// finished, but with failures (counted by kind in the report).
inline constexpr int kExitIoError = 1;
// Bad command line.
inline constexpr int kExitUsage = 2;
// The address does not parse, or the host name does not resolve.
inline constexpr int kExitBadAddress = 3;
inline constexpr int kExitRefused = 4;
inline constexpr int kExitReset = 5;
// Connecting took longer than --connect-timeout, the connection was idle for
// longer than --timeout, or (rot13-bench) --max-time ended the run.
inline constexpr int kExitTimeout = 6;
// The server sent too few bytes: rot13, it closed the connection before all
// the input was sent or answered; rot13-bench, also a byte came back that is
// not the expected transform of the byte sent, or too many bytes came.
inline constexpr int kExitMismatch = 7;
// rot13-bench: stopped by SIGINT or SIGTERM before the run was complete.
inline constexpr int kExitInterrupted = 130;

}  // namespace rot13d::client
