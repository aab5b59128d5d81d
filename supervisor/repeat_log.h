// Log lines that may repeat without end (worker deaths in a crash loop, stray
// signals): the first few of a kind in a window are logged, the rest counted
// and told as one summary line when the window closes.
#pragma once

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

}  // namespace rot13d::supervisor
