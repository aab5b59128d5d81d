#include "supervisor/privileges.h"

#include <grp.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cap-ng.h>

#include <cerrno>
#include <vector>

#include "common/capabilities.h"
#include "common/log.h"
#include "common/users.h"

namespace rot13d::supervisor {
namespace {

std::string GroupName(gid_t gid) {
  auto g = LookupGroup(std::to_string(gid));
  return g ? g->name : std::to_string(gid);
}

}  // namespace

std::string Identity::Describe() const {
  return user + " (uid " + std::to_string(uid) + "), group " + group + " (gid " + std::to_string(gid) + ")";
}

Result<Identity> ResolveIdentity(const std::string& user, const std::string& group) {
  auto u = LookupUser(user);
  if (!u) return u.error();
  Identity id;
  id.uid = u->uid;
  id.user = u->name;
  if (group.empty()) {
    if (!u->named) return Err() << "user " << user << " has no passwd entry: set 'group' too";
    id.gid = u->gid;
    id.group = GroupName(id.gid);
  } else {
    auto g = LookupGroup(group);
    if (!g) return g.error();
    id.gid = g->gid;
    id.group = g->name;
  }
  return id;
}

Status BecomeIdentity(const Identity& id) {
  // Supplementary groups first, while we still may.
  bool named = LookupUser(id.user).ok() && !IsNumericId(id.user);
  if (named ? initgroups(id.user.c_str(), id.gid) != 0 : setgroups(1, &id.gid) != 0) {
    return ErrnoErr() << "setting the supplementary groups of " << id.user;
  }
  // Then the ids, keeping only the capabilities a reload needs (and nothing
  // else, not even in the bounding set).
  capng_clear(CAPNG_SELECT_BOTH);
  for (int cap : kReloadCapabilities) {
    if (capng_update(CAPNG_ADD, static_cast<capng_type_t>(CAPNG_EFFECTIVE | CAPNG_PERMITTED | CAPNG_BOUNDING_SET),
                     static_cast<unsigned>(cap)) != 0) {
      return Err() << "selecting capability " << cap;
    }
  }
  if (int rc = capng_change_id(static_cast<int>(id.uid), static_cast<int>(id.gid),
                               static_cast<capng_flags_t>(CAPNG_CLEAR_BOUNDING | CAPNG_CLEAR_AMBIENT));
      rc != 0) {
    return ErrnoErr() << "becoming uid " << id.uid << " and gid " << id.gid << " (capng_change_id step " << -rc
                      << ")";
  }
  if (id.uid != 0 && (setuid(0) == 0 || geteuid() == 0)) {
    return Err() << "root privileges could be regained after becoming " << id.user;
  }
  // The kernel turns core dumps off on a uid change; a hung worker's SIGABRT
  // should leave one. (ptrace still needs the tracer to hold our capabilities.)
  if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0) return ErrnoErr() << "prctl(PR_SET_DUMPABLE)";
  return OkStatus();
}

Result<std::optional<Identity>> DropRoot(const Config& config) {
  if (geteuid() != 0) {
    if (config.user_set) Log(LogLevel::kDebug, "'user' is ignored: not started as root");
    return std::optional<Identity>();
  }
  auto id = ResolveIdentity(config.user, config.group);
  if (!id) return Err() << "cannot drop privileges to user '" << config.user << "': " << id.error().ToString();
  if (id->uid == 0) {
    Log(LogLevel::kWarning, "running as root, as configured (user = \"" + config.user + "\")");
    return std::optional<Identity>();
  }
  if (Status s = BecomeIdentity(*id); !s) return s.error();
  Log(LogLevel::kInfo, "running as " + id->Describe() + ", keeping only the capabilities " +
                           EffectiveCapabilities() + " for reloads; workers keep none");
  return std::optional<Identity>(*id);
}

std::optional<std::string> IdentityChangeIgnored(const std::optional<Identity>& current, const Config& config) {
  if (!current || (config.user == current->user && (config.group.empty() || config.group == current->group))) {
    return std::nullopt;
  }
  return "'user'/'group' changes need a restart; still running as " + current->Describe();
}

Result<SocketOwner> ResolveSocketOwner(const std::string& user, const std::string& group) {
  SocketOwner owner;
  if (!user.empty()) {
    auto u = LookupUser(user);
    if (!u) return u.error();
    owner.uid = u->uid;
  }
  if (!group.empty()) {
    auto g = LookupGroup(group);
    if (!g) return g.error();
    owner.gid = g->gid;
  }
  return owner;
}

Status KeepCapabilitiesAcrossExec() {
  if (capng_get_caps_process() != 0) return Err() << "reading this process's capabilities";
  std::vector<int> held;
  for (int cap : kReloadCapabilities) {
    if (capng_have_capability(CAPNG_PERMITTED, static_cast<unsigned>(cap))) held.push_back(cap);
  }
  if (held.empty()) return OkStatus();
  for (int cap : held) {
    if (capng_update(CAPNG_ADD, CAPNG_INHERITABLE, static_cast<unsigned>(cap)) != 0) {
      return Err() << "making capability " << cap << " inheritable";
    }
  }
  if (capng_apply(CAPNG_SELECT_CAPS) != 0) return ErrnoErr() << "setting inheritable capabilities";
  for (int cap : held) {
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) != 0) {
      return ErrnoErr() << "raising ambient capability " << cap;
    }
  }
  return OkStatus();
}

void ClearInheritedCapabilities() {
  (void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  if (capng_get_caps_process() != 0) return;
  for (unsigned cap = 0; cap <= CAP_LAST_CAP; ++cap) (void)capng_update(CAPNG_DROP, CAPNG_INHERITABLE, cap);
  (void)capng_apply(CAPNG_SELECT_CAPS);
}

}  // namespace rot13d::supervisor
