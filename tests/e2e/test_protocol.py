# SPDX-License-Identifier: BSD-2-Clause
"""test_protocol.py -- every operation of the wire protocol against a real registryd
(issue 2, "The wire protocol"), plus pipelining and many concurrent connections."""

import datetime
import json
import re
import socket

from harness import Skip, ok, err, register, still_serving

NO_SUCH_ID = "0123456789abcdef"
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)$")


def parse_time(s, what="time"):
    assert isinstance(s, str) and RFC3339.match(s), "%s is not an RFC 3339 UTC time: %r" % (what, s)
    s = s.replace("Z", "+00:00")
    if "." in s:  # fromisoformat in 3.11 wants at most 6 fraction digits
        head, frac = s.split(".")
        s = head + "." + (frac[:-6] + "000000")[:6] + "+00:00"
    return datetime.datetime.fromisoformat(s)


def test_ping(h):
    reg = h.registry()
    c = reg.conn()
    assert c.request({"op": "ping"}) == {"ok": True}


def test_register_returns_id_and_token(h):
    reg = h.registry()
    c = reg.conn()
    seen_tokens = set()
    ids = set()
    for port in (1001, 1002, 1003):
        id_, token = register(c, "web", port)
        # >= 128 random bits: at least 32 hex digits or 22 base64 characters
        assert len(token) >= 22, "token too short for 128 bits: %r" % token
        seen_tokens.add(token)
        ids.add(id_)
    assert len(seen_tokens) == 3 and len(ids) == 3, (seen_tokens, ids)


def test_reregister_same_instance(h):
    reg = h.registry()
    c = reg.conn()
    id1, tok1 = register(c, "web", 2000, description="v1")
    id2, tok2 = register(c, "web", 2000, description="v2")
    assert id1 == id2, "re-registering the same (service, host, port) must keep the id"
    assert tok1 != tok2, "re-registering must issue a new token"
    r = c.request({"op": "lookup", "service": "web"})
    ok(r)
    assert len(r["instances"]) == 1, "re-registration made a second instance: %r" % r
    assert r["description"] == "v2" and r["instances"][0]["description"] == "v2", r
    err(c.request({"op": "heartbeat", "id": id1, "token": tok1}), "unauthorized", "heartbeat with old token")
    err(c.request({"op": "deregister", "id": id1, "token": tok1}), "unauthorized", "deregister with old token")
    ok(c.request({"op": "deregister", "id": id2, "token": tok2}), "deregister with new token")
    # a different port or host of the same service is another instance
    ida, _ = register(c, "web", 2001)
    idb, _ = register(c, "web", 2001, host="127.0.0.2")
    assert ida != idb


def test_deregister(h):
    reg = h.registry()
    c = reg.conn()
    id_, token = register(c, "db", 5432)
    err(c.request({"op": "deregister", "id": id_, "token": "f" * len(token)}), "unauthorized",
        "deregister with a wrong token")
    ok(c.request({"op": "lookup", "service": "db"}), "lookup after refused deregister")
    assert c.request({"op": "deregister", "id": id_, "token": token}) == {"ok": True}
    err(c.request({"op": "lookup", "service": "db"}), "not_found", "lookup after deregister")
    err(c.request({"op": "deregister", "id": id_, "token": token}), "not_found", "deregister twice")
    err(c.request({"op": "deregister", "id": NO_SUCH_ID, "token": token}), "not_found",
        "deregister of an unknown id")


def test_heartbeat(h):
    reg = h.registry()
    c = reg.conn()
    id_, token = register(c, "cache", 6379, ttl=30)
    assert c.request({"op": "heartbeat", "id": id_, "token": token}) == {"ok": True, "ttl": 30}
    err(c.request({"op": "heartbeat", "id": id_, "token": "0" * len(token)}), "unauthorized",
        "heartbeat with a wrong token")
    err(c.request({"op": "heartbeat", "id": NO_SUCH_ID, "token": token}), "not_found",
        "heartbeat of an unknown id")
    ok(c.request({"op": "deregister", "id": id_, "token": token}))
    err(c.request({"op": "heartbeat", "id": id_, "token": token}), "not_found",
        "heartbeat after deregister")


