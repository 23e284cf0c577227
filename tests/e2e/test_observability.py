# SPDX-License-Identifier: BSD-2-Clause
"""test_observability.py -- issue 4, what registryd shows and remembers: the lookup cache
(hits, invalidation, round-robin, disabled, cached answers as fresh as uncached ones), the
activity log (register and lookup lines with client addresses, lookup summaries, SIGHUP
reopening), the events table (op events: since/limit/service, --events-keep, a "detail"
in every event) and live watchers (op watch, service filter, regctl watch --json, a
watcher that never reads is dropped while the others are served)."""

import datetime
import json
import os
import signal
import time

from harness import Conn, binary, err, events, free_port, ok, register, scaled, stats, wait_for


def lookup(conn, service, **kw):
    req = {"op": "lookup", "service": service}
    req.update(kw)
    return ok(conn.request(req), "lookup %s" % service)


def log_lines(path):
    """The log file as parsed objects (every complete line must be one JSON object; a last
    line still being written is left for the next read)."""
    if not os.path.exists(path):
        return []
    out = []
    with open(path, "rb") as f:
        data = f.read()
    for raw in data.split(b"\n")[:-1]:
        obj = json.loads(raw)
        assert isinstance(obj, dict), raw
        for k in ("ts", "level", "event"):
            assert k in obj, "log line without %s: %r" % (k, raw)
        out.append(obj)
    return out


def local_addr(conn):
    host, port = conn.sock.getsockname()[:2]
    return "%s:%d" % (host, port)


def watcher(reg, service=None):
    c = reg.conn()
    req = {"op": "watch"}
    if service is not None:
        req["service"] = service
    assert c.request(req) == {"ok": True}, "watch %s" % service
    return c


# --- cache -------------------------------------------------------------------------------------

def test_cache_hits_and_invalidation(h):
    reg = h.registry()
    c, other = reg.conn(), reg.conn()
    a, _ = register(c, "cached", 9001, tags=["blue"])
    before = stats(c)["cache"]
    assert before["capacity"] == 4096, before
    for _ in range(10):
        r = lookup(c, "cached")
        assert [i["id"] for i in r["instances"]] == [a], r
    after = stats(c)["cache"]
    assert after["hits"] - before["hits"] >= 5, "10 identical lookups: %r -> %r" % (before, after)
    assert after["entries"] >= 1, after

    # A registration acknowledged (on another connection) is in the very next lookup...
    b, b_tok = register(other, "cached", 9002, tags=["blue"])
    assert sorted(i["id"] for i in lookup(c, "cached")["instances"]) == sorted([a, b])
    assert sorted(i["id"] for i in lookup(c, "cached", tag="blue")["instances"]) == sorted([a, b])
    for _ in range(3):  # (cached again)
        lookup(c, "cached", all=True)
    # ... and so is a deregistration, in every cached form of the answer.
    ok(other.request({"op": "deregister", "id": b, "token": b_tok}))
    assert [i["id"] for i in lookup(c, "cached")["instances"]] == [a]
    assert [i["id"] for i in lookup(c, "cached", tag="blue")["instances"]] == [a]
    assert [i["id"] for i in lookup(c, "cached", all=True)["instances"]] == [a]
    # a re-registration with a new description, too
    register(other, "cached", 9001, description="changed")
    assert lookup(c, "cached")["description"] == "changed"
    assert stats(c)["cache"]["hits"] > after["hits"]


def test_cache_round_robin(h):
    """Round-robin still rotates when the answers come from the cache."""
    reg = h.registry()
    c = reg.conn()
    ports = [9101, 9102, 9103]
    for p in ports:
        register(c, "rr", p)
    hits0 = stats(c)["cache"]["hits"]
    seq = [lookup(c, "rr")["port"] for _ in range(12)]
    assert sorted(seq[:3]) == ports, seq
    assert all(seq[i] == seq[i + 3] for i in range(9)), "not round-robin: %s" % seq
    assert stats(c)["cache"]["hits"] - hits0 >= 6, "the cache was not used"


def _ts(s):
    """An RFC 3339 UTC time as a datetime (None stays None: "never")."""
    if s is None:
        return None
    assert isinstance(s, str) and s.endswith("Z"), s
    return datetime.datetime.fromisoformat(s[:-1] + "+00:00")


