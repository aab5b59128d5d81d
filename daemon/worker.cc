#include "daemon/worker.h"

#include <malloc.h>
#include <sys/epoll.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include "common/capabilities.h"
#include "common/exit_codes.h"
#include "common/log.h"
#include "common/proctitle.h"
#include "common/proxy_protocol.h"
#include "daemon/accept_balance.h"
#include "daemon/connection.h"
#include "daemon/connection_log.h"
#include "daemon/drain_signal.h"

namespace rot13d::daemon {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr uint64_t kListenerTag = 1ull << 62;
constexpr uint64_t kSignalTag = 1ull << 61;
constexpr uint64_t kNudgeTag = 1ull << 60;
constexpr int kAcceptBatch = 64;
// What a worker that starts to drain takes at most from each listener's queue: 65,536.
constexpr int kDrainBatches = 1024;
// After EMFILE/ENFILE, stop accepting for this long instead of spinning on a
// listener that stays readable (accept(2) leaves the connection queued).
constexpr milliseconds kAcceptPauseOnExhaustion{250};
constexpr std::chrono::seconds kExhaustionLogInterval{10};
// What the connection log says of a connection max_connections_per_address refused.
constexpr const char* kPerAddressRefusal = "over max_connections_per_address";
// Workers serve the same listeners when they hold the same socket inodes
// (shared across fork); the key names that set, so a worker balances only
// against siblings that can take the connections it leaves.
uint64_t ListenerKey(const std::vector<UniqueFd>& listeners) {
  std::vector<std::pair<uint64_t, uint64_t>> ids;
  for (const UniqueFd& l : listeners) {
    struct stat st{};
    if (fstat(l.get(), &st) == 0) ids.emplace_back(st.st_dev, st.st_ino);
  }
  std::sort(ids.begin(), ids.end());
  uint64_t key = 14695981039346656037ull;  // FNV-1a
  for (auto [dev, ino] : ids) {
    for (uint64_t word : {dev, ino}) key = (key ^ word) * 1099511628211ull;
  }
  return key == 0 ? 1 : key;
}

bool IsTcp(BorrowedFd listener) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  return getsockname(listener.get(), reinterpret_cast<sockaddr*>(&ss), &len) == 0 &&
         (ss.ss_family == AF_INET || ss.ss_family == AF_INET6);
}

struct SocketIo {
  int fd;
  ssize_t Recv(uint8_t* buf, size_t n) { return ::recv(fd, buf, n, 0); }
  ssize_t Send(const uint8_t* buf, size_t n) { return ::send(fd, buf, n, MSG_NOSIGNAL); }
};

// Where a connection stands with the PROXY protocol.
enum class ProxyStage : uint8_t {
  kNone,      // a plain listener's, or a header that said to use the real endpoints
  kAwaiting,  // its header is not complete yet: nothing is answered
  kProxied,   // its header named the client (Worker::proxy_ holds what it said)
};

struct Connection {
  UniqueFd fd;
  ConnectionEngine engine;
  Interest registered;
  ProxyStage proxy = ProxyStage::kNone;  // in padding: the size is unchanged
  // Where max_connections_per_address counts it (AddressTable::kNoEntry: nowhere). In padding too.
  uint32_t address_entry = AddressTable::kNoEntry;
  Clock::time_point last_active;
  Clock::time_point accepted;  // for the connection-duration histogram
  // Intrusive list in order of last activity, oldest first, for the idle sweep.
  Connection* prev = nullptr;
  Connection* next = nullptr;
  // For the connection log. What went out needs no counter of its own: every
  // byte read is sent or still pending (or, on a failed send, lost at the
  // close: see OnConnectionEvent).
  uint64_t bytes_in = 0;
};
// 88 bytes: the same 96-byte malloc chunk as the 80 it took before bytes_in,
// so an idle connection costs no more.
static_assert(sizeof(Connection) <= 88, "keep an idle connection in glibc's 96-byte malloc chunk");

// An intrusive list of connections, oldest first.
struct ConnectionList {
  Connection* oldest = nullptr;
  Connection* newest = nullptr;

  void Append(Connection* c) {
    c->prev = newest;
    c->next = nullptr;
    if (newest) newest->next = c; else oldest = c;
    newest = c;
  }
  void Remove(Connection* c) {
    if (c->prev) c->prev->next = c->next; else oldest = c->next;
    if (c->next) c->next->prev = c->prev; else newest = c->prev;
    c->prev = c->next = nullptr;
  }
};

// The PROXY side of a connection on a PROXY listener, kept apart so that a
// plain listener's connections cost nothing more.
struct ProxyState {
  std::unique_ptr<ProxyHeaderParser> parser;  // until the header is complete
  std::unique_ptr<ProxyHeader> header;        // then, if it named the client
};

ProxyVersions VersionsOf(ProxyProtocol p) {
  switch (p) {
    case ProxyProtocol::kV1: return ProxyVersions::kV1;
    case ProxyProtocol::kV2: return ProxyVersions::kV2;
    default: return ProxyVersions::kAny;
  }
}

class Worker {
 public:
  explicit Worker(WorkerParams p)
      : p_(std::move(p)), scratch_(std::make_unique_for_overwrite<uint8_t[]>(p_.buffer_size)) {}

  int Run();

