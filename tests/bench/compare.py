#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""compare.py -- make bench rows 1 and 2 for two registryd binaries side by side.

    python3 tests/bench/compare.py OLD_REGISTRYD NEW_REGISTRYD [--regbench PATH]
                                   [--rounds N] [--seconds S]

For a change on a request's hot path: starts both daemons (port 0, temporary databases,
--sync full) and a redis-server peer on a free loopback port, preloads the same 100
services into both, then for pipeline 1 and 16 runs rounds of the same regbench lookup
load against old, new and Redis in turn (the order rotates each round, so drift on a
shared machine cancels out). Prints, per row, the median lookups/s and p99 of each, the
registry/Redis ratio of each binary (the figure rows 1 and 2 of make bench report) and
new/old. Every process it starts is stopped by PID; the temporary directory is removed.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_file(path, needle, proc, deadline_s=15.0):
    """Waits until path holds needle; returns the matching line, or None when proc died
    or the deadline passed."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            with open(path) as f:
                for line in f:
                    if needle in line:
                        return line.strip()
        except FileNotFoundError:
            pass
        if proc.poll() is not None:
            return None
        time.sleep(0.05)
    return None


class Procs:
    def __init__(self):
        self.procs = []

    def start(self, argv, stdout, stderr):
        p = subprocess.Popen(argv, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    def stop_all(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def start_registryd(procs, tmp, name, binary):
    out = os.path.join(tmp, name + ".out")
    with open(out, "w") as o, open(os.path.join(tmp, name + ".err"), "w") as e:
        p = procs.start([binary, "--listen", "127.0.0.1:0", "--db", os.path.join(tmp, name + ".db"),
                         "--log", os.path.join(tmp, name + ".log"), "--sync", "full"], o, e)
    line = wait_file(out, "listening on ", p)
    if line is None:
        sys.exit("compare: %s did not start (see %s.err)" % (binary, name))
    return line.split("listening on ", 1)[1]


def start_redis(procs, tmp):
    if shutil.which("redis-server") is None:
        sys.exit("compare: redis-server is not installed (sh scripts/deps.sh redis-server)")
    port = free_port()
    log = os.path.join(tmp, "redis.log")
    p = procs.start(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "no", "--daemonize", "no", "--dir", tmp, "--logfile", log],
                    subprocess.DEVNULL, subprocess.DEVNULL)
    if wait_file(log, "Ready to accept connections", p) is None:
        sys.exit("compare: redis-server did not start")
    return "127.0.0.1:%d" % port


def regbench(rb, args):
    r = subprocess.run([rb, "--json"] + args, capture_output=True, text=True, timeout=600)
    if r.returncode not in (0,):
        sys.exit("compare: regbench %s failed (%d): %s" % (" ".join(args), r.returncode,
                                                           r.stderr.strip()[-300:]))
    return [json.loads(l) for l in r.stdout.splitlines() if l.strip()]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--regbench", default=os.path.join(ROOT, "build", "regbench"))
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=2.0)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="regcompare.")
    procs = Procs()
    try:
        addr = {"old": start_registryd(procs, tmp, "old", a.old),
                "new": start_registryd(procs, tmp, "new", a.new),
                "redis": start_redis(procs, tmp)}
        for name in ("old", "new"):
            regbench(a.regbench, ["--registry", addr[name], "-c", "50", "-n", "1000"])
        regbench(a.regbench, ["--target", "redis", "--registry", addr["redis"], "-c", "50",
                              "-n", "1000"])
        load = ["-c", "50", "--duration", str(a.seconds), "--warmup", "0.5", "--no-preload"]
        order = ["old", "new", "redis"]
        res = {}
        for p in (1, 16):
            for i in range(a.rounds):
                turn = order[i % 3:] + order[:i % 3]
                for name in turn:
                    extra = ["--target", "redis"] if name == "redis" else []
                    r = regbench(a.regbench, extra + ["--registry", addr[name], "-P", str(p)] + load)[0]
                    res.setdefault((p, name), []).append(r)
                print("compare: pipeline %d, round %d/%d done" % (p, i + 1, a.rounds),
                      file=sys.stderr, flush=True)
        print("%d rounds of %.0f s per run, 50 connections; medians" % (a.rounds, a.seconds))
        print("%-4s %-6s %12s %9s %14s" % ("row", "binary", "lookups/s", "p99 us", "vs Redis"))
        for row, p in ((1, 1), (2, 16)):
            med = {n: statistics.median(r["rps"] for r in res[(p, n)]) for n in order}
            p99 = {n: statistics.median(r["p99_us"] for r in res[(p, n)]) for n in order}
            # ratios pair by pair (each round's own Redis run), then the median
            ratio = {n: statistics.median(x["rps"] / y["rps"] for x, y in
                                          zip(res[(p, n)], res[(p, "redis")])) for n in ("old", "new")}
            for n in order:
                vs = "%.3f" % ratio[n] if n != "redis" else ""
                print("%-4s %-6s %12.0f %9.0f %14s" % (row, n, med[n], p99[n], vs))
            newold = statistics.median(x["rps"] / y["rps"] for x, y in
                                       zip(res[(p, "new")], res[(p, "old")]))
            print("%-4s new/old lookups/s %.3f (pair by pair); vs-Redis ratio new/old %.3f"
                  % (row, newold, ratio["new"] / ratio["old"]))
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