def _differ(got, want):
    """Where two instance lists differ: {id: {field: (got, want)}}, or the lists."""
    if [i.get("id") for i in got] != [i.get("id") for i in want]:
        return (got, want)
    return {a["id"]: {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
            for a, b in zip(got, want) if a != b}


def test_cached_lookup_as_fresh_as_uncached(h):
    """A lookup answered from the cache is indistinguishable from one built afresh: when
    passing checks move an instance's last_check (and last_seen) on, or a heartbeat moves
    its last_seen on, the next cached answer shows the same instance objects as a read
    that cannot come from the cache (a form of the lookup never asked before: a new tag
    filter; the cache admits an answer on its second miss at the earliest)."""
    reg = h.registry("--check-interval", "0.2")
    c = reg.conn()
    tags = ["t%d" % i for i in range(32)]
    unasked = {}

    def fresh(service):
        """The instances of a lookup of service that misses the cache."""
        forms = unasked.setdefault(service, [{"tag": t, "all": a} for t in tags for a in (False, True)])
        assert forms, "no lookup form of %s left that was never asked" % service
        before = stats(c)["cache"]
        r = lookup(c, service, **forms.pop())
        after = stats(c)["cache"]
        assert after["misses"] == before["misses"] + 1 and after["hits"] == before["hits"], \
            "a never-asked lookup was not a cache miss: %r -> %r" % (before, after)
        return r["instances"]

    def cached(service, n=3):
        """n plain lookups of service in a row: their instance lists, and how many of them
        the cache answered."""
        before = stats(c)["cache"]["hits"]
        got = [lookup(c, service)["instances"] for _ in range(n)]
        return got, stats(c)["cache"]["hits"] - before

    def checks():
        return stats(c)["health"]["checks"]

    # Passing checks (a listener this test owns) move last_check on, every 0.2 s.
    lst = h.listener()
    live, _ = register(c, "live", lst.getsockname()[1], check="tcp", tags=tags)
    wait_for(lambda: checks() >= 1, 5, "the first check of the live instance")
    got, hits = cached("live")
    assert hits >= 1, "3 plain lookups in a row, none from the cache"
    for rnd in range(3):
        shown = cached("live", 1)[0][0]       # what a plain lookup shows now
        assert [i["id"] for i in shown] == [live], shown
        n0 = checks()
        wait_for(lambda: checks() >= n0 + 2, 5, "two more checks of the live instance")

        def settled():
            """Fresh, cached, fresh: when both fresh reads agree (no check completed in
            between), the cached answers must be exactly that."""
            u1 = fresh("live")
            got, hits = cached("live")
            u2 = fresh("live")
            return u1 == u2 and (u1, got, hits)
        u, got, hits = wait_for(settled, 5, "two fresh reads with no check completing between them",
                                interval=0.05)
        assert u[0]["status"] == "passing" and u[0]["last_check"] is not None, u
        assert shown[0]["last_check"] is None or _ts(u[0]["last_check"]) > _ts(shown[0]["last_check"]), \
            "round %d: two checks later last_check has not moved on: %r -> %r" % (rnd, shown, u)
        for g in got:
            assert g == u, "round %d: a cached lookup differs from a fresh read, {id: {field: " \
                "(cached, fresh)}}: %r" % (rnd, _differ(g, u))
        assert hits >= 1, "round %d: 3 plain lookups in a row, none from the cache" % rnd

    # A heartbeat moves last_seen on (no checks here: nothing else moves it).
    beat, beat_tok = register(c, "beat", 9951, check="none", ttl=60, tags=tags)
    got, hits = cached("beat")
    assert hits >= 1, "3 plain lookups in a row, none from the cache"
    shown = got[-1]
    hb = {"op": "heartbeat", "id": beat, "token": beat_tok}

    def beaten():
        """Heartbeat, then the plain (cached) lookups, then a fresh read: once the
        heartbeat landed in a later millisecond than the registration."""
        assert c.request(hb) == {"ok": True, "ttl": 60}
        got, hits = cached("beat")
        u = fresh("beat")
        return _ts(u[0]["last_seen"]) > _ts(shown[0]["last_seen"]) and (u, got, hits)
    u, got, hits = wait_for(beaten, 5, "a heartbeat to move last_seen on", interval=0.05)
    for g in got:
        assert g == u, "after a heartbeat a cached lookup differs from a fresh read, {id: {field: " \
            "(cached, fresh)}}: %r" % _differ(g, u)


def test_cache_disabled(h):
    reg = h.registry("--cache-size", "0")
    c = reg.conn()
    for p in (9201, 9202):
        register(c, "uncached", p)
    seq = [lookup(c, "uncached")["port"] for _ in range(10)]
    assert sorted(set(seq)) == [9201, 9202] and all(seq[i] != seq[i + 1] for i in range(9)), seq
    cache = stats(c)["cache"]
    assert cache["hits"] == 0 and cache["entries"] == 0 and cache["capacity"] == 0, cache
    # still correct without it
    x, tok = register(c, "uncached", 9203)
    assert 9203 in [i["port"] for i in lookup(c, "uncached")["instances"]]
    ok(c.request({"op": "deregister", "id": x, "token": tok}))
    assert 9203 not in [i["port"] for i in lookup(c, "uncached")["instances"]]


# --- activity log ------------------------------------------------------------------------------

def test_log_register_and_lookup_lines(h):
    """Who registered what, and who asked for what, with the clients' addresses."""
    reg = h.registry("--log-lookups")
    server, client = reg.conn(), reg.conn()
    id_, _ = register(server, "logged", 9301, host=None)  # host: the requester's address
    for _ in range(3):
        lookup(client, "logged")

    def lines():
        got = log_lines(reg.log)
        return len([l for l in got if l["event"] == "lookup"]) >= 3 and got
    got = wait_for(lines, 5, "register and 3 lookup lines in %s" % reg.log)
    regs = [l for l in got if l["event"] == "register"]
    assert len(regs) == 1, regs
    assert regs[0]["service"] == "logged" and regs[0]["id"] == id_, regs
    assert regs[0]["host"] == "127.0.0.1" and regs[0]["port"] == 9301, regs
    assert regs[0]["client"] == local_addr(server), (regs, local_addr(server))
    assert regs[0]["level"] == "info", regs
    looks = [l for l in got if l["event"] == "lookup"]
    assert len(looks) == 3, looks
    for l in looks:
        assert l["service"] == "logged" and l["client"] == local_addr(client), l
    assert got[0]["event"] == "start", got[0]


def test_log_lookup_summary(h):
    """Without --log-lookups: per interval, one lookup line per service asked for, with the
    count and the number of distinct clients (counts add up to the lookups made).

    Every lookup counted here comes from one client on one connection, so each summary
    line says exactly 1 client, whichever interval its lookups fell in and whether a
    client is told apart by its address or by its connection. (The registrations go over
    another connection; they are not lookups and count for nothing.)"""
    reg = h.registry("--log-lookups-interval", "0.2")
    registrar, client = reg.conn(), reg.conn()
    register(registrar, "popular", 9401)
    register(registrar, "rare", 9402)
    for _ in range(10):
        lookup(client, "popular")
    lookup(client, "rare")

    def counted():
        looks = [l for l in log_lines(reg.log) if l["event"] == "lookup"]
        total = {}
        for l in looks:
            total[l["service"]] = total.get(l["service"], 0) + l["count"]
        return total == {"popular": 10, "rare": 1} and looks
    looks = wait_for(counted, 10, "lookup summaries adding up to 10 + 1")
    for l in looks:
        assert type(l["clients"]) is int and l["clients"] == 1, l


def test_sighup_reopens_log(h):
    reg = h.registry()
    c = reg.conn()
    register(c, "before-rotate", 9501)
    wait_for(lambda: [l for l in log_lines(reg.log) if l.get("service") == "before-rotate"], 5,
             "the first register line")
    rotated = reg.log + ".1"
    os.rename(reg.log, rotated)
    reg.signal(signal.SIGHUP)
    wait_for(lambda: os.path.exists(reg.log), 5, "a new log file at %s after SIGHUP" % reg.log)
    register(c, "after-rotate", 9502)
    wait_for(lambda: [l for l in log_lines(reg.log) if l.get("service") == "after-rotate"], 5,
             "the register line in the new file")
    old = log_lines(rotated)
    assert [l for l in old if l.get("service") == "before-rotate"], old
    assert not [l for l in old if l.get("service") == "after-rotate"], old
    new = log_lines(reg.log)
    assert not [l for l in new if l.get("service") == "before-rotate"], new
    assert reg.alive()


# --- events ------------------------------------------------------------------------------------

def test_events_since_limit_service(h):
    reg = h.registry()
    c = reg.conn()
    a = [register(c, "alpha", 9600 + i) for i in range(3)]
    b = [register(c, "beta", 9700 + i) for i in range(2)]
    ok(c.request({"op": "deregister", "id": a[0][0], "token": a[0][1]}))

    every = events(c)
    seqs = [e["seq"] for e in every]
    assert seqs == sorted(set(seqs)), "not oldest first: %s" % seqs
    assert every[0]["event"] == "start", every[0]
    names = [(e["event"], e.get("service"), e.get("id")) for e in every[1:]]
    assert names == [("register", "alpha", i) for i, _ in a] + [("register", "beta", i) for i, _ in b] \
        + [("deregister", "alpha", a[0][0])], names
    for e in every:
        assert set(e) <= {"seq", "ts", "event", "service", "id", "host", "port", "detail"}, e
        assert e["ts"].endswith("Z"), e
    assert every[1]["host"] == "127.0.0.1" and every[1]["port"] == 9600, every[1]

    assert events(c, since=seqs[2]) == every[3:]
    assert events(c, limit=2) == every[:2]
    assert events(c, since=seqs[1], limit=3) == every[2:5]
    assert events(c, since=seqs[-1]) == []
    alpha = events(c, service="alpha")
    assert alpha == [e for e in every if e.get("service") == "alpha"] and len(alpha) == 4, alpha
    assert events(c, service="nothing-here") == []
    # defaults: since 0, limit 100
    r = ok(c.request({"op": "events"}))
    assert r["events"] == every, r
    for k in range(110):
        register(c, "gamma", 10000 + k)
    r = ok(c.request({"op": "events"}))
    assert len(r["events"]) == 100 and r["events"][0]["seq"] == seqs[0], len(r["events"])
    err(c.request({"op": "events", "limit": 10001}), "bad_request", "limit over 10000")
    ok(c.request({"op": "events", "limit": 10000}))

    # regctl events: a readable table, filtered
    res = h.regctl("events", "--service", "alpha", registry=reg.addr)
    assert res.rc == 0, res
    rows = res.out.splitlines()
    assert rows[0].split()[:4] == ["SEQ", "TIME", "EVENT", "SERVICE"], res
    assert [r.split()[2] for r in rows[1:]] == ["register"] * 3 + ["deregister"], res
    res = h.regctl("events", "--since", str(seqs[-3]), "--limit", "1", registry=reg.addr)
    assert res.rc == 0 and len(res.out.splitlines()) == 2 and "beta" in res.out, res


def test_events_keep_bound(h):
    reg = h.registry("--events-keep", "20")
    c = reg.conn()
    for k in range(35):
        register(c, "churn", 11000 + k)
    evs = events(c)
    assert len(evs) == 20, [e["seq"] for e in evs]
    seqs = [e["seq"] for e in evs]
    assert seqs == list(range(seqs[-1] - 19, seqs[-1] + 1)), seqs
    assert evs[-1]["event"] == "register" and evs[-1]["port"] == 11034, evs[-1]
    # still bounded after a restart (which adds stop/start)
    c.close()
    reg2 = reg.restart()
    c = reg2.conn()
    register(c, "churn", 11035)
    evs = events(c)
    assert len(evs) == 20 and evs[-1]["port"] == 11035, [(e["seq"], e["event"]) for e in evs]


# --- watch -------------------------------------------------------------------------------------

def test_watch_filter_and_regctl_json(h):
    reg = h.registry()
    c = reg.conn()
    # The start event is committed after the daemon listens: let it pass before watching.
    seq0 = wait_for(lambda: [e["seq"] for e in events(c) if e["event"] == "start"], 5,
                    "the start event")[-1]
    w_all, w_a = watcher(reg), watcher(reg, "alpha")
    rc_watch = h.spawn([binary("regctl"), "--registry", reg.addr, "--json", "watch", "alpha"],
                       name="regctl-watch")
    wait_for(lambda: stats(c)["watchers"] == 3, 5, "three watchers subscribed")

    a, a_tok = register(c, "alpha", 9801)
    register(c, "beta", 9802)
    ok(c.request({"op": "deregister", "id": a, "token": a_tok}))
    stored = events(c, since=seq0)
    assert [e["event"] for e in stored] == ["register", "register", "deregister"], stored

    got_all = [w_all.recv() for _ in range(3)]
    assert got_all == stored, (got_all, stored)
    got_a = [w_a.recv() for _ in range(2)]
    assert got_a == [e for e in stored if e["service"] == "alpha"], got_a
    for e in got_all:
        assert "ok" not in e, e

    def printed():
        lines = rc_watch.stdout().splitlines()
        return len(lines) >= 2 and lines
    lines = wait_for(printed, 5, "regctl --json watch printed 2 events")
    # only the events: not the subscription's {"ok":true}
    assert [json.loads(l) for l in lines] == got_a, lines

    # the filtered watcher saw nothing of beta: the next thing it gets is alpha's
    register(c, "beta", 9803)
    register(c, "alpha", 9804)
    nxt = w_a.recv()
    assert nxt["service"] == "alpha" and nxt["port"] == 9804, nxt
    # SIGTERM ends regctl watch with exit 0 (sent once it is idle again, having printed).
    wait_for(lambda: [l for l in rc_watch.stdout().splitlines() if '"port":9804' in l], 5,
             "regctl --json watch printed the last event")
    assert '"beta"' not in rc_watch.stdout(), rc_watch.stdout()
    rc_watch.signal(signal.SIGTERM)
    assert rc_watch.wait() == 0, rc_watch.stderr()
    wait_for(lambda: stats(c)["watchers"] == 2, 5, "regctl's watch gone from stats")


def test_every_event_has_detail(h):
    """Every event object carries "detail", an object: {} when there is nothing to say
    (register, reregister, deregister), the figures otherwise (check_failed, evict) -- in
    the events op's reply and in the lines a watcher gets, which are the same objects."""
    reg = h.registry("--check-interval", "0.2", "--max-failures", "2")
    c = reg.conn()
    seq0 = wait_for(lambda: [e["seq"] for e in events(c) if e["event"] == "start"], 5,
                    "the start event")[-1]
    w = watcher(reg)
    wait_for(lambda: stats(c)["watchers"] == 1, 5, "the watcher subscribed")

    a, _ = register(c, "plain", 9851)
    a2, a_tok = register(c, "plain", 9851)  # the same instance again: reregister
    assert a2 == a
    ok(c.request({"op": "deregister", "id": a, "token": a_tok}))
    dead, _ = register(c, "dead", free_port(), check="tcp")  # nothing listens there

    def evicted():
        evs = events(c, since=seq0)
        return [e for e in evs if e["event"] == "evict"] and evs
    stored = wait_for(evicted, 10, "the unreachable instance evicted")
    assert [(e["event"], e["id"]) for e in stored] == [
        ("register", a), ("reregister", a), ("deregister", a), ("register", dead),
        ("check_failed", dead), ("check_failed", dead), ("evict", dead)], stored
    watched = [w.recv() for _ in stored]

    for where, evs in (("events", stored), ("watch", watched)):
        for e in evs:
            assert "detail" in e, "%s: event without \"detail\": %r" % (where, e)
            assert isinstance(e["detail"], dict), "%s: detail is not an object: %r" % (where, e)
        for e in evs[:4]:
            assert e["detail"] == {}, "%s: %s has nothing to say: %r" % (where, e["event"], e)
        assert [e["detail"].get("failures") for e in evs[4:]] == [1, 2, 2], (where, evs[4:])
        assert [e["detail"].get("max_failures") for e in evs[4:6]] == [2, 2], (where, evs[4:6])
    assert watched == stored, (watched, stored)
    start = [e for e in events(c) if e["seq"] == seq0]
    assert len(start) == 1 and isinstance(start[0].get("detail"), dict) and start[0]["detail"], start


def _churn(reg, conns, stop, limit):
    """Re-registers big instances from several connections, one request in flight per
    connection, until stop() or `limit` events; returns how many were made."""
    host = ".".join(["h" * 61] * 4)  # 247 bytes: fat events, fewer needed
    service = "churn-" + "s" * 57
    tokens = [None] * len(conns)     # the host is not ours: re-registering needs the token
    n = 0
    while n < limit:
        for k, c in enumerate(conns):
            req = {"op": "register", "service": service, "host": host, "port": 1000 + k,
                   "check": "none"}
            if tokens[k]:
                req["token"] = tokens[k]
            c.send(req)
        for k, c in enumerate(conns):
            tokens[k] = ok(c.recv(), "churn register")["token"]
        n += len(conns)
        if n % 200 == 0 and stop():
            return n
    return n


def test_watcher_that_never_reads_is_dropped(h):
    """A watcher that stops reading is cut off past --max-output-buffer (final unavailable
    line, then EOF) while the registering clients, a reading watcher (a real regctl) and
    new clients are served all along."""
    reg = h.registry("--max-output-buffer", "4096", "--sync", "normal")
    c = reg.conn()
    lazy = Conn(reg.addr, timeout=10, rcvbuf=4096)
    h.conns.append(lazy)
    lazy.send({"op": "watch"})  # and never read again until it is dropped
    reader = h.spawn([binary("regctl"), "--registry", reg.addr, "watch"], name="regctl-watch")
    wait_for(lambda: stats(c)["watchers"] == 2, 5, "two watchers subscribed")

    gens = [reg.conn(timeout=10) for _ in range(4)]
    deadline = time.monotonic() + scaled(30)
    log = open(reg.log, "rb")  # read incrementally: the churn makes it big
    h.conns.append(log)        # (closed at the end like a connection)
    tail = [b""]

    def dropped():
        """The daemon gave up on it: it is no longer counted, or it logged the limit (it
        may still be flushing what it had queued)."""
        assert time.monotonic() < deadline, "the lazy watcher was not dropped within 30 s"
        if stats(c)["watchers"] == 1:
            return True
        tail[0] = tail[0][-100:] + log.read()
        return b'"event":"limit"' in tail[0]
    n = _churn(reg, gens, dropped, 200000)
    assert dropped(), "the lazy watcher still served after %d events" % n

    # The lazy one: whatever the kernel buffered, then the unavailable line, then EOF.
    lazy.expect_closed(timeout=10)
    wait_for(lambda: stats(c)["watchers"] == 1, 5, "the lazy watcher gone from stats")
    lines = lazy.buf.rstrip(b"\n").split(b"\n")
    assert json.loads(lines[0]) == {"ok": True}, lines[0]
    last = json.loads(lines[-1])
    err(last, "unavailable", "the lazy watcher's last line")
    for l in lines[1:-1][-5:]:
        assert json.loads(l).get("event") in ("register", "reregister"), lines[-6:]

    # Everyone else is still served: new and old clients, and the reading watcher.
    assert ok(reg.request({"op": "ping"}))
    for g in gens:
        ok(g.request({"op": "ping"}))
    register(c, "marker", 9901)

    def marker():
        return [l for l in reader.stdout().splitlines() if " marker " in l]
    wait_for(marker, 10, "the reading watcher got the event after the drop")
    assert reader.alive()
    limits = [l for l in log_lines(reg.log) if l["event"] == "limit"]
    assert [l["client"] for l in limits] == [local_addr(lazy)], limits
    assert limits[0]["limit"] == "max_output_buffer", limits
    reader.signal(signal.SIGTERM)
    assert reader.wait() == 0, reader.stderr()


def test_client_not_reading_replies_is_dropped(h):
    """The same cap for a client that pipelines requests and never reads the replies:
    unavailable line, then the connection is closed (not left open)."""
    reg = h.registry("--max-output-buffer", "4096")
    lazy = Conn(reg.addr, timeout=10, rcvbuf=4096)
    h.conns.append(lazy)
    lazy.send(b"".join(json.dumps({"op": "register", "service": "pipelined", "host": "127.0.0.1",
                                   "port": 1 + i, "check": "none"}).encode() + b"\n"
                       for i in range(500)))
    lazy.expect_closed(timeout=5)
    lines = lazy.buf.rstrip(b"\n").split(b"\n")
    err(json.loads(lines[-1]), "unavailable", "last line to a client over its output cap")
    c = reg.conn()
    ok(c.request({"op": "ping"}))
    wait_for(lambda: stats(c)["connections"] == 1, 5, "the dropped connection gone from stats")