 private:
  // kExitOk once accepting, else the exit code that tells the supervisor why not.
  int Boot();
  static int BootFailed(const Error& e);
#ifdef ROT13D_TEST_HOOKS
  static int TestHookFailBoot();
#endif
  Status OpenLoop();
  bool OnEvent(const epoll_event& event);
  bool AfterEvents(bool nudged);
  void MaybeTrimHeap(bool idle_turn);
  void AcceptEverywhere();
  // Takes what waits on listener `index`, a batch at most; unbalanced: whatever the siblings hold.
  // True when it took a whole batch and more may be queued.
  bool Accept(size_t index, bool balanced = true);
  void RescueBacklog();
  void ReportExhaustion(int error);
  void AddConnection(UniqueFd fd, bool tcp, ProxyProtocol proxy, uint32_t address_entry);
  // max_connections_per_address: whether a connection from `peer` may open;
  // where it is counted goes to `entry`.
  bool LimitingAddresses() const { return p_.addresses && p_.max_connections_per_address > 0; }
  bool AdmitAddress(const sockaddr* peer, socklen_t len, uint32_t* entry);
  void RefuseAtAccept(UniqueFd fd);
  void OnConnectionEvent(Connection* c, uint32_t events);
  // PROXY listeners: the header before anything else.
  bool Trusted(const sockaddr_storage& peer) const;
  void OnHeaderEvent(Connection* c);
  void HeaderDone(Connection* c, std::span<uint8_t> rest);
  bool AdmitAfterHeader(Connection* c);
  void FailHeader(Connection* c, ProxyFailure failure, const char* detail);
  void SweepHeaders(Clock::time_point now);
  // `undelivered`: bytes read and not sent; between events, what is pending.
  // `note`: why its PROXY header failed, for the connection log.
  // `refused`: why it was refused, for the connection log.
  void CloseConnection(Connection* c, CloseReason reason, uint64_t undelivered, ProxyNote note = {},
                       const char* refused = nullptr);
  void CloseConnection(Connection* c, CloseReason reason) { CloseConnection(c, reason, c->engine.pending_size()); }
  void Touch(Connection* c);
  ConnectionList& ListOf(const Connection* c) { return c->proxy == ProxyStage::kAwaiting ? awaiting_ : active_; }
  bool UpdateInterest(Connection* c);
  Status SetAccepting(bool on);
  void StopAccepting() { (void)SetAccepting(false); }  // stopping cannot fail
  // Whether the balance holds this worker back, here and in its slot for the siblings.
  void SetHeld(bool held) {
    balance_held_ = held;
    p_.stats->held.store(held ? 1 : 0, std::memory_order_relaxed);
  }
  void ReconsiderAccepting();
  void NudgeSiblings();
  bool BalanceAllowsAccepting() { return balance_.Allows(static_cast<uint32_t>(open_), accepting_, now_); }
  void StartDrain();
  void CutAtShutdown();
  void OnSignal();
  void SweepIdle(Clock::time_point now);
  int NextTimeoutMs(Clock::time_point now) const;
  void Heartbeat();
  void WakeSupervisor();

  WorkerParams p_;
  std::unique_ptr<uint8_t[]> scratch_;
  UniqueFd epoll_;
  UniqueFd signals_;
  std::vector<std::unique_ptr<Connection>> by_fd_;
  ConnectionList active_;    // by last activity: the idle sweep
  ConnectionList awaiting_;  // PROXY headers not complete, by accept time: their timeout
  std::unordered_map<int, ProxyState> proxy_;  // by fd: connections of PROXY listeners
  int open_ = 0;
  bool accepting_ = false;  // listeners registered in epoll
  bool balance_held_ = false;  // not accepting only because siblings have fewer connections
  bool watch_failing_ = false;  // the last SetAccepting(true) failed (logged once)
  uint64_t listener_key_ = 0;
  AcceptBalance balance_{p_.stats, p_.all_stats, p_.all_stats_count};
  std::vector<bool> listener_is_tcp_;  // per listener: its connections get TCP_NODELAY
  std::vector<ProxyProtocol> listener_proxy_;  // per listener
  // Taken once per loop turn, after epoll_wait: the time of every event in it.
  Clock::time_point now_{};
  bool draining_ = false;
  // Draining on the supervisor's request: when to close what is still open,
  // just before its SIGKILL (see daemon/drain_signal.h).
  std::optional<Clock::time_point> cut_at_;
  bool quit_ = false;
  ConnectionLogger connection_log_{p_.connection_log};
  Clock::time_point accept_paused_until_{};
  Clock::time_point last_tick_{};
  // Connections closed since the heap was last given back (MaybeTrimHeap).
  bool heap_to_trim_ = false;
  Clock::time_point last_trim_{};
  Clock::time_point last_exhaustion_log_{};
  uint64_t exhaustion_count_ = 0;
  Clock::time_point last_uncounted_log_{};
};

