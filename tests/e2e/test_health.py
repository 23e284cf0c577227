# SPDX-License-Identifier: BSD-2-Clause
"""test_health.py -- issue 4, liveness: active TCP checks mark dead instances critical and
evict them after exactly --max-failures failed checks, a stopped-then-resumed service is
not evicted, TTL registrations expire without heartbeats, hysteresis (--rise),
self-preservation, and health state that survives a restart.

Checks run every 0.2 s here. Ports the tests point checks at are owned by the test for its
whole duration (class Port): listening when "alive", bound but not listening when "dead",
so a connect is refused and no ephemeral port can ever be the dead port itself (a loopback
connect to a free port in the ephemeral range can connect to itself)."""

import json
import signal
import socket
import time

from harness import binary, err, events, ok, register, scaled, stats, wait_for

FAST = ("--check-interval", "0.2", "--check-timeout", "0.1")


class Port:
    """A loopback port held by the test: alive (listening, never accepting: the kernel
    completes the handshakes, which is all a TCP check needs) or dead (bound only)."""

    def __init__(self, h, alive=True):
        self.h = h
        self.sock = self._bind(0)
        self.port = self.sock.getsockname()[1]
        if alive:
            self.revive()

    def _bind(self, port):
        s = socket.socket(socket.AF_INET)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.h.sockets.append(s)
        s.bind(("127.0.0.1", port))
        return s

    def kill(self):
        """Stops listening (pending handshakes are reset); the port stays ours."""
        self.sock.close()
        self.sock = self._bind(self.port)

    def revive(self):
        self.sock.listen(1024)


def hold_port(h, port):
    """After a service died: keep its port bound (not listening) so checks are refused and
    nothing else takes it. Best effort: the test does not depend on it."""
    s = socket.socket(socket.AF_INET)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        h.sockets.append(s)
    except OSError:
        s.close()


def last_seq(conn):
    evs = events(conn)
    return evs[-1]["seq"] if evs else 0


def of(evs, id_, *names):
    """The events about instance id_ (only those named, when names are given)."""
    return [e for e in evs if e.get("id") == id_ and (not names or e["event"] in names)]


def instance(conn, service, id_):
    """The instance as `lookup --all` shows it, or None when it is gone."""
    r = conn.request({"op": "lookup", "service": service, "all": True})
    if not r.get("ok"):
        err(r, "not_found", "lookup --all %s" % service)
        return None
    for i in r["instances"]:
        if i["id"] == id_:
            return i
    return None


def pipeline(conn, *reqs):
    """Sends the requests in one write and returns their replies: requests the daemon
    answers at once are then answered in the same loop turn, with no check in between."""
    conn.send(b"".join(json.dumps(r).encode() + b"\n" for r in reqs))
    return [conn.recv() for _ in reqs]


def watch_lines(proc, endpoint):
    """regctl watch's readable lines about one endpoint, as (event, detail-dict-or-None):
    SEQ TIME EVENT SERVICE ENDPOINT DETAIL under a header."""
    got = []
    for line in proc.stdout().splitlines():
        parts = line.split(None, 5)
        if len(parts) >= 5 and parts[4] == endpoint:
            detail = json.loads(parts[5]) if len(parts) == 6 and parts[5].startswith("{") else None
            got.append((parts[2], detail))
    return got


def wait_passing_service(h, reg, name, port):
    def found():
        r = reg.request({"op": "lookup", "service": name})
        return r.get("ok") and r["port"] == port and r
    return wait_for(found, 5, "%s (port %d) registered and passing" % (name, port))


# --- the real-process tests the issue asks for ------------------------------------------------

