#include "common/log.h"

#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace rot13d {
namespace {

struct LogState {
  LogLevel min_level = LogLevel::kInfo;
  bool journal = false;
  bool timestamps = true;
};

LogState& State() {
  static LogState state;
  return state;
}

void WriteAll(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::write(fd, s.data() + off, s.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // nowhere left to report a logging failure
    off += static_cast<size_t>(n);
  }
}

}  // namespace

const char* LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kError: return "error";
    case LogLevel::kWarning: return "warning";
    case LogLevel::kNotice: return "notice";
    case LogLevel::kInfo: return "info";
    case LogLevel::kDebug: return "debug";
  }
  return "?";
}

const char* LogTargetName(LogTarget target) {
  switch (target) {
    case LogTarget::kAuto: return "auto";
    case LogTarget::kStderr: return "stderr";
    case LogTarget::kJournal: return "journal";
  }
  return "?";
}

std::string Count(unsigned long long n, std::string_view noun) {
  return std::to_string(n) + " " + std::string(noun) + (n == 1 ? "" : "s");
}

bool StderrIsJournal() {
  const char* env = std::getenv("JOURNAL_STREAM");
  if (!env) return false;
  unsigned long long dev = 0, ino = 0;
  if (std::sscanf(env, "%llu:%llu", &dev, &ino) != 2) return false;
  struct stat st {};
  if (fstat(STDERR_FILENO, &st) != 0) return false;
  return st.st_dev == dev && st.st_ino == ino;
}

void ConfigureLogging(LogLevel min_level, LogTarget target) {
  LogState& s = State();
  s.min_level = min_level;
  bool stderr_is_journal = StderrIsJournal();
  s.journal = target == LogTarget::kJournal || (target == LogTarget::kAuto && stderr_is_journal);
  s.timestamps = !stderr_is_journal;  // the journal stamps lines itself
}

bool LogEnabled(LogLevel level) { return static_cast<int>(level) <= static_cast<int>(State().min_level); }

void Log(LogLevel level, std::string_view message, std::span<const LogField> fields) {
  if (!LogEnabled(level)) return;
  const LogState& s = State();
  if (s.journal) {
    std::vector<std::string> parts;
    parts.reserve(3 + fields.size());
    parts.push_back("MESSAGE=" + std::string(message));
    parts.push_back("PRIORITY=" + std::to_string(static_cast<int>(level)));
    parts.push_back("SYSLOG_IDENTIFIER=rot13d");
    for (const LogField& f : fields) parts.push_back(std::string(f.key) + "=" + f.value);
    std::vector<iovec> iov;
    iov.reserve(parts.size());
    for (std::string& p : parts) iov.push_back({p.data(), p.size()});
    if (sd_journal_sendv(iov.data(), static_cast<int>(iov.size())) >= 0) return;
    // Journal unreachable: fall through to stderr rather than lose the event.
  }
  std::string line;
  if (s.timestamps) {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    tm local{};
    localtime_r(&ts.tv_sec, &local);
    char buf[40];
    // Local time with its offset from UTC, so lines from hosts in other
    // zones (or from before a DST change) still compare.
    char zone[8];
    size_t n = strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &local);
    if (strftime(zone, sizeof zone, "%z", &local) == 0) zone[0] = '\0';
    std::snprintf(buf + n, sizeof buf - n, ".%03ld%s ", ts.tv_nsec / 1000000, zone);
    line += buf;
  }
  line += "rot13d[" + std::to_string(getpid()) + "] " + LogLevelName(level) + ": ";
  line += message;
  line += '\n';
  WriteAll(STDERR_FILENO, line);
}

void Log(LogLevel level, std::string_view message, std::initializer_list<LogField> fields) {
  Log(level, message, std::span<const LogField>(fields.begin(), fields.size()));
}

}  // namespace rot13d
