// Loading libmicrohttpd at run time: the real library gives every function;
// a missing library or one that is not libmicrohttpd is an error that names it.
#include "supervisor/microhttpd.h"

#include <dlfcn.h>
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <string>

namespace rot13d::supervisor {
namespace {

TEST(LoadMicrohttpd, TheBuildsLibraryGivesEveryFunctionFromIt) {
  auto mhd = LoadMicrohttpd();
  ASSERT_TRUE(mhd.ok()) << mhd.error().ToString();
  Dl_info where{};
  ASSERT_NE(dladdr(reinterpret_cast<void*>(mhd->start_daemon), &where), 0);
  EXPECT_NE(std::string(where.dli_fname).find("libmicrohttpd"), std::string::npos) << where.dli_fname;
  for (void* f : {reinterpret_cast<void*>(mhd->stop_daemon), reinterpret_cast<void*>(mhd->run),
                  reinterpret_cast<void*>(mhd->get_timeout), reinterpret_cast<void*>(mhd->get_daemon_info),
                  reinterpret_cast<void*>(mhd->get_connection_info),
                  reinterpret_cast<void*>(mhd->create_response_from_buffer),
                  reinterpret_cast<void*>(mhd->add_response_header), reinterpret_cast<void*>(mhd->queue_response),
                  reinterpret_cast<void*>(mhd->destroy_response)}) {
    Dl_info info{};
    ASSERT_NE(dladdr(f, &info), 0);
    EXPECT_STREQ(info.dli_fname, where.dli_fname);
  }
}

TEST(LoadMicrohttpd, AMissingLibraryIsAnErrorNamingItAndWhatNeedsIt) {
  auto mhd = LoadMicrohttpd("librot13d-no-such-library.so.0");
  ASSERT_FALSE(mhd.ok());
  EXPECT_NE(mhd.error().ToString().find("cannot be loaded: librot13d-no-such-library.so.0: "), std::string::npos)
      << mhd.error().ToString();
  EXPECT_NE(mhd.error().ToString().find("admin_listen"), std::string::npos) << mhd.error().ToString();
}

TEST(LoadMicrohttpd, ALibraryThatIsNotLibmicrohttpdIsRefused) {
  auto mhd = LoadMicrohttpd("libcap-ng.so.0");  // rot13d links it: present wherever this runs
  ASSERT_FALSE(mhd.ok());
  EXPECT_EQ(mhd.error().ToString(),
            "libcap-ng.so.0 has no MHD_start_daemon: not a libmicrohttpd this build can use");
}

// dpkg-shlibdeps and rpm's automatic requires cannot see a dlopen: the
// packages name the library themselves, and must name the one the build loads.
TEST(LoadMicrohttpd, ThePackagesDependOnTheLibraryTheBuildLoads) {
  std::string soname = kMicrohttpdSoname;  // libmicrohttpd.so.N
  ASSERT_TRUE(soname.starts_with("libmicrohttpd.so.")) << soname;
  std::string major = soname.substr(std::string("libmicrohttpd.so.").size());
  auto read = [](const std::string& path) {
    std::ifstream in(std::string(ROT13D_SOURCE_DIR) + "/" + path);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  std::string control = read("packaging/debian/control");
  std::string spec = read("packaging/rpm/rot13d.spec");
  EXPECT_NE(control.find(", libmicrohttpd" + major + " | libmicrohttpd" + major + "t64\n"), std::string::npos)
      << "packaging/debian/control does not depend on the Debian package of " << soname;
  EXPECT_NE(spec.find("Requires:       " + soname + "()(64bit)\n"), std::string::npos)
      << "packaging/rpm/rot13d.spec does not require " << soname;
}

}  // namespace
}  // namespace rot13d::supervisor
