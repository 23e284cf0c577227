# SPDX-License-Identifier: BSD-2-Clause
"""test_cluster.py -- several registryd nodes on one real etcd cluster (--etcd).

Each test starts its own etcd members (tests/e2e/etcd.py) and registryd nodes on free
loopback ports, and stops them by PID. What they hold registryd to: any node answers
for every node's registrations, with the same events and seqs everywhere; racing
registrations of one endpoint end with one id; a node's death moves its health checks to
the others (one eviction, not one per node); an etcd leader's death costs writes at most
a few seconds and loses nothing acknowledged; without quorum, writes say so and lookups
go on; TTLs are etcd leases that any node renews."""

import json
import threading
import time

from harness import wait_for, scaled, timeout, free_port, http_request
from etcd import require


def nodes(h, cluster, n, *flags):
    """n registryd nodes on cluster, named n1..nN, each with its own log."""
    require()
    return [h.registry_etcd(cluster, *flags, node="n%d" % (i + 1),
                            log=h.path("n%d.log" % (i + 1))) for i in range(n)]


def register(node, service, port, host="127.0.0.1", **kw):
    rq = {"op": "register", "service": service, "host": host, "port": port, "check": "none"}
    rq.update(kw)
    return node.request(rq)


def lookup_all(node, service):
    r = node.request({"op": "lookup", "service": service, "all": True})
    return r.get("instances", []) if r.get("ok") else []


def events(node, since=0, service=None):
    rq = {"op": "events", "since": since, "limit": 1000}
    if service:
        rq["service"] = service
    r = node.request(rq)
    assert r.get("ok"), r
    return r["events"]


def err_code(r):
    return (r.get("error") or {}).get("code")


def stats(node):
    r = node.request({"op": "stats"})
    assert r.get("ok"), r
    return r


def test_any_node_serves_every_registration(h):
    require()
    c = h.etcd(1)
    a, b, cc = nodes(h, c, 3)
    r = register(a, "web", 8080)
    assert r["ok"], r
    wid = r["id"]
    # B finds what A acknowledged (once its watch delivered it)
    got = wait_for(lambda: lookup_all(b, "web"), msg="web on node B")
    assert [i["id"] for i in got] == [wid] and got[0]["port"] == 8080
    # A re-registration of the same endpoint through B keeps A's id
    r2 = register(b, "web", 8080, description="again")
    assert r2["ok"] and r2["id"] == wid, r2
    # a client reads its own writes on the node that acknowledged them
    assert lookup_all(b, "web")[0]["description"] == "again"
    wait_for(lambda: lookup_all(a, "web") and lookup_all(a, "web")[0]["description"] == "again",
             msg="A sees B's re-registration")
    # deregister through C (once its watch brought the instance: another node sees a
    # write when its watch delivers it) -> gone on A
    wait_for(lambda: lookup_all(cc, "web") and lookup_all(cc, "web")[0]["description"] == "again",
             msg="C sees B's re-registration")
    d = cc.request({"op": "deregister", "id": wid, "token": r2["token"]})
    assert d["ok"], d
    wait_for(lambda: err_code(a.request({"op": "lookup", "service": "web"})) == "not_found",
             msg="web gone on A")
    # the same events with the same seqs on every node
    wait_for(lambda: events(a) == events(b) == events(cc), msg="one event log")
    evs = events(a)
    kinds = [e["event"] for e in evs]
    assert kinds.count("start") == 3 and kinds.count("register") == 1, kinds
    assert kinds.count("reregister") == 1 and kinds.count("deregister") == 1, kinds
    seqs = [e["seq"] for e in evs]
    assert seqs == sorted(set(seqs)), seqs
    assert {e["detail"].get("node") for e in evs if e["event"] == "start"} == {"n1", "n2", "n3"}
    # since is exclusive
    assert [e["seq"] for e in events(b, since=seqs[1])] == seqs[2:]
    # stats: the store section
    # (each node joins the member list on its own lease, as soon as it started)
    st = wait_for(lambda: stats(b)["store"] if stats(b)["store"]["nodes"] == ["n1", "n2", "n3"]
                  and stats(b)["store"]["connected"] is True else None,
                  msg="B lists the three nodes, connected: %r" % (stats(b)["store"],))
    assert st["backend"] == "etcd", st
    assert st["endpoint"] == c.members[0].client_url and st["node"] == "n2", st
    assert st["revision"] >= 1
    assert "owned" in stats(b)["health"]