def test_sigkill_service_evicted_after_exactly_n_failures(h):
    """tsserv killed with SIGKILL cannot deregister: it turns critical at the first failed
    check (lookups stop handing it out), is evicted after exactly 3, and a real
    `regctl watch` printed check_failed x3 then evict."""
    reg = h.registry(*FAST, "--max-failures", "3")
    ts = h.service("tsserv", reg.addr)
    first = wait_passing_service(h, reg, "timestamp", ts.port)
    id_ = first["instances"][0]["id"]
    endpoint = "127.0.0.1:%d" % ts.port
    c = reg.conn()

    watch = h.spawn([binary("regctl"), "--registry", reg.addr, "watch", "timestamp"], name="regctl-watch")
    wait_for(lambda: stats(c)["watchers"] == 1, 5, "regctl watch subscribed")
    seq0 = last_seq(c)

    ts.kill9()
    hold_port(h, ts.port)

    # Critical as soon as one check failed: never handed out again, shown as critical.
    # (Violations are collected, not raised: wait_for would retry past an exception.)
    saw_critical, wrong = [], []

    def evicted():
        evs = events(c, since=seq0, service="timestamp")
        if of(evs, id_, "evict"):
            return evs
        if of(evs, id_, "check_failed"):
            look, every = pipeline(c, {"op": "lookup", "service": "timestamp"},
                                   {"op": "lookup", "service": "timestamp", "all": True})
            if every.get("ok"):  # not evicted yet
                if look.get("ok") is not False:
                    wrong.append(("handed out after a failed check", look))
                inst = [i for i in every["instances"] if i["id"] == id_]
                if not inst or inst[0]["status"] != "critical" or inst[0]["failures"] < 1:
                    wrong.append(("not critical after a failed check", every))
                else:
                    saw_critical.append(inst[0]["failures"])
        return None
    evs = wait_for(evicted, 10, "the killed tsserv evicted", interval=0.01)
    assert not wrong, wrong
    assert saw_critical, "never saw the instance critical between its first failure and eviction"

    mine = of(evs, id_)
    assert [e["event"] for e in mine] == ["check_failed"] * 3 + ["evict"], mine
    for k, e in enumerate(mine[:3], 1):
        assert e["detail"]["failures"] == k and e["detail"]["max_failures"] == 3, e
        assert e["service"] == "timestamp" and e["host"] == "127.0.0.1" and e["port"] == ts.port, e
        assert isinstance(e["detail"].get("error"), str) and e["detail"]["error"], e
    assert mine[3]["detail"]["failures"] == 3, mine[3]

    # The watcher (a real process reading the stream) printed the same story.
    def watched():
        got = watch_lines(watch, endpoint)
        return any(ev == "evict" for ev, _ in got) and got
    got = wait_for(watched, 5, "regctl watch printed the evict line")
    assert [ev for ev, _ in got] == ["check_failed"] * 3 + ["evict"], watch.stdout()
    assert [d["failures"] for _, d in got[:3]] == [1, 2, 3], watch.stdout()
    head, *lines = watch.stdout().splitlines()
    assert head.split() == ["SEQ", "TIME", "EVENT", "SERVICE", "ENDPOINT", "DETAIL"], head
    for line in lines:
        seq, when = line.split()[:2]
        assert seq.isdigit() and when.startswith("20") and "timestamp" in line, \
            "unexpected watch line %r" % line

    # ... and so does the activity log.
    def logged():
        with open(reg.log, "rb") as f:
            lines = [json.loads(l) for l in f.read().split(b"\n")[:-1]]
        mine = [l for l in lines if l.get("id") == id_ and l["event"] in ("check_failed", "evict")]
        return len(mine) == 4 and mine
    mine = wait_for(logged, 5, "check_failed x3 and evict in the log")
    assert [(l["event"], l["failures"]) for l in mine] == \
        [("check_failed", 1), ("check_failed", 2), ("check_failed", 3), ("evict", 3)], mine
    assert all(l["service"] == "timestamp" and l["port"] == ts.port and l["level"] == "warn"
               for l in mine), mine

    err(c.request({"op": "lookup", "service": "timestamp", "all": True}), "not_found")
    r = h.regctl("lookup", "timestamp", registry=reg.addr)
    assert r.rc == 1, r
    health = stats(c)["health"]
    assert health["evictions"] == 1 and health["failed_checks"] >= 3, health
    assert health["checked_instances"] == 0 and health["failing"] == 0, health
    watch.signal(signal.SIGTERM)
    assert watch.wait() == 0, "regctl watch exit on SIGTERM: %s" % watch.stderr()


