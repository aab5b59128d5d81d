// libFuzzer target: any bytes as a configuration file; errors are well formed and valid configs round-trip.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "common/config.h"

namespace rot13d {
namespace {

constexpr std::string_view kFileName = "fuzz.toml";

// The input, printable, for the report (libFuzzer also saves it as a file).
std::string Escaped(std::string_view text) {
  std::string out;
  for (unsigned char c : text.substr(0, 2000)) {
    if (c == '\n') {
      out += "\\n\n";
    } else if (c == '\\' || c < 0x20 || c >= 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += c == '\\' ? "\\\\" : hex;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (text.size() > 2000) out += "...";
  return out;
}

[[noreturn]] void Violated(std::string_view text, const std::string& what) {
  std::fprintf(stderr, "fuzz target invariant failed: %s\n---- input ----\n%s\n---- end ----\n",
               what.c_str(), Escaped(text).c_str());
  std::abort();
}

// Line lengths in bytes, 1-based; toml++ counts columns in code points, so a
// byte count is an upper bound.
std::vector<size_t> LineLengths(std::string_view text) {
  std::vector<size_t> lengths{0};  // index 0: no such line
  size_t start = 0;
  while (true) {
    size_t nl = text.find('\n', start);
    if (nl == std::string_view::npos) {
      lengths.push_back(text.size() - start);
      return lengths;
    }
    lengths.push_back(nl - start);
    start = nl + 1;
  }
}

void CheckErrors(std::string_view text, const ConfigLoad& load) {
  if (load.config.has_value() == !load.errors.empty()) {
    Violated(text, load.config ? "a config and errors at once" : "neither a config nor an error");
  }
  std::vector<size_t> lines = LineLengths(text);
  const ConfigError* previous = nullptr;
  for (const ConfigError& e : load.errors) {
    std::string where = e.ToString();
    if (e.message.empty()) Violated(text, "an error without a message: " + where);
    if (e.file != kFileName) Violated(text, "an error naming another file: " + where);
    if (where.find(e.message) == std::string::npos || !where.starts_with(kFileName)) {
      Violated(text, "ToString() lost the file or message: " + where);
    }
    // Line 0 means the file as a whole, which text alone never warrants:
    // every problem in it has a place an editor can jump to.
    if (e.line < 1 || static_cast<size_t>(e.line) >= lines.size()) {
      Violated(text, "line out of range (" + std::to_string(lines.size() - 1) + " lines): " + where);
    }
    // One past the end of the line: where "unexpected end of line/file" is.
    // toml++ puts an end of file after a final newline on the line that the
    // newline ends, one column past it, not on the empty line after.
    size_t length = lines[static_cast<size_t>(e.line)];
    bool before_final_newline =
        text.ends_with('\n') && static_cast<size_t>(e.line) == lines.size() - 2;
    size_t last_column = length + (before_final_newline ? 2 : 1);
    if (e.column < 1 || static_cast<size_t>(e.column) > last_column) {
      Violated(text, "column out of range (line has " + std::to_string(length) + " bytes): " + where);
    }
    if (previous && std::tie(e.line, e.column) < std::tie(previous->line, previous->column)) {
      Violated(text, "errors not in file order: " + previous->ToString() + " before " + where);
    }
    previous = &e;
  }
}

// Paths and names end up as C strings: one with a NUL in it would silently
// mean a shorter one. Asked of the parsed values, not of the text, where
// "\\u0000" (an escaped backslash, then u0000) is no NUL at all.
const char* FieldWithNul(const Config& c) {
  auto nul = [](const std::string& s) { return s.find('\0') != std::string::npos; };
  for (const ListenAddress& a : c.listen) {
    if (nul(a.host) || nul(a.path)) return "listen";
  }
  if (nul(c.socket_user)) return "socket_user";
  if (nul(c.socket_group)) return "socket_group";
  if (nul(c.user)) return "user";
  if (nul(c.group)) return "group";
  return nullptr;
}

// What validation promises about every config it returns (README table).
void CheckRanges(std::string_view text, const Config& c) {
  auto in = [](auto v, auto lo, auto hi) { return v >= lo && v <= hi; };
  if (c.listen.empty()) Violated(text, "a config with no listen address");
  if (!in(c.backlog, 1, 65535)) Violated(text, "backlog out of range");
  if (!in(c.workers, 0, kMaxWorkers)) Violated(text, "workers out of range");
  if (!in(c.max_connections, 1, 1 << 20)) Violated(text, "max_connections out of range");
  if (!in(c.buffer_size, size_t{1024}, size_t{64} << 20)) Violated(text, "buffer_size out of range");
  if (!in(c.idle_timeout.count(), 0, int64_t{7} * 86400 * 1000)) Violated(text, "idle_timeout out of range");
  if (!in(c.shutdown_timeout.count(), 0, int64_t{3600} * 1000)) Violated(text, "shutdown_timeout out of range");
  if (c.socket_mode > 0777) Violated(text, "socket_mode out of range");
  if (const char* field = FieldWithNul(c)) {
    Violated(text, std::string("a NUL byte in ") + field + "\n---- FormatConfig ----\n" + FormatConfig(c));
  }
}

// The effective configuration. listen_set is left out on purpose: it records
// whether the file named `listen`, and FormatConfig always does.
bool SameEffective(const Config& a, const Config& b) {
  return a.listen == b.listen && a.backlog == b.backlog && a.workers == b.workers &&
         a.max_connections == b.max_connections && a.buffer_size == b.buffer_size &&
         a.idle_timeout == b.idle_timeout && a.shutdown_timeout == b.shutdown_timeout &&
         a.log_level == b.log_level && a.log_target == b.log_target && a.socket_mode == b.socket_mode &&
         a.connection_log == b.connection_log;
}

void CheckRoundTrip(std::string_view text, const Config& c) {
  // --check-config prints this; the output must be a valid file that means the same.
  std::string formatted = FormatConfig(c);
  ConfigLoad again = ParseConfig(formatted, kFileName);
  if (!again.config) {
    Violated(text, "FormatConfig output does not parse: " + again.errors.front().ToString() +
                       "\n---- FormatConfig ----\n" + formatted);
  }
  if (!SameEffective(c, *again.config) || FormatConfig(*again.config) != formatted) {
    Violated(text, "FormatConfig -> ParseConfig changed the config\n---- FormatConfig ----\n" +
                       formatted + "---- after the round trip ----\n" + FormatConfig(*again.config));
  }
}

}  // namespace
}  // namespace rot13d

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace rot13d;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    ConfigLoad load = ParseConfig(text, kFileName);
    CheckErrors(text, load);
    if (load.config) {
      CheckRanges(text, *load.config);
      CheckRoundTrip(text, *load.config);
    }
  } catch (const std::exception& e) {
    Violated(text, std::string("an exception escaped: ") + e.what());
  } catch (...) {
    Violated(text, "an exception of unknown type escaped");
  }
  return 0;
}
