// What ps and top show for this process: its command line rewritten in place
// ("rot13d: supervisor (generation 3)"), as nginx and PostgreSQL do.
#pragma once

#include <string_view>

namespace rot13d {

// Takes over the memory of argv and the environment strings that follow it
// (the environment moves to the heap first, so getenv and setenv keep
// working). Call once, early in main, after the arguments were read.
void InitProcTitle(int argc, char** argv);

// The new title, cut to the room argv and the environment had; a no-op
// before InitProcTitle.
void SetProcTitle(std::string_view title);

}  // namespace rot13d