def test_lookup_round_robin(h):
    reg = h.registry()
    c = reg.conn()
    ids = {}
    for port in (3001, 3002, 3003):
        ids[port] = register(c, "api", port, description="api on %d" % port, tags=["t%d" % port])[0]
    seen = []
    for _ in range(9):
        r = ok(c.request({"op": "lookup", "service": "api"}))
        assert r["service"] == "api" and r["host"] == "127.0.0.1", r
        seen.append(r["port"])
        assert len(r["instances"]) == 3, r
        for inst in r["instances"]:
            for f in ("id", "host", "port", "description", "tags", "status", "registered_at", "last_seen"):
                assert f in inst, "instance lacks %s: %r" % (f, inst)
            assert inst["status"] == "passing", inst
            assert inst["id"] == ids[inst["port"]], inst
            assert inst["description"] == "api on %d" % inst["port"], inst
            assert inst["tags"] == ["t%d" % inst["port"]], inst
        top = [i for i in r["instances"] if i["port"] == r["port"]]
        assert top and r["description"] == top[0]["description"], r
    for i in range(0, 9, 3):
        assert sorted(seen[i:i + 3]) == [3001, 3002, 3003], "not round-robin: %r" % seen
    # rotation also holds across connections
    seen2 = [reg.request({"op": "lookup", "service": "api"})["port"] for _ in range(3)]
    assert sorted(seen2) == [3001, 3002, 3003], "not round-robin across connections: %r" % seen2


def test_lookup_tag_filter(h):
    reg = h.registry()
    c = reg.conn()
    register(c, "q", 4001, tags=["eu", "prod"])
    register(c, "q", 4002, tags=["us", "prod"])
    register(c, "q", 4003, tags=[])
    ports = set()
    for _ in range(4):
        r = ok(c.request({"op": "lookup", "service": "q", "tag": "prod"}))
        assert sorted(i["port"] for i in r["instances"]) == [4001, 4002], r
        assert r["port"] in (4001, 4002), r
        ports.add(r["port"])
    assert ports == {4001, 4002}, "round-robin within a tag: %r" % ports
    r = ok(c.request({"op": "lookup", "service": "q", "tag": "eu"}))
    assert r["port"] == 4001 and len(r["instances"]) == 1, r
    err(c.request({"op": "lookup", "service": "q", "tag": "asia"}), "not_found", "lookup of an unused tag")


def test_lookup_all(h):
    reg = h.registry()
    c = reg.conn()
    register(c, "s", 5001)
    register(c, "s", 5002)
    r = ok(c.request({"op": "lookup", "service": "s", "all": True}))
    assert sorted(i["port"] for i in r["instances"]) == [5001, 5002], r
    r = ok(c.request({"op": "lookup", "service": "s", "all": False}))
    assert len(r["instances"]) == 2, r
    err(c.request({"op": "lookup", "service": "nothing", "all": True}), "not_found",
        "lookup all of an unknown service")


def test_lookup_unknown_service(h):
    reg = h.registry()
    c = reg.conn()
    err(c.request({"op": "lookup", "service": "nosuch"}), "not_found", "lookup of an unknown service")
    register(c, "other", 1)
    err(c.request({"op": "lookup", "service": "nosuch"}), "not_found", "lookup of an unknown service")


def test_list(h):
    reg = h.registry()
    c = reg.conn()
    assert c.request({"op": "list"}) == {"ok": True, "services": []}
    register(c, "zeta", 1, description="z")
    register(c, "beta", 1, description="b-old")
    register(c, "beta", 2, description="b-new")
    register(c, "alpha", 7, description="a")
    r = ok(c.request({"op": "list"}))
    assert [s["service"] for s in r["services"]] == ["alpha", "beta", "zeta"], r
    beta = r["services"][1]
    assert beta == {"service": "beta", "description": "b-new", "instances": 2, "passing": 2}, beta
    # re-registering the older instance makes it the most recently registered
    register(c, "beta", 1, description="b-newest")
    r = ok(c.request({"op": "list"}))
    assert r["services"][1]["description"] == "b-newest", r
    assert r["services"][1]["instances"] == 2, r


