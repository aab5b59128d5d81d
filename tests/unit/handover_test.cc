// The upgrade handover's text (supervisor/handover.h): what one image writes,
// the next reads back whole; anything cut short, malformed or of another
// format is refused before the old image executes anything.
#include "supervisor/handover.h"

#include <gtest/gtest.h>

#include "common/config.h"

namespace rot13d::supervisor {
namespace {

using namespace std::chrono_literals;

Handover Example() {
  Handover h;
  h.from_version = "1.2.3 (built with spaces, 100% tested)";
  h.stats_fd = 7;
  h.stats_slots = 4160;
  h.stats_slot_size = sizeof(WorkerStats);
  h.stats_layout = kStatsLayout;
  h.addresses_fd = 8;
  h.addresses_entries = 1 << 20;
  h.addresses_owners = 4160;
  h.addresses_layout = kAddressTableLayout;
  h.ready_fd = 5;
  h.nudge_fd = 6;
  h.activated = true;
  h.listeners = {{9, "127.0.0.1:1067", ""}, {10, "unix:/run/rot13d/a b.sock", "/run/rot13d/a b.sock"}};
  h.serving_id = 4;
  h.next_id = 6;
  h.serving_size = 2;
  h.serving_halted = true;
  h.serving_failure = "";
  WorkerRecord w;
  w.slot = 1;
  w.generation = 4;
  w.pid = 4242;
  w.state = WorkerState::kDraining;
  w.booted = true;
  w.stopped_accepting = true;
  w.started = TimePoint(123456789ns);
  w.failures = 2;
  w.boot_failures = 1;
  w.restart_at = TimePoint(5s);
  w.kill_at = TimePoint(-3ns);
  w.kill_sent = true;
  w.stats_index = 17;
  w.heartbeat = TimePoint(99ns);
  w.heartbeat_timeout = 10000ms;
  w.hung = true;
  h.workers = {w, WorkerRecord{.slot = 0, .generation = 4, .state = WorkerState::kBackoff}};
  h.retired.connections_total = 10;
  h.retired.bytes_sent = 1ull << 40;
  h.retired.closed[2] = 3;
  h.retired.duration_buckets[kDurationBuckets - 1] = 8;
  h.retired.duration_sum_us = 77;
  h.activity.reloads[0] = 5;
  h.activity.reloads[kReloadResults - 1] = 1;
  h.activity.restarts[1] = 9;
  h.activity.started_wall_ns = 1796150000123456789;
  h.activity.started_steady_ns = 42;
  h.last_reload = "failed: /etc/rot13d/rot13d.toml:3:11: 'workers' must be\na number";
  h.identity = Identity{.uid = 65534, .gid = 65534, .user = "nobody", .group = "nogroup"};
  h.requesters = {11, 12};
  h.config = FormatConfig(Config::Defaults());
  return h;
}

TEST(HandoverTest, EverythingWrittenIsReadBack) {
  Handover h = Example();
  Result<Handover> back = ParseHandover(SerializeHandover(h));
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(back->from_version, h.from_version);
  EXPECT_EQ(back->stats_fd, 7);
  EXPECT_EQ(back->stats_slots, 4160u);
  EXPECT_EQ(back->addresses_fd, 8);
  EXPECT_EQ(back->addresses_entries, 1u << 20);
  EXPECT_EQ(back->addresses_owners, 4160u);
  EXPECT_EQ(back->addresses_layout, kAddressTableLayout);
  EXPECT_EQ(back->ready_fd, 5);
  EXPECT_EQ(back->nudge_fd, 6);
  EXPECT_TRUE(back->activated);
  ASSERT_EQ(back->listeners.size(), 2u);
  EXPECT_EQ(back->listeners[1].fd, 10);
  EXPECT_EQ(back->listeners[1].name, "unix:/run/rot13d/a b.sock");
  EXPECT_EQ(back->listeners[1].owned_path, "/run/rot13d/a b.sock");
  EXPECT_EQ(back->listeners[0].owned_path, "");
  EXPECT_EQ(back->serving_id, 4u);
  EXPECT_EQ(back->next_id, 6u);
  EXPECT_EQ(back->serving_size, 2);
  EXPECT_TRUE(back->serving_halted);
  ASSERT_EQ(back->workers.size(), 2u);
  const WorkerRecord& w = back->workers[0];
  const WorkerRecord& want = h.workers[0];
  EXPECT_EQ(w.slot, want.slot);
  EXPECT_EQ(w.generation, want.generation);
  EXPECT_EQ(w.pid, want.pid);
  EXPECT_EQ(w.state, want.state);
  EXPECT_EQ(w.booted, want.booted);
  EXPECT_EQ(w.stopped_accepting, want.stopped_accepting);
  EXPECT_EQ(w.started, want.started);
  EXPECT_EQ(w.failures, want.failures);
  EXPECT_EQ(w.boot_failures, want.boot_failures);
  EXPECT_EQ(w.restart_at, want.restart_at);
  EXPECT_EQ(w.kill_at, want.kill_at);
  EXPECT_EQ(w.kill_sent, want.kill_sent);
  EXPECT_EQ(w.stats_index, want.stats_index);
  EXPECT_EQ(w.heartbeat, want.heartbeat);
  EXPECT_EQ(w.heartbeat_timeout, want.heartbeat_timeout);
  EXPECT_EQ(w.hung, want.hung);
  EXPECT_EQ(back->workers[1].state, WorkerState::kBackoff);
  EXPECT_EQ(back->workers[1].pid, 0);
  EXPECT_EQ(back->retired.connections_total, 10u);
  EXPECT_EQ(back->retired.bytes_sent, 1ull << 40);
  EXPECT_EQ(back->retired.closed[2], 3u);
  EXPECT_EQ(back->retired.duration_buckets[kDurationBuckets - 1], 8u);
  EXPECT_EQ(back->retired.duration_sum_us, 77u);
  EXPECT_EQ(back->activity.reloads[0], 5u);
  EXPECT_EQ(back->activity.reloads[kReloadResults - 1], 1u);
  EXPECT_EQ(back->activity.restarts[1], 9u);
  EXPECT_EQ(back->activity.started_wall_ns, h.activity.started_wall_ns);
  EXPECT_EQ(back->activity.started_steady_ns, 42);
  EXPECT_EQ(back->last_reload, h.last_reload);
  ASSERT_TRUE(back->identity.has_value());
  EXPECT_EQ(back->identity->uid, 65534u);
  EXPECT_EQ(back->identity->group, "nogroup");
  EXPECT_EQ(back->requesters, (std::vector<int>{11, 12}));
  EXPECT_EQ(back->config, h.config);
  EXPECT_TRUE(CheckHandover(*back));
}

TEST(HandoverTest, NoIdentityAndNoRequestersStayAbsent) {
  Handover h = Example();
  h.identity.reset();
  h.requesters.clear();
  Result<Handover> back = ParseHandover(SerializeHandover(h));
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_FALSE(back->identity.has_value());
  EXPECT_TRUE(back->requesters.empty());
}

// What an upgrade relies on: the serving configuration goes over as
// --check-config prints it, and comes back the same.
TEST(HandoverTest, TheRunningConfigurationSurvivesAsText) {
  ConfigLoad load = ParseConfig(
      "listen = [\"127.0.0.1:1067\", \"[::1]:1068\", \"unix:/run/x y.sock\",\n"
      "          { address = \"127.0.0.2:1069\", proxy_protocol = \"v2\" }]\n"
      "proxy_trusted = [\"10.0.0.0/8\", \"::1/128\"]\nproxy_header_timeout = 4\n"
      "workers = 3\nbuffer_size = 4096\nidle_timeout = 0.25\nshutdown_timeout = 0\n"
      "log_level = \"debug\"\nsocket_mode = \"0600\"\nheartbeat_timeout = 2.5\n"
      "admin_listen = [\"127.0.0.1:9100\"]\nconnection_log = \"errors\"\nuser = \"root\"\n",
      "test.toml");
  ASSERT_TRUE(load.config) << load.errors.front().ToString();
  std::string text = FormatConfig(*load.config);
  ConfigLoad again = ParseConfig(text, "(the running configuration)");
  ASSERT_TRUE(again.config) << again.errors.front().ToString() << "\n" << text;
  EXPECT_EQ(FormatConfig(*again.config), text);
  EXPECT_EQ(again.config->idle_timeout, std::chrono::milliseconds(250));
  EXPECT_EQ(again.config->heartbeat_timeout, std::chrono::milliseconds(2500));
  EXPECT_EQ(again.config->listen, load.config->listen);
  EXPECT_EQ(again.config->admin_listen, load.config->admin_listen);
}

TEST(HandoverTest, AnotherFormatIsRefused) {
  std::string text = SerializeHandover(Example());
  std::string newer = "rot13d-handover 2" + text.substr(text.find('\n'));
  Result<Handover> back = ParseHandover(newer);
  ASSERT_FALSE(back);
  EXPECT_NE(back.error().message().find("handover format 2 (this binary reads format 1)"), std::string::npos)
      << back.error().message();
  EXPECT_FALSE(ParseHandover(""));
  EXPECT_FALSE(ParseHandover("#!/bin/sh\nexit 1\n"));
  EXPECT_FALSE(ParseHandover("rot13d-handover x\n"));
}

TEST(HandoverTest, TextCutShortAnywhereIsRefused) {
  std::string text = SerializeHandover(Example());
  for (size_t n = 0; n < text.size(); ++n) {
    EXPECT_FALSE(ParseHandover(text.substr(0, n))) << "accepted the first " << n << " of " << text.size() << " bytes";
  }
}

TEST(HandoverTest, MalformedRecordsAreRefusedWithTheirLine) {
  std::string text = SerializeHandover(Example());
  size_t at = text.find("\nworker ");
  ASSERT_NE(at, std::string::npos);
  std::string bad = text.substr(0, at) + "\nworker 1 x" + text.substr(text.find('\n', at + 1));
  Result<Handover> back = ParseHandover(bad);
  ASSERT_FALSE(back);
  EXPECT_NE(back.error().message().find("malformed 'worker' record"), std::string::npos) << back.error().message();
}

TEST(HandoverTest, UnknownRecordsAndExtraValuesOfANewerImageAreSkipped) {
  std::string text = SerializeHandover(Example());
  size_t at = text.find("\nretired ");
  ASSERT_NE(at, std::string::npos);
  std::string with = text.substr(0, at) + "\nsomething_new 1 2 3" + text.substr(at);
  Result<Handover> back = ParseHandover(with);
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(back->retired.connections_total, 10u);
  // A counted array with more values than this image knows: the known ones kept.
  Handover h;
  h.stats_fd = h.ready_fd = h.nudge_fd = 3;
  std::string activity = "activity 1 2 " + std::to_string(kReloadResults + 2);
  for (size_t i = 0; i < kReloadResults + 2; ++i) activity += " " + std::to_string(i + 1);
  activity += " 0";
  std::string minimal = "rot13d-handover 1\nstats 3 1 1 1\nready 3\nnudge 3\n" + activity + "\nconfig 0\n";
  back = ParseHandover(minimal);
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(back->activity.reloads[kReloadResults - 1], kReloadResults);
  EXPECT_EQ(back->addresses_fd, -1) << "an image without per-address counts hands over none";
}

TEST(HandoverTest, ACounterTableOfAnotherLayoutCannotBeAdopted) {
  Handover h = Example();
  h.stats_layout = kStatsLayout + 1;
  EXPECT_FALSE(CheckHandover(h));
  h = Example();
  h.stats_slot_size = sizeof(WorkerStats) + 64;
  Status s = CheckHandover(h);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message().find("-byte slots"), std::string::npos);
  h = Example();
  h.workers[0].stats_index = static_cast<int>(h.stats_slots);
  EXPECT_FALSE(CheckHandover(h));
  h = Example();
  h.addresses_layout = kAddressTableLayout + 1;
  EXPECT_FALSE(CheckHandover(h));
  h.addresses_fd = -1;  // none handed over: a new table is made
  EXPECT_TRUE(CheckHandover(h));
}

}  // namespace
}  // namespace rot13d::supervisor
