// Benchmark reference: the io_uring upper bound of rot13d's process model
// (issue 14 §6). The same prefork model as bench_echo_prefork, but each
// worker runs one io_uring instead of epoll: a multishot accept on the shared
// listener, a multishot receive per connection into a ring of provided
// buffers, and a send of each received buffer straight from where the kernel
// put it; every operation prepared in one loop turn goes in with a single
// io_uring_enter, which also waits for the next completions. No transform: it
// bounds from above what an io_uring rot13d could reach. TCP_NODELAY on every
// accepted socket, like the epoll echo. Loopback only.
//
//   bench_echo_uring --listen 127.0.0.1:PORT --workers N
//
// Prints "listening on 127.0.0.1:PORT" once every worker runs; SIGTERM or
// SIGINT stops it, workers die with the parent.
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <vector>

#include "tests/bench/bench_server_util.h"

namespace {

constexpr unsigned kRingEntries = 1024;
constexpr unsigned kBufferCount = 1024;  // a power of two: the provided-buffer ring's size
constexpr unsigned kBufferSize = 32 * 1024;
constexpr int kBufferGroup = 0;

// user_data: the operation in the top byte, the descriptor below it.
enum class Op : uint64_t { kAccept = 1, kRecv = 2, kSend = 3 };

uint64_t Tag(Op op, int fd) { return (static_cast<uint64_t>(op) << 56) | static_cast<uint32_t>(fd); }
Op TagOp(uint64_t tag) { return static_cast<Op>(tag >> 56); }
int TagFd(uint64_t tag) { return static_cast<int>(tag & 0xffffffffu); }

// A received buffer waiting to go back out: which one, and how much of it is left.
struct Piece {
  uint16_t bid;
  uint32_t offset, length;
};

constexpr size_t kMaxIov = 16;

struct Conn {
  std::deque<Piece> out;  // the first min(size, kMaxIov) are in flight when sending
  iovec iov[kMaxIov];     // the send in flight's, kept until it completes
  msghdr msg;
  bool sending = false;
  bool receiving = false;
  bool eof = false;  // no more receives: close once out is empty
};

class Worker {
 public:
  explicit Worker(int listener) : listener_(listener) {}

  [[noreturn]] void Run() {
    SetUp();
    ArmAccept();
    for (;;) {
      if (returned_ > 0) {
        io_uring_buf_ring_advance(buffers_, returned_);
        returned_ = 0;
        RearmStarved();
      }
      int r = io_uring_submit_and_wait(&ring_, 1);
      if (r < 0 && r != -EINTR && r != -EBUSY) _exit(1);
      unsigned head, seen = 0;
      io_uring_cqe* cqe;
      io_uring_for_each_cqe(&ring_, head, cqe) {
        Handle(cqe->user_data, cqe->res, cqe->flags);
        ++seen;
      }
      io_uring_cq_advance(&ring_, seen);
    }
  }