def test_stats(h):
    reg = h.registry()
    c = reg.conn()
    other = reg.conn()
    register(c, "a", 1)
    register(c, "a", 2)
    register(c, "b", 1)
    r = ok(c.request({"op": "stats"}))
    for f in ("uptime_s", "connections", "requests", "services", "instances"):
        assert isinstance(r.get(f), (int, float)) and not isinstance(r.get(f), bool), "stats.%s: %r" % (f, r)
    assert r["services"] == 2 and r["instances"] == 3, r
    assert r["connections"] >= 2, "two connections are open: %r" % r
    assert r["requests"] >= 4, r
    assert 0 <= r["uptime_s"] < 600, r
    other.close()
    r2 = ok(c.request({"op": "stats"}))
    assert r2["requests"] > r["requests"], (r, r2)


def test_request_id_echoed(h):
    reg = h.registry()
    c = reg.conn()
    for rid in ("abc", "", "ünïcode ✓", 0, 42, -7, 2 ** 53, 1.5, True, False, None):
        r = c.request({"op": "ping", "request_id": rid})
        assert r.get("ok") is True and "request_id" in r and r["request_id"] == rid \
            and type(r["request_id"]) is type(rid), "ping request_id %r: %r" % (rid, r)
        r = c.request({"op": "lookup", "service": "nosuch", "request_id": rid})
        err(r, "not_found")
        assert "request_id" in r and r["request_id"] == rid and type(r["request_id"]) is type(rid), \
            "not_found request_id %r: %r" % (rid, r)
        r = c.request({"op": "nosuchop", "request_id": rid})
        err(r, "bad_request")
        assert "request_id" in r and r["request_id"] == rid and type(r["request_id"]) is type(rid), \
            "bad_request request_id %r: %r" % (rid, r)
    id_, tok = register(c, "x", 1)
    r = ok(c.request({"op": "register", "service": "x", "host": "127.0.0.1", "port": 2,
                      "check": "none", "request_id": "reg-1"}))
    assert r["request_id"] == "reg-1", r
    r = c.request({"op": "deregister", "id": id_, "token": "bad" + tok, "request_id": 9})
    err(r, "unauthorized")
    assert r["request_id"] == 9, r
    r = c.request({"op": "register", "service": "x", "port": 0, "request_id": [1]})
    assert r.get("ok") is False, r  # a non-scalar request_id or port 0: an error either way
    # no request_id in, none out
    assert "request_id" not in c.request({"op": "ping"})


def cache_counters(conn):
    return ok(conn.request({"op": "stats"}), "stats")["cache"]


