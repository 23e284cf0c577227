# SPDX-License-Identifier: BSD-2-Clause
"""test_prometheus.py -- Prometheus as a client of the HTTP front-end (issue 13).

A real Prometheus (Debian's 2.42, /usr/bin/prometheus) on a free loopback port discovers
the registry's instances through http_sd_configs (/api/prometheus/sd) and scrapes
registryd's /metrics. Debian builds Prometheus without consul_sd_configs, so the requests
upstream Prometheus 2.42's Consul discovery sends are replayed here byte for byte (as Go's
consul/api client writes them) and the answers checked as that discovery reads them.
"""

import json
import os
import threading
import time
import urllib.parse

from harness import Skip, free_port, http_request, ok, register, scaled, wait_for

PROMETHEUS = "/usr/bin/prometheus"


def start_registry(h, *flags):
    reg = h.registry("--http", "127.0.0.1:0", *flags)
    assert reg.http_url, reg.stdout()
    return reg


def start_prometheus(h, reg):
    if not os.access(PROMETHEUS, os.X_OK):
        raise Skip("prometheus is not installed (Debian prometheus)")
    hp = reg.http_url.split("//")[1].rstrip("/")
    conf = h.path("prometheus.yml")
    with open(conf, "w") as f:
        f.write("""global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1m
scrape_configs:
  - job_name: registryd
    static_configs:
      - targets: ["%s"]
  - job_name: registry-sd
    scrape_interval: 30s
    scrape_timeout: 1s
    http_sd_configs:
      - url: "http://%s/api/prometheus/sd"
        refresh_interval: 1s
""" % (hp, hp))
    port = free_port()
    p = h.spawn([PROMETHEUS, "--config.file=" + conf, "--storage.tsdb.path=" + h.path("tsdb"),
                 "--web.listen-address=127.0.0.1:%d" % port, "--log.level=warn"],
                name="prometheus")
    url = "http://127.0.0.1:%d/" % port

    def ready():
        assert p.alive(), "prometheus exited:\n%s" % p.tail()
        return http_request(url, "GET", "/-/ready", timeout=1).status == 200
    wait_for(ready, 15, "prometheus to be ready")
    return url


def prom_api(url, path):
    r = http_request(url, "GET", path, timeout=3)
    assert r.status == 200, r
    doc = r.json()
    assert doc.get("status") == "success", doc
    return doc["data"]


def sd_targets(url):
    """service -> sorted targets of the registry-sd job's active targets."""
    out = {}
    for t in prom_api(url, "/api/v1/targets?state=active")["activeTargets"]:
        if t["scrapePool"] != "registry-sd":
            continue
        svc = t["discoveredLabels"].get("__meta_registry_service")
        out.setdefault(svc, []).append(t["discoveredLabels"]["__address__"])
    return {k: sorted(v) for k, v in out.items()}


def test_prometheus_discovers_and_scrapes(h):
    """Prometheus hands discovered targets to its scrape manager at most every 5 s, so
    each change is waited for with a deadline past that (and the appearing and the
    disappearing share one round)."""
    reg = start_registry(h)
    ts = h.service("tsserv", reg.addr, "--ttl", "0")
    sl = h.service("sleepserv", reg.addr, "--ttl", "0")
    c = reg.conn()
    old_l, new_l = h.listener(), h.listener()
    oid, otok = register(c, "old", old_l.getsockname()[1])
    url = start_prometheus(h, reg)
    want = {"timestamp": [ts.addr], "sleep": [sl.addr],
            "old": ["127.0.0.1:%d" % old_l.getsockname()[1]]}
    wait_for(lambda: sd_targets(url) == want, 12, "prometheus to discover tsserv and sleepserv")
    # the labels of an instance, as Prometheus sees them
    t = [t for t in prom_api(url, "/api/v1/targets?state=active")["activeTargets"]
         if t["discoveredLabels"].get("__address__") == ts.addr][0]
    assert t["discoveredLabels"]["__meta_registry_status"] == "passing", t
    assert t["discoveredLabels"]["__meta_registry_instance_id"], t

    # a new service appears, a deregistered one disappears
    register(c, "fresh", new_l.getsockname()[1])
    ok(c.request({"op": "deregister", "id": oid, "token": otok}))
    del want["old"]
    want["fresh"] = ["127.0.0.1:%d" % new_l.getsockname()[1]]
    wait_for(lambda: sd_targets(url) == want, 12,
             "the new service to appear and the deregistered one to go in prometheus")

    # registryd's own /metrics is scraped: up == 1
    def up():
        res = prom_api(url, "/api/v1/query?query=" + urllib.parse.quote('up{job="registryd"}'))
        return res["result"] and res["result"][0]["value"][1] == "1"
    wait_for(up, 5, "up{job=\"registryd\"} == 1")

    def services():  # scraped every second: timestamp, sleep and fresh
        res = prom_api(url, "/api/v1/query?query=" + urllib.parse.quote("registry_services"))
        return res["result"] and res["result"][0]["value"][1] == "3"
    wait_for(services, 5, "the scraped registry_services to be 3")


