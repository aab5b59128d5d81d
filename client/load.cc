#include "client/load.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>

#include "client/load_worker.h"

namespace rot13d::client {
namespace {

void Notify(BorrowedFd event) {
  uint64_t one = 1;
  (void)!write(event.get(), &one, sizeof one);
}

// The earlier of two optional failures.
void KeepFirst(std::optional<Failure>& first, const std::optional<Failure>& other) {
  if (other && (!first || other->at < first->at)) first = other;
}

}  // namespace

std::string FormatByte(int byte) {
  if (byte < 0) return "none";
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%02x", byte & 0xff);
  return buf;
}

std::string MismatchReport::ToString() const {
  std::string where = "connection " + std::to_string(connection);
  if (request > 0) where += ", message " + std::to_string(request);
  where += ", byte " + std::to_string(offset);
  if (got < 0) return where + ": the server closed the connection; expected " + FormatByte(expected);
  if (expected < 0) return where + ": got " + FormatByte(got) + " beyond the end of the answer";
  return where + ": expected " + FormatByte(expected) + ", got " + FormatByte(got);
}

uint64_t LoadStats::total_failures() const {
  uint64_t n = 0;
  for (uint64_t f : failures) n += f;
  return n;
}

void LoadStats::Add(const LoadStats& o) {
  sessions_started += o.sessions_started;
  sessions_completed += o.sessions_completed;
  requests += o.requests;
  request_bytes += o.request_bytes;
  bytes_sent += o.bytes_sent;
  bytes_verified += o.bytes_verified;
  for (size_t k = 0; k < kFailureKinds; ++k) failures[k] += o.failures[k];
  closed_early += o.closed_early;
}

std::string LoadStats::Summary() const {
  auto n = [](uint64_t v) { return std::to_string(v); };
  return "sessions " + n(sessions_started) + " started / " + n(sessions_completed) + " completed, " +
         n(bytes_verified) + " bytes verified, " + n(requests) + " requests; refused " +
         n(Failures(FailureKind::kRefused)) + ", reset " + n(Failures(FailureKind::kReset)) + ", timeout " +
         n(Failures(FailureKind::kTimeout)) + ", closed early " + n(closed_early) + ", wrong answers " +
         n(wrong_answers()) + ", other " + n(Failures(FailureKind::kOther));
}

LoadEngine::LoadEngine(LoadOptions options)
    : options_(std::move(options)), pattern_(options_.expect), shared_(std::make_unique<LoadShared>()) {
  shared_->options = &options_;
  shared_->pattern = &pattern_;
  shared_->budget = static_cast<int64_t>(std::min<uint64_t>(options_.budget, INT64_MAX));
}

LoadEngine::~LoadEngine() { Stop(); }

Status LoadEngine::Start() {
  if (!workers_.empty()) return Err() << "the load was started before";
  stop_event_.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  done_event_.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!stop_event_ || !done_event_) return ErrnoErr() << "eventfd";
  shared_->stop_event = stop_event_.borrow();
  shared_->start = LoadClock::now();
  if (options_.duration) shared_->end = shared_->start + *options_.duration;
  uint32_t count = std::max(1u, std::min(options_.threads, options_.connections));
  for (uint32_t t = 0; t < count; ++t) {
    std::vector<uint32_t> ids;
    for (uint32_t id = t; id < options_.connections; id += count) ids.push_back(id);
    workers_.push_back(std::make_unique<LoadWorker>(*shared_, std::move(ids), options_.seed * 0x9E3779B97F4A7C15ull + t));
  }
  running_ = count;
  for (auto& w : workers_) {
    threads_.emplace_back([this, worker = w.get()] {
      worker->Run();
      if (running_.fetch_sub(1) == 1) Notify(done_event_.borrow());
    });
  }
  return OkStatus();
}

void LoadEngine::Stop() {
  if (!shared_->stop.exchange(true) && stop_event_) Notify(stop_event_.borrow());
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
}

BorrowedFd LoadEngine::done_event() const { return done_event_.borrow(); }

bool LoadEngine::WaitDone(std::chrono::milliseconds timeout) const {
  if (!done_event_) return false;
  auto deadline = LoadClock::now() + timeout;
  while (true) {
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - LoadClock::now()).count();
    pollfd p{done_event_.get(), POLLIN, 0};
    int n = poll(&p, 1, static_cast<int>(std::clamp<int64_t>(left, 0, 60'000)));
    if (n > 0) return true;
    if ((n == 0 && left <= 0) || (n < 0 && errno != EINTR)) return false;
  }
}

LoadStats LoadEngine::Stats() const {
  LoadStats out;
  for (const auto& w : workers_) w->Read([&](const LoadTally& t) { out.Add(t.stats); });
  return out;
}

Histogram LoadEngine::Latency() const {
  Histogram out;
  for (const auto& w : workers_) w->Read([&](const LoadTally& t) { out.Merge(t.latency); });
  return out;
}

std::vector<Failure> LoadEngine::Failures() const {
  std::vector<Failure> out;
  for (const auto& w : workers_) {
    w->Read([&](const LoadTally& t) { out.insert(out.end(), t.failures.begin(), t.failures.end()); });
  }
  std::stable_sort(out.begin(), out.end(), [](const Failure& a, const Failure& b) { return a.at < b.at; });
  return out;
}

std::optional<Failure> LoadEngine::FirstFailure() const {
  std::optional<Failure> out;
  for (const auto& w : workers_) w->Read([&](const LoadTally& t) { KeepFirst(out, t.first); });
  return out;
}

std::optional<Failure> LoadEngine::FirstMismatch() const {
  std::optional<Failure> out;
  for (const auto& w : workers_) w->Read([&](const LoadTally& t) { KeepFirst(out, t.first_mismatch); });
  return out;
}

std::vector<uint16_t> LoadEngine::ServedPorts() const {
  std::vector<uint16_t> out;
  for (const auto& w : workers_) w->AddServedPorts(out);
  return out;
}

LoadClock::duration LoadEngine::Elapsed() const {
  if (workers_.empty()) return {};
  LoadClock::time_point end = shared_->start;
  for (const auto& w : workers_) {
    LoadClock::time_point e = w->Read([](const LoadTally& t) { return t.end.value_or(LoadClock::now()); });
    end = std::max(end, std::min(e, shared_->end));
  }
  return end - shared_->start;
}

}  // namespace rot13d::client
