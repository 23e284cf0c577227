# SPDX-License-Identifier: BSD-2-Clause
"""test_failover.py -- clients of a registry with several nodes (issue 11, "Clients"):
regctl --registry and $REGISTRY_ADDR take a comma-separated list of nodes, tried in
order; the sample services' registration helper moves to the next node when its node
is lost; `regctl watch` resumes on the next node after the last seq it printed.

Nodes that share a store need the etcd backend; here every node is a registryd of its
own (its own SQLite database), so a test either needs no shared state (a lookup, a
registration made again on the next node) or plays a shared store with a second
registryd started on the first one's database after the first one was killed."""

import json
import os
import signal

from harness import binary, events, free_port, ok, register, scaled, stats, wait_for
from test_regctl import event_rows, stdout_lines  # a watch's rows, as regctl prints them


def dead_addr():
    """A loopback address nobody listens on: connecting is refused."""
    return "127.0.0.1:%d" % free_port()


def mute_addr(h):
    """A loopback listener that accepts (the kernel completes the handshake) and never
    answers: a node that is there and hangs."""
    return "127.0.0.1:%d" % h.listener().getsockname()[1]


def lookup_port(reg, name):
    r = reg.request({"op": "lookup", "service": name})
    return r["port"] if r.get("ok") else None


# --- regctl over a list --------------------------------------------------------------------
def test_regctl_skips_a_dead_node(h):
    """DEAD,B: every command is answered by B; the order of the list is kept (B first
    needs no DEAD)."""
    b = h.registry()
    lst = h.listener()
    port = lst.getsockname()[1]
    nodes = "%s,%s" % (dead_addr(), b.addr)
    r = h.regctl("register", "web", "127.0.0.1", str(port), registry=nodes)
    assert r.rc == 0, r
    iid, token = r.out.split()
    r = h.regctl("lookup", "web", registry=nodes)
    assert r.rc == 0 and r.out.strip() == "127.0.0.1:%d" % port, r
    r = h.regctl("lookup", "web", env={"REGISTRY_ADDR": nodes})
    assert r.rc == 0 and r.out.strip() == "127.0.0.1:%d" % port, r
    for args in (["ping"], ["list"], ["stats"], ["events"], ["heartbeat", iid, token],
                 ["lookup", "web", "--all"]):
        r = h.regctl(*args, registry=nodes)
        assert r.rc == 0, "regctl %s over %s: %r" % (" ".join(args), nodes, r)
    r = h.regctl("version", registry=nodes)
    assert r.rc == 0 and "(%s)" % b.addr in r.out, "version names the node that answered: %r" % r
    r = h.regctl("deregister", iid, token, registry=nodes)
    assert r.rc == 0, r
    r = h.regctl("lookup", "web", registry=nodes)
    assert r.rc == 1, "deregistered through the list, still found: %r" % r
    # B first: answered at once, whatever follows
    r = h.regctl("ping", registry="%s,%s" % (b.addr, mute_addr(h)))
    assert r.rc == 0, r


def test_regctl_every_node_down_exit_3(h):
    a, b = dead_addr(), dead_addr()
    r = h.regctl("--timeout", "2", "lookup", "web", registry="%s,%s" % (a, b))
    assert r.rc == 3, "every node refused: expected 3, got %r" % r
    assert len(r.err.strip().splitlines()) == 1, r
    assert a in r.err and b in r.err, "the message names each node: %r" % r
    assert r.elapsed < scaled(2.5), r


