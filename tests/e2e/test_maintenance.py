# SPDX-License-Identifier: BSD-2-Clause
"""test_maintenance.py -- an operator's requests (issue 16): a forced deregister for an
instance whose owner lost its token, and maintenance mode (README "The protocol",
"Security"), end to end: the line protocol, DNS, regctl, restarts and health checks.
"""

import json
import sys

try:
    import dns.message  # noqa: F401
except ImportError:  # Debian's python3-dnspython, when python3 is not Debian's own
    sys.path.append("/usr/lib/python3/dist-packages")

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from harness import err, events, ok, register, wait_for


def log_lines(path):
    with open(path, "rb") as f:
        return [json.loads(l) for l in f.read().split(b"\n") if l.strip()]


def lookup_all(c, service):
    return ok(c.request({"op": "lookup", "service": service, "all": True}))["instances"]


def secret_file(h, text="s3cret"):
    path = h.path("secret")
    with open(path, "w") as f:
        f.write(text + "\n")
    return path


def dns_a(reg, name):
    m = dns.message.make_query(name, "A")
    r = dns.query.udp(m, "127.0.0.1", port=reg.dns_port, timeout=3, ignore_trailing=True)
    return r, sorted(rr.address for rrset in r.answer
                     if rrset.rdtype == dns.rdatatype.A for rr in rrset)


def test_forced_deregister_without_secret_from_loopback(h):
    reg = h.registry()
    c = reg.conn()
    iid, _token = register(c, "lost", 7101, description="its owner lost the token")
    # The owner's rule still holds without "force": a token is needed.
    err(c.request({"op": "deregister", "id": iid}), "bad_request", "deregister without token")
    r = h.regctl("deregister", "--force", iid, registry=reg.addr)
    assert r.rc == 0 and iid in r.out, r
    err(c.request({"op": "lookup", "service": "lost"}), "not_found")
    ev = [e for e in events(c) if e["event"] == "deregister" and e["id"] == iid]
    assert len(ev) == 1 and ev[0]["detail"] == {"forced": True}, ev
    logged = wait_for(lambda: [l for l in log_lines(reg.log)
                               if l["event"] == "deregister" and l.get("id") == iid],
                      5, "the forced deregister in the log")
    assert len(logged) == 1 and logged[0].get("forced") is True and logged[0].get("client"), logged
    # An unknown id: not found (exit 1); usage: --force takes the id alone.
    r = h.regctl("deregister", "--force", "0123456789abcdef", registry=reg.addr)
    assert r.rc == 1, r
    r = h.regctl("deregister", "--force", iid, "token", registry=reg.addr)
    assert r.rc == 2, r


def test_operator_requests_need_the_secret_when_there_is_one(h):
    reg = h.registry("--auth-token-file", secret_file(h))
    c = reg.conn()
    iid, _ = register(c, "pay", 7102, auth="s3cret")
    for args in (["deregister", "--force", iid], ["maintenance", iid, "on"]):
        r = h.regctl(*args, registry=reg.addr)
        assert r.rc == 4 and "unauthorized" in r.err, "%s without the secret: %r" % (args, r)
    err(c.request({"op": "maintenance", "id": iid, "enable": True, "auth": "wrong"}),
        "unauthorized")
    refused = wait_for(lambda: [l for l in log_lines(reg.log) if l["event"] == "refused"],
                       5, "refusals in the log")
    wait_for(lambda: len([l for l in log_lines(reg.log) if l["event"] == "refused"]) == 3, 5,
             "three refusals in the log")
    assert all(l["id"] == iid for l in refused), refused
    assert "s3cret" not in open(reg.log).read()
    r = h.regctl("--auth-file", h.path("secret"), "maintenance", iid, "on", registry=reg.addr)
    assert r.rc == 0, r
    r = h.regctl("--auth-file", h.path("secret"), "deregister", "--force", iid,
                 registry=reg.addr)
    assert r.rc == 0, r
    err(c.request({"op": "lookup", "service": "pay", "all": True}), "not_found")