# --- upstream Prometheus's consul_sd_configs, replayed -------------------------------------
class GoConsulClient:
    """What Prometheus 2.42's Consul discovery sends, as hashicorp/consul/api writes it: a
    GET with Go's headers and the query keys sorted (url.Values.Encode), stale= for
    allow_stale (Prometheus's default), index= only once an index is known, and the wait
    in milliseconds. It checks the meta the client parses (X-Consul-Index must be an
    unsigned integer, X-Consul-KnownLeader, X-Consul-LastContact)."""

    def __init__(self, reg):
        self.url = reg.http_url

    def get(self, path, index=0, tags=(), timeout=5.0):
        q = []
        if index:
            q.append(("index", str(index)))
        q.append(("stale", ""))
        q += [("tag", t) for t in tags]
        if index:
            q.append(("wait", "120000ms"))
        target = path + "?" + urllib.parse.urlencode(q)
        r = http_request(self.url, "GET", target, timeout=timeout,
                         headers={"User-Agent": "Go-http-client/1.1", "Accept-Encoding": "gzip"})
        assert r.status == 200, "%s: %r" % (target, r)
        idx = r.headers.get("x-consul-index", "")
        assert idx.isdigit() and int(idx) > 0, "%s: X-Consul-Index %r" % (target, idx)
        assert r.headers.get("x-consul-knownleader") == "true", r
        assert r.headers.get("x-consul-lastcontact", "").isdigit(), r
        return r.json(), int(idx)


def blocked_now(reg, before):
    """A blocking query more than before has started waiting (registryd's own count)."""
    text = http_request(reg.http_url, "GET", "/metrics").body.decode()
    for l in text.splitlines():
        if l.startswith("registry_http_blocking_queries_total "):
            return float(l.split()[1]) > before
    raise AssertionError("no registry_http_blocking_queries_total in /metrics")


def blocking_count(reg):
    text = http_request(reg.http_url, "GET", "/metrics").body.decode()
    return [float(l.split()[1]) for l in text.splitlines()
            if l.startswith("registry_http_blocking_queries_total ")][0]


def in_thread(fn):
    box = {}

    def run():
        try:
            box["r"] = fn()
        except BaseException as e:  # reported by the caller
            box["e"] = e
        box["t"] = time.monotonic()
    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th, box


def finish(th, box):
    th.join(scaled(5))
    assert not th.is_alive(), "the blocking query did not return"
    if "e" in box:
        raise box["e"]
    return box["r"], box["t"]


