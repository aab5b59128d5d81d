// Logging: one call per event, to the journal with structured fields or as a line on stderr.
#pragma once

#include <initializer_list>
#include <span>
#include <string>
#include <string_view>

namespace rot13d {

// Values are syslog priorities, as the journal's PRIORITY= field wants them.
enum class LogLevel { kError = 3, kWarning = 4, kNotice = 5, kInfo = 6, kDebug = 7 };
enum class LogTarget { kAuto, kStderr, kJournal };

const char* LogLevelName(LogLevel level);
const char* LogTargetName(LogTarget target);

// A structured journal field, e.g. {"WORKER_PID", "812"}. Keys are upper case.
struct LogField {
  std::string_view key;
  std::string value;
};

// kAuto picks the journal when stderr is the journal stream systemd gave us
// (JOURNAL_STREAM matches fd 2's device and inode), stderr otherwise.
void ConfigureLogging(LogLevel min_level, LogTarget target);
bool LogEnabled(LogLevel level);
void Log(LogLevel level, std::string_view message, std::initializer_list<LogField> fields = {});
void Log(LogLevel level, std::string_view message, std::span<const LogField> fields);

// "1 worker", "3 workers": counts in log messages read as English.
std::string Count(unsigned long long n, std::string_view noun);

// Whether fd 2 is the stream named by JOURNAL_STREAM.
bool StderrIsJournal();

}  // namespace rot13d
