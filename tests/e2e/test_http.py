# SPDX-License-Identifier: BSD-2-Clause
"""test_http.py -- the HTTP front-end (--http, issue 13, README "HTTP API"): Consul's API
subset, our /api/ with server-sent events, Prometheus service discovery, /metrics, and
HTTP/1.1 itself (keep-alive, pipelining, limits, bad input), over real sockets.

Every request goes to 127.0.0.1 (a few come from 127.0.0.2, another host for the
ownership rule); registered instances are loopback addresses.
"""

import json
import shutil
import socket
import subprocess
import threading
import time

from harness import (HttpResult, Skip, err, events, ok, register, scaled, timing,
                     wait_for)

CONSUL_HEADERS = {"x-consul-knownleader": "true", "x-consul-lastcontact": "0"}


def start(h, *flags, **kw):
    """registryd with --http, once its start event is stored and published: that event
    commits after the ports open, and arriving later it would move the catalog's index
    (waking a blocking query) or reach a fresh event stream, as a slow start (ASan) showed."""
    reg = h.registry("--http", "127.0.0.1:0", *flags, **kw)
    assert reg.http_url and reg.http_url.startswith("http://127.0.0.1:"), reg.stdout()
    if "--auth-lookups" not in flags:
        c = reg.conn()
        wait_for(lambda: any(e["event"] == "start" for e in events(c)), 10, "the start event")
        c.close()
    return reg


def consul_headers(r, what):
    """Every response carries X-Consul-Index (a positive integer) and the leader headers."""
    for k, v in CONSUL_HEADERS.items():
        assert r.headers.get(k) == v, "%s: %s is %r: %r" % (what, k, r.headers.get(k), r)
    idx = r.headers.get("x-consul-index", "")
    assert idx.isdigit() and int(idx) > 0, "%s: X-Consul-Index %r: %r" % (what, idx, r)
    return int(idx)


def get(reg, path, status=200, **kw):
    r = reg.http("GET", path, **kw)
    assert r.status == status, "GET %s: expected %d, got %r" % (path, status, r)
    consul_headers(r, "GET " + path)
    return r


def put(reg, path, body=None, status=200, **kw):
    r = reg.http("PUT", path, body, **kw)
    assert r.status == status, "PUT %s %r: expected %d, got %r" % (path, body, status, r)
    consul_headers(r, "PUT " + path)
    return r


def error_names(r, word):
    """A JSON error body {"error": "..."} that names word."""
    e = r.json().get("error")
    assert isinstance(e, str) and word in e, "error should name %r: %r" % (word, r)


class Raw:
    """One HTTP connection spoken byte by byte: sends what it is given, reads responses
    (status line, headers, Content-Length body) with a deadline."""

    def __init__(self, reg, source=None, timeout=5.0):
        host, port = reg.http_url.split("//")[1].rstrip("/").rsplit(":", 1)
        self.sock = socket.socket(socket.AF_INET)
        if source:
            self.sock.bind((source, 0))
        self.timeout = scaled(timeout)
        self.sock.settimeout(self.timeout)
        self.sock.connect((host, int(port)))
        self.buf = b""
        reg.h.sockets.append(self.sock)

    def send(self, data):
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("no complete HTTP response in time (have %r)" % self.buf[:300])
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(1 << 20)
        except socket.timeout:
            return
        if not chunk:
            raise EOFError("connection closed (partial %r)" % self.buf[:300])
        self.buf += chunk

    def read_until(self, marker, timeout=None):
        deadline = time.monotonic() + (scaled(timeout) if timeout else self.timeout)
        while marker not in self.buf:
            self._fill(deadline)
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def response(self, head=False, timeout=None):
        deadline = time.monotonic() + (scaled(timeout) if timeout else self.timeout)
        while b"\r\n\r\n" not in self.buf:
            self._fill(deadline)
        top, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = top.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        assert parts[0] == "HTTP/1.1", "status line %r" % lines[0]
        headers = {}
        for l in lines[1:]:
            k, _, v = l.partition(":")
            headers[k.strip().lower()] = v.strip()
        n = 0 if head else int(headers.get("content-length", "0"))
        while len(self.buf) < n:
            self._fill(deadline)
        body, self.buf = self.buf[:n], self.buf[n:]
        return HttpResult(int(parts[1]), headers, body)

    def expect_closed(self, timeout=5.0):
        deadline = time.monotonic() + scaled(timeout)
        while True:
            try:
                self._fill(deadline)
            except EOFError:
                return
            except ConnectionResetError:
                return

    def close(self):
        self.sock.close()


def serving(reg, what):
    """The daemon answers a new connection after what."""
    r = reg.http("GET", "/v1/catalog/services")
    assert r.status == 200 and isinstance(r.json(), dict), "after %s: %r" % (what, r)


def reg_body(name, port, **more):
    body = {"Name": name, "Port": port, "Address": "127.0.0.1"}
    body.update(more)
    return body


# --- Consul's API -----------------------------------------------------------------------------
def test_agent_self_shape(h):
    reg = start(h, "--node-name", "n1")
    doc = get(reg, "/v1/agent/self").json()
    assert isinstance(doc, dict) and doc, doc
    for k, v in doc.items():
        assert isinstance(v, dict), "agent/self member %s is not an object: %r" % (k, v)
    assert doc["Config"]["Datacenter"] == "dc1" and doc["Config"]["NodeName"] == "n1", doc
    assert isinstance(doc["Member"], dict), doc


