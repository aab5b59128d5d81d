#include "supervisor/privileges.h"

#include <grp.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <optional>
#include <vector>

namespace rot13d::supervisor {
namespace {

std::optional<unsigned long> Numeric(const std::string& s) {
  unsigned long v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() || v >= 0xffffffffUL) return std::nullopt;
  return v;
}

size_t BufferSize(int name) {
  long n = sysconf(name);
  return n > 0 ? static_cast<size_t>(n) : 16384;
}

struct UserEntry {
  uid_t uid;
  gid_t gid;
  bool named;  // has a passwd entry (so initgroups can find its groups)
  std::string name;
};

Result<UserEntry> LookupUser(const std::string& user) {
  std::vector<char> buf(BufferSize(_SC_GETPW_R_SIZE_MAX));
  passwd pw{};
  passwd* found = nullptr;
  std::optional<unsigned long> id = Numeric(user);
  int rc = id ? getpwuid_r(static_cast<uid_t>(*id), &pw, buf.data(), buf.size(), &found)
              : getpwnam_r(user.c_str(), &pw, buf.data(), buf.size(), &found);
  if (found) return UserEntry{pw.pw_uid, pw.pw_gid, true, pw.pw_name};
  if (id) return UserEntry{static_cast<uid_t>(*id), static_cast<gid_t>(-1), false, user};
  if (rc != 0) return ErrorBuilder(rc) << "looking up user '" << user << "'";
  return Err() << "no such user '" << user << "'";
}

Result<std::pair<gid_t, std::string>> LookupGroup(const std::string& group) {
  std::vector<char> buf(BufferSize(_SC_GETGR_R_SIZE_MAX));
  struct group gr {};
  struct group* found = nullptr;
  std::optional<unsigned long> id = Numeric(group);
  int rc = id ? getgrgid_r(static_cast<gid_t>(*id), &gr, buf.data(), buf.size(), &found)
              : getgrnam_r(group.c_str(), &gr, buf.data(), buf.size(), &found);
  if (found) return std::pair{gr.gr_gid, std::string(gr.gr_name)};
  if (id) return std::pair{static_cast<gid_t>(*id), group};
  if (rc != 0) return ErrorBuilder(rc) << "looking up group '" << group << "'";
  return Err() << "no such group '" << group << "'";
}

std::string GroupName(gid_t gid) {
  auto g = LookupGroup(std::to_string(gid));
  return g ? g->second : std::to_string(gid);
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
    id.gid = g->first;
    id.group = g->second;
  }
  return id;
}

Status BecomeIdentity(const Identity& id) {
  // Supplementary groups first, while we still may.
  bool named = LookupUser(id.user).ok() && !Numeric(id.user);
  if (named ? initgroups(id.user.c_str(), id.gid) != 0 : setgroups(1, &id.gid) != 0) {
    return ErrnoErr() << "setting the supplementary groups of " << id.user;
  }
  if (setresgid(id.gid, id.gid, id.gid) != 0) return ErrnoErr() << "setgid " << id.gid;
  if (setresuid(id.uid, id.uid, id.uid) != 0) return ErrnoErr() << "setuid " << id.uid;
  if (id.uid != 0 && (setuid(0) == 0 || geteuid() == 0)) {
    return Err() << "root privileges could be regained after becoming " << id.user;
  }
  prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
  return OkStatus();
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
    owner.gid = g->first;
  }
  return owner;
}

}  // namespace rot13d::supervisor
