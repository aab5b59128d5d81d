#!/usr/bin/env python3
"""End-to-end test: two rot13d instances behind a real HAProxy (issue 13, section 4).

  tests/haproxy/haproxy_e2e.py ROT13D ROT13_BENCH CORPUS_DIR WORK_DIR

Starts rot13d from the build tree on 127.0.0.2 and 127.0.0.3 (PROXY v2
listeners, every connection logged, agent_listen) and Debian's haproxy in the
foreground on 127.0.0.1 (mode tcp, leastconn, send-proxy-v2, weight 100, a
tcp-check that sends text and expects its rot13, agent-check on each instance's
agent port), then runs five scenarios, one PASS/FAIL line each with its
figures (and checks docs/fleet.md's examples), and ends with "N passed, M failed". Load comes from rot13-bench, which
checks every byte. Needs no root. Without haproxy it skips (exit 77), except
under CI (CI set), where it fails.
"""
import json
import os
import re
import signal
import shutil
import socket
import subprocess
import sys
import time

INTER_MS = 200
FALL = 2
SHUTDOWN_TIMEOUT = 5
LOAD_CONNECTIONS = 8
# The options of each server line; {agent} is the instance's agent_listen port.
SERVER_OPTIONS = (f"send-proxy-v2 weight 100 check inter {INTER_MS}ms fall {FALL} rise 1 "
                  f"agent-check agent-port {{agent}} agent-inter {INTER_MS}ms")

# Seeds of the fuzz corpus that are malformed whatever the listener accepts.
MALFORMED_SEEDS = ["http", "v1_leading_zero", "v1_lf_only", "v1_no_crlf", "v2_bad_crc",
                   "v2_short_block", "v2_tlv_overrun", "v2_version3"]
# Well-formed ones, sent with data after them: the control that shows an
# answer would be seen.
VALID_SEEDS = ["v1_tcp4", "v2_tcp4", "v2_local"]


def skip(reason):
    if os.environ.get("CI"):
        print(f"FAIL: cannot run the HAProxy end-to-end test under CI: {reason}")
        print("0 passed, 1 failed")
        sys.exit(1)
    print(f"SKIP: {reason}")
    sys.exit(77)


def rot13(data: bytes) -> bytes:
    out = bytearray(data)
    for i, b in enumerate(out):
        if 65 <= b <= 90:
            out[i] = (b - 65 + 13) % 26 + 65
        elif 97 <= b <= 122:
            out[i] = (b - 97 + 13) % 26 + 97
    return bytes(out)


def free_port(host):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout, step=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def connects(host, port):
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def stop_group(proc):
    """SIGKILL to the process group proc leads (ours: start_new_session), then reap it; returns None."""
    if proc is not None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    return None


class Instance:
    """One rot13d, in its own process group, logging to a file."""

    def __init__(self, binary, work, name, host):
        self.binary, self.name, self.host = binary, name, host
        self.port = free_port(host)          # PROXY v2: HAProxy's
        self.any_port = free_port(host)      # PROXY v1 or v2: the corpus
        self.plain_port = free_port(host)    # no header: direct checks
        self.agent_port = free_port(host)    # HAProxy's agent-check
        self.config = os.path.join(work, f"{name}.toml")
        self.log_path = os.path.join(work, f"{name}.log")
        user = 'user = "root"\n' if os.geteuid() == 0 else ""
        with open(self.config, "w") as f:
            f.write(f'listen = [{{ address = "{host}:{self.port}", proxy_protocol = "v2" }},\n'
                    f'          {{ address = "{host}:{self.any_port}", proxy_protocol = "any" }},\n'
                    f'          "{host}:{self.plain_port}"]\n'
                    f'agent_listen = ["{host}:{self.agent_port}"]\n'
                    f'log_target = "stderr"\n{user}workers = 2\nconnection_log = "all"\n'
                    f'shutdown_timeout = {SHUTDOWN_TIMEOUT}\nproxy_header_timeout = 3\n')
        self.proc = None

    def start(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.binary, "--config", self.config], stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=log, start_new_session=True)
        log.close()
        if not wait_for(lambda: connects(self.host, self.plain_port), 10):
            raise RuntimeError(f"rot13d {self.name} did not start: {self.log()[-2000:]}")

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def kill_group(self, sig):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def stop(self):
        self.proc = stop_group(self.proc)