def test_consul_sd_requests_replayed(h):
    reg = start_registry(h)
    c = reg.conn()
    register(c, "web", 8080, tags=["a", "b", "c"])
    register(c, "web", 8081, host="127.0.0.2", tags=["a"])
    register(c, "web", 8082, host="::1", tags=["b", "a"])
    go = GoConsulClient(reg)

    # getDatacenter: info["Config"]["Datacenter"].(string)
    self_doc, _ = go.get("/v1/agent/self")
    assert isinstance(self_doc["Config"]["Datacenter"], str) and self_doc["Config"]["Datacenter"]
    assert all(isinstance(v, dict) for v in self_doc.values()), self_doc  # map[string]map[string]interface{}

    # watchServices: the first call has no index
    srvs, idx = go.get("/v1/catalog/services")
    assert srvs == {"web": ["a", "b", "c"]} or sorted(srvs["web"]) == ["a", "b", "c"], srvs
    # ... the next one blocks until the catalog changes
    before = blocking_count(reg)
    th, box = in_thread(lambda: go.get("/v1/catalog/services", index=idx))
    wait_for(lambda: blocked_now(reg, before), 5, "the catalog watch to block")
    assert th.is_alive(), "answered before any change: %r" % box
    register(c, "api", 9090)
    changed = time.monotonic()
    (srvs2, idx2), t = finish(th, box)
    assert t - changed < scaled(0.1), "answered %.3fs after the change" % (t - changed)
    assert idx2 > idx and set(srvs2) == {"web", "api"}, (idx, idx2, srvs2)

    # watch (one service, two watched tags): health/service with tag=a&tag=b, no passing
    nodes, sidx = go.get("/v1/health/service/web", tags=("a", "b"))
    assert len(nodes) == 2, nodes
    for n in nodes:
        # what the discovery reads into labels
        svc, node = n["Service"], n["Node"]
        assert isinstance(svc["Address"], str) and isinstance(svc["Port"], int), n
        assert isinstance(svc["ID"], str) and isinstance(svc["Tags"], list), n
        assert isinstance(node["Address"], str) and isinstance(node["Node"], str), n
        for m in (node.get("Meta") or {}, svc.get("Meta") or {}, node.get("TaggedAddresses") or {}):
            assert isinstance(m, dict) and all(isinstance(v, str) for v in m.values()), n
        assert all(ch["Status"] in ("passing", "critical", "warning", "maintenance")
                   for ch in n["Checks"]), n
    addrs = sorted("[%s]:%d" % (n["Service"]["Address"], n["Service"]["Port"])
                   if ":" in n["Service"]["Address"] else
                   "%s:%d" % (n["Service"]["Address"], n["Service"]["Port"]) for n in nodes)
    assert addrs == ["127.0.0.1:8080", "[::1]:8082"], addrs
    # the catalog watch's index moved on (api was registered): web's own did not
    before = blocking_count(reg)
    th, box = in_thread(lambda: go.get("/v1/health/service/web", index=sidx, tags=("a", "b")))
    wait_for(lambda: blocked_now(reg, before), 5, "the service watch to block")
    register(c, "other", 9091)  # another service: the web watch keeps waiting
    assert th.is_alive(), "a change of another service answered the web watch: %r" % box
    wid, wtok = register(c, "web", 8083, host="127.0.0.3", tags=["a", "b"])
    changed = time.monotonic()
    (nodes2, sidx2), t = finish(th, box)
    assert t - changed < scaled(0.1), "answered %.3fs after the change" % (t - changed)
    assert sidx2 > sidx and len(nodes2) == 3, (sidx, sidx2, nodes2)
    # a removed service: its watch is answered (with [] and a moved index)
    before = blocking_count(reg)
    th, box = in_thread(lambda: go.get("/v1/health/service/api", index=go.get(
        "/v1/health/service/api")[1]))
    wait_for(lambda: blocked_now(reg, before), 5, "the api watch to block")
    api_id = [e for e in json.loads(http_request(reg.http_url, "GET", "/api/services/api").body)
              ["instances"]][0]["id"]
    r = http_request(reg.http_url, "PUT", "/v1/agent/service/deregister/" + api_id)
    assert r.status == 200, r
    (gone, _), _ = finish(th, box)
    assert gone == [], gone
    srvs3, _ = go.get("/v1/catalog/services")
    assert "api" not in srvs3 and "web" in srvs3, srvs3
