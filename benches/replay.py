#!/usr/bin/env python3
"""How fast `rawprox replay` sends a capture again (SPEC §10), in one run,
each against a baseline measured in the same run, over 127.0.0.1 only:

  1. one connection of 1 GiB of client bytes to a discarding server
     (socat to /dev/null):
       rawprox replay ID --pace fast      against
       rawprox extract ID | socat - TCP   (the same bytes, no replay)
     target: replay at least 0.8x the baseline's speed.
  2. 10,000 short HTTP exchanges (`Connection: close`) to a local HTTP
     server, --concurrency 64, in connections per second:
       rawprox replay --pace fast --concurrency 64   against
       wrk -c 64 -H 'Connection: close'               (on the same server)
     target: at least 0.5x.

Each row: wall seconds, peak RSS (/usr/bin/time -v), and the ratio. The
captures are written directly as NDJSON lines (SPEC §4). Needs socat, wrk
and /usr/bin/time (installed with apt-get if missing); builds release/
first. Bounded: every command has a time limit.

Usage: python3 benches/replay.py [--size-gib N] [--exchanges N] [--keep DIR]
"""

import argparse
import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "release", "rawprox.exe")
CHUNK = 32 * 1024
LIMIT_SECONDS = 600
BODY = b"hello from the bench server\n"
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(BODY)) + BODY
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


def need(tool, package):
    if shutil.which(tool) is None and not os.path.exists(tool):
        print(f"== installing {package}", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", package], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(name, command):
    """Runs `command` (a shell line) under /usr/bin/time -v: seconds, peak
    RSS in MiB, stdout."""
    result = subprocess.run(["/usr/bin/time", "-v", "bash", "-c", command],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            timeout=LIMIT_SECONDS)
    if result.returncode != 0:
        sys.exit(f"{name} failed ({result.returncode}): {result.stderr[-2000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", result.stderr).group(1)
    parts = [float(p) for p in wall.split(":")]
    seconds = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    rss_kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr).group(1))
    print(f"   {name}: {seconds:.2f} s, {rss_kib / 1024:.1f} MiB", flush=True)
    return seconds, rss_kib / 1024, result.stdout


def stamp(micros):
    secs, frac = divmod(micros, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:06d}Z"