def test_maintenance_skipped_by_lookups_and_dns_shown_and_counted(h):
    reg = h.registry("--dns", "127.0.0.1:0")
    c = reg.conn()
    a, _ = register(c, "web", 7201, host="127.0.0.1")
    b, _ = register(c, "web", 7202, host="127.0.0.2")
    r = ok(c.request({"op": "maintenance", "id": b, "enable": True, "reason": "disk swap"}))
    assert r["id"] == b and r["maintenance"] is True, r
    # lookups hand out only a (round-robin among the one left)
    for _ in range(4):
        r = ok(c.request({"op": "lookup", "service": "web"}))
        assert r["port"] == 7201 and [i["id"] for i in r["instances"]] == [a], r
    # DNS reads the same sets: the service and the instance's own name
    for _ in range(3):
        _, got = dns_a(reg, "web.service.registry")
        assert got == ["127.0.0.1"], got
    resp, _ = dns_a(reg, "%s.instance.registry" % b)
    assert resp.rcode() == dns.rcode.NXDOMAIN, resp
    # shown (and listed) with status maintenance, its check verdict beside it
    byid = {i["id"]: i for i in lookup_all(c, "web")}
    assert byid[b]["status"] == "maintenance" and byid[b]["health"] == "passing", byid[b]
    assert byid[a]["status"] == "passing" and "health" not in byid[a], byid[a]
    svc = ok(c.request({"op": "list"}))["services"][0]
    assert (svc["instances"], svc["passing"], svc["maintenance"]) == (2, 1, 1), svc
    r = h.regctl("lookup", "web", "--all", registry=reg.addr)
    rows = {l.split()[-1]: l.split()[1] for l in r.out.splitlines()[1:]}
    assert rows == {a: "passing", b: "maintenance"}, r
    r = h.regctl("list", registry=reg.addr)
    head, row = r.out.splitlines()
    assert head.split() == ["SERVICE", "INSTANCES", "PASSING", "MAINTENANCE", "DESCRIPTION"], r
    assert row.split()[:4] == ["web", "2", "1", "1"], r
    # the only instance left in maintenance too: nothing to hand out
    ok(c.request({"op": "maintenance", "id": a, "enable": True}))
    err(c.request({"op": "lookup", "service": "web"}), "not_found")
    resp, _ = dns_a(reg, "web.service.registry")
    assert resp.rcode() == dns.rcode.NXDOMAIN or not resp.answer, resp
    r = h.regctl("lookup", "web", registry=reg.addr)
    assert r.rc == 1, r
    # back in service: handed out again
    r = h.regctl("maintenance", b, "off", registry=reg.addr)
    assert r.rc == 0, r
    assert ok(c.request({"op": "lookup", "service": "web"}))["port"] == 7202
    # recorded as events, with the reason
    evs = [(e["event"], e["id"], e["detail"]) for e in events(c)
           if e["event"].startswith("maintenance")]
    assert evs == [("maintenance_on", b, {"reason": "disk swap"}), ("maintenance_on", a, {}),
                   ("maintenance_off", b, {})], evs
    # asking for the state it is in changes (and records) nothing
    ok(c.request({"op": "maintenance", "id": a, "enable": True}))
    assert len([e for e in events(c) if e["event"].startswith("maintenance")]) == 3
    err(c.request({"op": "maintenance", "id": a}), "bad_request", "no enable")
    err(c.request({"op": "maintenance", "id": "0123456789abcdef", "enable": True}), "not_found")


def test_maintenance_survives_restart_and_reregistration(h):
    reg = h.registry()
    c = reg.conn()
    iid, token = register(c, "keep", 7301, description="v1")
    ok(c.request({"op": "maintenance", "id": iid, "enable": True}))
    # the service registering itself again does not end the operator's maintenance
    r = ok(c.request({"op": "register", "service": "keep", "host": "127.0.0.1", "port": 7301,
                      "check": "none", "description": "v2", "token": token}))
    assert r["id"] == iid
    inst = lookup_all(c, "keep")[0]
    assert inst["status"] == "maintenance" and inst["description"] == "v2", inst
    c.close()
    reg2 = reg.restart()
    c = reg2.conn()
    inst = lookup_all(c, "keep")[0]
    assert inst["id"] == iid and inst["status"] == "maintenance", inst
    err(c.request({"op": "lookup", "service": "keep"}), "not_found")
    ok(c.request({"op": "maintenance", "id": iid, "enable": False}))
    c.close()
    reg3 = reg2.restart()
    c = reg3.conn()
    assert ok(c.request({"op": "lookup", "service": "keep"}))["port"] == 7301