def test_regctl_silent_node_times_out_to_the_next(h):
    """A node that accepts and never answers costs one --timeout, then B answers; each
    node has the whole timeout."""
    b = h.registry()
    lst = h.listener()
    register(b.conn(), "web", lst.getsockname()[1])
    nodes = "%s,%s" % (mute_addr(h), b.addr)
    r = h.regctl("--timeout", "1", "lookup", "web", registry=nodes)
    assert r.rc == 0 and r.out.strip() == "127.0.0.1:%d" % lst.getsockname()[1], r
    assert 0.9 <= r.elapsed < scaled(3.0), "one silent node cost %.2fs with --timeout 1" % r.elapsed
    # two silent nodes: unreachable after a timeout each
    r = h.regctl("--timeout", "0.5", "ping", registry="%s,%s" % (mute_addr(h), mute_addr(h)))
    assert r.rc == 3, r
    assert 0.9 <= r.elapsed < scaled(2.5), r
    assert "no reply" in r.err, r


def test_bad_lists_are_usage_errors(h):
    b = "127.0.0.1:%d" % free_port()
    for nodes, says in (("%s,,%s" % (b, b), "element 2 is empty"),
                        ("%s," % b, "element 2 is empty"),
                        (",%s" % b, "element 1 is empty"),
                        ("%s,127.0.0.1:99999" % b, "'127.0.0.1:99999'"),
                        ("%s,127.0.0.1:0" % b, "'127.0.0.1:0' (port 0)"),
                        ("%s,nohost" % b, "'nohost'")):
        r = h.regctl("ping", registry=nodes)
        assert r.rc == 2, "--registry %s: expected usage error 2, got %r" % (nodes, r)
        assert says in r.err and "--registry" in r.err, "--registry %s: %r" % (nodes, r)
        assert len(r.err.strip().splitlines()) == 1, r
        r = h.regctl("ping", env={"REGISTRY_ADDR": nodes})
        assert r.rc == 2 and says in r.err and "$REGISTRY_ADDR" in r.err, \
            "REGISTRY_ADDR=%s: %r" % (nodes, r)
        r = h.run("tsserv", "--registry", nodes)
        assert r.rc == 2 and says in r.err, "tsserv --registry %s: %r" % (nodes, r)


# --- the sample services --------------------------------------------------------------------
def test_services_move_to_the_next_node(h):
    """tsserv ($REGISTRY_ADDR=A,B) and sleepserv (--registry A,B) register at A; A is
    killed; both show up at B, each saying so in one line, and deregister from B at the
    end."""
    a = h.registry(db=h.path("a.db"))
    b = h.registry(db=h.path("b.db"))
    nodes = "%s,%s" % (a.addr, b.addr)
    ts = h.spawn([binary("tsserv"), "--listen", "127.0.0.1:0"], name="tsserv",
                 env=dict(os.environ, REGISTRY_ADDR=nodes))
    _, ts_port = ts.wait_listening()
    sl = h.service("sleepserv", nodes)
    wait_for(lambda: lookup_port(a, "timestamp") == ts_port, 5, "tsserv registered at A")
    wait_for(lambda: lookup_port(a, "sleep") == sl.port, 5, "sleepserv registered at A")
    assert lookup_port(b, "timestamp") is None and lookup_port(b, "sleep") is None
    a.kill9()
    wait_for(lambda: lookup_port(b, "timestamp") == ts_port, 5, "tsserv registered at B")
    wait_for(lambda: lookup_port(b, "sleep") == sl.port, 5, "sleepserv registered at B")
    for p in (ts, sl):
        moves = [l for l in p.stderr().splitlines() if "moving to the registry" in l]
        assert len(moves) == 1 and b.addr in moves[0], "%s:\n%s" % (p.name, p.stderr())
    r = h.regctl("call", "timestamp", "still", registry=nodes)
    assert r.rc == 0 and r.out.rstrip().endswith("] still"), r
    for p in (ts, sl):
        p.signal(signal.SIGTERM)
        assert p.wait() == 0, p.stderr()
    assert ok(b.request({"op": "list"}))["services"] == [], "left registered at B"