int Worker::Boot() {
#ifdef ROT13D_TEST_HOOKS
  if (int code = TestHookFailBoot(); code != kExitOk) return code;
#endif
  // Die with the supervisor; the getppid check closes the race with a parent
  // that died before prctl ran (prctl(2), PR_SET_PDEATHSIG).
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) return BootFailed(ErrnoErr() << "prctl(PR_SET_PDEATHSIG)");
  if (getppid() != p_.supervisor_pid) return BootFailed(Err() << "the supervisor exited before the worker started");
  // Tells workers from the supervisor in ps and top; cosmetic, so unchecked.
  (void)prctl(PR_SET_NAME, "rot13d-worker");
  if (!p_.title.empty()) SetProcTitle(p_.title + ")");
  if (Status s = OpenLoop(); !s) return BootFailed(s.error());
  listener_key_ = ListenerKey(p_.listeners);
  for (const UniqueFd& l : p_.listeners) listener_is_tcp_.push_back(IsTcp(l.borrow()));
  listener_proxy_ = p_.listener_proxy;
  listener_proxy_.resize(p_.listeners.size(), ProxyProtocol::kOff);
  p_.stats->listener_key.store(listener_key_, std::memory_order_relaxed);
  now_ = Clock::now();
  if (Status s = SetAccepting(true); !s) return BootFailed(s.error());
  Heartbeat();
  p_.stats->SetPhase(WorkerPhase::kAccepting);  // release: the fields above are visible with it
  balance_.Start(listener_key_, now_);
  WakeSupervisor();
  return kExitOk;
}

#ifdef ROT13D_TEST_HOOKS
// Test builds only (the rot13d_testhooks binary): a worker fails to boot
// while the file named by ROT13D_TEST_FAIL_BOOT_FILE exists, so the tests can
// drive the supervisor's give-up and canary paths with a real boot failure:
// "cannot boot" (exit 4) when the file is empty, a crash at boot (exit 1)
// when it says "crash".
int Worker::TestHookFailBoot() {
  const char* path = std::getenv("ROT13D_TEST_FAIL_BOOT_FILE");
  if (!path || access(path, F_OK) != 0) return kExitOk;
  std::string text;
  std::getline(std::ifstream(path), text);
  if (text.starts_with("crash")) _exit(kExitFailure);
  return BootFailed(Err() << "test hook: " << path << " exists");
}
#endif

// The signalfd and the shared doorbell in a new epoll set.
Status Worker::OpenLoop() {
  auto signals = OpenSignalFd(WorkerSignals());
  if (!signals) return signals.error();
  signals_ = std::move(*signals);
  epoll_.reset(epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_) return ErrnoErr() << "epoll_create1";
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kSignalTag;
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, signals_.get(), &ev) != 0) return ErrnoErr() << "epoll_ctl(signalfd)";
  if (p_.nudge_fd.valid()) {
    ev.events = EPOLLIN | EPOLLET;  // every write is an edge; nobody reads it
    ev.data.u64 = kNudgeTag;
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, p_.nudge_fd.get(), &ev) != 0) {
      return ErrnoErr() << "epoll_ctl(nudge eventfd)";
    }
  }
  return OkStatus();
}

// Lacking descriptors or memory may pass; anything else will not.
int Worker::BootFailed(const Error& e) {
  Log(LogLevel::kError, "worker cannot boot: " + e.ToString());
  switch (e.errno_value()) {
    case EMFILE:
    case ENFILE:
    case ENOMEM:
    case ENOBUFS:
    case ENOSPC:  // epoll's max_user_watches
    case EAGAIN: return kExitBootShortage;
    default: return kExitCannotBoot;
  }
}

// The supervisor reads phases from shared memory; this tells it to look now.
// An eventfd write fails only when its counter would overflow (EAGAIN), and
// then it is already readable: the supervisor wakes either way.
void Worker::WakeSupervisor() {
  uint64_t one = 1;
  if (p_.ready_fd.valid()) (void)!write(p_.ready_fd.get(), &one, sizeof one);
}

// steady_clock is CLOCK_MONOTONIC, what the supervisor reads the heartbeat as.
void Worker::Heartbeat() {
  p_.stats->heartbeat_ns.store(std::chrono::duration_cast<std::chrono::nanoseconds>(now_.time_since_epoch()).count(),
                               std::memory_order_relaxed);
}

// All or nothing: a listener that could not be watched leaves none watched
// (a watched listener whose events are ignored would spin the loop). A failure
// to start watching is returned; the loop tries again at its next turn.
Status Worker::SetAccepting(bool on) {
  if (on == accepting_) return OkStatus();
  for (size_t i = 0; i < p_.listeners.size(); ++i) {
    int fd = p_.listeners[i].get();
    if (on) {
      // EPOLLEXCLUSIVE: a new connection wakes one waiting worker, not all.
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLEXCLUSIVE;
      ev.data.u64 = kListenerTag | i;
      if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
        Error e = ErrnoErr() << "watching listener " << i << " (epoll_ctl)";
        for (size_t j = 0; j < i; ++j) (void)epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, p_.listeners[j].get(), nullptr);
        return e;
      }
    } else {
      // EPOLLEXCLUSIVE entries cannot be modified, only removed (epoll_ctl(2)).
      // Removing one we added cannot fail; a closed one has left by itself.
      (void)epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
    }
  }
  accepting_ = on;
  p_.stats->accepting.store(on ? 1 : 0, std::memory_order_relaxed);
  return OkStatus();
}

