#include "supervisor/microhttpd.h"

#include <dlfcn.h>

#include <cstdlib>
#include <type_traits>

namespace rot13d::supervisor {

const char* const kMicrohttpdSoname = ROT13D_MICROHTTPD_SONAME;

const char* MicrohttpdSoname() {
#ifdef ROT13D_TEST_HOOKS
  if (const char* name = std::getenv("ROT13D_TEST_MICROHTTPD_SONAME")) return name;
#endif
  return kMicrohttpdSoname;
}

Result<Microhttpd> LoadMicrohttpd(const char* soname) {
  void* library = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
  if (!library) return Err() << "libmicrohttpd, which admin_listen needs, cannot be loaded: " << dlerror();
  Microhttpd table{};
  const char* missing = nullptr;
  auto find = [&](auto& slot, const char* name) {
    slot = reinterpret_cast<std::remove_reference_t<decltype(slot)>>(dlsym(library, name));
    if (!slot && !missing) missing = name;
  };
  find(table.start_daemon, "MHD_start_daemon");
  find(table.stop_daemon, "MHD_stop_daemon");
  find(table.run, "MHD_run");
  find(table.get_timeout, "MHD_get_timeout");
  find(table.get_daemon_info, "MHD_get_daemon_info");
  find(table.get_connection_info, "MHD_get_connection_info");
  find(table.create_response_from_buffer, "MHD_create_response_from_buffer");
  find(table.add_response_header, "MHD_add_response_header");
  find(table.queue_response, "MHD_queue_response");
  find(table.destroy_response, "MHD_destroy_response");
  if (missing) {
    dlclose(library);
    return Err() << soname << " has no " << missing << ": not a libmicrohttpd this build can use";
  }
  return table;
}

}  // namespace rot13d::supervisor
