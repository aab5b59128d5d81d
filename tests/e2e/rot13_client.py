#!/usr/bin/env python3
"""Loopback client for the end-to-end test: one exchange, or a bounded loop of them.

  rot13_client.py once PORT TEXT              prints the reply; exit 0 if it is rot13(TEXT)
  rot13_client.py loop PORT COUNT INTERVAL [--stop-file F] [--max-seconds S] [--progress-file P]
      opens up to COUNT connections one after another, INTERVAL seconds apart,
      each sending a line and checking the reply; stops early once F exists or
      after S seconds; writes the number of attempts so far to P after each
      one; prints "attempts=N ok=N refused=N failed=N" and exits 0
      only when every attempt got the right answer.
  rot13_client.py port-free PORT              exit 0 if nothing listens on PORT
  rot13_client.py load PORT [OPTIONS]         new connections at a steady rate and
      long-lived streams at once, every byte checked, until a stop file exists;
      counts refusals, resets, timeouts and corrupted bytes and the longest
      waits (load --help says more)

Only ever connects to 127.0.0.1.
"""
import argparse
import errno
import os
import random
import resource
import selectors
import socket
import sys
import time

HOST = "127.0.0.1"


def rot13(data: bytes) -> bytes:
    out = bytearray()
    for b in data:
        if 65 <= b <= 90:
            b = (b - 65 + 13) % 26 + 65
        elif 97 <= b <= 122:
            b = (b - 97 + 13) % 26 + 97
        out.append(b)
    return bytes(out)


def exchange(port: int, data: bytes, timeout: float = 20.0) -> bytes:
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def cmd_once(port: int, text: str) -> int:
    try:
        reply = exchange(port, text.encode())
    except OSError as e:
        print(f"error: {e}")
        return 1
    print(reply.decode(errors="replace"))
    return 0 if reply == rot13(text.encode()) else 1


def write_progress(path: str, attempts: int) -> None:
    # Replaced whole (rename), so a reader never sees a half-written number.
    with open(path + ".tmp", "w") as f:
        f.write(f"{attempts}\n")
    os.replace(path + ".tmp", path)


def cmd_loop(port: int, count: int, interval: float, stop_file: str, max_seconds: float,
             progress_file: str = "") -> int:
    ok = refused = failed = attempts = 0
    first_error = ""
    start = time.monotonic()
    for i in range(count):
        if stop_file and os.path.exists(stop_file):
            break
        if time.monotonic() - start > max_seconds:
            break
        attempts += 1
        payload = f"Hello {i} from the e2e loop\n".encode()
        try:
            reply = exchange(port, payload)
            if reply == rot13(payload):
                ok += 1
            else:
                failed += 1
                first_error = first_error or f"attempt {i}: wrong reply {reply!r}"
        except ConnectionRefusedError:
            refused += 1
            first_error = first_error or f"attempt {i}: connection refused"
        except OSError as e:
            if e.errno == errno.ECONNREFUSED:
                refused += 1
            else:
                failed += 1
            first_error = first_error or f"attempt {i}: {e}"
        if progress_file:
            write_progress(progress_file, attempts)
        time.sleep(interval)
    print(f"attempts={attempts} ok={ok} refused={refused} failed={failed}"
          + (f" first_error={first_error!r}" if first_error else ""), flush=True)
    return 0 if attempts > 0 and ok == attempts else 1


