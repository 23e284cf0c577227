#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""cluster.py -- the cluster rows of `make bench` (issue 11): registryd nodes on a real
etcd cluster (Debian etcd-server), started on free loopback ports and stopped by PID.

    python3 tests/bench/cluster.py BUILD_DIR [--rounds N]

C1  propagation: a registration acknowledged by node A, until node B's (and C's) watch
    stream delivers its event: p50 / p99 over 1,000 registrations (one client, in turn).
C2  write latency: a registration's round trip on an etcd node and on a SQLite node
    (--sync full), p50 / p99, same machine, same client.
C3  lookups: regbench lookup rate (50 conns) on an etcd-backed node against a
    SQLite-backed one, alternating, median of N rounds and the ratio.
C4  an etcd leader SIGKILLed during a stream of registrations: time from the kill until a
    write started after it succeeds (N rounds), and acknowledged registrations lost.
C5  a registryd node SIGKILLed: time until the other nodes check its whole share.
"""

import os
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
os.environ.setdefault("REG_BUILD", sys.argv[1] if len(sys.argv) > 1 else "build")

import harness  # noqa: E402
from etcd import EtcdCluster  # noqa: E402

ROUNDS = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 3


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def ms(x):
    return "%.2f ms" % (x * 1000)


def nodes(h, c, n, *flags):
    return [h.registry_etcd(c, *flags, node="n%d" % (i + 1), log=h.path("n%d.log" % (i + 1)))
            for i in range(n)]


def reg(conn, service, port, **kw):
    rq = {"op": "register", "service": service, "host": "127.0.0.1", "port": port,
          "check": "none"}
    rq.update(kw)
    return conn.request(rq)


def watcher(node, seen, stop):
    """Records when each register event arrives on node's watch stream."""
    w = node.conn(timeout=30)
    w.send({"op": "watch"})
    w.recv()
    while not stop.is_set():
        try:
            ev = w.recv(timeout=0.5)
        except (AssertionError, OSError, ValueError):
            continue
        if ev.get("event") == "register":
            seen[ev.get("port")] = time.monotonic()


def c1_c2(h, out):
    c = EtcdCluster(h, 3)
    a, b, cc = nodes(h, c, 3)
    stop = threading.Event()
    seen_b, seen_c = {}, {}
    ts = [threading.Thread(target=watcher, args=(b, seen_b, stop), daemon=True),
          threading.Thread(target=watcher, args=(cc, seen_c, stop), daemon=True)]
    for t in ts:
        t.start()
    time.sleep(0.3)  # the watches are open (their first reply came)
    conn = a.conn(timeout=10)
    acked, rtt = {}, []
    for i in range(1000):
        t0 = time.monotonic()
        r = reg(conn, "prop", 20000 + i)
        t1 = time.monotonic()
        assert r.get("ok"), r
        acked[20000 + i] = t1
        rtt.append(t1 - t0)
    harness.wait_for(lambda: len(seen_b) >= 1000 and len(seen_c) >= 1000, timeout=20,
                     msg="every event on B and C")
    stop.set()
    d = [seen[p] - acked[p] for seen in (seen_b, seen_c) for p in acked]
    out.append(("C1", "propagation A ack -> B/C watch event (2,000 deliveries)",
                "p50 %s, p99 %s, max %s (negative: B's event came before A's reply reached the "
                "client)" % (ms(pct(d, 50)), ms(pct(d, 99)), ms(max(d)))))
    # C2: one registration's round trip, etcd (3 members) vs SQLite --sync full
    s = h.registry(db=h.path("c2.db"), log=h.path("c2.log"))
    sconn = s.conn(timeout=10)
    srtt = []
    for i in range(1000):
        t0 = time.monotonic()
        assert reg(sconn, "prop", 20000 + i).get("ok")
        srtt.append(time.monotonic() - t0)
    out.append(("C2", "register round trip, one client in turn",
                "etcd (3 members) p50 %s p99 %s; SQLite --sync full p50 %s p99 %s"
                % (ms(pct(rtt, 50)), ms(pct(rtt, 99)), ms(pct(srtt, 50)), ms(pct(srtt, 99)))))
    return c, a, s


def regbench_rate(node):
    p = subprocess.run([harness.binary("regbench"), "--registry", node.addr, "-c", "50",
                        "--duration", "2", "--warmup", "0.5", "--seed", "7", "-q", "--json"],
                       capture_output=True, timeout=120)
    import json
    for line in p.stdout.decode().splitlines():
        try:
            o = json.loads(line)
        except ValueError:
            continue
        if o.get("test") == "lookup":
            return float(o.get("rps") or o.get("ops_per_sec") or o.get("rate") or 0)
    raise AssertionError("regbench: %s %s" % (p.stdout[-300:], p.stderr[-300:]))