def test_service_moves_on_while_the_next_node_is_down_too(h):
    """A dies while B is not there yet: the helper goes round the list with a growing
    backoff (no busy loop) and registers at B once B is up."""
    a = h.registry(db=h.path("a.db"))
    b_port = free_port()
    sl = h.service("sleepserv", "%s,127.0.0.1:%d" % (a.addr, b_port))
    wait_for(lambda: lookup_port(a, "sleep") == sl.port, 5, "sleepserv registered at A")
    a.kill9()
    wait_for(lambda: sl.stderr().count("moving to the registry") >= 4, 10,
             "sleepserv tried both nodes twice")
    b = h.registry_on_port(b_port, db=h.path("b.db"))
    wait_for(lambda: lookup_port(b, "sleep") == sl.port, 10, "sleepserv registered at B")
    moves = sl.stderr().count("moving to the registry")
    assert moves < 40, "%d moves in a few seconds: a busy loop?\n%s" % (moves, sl.stderr())


# --- regctl watch ---------------------------------------------------------------------------
def test_watch_resumes_on_the_next_node(h):
    """A and B serve one store (B is started on A's database once A is killed): the
    watch moves to B and prints what happened meanwhile and after, every event once."""
    a_port, b_port = free_port(), free_port()
    a = h.registry_on_port(a_port, db=h.path("shared.db"))
    nodes = "127.0.0.1:%d,127.0.0.1:%d" % (a_port, b_port)
    c = a.conn()
    w = h.spawn([binary("regctl"), "--registry", nodes, "watch"], name="regctl-watch")
    wait_for(lambda: stats(c)["watchers"] == 1, 5, "watch subscribed at A")
    register(c, "before", 7901)
    first = wait_for(lambda: event_rows(w), 5, "the first event printed")[0][0]
    c.close()
    a.kill9()
    b = h.registry_on_port(b_port, db=a.db)
    c = b.conn()
    register(c, "meanwhile", 7902)     # most likely before the watch is back
    wait_for(lambda: "reconnected to %s" % b.addr in w.stderr(), 10, "the watch moved to B")
    register(c, "after", 7903)
    stored = [e["seq"] for e in events(c, since=first - 1)]
    wait_for(lambda: [s for s, _, _ in event_rows(w)] == stored, 5,
             "every stored event printed once: %s" % stored)
    names = [l.split()[3] for _, ev, l in event_rows(w) if ev == "register"]
    assert names == ["before", "meanwhile", "after"], names
    w.signal(signal.SIGTERM)
    assert w.wait() == 0, w.stderr()


def test_watch_moves_to_an_independent_node(h):
    """A and B with databases of their own: once A is gone, what is done at B is
    printed (B's seqs are its own: here B has more history than A, so they are past
    what A printed), and no seq is printed twice."""
    a = h.registry(db=h.path("a.db"))
    b = h.registry(db=h.path("b.db"))
    cb = b.conn()
    for k in range(5):
        register(cb, "old", 7950 + k)
    ca = a.conn()
    w = h.spawn([binary("regctl"), "--registry", "%s,%s" % (a.addr, b.addr), "--json", "watch"],
                name="regctl-watch")
    wait_for(lambda: stats(ca)["watchers"] == 1, 5, "watch subscribed at A")
    register(ca, "on-a", 7960)
    wait_for(lambda: any(json.loads(l).get("service") == "on-a" for l in stdout_lines(w)), 5,
             "A's event printed")
    ca.close()
    a.kill9()
    wait_for(lambda: "reconnected to %s" % b.addr in w.stderr(), 10, "the watch moved to B")
    register(cb, "on-b", 7961)
    wait_for(lambda: any(json.loads(l).get("service") == "on-b" for l in stdout_lines(w)), 5,
             "B's event after the move printed")
    seqs = [json.loads(l)["seq"] for l in stdout_lines(w)]
    assert len(seqs) == len(set(seqs)) and seqs == sorted(seqs), seqs
    w.signal(signal.SIGTERM)
    assert w.wait() == 0, w.stderr()