def test_sigstop_shorter_than_n_intervals_not_evicted(h):
    """A service stopped for less than max-failures x interval and resumed stays registered
    (the kernel still completes handshakes of a stopped process, so checks keep passing; the
    point is that nothing evicts it)."""
    reg = h.registry(*FAST, "--max-failures", "3")
    ts = h.service("tsserv", reg.addr)
    first = wait_passing_service(h, reg, "timestamp", ts.port)
    id_ = first["instances"][0]["id"]
    c = reg.conn()
    wait_for(lambda: stats(c)["health"]["checks"] >= 2, 5, "two checks of tsserv")
    seq0 = last_seq(c)
    ts.signal(signal.SIGSTOP)
    try:
        time.sleep(0.4)  # the length of the outage under test (2 intervals < 3), not a wait
        checks_stopped = stats(c)["health"]["checks"]
    finally:
        ts.signal(signal.SIGCONT)
    # Enough checks after the resume that an eviction would have shown.
    wait_for(lambda: stats(c)["health"]["checks"] >= checks_stopped + 6, 10, "6 checks after SIGCONT")
    mine = of(events(c, since=seq0), id_)
    assert not of(mine, id_, "evict", "expire", "deregister"), mine
    inst = instance(c, "timestamp", id_)
    assert inst is not None and inst["status"] == "passing", inst
    r = ok(c.request({"op": "lookup", "service": "timestamp"}))
    assert r["port"] == ts.port, r
    assert stats(c)["health"]["evictions"] == 0
    r = h.regctl("call", "timestamp", "still here", registry=reg.addr)
    assert r.rc == 0 and r.out.rstrip().endswith("] still here"), r


def test_ttl_service_without_heartbeats_expires(h):
    """tsserv with --ttl 1 heartbeats every 1/3 s; stopped, it cannot: heartbeat_missed at
    2/3 of the TTL, then expire (its port still passes checks: only the TTL removes it).
    Resumed, its next heartbeat gets not_found and it registers again."""
    reg = h.registry(*FAST)
    ts = h.service("tsserv", reg.addr, "--ttl", "1")
    first = wait_passing_service(h, reg, "timestamp", ts.port)
    id_ = first["instances"][0]["id"]
    c = reg.conn()
    seq0 = last_seq(c)
    ts.signal(signal.SIGSTOP)
    try:
        def expired():
            evs = of(events(c, since=seq0), id_)
            return of(evs, id_, "expire") and evs
        evs = wait_for(expired, 10, "the stopped tsserv's registration expired")
        # (a heartbeat late under load before the stop may add a heartbeat_missed)
        names = [e["event"] for e in evs]
        assert names[-2:] == ["heartbeat_missed", "expire"], evs
        assert set(names[:-2]) <= {"heartbeat_missed"}, evs
        assert evs[-2]["detail"]["ttl"] == 1 and evs[-1]["detail"]["ttl"] == 1, evs
        assert evs[-1]["service"] == "timestamp" and evs[-1]["port"] == ts.port, evs
        err(c.request({"op": "lookup", "service": "timestamp", "all": True}), "not_found")
        assert stats(c)["health"]["expirations"] == 1
    finally:
        ts.signal(signal.SIGCONT)
    again = wait_passing_service(h, reg, "timestamp", ts.port)
    assert len(again["instances"]) == 1, again


def test_ttl_registration_expires_heartbeat_keeps(h):
    """At the protocol level: ttl 1 without heartbeats -> heartbeat_missed, expire, and a late
    heartbeat is not_found; an instance heartbeated meanwhile (ttl 2) stays."""
    reg = h.registry(*FAST)
    c = reg.conn()
    lone, lone_tok = register(c, "ephemeral", 7001, ttl=1)
    kept, kept_tok = register(c, "ephemeral", 7002, ttl=2)
    t0 = time.monotonic()

    def expired():
        r = ok(c.request({"op": "heartbeat", "id": kept, "token": kept_tok}), "heartbeat")
        assert r["ttl"] == 2, r
        return of(events(c, service="ephemeral"), lone, "expire")
    wait_for(expired, 10, "the unrenewed ttl registration expired", interval=0.05)
    assert time.monotonic() - t0 >= 0.9, "expired before its ttl of 1 s"
    evs = events(c, service="ephemeral")
    assert [e["event"] for e in of(evs, lone)] == ["register", "heartbeat_missed", "expire"], evs
    assert not of(evs, kept, "heartbeat_missed", "expire"), evs
    err(c.request({"op": "heartbeat", "id": lone, "token": lone_tok}), "not_found", "late heartbeat")
    r = ok(c.request({"op": "lookup", "service": "ephemeral", "all": True}))
    assert [i["id"] for i in r["instances"]] == [kept], r
    assert stats(c)["health"]["expirations"] == 1


# --- hysteresis, slow-but-alive, self-preservation --------------------------------------------