def c3(h, out, etcd_node, sqlite_node):
    e, s = [], []
    for _ in range(ROUNDS):
        e.append(regbench_rate(etcd_node))
        s.append(regbench_rate(sqlite_node))
    me, msq = statistics.median(e), statistics.median(s)
    out.append(("C3", "lookups, regbench 50 conns, median of %d" % ROUNDS,
                "etcd node %.0f/s, SQLite node %.0f/s, ratio %.2f" % (me, msq, me / msq)))


def c4(h, out):
    gaps, lost_total, acked_total = [], 0, 0
    for rnd in range(ROUNDS):
        h = harness.Harness("bench-c4")  # a cluster of its own each round
        try:
            gap, lost, n = c4_round(h, rnd)
        finally:
            h.cleanup()
        gaps.append(gap)
        lost_total += lost
        acked_total += n
    out.append(("C4", "etcd leader kill -9: kill -> first write started after it succeeds",
                "median %.2f s, max %.2f s over %d kills; %d of %d acknowledged registrations lost"
                % (statistics.median(gaps), max(gaps), len(gaps), lost_total, acked_total)))


def c4_round(h, rnd):
    if True:
        c = EtcdCluster(h, 3)
        (a,) = nodes(h, c, 1)
        stop = threading.Event()
        acked, lat = [], []

        def writer():
            conn = a.conn(timeout=8)
            i = 0
            while not stop.is_set():
                i += 1
                t0 = time.monotonic()
                try:
                    r = reg(conn, "c4r%d" % rnd, 10000 + i)
                except (OSError, ValueError, AssertionError):
                    conn = a.conn(timeout=8)
                    continue
                lat.append((t0, time.monotonic(), bool(r.get("ok"))))
                if r.get("ok"):
                    acked.append(10000 + i)

        t = threading.Thread(target=writer)
        t.start()
        harness.wait_for(lambda: len(acked) > 50, timeout=10, msg="writes flowing")
        leader = c.wait_leader()
        t_kill = time.monotonic()
        c.kill9(leader)
        harness.wait_for(lambda: any(ok and t0 > t_kill for (t0, t1, ok) in lat), timeout=15,
                         msg="a write after the kill")
        stop.set()
        t.join(20)
        gap = min(t1 for (t0, t1, ok) in lat if ok and t0 > t_kill) - t_kill
        found = {i["port"] for i in a.request({"op": "lookup", "service": "c4r%d" % rnd,
                                               "all": True}).get("instances", [])}
        return gap, len(set(acked) - found), len(acked)


def c5(h, out):
    c = EtcdCluster(h, 1)
    ns = nodes(h, c, 3, "--check-interval", "1")
    lst = [h.listener() for _ in range(30)]
    for i, s in enumerate(lst):
        assert ns[0].request({"op": "register", "service": "c5", "host": "127.0.0.1",
                              "port": s.getsockname()[1]}).get("ok")

    def owned(n):
        return n.request({"op": "stats"})["health"]["owned"]
    harness.wait_for(lambda: sum(owned(n) for n in ns) == 30, msg="30 owned")
    had = owned(ns[0])
    t0 = time.monotonic()
    ns[0].kill9()
    harness.wait_for(lambda: owned(ns[1]) + owned(ns[2]) == 30, timeout=15, msg="taken over")
    out.append(("C5", "registryd node kill -9: its share (%d of 30) checked by the others" % had,
                "after %.2f s (node lease %d s)" % (time.monotonic() - t0, 3)))


def main():
    out = []
    steps = [("C1/C2", lambda h: c1_c2(h, out)), ("C4", lambda h: c4(h, out)),
             ("C5", lambda h: c5(h, out))]
    h = harness.Harness("bench-cluster")
    try:
        try:
            c, etcd_node, sqlite_node = c1_c2(h, out)
            c3(h, out, etcd_node, sqlite_node)
        except Exception as e:
            out.append(("C1-3", "not run", str(e)[:200]))
    finally:
        h.cleanup()
    for name, fn in steps[1:]:
        h = harness.Harness("bench-cluster")
        try:
            fn(h)
        except Exception as e:  # a row that cannot run says why; the others go on
            out.append((name, "not run", str(e)[:200]))
        finally:
            h.cleanup()
    print("\nCluster rows (registryd --etcd on a real etcd %s, loopback, %d cores):"
          % ("3.4", os.cpu_count()))
    for row, what, res in out:
        print("  %-3s %-62s %s" % (row, what, res))


if __name__ == "__main__":
    main()
