// Users and groups by name or numeric id, as the configuration names them.
#pragma once

#include <sys/types.h>

#include <string>

#include "common/result.h"

namespace rot13d {

struct UserEntry {
  uid_t uid = 0;
  gid_t gid = static_cast<gid_t>(-1);  // primary group; -1 for a numeric uid without a passwd entry
  bool named = false;                  // has a passwd entry (so initgroups can find its groups)
  std::string name;                    // the passwd name, or the number as given
};

struct GroupEntry {
  gid_t gid = 0;
  std::string name;  // the group name, or the number as given
};

// A name, or a numeric id (which need not have an entry).
Result<UserEntry> LookupUser(const std::string& user);
Result<GroupEntry> LookupGroup(const std::string& group);

// Whether the text is a numeric id rather than a name.
bool IsNumericId(const std::string& text);

}  // namespace rot13d