def test_hysteresis_rise(h):
    """A critical instance passes again only after --rise (2) consecutive successes: one
    check_passed, failures back to 0; successful checks of a passing instance make no events."""
    reg = h.registry("--check-interval", "0.25", "--check-timeout", "0.2", "--max-failures", "100")
    p = Port(h)
    c = reg.conn()
    id_, _ = register(c, "flappy", p.port, check="tcp")

    def successes():
        hs = stats(c)["health"]
        return hs["checks"] - hs["failed_checks"]
    wait_for(lambda: successes() >= 3, 5, "three passing checks")
    evs = of(events(c, service="flappy"), id_)
    assert [e["event"] for e in evs] == ["register"], "passing checks made events: %r" % evs
    seq0 = evs[-1]["seq"]

    p.kill()
    wait_for(lambda: of(events(c, since=seq0), id_, "check_failed"), 5, "a failed check")
    inst = instance(c, "flappy", id_)
    assert inst["status"] == "critical" and inst["failures"] >= 1, inst
    base = successes()  # stable: the port is dead, nothing can succeed now
    p.revive()

    seen, wrong = set(), []

    def passed():
        st, every = pipeline(c, {"op": "stats"}, {"op": "lookup", "service": "flappy", "all": True})
        k = st["health"]["checks"] - st["health"]["failed_checks"] - base
        status = [i for i in every["instances"] if i["id"] == id_][0]["status"]
        seen.add(k)
        if k < 2:
            if status != "critical":
                wrong.append("passing again after %d success(es) (rise 2)" % k)
            return False
        if status != "passing":
            wrong.append("still %s after %d successes (rise 2)" % (status, k))
        return True
    wait_for(passed, 5, "passing again", interval=0.005)
    assert not wrong, wrong
    assert 1 in seen, "never observed the instance after exactly 1 success (seen %s)" % sorted(seen)

    inst = instance(c, "flappy", id_)
    assert inst["failures"] == 0, inst
    # More passing checks: no further events.
    wait_for(lambda: successes() >= base + 2 + 4, 5, "four more passing checks")
    after = of(events(c, since=seq0), id_)
    names = [e["event"] for e in after]
    assert names[-1] == "check_passed" and names.count("check_passed") == 1, after
    assert set(names[:-1]) == {"check_failed"}, after
    assert [e["detail"]["failures"] for e in after[:-1]] == list(range(1, len(after))), after


def test_live_listener_never_evicted(h):
    """An instance whose port accepts (here: a listener that never even calls accept) is
    checked again and again and stays passing, with no events."""
    reg = h.registry(*FAST, "--max-failures", "2")
    p = Port(h)
    c = reg.conn()
    id_, _ = register(c, "alive", p.port, check="tcp")
    wait_for(lambda: stats(c)["health"]["checks"] >= 10, 10, "ten checks")
    hs = stats(c)["health"]
    assert hs["failed_checks"] == 0 and hs["evictions"] == 0, hs
    assert [e["event"] for e in of(events(c, service="alive"), id_)] == ["register"]
    inst = instance(c, "alive", id_)
    assert inst["status"] == "passing" and inst["failures"] == 0, inst
    assert inst["last_check"] and inst["last_seen"], inst


def test_self_preservation(h):
    """All 4 checked instances fail at once (>= --preserve-min 4, > 50%): preserve_on and no
    eviction however long it lasts. Two come back: once no more than half fail, preserve_off,
    and the evictions of the two still dead, deferred, happen."""
    reg = h.registry(*FAST, "--max-failures", "2", "--preserve-min", "4")
    c = reg.conn()
    ports = [Port(h) for _ in range(4)]
    ids = [register(c, "herd", p.port, check="tcp")[0] for p in ports]
    wait_for(lambda: stats(c)["health"]["checks"] >= 4, 5, "first checks")
    seq0 = last_seq(c)
    for p in ports:  # the registry's view of the network breaks: everything at once
        p.kill()

    def deep_failures():
        evs = events(c, since=seq0)
        if [e for e in evs if e["event"] == "evict"]:
            return evs  # fails just below, at once
        worst = [max([e["detail"]["failures"] for e in of(evs, i, "check_failed")] or [0]) for i in ids]
        return min(worst) >= 4 and evs
    evs = wait_for(deep_failures, 10, "every instance failing 4 times (max-failures 2)")
    assert not [e for e in evs if e["event"] == "evict"], "evicted while failing en masse: %r" % evs
    on = [e for e in evs if e["event"] == "preserve_on"]
    assert len(on) == 1, evs
    assert on[0]["detail"]["checked"] == 4 and on[0]["detail"]["failing"] == 3, on
    assert on[0]["detail"]["threshold"] in (0.5, 50), on
    # preserve_on came before any instance's second failure, so nothing was evicted.
    seconds = [e["seq"] for e in evs if e["event"] == "check_failed" and e["detail"]["failures"] == 2]
    assert on[0]["seq"] < min(seconds), evs
    hs = stats(c)["health"]
    assert hs["preserving"] is True and hs["evictions"] == 0 and hs["failing"] == 4, hs

    seq1 = evs[-1]["seq"]
    ports[0].revive()
    ports[1].revive()

    def both_evicted():
        evs = events(c, since=seq1)
        return len([e for e in evs if e["event"] == "evict"]) >= 2 and evs
    evs = wait_for(both_evicted, 10, "the two dead instances evicted after preserve_off")
    off = [e for e in evs if e["event"] == "preserve_off"]
    assert len(off) == 1, evs
    evicts = [e for e in evs if e["event"] == "evict"]
    assert sorted(e["id"] for e in evicts) == sorted(ids[2:]), evicts
    assert all(e["detail"]["failures"] >= 2 for e in evicts), evicts
    assert off[0]["seq"] < min(e["seq"] for e in evicts), evs
    passed = [e["id"] for e in evs if e["event"] == "check_passed"]
    assert sorted(passed) == sorted(ids[:2]), evs
    r = ok(c.request({"op": "lookup", "service": "herd", "all": True}))
    assert sorted((i["id"], i["status"]) for i in r["instances"]) == \
        sorted((i, "passing") for i in ids[:2]), r
    hs = stats(c)["health"]
    assert hs["preserving"] is False and hs["evictions"] == 2 and hs["failing"] == 0, hs


