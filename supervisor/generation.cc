#include "supervisor/generation.h"

#include <algorithm>

#include "common/log.h"

namespace rot13d::supervisor {

std::optional<std::string> Generation::RecordBootFailure(TimePoint now) {
  if (!boot_failures.Record(now, config.crash_loop_failures, config.crash_loop_window)) return std::nullopt;
  return "crash loop: generation " + std::to_string(id) + " had " + Count(boot_failures.count(), "boot failure") +
         " within " + std::to_string(config.crash_loop_window.count()) +
         " ms; forking at most one of its workers per second";
}

Generation& Generations::StartCanary(const Config& config, int size, TimePoint deadline) {
  canary_.emplace();
  canary_->id = next_id_++;
  canary_->config = config;
  canary_->size = size;
  canary_->deadline = deadline;
  return *canary_;
}

bool Generations::PromoteCanary() {
  bool first = serving_.id == 0;
  serving_ = std::move(*canary_);
  canary_.reset();
  return first;
}

Generation Generations::AbandonCanary() {
  Generation g = std::move(*canary_);
  canary_.reset();
  return g;
}

void Generations::Resume(Generation serving, uint64_t next_id) {
  serving_ = std::move(serving);
  canary_.reset();
  next_id_ = std::max(next_id, serving_.id + 1);
}

std::vector<const Config*> Generations::ConfigsInForce() const {
  std::vector<const Config*> in_force{&serving_.config};
  if (canary_) in_force.push_back(&canary_->config);
  return in_force;
}

void Generations::Describe(SupervisorView* v, TimePoint now, milliseconds governed_fork_interval) const {
  v->serving_generation = serving_.id;
  v->serving_halted = serving_.halted;
  if (auto next = serving_.NextGovernedFork(now, governed_fork_interval)) v->next_governed_fork[serving_.id] = *next;
  if (!canary_) return;
  v->canary_generation = canary_->id;
  v->canary_size = canary_->size;
  v->canary_deadline = canary_->deadline;
  v->canary_halted = canary_->halted;
  if (auto next = canary_->NextGovernedFork(now, governed_fork_interval)) v->next_governed_fork[canary_->id] = *next;
}

}  // namespace rot13d::supervisor
