#include "common/proctitle.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>

extern char** environ;

namespace rot13d {
namespace {

char* area = nullptr;  // argv[0] .. the end of the last contiguous string
size_t area_size = 0;

}  // namespace

void InitProcTitle(int argc, char** argv) {
  if (argc < 1 || !argv[0]) return;
  char* end = argv[0] + std::strlen(argv[0]) + 1;
  for (int i = 1; i < argc; ++i) {
    if (argv[i] == end) end += std::strlen(argv[i]) + 1;
  }
  // The environment strings usually follow argv: take them too, after
  // copying them to the heap, in one block held here for the life of the
  // process (so that strings unsetenv drops are still ours, not a leak).
  size_t env_count = 0, env_bytes = 0;
  for (char** e = environ; e && *e; ++e, ++env_count) env_bytes += std::strlen(*e) + 1;
  static char** moved = nullptr;
  static char* strings = nullptr;
  moved = static_cast<char**>(std::calloc(env_count + 1, sizeof(char*)));
  strings = static_cast<char*>(std::malloc(env_bytes + 1));
  if (!moved || !strings) return;  // out of memory: leave everything as it was
  char* next = strings;
  for (size_t i = 0; i < env_count; ++i) {
    if (environ[i] == end) end += std::strlen(environ[i]) + 1;
    size_t n = std::strlen(environ[i]) + 1;
    std::memcpy(next, environ[i], n);
    moved[i] = next;
    next += n;
  }
  environ = moved;
  area = argv[0];
  area_size = static_cast<size_t>(end - argv[0]);
  for (int i = 1; i < argc; ++i) argv[i] = nullptr;  // nothing may read them any more
}

void SetProcTitle(std::string_view title) {
  if (!area || area_size < 2) return;
  size_t n = std::min(title.size(), area_size - 1);
  std::memcpy(area, title.data(), n);
  std::memset(area + n, 0, area_size - n);
}

}  // namespace rot13d
