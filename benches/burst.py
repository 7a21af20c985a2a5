#!/usr/bin/env python3
"""A burst of clients connecting at once (SPEC §3: the listen backlog).

Run from the repository root:  python3 benches/burst.py [RAWPROX] [CLIENTS]

Starts an echo server and rawprox (default release/rawprox.exe, built if
missing) on 127.0.0.1, then opens CLIENTS connections (default 3,000) at
once through the proxy, each sending 16 bytes and reading them back, and
again straight to the echo server. It prints the p50 / p99 / max time from
connect to echo for each, and the kernel's listen drops (TcpExt
ListenDrops) and SYN retransmissions (TcpExt TCPSynRetrans) during each
burst. Everything stays on 127.0.0.1; the burst is bounded in count and
each connection in time (30 s).
"""

import os
import resource
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RAWPROX = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "release", "rawprox.exe")
CLIENTS = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
MESSAGE = b"0123456789abcdef"


def netstat(*names):
    """TcpExt counters from /proc/net/netstat."""
    with open("/proc/net/netstat") as f:
        rows = f.read().splitlines()
    for head, values in zip(rows[::2], rows[1::2]):
        if head.startswith("TcpExt:"):
            table = dict(zip(head.split()[1:], map(int, values.split()[1:])))
            return [table.get(n, 0) for n in names]
    return [0 for _ in names]


def echo_server():
    """A threaded echo server with a big backlog, on an ephemeral port."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(4096)
    sel = selectors.DefaultSelector()
    srv.setblocking(False)
    sel.register(srv, selectors.EVENT_READ)

    def loop():
        while True:
            for key, _ in sel.select():
                if key.fileobj is srv:
                    while True:
                        try:
                            conn, _ = srv.accept()
                        except BlockingIOError:
                            break
                        conn.setblocking(False)
                        sel.register(conn, selectors.EVENT_READ)
                else:
                    conn = key.fileobj
                    try:
                        data = conn.recv(65536)
                    except (BlockingIOError, ConnectionError):
                        data = b""
                    if data:
                        conn.sendall(data)
                    else:
                        sel.unregister(conn)
                        conn.close()

    threading.Thread(target=loop, daemon=True).start()
    return srv.getsockname()[1]


def burst(port):
    """CLIENTS non-blocking connects at once; seconds from connect to echo."""
    sel = selectors.DefaultSelector()
    started = {}
    done = []
    for _ in range(CLIENTS):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        started[s] = time.monotonic()
        sel.register(s, selectors.EVENT_WRITE)
    deadline = time.monotonic() + 30
    while started and time.monotonic() < deadline:
        for key, mask in sel.select(timeout=1):
            s = key.fileobj
            if mask & selectors.EVENT_WRITE:
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                    sel.unregister(s)
                    s.close()
                    del started[s]
                    continue
                s.send(MESSAGE)
                sel.modify(s, selectors.EVENT_READ)
            else:
                try:
                    got = s.recv(64)
                except ConnectionError:
                    got = b""
                if got:
                    done.append(time.monotonic() - started.pop(s))
                else:
                    del started[s]
                sel.unregister(s)
                s.close()
    for s in list(started):
        s.close()
    return sorted(done)


def report(name, port):
    drops, retrans = netstat("ListenDrops", "TCPSynRetrans")
    times = burst(port)
    drops2, retrans2 = netstat("ListenDrops", "TCPSynRetrans")
    if not times:
        print(f"{name}: no connection completed")
        return
    pick = lambda q: times[min(len(times) - 1, int(q * len(times)))] * 1000
    print(
        f"{name:<14} {len(times):>5}/{CLIENTS} echoed  p50 {pick(0.5):7.1f} ms  "
        f"p99 {pick(0.99):7.1f} ms  max {times[-1] * 1000:7.1f} ms  "
        f"listen drops {drops2 - drops:>5}  SYN retransmissions {retrans2 - retrans:>5}"
    )


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 3 * CLIENTS + 100), hard))
    if not os.path.exists(RAWPROX):
        subprocess.run(["bash", ".ci/release"], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    echo = echo_server()
    front = 23999
    with tempfile.TemporaryDirectory() as logs:
        proxy = subprocess.Popen([RAWPROX, f"{front}:127.0.0.1:{echo}", f"@{logs}"])
        try:
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", front), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.05)
            time.sleep(0.5)
            report("direct", echo)
            time.sleep(1)
            report("through proxy", front)
        finally:
            proxy.terminate()
            proxy.wait(timeout=30)


if __name__ == "__main__":
    main()
