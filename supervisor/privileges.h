// Dropping root: who the supervisor becomes after binding, and who owns unix sockets.
#pragma once

#include <linux/capability.h>
#include <sys/types.h>

#include <optional>
#include <string>

#include "common/config.h"

#include "common/result.h"

namespace rot13d::supervisor {

struct Identity {
  uid_t uid = 0;
  gid_t gid = 0;
  std::string user;   // as configured (a name, or a numeric id)
  std::string group;  // the group's name, or its number when it has none
  std::string Describe() const;  // "nobody (uid 65534), group nogroup (gid 65534)"
};

// `user` is a name or a numeric uid; `group` a name, a numeric gid, or "" for
// the user's primary group (a numeric uid without a passwd entry then needs a group).
Result<Identity> ResolveIdentity(const std::string& user, const std::string& group);

// What the supervisor keeps of root after becoming `user`, for reloads only:
// binding a new port below 1024 (NET_BIND_SERVICE), re-reading a configuration
// only root may read (DAC_READ_SEARCH), giving a new unix socket its
// socket_user/socket_group (CHOWN) and changing the mode of one created as
// root (FOWNER). Workers drop even these (DropAllCapabilities).
inline constexpr int kReloadCapabilities[] = {CAP_CHOWN, CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_NET_BIND_SERVICE};

// initgroups (or setgroups for a user without a name), then the gid and uid,
// keeping kReloadCapabilities and nothing else (bounding set included); checks
// that root cannot be regained and re-enables core dumps, which the kernel
// turns off on a uid change (a hung worker's SIGABRT should leave a core).
Status BecomeIdentity(const Identity& id);

// Started as root: the sockets are bound, so become `user` (logging who)
// before any worker exists; nullopt when there was nothing to drop (not
// root: systemd's User= did it) or root is kept as configured.
Result<std::optional<Identity>> DropRoot(const Config& config);

// An upgrade's execve as a user other than root would drop the capabilities
// kept for reloads: they are made inheritable and ambient just before it
// (those this process holds; none is an error), and the new image clears
// the ambient and inheritable sets again at once, so that no child of it
// inherits them. The exec failing, the old image clears them the same way.
Status KeepCapabilitiesAcrossExec();
void ClearInheritedCapabilities();

// A reload cannot change who the supervisor runs as: what to warn about, if the file asks to.
std::optional<std::string> IdentityChangeIgnored(const std::optional<Identity>& current, const Config& config);

// Owner and group for unix socket files; -1 leaves that part unchanged.
struct SocketOwner {
  uid_t uid = static_cast<uid_t>(-1);
  gid_t gid = static_cast<gid_t>(-1);
  bool unchanged() const { return uid == static_cast<uid_t>(-1) && gid == static_cast<gid_t>(-1); }
};
Result<SocketOwner> ResolveSocketOwner(const std::string& user, const std::string& group);

}  // namespace rot13d::supervisor