// Wakes every worker of the generation (this one too): a held one looks again.
// A write to the eventfd cannot fail but by overflow (see WakeSupervisor).
void Worker::NudgeSiblings() {
  if (!p_.nudge_fd.valid()) return;
  uint64_t one = 1;
  (void)!write(p_.nudge_fd.get(), &one, sizeof one);
}

void Worker::ReconsiderAccepting() {
  bool want = !draining_ && open_ < p_.max_connections && now_ >= accept_paused_until_;
  bool stepping_back = accepting_ && !balance_held_;
  SetHeld(want && !BalanceAllowsAccepting());
  stepping_back = stepping_back && balance_held_;
  Status s = SetAccepting(want && !balance_held_);
  // Stepping back for a sibling that is held too: it must look again now,
  // and see this worker's slot say it no longer accepts.
  if (stepping_back) NudgeSiblings();
  if (!s) {
    // The epoll set is full (fs.epoll.max_user_watches) or memory is short:
    // the siblings accept meanwhile, and the next turn tries again.
    if (!watch_failing_) Log(LogLevel::kError, "worker cannot accept for now: " + s.error().ToString());
    watch_failing_ = true;
  } else {
    watch_failing_ = false;
  }
}

bool Worker::Accept(size_t index, bool balanced) {
  for (int i = 0; i < kAcceptBatch && (accepting_ || !balanced); ++i) {
    if (open_ >= p_.max_connections) {
      // Leave further connections in the backlog for a worker with room
      // (full, it is not held by the balance: a nudge would not bring it back).
      SetHeld(false);
      StopAccepting();
      return false;
    }
    // While draining, this takes what the kernel already queued for us.
    if (balanced && !draining_ && !BalanceAllowsAccepting()) {
      SetHeld(true);
      StopAccepting();
      // More are likely queued (the one that woke us, at least), and only a
      // nudge wakes a sibling for them: one held back may take them now.
      NudgeSiblings();
      return false;
    }
    const ProxyProtocol proxy = listener_proxy_[index];
    // Only a PROXY listener needs the peer now: to check it may send a header.
    sockaddr_storage peer{};
    socklen_t peer_len = sizeof peer;
    // And max_connections_per_address, on a plain listener, to count it.
    bool want_peer = proxy != ProxyProtocol::kOff || LimitingAddresses();
    int fd = accept4(p_.listeners[index].get(), want_peer ? reinterpret_cast<sockaddr*>(&peer) : nullptr,
                     want_peer ? &peer_len : nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      UniqueFd owned(fd);
      if (want_peer && !Trusted(peer)) {
        Bump(p_.stats->proxy_errors[static_cast<size_t>(ProxyFailure::kUntrusted)], uint64_t{1});
        continue;  // closed unanswered: not a connection we serve
      }
      uint32_t entry = AddressTable::kNoEntry;
      // On a PROXY listener the client's address comes with the header (HeaderDone).
      if (proxy == ProxyProtocol::kOff && LimitingAddresses() &&
          !AdmitAddress(reinterpret_cast<const sockaddr*>(&peer), peer_len, &entry)) {
        RefuseAtAccept(std::move(owned));
        continue;
      }
      AddConnection(std::move(owned), listener_is_tcp_[index], proxy, entry);
      continue;
    }
    if (errno != EAGAIN && errno != EINTR) Bump(p_.stats->accept_errors, uint64_t{1});
    switch (errno) {
      case EAGAIN:
        return false;
      case EINTR:
      case ECONNABORTED:
      case EPROTO:
      case EPERM:  // refused by a firewall rule: that connection only
        continue;
      case EMFILE:
      case ENFILE:
      case ENOBUFS:
      case ENOMEM:
        ReportExhaustion(errno);
        accept_paused_until_ = now_ + kAcceptPauseOnExhaustion;
        SetHeld(false);
        StopAccepting();
        return false;
      default:
        Log(LogLevel::kError, Error(ErrnoErr() << "accept").ToString());
        return false;
    }
  }
  return accepting_ || !balanced;
}

// Connections a held worker left for its siblings, taken anyway once they
// have waited too long (see AcceptBalance::RescueDue).
void Worker::RescueBacklog() {
  if (!balance_.BacklogCheckDue(now_)) return;
  bool queued = false;
  for (const UniqueFd& l : p_.listeners) {
    pollfd p{l.get(), POLLIN, 0};
    queued = queued || (poll(&p, 1, 0) == 1 && (p.revents & POLLIN));
  }
  if (!balance_.RescueDue(queued, now_)) return;
  for (size_t i = 0; i < p_.listeners.size(); ++i) Accept(i, /*balanced=*/false);
}

// Sustained exhaustion pauses accepting four times a second; say so once per
// kExhaustionLogInterval, with how often it happened meanwhile.
void Worker::ReportExhaustion(int error) {
  ++exhaustion_count_;
  auto now = Clock::now();
  if (last_exhaustion_log_ != Clock::time_point{} && now - last_exhaustion_log_ < kExhaustionLogInterval) return;
  Log(LogLevel::kWarning, Error("accept", error).ToString() + " with " +
                              Count(static_cast<unsigned>(open_), "connection") +
                              " open; pausing accepts for 250 ms (" + Count(exhaustion_count_, "pause") +
                              " since the last report)");
  last_exhaustion_log_ = now;
  exhaustion_count_ = 0;
}