 private:
  void SetUp() {
    io_uring_params p{};
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
    p.cq_entries = kRingEntries * 8;
    if (io_uring_queue_init_params(kRingEntries, &ring_, &p) < 0) {
      p = io_uring_params{};  // DEFER_TASKRUN came with Linux 6.1
      p.flags = IORING_SETUP_CQSIZE;
      p.cq_entries = kRingEntries * 8;
      if (io_uring_queue_init_params(kRingEntries, &ring_, &p) < 0) _exit(1);
    }
    io_uring_register_ring_fd(&ring_);  // each io_uring_enter skips the descriptor lookup; optional
    size_t ring_bytes = kBufferCount * sizeof(io_uring_buf);
    void* mem = mmap(nullptr, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (mem == MAP_FAILED) _exit(1);
    buffers_ = static_cast<io_uring_buf_ring*>(mem);
    io_uring_buf_ring_init(buffers_);
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<uintptr_t>(mem);
    reg.ring_entries = kBufferCount;
    reg.bgid = kBufferGroup;
    if (io_uring_register_buf_ring(&ring_, &reg, 0) != 0) _exit(1);
    // Not zeroed: a page costs memory only once a receive has used it.
    memory_.reset(new uint8_t[size_t{kBufferCount} * kBufferSize]);
    for (unsigned i = 0; i < kBufferCount; ++i) {
      io_uring_buf_ring_add(buffers_, Buffer(static_cast<uint16_t>(i)), kBufferSize, static_cast<uint16_t>(i),
                            io_uring_buf_ring_mask(kBufferCount), static_cast<int>(i));
    }
    io_uring_buf_ring_advance(buffers_, kBufferCount);
  }

  uint8_t* Buffer(uint16_t bid) { return memory_.get() + size_t{bid} * kBufferSize; }

  // The submission queue is full only when a turn prepares more than it holds: submit and go on.
  io_uring_sqe* Sqe() {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    while (sqe == nullptr) {
      io_uring_submit(&ring_);
      sqe = io_uring_get_sqe(&ring_);
    }
    return sqe;
  }

  void ArmAccept() {
    io_uring_sqe* sqe = Sqe();
    io_uring_prep_multishot_accept(sqe, listener_, nullptr, nullptr, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, Tag(Op::kAccept, listener_));
  }

  void ArmRecv(int fd) {
    io_uring_sqe* sqe = Sqe();
    io_uring_prep_recv_multishot(sqe, fd, nullptr, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = kBufferGroup;
    io_uring_sqe_set_data64(sqe, Tag(Op::kRecv, fd));
    conns_[static_cast<size_t>(fd)]->receiving = true;
  }

  // Everything queued leaves in one sendmsg (up to kMaxIov buffers): a large
  // message arrives as several buffers, and one operation sends them all.
  void SendQueued(int fd, Conn& c) {
    size_t n = std::min(c.out.size(), kMaxIov);
    for (size_t i = 0; i < n; ++i) {
      const Piece& p = c.out[i];
      c.iov[i] = iovec{Buffer(p.bid) + p.offset, p.length};
    }
    c.msg = msghdr{};
    c.msg.msg_iov = c.iov;
    c.msg.msg_iovlen = n;
    io_uring_sqe* sqe = Sqe();
    if (n == 1) {
      io_uring_prep_send(sqe, fd, c.iov[0].iov_base, c.iov[0].iov_len, MSG_NOSIGNAL);
    } else {
      io_uring_prep_sendmsg(sqe, fd, &c.msg, MSG_NOSIGNAL);
    }
    io_uring_sqe_set_data64(sqe, Tag(Op::kSend, fd));
    c.sending = true;
  }

  void GiveBack(uint16_t bid) {
    io_uring_buf_ring_add(buffers_, Buffer(bid), kBufferSize, bid, io_uring_buf_ring_mask(kBufferCount),
                          static_cast<int>(returned_));
    ++returned_;
  }

  // Receives that stopped for want of buffers start again once some came back.
  void RearmStarved() {
    std::vector<int> starved;
    starved.swap(starved_);
    for (int fd : starved) {
      // The descriptor may have closed and come back as a new connection meanwhile.
      Conn* c = conns_[static_cast<size_t>(fd)].get();
      if (c != nullptr && !c->eof && !c->receiving) ArmRecv(fd);
    }
  }

  void Close(int fd) {
    for (const Piece& p : conns_[static_cast<size_t>(fd)]->out) GiveBack(p.bid);
    conns_[static_cast<size_t>(fd)].reset();
    close(fd);
  }

  void Handle(uint64_t tag, int res, unsigned flags) {
    int fd = TagFd(tag);
    switch (TagOp(tag)) {
      case Op::kAccept:
        if (res >= 0) Accepted(res);
        if (!(flags & IORING_CQE_F_MORE)) ArmAccept();
        return;
      case Op::kRecv:
        Received(fd, res, flags);
        return;
      case Op::kSend:
        Sent(fd, res);
        return;
    }
  }

  void Accepted(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (static_cast<size_t>(fd) >= conns_.size()) conns_.resize(static_cast<size_t>(fd) + 1);
    conns_[static_cast<size_t>(fd)] = std::make_unique<Conn>();
    ArmRecv(fd);
  }

  void Received(int fd, int res, unsigned flags) {
    Conn& c = *conns_[static_cast<size_t>(fd)];
    bool more = flags & IORING_CQE_F_MORE;
    if (!more) c.receiving = false;
    if (res > 0) {
      auto bid = static_cast<uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT);
      c.out.push_back(Piece{bid, 0, static_cast<uint32_t>(res)});
      if (!c.sending) SendQueued(fd, c);
      if (!more) ArmRecv(fd);  // the kernel ended the multishot (e.g. a full completion queue)
      return;
    }
    if (res == -ENOBUFS) {
      starved_.push_back(fd);  // every buffer is queued for sending somewhere
      return;
    }
    // EOF or an error: what was received still goes back, then the socket closes.
    c.eof = true;
    if (!c.sending) Close(fd);
  }

  void Sent(int fd, int res) {
    Conn& c = *conns_[static_cast<size_t>(fd)];
    c.sending = false;
    if (res <= 0) {
      c.eof = true;
      if (!c.receiving) Close(fd);
      else shutdown(fd, SHUT_RDWR);  // ends the multishot receive, whose last completion closes
      return;
    }
    auto left = static_cast<uint32_t>(res);
    while (left > 0) {
      Piece& p = c.out.front();
      uint32_t take = std::min(left, p.length);
      p.offset += take;
      p.length -= take;
      left -= take;
      if (p.length > 0) break;
      GiveBack(p.bid);
      c.out.pop_front();
    }
    if (!c.out.empty()) {
      SendQueued(fd, c);
    } else if (c.eof && !c.receiving) {
      Close(fd);
    }
  }

  int listener_;
  io_uring ring_{};
  io_uring_buf_ring* buffers_ = nullptr;
  std::unique_ptr<uint8_t[]> memory_;
  unsigned returned_ = 0;  // buffers added back since the ring's tail last moved
  std::vector<std::unique_ptr<Conn>> conns_;
  std::vector<int> starved_;
};

void RunWorker(int listener) { Worker(listener).Run(); }

}  // namespace

int main(int argc, char** argv) {
  bench::ServerArgs args = bench::ParseServerArgs(argc, argv, "bench_echo_uring");
  bench::RaiseFdLimit();
  int listener = bench::Listen(args.address, /*nonblocking=*/false);
  return bench::RunPrefork(listener, args.workers, RunWorker);
}
