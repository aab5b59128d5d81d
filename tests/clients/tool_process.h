// Runs a built client tool as a child with pipes on its standard input and output, feeding
// and draining both at once, as a shell pipeline would.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "tests/blackbox/harness.h"

namespace rot13d::clienttest {

using blackbox::Clock;
using blackbox::milliseconds;
using namespace std::chrono_literals;

const char* Rot13Path();
const char* BenchPath();

struct ToolResult {
  int exit_code = -1;  // -1 when killed by a signal or at the deadline
  int signal = 0;      // the signal that ended it, if any
  bool timed_out = false;
  std::string out;
  std::string err;
  milliseconds elapsed{0};
};

// What the child's standard input is.
struct ToolInput {
  // Bytes written to a pipe, which is then closed. Ignored when `size` is set.
  std::string_view data;
  // Or a generated stream of `size` bytes: produce(offset, buffer, n) fills n bytes.
  uint64_t size = 0;
  std::function<void(uint64_t offset, char* buffer, size_t n)> produce;
  // Or a file opened read-only (e.g. "/dev/null"), when not empty.
  std::string file;
};

// What happens to the child's standard output.
struct ToolOutput {
  // Called with each piece as it arrives; when unset, everything goes into ToolResult::out.
  std::function<void(const char* data, size_t n)> consume;
  // Close the read end of the pipe after this many bytes (a reader that leaves early).
  uint64_t close_after = UINT64_MAX;
};

// Runs argv[0] with the rest as arguments, stderr into ToolResult::err, and
// environment `env` added to the test's own. Kills it (its whole process
// group) at the deadline.
ToolResult RunTool(const std::vector<std::string>& argv, const ToolInput& input = {}, const ToolOutput& output = {},
                   milliseconds timeout = 20s, const std::vector<std::string>& env = {});

}  // namespace rot13d::clienttest