def cmd_port_free(port: int) -> int:
    # systemd binds [::]:PORT dual-stack with SO_REUSEADDR; try the same.
    for family, addr in ((socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0")):
        try:
            s = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            s.bind((addr, port))
            return 0
        except OSError as e:
            print(f"port {port}: {e}")
            return 1
        finally:
            s.close()
    return 1


# --- load: new connections at a rate and long-lived streams, every byte checked

# rot13 of each byte value, for bytes.translate.
ROT13_TABLE = bytes(rot13(bytes([b]))[0] for b in range(256))
# What the load sends: a fixed pseudo-random block of a prime length. Each
# connection starts at its own offset, so a server that mixes connections up,
# or drops, repeats or reorders data, answers with wrong bytes.
PATTERN = random.Random(1067).randbytes(65521)
KINDS = ("refused", "reset", "timeout", "cut", "corrupt", "other")


def pattern_at(offset: int, n: int) -> bytes:
    offset %= len(PATTERN)
    out = PATTERN[offset:offset + n]
    while len(out) < n:
        out += PATTERN[:n - len(out)]
    return out


def error_kind(err: int) -> str:
    if err == errno.ECONNREFUSED:
        return "refused"
    # ENOTCONN: a shutdown() after the peer's reset.
    if err in (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED, errno.ENOTCONN):
        return "reset"
    if err == errno.ETIMEDOUT:
        return "timeout"
    return "other"


def mismatches(got: bytes, want: bytes) -> int:
    """Bytes of GOT that are not WANT's at the same offset (extra ones count)."""
    common = min(len(got), len(want))
    return sum(1 for a, b in zip(got[:common], want[:common]) if a != b) + max(0, len(got) - len(want))


class Tally:
    """The outcome of the short connections, of all or of those in the window."""

    def __init__(self):
        self.done = self.ok = self.corrupt_bytes = 0
        self.failures = dict.fromkeys(KINDS, 0)
        self.max_connect = self.max_wait = 0.0
        self.max_wait_at = 0.0  # when the longest wait began, since the load's start
        self.waits = []

    def failed(self) -> int:
        return sum(self.failures.values())


class Conn:
    """A non-blocking connection to HOST:port in the load's selector."""

    def __init__(self, load, now: float):
        self.load = load
        self.t0 = self.last = now
        self.registered = False
        self.closed = False
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.connected = False
        err = self.sock.connect_ex((HOST, load.port))
        if err not in (0, errno.EINPROGRESS):
            self.fail(error_kind(err), f"connect: {os.strerror(err)}", now)
            return
        load.sel.register(self.sock, selectors.EVENT_WRITE, self)
        self.registered = True

    def interest(self, mask: int) -> None:
        if self.registered and not self.closed:
            self.load.sel.modify(self.sock, mask, self)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.registered:
            self.load.sel.unregister(self.sock)
        self.sock.close()

    def on_event(self, mask: int, now: float) -> None:
        try:
            if not self.connected:
                err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    self.fail(error_kind(err), f"connect: {os.strerror(err)}", now)
                    return
                self.connected = True
                self.last = now
                self.on_connected(now)
                if self.closed:
                    return
            if mask & selectors.EVENT_READ:
                data = self.sock.recv(65536)
                self.last = now
                self.on_data(data, now)
            if not self.closed and mask & selectors.EVENT_WRITE:
                self.on_writable(now)
        except OSError as e:
            self.fail(error_kind(e.errno or 0), str(e), now)


class Cycle(Conn):
    """A short connection: connect, send, half-close, read to the end, close."""

    def __init__(self, load, index: int, now: float):
        self.index = index
        self.in_window = load.window
        self.payload = memoryview(pattern_at(index * 7919, load.size))
        self.want = bytes(self.payload).translate(ROT13_TABLE)
        self.got = bytearray()
        self.t_first = None
        self.wait = None
        load.cycles.add(self)
        super().__init__(load, now)

    def on_connected(self, now: float) -> None:
        self.load.record_connect(self, now - self.t0)
        self.interest(selectors.EVENT_READ | selectors.EVENT_WRITE)

    def on_writable(self, now: float) -> None:
        if self.payload:
            n = self.sock.send(self.payload)
            self.payload = self.payload[n:]
        if not self.payload:
            self.sock.shutdown(socket.SHUT_WR)
            self.interest(selectors.EVENT_READ)

    def on_data(self, data: bytes, now: float) -> None:
        if data:
            if self.t_first is None:
                self.t_first = now
                self.wait = now - self.t0
                self.load.record_wait(self, self.wait)
            self.got += data
            if len(self.got) <= len(self.want):
                return
        if self.got == self.want:
            self.finish("", "", now)
        elif len(self.got) < len(self.want) and self.want.startswith(self.got):
            self.finish("cut", f"the answer ended after {len(self.got)} of {len(self.want)} bytes", now)
        else:
            self.load.corrupt(self, mismatches(self.got, self.want))
            self.finish("corrupt", f"{mismatches(self.got, self.want)} wrong bytes in the answer", now)

    def fail(self, kind: str, what: str, now: float) -> None:
        self.finish(kind, what, now)

    def finish(self, kind: str, what: str, now: float) -> None:
        self.close()
        self.load.cycles.discard(self)
        self.load.record_cycle(self, kind, f"connection {self.index}: {what}" if kind else "")


class Stream(Conn):
    """A long-lived connection that sends a chunk at each tick and checks the
    answer as it comes; once stopped, it half-closes and must get every byte
    back before the server's end of file."""

    def __init__(self, load, index: int, now: float):
        self.index = index
        self.base = index * 104729
        self.queued = self.received = 0
        self.pending = bytearray()
        self.stopping = self.half_closed = False
        self.result = None  # None while running, then "" (ok) or a failure kind
        super().__init__(load, now)

    def outstanding(self) -> bool:
        return not self.connected or self.received < self.queued or bool(self.pending)

    def add_chunk(self, n: int, now: float) -> None:
        if self.result is not None or self.stopping:
            return
        if not self.outstanding():
            self.last = now
        self.pending += pattern_at(self.base + self.queued, n)
        self.queued += n
        if self.connected:
            self.interest(selectors.EVENT_READ | selectors.EVENT_WRITE)

    def stop(self) -> None:
        self.stopping = True
        if self.connected and self.result is None:
            self.interest(selectors.EVENT_READ | selectors.EVENT_WRITE)

    def on_connected(self, now: float) -> None:
        self.interest(selectors.EVENT_READ | selectors.EVENT_WRITE)

    def on_writable(self, now: float) -> None:
        if self.pending:
            n = self.sock.send(self.pending)
            del self.pending[:n]
            self.last = now
        if not self.pending:
            if self.stopping and not self.half_closed:
                self.sock.shutdown(socket.SHUT_WR)
                self.half_closed = True
            self.interest(selectors.EVENT_READ)

    def on_data(self, data: bytes, now: float) -> None:
        if not data:
            if self.half_closed and self.received == self.queued:
                self.finish("", "", now)
            else:
                self.fail("cut", f"the server closed after {self.received} of {self.queued} bytes", now)
            return
        want = pattern_at(self.base + self.received, len(data)).translate(ROT13_TABLE)
        if data != want or self.received + len(data) > self.queued:
            bad = mismatches(data, want) + max(0, self.received + len(data) - self.queued)
            self.load.stream_corrupt_bytes += bad
            self.fail("corrupt", f"{bad} wrong bytes at offset {self.received}", now)
            return
        self.received += len(data)

    def fail(self, kind: str, what: str, now: float) -> None:
        self.finish(kind, what, now)
        if not self.load.first_error:
            self.load.first_error = f"stream {self.index}: {what}"

    def finish(self, kind: str, what: str, now: float) -> None:
        self.close()
        self.result = kind


class Load:
    def __init__(self, opts):
        self.port = opts.port
        self.size = opts.size
        self.opts = opts
        self.sel = selectors.DefaultSelector()
        self.cycles = set()
        self.window = False
        self.window_first = self.window_last = None
        self.all = Tally()
        self.win = Tally()
        self.first_error = ""
        self.stream_corrupt_bytes = 0
        self.max_start_lag = 0.0
        self.rest_max_wait = 0.0  # of the connections that did not overlap the window
        self.records = []  # (wall-clock start, wait) of each answered new connection
        self.wall_offset = time.time() - time.monotonic()

    def tallies(self, c):
        # A connection counts in the window when any part of it overlapped it.
        c.in_window = c.in_window or self.window
        return (self.all, self.win) if c.in_window else (self.all,)

    def record_connect(self, c, seconds: float) -> None:
        for t in self.tallies(c):
            t.max_connect = max(t.max_connect, seconds)

    def record_wait(self, c, seconds: float) -> None:
        for t in self.tallies(c):
            if seconds > t.max_wait:
                t.max_wait, t.max_wait_at = seconds, c.t0 - self.start
            t.waits.append(seconds)

    def corrupt(self, c, n: int) -> None:
        for t in self.tallies(c):
            t.corrupt_bytes += n

    def record_cycle(self, c, kind: str, what: str) -> None:
        for t in self.tallies(c):
            t.done += 1
            if kind:
                t.failures[kind] += 1
            else:
                t.ok += 1
        if not c.in_window and c.wait is not None:
            self.rest_max_wait = max(self.rest_max_wait, c.wait)
        if self.opts.record and c.wait is not None:
            self.records.append((c.t0 + self.wall_offset, c.wait))
        if kind and not self.first_error:
            self.first_error = what

    def poll_files(self, now: float) -> bool:
        """Updates the window; true when the stop file exists."""
        o = self.opts
        self.window = bool(o.window_file) and os.path.exists(o.window_file)
        if self.window:
            self.window_first = self.window_first if self.window_first is not None else now
            self.window_last = now
        return bool(o.stop_file) and os.path.exists(o.stop_file)

    def write_progress(self, streams) -> None:
        if self.opts.progress_file:
            up = sum(1 for s in streams if s.connected and s.result is None)
            with open(self.opts.progress_file + ".tmp", "w") as f:
                f.write(f"{self.all.ok} {up}\n")
            os.replace(self.opts.progress_file + ".tmp", self.opts.progress_file)

    def run(self):
        o = self.opts
        start = self.start = time.monotonic()
        streams = [Stream(self, i, start) for i in range(o.streams)]
        interval = 1.0 / o.rate if o.rate > 0 else None
        next_start = start
        next_tick = start + o.stream_interval
        next_poll = next_sweep = next_progress = start
        index = 0
        stop_at = None
        self.started = 0
        while True:
            now = time.monotonic()
            if now >= next_poll:
                next_poll = now + 0.02
                if self.poll_files(now) or now - start > o.max_seconds:
                    if stop_at is None:
                        stop_at = now
                        for s in streams:
                            s.stop()
            if stop_at is None:
                while interval and next_start <= now and len(self.cycles) < o.max_inflight:
                    self.max_start_lag = max(self.max_start_lag, now - next_start)
                    Cycle(self, index, now)
                    index += 1
                    self.started = index
                    next_start += interval
                if now >= next_tick:
                    for s in streams:
                        s.add_chunk(o.stream_chunk, now)
                    next_tick = max(next_tick + o.stream_interval, now)
            elif not self.cycles and all(s.result is not None for s in streams):
                break
            elif now - stop_at > o.timeout:
                break
            if now >= next_sweep:
                next_sweep = now + 0.25
                for c in list(self.cycles):
                    if now - c.last > o.timeout:
                        c.fail("timeout", f"no progress for {o.timeout:g} s", now)
                for s in streams:
                    if s.result is None and s.outstanding() and now - s.last > o.timeout:
                        s.fail("timeout", f"no progress for {o.timeout:g} s", now)
            if now >= next_progress:
                next_progress = now + 0.2
                self.write_progress(streams)
            deadline = min(next_poll, next_sweep, next_progress,
                           next_start if stop_at is None and interval else now + 0.05,
                           next_tick if stop_at is None else now + 0.05)
            for key, mask in self.sel.select(max(0.0, deadline - time.monotonic())):
                key.data.on_event(mask, time.monotonic())
        end = time.monotonic()
        for c in list(self.cycles):
            c.fail("timeout", "still open at the end", end)
        for s in streams:
            if s.result is None:
                s.fail("timeout", "still open at the end", end)
        self.write_progress(streams)
        if o.record:
            with open(o.record, "w") as f:
                f.writelines(f"{t:.6f} {w:.6f}\n" for t, w in self.records)
        return self.report(streams, end - start, (stop_at or end) - start)

    def report(self, streams, seconds: float, load_seconds: float) -> int:
        def ms(x):
            return f"{x * 1000:.1f}"

        o = self.opts

        def p99(waits):
            return sorted(waits)[int(len(waits) * 0.99)] if waits else 0.0
        a, w = self.all, self.win
        stream_fail = dict.fromkeys(KINDS, 0)
        for s in streams:
            if s.result:
                stream_fail[s.result] += 1
        streams_ok = sum(1 for s in streams if s.result == "")
        stream_bytes = sum(s.received for s in streams)
        fields = [f"cycles={a.done}", f"ok={a.ok}"]
        fields += [f"{k}={a.failures[k]}" for k in KINDS]
        fields += [f"corrupt_bytes={a.corrupt_bytes}", f"rate={self.started / load_seconds if load_seconds > 0 else 0:.0f}/s",
                   f"max_connect_ms={ms(a.max_connect)}", f"p99_wait_ms={ms(p99(a.waits))}",
                   f"max_wait_ms={ms(a.max_wait)}", f"max_wait_at={a.max_wait_at:.2f}s",
                   f"slow={sum(1 for x in a.waits if x > o.slow)}",
                   f"max_start_lag_ms={ms(self.max_start_lag)}",
                   f"streams={len(streams)}", f"streams_ok={streams_ok}",
                   f"stream_failed={sum(stream_fail.values())}", f"stream_corrupt_bytes={self.stream_corrupt_bytes}",
                   f"stream_bytes={stream_bytes}"]
        if self.window_first is not None:
            fields += [f"window_s={self.window_last - self.window_first:.2f}", f"window_cycles={w.done}",
                       f"window_failed={w.failed()}", f"window_max_connect_ms={ms(w.max_connect)}",
                       f"window_max_wait_ms={ms(w.max_wait)}",
                       f"window_slow={sum(1 for x in w.waits if x > o.slow)}",
                       f"window_at={self.window_first - self.start:.2f}s",
                       f"outside_max_wait_ms={ms(self.rest_max_wait)}"]
        fields.append(f"seconds={seconds:.1f}")
        if self.first_error:
            fields.append(f"first_error={self.first_error!r}")
        print(" ".join(fields), flush=True)
        clean = a.done > 0 and a.failed() == 0 and streams_ok == len(streams)
        return 0 if clean else 1


def cmd_load(argv: list) -> int:
    p = argparse.ArgumentParser(
        prog="rot13_client.py load",
        description="New connections at a steady rate (each: connect, send, half-close, read the "
                    "answer to the end) and long-lived streams (a chunk every interval, read back as "
                    "it comes) to 127.0.0.1:PORT, every byte checked against rot13, until the stop "
                    "file exists or --max-seconds; then no new connection starts, each stream "
                    "half-closes and must get all its bytes back. Prints one line of key=value "
                    "counts (failures by kind, corrupted bytes, the longest connect and the longest "
                    "wait from connect() to the answer's first byte) and exits 0 only when nothing "
                    "failed.")
    p.add_argument("port", type=int)
    p.add_argument("--rate", type=float, default=1000.0, help="new connections a second (default 1000)")
    p.add_argument("--size", type=int, default=64, help="bytes each new connection sends (default 64)")
    p.add_argument("--streams", type=int, default=100, help="long-lived streams (default 100)")
    p.add_argument("--stream-chunk", type=int, default=1024, help="bytes a stream sends each interval")
    p.add_argument("--stream-interval", type=float, default=0.05, help="seconds between chunks (default 0.05)")
    p.add_argument("--stop-file", default="", help="stop once this file exists")
    p.add_argument("--window-file", default="",
                   help="new connections open while this file exists are also counted apart (window_*)")
    p.add_argument("--progress-file", default="", help="rewritten with 'OK_CONNECTIONS STREAMS_UP'")
    p.add_argument("--max-seconds", type=float, default=120.0, help="stop after this long (default 120)")
    p.add_argument("--max-inflight", type=int, default=4000,
                   help="new connections open at once at most; later ones start late (default 4000)")
    p.add_argument("--record", default="",
                   help="write each answered new connection's start (seconds since the epoch) "
                        "and wait (seconds) to this file, a line each")
    p.add_argument("--slow", type=float, default=0.1,
                   help="count the waits longer than this (slow=, window_slow=; default 0.1 s)")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="a connection with no progress this long fails; also the time the streams "
                        "have to finish after the stop (default 10)")
    o = p.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return Load(o).run()


def main(argv: list) -> int:
    if len(argv) >= 3 and argv[0] == "once":
        return cmd_once(int(argv[1]), argv[2])
    if len(argv) >= 4 and argv[0] == "loop":
        stop_file, max_seconds, progress_file = "", 60.0, ""
        rest = argv[4:]
        while rest:
            if rest[0] == "--stop-file" and len(rest) > 1:
                stop_file = rest[1]
            elif rest[0] == "--max-seconds" and len(rest) > 1:
                max_seconds = float(rest[1])
            elif rest[0] == "--progress-file" and len(rest) > 1:
                progress_file = rest[1]
            else:
                break
            rest = rest[2:]
        return cmd_loop(int(argv[1]), int(argv[2]), float(argv[3]), stop_file, max_seconds, progress_file)
    if len(argv) == 2 and argv[0] == "port-free":
        return cmd_port_free(int(argv[1]))
    if len(argv) >= 1 and argv[0] == "load":
        return cmd_load(argv[1:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
