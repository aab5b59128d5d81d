#include "common/users.h"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <charconv>
#include <optional>
#include <vector>

namespace rot13d {
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

}  // namespace

bool IsNumericId(const std::string& text) { return Numeric(text).has_value(); }

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

Result<GroupEntry> LookupGroup(const std::string& group) {
  std::vector<char> buf(BufferSize(_SC_GETGR_R_SIZE_MAX));
  struct group gr {};
  struct group* found = nullptr;
  std::optional<unsigned long> id = Numeric(group);
  int rc = id ? getgrgid_r(static_cast<gid_t>(*id), &gr, buf.data(), buf.size(), &found)
              : getgrnam_r(group.c_str(), &gr, buf.data(), buf.size(), &found);
  if (found) return GroupEntry{gr.gr_gid, gr.gr_name};
  if (id) return GroupEntry{static_cast<gid_t>(*id), group};
  if (rc != 0) return ErrorBuilder(rc) << "looking up group '" << group << "'";
  return Err() << "no such group '" << group << "'";
}

}  // namespace rot13d
