#!/usr/bin/env python3
"""Paired A/B of one bulk transfer through two rawprox builds, alternating,
everything on 127.0.0.1: an iperf3 server behind each build, each build
logging to its own directory on disk (@DIR), the same transfer through
old, new, old, new, ... For each: Gbit/s, CPU seconds per GB forwarded
(until the log is written out) and peak RSS, as compare.py measures them.

Run from the repository root:
  python3 benches/ab_bulk.py OLD NEW [--mib N] [--rounds N] [--down] [--text]

OLD and NEW are rawprox executables (an older commit's release build, say);
--mib the transfer's size (default 512), --rounds how many pairs (3),
--down the server sends (iperf3 -R), --text iperf3's repeating digits
instead of random binary. Needs iperf3 (compare.py installs it).
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
args = sys.argv[1:]
if "--help" in args or "-h" in args or len(args) < 2:
    print(__doc__)
    sys.exit(0 if "--help" in args or "-h" in args else 2)


def value(name, default):
    if name not in args:
        return default
    at = args.index(name) + 1
    if at >= len(args) or not args[at].isdigit():
        sys.exit(f"Error: {name} needs a number")
    return int(args[at])


_valued = {args[i + 1] for i, a in enumerate(args[:-1]) if a in ("--mib", "--rounds")}
for a in args[2:]:
    if a not in ("--mib", "--rounds", "--down", "--text") and a not in _valued:
        sys.exit(f"Error: unknown argument {a!r} (see --help)")
OLD, NEW = (os.path.abspath(a) for a in args[:2])
MIB, ROUNDS = value("--mib", 512), value("--rounds", 3)
DOWN, TEXT = "--down" in args, "--text" in args
# compare.py reads its own options at import: give it none.
sys.argv = sys.argv[:1]
import compare  # noqa: E402  (its helpers: iperf, wait_idle, proc_stat, reset_peak)

SERVER, FRONT = 15301, 16301


def main():
    iperf = subprocess.Popen(["iperf3", "-s", "-p", str(SERVER)], stdout=subprocess.DEVNULL)
    procs, logs = {}, {}
    try:
        for k, (name, path) in enumerate((("old", OLD), ("new", NEW))):
            logs[name] = tempfile.mkdtemp(prefix=f"rawprox-ab-{name}-")
            procs[name] = subprocess.Popen([path, f"{FRONT + k}:127.0.0.1:{SERVER}", f"@{logs[name]}"])
            compare.wait_port(FRONT + k)
        compare.wait_port(SERVER)
        for round_ in range(ROUNDS):
            for k, name in enumerate(procs):
                pid = procs[name].pid
                cpu0 = compare.wait_idle(pid)
                time.sleep(2)
                compare.reset_peak(pid)
                gbps, _ = compare.iperf(FRONT + k, MIB, TEXT, DOWN)
                cpu = compare.wait_idle(pid) - cpu0
                peak = compare.proc_stat(pid)[2] / 1024
                print(f"round {round_} {name}: {gbps:.2f} Gbit/s, "
                      f"{cpu / (MIB * 2**20 / 1e9):.2f} CPU s per GB, peak {peak:.0f} MiB", flush=True)
                # The directory goes, files being written included.
                shutil.rmtree(logs[name], ignore_errors=True)
    finally:
        for proc in procs.values():
            proc.send_signal(2)
            proc.wait()
        iperf.terminate()
        for d in logs.values():
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
