// libmicrohttpd, loaded when an admin endpoint is first configured rather
// than linked: a supervisor without admin_listen, and the workers it forks,
// never map the HTTP library and the TLS stack it brings (GnuTLS, p11-kit,
// nettle, gmp: about 3.6 MB of resident memory over a supervisor and 2
// workers), as nginx and Apache load only the modules a configuration names.
// Once loaded it stays loaded for the life of the process.
#pragma once

#include <microhttpd.h>

#include "common/result.h"

namespace rot13d::supervisor {

// The functions the admin endpoint calls, with libmicrohttpd's own types.
struct Microhttpd {
  decltype(&MHD_start_daemon) start_daemon;
  decltype(&MHD_stop_daemon) stop_daemon;
  decltype(&MHD_run) run;
  decltype(&MHD_get_timeout) get_timeout;
  decltype(&MHD_get_daemon_info) get_daemon_info;
  decltype(&MHD_get_connection_info) get_connection_info;
  decltype(&MHD_create_response_from_buffer) create_response_from_buffer;
  decltype(&MHD_add_response_header) add_response_header;
  decltype(&MHD_queue_response) queue_response;
  decltype(&MHD_destroy_response) destroy_response;
};

// The soname the build found (libmicrohttpd.so.12 on Debian and Fedora).
extern const char* const kMicrohttpdSoname;
// kMicrohttpdSoname; in the test-hooks build, ROT13D_TEST_MICROHTTPD_SONAME
// if set (a library that cannot be loaded, for the tests of that error).
const char* MicrohttpdSoname();

// Loads `soname` and finds every function. A failure leaves nothing loaded
// and says which library or function is missing. The library is never
// unloaded: a second call finds it already mapped.
Result<Microhttpd> LoadMicrohttpd(const char* soname = MicrohttpdSoname());

}  // namespace rot13d::supervisor
