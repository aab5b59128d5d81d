#include "supervisor/repeat_log.h"

namespace rot13d::supervisor {

bool RepeatLog::Admit(const std::string& key, LogLevel level, const std::string& subject, TimePoint now) {
  if (filter_.Admit(key, now)) return true;
  subjects_[key] = {level, subject};
  return false;
}

void RepeatLog::Flush(TimePoint now) {
  for (const RepeatFilter::Summary& summary : filter_.Flush(now)) {
    auto it = subjects_.find(summary.key);
    if (it == subjects_.end()) continue;
    auto seconds = std::chrono::duration_cast<std::chrono::seconds>(filter_.window()).count();
    Log(it->second.first, it->second.second + ": " + Count(summary.suppressed, "more time") + " within " +
                              std::to_string(seconds) + " s (repeated messages suppressed)");
    subjects_.erase(it);
  }
}

void StraySignalLog::Report(const signalfd_siginfo& si, TimePoint now) {
  std::string name = SignalName(static_cast<int>(si.ssi_signo));
  if (!log_.Admit(name, LogLevel::kWarning, "ignored " + name, now)) return;
  Log(LogLevel::kWarning, "ignoring unexpected " + name + " from pid " + std::to_string(si.ssi_pid) + " (uid " +
                              std::to_string(si.ssi_uid) + "); repeats within " +
                              std::to_string(kWindow.count() / 1000) + " s are counted",
      {{"SIGNAL", name}, {"SENDER_PID", std::to_string(si.ssi_pid)}});
}

}  // namespace rot13d::supervisor
