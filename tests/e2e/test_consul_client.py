# SPDX-License-Identifier: BSD-2-Clause
"""test_consul_client.py -- python-consul (Debian python3-consul), a Consul client no one
here wrote, against registryd's HTTP front-end (issue 13): register with a TCP check and
with a TTL check, heartbeats, the catalog, health with passing=True, a blocking query,
deregister; the results as Consul gives them (an index string, the shapes).
"""

import sys
import time

try:
    import consul  # noqa: F401
except ImportError:  # Debian's python3-consul, when python3 is not Debian's own
    sys.path.append("/usr/lib/python3/dist-packages")

try:
    import consul
except ImportError:
    consul = None

from harness import Skip, scaled, timing, wait_for


def client(h, *flags):
    if consul is None:
        raise Skip("python-consul is not installed (Debian python3-consul)")
    reg = h.registry("--http", "127.0.0.1:0", *flags)
    host, port = reg.http_url.split("//")[1].rstrip("/").rsplit(":", 1)
    return reg, consul.Consul(host=host, port=int(port))


def index(idx):
    """python-consul hands X-Consul-Index back as a string: a positive integer."""
    assert isinstance(idx, str) and idx.isdigit() and int(idx) > 0, idx
    return int(idx)


def test_register_catalog_health_deregister(h):
    reg, c = client(h)
    live = h.listener()
    port = live.getsockname()[1]
    assert c.agent.service.register("web", service_id="web-1", address="127.0.0.1", port=port,
                                    tags=["v1", "blue"],
                                    check=consul.Check.tcp("127.0.0.1", port, "10s")) is True
    other = h.listener().getsockname()[1]
    assert c.agent.service.register("web", service_id="web-2", address="127.0.0.1", port=other,
                                    tags=["v1"]) is True
    i0, svcs = c.catalog.services()
    index(i0)
    assert set(svcs) == {"web"} and sorted(svcs["web"]) == ["blue", "v1"], svcs

    i1, nodes = c.health.service("web", passing=True)
    index(i1)
    assert isinstance(nodes, list) and len(nodes) == 2, nodes
    n = [x for x in nodes if x["Service"]["ID"] == "web-1"][0]
    assert n["Service"]["Service"] == "web" and n["Service"]["Port"] == port, n
    assert n["Service"]["Address"] == "127.0.0.1" and sorted(n["Service"]["Tags"]) == ["blue", "v1"]
    assert isinstance(n["Node"]["Node"], str) and n["Node"]["Address"], n
    assert [ch["Status"] for ch in n["Checks"]] == ["passing"], n

    i2, cat = c.catalog.service("web")
    assert index(i2) == index(i1), (i1, i2)
    assert [e["ServiceID"] for e in cat] == [x["Service"]["ID"] for x in nodes], (cat, nodes)
    assert sorted(e["ServiceID"] for e in cat) == ["web-1", "web-2"], cat
    assert c.health.service("nope")[1] == [] and c.catalog.service("nope")[1] == []

    for sid in [x["Service"]["ID"] for x in nodes]:
        assert c.agent.service.deregister(sid) is True
    i3, svcs = c.catalog.services()
    assert svcs == {}, svcs
    assert index(i3) > index(i0), (i0, i3)
    # an unknown id: Consul answers 404, which python-consul reports as False
    assert c.agent.service.deregister("web-1") is False


def test_tcp_check_goes_critical_and_passing_filters(h):
    reg, c = client(h, "--check-interval", "1", "--check-timeout", "1", "--max-failures", "1000")
    live, dead = h.listener(), h.listener()
    lp, dp = live.getsockname()[1], dead.getsockname()[1]
    dead.close()  # nothing listens there: its TCP check fails
    for sid, p in (("up-1", lp), ("down-1", dp)):
        assert c.agent.service.register("chk", service_id=sid, address="127.0.0.1", port=p,
                                        check=consul.Check.tcp("127.0.0.1", p, "1s"))
    wait_for(lambda: [x["Service"]["ID"] for x in c.health.service("chk", passing=True)[1]]
             == ["up-1"], 10, "the closed port's instance to fail its check")
    everything = c.health.service("chk")[1]
    status = {x["Service"]["ID"]: x["Checks"][0]["Status"] for x in everything}
    assert status == {"up-1": "passing", "down-1": "critical"}, status


@timing
def test_ttl_check_with_heartbeats(h):
    reg, c = client(h)
    assert c.agent.service.register("beat", service_id="beat-1", address="127.0.0.1", port=7000,
                                    check=consul.Check.ttl("1s")) is True
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < 2.5:  # past two TTLs, kept alive
        check_id = "service:beat-1" if i % 2 == 0 else "beat-1"
        assert c.agent.check.ttl_pass(check_id) is True, check_id
        i += 1
        wait_for(lambda: time.monotonic() - t0 > 0.3 * i, 1, "the next heartbeat tick", 0.01)
    _, nodes = c.health.service("beat", passing=True)
    assert [x["Service"]["ID"] for x in nodes] == ["beat-1"], nodes
    assert nodes[0]["Checks"][0]["Type"] == "ttl", nodes
    # no more heartbeats: it expires
    wait_for(lambda: c.health.service("beat")[1] == [], 6, "the TTL instance to expire")
    assert c.agent.check.ttl_pass("beat-1") is False


@timing
def test_blocking_query(h):
    reg, c = client(h)
    # A TTL check: nothing listens on 7100, so a TCP check would fail within the wait
    # (first checks are spread over the interval) and move the index - a true change.
    assert c.agent.service.register("blk", service_id="blk-1", address="127.0.0.1", port=7100,
                                    check=consul.Check.ttl("60s"))
    idx, _ = c.health.service("blk")
    t0 = time.monotonic()
    idx2, nodes = c.health.service("blk", index=idx, wait="1s")
    took = time.monotonic() - t0
    assert 0.9 <= took < 1 + scaled(0.5) and idx2 == idx and len(nodes) == 1, (took, idx, idx2)


def test_ownership_and_secret(h):
    secret = "consul-client-secret-0123456789"
    path = h.path("token")
    with open(path, "w") as f:
        f.write(secret + "\n")
    reg, c = client(h, "--auth-token-file", path)
    try:
        c.agent.service.register("sec", service_id="sec-1", address="127.0.0.1", port=7200)
        raise AssertionError("a registration without the secret was accepted")
    except consul.ACLPermissionDenied:
        pass
    host, port = reg.http_url.split("//")[1].rstrip("/").rsplit(":", 1)
    cs = consul.Consul(host=host, port=int(port), token=secret)
    assert cs.agent.service.register("sec", service_id="sec-1", address="127.0.0.1", port=7200)
    _, svcs = cs.catalog.services()
    assert "sec" in svcs, svcs
    # another client (without the secret) reads, but may not deregister from elsewhere:
    # here it is the same host, so its standing suffices
    assert c.agent.service.deregister("sec-1") is True
    assert c.catalog.services()[1] == {}