class HAProxy:
    def __init__(self, work, instances):
        self.port = free_port("127.0.0.1")
        self.sock = os.path.join(work, "haproxy.sock")
        self.config = os.path.join(work, "haproxy.cfg")
        self.log_path = os.path.join(work, "haproxy.log")
        servers = "".join(f"    server {i.name} {i.host}:{i.port} {SERVER_OPTIONS.format(agent=i.agent_port)}\n" for i in instances)
        with open(self.config, "w") as f:
            f.write(f"""global
    log stdout format raw local0
    stats socket {self.sock} mode 600 level admin
    maxconn 1000

defaults
    mode tcp
    log global
    option log-health-checks
    timeout connect 1s
    timeout client 10s
    timeout server 10s
    retries 3
    option redispatch 1

frontend fe
    bind 127.0.0.1:{self.port}
    no log
    default_backend rot13d

backend rot13d
    balance leastconn
    option tcp-check
    tcp-check send "Hello\\n"
    tcp-check expect string "Uryyb"
{servers}""")
        self.proc = None

    def start(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(["haproxy", "-f", self.config, "-db"], stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=log, start_new_session=True)
        log.close()
        if not wait_for(lambda: os.path.exists(self.sock) and connects("127.0.0.1", self.port), 10):
            raise RuntimeError(f"haproxy did not start: {self.log()[-2000:]}")

    def command(self, text):
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(self.sock)
            s.sendall(text.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def stat(self, server, field):
        """A field of the server's row in `show stat` ("status": UP, DOWN, DRAIN, ...)."""
        lines = self.command("show stat").splitlines()
        fields = lines[0].lstrip("# ").split(",")
        for line in lines[1:]:
            row = dict(zip(fields, line.split(",")))
            if row.get("pxname") == "rot13d" and row.get("svname") == server:
                return row.get(field, "")
        return ""

    def status(self, server):
        return self.stat(server, "status")

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self):
        self.proc = stop_group(self.proc)


class Load:
    """rot13-bench connect through HAProxy, in the background."""

    def __init__(self, bench, port, seconds):
        self.proc = subprocess.Popen([bench, "connect", "-c", str(LOAD_CONNECTIONS), "-s", "64",
                                      "-d", f"{seconds}s", "--timeout", "5s", "--json", "-q",
                                      f"127.0.0.1:{port}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def result(self):
        out, err = self.proc.communicate(timeout=60)
        try:
            r = json.loads(out)
        except ValueError:
            return {"cycles": 0, "errors": -1, "failures": {}, "first_error": err.decode()[-300:]}
        return r


def figures(r):
    kinds = ", ".join(f"{k} {v}" for k, v in r.get("failures", {}).items() if v)
    return f"{r['cycles']} cycles, {r['errors']} errors" + (f" ({kinds})" if kinds else "")


class Suite:
    def __init__(self, rot13d, bench, corpus, work):
        self.bench, self.corpus = bench, corpus
        self.a = Instance(rot13d, work, "a", "127.0.0.2")
        self.b = Instance(rot13d, work, "b", "127.0.0.3")
        self.haproxy = HAProxy(work, [self.a, self.b])
        self.passed = self.failed = 0

    def report(self, ok, name, text):
        print(f"{'PASS' if ok else 'FAIL'} {name}: {text}", flush=True)
        if ok:
            self.passed += 1
        else:
            self.failed += 1

    def wait_up(self, *names, timeout=10):
        return wait_for(lambda: all(self.haproxy.status(n) == "UP" for n in names), timeout)

    def health_failures(self, since):
        """Health-check failures and DOWN transitions logged after offset `since`."""
        text = self.haproxy.log()[since:]
        return [l for l in text.splitlines() if re.search(r"Health check for server \S+ failed|is DOWN", l)]

    def restart(self, instance):
        instance.stop()
        instance.start()
        return self.wait_up(instance.name)

    # a. Correct answers, and each client's own address and port in the log.
    def clients_real_address(self):
        n = 20
        clients = []
        for i in range(n):
            s = socket.socket()
            s.settimeout(5)
            s.bind(("127.0.0.4", 0))  # not HAProxy's source address (127.0.0.1)
            s.connect(("127.0.0.1", self.haproxy.port))
            clients.append(s)
        wrong = 0
        ports = []
        for i, s in enumerate(clients):
            data = f"Hello, client {i}: the quick brown fox\n".encode() * 50
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            got = b""
            while chunk := s.recv(65536):
                got += chunk
            wrong += got != rot13(data)
            ports.append(s.getsockname()[1])
            s.close()
        logs = {}

        def logged():
            logs["a"], logs["b"] = self.a.log(), self.b.log()
            return all(f"connection from 127.0.0.4:{p} to 127.0.0.1:{self.haproxy.port} closed" in
                       logs["a"] + logs["b"] for p in ports)
        found_all = wait_for(logged, 5)
        found = sum(f"connection from 127.0.0.4:{p} " in logs["a"] + logs["b"] for p in ports)
        on_a = sum(f"connection from 127.0.0.4:{p} " in logs["a"] for p in ports)
        line = next((l for l in (logs["a"] + logs["b"]).splitlines()
                     if f"connection from 127.0.0.4:{ports[0]} " in l), "none")
        line = line.split(" info: ", 1)[-1]
        # The agents' "up ready N%" of idle instances: weight N of the configured 100.
        weights = [self.haproxy.stat(name, "weight") for name in ("a", "b")]
        weighted = all(w.isdigit() and 90 <= int(w) <= 100 for w in weights)
        self.report(wrong == 0 and found_all and weighted, "a clients' real address",
                    f"{n - wrong}/{n} answers correct, {found}/{n} client ports in the logs "
                    f"({on_a} on a, {found - on_a} on b); agent weights {'/'.join(weights)}; "
                    f"e.g. \"{line}\"")

    # b. SIGTERM of one instance under load. A connection held open straight
    # to it keeps it draining: HAProxy must learn "drain" from its agent while
    # that connection is still served, and the load must see no error.
    def sigterm(self):
        held = socket.create_connection((self.a.host, self.a.plain_port), timeout=5)
        held.sendall(b"held\n")
        first = held.recv(100)
        load = Load(self.bench, self.haproxy.port, 4)
        time.sleep(1.5)
        t0 = time.monotonic()
        os.kill(self.a.proc.pid, signal.SIGTERM)  # the supervisor alone: it stops its workers
        drained = wait_for(lambda: self.haproxy.status("a").startswith("DRAIN"), 5, step=0.005)
        drain_ms = (time.monotonic() - t0) * 1000
        held.sendall(b"still held\n")
        second = held.recv(100)
        held.close()
        self.a.proc.wait(timeout=SHUTDOWN_TIMEOUT + 5)
        stopped = time.monotonic() - t0
        r = load.result()
        served = first == b"uryq\n" and second == b"fgvyy uryq\n"
        up = self.restart(self.a)
        bound_ms = 2 * INTER_MS + 100  # the next agent check, a late one, and our polling
        ok = r["errors"] == 0 and r["cycles"] > 0 and drained and drain_ms <= bound_ms and served and up
        self.report(ok, "b SIGTERM under load",
                    f"{figures(r)}; HAProxy saw DRAIN from the agent after {drain_ms:.0f} ms "
                    f"(agent-inter {INTER_MS} ms, bound {bound_ms} ms): {drained}; the held connection "
                    f"served while draining: {served}; a stopped in {stopped:.2f} s; back UP: {up}")

    # c. kill -9 of one instance (supervisor and workers) under load.
    def kill9(self):
        load = Load(self.bench, self.haproxy.port, 3)
        time.sleep(1.0)
        t0 = time.monotonic()
        self.a.kill_group(signal.SIGKILL)
        marked = wait_for(lambda: self.haproxy.status("a").startswith("DOWN"), 5, step=0.005)
        down_ms = (time.monotonic() - t0) * 1000
        r = load.result()
        self.a.proc.wait()
        up = self.restart(self.a)
        bound_ms = INTER_MS * FALL + 100  # + the check's own time and our polling
        # Only connections that were open on the killed instance may fail.
        ok = marked and down_ms <= bound_ms and 0 <= r["errors"] <= LOAD_CONNECTIONS and up
        self.report(ok, "c kill -9 under load",
                    f"marked DOWN after {down_ms:.0f} ms (inter x fall = {INTER_MS * FALL} ms, "
                    f"bound {bound_ms} ms); {figures(r)} (at most {LOAD_CONNECTIONS} open); back UP: {up}")

    # d. A reload, then a live upgrade, of one instance under load.
    def reload_upgrade(self):
        since = len(self.haproxy.log())
        load = Load(self.bench, self.haproxy.port, 5)
        time.sleep(1.0)
        t0 = time.monotonic()
        reload = subprocess.run([self.a.binary, "--reload", str(self.a.proc.pid)], capture_output=True, timeout=30)
        reload_s = time.monotonic() - t0
        time.sleep(1.0)
        t0 = time.monotonic()
        upgrade = subprocess.run([self.a.binary, "--upgrade", str(self.a.proc.pid)], capture_output=True, timeout=30)
        upgrade_s = time.monotonic() - t0
        r = load.result()
        bad = self.health_failures(since)
        ok = reload.returncode == 0 and upgrade.returncode == 0 and r["errors"] == 0 and r["cycles"] > 0 and not bad
        self.report(ok, "d reload and upgrade under load",
                    f"reload exit {reload.returncode} in {reload_s:.2f} s, upgrade exit {upgrade.returncode} "
                    f"in {upgrade_s:.2f} s; {figures(r)}; {len(bad)} health-check failures"
                    + (f" ({bad[0]})" if bad else ""))

    # e. Malformed PROXY headers straight to a PROXY listener.
    def malformed(self):
        def send(payload, wait):
            s = socket.create_connection((self.a.host, self.a.any_port), timeout=wait)
            got = b""
            try:
                s.sendall(payload)
                s.shutdown(socket.SHUT_WR)
                while chunk := s.recv(65536):
                    got += chunk
                closed = True
            except ConnectionResetError:
                closed = True
            except socket.timeout:
                closed = False
            s.close()
            return got, closed

        bad = []
        for name in MALFORMED_SEEDS:
            with open(os.path.join(self.corpus, name), "rb") as f:
                header = f.read()[2:]  # the fuzzer's first two bytes are its own parameters
            got, closed = send(header + b"Hello\n", 8)
            if got or not closed:
                bad.append(f"{name}: {'answered ' + repr(got[:20]) if got else 'left open'}")
        controls = 0
        for name in VALID_SEEDS:
            with open(os.path.join(self.corpus, name), "rb") as f:
                header = f.read()[2:]
            got, _ = send(header + b"Hello\n", 5)
            controls += got.endswith(b"Uryyb\n")  # some seeds carry data of their own
        s = socket.create_connection(("127.0.0.1", self.haproxy.port), timeout=5)
        s.sendall(b"still there\n")
        s.shutdown(socket.SHUT_WR)
        answer = s.recv(100)
        s.close()
        serves = answer == b"fgvyy gurer\n" and self.a.proc.poll() is None
        s = socket.create_connection((self.a.host, self.a.plain_port), timeout=5)
        s.sendall(b"abc")
        s.shutdown(socket.SHUT_WR)
        serves = serves and s.recv(10) == b"nop"
        s.close()
        ok = not bad and controls == len(VALID_SEEDS) and serves
        self.report(ok, "e malformed headers",
                    f"{len(MALFORMED_SEEDS) - len(bad)}/{len(MALFORMED_SEEDS)} closed unanswered"
                    + (f" ({'; '.join(bad)})" if bad else "")
                    + f", {controls}/{len(VALID_SEEDS)} well-formed controls answered; a still serves: {serves}")

    # f. docs/fleet.md's examples: quoted verbatim there, and valid.
    def documented_examples(self):
        docs = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs")
        with open(os.path.join(docs, "fleet.md")) as f:
            fleet = f.read()
        problems = []
        for name in sorted(os.listdir(os.path.join(docs, "examples"))):
            with open(os.path.join(docs, "examples", name)) as f:
                if "```\n" + f.read() + "```\n" not in fleet:
                    problems.append(f"{name} differs from its copy in fleet.md")
        cfg = subprocess.run(["haproxy", "-c", "-f", os.path.join(docs, "examples", "haproxy.cfg")],
                             capture_output=True, text=True)
        if cfg.returncode != 0:
            problems.append("haproxy -c: " + (cfg.stdout + cfg.stderr).strip()[-300:])
        toml = subprocess.run([self.a.binary, "--check-config", "--quiet", "--config",
                               os.path.join(docs, "examples", "rot13d-fleet.toml")], capture_output=True, text=True)
        if toml.returncode != 0:
            problems.append("rot13d --check-config: " + (toml.stdout + toml.stderr).strip()[-300:])
        self.report(not problems, "f documented examples",
                    "; ".join(problems) or "fleet.md quotes each example verbatim; haproxy -c and "
                    "rot13d --check-config accept them")

    def run(self):
        try:
            self.a.start()
            self.b.start()
            self.haproxy.start()
            if not self.wait_up("a", "b"):
                raise RuntimeError("HAProxy never saw both servers UP:\n" + self.haproxy.log()[-2000:])
            for scenario in (self.clients_real_address, self.sigterm, self.kill9, self.reload_upgrade,
                             self.malformed, self.documented_examples):
                try:
                    scenario()
                except Exception as e:  # one broken scenario does not hide the others
                    self.report(False, scenario.__name__, f"{type(e).__name__}: {e}")
        except Exception as e:
            self.report(False, "setup", f"{type(e).__name__}: {e}")
        finally:
            self.haproxy.stop()
            self.a.stop()
            self.b.stop()
        print(f"{self.passed} passed, {self.failed} failed")
        return 0 if self.failed == 0 else 1


def main():
    if len(sys.argv) != 5:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    rot13d, bench, corpus, work = sys.argv[1:]
    if not shutil.which("haproxy"):
        skip("haproxy is not installed (bash .ci/deps installs it)")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    started = time.monotonic()
    status = Suite(os.path.abspath(rot13d), os.path.abspath(bench), corpus, work).run()
    print(f"({time.monotonic() - started:.1f} s; logs in {work})")
    return status


if __name__ == "__main__":
    sys.exit(main())