def write_big_capture(path, size):
    """One connection: `size` bytes of client text in 32 KiB lines, then
    the client's close. Text, so the log is about the size of the bytes."""
    start = 1_761_147_167_000_000
    client, target = "127.0.0.1:40000", "127.0.0.1:9"
    payload = (b"abcdefghijklmnopqrstuvwxyz0123456789" * (CHUNK // 36 + 1))[:CHUNK].decode()
    lines = size // CHUNK
    with open(path, "w") as f:
        f.write(f'{{"time":"{stamp(start)}","ConnID":"Big00001","event":"open","from":"{client}","to":"{target}","listen_port":8080}}\n')
        for i in range(lines):
            f.write(f'{{"time":"{stamp(start + 1 + i)}","ConnID":"Big00001","data":"{payload}","from":"{client}","to":"{target}"}}\n')
        f.write(f'{{"time":"{stamp(start + 2 + lines)}","ConnID":"Big00001","event":"close","from":"{client}","to":"{target}"}}\n')
    return lines * CHUNK


def conn_id(n):
    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    out = ""
    for _ in range(8):
        n, d = divmod(n, 62)
        out = digits[d] + out
    return out


def write_http_capture(path, exchanges):
    """`exchanges` connections, each a request, the bench server's answer,
    the target's close, 100 microseconds apart."""
    start = 1_761_147_167_000_000
    target = "127.0.0.1:9"
    esc = lambda b: b.decode().replace("\r", "\\r").replace("\n", "\\n")
    with open(path, "w") as f:
        for n in range(exchanges):
            cid, client, t = conn_id(1000 + n), f"127.0.0.1:{20000 + n % 40000}", start + 100 * n
            f.write(f'{{"time":"{stamp(t)}","ConnID":"{cid}","event":"open","from":"{client}","to":"{target}","listen_port":8080}}\n')
            f.write(f'{{"time":"{stamp(t + 10)}","ConnID":"{cid}","data":"{esc(REQUEST)}","from":"{client}","to":"{target}"}}\n')
            f.write(f'{{"time":"{stamp(t + 20)}","ConnID":"{cid}","data":"{esc(RESPONSE)}","from":"{target}","to":"{client}"}}\n')
            f.write(f'{{"time":"{stamp(t + 30)}","ConnID":"{cid}","event":"close","from":"{target}","to":"{client}"}}\n')


def http_server(port, stop):
    """A small asyncio HTTP server: reads a request's head, answers, closes."""
    async def handle(reader, writer):
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(RESPONSE)
            await writer.drain()
        except Exception:
            pass
        writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024, reuse_address=True)
        async with server:
            while not stop.is_set():
                await asyncio.sleep(0.1)

    asyncio.run(main())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-gib", type=float, default=1.0)
    parser.add_argument("--exchanges", type=int, default=10_000)
    parser.add_argument("--keep", help="write the captures in this directory and leave them")
    args = parser.parse_args()
    need("socat", "socat")
    need("wrk", "wrk")
    need("/usr/bin/time", "time")
    print("== release build", flush=True)
    subprocess.run(["bash", os.path.join(ROOT, ".ci", "release")], check=True,
                   stdout=subprocess.DEVNULL)
    work = args.keep or tempfile.mkdtemp(prefix="rawprox-replay-bench-")
    os.makedirs(work, exist_ok=True)
    results = []
    try:
        # 1. One big connection to a discarding server.
        big = os.path.join(work, "big.ndjson")
        print(f"== capture: one connection of {args.size_gib} GiB", flush=True)
        size = write_big_capture(big, int(args.size_gib * (1 << 30)))
        subprocess.run(["cat", big], stdout=subprocess.DEVNULL)  # warm the page cache
        port = free_port()
        sink = subprocess.Popen(["socat", "-u", f"TCP-LISTEN:{port},reuseaddr,fork,bind=127.0.0.1", "OPEN:/dev/null"])
        time.sleep(0.5)
        try:
            print("== 1 GiB to a discarding server", flush=True)
            base, base_rss, _ = timed("extract | socat",
                                      f"{BIN} extract Big00001 {big} | socat -u - TCP:127.0.0.1:{port}")
            rep, rep_rss, out = timed("replay --pace fast",
                                      f"{BIN} replay Big00001 --to 127.0.0.1:{port} --pace fast {big}")
            assert out.split()[-1] == "same", out
        finally:
            sink.terminate()
        results.append(("1 GiB, one connection", f"{size / rep / 2**20:.0f} MiB/s", f"{size / base / 2**20:.0f} MiB/s",
                        base / rep, 0.8, rep_rss, base_rss))

        # 2. Many short HTTP exchanges.
        http = os.path.join(work, "http.ndjson")
        print(f"== capture: {args.exchanges} HTTP exchanges", flush=True)
        write_http_capture(http, args.exchanges)
        port = free_port()
        stop = threading.Event()
        server = threading.Thread(target=http_server, args=(port, stop), daemon=True)
        server.start()
        time.sleep(0.5)
        try:
            print("== short HTTP exchanges, concurrency 64", flush=True)
            rep, rep_rss, out = timed("replay --concurrency 64",
                                      f"{BIN} replay --to 127.0.0.1:{port} --pace fast --concurrency 64 --json {http} || test $? = 1")
            rows = out.splitlines()
            same = sum('"verdict":"same"' in r for r in rows)
            assert len(rows) == args.exchanges, len(rows)
            rep_rate = len(rows) / rep
            wrk_s, wrk_rss, wrk_out = timed("wrk -c 64",
                                            f"wrk -t 2 -c 64 -d 10s -H 'Connection: close' http://127.0.0.1:{port}/")
            wrk_rate = float(re.search(r"Requests/sec:\s*([\d.]+)", wrk_out).group(1))
            print(f"   replay: {rep_rate:.0f} connections/s ({same} same); wrk: {wrk_rate:.0f} requests/s", flush=True)
        finally:
            stop.set()
        results.append((f"{args.exchanges} HTTP exchanges", f"{rep_rate:.0f} conn/s", f"{wrk_rate:.0f} conn/s",
                        rep_rate / wrk_rate, 0.5, rep_rss, wrk_rss))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    print()
    print("| case | replay | baseline | ratio | target | replay peak RSS | baseline peak RSS |")
    print("|---|---|---|---|---|---|---|")
    for case, rep, base, ratio, target, rss, base_rss in results:
        print(f"| {case} | {rep} | {base} | {ratio:.2f}x | {target}x | {rss:.1f} MiB | {base_rss:.1f} MiB |")


if __name__ == "__main__":
    main()