def test_health_checks_do_not_end_maintenance(h):
    dead = h.listener()
    port = dead.getsockname()[1]
    dead.close()   # nothing listens there: every check fails
    reg = h.registry("--check-interval", "0.1", "--check-timeout", "0.1", "--max-failures", "2")
    c = reg.conn()
    iid, _ = register(c, "down", port, check="tcp", ttl=1)
    ok(c.request({"op": "maintenance", "id": iid, "enable": True}))
    seq0 = events(c)[-1]["seq"]
    # Checks go on (and their verdict shows), but neither eviction nor the TTL ends it.
    wait_for(lambda: len([e for e in events(c, since=seq0) if e["event"] == "check_failed"
                          and e["id"] == iid]) >= 4, 10, "four failed checks in maintenance")
    wait_for(lambda: [e for e in events(c, since=seq0) if e["event"] == "heartbeat_missed"],
             5, "the TTL passed")
    inst = lookup_all(c, "down")[0]
    assert inst["status"] == "maintenance" and inst["health"] == "critical", inst
    assert not [e for e in events(c, since=seq0) if e["event"] in ("evict", "expire")]
    # Back in service, the usual rules apply again: it goes.
    ok(c.request({"op": "maintenance", "id": iid, "enable": False}))
    wait_for(lambda: [e for e in events(c, since=seq0) if e["event"] in ("evict", "expire")
                      and e["id"] == iid], 10, "eviction or expiry after maintenance")


def test_consul_maintenance_endpoint(h):
    """PUT /v1/agent/service/maintenance/ID?enable=true|false&reason=R: Consul's way to the
    same operator's request: the instance leaves ?passing answers (its check shows why),
    /api/services counts it apart, and only the shared secret (X-Consul-Token) may do it
    when registryd has one."""
    reg = h.registry("--http", "127.0.0.1:0", "--auth-token-file", secret_file(h))
    c = reg.conn()
    r = reg.http("PUT", "/v1/agent/service/register",
                 json.dumps({"Name": "web", "ID": "web-1", "Address": "127.0.0.1", "Port": 9990,
                             "Check": {"TTL": "60s"}}).encode(),
                 {"X-Consul-Token": "s3cret"})
    assert r.status == 200, r
    path = "/v1/agent/service/maintenance/web-1?enable=true&reason=upgrade"
    r = reg.http("PUT", path)
    assert r.status == 403, r
    r = reg.http("PUT", path, headers={"X-Consul-Token": "wrong"})
    assert r.status == 403, r
    r = reg.http("PUT", path, headers={"X-Consul-Token": "s3cret"})
    assert r.status == 200, r
    passing = json.loads(reg.http("GET", "/v1/health/service/web?passing").body)
    assert passing == [], passing
    every = json.loads(reg.http("GET", "/v1/health/service/web").body)
    assert len(every) == 1 and every[0]["Checks"][0]["Status"] == "critical", every
    assert "maintenance" in every[0]["Checks"][0]["Output"], every
    svc = json.loads(reg.http("GET", "/api/services").body)
    assert [(s["name"], s["passing"], s["critical"], s["maintenance"]) for s in svc] == \
        [("web", 0, 0, 1)], svc
    evs = events(c, service="web")
    assert [e["event"] for e in evs][-1] == "maintenance_on", evs
    assert evs[-1]["detail"].get("reason") == "upgrade", evs[-1]
    r = reg.http("PUT", "/v1/agent/service/maintenance/web-1?enable=false",
                 headers={"X-Consul-Token": "s3cret"})
    assert r.status == 200, r
    passing = json.loads(reg.http("GET", "/v1/health/service/web?passing").body)
    assert [e["Service"]["ID"] for e in passing] == ["web-1"], passing
    r = reg.http("PUT", "/v1/agent/service/maintenance/web-1", headers={"X-Consul-Token": "s3cret"})
    assert r.status == 400 and b"enable" in r.body, r
    r = reg.http("PUT", "/v1/agent/service/maintenance/nope?enable=true",
                 headers={"X-Consul-Token": "s3cret"})
    assert r.status == 404, r