def test_catalog_and_health_entries(h):
    reg = start(h)
    c = reg.conn()
    register(c, "web", 8001, tags=["a", "b"])
    register(c, "web", 8002, host="127.0.0.2", tags=["b"])
    register(c, "web", 8003, host="127.0.0.3", tags=["a", "b", "c"])
    register(c, "db", 5432)
    svcs = get(reg, "/v1/catalog/services").json()
    assert set(svcs) == {"web", "db"}, svcs
    assert sorted(svcs["web"]) == ["a", "b", "c"] and svcs["db"] == [], svcs

    cat = get(reg, "/v1/catalog/service/web").json()
    hl = get(reg, "/v1/health/service/web").json()
    assert [e["ServicePort"] for e in cat] == [e["Service"]["Port"] for e in hl], \
        "catalog and health lists differ in order:\n%r\n%r" % (cat, hl)
    assert sorted(e["ServicePort"] for e in cat) == [8001, 8002, 8003], cat
    for e in cat:
        for k in ("Node", "Address", "ServiceID", "ServiceName", "ServiceAddress", "ServicePort",
                  "ServiceTags", "ServiceMeta"):
            assert k in e, "catalog entry has no %s: %r" % (k, e)
        assert e["ServiceName"] == "web" and isinstance(e["ServiceMeta"], dict), e
    by_port = {e["ServicePort"]: e for e in cat}
    assert by_port[8002]["ServiceAddress"] == "127.0.0.2" and by_port[8002]["ServiceTags"] == ["b"]
    for e in hl:
        assert set(e) >= {"Node", "Service", "Checks"}, e
        assert set(e["Node"]) >= {"Node", "Address"}, e
        assert set(e["Service"]) >= {"ID", "Service", "Tags", "Address", "Port", "Meta"}, e
        assert e["Checks"] and all(ch["Status"] in ("passing", "critical") and "CheckID" in ch
                                   and "Output" in ch for ch in e["Checks"]), e
    # tag= repeated: every tag must match, in both lists, same order
    for path in ("/v1/catalog/service/web?tag=a&tag=b", "/v1/health/service/web?tag=a&tag=b"):
        got = get(reg, path).json()
        ports = [e.get("ServicePort") or e["Service"]["Port"] for e in got]
        assert sorted(ports) == [8001, 8003], (path, got)
    assert get(reg, "/v1/catalog/service/web?tag=c").json()[0]["ServicePort"] == 8003
    assert get(reg, "/v1/health/service/web?tag=zzz").json() == []


def test_unknown_service_is_empty_on_v1_and_404_on_api(h):
    reg = start(h)
    for path in ("/v1/catalog/service/nope", "/v1/health/service/nope",
                 "/v1/health/service/nope?passing"):
        r = get(reg, path)
        assert r.json() == [], (path, r)
    r = get(reg, "/api/services/nope", status=404)
    error_names(r, "nope")


def test_passing_and_health_state(h):
    reg = start(h, "--check-interval", "1", "--check-timeout", "1", "--max-failures", "1000",
                "--rise", "1")
    live = h.listener()
    dead = h.listener()
    dead_port = dead.getsockname()[1]
    dead.close()  # nothing listens there any more: its check fails
    c = reg.conn()
    register(c, "mix", live.getsockname()[1], check="tcp")
    register(c, "mix", dead_port, check="tcp")

    def states():
        hl = get(reg, "/v1/health/service/mix").json()
        return sorted((e["Service"]["Port"], e["Checks"][0]["Status"]) for e in hl)
    want = sorted([(live.getsockname()[1], "passing"), (dead_port, "critical")])
    wait_for(lambda: states() == want, 10, "one passing and one critical instance")
    # Without ?passing critical instances are listed (Prometheus never sends it).
    assert len(get(reg, "/v1/catalog/service/mix").json()) == 2
    hp = get(reg, "/v1/health/service/mix?passing").json()
    assert [e["Service"]["Port"] for e in hp] == [live.getsockname()[1]], hp
    hp = get(reg, "/v1/health/service/mix?passing=1").json()
    assert len(hp) == 1, hp
    anys = get(reg, "/v1/health/state/any").json()
    assert sorted(x["Status"] for x in anys) == ["critical", "passing"], anys
    crit = get(reg, "/v1/health/state/critical").json()
    assert [x["Status"] for x in crit] == ["critical"] and crit[0]["ServiceName"] == "mix", crit
    pas = get(reg, "/v1/health/state/passing").json()
    assert [x["Status"] for x in pas] == ["passing"], pas
    error_names(get(reg, "/v1/health/state/bogus", status=400), "bogus")


def test_register_case_insensitive_id_defaults_to_name(h):
    reg = start(h)
    # lower-case keys, as python-consul sends them
    put(reg, "/v1/agent/service/register", {"name": "lc", "port": 7001, "address": "127.0.0.1",
                                            "tags": ["x"], "meta": {"description": "low"}})
    # Consul's own spelling, with an ID
    put(reg, "/v1/agent/service/register", {"Name": "lc", "ID": "lc-2", "Port": 7002,
                                            "Address": "127.0.0.2"})
    # shouting
    put(reg, "/v1/agent/service/register", {"NAME": "up", "PORT": 7003, "ADDRESS": "127.0.0.1"})
    cat = get(reg, "/v1/catalog/service/lc").json()
    ids = sorted(e["ServiceID"] for e in cat)
    assert ids == ["lc", "lc-2"], "ID defaults to Name: %r" % cat
    first = [e for e in cat if e["ServiceID"] == "lc"][0]
    assert first["ServiceTags"] == ["x"] and first["ServicePort"] == 7001, first
    assert first["ServiceMeta"].get("description") == "low", first
    assert [e["ServiceID"] for e in get(reg, "/v1/catalog/service/up").json()] == ["up"]
    # Registering the same ID at the same address again updates it (its host asks: a
    # Consul client holds no token of ours).
    put(reg, "/v1/agent/service/register", {"Name": "lc", "ID": "lc-2", "Port": 7002,
                                            "Address": "127.0.0.2", "Tags": ["new"]},
        source="127.0.0.2")
    cat = get(reg, "/v1/catalog/service/lc").json()
    assert sorted((e["ServicePort"], e["ServiceTags"]) for e in cat) == [(7001, ["x"]), (7002, ["new"])], cat
    # Our own API sees them too.
    mine = get(reg, "/api/services/lc").json()
    assert mine["service"] == "lc" and len(mine["instances"]) == 2, mine
    names = [s["name"] for s in get(reg, "/api/services").json()]
    assert names == ["lc", "up"], names


def test_register_without_check_gets_tcp_check(h):
    reg = start(h, "--check-interval", "1", "--check-timeout", "1", "--max-failures", "1000")
    dead = h.listener()
    port = dead.getsockname()[1]
    dead.close()
    put(reg, "/v1/agent/service/register", reg_body("nochk", port))
    hl = get(reg, "/v1/health/service/nochk").json()
    assert hl[0]["Checks"][0]["Type"] == "tcp", hl
    # The registry pings what it lists: nothing listens there, so it goes critical.
    wait_for(lambda: get(reg, "/v1/health/service/nochk").json()[0]["Checks"][0]["Status"]
             == "critical", 10, "the default TCP check to fail on a closed port")


