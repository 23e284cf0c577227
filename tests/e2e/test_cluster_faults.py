# SPDX-License-Identifier: BSD-2-Clause
"""test_cluster_faults.py -- registryd nodes on a real etcd cluster when things fail,
and TTLs as etcd leases (the cluster basics and the helpers are test_cluster.py's).

An etcd leader's death costs writes at most a few seconds and loses nothing
acknowledged; without quorum, writes say so (in doubt) and lookups go on, and every node
converges once etcd is back; a hung member's watch moves on; a compacted history is
reloaded; heartbeats on any node renew a lease, maintenance holds it, and its end is one
expire event."""

import json
import threading
import time

from harness import wait_for, scaled, timeout
from etcd import require
from test_cluster import nodes, register, lookup_all, events, stats, err_code


@timeout(120)
def test_etcd_leader_death_loses_nothing(h):
    require()
    c = h.etcd(3)
    a, b = nodes(h, c, 2)
    acked, dereg, doubt = [], [], set()  # doubt: ports whose write failed (in doubt)
    stop = threading.Event()
    lat = []

    def writer():
        i = 0
        conn = a.conn(timeout=6)
        while not stop.is_set():
            i += 1
            t0 = time.monotonic()
            try:
                r = conn.request({"op": "register", "service": "load", "host": "127.0.0.1",
                                  "port": 10000 + i, "check": "none"})
            except (OSError, ValueError, AssertionError):
                conn = a.conn(timeout=6)
                continue
            t1 = time.monotonic()
            lat.append((t0, t1, bool(r.get("ok"))))
            if not r.get("ok"):
                doubt.add(10000 + i)
            else:
                acked.append((10000 + i, r["id"], r["token"]))
                if i % 5 == 0:  # every fifth is deregistered again
                    d = conn.request({"op": "deregister", "id": r["id"], "token": r["token"]})
                    if d.get("ok"):
                        dereg.append(r["id"])
                    else:
                        doubt.add(10000 + i)

    t = threading.Thread(target=writer)
    t.start()
    try:
        wait_for(lambda: len(acked) >= 20, timeout=10, msg="registrations flowing")
        leader = c.wait_leader()
        t_kill = time.monotonic()
        c.kill9(leader)
        # writes succeed again within 4 s of the kill
        wait_for(lambda: any(ok and t0 > t_kill for (t0, t1, ok) in lat), timeout=8,
                 msg="a write that started after the kill succeeds")
        first_ok = min(t1 for (t0, t1, ok) in lat if ok and t0 > t_kill)
        assert first_ok - t_kill < scaled(4.0), "writes back %.2fs after the kill" % (first_ok - t_kill)
        wait_for(lambda: len(acked) >= 40, timeout=10, msg="more registrations")
    finally:
        stop.set()
        t.join(scaled(20))
    # Every acknowledged registration is there, no acknowledged deregistration came
    # back; a write that failed is in doubt and may be either way.
    gone = set(dereg)
    live = {port for (port, iid, _) in acked if iid not in gone} - doubt

    def check(found):
        ports = {i["port"] for i in found}
        missing = live - ports
        back = {port for (port, iid, _) in acked if iid in gone} & ports
        extra = ports - live - doubt
        return (missing, back, extra)

    for n in (a, b):
        wait_for(lambda n=n: check(lookup_all(n, "load")) == (set(), set(), set()), timeout=10,
                 msg="the acknowledged state on %s" % n.flags[3])
    stored = [json.loads(v) for v in c.range("/registry/instances/").values()]
    assert check(stored) == (set(), set(), set())
    print("writes back %.2fs after the leader's kill; %d acknowledged, %d in doubt"
          % (first_ok - t_kill, len(acked), len(doubt)))


@timeout(120)
def test_quorum_lost_writes_refused_lookups_go_on(h):
    require()
    c = h.etcd(3)
    a, b = nodes(h, c, 2, "--etcd-timeout", "1.5")
    assert register(a, "keep", 7000)["ok"]
    wait_for(lambda: lookup_all(b, "keep"), msg="keep on B")
    c.stop(1)
    c.stop(2)
    t0 = time.monotonic()
    r = register(a, "new", 7001)
    took = time.monotonic() - t0
    assert not r["ok"] and err_code(r) == "unavailable", r
    assert "etcd" in r["error"]["message"] and "doubt" in r["error"]["message"], r
    assert took < scaled(4.5), took
    # lookups still answer from the catalog, and stats says etcd is away
    assert lookup_all(a, "keep") and lookup_all(b, "keep")
    for n in (a, b):
        wait_for(lambda n=n: stats(n)["store"]["connected"] is False, timeout=10,
                 msg="%s says it is not connected" % n.flags[3])
    c.start(1)
    c.start(2)
    c.wait_healthy()
    r = wait_for(lambda: register(b, "after", 7002) if register(b, "after", 7002)["ok"] else None,
                 timeout=10, msg="writes work again")
    assert r["ok"]
    for n in (a, b):
        wait_for(lambda n=n: lookup_all(n, "after"), msg="converged on %s" % n.flags[3])
        wait_for(lambda n=n: stats(n)["store"]["connected"], msg="connected again")
    wait_for(lambda: events(a) == events(b), msg="the same events on A and B")