bool Worker::Trusted(const sockaddr_storage& peer) const {
  if (peer.ss_family == AF_UNIX) return true;  // the socket file's mode decides who connects
  const auto* sa = reinterpret_cast<const sockaddr*>(&peer);
  return std::any_of(p_.proxy_trusted.begin(), p_.proxy_trusted.end(), [&](const Cidr& n) { return n.Contains(sa); });
}

bool Worker::AdmitAddress(const sockaddr* peer, socklen_t len, uint32_t* entry) {
  std::optional<ClientAddress> address = ClientAddressOf(peer, len);
  if (!address) return true;  // a unix socket's client: no address to count
  auto limit = static_cast<uint32_t>(p_.max_connections_per_address);
  AddressTable::Admission a = p_.addresses->Admit(*address, p_.address_owner, limit);
  switch (a.verdict) {
    case AddressTable::Verdict::kAdmitted: *entry = a.entry; return true;
    case AddressTable::Verdict::kOverLimit: return false;
    case AddressTable::Verdict::kUncounted: break;
  }
  // Fail open, said once a minute at most: see common/address_table.h.
  if (last_uncounted_log_ == Clock::time_point{} || now_ - last_uncounted_log_ >= std::chrono::minutes(1)) {
    last_uncounted_log_ = now_;
    Log(LogLevel::kWarning, "the per-address table has no room near a client's address: its connection is not "
                            "counted against max_connections_per_address (" +
                                Count(p_.addresses->uncounted(), "uncounted connection") + " so far)");
  }
  return true;
}

// Closed before a byte either way; the table counted it as refused. Like a
// PROXY listener's untrusted source, it is no connection served: not in the
// accepted or closed counts.
void Worker::RefuseAtAccept(UniqueFd fd) {
  if (connection_log_.Wants(CloseReason::kError)) {
    connection_log_.Closed(fd.borrow(), CloseReason::kError, 0, 0, 0, now_, {}, kPerAddressRefusal);
  }
}

void Worker::AddConnection(UniqueFd fd, bool tcp, ProxyProtocol proxy, uint32_t address_entry) {
  // A reply that leaves in more than one send() (larger than buffer_size, or
  // a request that came in pieces) must not wait for the client's delayed
  // ACK of the first part: Nagle would hold the tail back 40 ms.
  int one = 1;
  if (tcp && setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) {
    Log(LogLevel::kWarning, Error(ErrnoErr() << "setsockopt(TCP_NODELAY) on a new connection").ToString());
  }
  const int raw_fd = fd.get();
  auto c = std::make_unique<Connection>();
  c->fd = std::move(fd);
  if (static_cast<size_t>(raw_fd) >= by_fd_.size()) by_fd_.resize(static_cast<size_t>(raw_fd) + 1);
  Connection* conn = c.get();
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP;
  ev.data.u64 = static_cast<uint64_t>(raw_fd);
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, raw_fd, &ev) != 0) {
    Log(LogLevel::kWarning, Error(ErrnoErr() << "epoll_ctl on a new connection").ToString());
    if (address_entry != AddressTable::kNoEntry) p_.addresses->Release(address_entry, p_.address_owner);
    return;  // c closes the fd
  }
  conn->registered = {true, false};
  conn->address_entry = address_entry;
  by_fd_[static_cast<size_t>(raw_fd)] = std::move(c);
  ++open_;
  p_.stats->open_connections.store(static_cast<uint32_t>(open_), std::memory_order_relaxed);
  Bump(p_.stats->connections_total, uint64_t{1});
  conn->last_active = conn->accepted = now_;
  if (proxy != ProxyProtocol::kOff) {
    conn->proxy = ProxyStage::kAwaiting;
    proxy_[raw_fd].parser = std::make_unique<ProxyHeaderParser>(VersionsOf(proxy));
  }
  ListOf(conn).Append(conn);
}

void Worker::Touch(Connection* c) {
  c->last_active = now_;
  if (active_.newest == c) return;
  active_.Remove(c);
  active_.Append(c);
}

void Worker::CloseConnection(Connection* c, CloseReason reason, uint64_t undelivered, ProxyNote note,
                             const char* refused) {
  auto micros = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(now_ - c->accepted).count());
  Bump(p_.stats->duration_buckets[DurationBucket(micros)], uint64_t{1});
  Bump(p_.stats->duration_sum_us, micros);
  Bump(p_.stats->closed[static_cast<size_t>(reason)], uint64_t{1});  // last: whoever sees the close sees its duration
  int fd = c->fd.get();
  if (connection_log_.Wants(reason)) {
    const ProxyHeader* proxied = c->proxy == ProxyStage::kProxied ? proxy_[fd].header.get() : nullptr;
    connection_log_.Closed(c->fd.borrow(), reason, micros, c->bytes_in, c->bytes_in - undelivered, now_,
                           {proxied, note}, refused);
  }
  if (c->address_entry != AddressTable::kNoEntry) p_.addresses->Release(c->address_entry, p_.address_owner);
  ListOf(c).Remove(c);
  if (c->proxy != ProxyStage::kNone) proxy_.erase(fd);
  by_fd_[static_cast<size_t>(fd)].reset();  // closing removes it from epoll
  heap_to_trim_ = true;
  --open_;
  p_.stats->open_connections.store(static_cast<uint32_t>(open_), std::memory_order_relaxed);
  ReconsiderAccepting();
}