@timing
def test_ttl_check_and_heartbeats(h):
    reg = start(h)
    put(reg, "/v1/agent/service/register",
        reg_body("ttl", 7100, ID="ttl-1", Check={"TTL": "1s", "DeregisterCriticalServiceAfter": "1m"}))
    chk = get(reg, "/v1/health/service/ttl").json()[0]["Checks"][0]
    assert chk["Type"] == "ttl" and chk["CheckID"] == "service:ttl-1", chk
    # Heartbeats in both spellings (and GET, as older clients send) keep it past its TTL.
    t0 = time.monotonic()
    forms = [("PUT", "/v1/agent/check/pass/service:ttl-1"), ("PUT", "/v1/agent/check/pass/ttl-1"),
             ("GET", "/v1/agent/check/pass/ttl-1")]
    i = 0
    while time.monotonic() - t0 < 2.5:
        m, p = forms[i % 3]
        r = reg.http(m, p)
        assert r.status == 200, (m, p, r)
        consul_headers(r, p)
        i += 1
        wait_for(lambda: time.monotonic() - t0 > 0.25 * i, 1, "the next heartbeat tick", 0.01)
    assert [e["ServiceID"] for e in get(reg, "/v1/catalog/service/ttl").json()] == ["ttl-1"], \
        "an instance with heartbeats expired"
    # Without heartbeats it expires.
    wait_for(lambda: get(reg, "/v1/catalog/service/ttl").json() == [], 6, "the TTL instance to expire")
    r = reg.http("PUT", "/v1/agent/check/pass/ttl-1")
    assert r.status == 404, r
    consul_headers(r, "check/pass of a gone instance")


def test_deregister_put_and_get(h):
    reg = start(h)
    put(reg, "/v1/agent/service/register", reg_body("dr", 7201, ID="dr-1"))
    put(reg, "/v1/agent/service/register", reg_body("dr", 7202, ID="dr-2"))
    put(reg, "/v1/agent/service/deregister/dr-1")
    assert [e["ServiceID"] for e in get(reg, "/v1/catalog/service/dr").json()] == ["dr-2"]
    r = reg.http("GET", "/v1/agent/service/deregister/dr-2")
    assert r.status == 200, r
    assert get(reg, "/v1/catalog/service/dr").json() == []
    assert "dr" not in get(reg, "/v1/catalog/services").json()
    r = reg.http("PUT", "/v1/agent/service/deregister/dr-2")
    assert r.status == 404, r
    consul_headers(r, "deregister of a gone instance")
    r = reg.http("DELETE", "/v1/agent/service/deregister/dr-2")
    assert r.status == 405 and "PUT" in r.headers.get("allow", ""), r


def test_head_is_not_a_write(h):
    """HEAD is GET without a body: on the deregister and check/pass paths (which accept
    GET for old clients) it must not change anything."""
    reg = start(h)
    put(reg, "/v1/agent/service/register", reg_body("hd", 7301, ID="hd-1"))
    r = reg.http("HEAD", "/v1/agent/service/deregister/hd-1")
    assert r.status in (200, 405) and r.body == b"", r
    assert [e["ServiceID"] for e in get(reg, "/v1/catalog/service/hd").json()] == ["hd-1"], \
        "HEAD /v1/agent/service/deregister/hd-1 deregistered the instance"


def test_ownership_on_deregister_and_heartbeat(h):
    reg = start(h)
    put(reg, "/v1/agent/service/register", reg_body("own", 7401, ID="own-1"))
    for m, p in (("PUT", "/v1/agent/service/deregister/own-1"),
                 ("GET", "/v1/agent/service/deregister/own-1"),
                 ("PUT", "/v1/agent/check/pass/own-1")):
        r = reg.http(m, p, source="127.0.0.2")
        assert r.status == 403, "%s %s from another host: %r" % (m, p, r)
        consul_headers(r, p)
        error_names(r, "own-1")
    assert len(get(reg, "/v1/catalog/service/own").json()) == 1
    # A token is no use when the daemon has no secret.
    r = reg.http("PUT", "/v1/agent/service/deregister/own-1", source="127.0.0.2",
                 headers={"X-Consul-Token": "guess"})
    assert r.status == 403, r
    # The owner (same host) may.
    put(reg, "/v1/agent/service/deregister/own-1")
    assert get(reg, "/v1/catalog/service/own").json() == []
    # So may the client that registered an instance on another host, and that host.
    put(reg, "/v1/agent/service/register", reg_body("own", 7402, ID="own-2", Address="127.0.0.3"))
    put(reg, "/v1/agent/service/register", reg_body("own", 7403, ID="own-3", Address="127.0.0.3"))
    r = reg.http("PUT", "/v1/agent/service/deregister/own-2", source="127.0.0.2")
    assert r.status == 403, r
    put(reg, "/v1/agent/service/deregister/own-2")
    put(reg, "/v1/agent/check/pass/own-3", source="127.0.0.3")
    put(reg, "/v1/agent/service/deregister/own-3", source="127.0.0.3")
    assert get(reg, "/v1/catalog/service/own").json() == []


def test_ownership_with_shared_secret(h):
    secret = "s3cret-" + "x" * 20
    path = h.path("token")
    with open(path, "w") as f:
        f.write(secret + "\n")
    reg = start(h, "--auth-token-file", path)
    hdr = {"X-Consul-Token": secret}
    r = reg.http("PUT", "/v1/agent/service/register", reg_body("sec", 7501, ID="sec-1"))
    assert r.status == 403, "register without the secret: %r" % r
    put(reg, "/v1/agent/service/register", reg_body("sec", 7501, ID="sec-1"), headers=hdr)
    put(reg, "/v1/agent/service/register", reg_body("sec", 7502, ID="sec-2"), headers=hdr)
    r = reg.http("PUT", "/v1/agent/service/deregister/sec-1", source="127.0.0.2",
                 headers={"X-Consul-Token": "wrong"})
    assert r.status == 403, r
    r = reg.http("PUT", "/v1/agent/service/deregister/sec-1", source="127.0.0.2")
    assert r.status == 403, r
    put(reg, "/v1/agent/service/deregister/sec-1", source="127.0.0.2", headers=hdr)
    put(reg, "/v1/agent/service/deregister/sec-2?token=" + secret, source="127.0.0.2")
    assert get(reg, "/v1/catalog/service/sec").json() == []