@timeout(60)
def test_ttl_is_a_lease_any_node_renews(h):
    require()
    c = h.etcd(1)
    a, b = nodes(h, c, 2)
    r = a.request({"op": "register", "service": "beat", "host": "127.0.0.1", "port": 6000,
                   "ttl": 2, "check": "none"})
    assert r["ok"], r
    iid, tok = r["id"], r["token"]
    wait_for(lambda: lookup_all(b, "beat"), msg="beat on B")
    # heartbeats keep it alive well past its TTL: to the node it registered with, then
    # to the other one, then to both in turn
    def beat(which, seconds):
        end = time.monotonic() + seconds
        k = 0
        while time.monotonic() < end:
            node = which[k % len(which)]
            hb = node.request({"op": "heartbeat", "id": iid, "token": tok})
            assert hb["ok"], (k, node.flags[3], hb)
            k += 1
            time.sleep(0.5)
        assert lookup_all(a, "beat") and lookup_all(b, "beat")
    beat([a], 3)
    beat([b], 3)
    beat([a, b], 2)
    # in maintenance it does not expire (an operator's decision), heartbeats or not
    m = b.request({"op": "maintenance", "id": iid, "enable": True})
    assert m["ok"], m
    time.sleep(3)  # no heartbeat: longer than its TTL (2 s) and etcd's expiry check
    for n in (a, b):
        assert [i["status"] for i in lookup_all(n, "beat")] == ["maintenance"], lookup_all(n, "beat")
    assert json.loads(c.get("/registry/instances/" + iid))["maintenance"] == 1
    m = a.request({"op": "maintenance", "id": iid, "enable": False})
    assert m["ok"], m
    beat([a, b], 2.5)  # back in service: a new lease, which heartbeats on both nodes renew
    # then they stop: it expires on every node, with one expire event
    wait_for(lambda: not lookup_all(a, "beat") and not lookup_all(b, "beat"), timeout=8,
             msg="beat expired everywhere")
    wait_for(lambda: any(e["event"] == "expire" for e in events(b)), msg="expire event")
    time.sleep(0.5)  # a second (wrong) expire would come within the same watch delivery
    evs = events(a)
    assert sum(1 for e in evs if e["event"] == "expire" and e["id"] == iid) == 1, evs
    hb = b.request({"op": "heartbeat", "id": iid, "token": tok})
    assert not hb["ok"] and err_code(hb) == "not_found", hb


@timeout(90)
def test_watch_leaves_a_hung_member(h):
    """The member B's watch is on stops answering (SIGSTOP: no reset, no close): B moves
    its watch to another member within a few seconds and misses nothing."""
    import signal
    require()
    c = h.etcd(3)
    a = h.registry_etcd(",".join(c.urls([1, 2, 0])), node="a", log=h.path("a.log"))
    b = h.registry_etcd(",".join(c.urls([0, 1, 2])), node="b", log=h.path("b.log"))
    assert register(a, "first", 7001)["ok"]
    wait_for(lambda: lookup_all(b, "first"), msg="first on B")
    os_kill = c.members[0].proc.signal
    os_kill(signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        assert register(a, "second", 7002)["ok"]
        wait_for(lambda: lookup_all(b, "second"), timeout=10, msg="second on B")
        took = time.monotonic() - t0
        assert took < scaled(6), took
        wait_for(lambda: events(a) == events(b), msg="the same events")
    finally:
        os_kill(signal.SIGCONT)


@timeout(90)
def test_compacted_history_is_reloaded(h):
    """B is cut off from etcd while A changes things and etcd compacts its history: B's
    watch cannot resume, so B reloads and applies the difference (a new instance comes,
    a deregistered one goes)."""
    require()
    c = h.etcd(3)
    a = h.registry_etcd(",".join(c.urls([1, 2])), node="a", log=h.path("a.log"))
    b = h.registry_etcd(c.urls([0])[0], node="b", log=h.path("b.log"))
    r = register(a, "old", 7001)
    assert r["ok"]
    wait_for(lambda: lookup_all(b, "old"), msg="old on B")
    c.stop(0)
    assert a.request({"op": "deregister", "id": r["id"], "token": r["token"]})["ok"]
    assert register(a, "new", 7002)["ok"]
    for i in range(5):
        assert register(a, "more", 7100 + i)["ok"]
    c.compact(member=1)
    c.start(0)
    wait_for(lambda: lookup_all(b, "new") and not lookup_all(b, "old")
             and len(lookup_all(b, "more")) == 5, timeout=15, msg="B converged")
    def logged():
        with open(h.path("b.log")) as f:
            return "compacted" in f.read()
    wait_for(logged, msg="B's log says it reloaded")
