#!/usr/bin/env python3
"""Compares rawprox with no proxy and with haproxy (mode tcp, logs nothing),
all measured in one run on this machine, everything on 127.0.0.1.

Run from the repository root:
  python3 benches/compare.py [--quick] [--bulk-only] [--rawprox PATH]

It installs iperf3, nginx, haproxy and wrk with apt-get if they are missing,
builds release/rawprox.exe, starts an iperf3 server (bulk) and nginx (HTTP)
as backends, and measures, for no proxy, haproxy (its default threads: one
per core), haproxy with one thread (`nbthread 1`, one event loop, as
rawprox has), rawprox logging to @DIR and rawprox logging to stdout
redirected to a file:

  bulk single stream of 1 GiB and of 2 GiB: binary and text (iperf3 -n,
  --repeating-payload: its digits) in both directions, and a download of
  HTTP-like text (headers, tabs, quotes, `%`, newlines: the bytes the
  encoder escapes) from nginx with curl; wrk keep-alive and Connection: close runs with
  --latency; RSS idle and with 1,000 idle connections; peak RSS per bulk
  run; CPU seconds per GB forwarded (from /proc, until the log is written
  out); for rawprox the backlog (log bytes not yet written when the transfer
  ended); rawprox logging to a directory on tmpfs (/dev/shm: a destination
  that keeps up) beside the disk; and that forwarding stayed
  byte-exact (a 32 MiB random download from nginx and a 32 MiB random echo).

Every load is bounded in bytes and time; logs are deleted after each
workload. It prints a table with rawprox @DIR's ratio to haproxy, to
haproxy with one thread and to no proxy, then one row per bulk transfer.
--bulk-only skips the HTTP and idle measures; --rawprox PATH measures
another build (an older commit's, say) instead of building release/;
--before PATH measures that build too, as "rawprox before @DIR", in the
same run, and adds each measure's ratio of rawprox @DIR to it.
"""

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time


def option_value(name):
    """The path after `name` on the command line, or None."""
    if name not in sys.argv:
        return None
    at = sys.argv.index(name) + 1
    if at >= len(sys.argv) or sys.argv[at].startswith("--"):
        sys.exit(f"Error: {name} needs a path")
    return os.path.abspath(sys.argv[at])


if "--help" in sys.argv or "-h" in sys.argv:
    print(__doc__)
    sys.exit(0)
_values = {sys.argv[i + 1] for i, a in enumerate(sys.argv[:-1]) if a in ("--rawprox", "--before")}
_unknown = [a for a in sys.argv[1:] if a not in ("--quick", "--bulk-only", "--rawprox", "--before") and a not in _values]
if _unknown:
    sys.exit(f"Error: unknown argument {_unknown[0]!r} (see --help)")
QUICK = "--quick" in sys.argv
BULK_ONLY = "--bulk-only" in sys.argv
# Bulk sizes in MiB.
SIZES = (256, 512) if QUICK else (1024, 2048)
WRK_SECONDS = 5 if QUICK else 10
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RAWPROX = option_value("--rawprox") or os.path.join(ROOT, "release", "rawprox.exe")
BEFORE = option_value("--before")
# Bulk workloads: (name, tool, text, reverse).
WORKLOADS = (
    ("binary up", "iperf3", False, False),
    ("binary down", "iperf3", False, True),
    ("text up", "iperf3", True, False),
    ("text down", "iperf3", True, True),
    ("HTTP text down", "curl", True, True),
)

IPERF_PORT, NGINX_PORT, ECHO_PORT = 15201, 18080, 19999
# Front ports of each setup: (bulk, http, echo); all below Linux's
# ephemeral range (32768 and up), so no client socket holds one.
FRONTS = {
    "no proxy": (IPERF_PORT, NGINX_PORT, ECHO_PORT),
    "haproxy": (25201, 28080, 29999),
    "haproxy 1 thread": (24201, 24080, 24999),
    "rawprox @DIR": (26201, 26080, 26999),
    "rawprox >file": (27201, 27080, 27999),
    "rawprox @tmpfs": (22201, 22080, 22999),
}
if BEFORE:
    FRONTS["rawprox before @DIR"] = (21201, 21080, 21999)


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw).stdout