def test_kv_404_and_headers_everywhere(h):
    reg = start(h)
    for path in ("/v1/kv/x", "/v1/kv/a/b?recurse", "/no/such/endpoint"):
        r = reg.http("GET", path)
        assert r.status == 404, (path, r)
        consul_headers(r, path)
        assert "error" in r.json(), r
    r = reg.http("POST", "/v1/catalog/services")
    assert r.status == 405 and r.headers.get("allow") == "GET, HEAD", r
    consul_headers(r, "405")
    error_names(r, "POST")
    r = reg.http("GET", "/v1/agent/service/register")
    assert r.status == 405 and r.headers.get("allow") == "PUT", r
    consul_headers(r, "405 on register")
    r = reg.http("HEAD", "/v1/catalog/services")
    assert r.status == 200 and r.body == b"", r
    consul_headers(r, "HEAD")
    full = reg.http("GET", "/v1/catalog/services")
    assert r.headers["content-length"] == str(len(full.body)), (r, full)
    r = reg.http("HEAD", "/v1/kv/x")
    assert r.status == 404 and r.body == b"", r
    consul_headers(r, "HEAD 404")


# --- blocking queries and the index ----------------------------------------------------------
def timed_get(reg, path, timeout=10.0):
    t0 = time.monotonic()
    r = reg.http("GET", path, timeout=timeout)
    return r, t0, time.monotonic()


@timing
def test_blocking_query_wakes_on_change_and_times_out(h):
    reg = start(h)
    c = reg.conn()
    register(c, "blk", 9001)
    r = get(reg, "/v1/health/service/blk")
    idx = consul_headers(r, "health")
    # No change: answered after the wait (1 s), with the same index.
    r, t0, t1 = timed_get(reg, "/v1/health/service/blk?index=%d&wait=1s" % idx)
    assert r.status == 200 and 0.9 <= t1 - t0 < 1.0 + scaled(0.5), (t1 - t0, r)
    assert consul_headers(r, "timed out") == idx and len(r.json()) == 1, r
    # A change of another service does not wake it.
    r, t0, t1 = timed_get(reg, "/v1/catalog/services?index=%d&wait=500ms"
                          % consul_headers(get(reg, "/v1/catalog/services"), "svcs"))
    assert 0.45 <= t1 - t0, (t1 - t0, r)
    # A change: answered within 100 ms of it.
    box = {}

    def query():
        box["r"], _, box["t"] = timed_get(reg, "/v1/health/service/blk?index=%d&wait=5s" % idx)
    th = threading.Thread(target=query)
    th.start()
    wait_for(lambda: ok(c.request({"op": "stats"})) and
             get(reg, "/metrics").body.decode().find("registry_http_blocking_queries_total 3") >= 0,
             5, "the blocking query to wait")
    register(c, "other", 9100)     # another service: no wake-up
    register(c, "blk", 9002)
    changed = time.monotonic()
    th.join(scaled(5))
    assert not th.is_alive(), "the blocking query never returned"
    r = box["r"]
    assert box["t"] - changed < scaled(0.1), "answered %.3f s after the change" % (box["t"] - changed)
    new = consul_headers(r, "woken")
    assert new > idx and len(r.json()) == 2, (idx, r)
    # An index from the future or 0 is answered at once (never waits on a stale index).
    r, t0, t1 = timed_get(reg, "/v1/health/service/blk?index=0&wait=5s")
    assert t1 - t0 < 1 and r.status == 200, r
    r = reg.http("GET", "/v1/health/service/blk?index=abc")
    assert r.status == 400, r
    error_names(r, "index")
    r = reg.http("GET", "/v1/health/service/blk?index=%d&wait=soon" % new)
    assert r.status == 400, r
    error_names(r, "wait")


def test_index_never_zero_nor_backwards_across_restart(h):
    reg = start(h)
    seen = [consul_headers(get(reg, "/v1/catalog/services"), "empty")]
    c = reg.conn()
    for i in range(3):
        register(c, "ix", 9200 + i)
        seen.append(consul_headers(get(reg, "/v1/health/service/ix"), "ix"))
        seen.append(consul_headers(get(reg, "/v1/catalog/services"), "svcs"))
    c.close()
    before_svc = consul_headers(get(reg, "/v1/health/service/ix"), "ix")
    before_all = consul_headers(get(reg, "/v1/catalog/services"), "all")
    # Asked at once after the restart, before the start event has gone through the
    # store (a window of a few ms that once answered 1): several restarts to hit it.
    reg2 = reg
    for i in range(8):
        reg2 = reg2.restart()
        assert reg2.http_url, reg2.stdout()
        after_svc = consul_headers(get(reg2, "/v1/health/service/ix"), "ix after restart")
        after_all = consul_headers(get(reg2, "/v1/catalog/services"), "all after restart")
        after_none = consul_headers(get(reg2, "/v1/health/service/never"), "unknown after restart")
        assert after_svc >= before_svc and after_all >= before_all and after_none >= before_all, \
            "restart %d: %r" % (i, (before_svc, after_svc, before_all, after_all, after_none))
        before_svc, before_all = after_svc, max(after_all, after_none)
    assert all(x > 0 for x in seen) and seen == sorted(seen), seen
    # A blocking query with the index from before the restart is not answered at once
    # with an older one.
    r = get(reg2, "/v1/health/service/ix?index=%d&wait=100ms" % after_svc)
    assert consul_headers(r, "blocking after restart") >= after_svc


# --- our own API ------------------------------------------------------------------------------
def sse_open(reg, last_id=None, query=""):
    s = Raw(reg)
    hdr = "Last-Event-ID: %d\r\n" % last_id if last_id is not None else ""
    s.send("GET /api/events/stream%s HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n%s\r\n"
           % (query, hdr))
    head = s.read_until(b"\r\n\r\n").decode()
    assert head.startswith("HTTP/1.1 200") and "text/event-stream" in head, head
    return s


