# SPDX-License-Identifier: BSD-2-Clause
"""test_etcd_fixture.py -- the real-etcd fixture (tests/e2e/etcd.py) on its own, no
registryd: a cluster comes up healthy with a leader, the gateway helpers read and write,
a SIGKILLed leader is replaced within etcd's own election time (default election
timeout) and writes go on, two stopped members out of three stop writes (a short client
timeout, no hang) until they are back, and a single member keeps its data through a
kill -9. The cluster tests of registryd stand on these."""

import time

from harness import wait_for
from etcd import EtcdCluster, EtcdError, require


def cluster(h, n=3):
    require()
    return EtcdCluster(h, n)


def test_cluster_up_put_get_range_delete(h):
    c = cluster(h)
    assert len(c.members) == 3
    urls = c.endpoints.split(",")
    assert urls == [m.client_url for m in c.members] and len(set(urls)) == 3, c.endpoints
    assert len({m.pid for m in c.members}) == 3 and all(m.alive() for m in c.members)
    assert all(m.data_dir.startswith(h.tmp) for m in c.members)
    assert c.leader() in (0, 1, 2)

    rev = c.put("/t/a", "1")
    assert c.put("/t/b", b"\x00\xff two") == rev + 1
    c.put("/t0", "outside the prefix")
    assert c.get("/t/a") == b"1"
    assert c.get("/t/missing") is None
    assert c.range("/t/") == {"/t/a": b"1", "/t/b": b"\x00\xff two"}
    kv = c.get_kv("/t/a")
    assert kv.create_revision == rev and kv.mod_revision == rev and kv.version == 1 and kv.lease == 0
    # every member has it in its own copy (a serializable read needs no quorum)
    for i in range(3):
        wait_for(lambda: c.get("/t/b", member=i, serializable=True) == b"\x00\xff two",
                 msg="/t/b on member %d" % i)
    assert c.revision() == rev + 2

    lease = c.lease_grant(30)
    c.put("/t/leased", "x", lease=lease)
    assert c.get_kv("/t/leased").lease == lease
    ttl, granted, keys = c.lease_ttl(lease, keys=True)
    assert 0 < ttl <= 30 and granted == 30 and keys == ["/t/leased"]
    c.lease_revoke(lease)
    assert c.get("/t/leased") is None and c.lease_ttl(lease) == -1

    assert c.delete("/t/", prefix=True) == 2
    assert c.range("/t/") == {} and c.get("/t0") == b"outside the prefix"


def test_leader_kill9_new_leader_and_writes(h):
    c = cluster(h)
    c.put("/k/before", "1")
    old = c.wait_leader()
    c.kill9(old)
    t0 = time.monotonic()
    new = c.wait_leader(timeout=6.0)
    elected = time.monotonic() - t0
    assert new != old and c.members[new].alive()
    # a write through every surviving member succeeds (followers forward to the leader)
    for m in c.members:
        if m.alive():
            wait_for(lambda: c.put("/k/after-%d" % m.index, "2", member=m.index, timeout=1.0),
                     timeout=4.0, msg="a put through %s" % m.name)
    print("new leader after %.2fs, writes after %.2fs" % (elected, time.monotonic() - t0))
    assert time.monotonic() - t0 < 6.0

    # the killed member comes back on its ports and data, and catches up
    c.start(old)
    assert c.members[old].alive()
    wait_for(lambda: c.range("/k/", member=old, serializable=True).keys() ==
             {"/k/before"} | {"/k/after-%d" % m.index for m in c.members if m.index != old},
             msg="the restarted member catching up")
    c.wait_healthy()


def test_two_of_three_stopped_no_writes_until_back(h):
    c = cluster(h)
    c.put("/q/before", "1")
    leader = c.wait_leader()
    down = [leader, (leader + 1) % 3]
    up = (leader + 2) % 3
    for i in down:
        assert c.stop(i) in (0, -15), "etcd's exit on SIGTERM"
    assert not c.members[down[0]].alive() and not c.members[down[1]].alive()
    # a leader left alone steps down within an election timeout (etcd's check-quorum)
    wait_for(lambda: c.leader() is None, timeout=5.0, msg="the lone member to have no leader")

    t0 = time.monotonic()
    try:
        c.put("/q/lost", "x", timeout=1.0)
        raise AssertionError("a put without quorum succeeded")
    except EtcdError as e:
        assert e.kind in ("timeout", "http"), e
    assert time.monotonic() - t0 < 3.0, "the client timeout bounds a put without quorum"
    # the survivor still answers from its own copy
    assert c.get("/q/before", member=up, serializable=True, timeout=1.0) == b"1"

    for i in down:
        c.start(i, wait=False)
    c.wait_healthy(timeout=15.0)
    wait_for(lambda: c.put("/q/after", "2", timeout=1.0), timeout=5.0, msg="a put after the restart")
    assert {"/q/before", "/q/after"} <= set(c.range("/q/"))
    assert c.wait_leader() in (0, 1, 2)


def test_single_member_survives_kill9(h):
    c = cluster(h, n=1)
    assert c.endpoints == c.members[0].client_url and c.leader() == 0
    c.put("/s/k", "v")
    pid = c.members[0].pid
    c.kill9(0)
    try:
        c.get("/s/k", timeout=0.5)
        raise AssertionError("a read from a killed member")
    except EtcdError as e:
        assert e.kind == "refused", e
    c.start(0)
    assert c.members[0].pid != pid
    assert c.get("/s/k") == b"v" and c.wait_leader() == 0
