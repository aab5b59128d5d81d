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
  size_t env_count = 0;
  for (char** e = environ; e && *e; ++e) ++env_count;
  // The environment strings usually follow argv: take them too, after
  // copying them to the heap. (Never freed: they live as long as the process.)
  char** moved = static_cast<char**>(std::calloc(env_count + 1, sizeof(char*)));
  if (!moved) return;
  for (size_t i = 0; i < env_count; ++i) {
    if (environ[i] == end) end += std::strlen(environ[i]) + 1;
    moved[i] = strdup(environ[i]);
    if (!moved[i]) return;  // out of memory: leave everything as it was
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
