// The fault suite's fixture: the black-box daemon fixture, raised limits, and
// the bookkeeping that tells failures a fault may cause from failures it must not.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "tests/blackbox/daemon_test.h"
#include "tests/fault/helpers.h"

namespace rot13d::fault {

using blackbox::Client;
using blackbox::Daemon;
using blackbox::TempDir;
using blackbox::WaitFor;

// Sanitized builds run the daemon several times slower and with bigger
// allocations: resource bounds that measure the daemon's design get slack there.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif

// A load on `address` ("127.0.0.1:PORT") that keeps every failure, for JudgeFailures.
inline LoadOptions LoadAt(const std::string& address) {
  LoadOptions o;
  o.failure_log = SIZE_MAX;
  auto endpoint = client::ParseEndpoint(address);
  EXPECT_TRUE(endpoint.ok()) << address;
  if (!endpoint) return o;
  auto resolved = client::Resolve(*endpoint);  // numeric: no name service involved
  EXPECT_TRUE(resolved.ok()) << address;
  if (resolved) o.address = resolved->front();
  return o;
}

class FaultTest : public blackbox::DaemonTest {
 protected:
  static void SetUpTestSuite() { PrepareProcessLimits(); }

  // Request/response load: `connections` sessions of min..max bytes in `chunk`
  // requests, thinking up to `think` between them.
  LoadOptions Load(uint32_t connections, uint64_t min_bytes, uint64_t max_bytes, uint64_t chunk,
                   milliseconds think) const {
    LoadOptions o = LoadAt(address());
    o.connections = connections;
    o.min_bytes = min_bytes;
    o.max_bytes = max_bytes;
    o.message = chunk;
    o.think = think;
    return o;
  }

  // Short sessions that each prove a new connection is accepted and answered.
  LoadOptions Probes(int connections, milliseconds pause) const {
    LoadOptions o = Load(connections, 16, 1024, 1024, 0ms);
    o.pause = pause;
    o.seed = 7;
    return o;
  }
};

// Waits until `load` completes `units` more requests (or sessions) than it
// had: proof that its connections are served again after a fault, and that
// failures the fault caused on them have surfaced, before the load stops.
inline bool WaitForProgress(const LoadEngine& load, uint64_t units, milliseconds timeout = 10s) {
  const uint64_t start = load.Stats().requests;
  return WaitFor([&] { return load.Stats().requests >= start + units; }, timeout);
}

// A fault aimed at one worker (kill -9, SIGSTOP) and which open connections it
// held then: those may fail; connections known to be on other workers must not.
struct WorkerFault {
  Clock::time_point at;
  pid_t victim = 0;
  std::set<uint16_t> victim_ports;  // client ports of connections the victim held
  std::set<uint16_t> other_ports;   // ... that other workers held
};

// Maps the served connections of `load` to the workers holding them, before a fault.
inline WorkerFault SnapshotOwners(const LoadEngine& load, uint16_t server_port, const std::vector<pid_t>& workers,
                                  pid_t victim) {
  WorkerFault f;
  f.victim = victim;
  std::vector<uint16_t> served = load.ServedPorts();
  std::set<uint16_t> wanted(served.begin(), served.end());
  for (auto [port, pid] : ServerSideOwners(server_port, workers)) {
    if (!wanted.count(port)) continue;
    (pid == victim ? f.victim_ports : f.other_ports).insert(port);
  }
  return f;
}

struct FailureVerdicts {
  int on_victim = 0;         // the connection was on the worker the fault hit: expected
  int unmapped_near_fault = 0;  // owner unknown (not yet served when mapped), right after a fault: tolerated
  std::vector<std::string> violations;  // anything else
};

// Judges every failure of a load against the faults: a failure is allowed only on
// a connection of the victim, or (owner unknown) within `window` after a fault.
// Refusals and wrong answers (a wrong or an extra byte) are never allowed.
inline FailureVerdicts JudgeFailures(const std::vector<Failure>& failures, const std::vector<WorkerFault>& faults,
                                     milliseconds window) {
  FailureVerdicts v;
  for (const Failure& f : failures) {
    std::string what = std::string(client::FailureKindName(f.kind)) + " on client port " +
                       std::to_string(f.local_port) + ": " + f.message;
    bool wrong_answer = f.mismatch && !f.mismatch->closed_early();
    if (f.kind == FailureKind::kRefused || wrong_answer) {
      v.violations.push_back(what);
      continue;
    }
    bool on_victim = false, near = false;
    const WorkerFault* latest = nullptr;
    for (const WorkerFault& k : faults) {
      if (k.at > f.at) continue;
      latest = &k;
      if (f.at - k.at <= window) {
        near = true;
        if (k.victim_ports.count(f.local_port)) on_victim = true;
      }
    }
    if (on_victim) {
      ++v.on_victim;
    } else if (latest && latest->other_ports.count(f.local_port)) {
      v.violations.push_back(what + " (held by a worker other than the victim " + std::to_string(latest->victim) +
                             ")");
    } else if (near) {
      ++v.unmapped_near_fault;
    } else {
      v.violations.push_back(what + " (no fault just before it)");
    }
  }
  return v;
}

inline std::string Join(const std::vector<std::string>& lines, size_t max = 20) {
  std::string out;
  for (size_t i = 0; i < lines.size() && i < max; ++i) out += "\n  " + lines[i];
  if (lines.size() > max) out += "\n  ... and " + std::to_string(lines.size() - max) + " more";
  return out;
}

inline std::string Describe(const std::vector<Failure>& failures, size_t max = 20) {
  std::vector<std::string> lines;
  for (const Failure& f : failures) {
    lines.push_back(std::string(client::FailureKindName(f.kind)) + " port " + std::to_string(f.local_port) + ": " +
                    f.message);
  }
  return Join(lines, max);
}

}  // namespace rot13d::fault
