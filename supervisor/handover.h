// What a supervisor hands to the image it re-executes for a live upgrade
// (`rot13d --upgrade PID`, SIGUSR2): the descriptors it keeps open across
// execve(2) and the state that goes with them.
//
// The process stays the same (its pid, its children, its blocked and pending
// signals); what execve drops is memory and close-on-exec descriptors. So the
// old image clears FD_CLOEXEC on what must survive (listening sockets, the
// workers' shared counter table and eventfds, the pidfds of those waiting for
// an answer), writes this text to a memfd, names it in ROT13D_HANDOVER and
// executes the new binary, which reads it back and adopts the workers.
//
// The text is versioned: a first line "rot13d-handover FORMAT", then one
// record per line, "key value...", strings percent-encoded, and the serving
// configuration (as --check-config prints it) as the last record. A reader
// ignores keys it does not know and the extra values of a known key; a change
// an older reader cannot ignore bumps kHandoverFormat, and the pre-flight of
// an image that does not know the format refuses the upgrade before the old
// image does anything.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "common/address_table.h"
#include "common/stats.h"
#include "supervisor/metrics.h"
#include "supervisor/planner.h"
#include "supervisor/privileges.h"

namespace rot13d::supervisor {

inline constexpr uint32_t kHandoverFormat = 1;
// Where the new image finds the handover's descriptor.
inline constexpr const char* kHandoverEnv = "ROT13D_HANDOVER";

struct HandoverListener {
  int fd = -1;
  std::string name;        // the configured address text (ListenerSet's key)
  std::string owned_path;  // a unix socket file the supervisor created, or ""
};

struct Handover {
  uint32_t format = kHandoverFormat;
  std::string from_version;  // the image that wrote it
  // The workers' shared counters (common/stats.h) and the layout they have.
  int stats_fd = -1;
  size_t stats_slots = 0;
  size_t stats_slot_size = 0;
  uint32_t stats_layout = 0;
  // The per-address counts (common/address_table.h); -1 from an image without them.
  int addresses_fd = -1;
  size_t addresses_entries = 0;
  size_t addresses_owners = 0;
  uint32_t addresses_layout = 0;
  int ready_fd = -1;  // the eventfd workers poke on a phase change
  int nudge_fd = -1;  // the workers' accept-balance doorbell
  bool activated = false;  // the listeners came from systemd
  std::vector<HandoverListener> listeners;
  // The serving generation (an upgrade never starts while a canary is out).
  uint64_t serving_id = 0;
  uint64_t next_id = 1;
  int serving_size = 0;
  bool serving_halted = false;
  std::string serving_failure;
  std::vector<WorkerRecord> workers;
  CounterTotals retired;  // counters of workers gone
  Activity::Carried activity;
  std::string last_reload;
  std::optional<Identity> identity;  // who the supervisor became after binding
  std::vector<int> requesters;       // pidfds of those waiting for this upgrade's answer
  std::string config;                // the serving configuration, as FormatConfig writes it
};

// The binary this process runs, and where it was installed: an upgrade
// executes the file at `path`; a reload after that file was replaced (a
// package upgrade renames a new file over it) is an upgrade.
struct Executable {
  std::string path;  // /proc/self/exe's target, without " (deleted)"
  dev_t dev = 0;
  ino_t ino = 0;
  static Executable OfThisProcess();
  // A file is at `path` and it is not this image.
  bool Replaced() const;
};

std::string SerializeHandover(const Handover& h);
// Parses the text; a first line of another format, or a malformed record, is an error.
Result<Handover> ParseHandover(std::string_view text);
// Whether this image can adopt what `h` describes: the counter table's
// layout and slot size must be this image's, and so must the per-address
// table's layout when there is one.
Status CheckHandover(const Handover& h);

}  // namespace rot13d::supervisor
