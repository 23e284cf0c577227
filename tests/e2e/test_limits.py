# SPDX-License-Identifier: BSD-2-Clause
"""test_limits.py -- what clients cannot make the registry do (README: Security).

The health checker probes each distinct (host, port) once per interval whatever the
number of instances naming it, only at addresses the operator's --check-allow /
--check-deny rule lets it connect to; one client IP may register at most
--max-instances-per-client instances; the catalog holds at most --max-catalog-bytes.
Every target here is on loopback: 127.0.0.2 and 127.0.0.3 play refused addresses.
"""

import socket
import threading
import time

from harness import err, events, ok, register, scaled, stats, still_serving, wait_for


class AcceptCounter:
    """A listener the test owns that counts the connections it accepts (a thread that
    stops with the test)."""

    def __init__(self, h, host="127.0.0.1"):
        self.sock = h.listener(host)
        self.port = self.sock.getsockname()[1]
        self.count = 0
        self.sock.settimeout(0.1)
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.count += 1
            c.close()


def pipeline(conn, reqs):
    """Sends every request, then reads every reply (in order)."""
    for r in reqs:
        conn.send(r)
    return [conn.recv() for _ in reqs]


# --- amplification: one probe per target -------------------------------------------------

def test_one_probe_per_target_however_many_instances_name_it(h):
    target = AcceptCounter(h)
    reg = h.registry("--check-interval", "0.2", "--check-timeout", "0.2")
    c = reg.conn()
    n = 200
    replies = pipeline(c, [{"op": "register", "service": "amp-%d" % i, "host": "127.0.0.1",
                            "port": target.port, "check": "tcp"} for i in range(n)])
    assert all(r.get("ok") for r in replies), [r for r in replies if not r.get("ok")][:3]
    wait_for(lambda: stats(c)["health"]["checks"] >= 3 * n, 10, "three rounds of checks")
    t0, a0, p0 = time.monotonic(), target.count, stats(c)["health"]["probes"]
    time.sleep(scaled(1.0))
    dt, accepts = time.monotonic() - t0, target.count - a0
    st = stats(c)["health"]
    probes = st["probes"] - p0
    # One target, probed every 0.2 s: about 5 connects a second, not 200 x 5.
    assert st["targets"] == 1, st
    assert accepts <= dt / 0.2 + 3, "%d connects in %.2f s for %d instances" % (accepts, dt, n)
    assert probes <= dt / 0.2 + 3, st
    # ... and every instance got the verdict.
    inst = ok(c.request({"op": "lookup", "service": "amp-7", "all": True}))["instances"]
    assert inst[0]["status"] == "passing" and inst[0]["last_check"], inst


def test_a_dead_target_fails_every_instance_naming_it(h):
    dead = h.listener()
    port = dead.getsockname()[1]
    dead.close()
    reg = h.registry("--check-interval", "0.1", "--check-timeout", "0.1", "--max-failures", "2")
    c = reg.conn()
    for i in range(5):
        register(c, "dead-%d" % i, port, check="tcp")
    wait_for(lambda: stats(c)["instances"] == 0, 10, "all five evicted")
    ev = [e for e in events(c) if e["event"] == "evict"]
    assert sorted(e["service"] for e in ev) == ["dead-%d" % i for i in range(5)], ev


# --- the check rule ---------------------------------------------------------------------------

def test_denied_target_is_refused_at_registration(h):
    reg = h.registry("--check-deny", "127.0.0.2/32,127.0.0.128/25")
    c = reg.conn()
    msg = err(c.request({"op": "register", "service": "scan", "host": "127.0.0.2", "port": 22,
                         "check": "tcp"}), "bad_request")
    assert "--check-deny 127.0.0.2/32" in msg and '"check":"none"' in msg, msg
    msg = err(c.request({"op": "register", "service": "scan", "host": "127.0.0.200", "port": 22,
                         "check": "tcp"}), "bad_request")
    assert "127.0.0.128/25" in msg, msg
    # Not probed, so allowed: check none, and a target outside the ranges.
    register(c, "scan", 22, host="127.0.0.2", check="none")
    register(c, "fine", 1, host="127.0.0.3", check="none")
    assert stats(c)["health"]["targets"] == 0
    still_serving(c)


def test_check_allow_limits_targets(h):
    target = AcceptCounter(h)
    reg = h.registry("--check-allow", "127.0.0.1/32", "--check-interval", "0.2")
    c = reg.conn()
    register(c, "ok", target.port, check="tcp")
    msg = err(c.request({"op": "register", "service": "no", "host": "127.0.0.3", "port": 1,
                         "check": "tcp"}), "bad_request")
    assert "--check-allow" in msg and "127.0.0.1/32" in msg, msg
    wait_for(lambda: target.count > 0, 5, "the allowed target probed")


