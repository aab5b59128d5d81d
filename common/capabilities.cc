#include "common/capabilities.h"

#include <cap-ng.h>
#include <sys/prctl.h>

#include <cstdlib>
#include <memory>

namespace rot13d {

Status DropAllCapabilities() {
  // Holding none, skip capset(2): the packaged unit's SystemCallFilter=~@privileged
  // refuses it with EPERM even when it would clear nothing. Ambient capabilities
  // are a subset of the permitted ones, so they are empty too.
  if (capng_get_caps_process() != 0) return ErrnoErr() << "reading capabilities (capng_get_caps_process)";
  if (capng_have_permitted_capabilities() != CAPNG_NONE) {
    capng_clear(CAPNG_SELECT_CAPS);
    if (capng_apply(CAPNG_SELECT_CAPS) != 0) return ErrnoErr() << "dropping capabilities (capng_apply)";
  }
  // EINVAL: a kernel without ambient capabilities (before 4.3) has none to clear.
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
    return ErrnoErr() << "clearing ambient capabilities";
  }
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return ErrnoErr() << "prctl(PR_SET_NO_NEW_PRIVS)";
  return OkStatus();
}

std::string EffectiveCapabilities() {
  capng_get_caps_process();
  if (capng_have_capabilities(CAPNG_SELECT_CAPS) == CAPNG_NONE) return "none";
  std::unique_ptr<char, decltype(&std::free)> text(capng_print_caps_text(CAPNG_PRINT_BUFFER, CAPNG_EFFECTIVE),
                                                   &std::free);
  return text ? text.get() : "unknown";
}

}  // namespace rot13d
