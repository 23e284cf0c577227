#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""run.py -- runs every test of the project and ends with one line `N passed, M failed`.

    python3 tests/run.py --build build [--unit-only | --e2e-only] [--quick] [-k PATTERN] [-j N]

Unit tests: every cmocka binary BUILD/tests/test_* (TAP output, one result per test).
End-to-end tests: every tests/e2e/test_*.py, each test function counted on its own,
one subprocess per file (tests/e2e/harness.py runs it) under a watchdog, so nothing
can hang CI. With VALGRIND=1 the harness runs registryd under valgrind.
Exit status: 0 only if no test failed and at least one ran.
"""

import argparse
import glob
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
UNIT_TIMEOUT = 120      # seconds per unit-test binary
E2E_TIMEOUT = 150       # seconds per e2e file (each test also has its own alarm)
TAP_RE = re.compile(r"^(ok|not ok) (\d+)(?: - (.*?))?(?: # (SKIP)\b ?(.*))?$")


class Tally:
    """Counts results and prints one line per test (thread-safe: e2e files may run in parallel)."""

    def __init__(self):
        self.passed = self.failed = self.skipped = 0
        self.failures = []
        self.lock = threading.Lock()

    def add(self, status, name, duration, detail=""):
        with self.lock:
            if status == "pass":
                self.passed += 1
                tag = "PASS"
            elif status == "skip":
                self.skipped += 1
                tag = "SKIP"
            else:
                self.failed += 1
                tag = "FAIL"
                self.failures.append((name, detail))
            line = "%s %-60s %6.2fs" % (tag, name, duration)
            if status == "skip" and detail:
                line += "  (%s)" % detail
            print(line, flush=True)
            if status == "fail" and detail:
                print(indent(detail), flush=True)


def indent(text, n=4):
    return "\n".join(" " * n + l for l in text.rstrip().splitlines())


SAN_RE = re.compile(r"ERROR: \w+Sanitizer|runtime error:|==\d+==ERROR")


def excerpt(lines, n=30):
    """The part of a program's output worth reading: a sanitizer report from its start
    (its useful head, not the shadow-byte dump at its end), else the last n lines."""
    for i, l in enumerate(lines):
        if SAN_RE.search(l):
            return "\n".join(lines[max(0, i - 3):i + 40])
    return "\n".join(lines[-n:])


def kill_group(p):
    """Stops a child we started and everything it started (its own process group)."""
    for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            return
        try:
            p.wait(grace)
            return
        except subprocess.TimeoutExpired:
            pass


def run_unit(path, tally, pattern):
    """One cmocka binary: each TAP line is a result; a crash or a non-zero exit that the
    TAP lines do not explain counts as one more failure."""
    name = os.path.basename(path)
    env = dict(os.environ, CMOCKA_MESSAGE_OUTPUT="TAP")
    t0 = time.monotonic()
    p = subprocess.Popen([path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                         cwd=ROOT, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=UNIT_TIMEOUT)
        timed_out = False
    except subprocess.TimeoutExpired:
        kill_group(p)
        out, _ = p.communicate()
        timed_out = True
    elapsed = time.monotonic() - t0
    text = out.decode(errors="replace")
    lines = text.splitlines()
    planned = ran = failed = 0
    for i, line in enumerate(lines):
        m = re.match(r"^1\.\.(\d+)$", line)
        if m:
            planned += int(m.group(1))
            continue
        m = TAP_RE.match(line)
        if not m:
            continue
        ran += 1
        verdict, _, tname, skip, skip_name = m.groups()
        tname = "%s::%s" % (name, (tname or skip_name or "?").strip())
        if skip:
            tally.add("skip", tname, 0)
        elif verdict == "ok":
            tally.add("pass", tname, 0)
        else:
            failed += 1
            detail = []  # the '#' lines right after a failure explain it
            for l in lines[i + 1:]:
                if not l.startswith("# ") or l.startswith("# ok -") or l.startswith("# not ok -"):
                    break
                detail.append(l[2:])
            tally.add("fail", tname, 0, "\n".join(detail))
    tail = excerpt(lines)
    if timed_out:
        tally.add("fail", name, elapsed, "killed after %ds (watchdog)\n%s" % (UNIT_TIMEOUT, tail))
    elif ran < planned:
        tally.add("fail", name, elapsed, "exit %s after %d of %d tests (crash?)\n%s"
                  % (p.returncode, ran, planned, tail))
    elif p.returncode != 0 and failed == 0:
        tally.add("fail", name, elapsed, "exit status %s with no failed test reported\n%s"
                  % (p.returncode, tail))
    elif ran == 0:
        tally.add("fail", name, elapsed, "no test results (exit %s)\n%s" % (p.returncode, tail))


def run_e2e(path, tally, args, env):
    """One e2e file in its own process group; results stream back as @@E2E lines."""
    base = os.path.splitext(os.path.basename(path))[0]
    cmd = [sys.executable, os.path.join(HERE, "e2e", "harness.py"), path]
    if args.pattern:
        cmd += ["-k", args.pattern]
    if args.quick:
        cmd.append("--quick")
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                         cwd=ROOT, start_new_session=True)
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    deadline = t0 + E2E_TIMEOUT * float(env.get("REG_TIMEOUT_SCALE", "1"))
    buf, noise, running, results = b"", [], None, 0
    timed_out = False
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            break
        if not sel.select(min(left, 1.0)):
            continue
        chunk = os.read(p.stdout.fileno(), 65536)
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf:
            raw, _, buf = buf.partition(b"\n")
            line = raw.decode(errors="replace")
            if line.startswith("@@NOTE "):  # a figure a test reports (e.g. load times)
                print("NOTE " + line[7:], flush=True)
                continue
            if not line.startswith("@@E2E "):
                noise.append(line)
                continue
            try:
                ev = json.loads(line[6:])
            except ValueError:
                noise.append(line)
                continue
            if ev.get("event") == "start":
                running = ev["name"]
            elif ev.get("event") == "result":
                running = None
                results += 1
                tally.add(ev["status"], ev["name"], ev.get("duration", 0), ev.get("detail", ""))
    sel.close()
    if timed_out:
        kill_group(p)
    else:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            kill_group(p)
    elapsed = time.monotonic() - t0
    tail = excerpt(noise, 40)
    if timed_out:
        tally.add("fail", running or base, elapsed,
                  "watchdog: %s killed after %ds%s" % (base, deadline - t0,
                                                       "\n" + tail if tail else ""))
    elif running:
        tally.add("fail", running, elapsed, "harness died during this test (exit %s)\n%s"
                  % (p.returncode, tail))
    elif p.returncode != 0 and results == 0:
        tally.add("fail", base, elapsed, "harness exit %s with no results\n%s" % (p.returncode, tail))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build", help="build directory (default: build)")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--unit-only", action="store_true")
    g.add_argument("--e2e-only", action="store_true")
    ap.add_argument("--quick", action="store_true", help="skip e2e tests marked slow")
    ap.add_argument("-k", dest="pattern", help="only tests whose name contains PATTERN")
    ap.add_argument("-j", dest="jobs", type=int, default=int(os.environ.get("REG_JOBS", "1")),
                    help="e2e files run in parallel (default 1: timing tests stay honest)")
    args = ap.parse_args()

    build = args.build if os.path.isabs(args.build) else os.path.join(ROOT, args.build)
    tally = Tally()
    t0 = time.monotonic()

    if not args.e2e_only:
        bins = sorted(b for b in glob.glob(os.path.join(build, "tests", "test_*"))
                      if os.access(b, os.X_OK) and not b.endswith((".o", ".d")))
        for b in bins:
            if args.pattern and args.pattern not in os.path.basename(b):
                continue
            run_unit(b, tally, args.pattern)

    if not args.unit_only:
        env = dict(os.environ, REG_BUILD=build, PYTHONDONTWRITEBYTECODE="1")
        env.pop("REGISTRY_ADDR", None)
        if os.environ.get("VALGRIND") == "1":
            env.setdefault("REG_TIMEOUT_SCALE", "4")
        files = sorted(glob.glob(os.path.join(HERE, "e2e", "test_*.py")))
        todo = list(files)
        lock = threading.Lock()

        def worker():
            while True:
                with lock:
                    if not todo:
                        return
                    f = todo.pop(0)
                run_e2e(f, tally, args, env)

        threads = [threading.Thread(target=worker) for _ in range(max(1, args.jobs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    total = tally.passed + tally.failed
    if tally.failures:
        print("\nfailed:", flush=True)
        for name, _ in tally.failures:
            print("  " + name)
    print("(%.1fs)%s" % (time.monotonic() - t0, "  no test ran" if total == 0 else ""))
    summary = "%d passed, %d failed" % (tally.passed, tally.failed)
    if tally.skipped:
        summary += ", %d skipped" % tally.skipped
    print(summary, flush=True)
    return 1 if tally.failed or total == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