def test_resolved_address_is_checked_against_the_rule(h):
    """A hostname passes registration; its addresses are checked when it is resolved,
    and a refused one is a failed check, never a connect."""
    target = AcceptCounter(h)
    # (a timeout long enough for getaddrinfo under valgrind: resolving is part of a check)
    reg = h.registry("--check-deny", "127.0.0.0/8,::1", "--check-interval", "0.5",
                     "--check-timeout", "0.5", "--max-failures", "1000")
    c = reg.conn()
    register(c, "named", target.port, host="localhost", check="tcp")
    wait_for(lambda: [e for e in events(c) if e["event"] == "check_failed" and
                      "check-deny" in e["detail"]["error"]], 10, "a check failed by the rule")
    wait_for(lambda: stats(c)["health"]["denied"] >= 3, 10, "denied probes counted")
    assert target.count == 0, "connected %d times to a denied address" % target.count


def test_check_rule_flags_are_validated(h):
    for flag, value in (("--check-deny", "10.0.0.0/33"), ("--check-allow", "nope"),
                        ("--check-deny", "")):
        r = h.run("registryd", flag, value, timeout=10)
        assert r.rc == 2 and flag in r.err, r


# --- per-client cap ----------------------------------------------------------------------------

def test_max_instances_per_client(h):
    reg = h.registry("--max-instances-per-client", "5")
    c = reg.conn()
    mine = [register(c, "svc-%d" % i, 7000 + i) for i in range(5)]
    msg = err(c.request({"op": "register", "service": "svc-9", "host": "127.0.0.1", "port": 7009,
                         "check": "none"}), "unavailable")
    assert "--max-instances-per-client 5" in msg and "127.0.0.1" in msg, msg
    # Another client is not affected; updating one's own instance is not a new one.
    other = reg.conn(source="127.0.0.2")
    register(other, "theirs", 1, host="127.0.0.2")
    iid, tok = register(c, "svc-0", 7000, description="updated")
    assert iid == mine[0][0]
    # Freeing one makes room for one.
    ok(c.request({"op": "deregister", "id": iid, "token": tok}))
    register(c, "svc-9", 7009)
    err(c.request({"op": "register", "service": "svc-10", "host": "127.0.0.1", "port": 7010,
                   "check": "none"}), "unavailable")


def test_per_client_cap_holds_for_a_pipeline(h):
    """Registrations in flight count: a pipeline cannot pass the check all at once."""
    reg = h.registry("--max-instances-per-client", "5")
    c = reg.conn()
    replies = pipeline(c, [{"op": "register", "service": "p-%d" % i, "host": "127.0.0.1",
                            "port": 100 + i, "check": "none"} for i in range(40)])
    good = [r for r in replies if r.get("ok")]
    assert len(good) == 5, "%d of 40 pipelined registrations passed a cap of 5" % len(good)
    assert all(r["error"]["code"] == "unavailable" for r in replies if not r.get("ok"))
    assert stats(c)["instances"] == 5


# --- memory ---------------------------------------------------------------------------------------

def fat(i, port):
    return {"op": "register", "service": "fat-%d" % i, "host": "127.0.0.1", "port": port,
            "check": "none", "description": "d" * 1024,
            "tags": ["%02d" % k + "t" * 253 for k in range(32)]}


def test_max_catalog_bytes(h):
    limit = 4 << 20
    reg = h.registry("--max-catalog-bytes", str(limit))
    c = reg.conn()
    replies = pipeline(c, [fat(i, 1000 + i) for i in range(400)])
    good = [r for r in replies if r.get("ok")]
    bad = [r for r in replies if not r.get("ok")]
    assert good and bad, "4 MiB cannot hold 400 instances of ~20 KiB, nor refuse them all"
    assert all("--max-catalog-bytes" in r["error"]["message"] and
               r["error"]["code"] == "unavailable" for r in bad), bad[:2]
    st = stats(c)
    assert st["catalog_bytes"] <= limit, st["catalog_bytes"]
    per = st["catalog_bytes"] / st["instances"]
    assert 16 << 10 <= per <= 32 << 10, "%.0f bytes counted per fat instance" % per
    # What is counted is what the process holds: the daemon's memory grew by about that.
    still_serving(c)
    # Removing instances frees room again.
    ids = [(r["id"], r["token"]) for r in good[:3]]
    for iid, tok in ids:
        ok(c.request({"op": "deregister", "id": iid, "token": tok}))
    assert ok(c.request(fat(999, 5000))).get("id")