def test_health_state_survives_restart(h):
    """A critical instance is still critical after SIGTERM + restart, its failure count
    continues where it was (not from 1), and the first sweep runs promptly even with a long
    interval."""
    reg = h.registry(*FAST, "--max-failures", "10")
    c = reg.conn()
    dead = Port(h, alive=False)
    id_, _ = register(c, "fragile", dead.port, check="tcp")
    wait_for(lambda: [e for e in of(events(c, service="fragile"), id_, "check_failed")
                      if e["detail"]["failures"] >= 2], 5, "two failed checks")
    c.close()
    reg2 = reg.restart("--check-interval", "10", "--check-timeout", "1", "--max-failures", "10")
    c = reg2.conn()
    evs = events(c, service="fragile")
    before = [e for e in of(evs, id_, "check_failed")]
    restart_seq = [e for e in events(c) if e["event"] == "start"][-1]["seq"]
    k = [e for e in before if e["seq"] < restart_seq][-1]["detail"]["failures"]
    assert k >= 2, before

    newer, every, look = pipeline(c, {"op": "events", "since": restart_seq, "service": "fragile"},
                                  {"op": "lookup", "service": "fragile", "all": True},
                                  {"op": "lookup", "service": "fragile"})
    inst = [i for i in ok(every)["instances"] if i["id"] == id_][0]
    assert inst["status"] == "critical", inst
    assert inst["last_check"], inst
    err(look, "not_found", "lookup of a critical instance after restart")
    # events answers through the writer: it may see a check the lookups did not; never fewer.
    assert inst["failures"] <= k + len(of(ok(newer)["events"], id_, "check_failed")), (k, inst)
    assert inst["failures"] >= k, (k, inst)

    # The first sweep after a restart does not wait for the 10 s interval.
    t0 = time.monotonic()
    nxt = wait_for(lambda: of(events(c, since=restart_seq), id_, "check_failed"), 4,
                   "a prompt first check after the restart")
    assert nxt[0]["detail"]["failures"] == k + 1, "failure count restarted: %r (was %d)" % (nxt, k)
    assert time.monotonic() - t0 < scaled(4)


def test_list_follows_health(h):
    """`list` is encoded once per catalog change and reused: it must still show each
    status change (passing count) and the eviction, never a stale picture."""
    reg = h.registry(*FAST, "--max-failures", "3")
    alive, dying = Port(h), Port(h)
    c = reg.conn()
    register(c, "mixed", alive.port, check="tcp")
    register(c, "mixed", dying.port, check="tcp")

    def row():
        rows = [s for s in ok(c.request({"op": "list"}))["services"] if s["service"] == "mixed"]
        return rows[0] if rows else None
    assert row()["instances"] == 2 and row()["passing"] == 2, row()
    assert row() == row()   # served again from the encoded list
    dying.kill()
    wait_for(lambda: row()["passing"] == 1, 5, "list shows one passing after a failed check")
    assert row()["instances"] == 2
    wait_for(lambda: row()["instances"] == 1, 5, "list shows the eviction")
    assert row()["passing"] == 1