def test_racing_registrations_end_with_one_id(h):
    require()
    c = h.etcd(1)
    ns = nodes(h, c, 3)
    ids, errs = [], []
    lock = threading.Lock()

    def worker(node, k):
        for _ in range(k):
            r = register(node, "race", 9000, description=node.flags[3])
            with lock:
                (ids if r.get("ok") else errs).append(r.get("id") or r)

    ts = [threading.Thread(target=worker, args=(n, 10)) for n in ns]
    for t in ts:
        t.start()
    for t in ts:
        t.join(scaled(30))
    assert not errs, errs
    assert len(ids) == 30 and len(set(ids)) == 1, set(ids)
    for n in ns:
        wait_for(lambda n=n: [i["id"] for i in lookup_all(n, "race")] == ids[:1],
                 msg="one instance of race on %s" % n.flags[3])
    # one uniqueness key and one instance in etcd
    assert len(c.range("/registry/instances/")) == 1
    assert len(c.range("/registry/endpoints/race/")) == 1


@timeout(90)
def test_node_death_moves_its_health_checks(h):
    require()
    c = h.etcd(1)
    ns = nodes(h, c, 3, "--check-interval", "0.3", "--check-timeout", "0.2",
               "--max-failures", "2", "--preserve-min", "1000")
    a = ns[0]
    # six services that answer checks, registered through A
    lst = [h.listener() for _ in range(6)]
    ids = []
    for i, s in enumerate(lst):
        r = a.request({"op": "register", "service": "svc%d" % i, "host": "127.0.0.1",
                       "port": s.getsockname()[1]})
        assert r["ok"], r
        ids.append(r["id"])
    # the checks are divided: every instance is checked by exactly one node
    def owned():
        return [stats(n)["health"]["owned"] for n in ns]
    wait_for(lambda: sum(owned()) == 6, msg="6 instances owned once (%r)" % (owned(),))
    a.kill9()
    b, cc = ns[1], ns[2]
    # lookups on B and C go on, and A's registrations stay
    for n in (b, cc):
        for i in range(6):
            assert lookup_all(n, "svc%d" % i), "svc%d lost on %s" % (i, n.flags[3])
    # A's lease runs out: B and C take its share
    wait_for(lambda: stats(b)["store"]["nodes"] == ["n2", "n3"], timeout=10,
             msg="A leaves the member list")
    wait_for(lambda: stats(b)["health"]["owned"] + stats(cc)["health"]["owned"] == 6,
             msg="B and C check all six")
    # the services die: each is evicted once, by one node
    for s in lst:
        s.close()
    h.sockets.clear()
    for i in range(6):
        wait_for(lambda i=i: not lookup_all(b, "svc%d" % i) and not lookup_all(cc, "svc%d" % i),
                 timeout=15, msg="svc%d evicted" % i)
    evs = events(b)
    for iid in ids:
        n_evict = sum(1 for e in evs if e["event"] == "evict" and e.get("id") == iid)
        assert n_evict == 1, "%s evicted %d times: %r" % (iid, n_evict, evs[-20:])
    wait_for(lambda: events(b) == events(cc), msg="B and C agree on the events")


def test_watch_on_b_sees_a_register_on_a(h):
    require()
    c = h.etcd(1)
    a, b = nodes(h, c, 2)
    w = b.conn()
    w.send({"op": "watch"})
    first = w.recv()
    assert first.get("ok"), first
    r = register(a, "seen", 5000)
    assert r["ok"]
    deadline = time.monotonic() + scaled(5)
    while True:
        ev = w.recv(timeout=max(0.1, deadline - time.monotonic()))
        if ev.get("event") == "register" and ev.get("service") == "seen":
            break
    assert ev["id"] == r["id"]


def test_etcd_and_db_together_is_a_usage_error(h):
    res = h.run("registryd", "--etcd", "http://127.0.0.1:1", "--db", h.path("x.db"))
    assert res.rc == 2, res
    assert "--etcd" in res.err and "--db" in res.err, res.err
    res = h.run("registryd", "--etcd", "ftp://127.0.0.1:1", "--listen", "127.0.0.1:0")
    assert res.rc != 0 and "ftp://127.0.0.1:1" in res.err, res.err


def test_etcd_unreachable_at_start_names_it(h):
    port = free_port()
    res = h.run("registryd", "--etcd", "http://127.0.0.1:%d" % port, "--etcd-timeout", "0.5",
                "--listen", "127.0.0.1:0", "--log", h.path("log"))
    assert res.rc == 1, res
    assert "etcd" in res.err and str(port) in res.err, res.err