def sse_next(s, timeout=5.0):
    """The next event (id, data) of a stream, comments and retry lines skipped."""
    while True:
        block = s.read_until(b"\n\n", timeout).decode()
        fields = {}
        for line in block.strip("\n").split("\n"):
            if line.startswith(":"):
                continue
            k, _, v = line.partition(": ")
            fields[k] = v
        if "id" in fields:
            return int(fields["id"]), json.loads(fields["data"])


def test_sse_stream_and_resume(h):
    reg = start(h)
    c = reg.conn()
    s = sse_open(reg)  # after the start event (start()): the next event is ours
    register(c, "ev", 9301)
    seq, ev = sse_next(s)
    assert ev.get("event") == "register" and ev.get("service") == "ev" and ev.get("seq") == seq, ev
    first = seq
    register(c, "ev", 9302)
    seq2, ev = sse_next(s)
    assert seq2 > first and ev.get("event") == "register", ev
    s.close()
    # While disconnected: more events; a reconnect with Last-Event-ID resumes after it.
    register(c, "ev2", 9303)
    register(c, "ev", 9304)
    s = sse_open(reg, last_id=first)
    want = [e["seq"] for e in events(c, since=first)]
    assert len(want) >= 3, want
    got = [sse_next(s)[0] for _ in want]
    assert got == want, "resumed stream %r, stored events %r" % (got, want)
    # and then live ones, no duplicate
    register(c, "ev3", 9305)
    nxt, ev = sse_next(s)
    assert nxt > got[-1] and ev.get("service") == "ev3", (nxt, ev)
    r = reg.http("GET", "/api/events/stream", headers={"Last-Event-ID": "abc"})
    assert r.status == 400, r


def test_api_events_since_limit(h):
    reg = start(h)
    c = reg.conn()
    for i in range(5):
        register(c, "pg", 9400 + i)
    allv = get(reg, "/api/events?since=0&limit=1000").json()["events"]
    seqs = [e["seq"] for e in allv]
    assert seqs == sorted(seqs) and len(seqs) >= 5, seqs
    page = get(reg, "/api/events?since=%d&limit=2" % seqs[0]).json()["events"]
    assert [e["seq"] for e in page] == seqs[1:3], (page, seqs)
    assert get(reg, "/api/events?since=%d" % seqs[-1]).json()["events"] == []
    for q in ("since=-1", "limit=0", "limit=x", "since=abc"):
        r = reg.http("GET", "/api/events?" + q)
        assert r.status == 400, (q, r)
        error_names(r, q.split("=")[0])


def test_prometheus_sd_shape_and_filter(h):
    reg = start(h)
    c = reg.conn()
    a, _ = register(c, "psd", 9501, tags=["x", "y"])
    register(c, "psd", 9502, host="::1")
    register(c, "other", 9503)
    doc = get(reg, "/api/prometheus/sd").json()
    assert isinstance(doc, list) and len(doc) == 3, doc
    for e in doc:
        assert set(e) == {"targets", "labels"} and len(e["targets"]) == 1, e
        lab = e["labels"]
        assert set(lab) >= {"__meta_registry_service", "__meta_registry_instance_id",
                            "__meta_registry_status", "__meta_registry_tags"}, lab
        assert all(isinstance(v, str) for v in lab.values()), lab
        assert lab["__meta_registry_status"] in ("passing", "critical"), lab
    mine = [e for e in doc if e["labels"]["__meta_registry_instance_id"] == a][0]
    assert mine["targets"] == ["127.0.0.1:9501"] and mine["labels"]["__meta_registry_tags"] == ",x,y,"
    v6 = [e for e in doc if e["targets"] == ["[::1]:9502"]]
    assert v6 and v6[0]["labels"]["__meta_registry_tags"] == ",", doc
    only = get(reg, "/api/prometheus/sd?service=other").json()
    assert [e["targets"] for e in only] == [["127.0.0.1:9503"]], only
    assert get(reg, "/api/prometheus/sd?service=none").json() == []


