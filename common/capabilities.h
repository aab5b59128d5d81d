// Capabilities, through libcap-ng: what a worker gives up for good before it serves.
#pragma once

#include "common/result.h"

namespace rot13d {

// Clears every capability of this process (effective, permitted, inheritable,
// ambient) and sets no_new_privs, so that nothing it runs can gain any again.
// What a worker does first: it serves untrusted clients and needs no privilege.
Status DropAllCapabilities();

// The effective capabilities as a set of names ("none" when empty), for logs.
std::string EffectiveCapabilities();

}  // namespace rot13d
