# SPDX-License-Identifier: BSD-2-Clause
"""test_persistence.py -- what is acknowledged survives: a graceful restart, a kill -9
right after the acknowledgements, and SIGTERM with requests in flight."""

import json
import signal

from harness import ok, err, register


def test_restart_persistence(h):
    reg = h.registry()
    c = reg.conn()
    id_, token = register(c, "keep", 8080, description="kept across restarts", tags=["a", "b"])
    id2, token2 = register(c, "keep", 8081, ttl=3600)
    before = ok(c.request({"op": "lookup", "service": "keep"}))
    c.close()
    rc = reg.stop()
    assert rc == 0, "SIGTERM must exit 0, got %s:\n%s" % (rc, reg.tail())

    reg2 = reg.restart()
    c = reg2.conn()
    r = ok(c.request({"op": "lookup", "service": "keep"}), "lookup after restart")
    by_id = {i["id"]: i for i in r["instances"]}
    assert set(by_id) == {id_, id2}, r
    assert by_id[id_]["port"] == 8080 and by_id[id_]["host"] == "127.0.0.1", r
    assert by_id[id_]["description"] == "kept across restarts" and by_id[id_]["tags"] == ["a", "b"], r
    old = {i["id"]: i for i in before["instances"]}
    assert by_id[id_]["registered_at"] == old[id_]["registered_at"], (old[id_], by_id[id_])
    # the tokens still work after the restart, and only they do
    assert c.request({"op": "heartbeat", "id": id2, "token": token2}) == {"ok": True, "ttl": 3600}
    err(c.request({"op": "deregister", "id": id_, "token": token2}), "unauthorized")
    ok(c.request({"op": "deregister", "id": id_, "token": token}))
    # and the deregistration too survives a restart
    c.close()
    reg3 = reg2.restart()
    r = ok(reg3.request({"op": "lookup", "service": "keep"}))
    assert [i["id"] for i in r["instances"]] == [id2], r


def _register_many(reg, n, conns=5, service="durable"):
    """Pipelines n registrations over a few connections; returns the acknowledged ids."""
    cs = [reg.conn(timeout=30) for _ in range(conns)]
    for k, c in enumerate(cs):
        batch = b"".join(json.dumps({"op": "register", "service": service, "host": "127.0.0.1",
                                     "port": 1 + i, "check": "none"}).encode() + b"\n"
                         for i in range(k, n, conns))
        c.send(batch)
    acked = {}
    for k, c in enumerate(cs):
        for i in range(k, n, conns):
            r = ok(c.recv(), "registration %d" % i)
            acked[1 + i] = r["id"]
    return acked


def test_kill9_after_500_acknowledged(h):
    reg = h.registry()
    acked = _register_many(reg, 500)
    reg.kill9()   # at once: no chance to flush anything that was not committed
    reg2 = reg.restart()
    r = ok(reg2.request({"op": "lookup", "service": "durable", "all": True}), "lookup after kill -9")
    got = {i["port"]: i["id"] for i in r["instances"]}
    missing = sorted(set(acked) - set(got))
    assert not missing, "%d acknowledged registrations lost after kill -9 (ports %s...)" \
        % (len(missing), missing[:10])
    assert got == acked, "ids changed across kill -9"
    lst = ok(reg2.request({"op": "list"}))
    assert lst["services"][0]["instances"] == 500, lst


def test_kill9_with_sync_normal(h):
    """--sync normal may lose commits on power loss, never on a process crash."""
    reg = h.registry("--sync", "normal")
    acked = _register_many(reg, 100, conns=2)
    reg.kill9()
    reg2 = reg.restart()
    r = ok(reg2.request({"op": "lookup", "service": "durable", "all": True}))
    assert {i["port"]: i["id"] for i in r["instances"]} == acked


def test_kill9_after_deregistrations(h):
    reg = h.registry()
    c = reg.conn()
    keep = register(c, "mixed", 1)[0]
    gone = register(c, "mixed", 2)
    ok(c.request({"op": "deregister", "id": gone[0], "token": gone[1]}))
    reg.kill9()
    r = ok(reg.restart().request({"op": "lookup", "service": "mixed", "all": True}))
    assert [i["id"] for i in r["instances"]] == [keep], r


def test_sigterm_with_requests_in_flight(h):
    """SIGTERM while pipelined requests are being served: every request already read is
    answered (in order, on open connections), the daemon exits 0, and every acknowledged
    registration is there after a restart."""
    reg = h.registry()
    n, conns = 300, 4
    cs = [reg.conn(timeout=30) for _ in range(conns)]
    for k, c in enumerate(cs):
        lines = []
        for i in range(k, n, conns):
            if i % 3 == 0:
                lines.append({"op": "lookup", "service": "inflight", "request_id": i})
            else:
                lines.append({"op": "register", "service": "inflight", "host": "127.0.0.1",
                              "port": 1 + i, "check": "none", "request_id": i})
        c.send(b"".join(json.dumps(x).encode() + b"\n" for x in lines))
    first = cs[0].recv()   # the daemon is busy with our requests now
    assert first.get("request_id") == 0, first
    reg.signal(signal.SIGTERM)
    acked, answered = {}, 1
    for k, c in enumerate(cs):
        expect = [i for i in range(k, n, conns)]
        if k == 0:
            expect = expect[1:]
        for i in expect:
            try:
                r = c.recv(timeout=15)
            except EOFError:
                break   # the rest was not read before the signal: no answer owed
            assert r.get("request_id") == i, "answers out of order after SIGTERM: %r (want %d)" % (r, i)
            answered += 1
            if i % 3 and r.get("ok") is True:
                acked[1 + i] = r["id"]
            elif i % 3:
                err(r, "unavailable", "register during shutdown")
        c.close()
    rc = reg.wait(15)
    assert rc == 0, "exit status %s after SIGTERM with requests in flight:\n%s" % (rc, reg.tail())
    assert answered >= 1
    reg2 = reg.restart()
    r = reg2.request({"op": "lookup", "service": "inflight", "all": True})
    got = {i["port"]: i["id"] for i in r.get("instances", [])}
    lost = sorted(set(acked) - set(got))
    assert not lost, "%d registrations acknowledged during shutdown are missing: %s" % (len(lost), lost[:10])


def test_sigint_exits_0(h):
    reg = h.registry()
    c = reg.conn()
    register(c, "int", 1)
    reg.signal(signal.SIGINT)
    rc = reg.wait(10)
    assert rc == 0, "SIGINT must exit 0, got %s:\n%s" % (rc, reg.tail())
    r = ok(reg.restart().request({"op": "lookup", "service": "int"}))
    assert r["port"] == 1


def test_stops_accepting_after_sigterm(h):
    reg = h.registry()
    c = reg.conn()
    ok(c.request({"op": "ping"}))
    reg.signal(signal.SIGTERM)
    assert reg.wait(10) == 0
    try:
        h.conn(reg.addr, timeout=2).request({"op": "ping"})
    except (OSError, EOFError, AssertionError):
        pass
    else:
        raise AssertionError("a stopped daemon still answered a new connection")