# --- HTTP/1.1 itself --------------------------------------------------------------------------
def test_keep_alive_and_pipeline_of_1000(h):
    reg = start(h)
    c = reg.conn()
    for i in range(3):
        register(c, "p%d" % i, 9600 + i)
    s = Raw(reg)
    for i in range(3):  # keep-alive: one request at a time on one connection
        s.send("GET /v1/catalog/service/p%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
        r = s.response()
        assert r.status == 200 and r.json()[0]["ServicePort"] == 9600 + i, r
    n = 1000
    s.send("".join("GET /v1/catalog/service/p%d?n=%d HTTP/1.1\r\nHost: x\r\n\r\n" % (i % 3, i)
                   for i in range(n)))
    for i in range(n):
        r = s.response(timeout=10)
        assert r.status == 200, (i, r)
        assert r.json()[0]["ServicePort"] == 9600 + i % 3, "answer %d out of order: %r" % (i, r)
    # HTTP/1.0 without keep-alive: answered, then closed
    s.send("GET /v1/catalog/services HTTP/1.0\r\n\r\n")
    r = s.response()
    assert r.status == 200, r
    s.expect_closed()


def bad_input(reg, data, status, word=None, timeout=5.0, closes=True):
    """Sends raw bytes on a new connection: answered with status (a JSON error naming
    word), the connection closed (when what came cannot be parsed on from), and a new
    connection served."""
    s = Raw(reg, timeout=timeout)
    try:
        s.send(data)
    except (BrokenPipeError, ConnectionResetError):
        pass  # refused before all of it was read: the answer is still there
    r = s.response(timeout=timeout)
    assert r.status == status, "expected %d for %r..., got %r" % (status, data[:80], r)
    consul_headers(r, "status %d" % status)
    if word:
        error_names(r, word)
    if closes:
        s.expect_closed()
    serving(reg, "a %d" % status)
    return r


def test_bad_inputs_answered_and_served_on(h):
    reg = start(h)
    big = "X-Filler: " + "a" * 1000 + "\r\n"
    bad_input(reg, "GET / HTTP/1.1\r\nHost: x\r\n" + big * 100 + "\r\n", 431)
    bad_input(reg, b"PUT /v1/agent/service/register HTTP/1.1\r\nHost: x\r\n"
              b"Content-Length: 10485760\r\n\r\n" + b"{" * (10 << 20), 413)
    bad_input(reg, b"PUT /v1/agent/service/register HTTP/1.1\r\nHost: x\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n" + (b"100000\r\n" + b"a" * 0x100000 + b"\r\n") * 10
              + b"0\r\n\r\n", 413)
    bad_input(reg, "GET /v1/catalog/services\r\n\r\n", 400, "version")
    bad_input(reg, "PUT /v1/agent/service/register HTTP/1.1\r\nContent-Length: 12x\r\n\r\n{}", 400)
    bad_input(reg, "PUT /v1/agent/service/register HTTP/1.1\r\nContent-Length: -1\r\n\r\n{}", 400)
    bad_input(reg, "PUT /v1/agent/service/register HTTP/1.1\r\nContent-Length: 2\r\n"
              "Content-Length: 3\r\n\r\n{}", 400)
    for chunk in ("zz\r\n{}\r\n0\r\n\r\n", "-2\r\n{}\r\n0\r\n\r\n",
                  "ffffffffffffffffffff\r\n{}\r\n0\r\n\r\n", "2\r\n{}xx\r\n0\r\n\r\n"):
        bad_input(reg, "PUT /v1/agent/service/register HTTP/1.1\r\nHost: x\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n" + chunk, 400)
    bad_input(reg, b"GET /v1/catalog/service/a\x00b HTTP/1.1\r\nHost: x\r\n\r\n", 400)
    # well-formed HTTP with a bad target: answered, the connection may stay
    bad_input(reg, "GET /v1/catalog/service/a%00b HTTP/1.1\r\nHost: x\r\n\r\n", 400, "NUL",
              closes=False)
    bad_input(reg, "GET /v1/catalog/service/a?x=%00 HTTP/1.1\r\nHost: x\r\n\r\n", 400, "NUL",
              closes=False)
    for path in ("/v1/../etc/passwd", "/api/services/..", "/v1/catalog/service/%2e%2e/x",
                 "/v1/catalog/service/..%2fx"):
        r = reg.http("GET", path)
        assert r.status == 400, (path, r)
        consul_headers(r, path)
        error_names(r, "..")
        serving(reg, path)
    bad_input(reg, "BREW /v1/catalog/services HTTP/1.1\r\n\r\n", 400)
    bad_input(reg, "GET /v1/catalog/services HTTP/1.1\r\nBad Header\r\n\r\n", 400)


def test_register_body_errors_name_the_field(h):
    reg = start(h)
    cases = [
        ("{", "JSON"),
        ("[]", "object"),
        ('{"Name": "a", "Port": 1, "Name": "b"}', "JSON"),
        ({"Port": 1}, "Name"),
        ({"Name": 5, "Port": 1}, "Name"),
        ({"Name": "Bad Name!", "Port": 1}, "Name"),
        ({"Name": "ok"}, "Port"),
        ({"Name": "ok", "Port": "80"}, "Port"),
        ({"Name": "ok", "Port": 70000}, "Port"),
        ({"Name": "ok", "Port": 1, "ID": 7}, "ID"),
        ({"Name": "ok", "Port": 1, "ID": "bad id"}, "ID"),
        ({"Name": "ok", "Port": 1, "Address": 7}, "Address"),
        ({"Name": "ok", "Port": 1, "Tags": "a"}, "Tags"),
        ({"Name": "ok", "Port": 1, "Tags": [1]}, "Tags"),
        ({"Name": "ok", "Port": 1, "Meta": []}, "Meta"),
        ({"Name": "ok", "Port": 1, "Check": "tcp"}, "Check"),
        ({"Name": "ok", "Port": 1, "Check": {"TTL": 10}}, "TTL"),
        ({"Name": "ok", "Port": 1, "Check": {"TTL": "forever"}}, "TTL"),
        ({"Name": "ok", "Port": 1, "Check": {"TCP": 1}}, "TCP"),
        ({"Name": "ok", "Port": 1, "Check": {"Interval": 10}}, "Interval"),
    ]
    for body, word in cases:
        r = reg.http("PUT", "/v1/agent/service/register", body)
        assert r.status == 400, "%r: %r" % (body, r)
        consul_headers(r, "bad register body")
        error_names(r, word)
        serving(reg, "register body %r" % (body,))
    assert get(reg, "/v1/catalog/services").json() == {}


@timing
def test_slowloris_gets_408(h):
    reg = start(h, "--request-timeout", "1")
    s = Raw(reg)
    s.send("GET /v1/catalog/services HTTP/1.1\r\n")
    t0 = time.monotonic()
    got = None
    # A header line every 100 ms: never a complete request.
    while time.monotonic() - t0 < scaled(3):
        try:
            s.send("X-Slow-%d: y\r\n" % int((time.monotonic() - t0) * 10))
        except (BrokenPipeError, ConnectionResetError):
            break
        try:
            got = s.response(timeout=0.1)
            break
        except AssertionError:
            continue
        except (EOFError, ConnectionResetError):
            break
    elapsed = time.monotonic() - t0
    assert got is not None and got.status == 408, "after %.2fs: %r (%r)" % (elapsed, got, s.buf[:200])
    assert 0.9 <= elapsed < 1.0 + scaled(1.5), elapsed
    consul_headers(got, "408")
    serving(reg, "a 408")


def test_max_conns_shared_with_line_protocol(h):
    reg = start(h, "--max-conns", "3")
    lines = [reg.conn(), reg.conn()]
    for c in lines:
        ok(c.request({"op": "ping"}))
    s = Raw(reg)
    s.send("GET /v1/catalog/services HTTP/1.1\r\nHost: x\r\n\r\n")
    assert s.response().status == 200
    # Three open (two line, one HTTP): a fourth of either kind is refused.
    extra = Raw(reg)
    try:
        r = extra.response()
        assert r.status == 503, r
        consul_headers(r, "503")
    except (EOFError, ConnectionResetError):
        pass
    extra.expect_closed()
    line = reg.conn()
    try:
        err(line.recv(), "unavailable", "a line connection past the shared --max-conns")
    except (EOFError, ConnectionResetError):
        pass
    # Closing the HTTP connection frees a slot for a line client.
    s.close()
    wait_for(lambda: ok(h.conn(reg.addr).request({"op": "ping"})), 5,
             "a line connection served after the HTTP one closed")


def test_metrics_promtool_and_figures(h):
    if shutil.which("promtool") is None:
        raise Skip("promtool is not installed (Debian prometheus)")
    reg = start(h)
    c = reg.conn()
    register(c, "m", 9701)
    for _ in range(16):  # the latency histogram times one lookup in 16
        c.request({"op": "lookup", "service": "m"})
    get(reg, "/v1/health/service/m")
    reg.http("GET", "/v1/kv/nothing")
    r = get(reg, "/metrics")
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4"), r
    text = r.body.decode()
    p = subprocess.run(["promtool", "check", "metrics"], input=r.body, capture_output=True,
                       timeout=30)
    assert p.returncode == 0, "promtool check metrics:\n%s%s" % (p.stdout.decode(), p.stderr.decode())
    families = {l.split()[2]: l.split()[3] for l in text.splitlines() if l.startswith("# TYPE")}
    samples = parse_samples(text)
    # the figures issue 13 lists
    for name, kind in (("registry_requests_total", "counter"),
                       ("registry_lookup_duration_seconds", "histogram"),
                       ("registry_http_request_duration_seconds", "histogram"),
                       ("registry_cache_hits_total", "counter"),
                       ("registry_cache_misses_total", "counter"),
                       ("registry_cache_evictions_total", "counter"),
                       ("registry_instances", "gauge"), ("registry_services", "gauge"),
                       ("registry_health_checks_total", "counter"),
                       ("registry_health_checks_failed_total", "counter"),
                       ("registry_evictions_total", "counter"),
                       ("registry_expirations_total", "counter"),
                       ("registry_self_preservation", "gauge"),
                       ("registry_store_commits_total", "counter"),
                       ("registry_store_batch_changes", "histogram"),
                       ("registry_store_commit_duration_seconds", "histogram"),
                       ("registry_store_backend_info", "gauge"),
                       ("registry_log_dropped_total", "counter"),
                       ("registry_http_connections", "gauge"),
                       ("registry_http_connections_rejected_total", "counter"),
                       ("registry_line_connections", "gauge"),
                       ("registry_line_connections_rejected_total", "counter"),
                       ("process_resident_memory_bytes", "gauge"), ("process_open_fds", "gauge")):
        assert families.get(name) == kind, "%s: %r" % (name, families.get(name))

    def one(name, **labels):
        got = [v for (n, lab), v in samples.items() if n == name
               and all(dict(lab).get(k) == x for k, x in labels.items())]
        assert got, "no %s%r in /metrics" % (name, labels)
        return sum(got)
    assert one("registry_instances", status="passing") == 1
    assert one("registry_services") == 1
    assert one("registry_store_commits_total") >= 1
    assert one("registry_store_backend_info") == 1
    assert one("registry_store_commit_duration_seconds_count") >= 1
    assert one("registry_lookup_duration_seconds_count") >= 1, "16 lookups: one was timed"
    assert one("registry_requests_total", frontend="http", result="2xx") >= 1
    assert one("registry_requests_total", frontend="http", result="4xx") >= 1
    assert one("registry_requests_total", frontend="line") >= 2
    assert one("process_resident_memory_bytes") > 1e6 and one("process_open_fds") > 3
    assert one("registry_http_connections") >= 1


def parse_samples(text):
    """{(name, ((label, value), ...)): value} of a text exposition (no escaped quotes)."""
    import re
    out = {}
    for l in text.splitlines():
        if not l or l.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$', l)
        assert m, "not a sample line: %r" % l
        labels = tuple(sorted(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"', m.group(2) or "")))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def test_stop_answers_blocking_queries_and_ends_streams(h):
    """SIGTERM with a blocking query waiting and an event stream open: the query is
    answered, the stream ends, registryd exits 0 well before the wait would end."""
    reg = start(h)
    c = reg.conn()
    register(c, "bye", 9801)
    idx = consul_headers(get(reg, "/v1/health/service/bye"), "bye")
    q = Raw(reg)
    q.send("GET /v1/health/service/bye?index=%d&wait=60s HTTP/1.1\r\nHost: x\r\n\r\n" % idx)
    s = sse_open(reg)
    wait_for(lambda: "registry_http_blocking_queries_total 1" in get(reg, "/metrics").body.decode(),
             5, "the query to block")
    c.close()
    t0 = time.monotonic()
    rc = reg.stop(timeout=10)
    assert rc == 0, "registryd exited %s on SIGTERM:\n%s" % (rc, reg.tail())
    assert time.monotonic() - t0 < scaled(6), "stopping took %.1fs" % (time.monotonic() - t0)
    r = q.response()
    assert r.status == 200 and len(r.json()) == 1, r
    s.expect_closed()


def test_pipelined_behind_a_write_and_a_blocking_query(h):
    """Answers stay in order: a read pipelined behind a register sees it; requests behind
    a blocking query wait for its answer. A body bigger than one read (900 KB) is whole."""
    reg = start(h)
    s = Raw(reg)
    body = json.dumps(reg_body("pipe", 9901))
    s.send("PUT /v1/agent/service/register HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
           "GET /v1/health/service/pipe HTTP/1.1\r\nHost: x\r\n\r\n" % (len(body), body))
    r1, r2 = s.response(), s.response()
    assert r1.status == 200, r1
    assert [e["Service"]["Port"] for e in r2.json()] == [9901], r2
    idx = consul_headers(r2, "pipe")
    s.send("GET /v1/health/service/pipe?index=%d&wait=300ms HTTP/1.1\r\nHost: x\r\n\r\n"
           "GET /v1/kv/after HTTP/1.1\r\nHost: x\r\n\r\n" % idx)
    t0 = time.monotonic()
    r3, r4 = s.response(), s.response()
    assert r3.status == 200 and r4.status == 404, (r3, r4)
    assert time.monotonic() - t0 >= 0.28, "answered before the blocking query's wait"
    padded = body[:-1] + " " * 900000 + "}"
    s.send("PUT /v1/agent/service/register HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
           % (len(padded), padded))
    assert s.response().status == 200


@timing
def test_idle_timeout_spares_blocking_queries_and_streams(h):
    reg = start(h, "--idle-timeout", "1")
    idle = Raw(reg)
    idle.send("GET /v1/catalog/services HTTP/1.1\r\nHost: x\r\n\r\n")
    assert idle.response().status == 200
    idx = consul_headers(get(reg, "/v1/catalog/services"), "svcs")
    q = Raw(reg)
    t0 = time.monotonic()
    q.send("GET /v1/catalog/services?index=%d&wait=2s HTTP/1.1\r\nHost: x\r\n\r\n" % idx)
    s = sse_open(reg)
    idle.expect_closed(timeout=3)
    assert time.monotonic() - t0 < scaled(2), "the idle connection outlived the timeout"
    r = q.response(timeout=5)
    took = time.monotonic() - t0
    assert r.status == 200 and took >= 1.9, (took, r)
    c = reg.conn()
    register(c, "late", 9902)
    seq, ev = sse_next(s)
    assert ev["service"] == "late", ev


def test_blocking_answers_not_lost_to_the_idle_check(h):
    """A blocking query's answer is queued when its wait ends; an idle check (every
    --idle-timeout/4) in the same loop turn saw the connection idle since the request
    and closed it, the answer unsent. 300 waits, one per millisecond of a check's period
    and more, so some end in a turn with a check."""
    reg = start(h, "--idle-timeout", "1")
    idx = consul_headers(get(reg, "/v1/catalog/services"), "svcs")
    qs = []
    for i in range(300):
        q = Raw(reg, timeout=10)
        q.send("GET /v1/catalog/services?index=%d&wait=%dms HTTP/1.1\r\nHost: x\r\n\r\n"
               % (idx, 1000 + i))
        qs.append(q)
    lost = 0
    for q in qs:
        try:
            assert q.response(timeout=10).status == 200
        except EOFError:
            lost += 1
        q.close()
    assert lost == 0, "%d of %d blocking queries closed without an answer" % (lost, len(qs))


def test_blocking_query_woken_by_a_check_verdict(h):
    """A health change is a change (Prometheus's consul discovery relabels on health): a
    blocking query on the service returns when its TCP check fails, the index moved."""
    reg = start(h, "--check-interval", "1", "--check-timeout", "1", "--max-failures", "1000",
                "--rise", "1")
    live = h.listener()
    put(reg, "/v1/agent/service/register", reg_body("flip", live.getsockname()[1]))
    wait_for(lambda: "registry_health_checks_total 0" not in get(reg, "/metrics").body.decode(),
             5, "a first check")
    r = get(reg, "/v1/health/service/flip")
    idx = consul_headers(r, "flip")
    assert r.json()[0]["Checks"][0]["Status"] == "passing", r
    live.close()  # the next check fails
    r = get(reg, "/v1/health/service/flip?index=%d&wait=5s" % idx, timeout=10)
    assert consul_headers(r, "woken") > idx, r
    assert r.json()[0]["Checks"][0]["Status"] == "critical", r


def test_consul_client_registers_its_id_again(h):
    """A Consul client registers its ID again at every start, with new tags, from the
    same address and with no token of ours: that is an update (same id), not a conflict;
    another address is refused (403/409 naming the owner)."""
    reg = start(h)
    body = reg_body("lc", 7301, ID="lc-2", Address="127.0.0.2", Tags=["v1"])
    put(reg, "/v1/agent/service/register", body)
    put(reg, "/v1/agent/service/register", dict(body, Tags=["v2"]))
    entries = get(reg, "/v1/catalog/service/lc").json()
    assert [(e["ServiceID"], e["ServiceTags"]) for e in entries] == [("lc-2", ["v2"])], entries
    r = reg.http("PUT", "/v1/agent/service/register", dict(body, Tags=["v3"]),
                 source="127.0.0.5")
    assert r.status == 409, r
    error_names(r, "owner")


def test_empty_service_name_and_http10_keep_alive(h):
    """GET /v1/health/service/ (no name) is 400, as Consul answers; an HTTP/1.0 request
    asking for keep-alive is told the connection stays open, and it does."""
    reg = start(h)
    r = get(reg, "/v1/health/service/", status=400)
    error_names(r, "service name")
    get(reg, "/v1/catalog/service/", status=400)
    raw = Raw(reg)
    for _ in range(2):
        raw.send("GET /v1/agent/self HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        r = raw.response()
        assert r.status == 200 and r.headers.get("connection") == "keep-alive", r
    raw.send("GET /v1/agent/self HTTP/1.0\r\n\r\n")
    r = raw.response()
    assert r.status == 200 and r.headers.get("connection") == "close", r
    raw.expect_closed()


def test_client_gone_during_a_blocking_query_and_a_stream(h):
    """Clients that hang up while their blocking query waits, or while their event stream
    is open, leave nothing behind: registryd serves on, the metrics show the waits gone,
    and it exits 0 on SIGTERM (under ASan a leak would make that exit fail)."""
    reg = start(h)
    c = reg.conn()
    register(c, "gone", 9802)
    idx = consul_headers(get(reg, "/v1/health/service/gone"), "gone")
    waits = []
    for _ in range(5):
        q = Raw(reg)
        q.send("GET /v1/health/service/gone?index=%d&wait=60s&tag=x HTTP/1.1\r\nHost: x\r\n\r\n"
               % idx)
        waits.append(q)
    streams = [sse_open(reg) for _ in range(3)]
    wait_for(lambda: "registry_http_blocking_queries_total 5" in get(reg, "/metrics").body.decode(),
             5, "the queries to block")
    for q in waits + streams:
        q.close()
    wait_for(lambda: "registry_http_event_streams 0" in get(reg, "/metrics").body.decode(),
             5, "the streams to end")
    register(c, "gone", 9803)  # an event with the waiters gone
    serving(reg, "clients hung up mid-wait")
    rc = reg.stop(timeout=10)
    assert rc == 0, "registryd exited %s on SIGTERM:\n%s" % (rc, reg.tail())