def ensure_tools():
    missing = [t for t in ("iperf3", "nginx", "haproxy", "wrk") if not shutil.which(t) and not os.path.exists(f"/usr/sbin/{t}")]
    if missing:
        print(f"installing {missing} with apt-get", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        packages = ["nginx-light" if t == "nginx" else t for t in missing]
        subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=True, env=env, stdout=subprocess.DEVNULL)


def listening(port):
    """True when something listens on `port` (read from /proc, no probe connection)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).readlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


def wait_port(port, timeout=10):
    deadline = time.time() + timeout
    while not listening(port):
        if time.time() > deadline:
            raise RuntimeError(f"nothing listens on {port}")
        time.sleep(0.05)


def proc_stat(pid):
    """(CPU seconds, VmRSS KiB, VmHWM KiB) of a process."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    status = {l.split(":")[0]: l.split()[1] for l in open(f"/proc/{pid}/status") if l.startswith(("VmRSS", "VmHWM"))}
    return cpu, int(status["VmRSS"]), int(status["VmHWM"])


def wait_idle(pid, timeout=120):
    """Waits until the process has used no CPU for a second: the log of the
    last workload is written out. Returns its CPU seconds then."""
    deadline = time.time() + timeout
    last = proc_stat(pid)[0]
    while time.time() < deadline:
        time.sleep(1)
        now = proc_stat(pid)[0]
        if now - last < 0.02:
            return now
        last = now
    return last


def reset_peak(pid):
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def echo_server(port):
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(64)

    def serve(conn):
        with conn:
            while data := conn.recv(1 << 16):
                conn.sendall(data)

    def accept():
        while True:
            conn, _ = server.accept()
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()


class Setup:
    """The backends and the proxies under test."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="rawprox-compare-")
        os.chmod(self.tmp, 0o755)  # nginx's workers read www/ as an unprivileged user
        self.procs = {}
        self.random_file = os.path.join(self.tmp, "www", "random32m")
        os.makedirs(os.path.dirname(self.random_file))
        with open(self.random_file, "wb") as f:
            f.write(os.urandom(32 * 1024 * 1024))
        with open(os.path.join(self.tmp, "www", "1k"), "wb") as f:
            f.write(b"x" * 1024)
        # HTTP-like text, every kind of byte the encoder treats: escaped
        # (quotes, backslashes, tabs, CR/LF), percent-encoded (%) and plain.
        block = b"".join(
            b"GET /api/v1/items?id=%d&q=caf%%C3%%A9 HTTP/1.1\r\nHost: example.test\r\n"
            b"User-Agent: \"bench\\1.0\"\tAccept: */*\r\nX-Ratio: 100%%\r\n\r\n"
            b"{\"name\": \"item %d\", \"path\": \"C:\\\\data\\\\%d\"}\n" % (i, i, i)
            for i in range(4096)
        )
        for size in SIZES:
            with open(os.path.join(self.tmp, "www", f"text{size}m"), "wb") as f:
                written = 0
                while written < size << 20:
                    chunk = block[: (size << 20) - written]
                    f.write(chunk)
                    written += len(chunk)
        self.logs = os.path.join(self.tmp, "logs")
        self.before_logs = os.path.join(self.tmp, "before-logs")
        self.tmpfs_logs = tempfile.mkdtemp(prefix="rawprox-compare-", dir="/dev/shm")
        self.stdout_file = os.path.join(self.tmp, "stdout.ndjson")

    def start(self):
        self.procs["iperf3"] = subprocess.Popen(["iperf3", "-s", "-p", str(IPERF_PORT)], stdout=subprocess.DEVNULL)
        nginx_conf = os.path.join(self.tmp, "nginx.conf")
        with open(nginx_conf, "w") as f:
            f.write(f"""
