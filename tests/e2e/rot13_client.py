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

Only ever connects to 127.0.0.1.
"""
import errno
import os
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
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