def test_long_request_id_echoed_on_lookup_and_list(h):
    """A request_id is echoed exactly whatever the length of its JSON encoding: past 496
    bytes too (2,000 and 30,000 characters, a 600-digit number string, a string whose
    escapes make its encoding far longer than its text, and every length around 496),
    on lookup -- answered fresh and from the cache alike -- and on list, as on ping and
    on errors. Apart from the echo, the answer is the one the same request without a
    request_id gets."""
    reg = h.registry()
    c = reg.conn(timeout=10)
    id_, _ = register(c, "echo", 7001, description="long ids", tags=["x"])
    lookup_req = {"op": "lookup", "service": "echo"}
    near = ["b" * (n - 2) for n in range(490, 503)]  # encodings of 490..502 bytes
    rids = near + ["a" * 2000, "z" * 30000, "1" * 600, '"\\\n\u0001\u00e9</>&' * 120]
    for rid in rids:
        what = "request_id of %d encoded bytes" % len(json.dumps(rid))

        def echoed(r, req):
            """r without its request_id, which must be rid exactly."""
            rest = {k: v for k, v in r.items() if k != "request_id"}
            if "request_id" not in r:
                raise AssertionError("%s with a %s: no request_id in the reply %r"
                                     % (req["op"], what, rest))
            got = r["request_id"]
            assert got == rid and type(got) is str, "%s with a %s: request_id came back as %r" \
                % (req["op"], what, got if len(repr(got)) < 200 else repr(got)[:200] + "...")
            return rest

        # A new generation of the service (re-registering the same instance keeps its id),
        # so the first lookup below is built afresh and the later ones come from the cache.
        register(c, "echo", 7001, description="long ids", tags=["x"])
        before = cache_counters(c)
        got = []
        for _ in range(3):  # the cache admits an answer on its second recent miss at the latest
            got.append(echoed(c.request(dict(lookup_req, request_id=rid)), lookup_req))
        after = cache_counters(c)
        assert after["misses"] > before["misses"], "%s: no lookup was a miss: %r %r" % (what, before, after)
        assert after["hits"] > before["hits"], "%s: no lookup was a cache hit: %r %r" % (what, before, after)
        plain = ok(c.request(lookup_req))
        assert [i["id"] for i in plain["instances"]] == [id_], plain
        for g in got:
            assert g == plain, "%s: lookup answer differs from the one without it: %r vs %r" % (what, g, plain)

        list_req = {"op": "list"}
        lists = [echoed(c.request(dict(list_req, request_id=rid)), list_req) for _ in range(2)]
        plain = ok(c.request(list_req))
        assert plain["services"] == [{"service": "echo", "description": "long ids", "instances": 1,
                                      "passing": 1}], plain
        assert lists == [plain, plain], (what, lists, plain)

        # ... as on ping and on errors
        assert echoed(c.request({"op": "ping", "request_id": rid}), {"op": "ping"}) == {"ok": True}
        r = c.request({"op": "lookup", "service": "nosuch", "request_id": rid})
        err(echoed(r, lookup_req), "not_found")
        r = c.request({"op": "nosuchop", "request_id": rid})
        err(echoed(r, {"op": "nosuchop"}), "bad_request")
    still_serving(c, "long request_ids")


def test_unknown_fields_ignored(h):
    reg = h.registry()
    c = reg.conn()
    ok(c.request({"op": "ping", "future": {"x": [1, 2, {"y": None}]}, "v": 2}))
    id_, tok = register(c, "fwd", 80, zone="eu-1", weight=5, meta={"a": "b"})
    r = ok(c.request({"op": "lookup", "service": "fwd", "prefer": "fast"}))
    assert r["port"] == 80, r
    ok(c.request({"op": "heartbeat", "id": id_, "token": tok, "extra": True}))
    ok(c.request({"op": "list", "page": 3}))
    ok(c.request({"op": "deregister", "id": id_, "token": tok, "reason": "test"}))


def test_host_defaults_to_peer_address(h):
    reg = h.registry()
    c = reg.conn()
    register(c, "peer", 1, host=None)
    register(c, "peer", 2, host="0.0.0.0")
    register(c, "peer", 3, host="::")
    r = ok(c.request({"op": "lookup", "service": "peer"}))
    hosts = {i["port"]: i["host"] for i in r["instances"]}
    assert hosts == {1: "127.0.0.1", 2: "127.0.0.1", 3: "127.0.0.1"}, r
    # an explicit host is kept as given (hostname or IP literal)
    register(c, "named", 1, host="db1.example.internal")
    register(c, "named", 2, host="::1")
    r = ok(c.request({"op": "lookup", "service": "named"}))
    assert {i["port"]: i["host"] for i in r["instances"]} == {1: "db1.example.internal", 2: "::1"}, r


def test_times_are_rfc3339_utc(h):
    reg = h.registry()
    c = reg.conn()
    before = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=5)
    register(c, "clock", 1)
    after = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=5)
    r = ok(c.request({"op": "lookup", "service": "clock", "all": True}))
    inst = r["instances"][0]
    for f in ("registered_at", "last_seen"):
        t = parse_time(inst[f], f)
        assert before <= t <= after, "%s %s not within the test's time window" % (f, inst[f])
    # any other time field (e.g. last_check) is a time too, or null for "never"
    for f, v in inst.items():
        if f.endswith(("_at", "_seen", "_check")) and v is not None:
            parse_time(v, "%s (null if never)" % f)