# --- clients over the nodes ------------------------------------------------------------------
def test_clients_fail_over_between_nodes(h):
    """regctl --registry DEAD,B works; the sample services stay registered (same ids)
    while the node they registered with is killed; regctl watch moves to another node
    and prints every event once, none skipped."""
    import os
    import signal
    from harness import binary, free_port
    require()
    c = h.etcd(1)
    a, b, cc = nodes(h, c, 3)
    addrs = ",".join(n.addr for n in (a, b, cc))
    dead = "127.0.0.1:%d" % free_port()
    assert register(b, "web", 8080)["ok"]
    r = h.regctl("--registry", "%s,%s" % (dead, b.addr), "lookup", "web")
    assert r.rc == 0 and r.out.strip() == "127.0.0.1:8080", r
    # the sample services, through A first
    ts = h.spawn([binary("tsserv"), "--listen", "127.0.0.1:0"], name="tsserv",
                 env=dict(os.environ, REGISTRY_ADDR=addrs))
    _, ts_port = ts.wait_listening()
    sl = h.service("sleepserv", addrs)
    got = wait_for(lambda: {i["port"]: i["id"] for n in ("timestamp", "sleep")
                            for i in lookup_all(cc, n)} if len(lookup_all(cc, "timestamp")) +
                   len(lookup_all(cc, "sleep")) == 2 else None, msg="both registered")
    assert ts_port in got and sl.port in got
    # a watch through A, B, C
    w = h.spawn([binary("regctl"), "--registry", addrs, "--json", "watch"], name="regctl-watch")
    wait_for(lambda: stats(a)["watchers"] == 1, msg="watch subscribed at A")
    assert register(b, "before", 7901)["ok"]
    wait_for(lambda: "before" in w.stdout(), msg="the first event printed")
    a.kill9()
    assert register(cc, "meanwhile", 7902)["ok"]
    wait_for(lambda: "reconnected to" in w.stderr(), timeout=10, msg="the watch moved")
    assert register(cc, "after", 7903)["ok"]
    # the services are still registered, with the same ids, on the living nodes
    for n in (b, cc):
        wait_for(lambda n=n: {i["port"]: i["id"] for s in ("timestamp", "sleep")
                              for i in lookup_all(n, s)} == got, timeout=10,
                 msg="the sample services on %s" % n.flags[3])
    r = h.regctl("call", "timestamp", "still", registry=addrs)
    assert r.rc == 0 and r.out.rstrip().endswith("] still"), r
    # every event since the first the watch printed, once each, in order
    def printed():
        out = []
        for line in w.stdout().splitlines():
            try:
                out.append(json.loads(line)["seq"])
            except (ValueError, KeyError):
                pass
        return out
    first = wait_for(lambda: printed(), msg="json rows")[0]
    wait_for(lambda: printed() == [e["seq"] for e in events(cc, since=first - 1)]
             and "after" in w.stdout(), timeout=10,
             msg="every event once: %r vs %r" % (printed(), [e["seq"] for e in events(cc, since=first - 1)]))
    for p in (ts, sl, w):
        p.signal(signal.SIGTERM)
        assert p.wait() == 0, p.stderr()


def test_http_and_metrics_on_cluster_nodes(h):
    """Consul's API on B answers A's registrations with the same X-Consul-Index as A;
    /metrics says how many nodes live, whether etcd answers, and what this node checks
    (and passes promtool when it is installed)."""
    import shutil
    import subprocess
    require()
    c = h.etcd(1)
    a, b = [h.registry_etcd(c, "--http", "127.0.0.1:0", node="n%d" % i,
                            log=h.path("n%d.log" % i)) for i in (1, 2)]
    r = a.http("PUT", "/v1/agent/service/register",
               json.dumps({"Name": "api", "ID": "api-1", "Address": "127.0.0.1", "Port": 9100}))
    assert r.status == 200, r
    got = wait_for(lambda: b.http("GET", "/v1/health/service/api") if
                   b.http("GET", "/v1/health/service/api").json() else None, msg="api on B")
    assert got.json()[0]["Service"]["ID"] == "api-1"
    ia = a.http("GET", "/v1/health/service/api").headers.get("X-Consul-Index")
    wait_for(lambda: b.http("GET", "/v1/health/service/api").headers.get("X-Consul-Index") == ia,
             msg="the same index on A and B (%s)" % ia)
    m = wait_for(lambda: b.http("GET", "/metrics") if "registry_cluster_nodes 2" in
                 b.http("GET", "/metrics").body.decode() else None, msg="2 nodes in /metrics")
    text = m.body.decode()
    assert b.http("GET", "/api/stats").json()["nodes"] == ["n1", "n2"]  # the dashboard's header
    assert "registry_store_connected 1" in text, text[-2000:]
    assert 'registry_store_backend_info{backend="etcd"} 1' in text
    assert "registry_health_owned " in text
    if shutil.which("promtool"):
        p = subprocess.run(["promtool", "check", "metrics"], input=m.body, capture_output=True,
                           timeout=scaled(20))
        assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()
