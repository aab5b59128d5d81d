// Log lines that may repeat without end (worker deaths in a crash loop, stray
// signals): the first few of a kind in a window are logged, the rest counted
// and told as one summary line when the window closes.
#pragma once

#include <sys/signalfd.h>

#include <map>
#include <string>

#include "common/log.h"
#include "supervisor/planner.h"

namespace rot13d::supervisor {

class RepeatLog {
 public:
  RepeatLog(milliseconds window, uint64_t burst) : filter_(window, burst) {}
  // True: log this line now. False: it was counted; `subject` (with `level`)
  // opens the summary, e.g. "worker of generation 2: killed by SIGSEGV".
  bool Admit(const std::string& key, LogLevel level, const std::string& subject, TimePoint now);
  // Logs the summaries of windows closed by `now`.
  void Flush(TimePoint now);

 private:
  RepeatFilter filter_;
  std::map<std::string, std::pair<LogLevel, std::string>> subjects_;
};

// Signals rot13d has no use for (SIGALRM from a stray alarm(1), SIGTTIN from
// a shell, SIGRTMIN+2...) are ignored, and said once per signal per minute.
class StraySignalLog {
 public:
  void Report(const signalfd_siginfo& si, TimePoint now);
  void Flush(TimePoint now) { log_.Flush(now); }

 private:
  static constexpr milliseconds kWindow{60000};
  RepeatLog log_{kWindow, 1};
};

}  // namespace rot13d::supervisor