def test_pipelining_1000_requests(h):
    """1,000 requests in one write; 1,000 responses in request order, whatever their op."""
    reg = h.registry()
    c = reg.conn(timeout=30)
    register(c, "pipe", 9000)
    kinds = ["ping", "lookup", "missing", "bad", "register", "stats"]
    reqs = []
    for i in range(1000):
        k = kinds[i % len(kinds)]
        if k == "ping":
            r = {"op": "ping"}
        elif k == "lookup":
            r = {"op": "lookup", "service": "pipe"}
        elif k == "missing":
            r = {"op": "lookup", "service": "nope"}
        elif k == "bad":
            r = {"op": "register", "service": "BAD NAME", "port": 1}
        elif k == "register":
            r = {"op": "register", "service": "pipe2", "host": "127.0.0.1", "port": 10000 + i, "check": "none"}
        else:
            r = {"op": "stats"}
        r["request_id"] = i
        reqs.append((k, r))
    c.send(b"".join(json.dumps(r).encode() + b"\n" for _, r in reqs))
    for i, (k, _) in enumerate(reqs):
        r = c.recv()
        assert r.get("request_id") == i, "response %d out of order: %r" % (i, r)
        if k == "missing":
            err(r, "not_found")
        elif k == "bad":
            err(r, "bad_request")
        else:
            ok(r, "%s #%d" % (k, i))
        if k == "lookup":
            assert r["port"] == 9000, r
        if k == "register":
            assert r.get("id") and r.get("token"), r
    n_reg = sum(1 for k, _ in reqs if k == "register")
    r = ok(c.request({"op": "lookup", "service": "pipe2"}))
    assert len(r["instances"]) == n_reg, "%d registered, lookup shows %d" % (n_reg, len(r["instances"]))


def test_200_concurrent_connections(h):
    """200 connections open at once, each registering an instance; all answered."""
    reg = h.registry()
    conns = [reg.conn(timeout=30) for _ in range(200)]
    for i, c in enumerate(conns):  # every request in flight before any reply is read
        c.send({"op": "register", "service": "many", "host": "127.0.0.1", "port": 20000 + i,
                "check": "none", "request_id": i})
    ids = set()
    for i, c in enumerate(conns):
        r = ok(c.recv(), "register on connection %d" % i)
        assert r["request_id"] == i, r
        ids.add(r["id"])
    assert len(ids) == 200
    st = ok(conns[0].request({"op": "stats"}))
    assert st["connections"] >= 200, "stats says %r connections with 200 open" % st["connections"]
    for i, c in enumerate(conns):
        c.send({"op": "lookup", "service": "many", "request_id": i})
    ports = []
    for i, c in enumerate(conns):
        r = ok(c.recv(), "lookup on connection %d" % i)
        assert r["request_id"] == i and len(r["instances"]) == 200, (i, len(r.get("instances", [])))
        ports.append(r["port"])
    # 200 lookups round-robin over 200 instances: each handed out once
    assert len(set(ports)) == 200, "round-robin handed out %d distinct of 200" % len(set(ports))
    for c in conns:
        c.close()
    r = ok(reg.request({"op": "list"}))
    assert r["services"] == [{"service": "many", "description": "", "instances": 200, "passing": 200}], r


def test_connection_stays_open_for_many_requests(h):
    reg = h.registry()
    c = reg.conn()
    for i in range(50):
        r = c.request({"op": "ping", "request_id": i})
        assert r == {"ok": True, "request_id": i}, r
    still_serving(c, "50 requests")


def test_ipv6_listen(h):
    try:
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
        s.close()
    except OSError:
        raise Skip("no IPv6 loopback")
    reg = h.registry(listen="[::1]:0")
    assert reg.host == "::1", reg.host
    c = reg.conn()
    ok(c.request({"op": "ping"}))
    register(c, "v6", 80, host=None)
    r = ok(c.request({"op": "lookup", "service": "v6"}))
    assert r["host"] == "::1", "host omitted over IPv6 must be the peer ::1: %r" % r