worker_processes 1;
pid {self.tmp}/nginx.pid;
error_log {self.tmp}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    client_body_temp_path {self.tmp}/nginx-body;
    proxy_temp_path {self.tmp}/nginx-proxy;
    fastcgi_temp_path {self.tmp}/nginx-fastcgi;
    uwsgi_temp_path {self.tmp}/nginx-uwsgi;
    scgi_temp_path {self.tmp}/nginx-scgi;
    server {{ listen 127.0.0.1:{NGINX_PORT}; root {self.tmp}/www; }}
}}
""")
        self.procs["nginx"] = subprocess.Popen(["nginx", "-c", nginx_conf, "-g", "daemon off;"])
        echo_server(ECHO_PORT)
        for name, threads in (("haproxy", ""), ("haproxy 1 thread", "    nbthread 1\n")):
            haproxy_conf = os.path.join(self.tmp, f"haproxy{FRONTS[name][0]}.cfg")
            with open(haproxy_conf, "w") as f:
                f.write(f"global\n    maxconn 4000\n{threads}defaults\n    mode tcp\n    timeout connect 10s\n"
                        "    timeout client 120s\n    timeout server 120s\n")
                for back, front in zip(FRONTS["no proxy"], FRONTS[name]):
                    f.write(f"listen p{front}\n    bind 127.0.0.1:{front}\n    server s 127.0.0.1:{back}\n")
            self.procs[name] = subprocess.Popen(["haproxy", "-f", haproxy_conf])
        rules = lambda name: [f"{front}:127.0.0.1:{back}" for back, front in zip(FRONTS["no proxy"], FRONTS[name])]
        self.procs["rawprox @DIR"] = subprocess.Popen([RAWPROX, *rules("rawprox @DIR"), f"@{self.logs}"])
        out = open(self.stdout_file, "ab")  # O_APPEND, so truncating it between workloads is safe
        self.procs["rawprox >file"] = subprocess.Popen([RAWPROX, *rules("rawprox >file")], stdout=out)
        self.procs["rawprox @tmpfs"] = subprocess.Popen([RAWPROX, *rules("rawprox @tmpfs"), f"@{self.tmpfs_logs}"])
        if BEFORE:
            before = "rawprox before @DIR"
            self.procs[before] = subprocess.Popen([BEFORE, *rules(before), f"@{self.before_logs}"])
        for ports in FRONTS.values():
            for port in ports:
                wait_port(port)

    def log_bytes(self, name):
        if name == "rawprox >file":
            return os.path.getsize(self.stdout_file)
        logs = {"rawprox @tmpfs": self.tmpfs_logs, "rawprox before @DIR": self.before_logs}.get(name, self.logs)
        if not os.path.isdir(logs):
            return 0
        return sum(os.path.getsize(os.path.join(logs, f)) for f in os.listdir(logs))

    def delete_logs(self):
        shutil.rmtree(self.logs, ignore_errors=True)
        shutil.rmtree(self.before_logs, ignore_errors=True)
        for f in os.listdir(self.tmpfs_logs):
            os.remove(os.path.join(self.tmpfs_logs, f))
        open(self.stdout_file, "w").close()

    def stop(self):
        for name, proc in self.procs.items():
            # haproxy stops at SIGTERM (SIGINT is not one of its signals).
            proc.send_signal(signal.SIGTERM if name.startswith("haproxy") else signal.SIGINT)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)
        shutil.rmtree(self.tmpfs_logs, ignore_errors=True)


def iperf(port, size, text, reverse):
    cmd = ["iperf3", "-c", "127.0.0.1", "-p", str(port), "-n", f"{size}M", "-J"]
    cmd += ["--repeating-payload"] if text else []
    cmd += ["-R"] if reverse else []
    result = json.loads(sh(cmd, timeout=300))
    received = result["end"]["sum_received"]
    return received["bits_per_second"] / 1e9, received["seconds"]


def curl(port, size):
    """Downloads the HTTP-like text file of `size` MiB: (Gbit/s, seconds)."""
    out = sh(["curl", "-s", "-o", "/dev/null", "-w", "%{size_download} %{time_total}",
              f"http://127.0.0.1:{port}/text{size}m"], timeout=300)
    got, seconds = out.split()
    assert int(got) == size << 20, out
    return int(got) * 8 / float(seconds) / 1e9, float(seconds)


def wrk(port, close):
    cmd = ["wrk", "-t2", "-c50", f"-d{WRK_SECONDS}s", "--latency", f"http://127.0.0.1:{port}/1k"]
    cmd += ["-H", "Connection: close"] if close else []
    out = sh(cmd, timeout=WRK_SECONDS + 60)
    assert "Non-2xx" not in out, out
    rps = float(next(l for l in out.splitlines() if l.startswith("Requests/sec:")).split()[1])
    p99 = next(l for l in out.splitlines() if l.strip().startswith("99%")).split()[1]
    value, unit = float(p99.rstrip("usm")), p99.lstrip("0123456789.")
    p99_ms = value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    return rps, p99_ms


def byte_exact(http_port, echo_port, random_file):
    want = hashlib.sha256(open(random_file, "rb").read()).hexdigest()
    with socket.create_connection(("127.0.0.1", http_port)) as s:
        s.sendall(b"GET /random32m HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        got = b""
        while data := s.recv(1 << 16):
            got += data
    head, body = got.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200"), head
    download = hashlib.sha256(body).hexdigest() == want
    payload = os.urandom(32 * 1024 * 1024)
    with socket.create_connection(("127.0.0.1", echo_port)) as s:
        sender = threading.Thread(target=lambda: (s.sendall(payload), s.shutdown(socket.SHUT_WR)))
        sender.start()
        echoed = bytearray()
        while data := s.recv(1 << 16):
            echoed += data
        sender.join()
    return download and bytes(echoed) == payload


def idle_rss(pid, port):
    """RSS, and RSS with 1,000 idle connections open through it (KiB)."""
    time.sleep(0.5)
    before = proc_stat(pid)[1]
    conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(1000)]
    time.sleep(2.5)  # a flush interval, so the open lines are written
    during = proc_stat(pid)[1]
    for c in conns:
        c.close()
    time.sleep(2.5)
    return before, during


def main():
    os.chdir(ROOT)
    ensure_tools()
    if "--rawprox" not in sys.argv:
        subprocess.run(["bash", ".ci/release"], check=True, stdout=subprocess.DEVNULL)
    setup = Setup()
    results = {name: {} for name in FRONTS}
    bulk = []  # one row per transfer: (setup, workload, MiB, Gbit/s, peak KiB, CPU s, backlog bytes)
    try:
        setup.start()
        proxies = [name for name in FRONTS if name != "no proxy"]
        pids = {name: setup.procs[name].pid for name in proxies}
        if not BULK_ONLY:
            for name in proxies:
                results[name]["rss_idle"], results[name]["rss_1000"] = idle_rss(pids[name], FRONTS[name][1])
                setup.delete_logs()
        for name, (bulk_port, http, echo) in FRONTS.items():
            pid = pids.get(name)
            print(f"== {name}", flush=True)
            results[name]["exact"] = byte_exact(http, echo, setup.random_file)
            setup.delete_logs()
            for size in SIZES:
                for workload, tool, text, reverse in WORKLOADS:
                    if pid:
                        # Start from a settled proxy: the last log written
                        # out, its arenas let go (idle trim).
                        cpu0 = wait_idle(pid)
                        time.sleep(2)
                        reset_peak(pid)
                    if tool == "iperf3":
                        gbps, seconds = iperf(bulk_port, size, text, reverse)
                    else:
                        gbps, seconds = curl(http, size)
                    peak = cpu = backlog = None
                    if pid:
                        logged_at_end = setup.log_bytes(name)
                        # CPU until this workload's log is written out too.
                        cpu = wait_idle(pid) - cpu0
                        peak = proc_stat(pid)[2]
                        backlog = setup.log_bytes(name) - logged_at_end
                    bulk.append((name, workload, size, gbps, peak, cpu, backlog))
                    print(f"   {workload} {size} MiB: {gbps:.2f} Gbit/s", flush=True)
                    setup.delete_logs()
            if BULK_ONLY:
                continue
            for close in (False, True):
                if pid:
                    wait_idle(pid)
                rps, p99 = wrk(http, close=close)
                results[name]["close" if close else "keepalive"] = rps
                if not close:
                    results[name]["p99"] = p99
                setup.delete_logs()
    finally:
        setup.stop()
    summarize(results, bulk)
    report(results)
    report_bulk(bulk)


def summarize(results, bulk):
    """The main table's bulk rows: the largest size; CPU per GB and peak
    RSS over the binary and text runs of that size."""
    largest = SIZES[-1]
    for name, workload, size, gbps, peak, cpu, _ in bulk:
        if size != largest:
            continue
        results[name][workload] = gbps
        if peak is None:
            continue
        kind = "binary" if workload.startswith("binary") else "text"
        results[name][f"cpu {kind}"] = results[name].get(f"cpu {kind}", 0) + cpu
        results[name][f"bytes {kind}"] = results[name].get(f"bytes {kind}", 0) + size * 1024 * 1024
        results[name][f"peak {kind}"] = max(results[name].get(f"peak {kind}", 0), peak)
    for r in results.values():
        for kind in ("binary", "text"):
            if f"bytes {kind}" in r:
                r[f"cpu {kind}"] /= r[f"bytes {kind}"] / 1e9


def report_bulk(bulk):
    """One row per transfer, each proxy's ratio to haproxy's same transfer
    (and, with --before, to the build before's)."""
    base = {(w, s): g for n, w, s, g, *_ in bulk if n == "haproxy"}
    before = {(w, s): (g, c) for n, w, s, g, _, c, _ in bulk if n == "rawprox before @DIR"}
    extra = " / before | CPU / before |" if BEFORE else ""
    print(f"\n| proxy | transfer | Gbit/s | / haproxy | peak RSS, MiB | CPU s per GB | backlog at end, MiB |{extra}")
    print("|---|---|---|---|---|---|---|" + ("---|---|" if BEFORE else ""))
    for name, workload, size, gbps, peak, cpu, backlog in bulk:
        if name == "no proxy":
            continue
        ratio = f"{gbps / base[(workload, size)]:.2f}×" if base.get((workload, size)) else "–"
        gb = size * 1024 * 1024 / 1e9
        cells = [f"{peak / 1024:.0f}" if peak else "–", f"{cpu / gb:.2f}" if cpu is not None else "–",
                 f"{backlog / 2**20:.0f}" if backlog is not None and name.startswith("rawprox") else "–"]
        if BEFORE:
            then_gbps, then_cpu = before.get((workload, size), (None, None)) if name.startswith("rawprox") else (None, None)
            cells.append(f"{gbps / then_gbps:.2f}×" if then_gbps else "–")
            cells.append(f"{cpu / then_cpu:.2f}×" if then_cpu and cpu is not None else "–")
        print(f"| {name} | {workload}, {size // 1024 if size >= 1024 else size}{' GiB' if size >= 1024 else ' MiB'} "
              f"| {gbps:.2f} | {ratio} | {' | '.join(cells)} |")


def report(results):
    rows = [
        ("bulk binary up, Gbit/s", "binary up", "{:.2f}"),
        ("bulk binary down, Gbit/s", "binary down", "{:.2f}"),
        ("bulk text up, Gbit/s", "text up", "{:.2f}"),
        ("bulk text down, Gbit/s", "text down", "{:.2f}"),
        ("bulk HTTP-like text down, Gbit/s", "HTTP text down", "{:.2f}"),
        ("keep-alive 1 KiB, 50 conns, req/s", "keepalive", "{:,.0f}"),
        ("keep-alive p99 latency, ms", "p99", "{:.2f}"),
        ("new connection per request, conn/s", "close", "{:,.0f}"),
        ("RSS idle, MiB", "rss_idle", "kib"),
        ("RSS with 1,000 idle connections, MiB", "rss_1000", "kib"),
        ("peak RSS, binary bulk, MiB", "peak binary", "kib"),
        ("peak RSS, text bulk, MiB", "peak text", "kib"),
        ("CPU s per GB forwarded, binary", "cpu binary", "{:.2f}"),
        ("CPU s per GB forwarded, text", "cpu text", "{:.2f}"),
        ("byte-exact (32 MiB down + echo)", "exact", "bool"),
    ]
    names = list(FRONTS)

    def fmt(spec, value):
        if value is None:
            return "–"
        if spec == "kib":
            return f"{value / 1024:.1f}"
        if spec == "bool":
            return "yes" if value else "NO"
        return spec.format(value)

    bases = ("haproxy", "haproxy 1 thread", "no proxy") + (("rawprox before @DIR",) if BEFORE else ())
    header = f"| measure | {' | '.join(names)} | {' | '.join(f'rawprox @DIR / {b}' for b in bases)} |"
    print("\n" + header)
    print("|" + "---|" * (len(names) + 1 + len(bases)))
    for label, key, spec in rows:
        cells = [fmt(spec, results[n].get(key)) for n in names]
        ratios = []
        for base in bases:
            a, b = results["rawprox @DIR"].get(key), results[base].get(key)
            ratios.append(f"{a / b:.2f}×" if isinstance(a, (int, float)) and not isinstance(a, bool) and b else "–")
        print(f"| {label} | {' | '.join(cells)} | {' | '.join(ratios)} |")
    print(f"\n(bulk: {SIZES[-1]} MiB per run; HTTP: wrk -t2 -c50 -d{WRK_SECONDS}s on a 1 KiB file from nginx;"
          f" {os.cpu_count()} cores; {time.strftime('%Y-%m-%d')})")
    if not all(results[n].get("exact") for n in names):
        sys.exit("forwarding was not byte-exact")


if __name__ == "__main__":
    main()