bool Worker::UpdateInterest(Connection* c) {
  Interest want = c->engine.interest();
  if (want == c->registered) return true;
  epoll_event ev{};
  ev.events = (want.read ? EPOLLIN | EPOLLRDHUP : 0u) | (want.write ? EPOLLOUT : 0u);
  ev.data.u64 = static_cast<uint64_t>(c->fd.get());
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, c->fd.get(), &ev) != 0) return false;
  c->registered = want;
  return true;
}

void Worker::OnConnectionEvent(Connection* c, uint32_t events) {
  if (c->proxy == ProxyStage::kAwaiting) {
    OnHeaderEvent(c);  // a hang-up or an error shows as recv's EOF or failure
    return;
  }
  SocketIo io{c->fd.get()};
  uint64_t sent = 0, received = 0;
  // Before the event every byte read was sent or is pending; a failed send
  // may drop the rest of a read, so what is owed at a close in it is counted
  // from here: pending before, plus read, minus sent.
  const uint64_t pending_before = c->engine.pending_size();
  Step step = Step::kKeep;
  CloseReason reason = CloseReason::kError;
  if (events & EPOLLOUT) step = c->engine.OnWritable(io, &sent);
  // EPOLLHUP/EPOLLERR/EPOLLRDHUP surface through recv's result (EOF or error).
  if (step == Step::kKeep && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
    if (c->engine.interest().read) {
      step = c->engine.OnReadable(io, {scratch_.get(), p_.buffer_size}, &sent, &received);
    } else if (events & (EPOLLHUP | EPOLLERR)) {
      step = Step::kClose;  // cannot deliver what is pending to a dead socket
      reason = CloseReason::kReset;
    }
  }
  if (sent > 0) Bump(p_.stats->bytes_sent, sent);
  if (received > 0) Bump(p_.stats->bytes_received, received);
  c->bytes_in += received;
  Touch(c);  // any readiness is traffic, even a read whose bytes all wait to be sent
  if (step == Step::kClose) {
    CloseConnection(c, reason == CloseReason::kReset ? reason : c->engine.close_reason(),
                    pending_before + received - sent);
  } else if (!UpdateInterest(c)) {
    CloseConnection(c, CloseReason::kError);
  }
}

// Reads what has come of the header; what follows it in the same read is
// the client's first data, answered at once.
void Worker::OnHeaderEvent(Connection* c) {
  ProxyHeaderParser& parser = *proxy_[c->fd.get()].parser;
  for (int reads = 0; reads < ConnectionEngine::kReadsPerEvent; ++reads) {
    ssize_t n = ::recv(c->fd.get(), scratch_.get(), p_.buffer_size, 0);
    if (n == 0) return FailHeader(c, ProxyFailure::kTruncated, "closed by the client before the header's end");
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
      return FailHeader(c, ProxyFailure::kTruncated, "reset by the client before the header's end");
    }
    auto got = static_cast<size_t>(n);
    auto progress = parser.Feed({scratch_.get(), got});
    switch (progress.state) {
      case ProxyHeaderParser::State::kError:
        return FailHeader(c, parser.checksum_mismatch() ? ProxyFailure::kChecksum : ProxyFailure::kMalformed,
                          parser.error());
      case ProxyHeaderParser::State::kDone:
        return HeaderDone(c, {scratch_.get() + progress.consumed, got - progress.consumed});
      case ProxyHeaderParser::State::kNeedMore:
        if (got < p_.buffer_size) return;  // the socket is empty for now
        break;
    }
  }
}

void Worker::HeaderDone(Connection* c, std::span<uint8_t> rest) {
  const int fd = c->fd.get();
  auto it = proxy_.find(fd);
  awaiting_.Remove(c);
  if (it->second.parser->header().kind == ProxyHeader::Kind::kProxied) {
    it->second.header = std::make_unique<ProxyHeader>(it->second.parser->header());
    it->second.parser.reset();
    c->proxy = ProxyStage::kProxied;
  } else {
    proxy_.erase(it);  // LOCAL or UNKNOWN: the real endpoints stand
    c->proxy = ProxyStage::kNone;
  }
  c->last_active = now_;
  active_.Append(c);
  if (LimitingAddresses() && !AdmitAfterHeader(c)) {
    return CloseConnection(c, CloseReason::kError, 0, {}, kPerAddressRefusal);
  }
  if (!rest.empty()) {
    SocketIo io{fd};
    uint64_t sent = 0;
    Step step = c->engine.OnData(io, rest, &sent);
    Bump(p_.stats->bytes_received, uint64_t{rest.size()});
    if (sent > 0) Bump(p_.stats->bytes_sent, sent);
    c->bytes_in += rest.size();
    if (step == Step::kClose) return CloseConnection(c, c->engine.close_reason(), rest.size() - sent);
  }
  if (!UpdateInterest(c)) CloseConnection(c, CloseReason::kError);
}

// The client's address is the header's; after a LOCAL or UNKNOWN header,
// the connection's own.
bool Worker::AdmitAfterHeader(Connection* c) {
  if (c->proxy == ProxyStage::kProxied) {
    const ProxyHeader& h = *proxy_[c->fd.get()].header;
    return AdmitAddress(reinterpret_cast<const sockaddr*>(&h.source), h.source_len, &c->address_entry);
  }
  sockaddr_storage peer{};
  socklen_t len = sizeof peer;
  if (getpeername(c->fd.get(), reinterpret_cast<sockaddr*>(&peer), &len) != 0) return true;  // reset: its read says so
  return AdmitAddress(reinterpret_cast<const sockaddr*>(&peer), len, &c->address_entry);
}

// Closed without a byte of answer; counted by why, and told in the
// connection log (as an error) when that is on.
void Worker::FailHeader(Connection* c, ProxyFailure failure, const char* detail) {
  Bump(p_.stats->proxy_errors[static_cast<size_t>(failure)], uint64_t{1});
  CloseConnection(c, CloseReason::kError, 0, {ProxyFailureName(failure), detail});
}

void Worker::SweepHeaders(Clock::time_point now) {
  while (awaiting_.oldest && now - awaiting_.oldest->accepted >= p_.proxy_header_timeout) {
    FailHeader(awaiting_.oldest, ProxyFailure::kTimeout, "no complete header within proxy_header_timeout");
  }
}

void Worker::StartDrain() {
  if (draining_) return;
  draining_ = true;
  // Take what is already queued so no connection is lost with us: a worker
  // held back by the balance takes it too, since it may be the last to hold
  // the listening socket at a stop (at a reload the sockets stay open in the
  // supervisor and the workers of the new generation).
  // Until the queue is empty or this worker is full; bounded, so that a
  // flood at this moment cannot keep the drain from starting.
  for (size_t i = 0; i < p_.listeners.size(); ++i) {
    for (int batch = 0; batch < kDrainBatches && Accept(i, /*balanced=*/false); ++batch) {
    }
  }
  StopAccepting();
  // A worker of the new generation held back while this one took the few
  // connections (accept_balance.h) must not wait for its next look.
  NudgeSiblings();
  p_.listeners.clear();  // our copies only: the sockets stay open elsewhere
  // Published last: "draining" tells the supervisor this worker holds no
  // listener any more, so a removed address can be closed.
  p_.stats->SetPhase(WorkerPhase::kDraining);
  WakeSupervisor();
  if (!p_.title.empty()) SetProcTitle(p_.title + ", draining)");
}

void Worker::OnSignal() {
  signalfd_siginfo si{};
  while (read(signals_.get(), &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
    switch (si.ssi_signo) {
      case SIGQUIT: quit_ = true; break;
      case SIGTERM:
      case SIGINT:
        // Even when already draining (a terminal's SIGINT may come first):
        // only the supervisor's request carries the deadline.
        if (auto drain = DrainTimeOf(si, p_.supervisor_pid); drain && !cut_at_) cut_at_ = now_ + DrainCutoff(*drain);
        StartDrain();
        break;
      default: break;  // a stray signal, or one sent to the whole group for the supervisor
    }
  }
}

// The supervisor's SIGKILL is due: end what is left here instead, so each
// connection is counted (and logged) as cut at shutdown, and exit.
void Worker::CutAtShutdown() {
  if (open_ == 0) return;
  Log(LogLevel::kNotice, "shutdown_timeout reached: closing " + Count(static_cast<unsigned>(open_), "open connection"));
  while (active_.oldest) CloseConnection(active_.oldest, CloseReason::kShutdown);
  while (awaiting_.oldest) CloseConnection(awaiting_.oldest, CloseReason::kShutdown);
}

void Worker::SweepIdle(Clock::time_point now) {
  if (p_.idle_timeout.count() == 0) return;
  while (active_.oldest && now - active_.oldest->last_active >= p_.idle_timeout) {
    CloseConnection(active_.oldest, CloseReason::kIdleTimeout);
  }
}

int Worker::NextTimeoutMs(Clock::time_point now) const {
  auto next = now + p_.tick;
  if (p_.idle_timeout.count() > 0 && active_.oldest) next = std::min(next, active_.oldest->last_active + p_.idle_timeout);
  if (awaiting_.oldest) next = std::min(next, awaiting_.oldest->accepted + p_.proxy_header_timeout);
  if (!accepting_ && !draining_ && accept_paused_until_ > now) next = std::min(next, accept_paused_until_);
  if (balance_held_) next = std::min(next, now + balance_.recheck());
  if (cut_at_) next = std::min(next, *cut_at_);
  auto ms = std::chrono::duration_cast<milliseconds>(next - now).count() + 1;
  return static_cast<int>(std::max<int64_t>(0, ms));
}

int Worker::Run() {
  if (int code = Boot(); code != kExitOk) return code;
  constexpr int kMaxEvents = 256;
  epoll_event events[kMaxEvents];
  while (!quit_) {
    if (draining_ && open_ == 0) break;
    Clock::time_point waits = Clock::now();
    if (auto permille = balance_.Worked(now_, waits)) p_.stats->busy_permille.store(*permille, std::memory_order_relaxed);
    p_.stats->waiting.store(1, std::memory_order_relaxed);
    int n = epoll_wait(epoll_.get(), events, kMaxEvents, NextTimeoutMs(waits));
    p_.stats->waiting.store(0, std::memory_order_relaxed);
    if (n < 0 && errno != EINTR) {
      Log(LogLevel::kError, Error(ErrnoErr() << "epoll_wait").ToString());
      return kExitFailure;
    }
    now_ = Clock::now();
    // Before the events: a worker woken from a long idle wait by a new
    // connection decides on a current list of siblings.
    balance_.MaybeScan(now_);
    bool nudged = false;
    for (int i = 0; i < std::max(n, 0); ++i) nudged = OnEvent(events[i]) || nudged;
    if (!AfterEvents(nudged)) return kExitFailure;
    MaybeTrimHeap(/*idle_turn=*/n == 0);
#ifdef ROT13D_TEST_HOOKS
    // Test builds only: the worker that unlinks the file named by
    // ROT13D_TEST_HANG_FILE hangs for good, deaf to SIGABRT as one stuck in the
    // kernel would be, so the tests can see the supervisor's SIGKILL after it.
    if (const char* path = std::getenv("ROT13D_TEST_HANG_FILE"); path && unlink(path) == 0) {
      signal(SIGABRT, SIG_IGN);
      for (;;) pause();
    }
#endif
  }
  connection_log_.Flush(Clock::now());
  return kExitOk;
}

// One event of a loop turn; true when it was the siblings' doorbell.
bool Worker::OnEvent(const epoll_event& event) {
  uint64_t tag = event.data.u64;
  if (tag == kSignalTag) {
    OnSignal();
  } else if (tag == kNudgeTag) {
    return true;
  } else if (tag & kListenerTag) {
    size_t index = tag & ~kListenerTag;
    if (accepting_ && index < p_.listeners.size()) Accept(index);
  } else if (tag < by_fd_.size() && by_fd_[tag]) {
    OnConnectionEvent(by_fd_[tag].get(), event.events);
  }
  return false;
}

// The end of a loop turn: idle connections, whether to accept, the tick.
// False when the supervisor is gone (an orphan never serves alone).
bool Worker::AfterEvents(bool nudged) {
  SweepIdle(now_);
  SweepHeaders(now_);
  if (cut_at_ && now_ >= *cut_at_) CutAtShutdown();
  connection_log_.Tick(now_);
  ReconsiderAccepting();
  balance_.AfterTurn(balance_held_);
  if (balance_held_) RescueBacklog();
  // Rung by a sibling that stepped back with connections still queued:
  // nothing else wakes us for those (EPOLLEXCLUSIVE wakes one waiter per
  // arrival, none for what is already waiting).
  if (nudged && accepting_) AcceptEverywhere();
  // An exclusive wakeup can land on a worker just as it stops accepting; a
  // cheap non-blocking accept once a second makes sure nothing waits for the
  // next arrival.
  if (now_ - last_tick_ >= p_.tick) {
    last_tick_ = now_;
    if (accepting_) AcceptEverywhere();
    if (getppid() != p_.supervisor_pid) return false;
  }
  Heartbeat();
  return true;
}

// What a burst of connections left in the heap (their pending tails, freed
// between live ones) stays in the worker's RSS: free() gives back only the
// top of the heap. malloc_trim(0) returns every free page, but walks the
// heap to do it, so only on a turn that found nothing to do (the wait timed
// out: nobody waits for this worker), after connections were closed, and at
// most once per tick.
void Worker::MaybeTrimHeap(bool idle_turn) {
  if (!heap_to_trim_ || !idle_turn || now_ - last_trim_ < p_.tick) return;
  heap_to_trim_ = false;
  last_trim_ = now_;
  malloc_trim(0);
}

void Worker::AcceptEverywhere() {
  for (size_t i = 0; i < p_.listeners.size(); ++i) Accept(i);
}

}  // namespace

WorkerParams ParamsFor(const Config& config) {
  WorkerParams p;
  p.buffer_size = config.buffer_size;
  p.max_connections = config.max_connections;
  p.max_connections_per_address = config.max_connections_per_address;
  p.idle_timeout = config.idle_timeout;
  p.connection_log = config.connection_log;
  p.proxy_trusted = config.proxy_trusted;
  p.proxy_header_timeout = config.proxy_header_timeout;
  // Four heartbeats per heartbeat_timeout at least, so an idle worker never looks hung.
  if (config.heartbeat_timeout.count() > 0) p.tick = std::min(p.tick, config.heartbeat_timeout / 4);
  return p;
}

SignalSet WorkerSignals() { return SignalSet::AllBlockable().Without({SIGABRT, SIGPIPE}); }

int RunWorker(WorkerParams params) {
  // Mask first: from then on nothing pending can act before the dispositions
  // are what a worker needs.
  Status ready = SetSignalMask(WorkerSignals());
  if (ready) ready = ResetSignalDispositions(SignalSet::Of({SIGPIPE}));
  if (ready && signal(SIGPIPE, SIG_IGN) == SIG_ERR) ready = ErrnoErr() << "ignoring SIGPIPE";
  // A worker serves untrusted clients: no privilege at all, and no way back to one.
  if (ready) ready = DropAllCapabilities();
  if (!ready) {
    Log(LogLevel::kError, "worker cannot boot: " + ready.error().ToString());
    return kExitCannotBoot;
  }
  Worker worker(std::move(params));
  return worker.Run();
}

}  // namespace rot13d::daemon
