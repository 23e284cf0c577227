# SPDX-License-Identifier: BSD-2-Clause
"""test_clients.py -- issue 3 end to end: the sample services register themselves, regctl
finds and calls them by name, the registration helper survives a registry that loses
its state, and every regctl exit code."""

import json
import re
import signal
import time

from harness import Conn, free_port, ok, register, scaled, timing, wait_for

CTIME = r"\[(Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ 0-9]\d \d\d:\d\d:\d\d \d{4}\]"


def services(h, *flags):
    """A registry and both services registered at it; returns (reg, tsserv, sleepserv)."""
    reg = h.registry(*flags)
    ts = h.service("tsserv", reg.addr)
    sl = h.service("sleepserv", reg.addr)
    wait_registered(h, reg, "timestamp", ts.port)
    wait_registered(h, reg, "sleep", sl.port)
    return reg, ts, sl


def wait_registered(h, reg, name, port, timeout=5):
    def found():
        r = reg.request({"op": "lookup", "service": name})
        return r.get("ok") and r["port"] == port
    wait_for(found, timeout, "%s (port %d) registered at %s" % (name, port, reg.addr))


def check_ctime_line(line, message):
    m = re.match("^" + CTIME + " (.*)$", line)
    assert m, "not `[<ctime>] MESSAGE`: %r" % line
    assert m.group(3) == message, "echoed %r, sent %r" % (m.group(3), message)
    stamp = time.mktime(time.strptime(line[1:25], "%a %b %d %H:%M:%S %Y"))
    assert abs(stamp - time.time()) < 10, "timestamp %r is not now" % line[:26]


def test_services_register_and_lookup(h):
    reg, ts, sl = services(h)
    for name, svc in (("timestamp", ts), ("sleep", sl)):
        r = h.regctl("lookup", name, registry=reg.addr)
        assert r.rc == 0, r
        assert r.out.strip() == "127.0.0.1:%d" % svc.port, r
    r = ok(reg.request({"op": "list"}))
    assert [s["service"] for s in r["services"]] == ["sleep", "timestamp"], r
    assert all(s["instances"] == 1 and s["passing"] == 1 for s in r["services"]), r


def test_service_name_flag(h):
    reg = h.registry()
    ts = h.service("tsserv", reg.addr, "--name", "clock-2")
    wait_registered(h, reg, "clock-2", ts.port)


def test_call_timestamp(h):
    reg, ts, _ = services(h)
    r = h.regctl("call", "timestamp", "hello", registry=reg.addr)
    assert r.rc == 0, r
    lines = r.out.splitlines()
    assert len(lines) == 1, r
    check_ctime_line(lines[0], "hello")
    r = h.regctl("call", "timestamp", "hello", "big", "world", registry=reg.addr)
    assert r.rc == 0, r
    check_ctime_line(r.out.rstrip("\n"), "hello big world")
    # no MESSAGE: one request per stdin line, exit at end of input
    r = h.regctl("call", "timestamp", registry=reg.addr, input=b"one\ntwo two\nthree\n")
    assert r.rc == 0, r
    lines = r.out.splitlines()
    assert len(lines) == 3, r
    for line, msg in zip(lines, ("one", "two two", "three")):
        check_ctime_line(line, msg)


def test_tsserv_many_requests_and_clients(h):
    reg, ts, _ = services(h)
    cs = [ts.conn() for _ in range(10)]
    for round_ in range(20):
        for k, c in enumerate(cs):
            c.send(("c%d r%d\n" % (k, round_)).encode())
        for k, c in enumerate(cs):
            check_ctime_line(c.recv_line().decode(), "c%d r%d" % (k, round_))
    c = cs[0]  # pipelined lines come back in order
    c.send(b"".join(b"p%d\n" % i for i in range(100)))
    for i in range(100):
        check_ctime_line(c.recv_line().decode(), "p%d" % i)


@timing
def test_call_sleep_waits(h):
    """regctl call sleep returns after the asked time, within 10%. Never early; a late
    answer may be noise from other load on the host, so the best of 3 tries must fit."""
    reg, _, _ = services(h)
    # What regctl itself costs (process start, lookup, connect: ~40 ms under ASan) is not
    # the service's sleep: measure it with a zero sleep and take it off.
    base = min(h.regctl("call", "sleep", '{"sleep": 0}', registry=reg.addr).elapsed
               for _ in range(3))
    for secs in (1, 0.3):
        tries = []
        for _ in range(3):
            r = h.regctl("call", "sleep", '{"sleep": %s}' % secs, registry=reg.addr)
            assert r.rc == 0, r
            assert json.loads(r.out) == {"ok": True, "slept": secs}, r
            assert r.elapsed >= 0.9 * secs, "sleep %s answered after %.3fs" % (secs, r.elapsed)
            tries.append(r.elapsed - base)
            if r.elapsed - base <= 1.1 * secs:
                break
        assert min(tries) <= 1.1 * secs, "sleep %s took %s s (10%% allowed)" % (
            secs, ", ".join("%.3f" % t for t in tries))


def test_sleepserv_bad_input_answers_at_once(h):
    reg, _, sl = services(h)
    c = sl.conn()
    for line in (b"nonsense", b'{"sleep": -1}', b'{"sleep": 3601}', b'{"sleep": "1"}', b"[]",
                 b'{"nap": 1}', b'{"sleep": null}'):
        t0 = time.monotonic()
        c.send(line + b"\n")
        r = json.loads(c.recv_line())
        assert r.get("ok") is False and isinstance(r.get("error"), str) and r["error"], (line, r)
        assert time.monotonic() - t0 < scaled(0.5), "bad input %r not answered at once" % line
    c.send(b'{"sleep": 0}\n')
    assert json.loads(c.recv_line()) == {"ok": True, "slept": 0}


@timing
def test_50_concurrent_sleeps(h):
    reg, _, _ = services(h)
    r = ok(reg.request({"op": "lookup", "service": "sleep"}))
    addr = (r["host"], r["port"])
    cs = [Conn(addr, timeout=10) for _ in range(50)]
    h.conns.extend(cs)
    t0 = time.monotonic()
    for c in cs:
        c.send(b'{"sleep": 1}\n')
    for c in cs:
        assert json.loads(c.recv_line()) == {"ok": True, "slept": 1}
        assert time.monotonic() - t0 >= 0.9, "a sleep of 1 s answered early"
    total = time.monotonic() - t0
    assert total < 2.0, "50 concurrent sleeps of 1 s took %.2fs" % total


def test_registry_restart_with_empty_db(h):
    """kill -9 the registry, start a new one with an EMPTY database on the same port: both
    services register again within 5 s, without being restarted, serving all along."""
    reg, ts, sl = services(h)
    port = reg.port
    reg.kill9()
    # a registry that is down does not stop a service from serving its own clients
    check_ctime_line(_ts_call(ts, "still here"), "still here")
    reg2 = h.registry_on_port(port, db=h.path("empty.db"))
    t0 = time.monotonic()
    wait_registered(h, reg2, "timestamp", ts.port, timeout=5)
    wait_registered(h, reg2, "sleep", sl.port, timeout=max(0.1, 5 - (time.monotonic() - t0)))
    assert ts.alive() and sl.alive()
    r = h.regctl("call", "timestamp", "back", registry=reg2.addr)
    assert r.rc == 0, r
    check_ctime_line(r.out.strip(), "back")


def _ts_call(ts, msg):
    c = ts.conn()
    c.send((msg + "\n").encode())
    line = c.recv_line().decode()
    c.close()
    return line


def test_service_started_before_registry(h):
    """A service whose registry is not there yet serves anyway and registers once it is."""
    port = free_port()
    ts = h.service("tsserv", "127.0.0.1:%d" % port)
    check_ctime_line(_ts_call(ts, "early"), "early")
    reg = h.registry_on_port(port)
    wait_registered(h, reg, "timestamp", ts.port, timeout=8)


def test_sigterm_service_deregisters(h):
    reg, ts, sl = services(h)
    ts.signal(signal.SIGTERM)
    rc = ts.wait(10)
    assert rc == 0, "tsserv exit %s on SIGTERM:\n%s" % (rc, ts.tail())
    r = h.regctl("lookup", "timestamp", registry=reg.addr)
    assert r.rc == 1, "registration still there after tsserv exited: %r" % r
    assert len(r.err.strip().splitlines()) == 1, "expected a one-line message: %r" % r
    sl.signal(signal.SIGINT)
    assert sl.wait(10) == 0, sl.tail()
    r = ok(reg.request({"op": "list"}))
    assert r["services"] == [], "registrations left after both services stopped: %r" % r


def test_regctl_exit_codes(h):
    reg = h.registry()
    a = reg.addr
    # 0: success
    r = h.regctl("ping", registry=a)
    assert r.rc == 0, r
    # 1: not found, one line on stderr
    r = h.regctl("lookup", "nosuch", registry=a)
    assert r.rc == 1 and r.out == "", r
    assert len(r.err.strip().splitlines()) == 1, r
    r = h.regctl("deregister", "0123456789abcdef", "sometoken", registry=a)
    assert r.rc == 1, "deregister of an unknown id: %r" % r
    # 2: usage
    for args in ([], ["frobnicate"], ["--bogus", "ping"], ["lookup"], ["lookup", "a", "b"],
                 ["register", "svc", "127.0.0.1"], ["register", "svc", "127.0.0.1", "notaport"],
                 ["deregister", "onlyid"], ["--timeout", "soon", "ping"]):
        r = h.regctl(*args, registry=a)
        assert r.rc == 2, "regctl %s: expected usage error 2, got %r" % (" ".join(args), r)
        assert r.err.strip(), "usage error without a message: %r" % r
    # 4: the registry refused (wrong token); its message is printed
    lst = h.listener()
    id_, token = register(reg.conn(), "owned", lst.getsockname()[1], check="tcp")
    r = h.regctl("deregister", id_, "0" * len(token), registry=a)
    assert r.rc == 4, "deregister with a wrong token: expected 4, got %r" % r
    assert r.err.strip(), r
    r = h.regctl("lookup", "owned", registry=a)
    assert r.rc == 0, "a refused deregister removed the instance: %r" % r
    r = h.regctl("deregister", id_, token, registry=a)
    assert r.rc == 0, r


def test_regctl_unreachable_exit_3(h):
    port = free_port()   # nothing listens there
    r = h.regctl("--timeout", "2", "ping", registry="127.0.0.1:%d" % port)
    assert r.rc == 3, "connection refused: expected 3, got %r" % r
    assert r.err.strip() and r.elapsed < scaled(2.5), r
    r = h.regctl("--timeout", "2", "lookup", "x", registry="127.0.0.1:%d" % port)
    assert r.rc == 3, r
    # a registry that accepts but never answers: the reply timeout applies
    mute = h.listener()
    r = h.regctl("--timeout", "1", "ping", registry="127.0.0.1:%d" % mute.getsockname()[1])
    assert r.rc == 3, "no reply: expected 3, got %r" % r
    assert 0.9 <= r.elapsed < scaled(2.0), "--timeout 1 took %.2fs" % r.elapsed
    # the address comes from $REGISTRY_ADDR when no --registry is given
    r = h.regctl("--timeout", "2", "ping", env={"REGISTRY_ADDR": "127.0.0.1:%d" % port})
    assert r.rc == 3, r


def test_regctl_registry_addr_env(h):
    reg = h.registry()
    r = h.regctl("ping", env={"REGISTRY_ADDR": reg.addr})
    assert r.rc == 0, r


def test_regctl_register_lookup_deregister(h):
    reg = h.registry()
    lst = h.listener()
    port = lst.getsockname()[1]
    r = h.regctl("register", "web", "127.0.0.1", port, "--description", "the web tier",
                 "--tag", "eu", "--tag", "prod", "--ttl", "600", registry=reg.addr)
    assert r.rc == 0, r
    words = r.out.split()
    assert len(words) == 2 and len(r.out.strip().splitlines()) == 1, "expected `ID TOKEN`: %r" % r
    id_, token = words
    r = h.regctl("lookup", "web", registry=reg.addr)
    assert r.rc == 0 and r.out.strip() == "127.0.0.1:%d" % port, r
    r = h.regctl("lookup", "web", "--tag", "eu", registry=reg.addr)
    assert r.rc == 0 and r.out.strip() == "127.0.0.1:%d" % port, r
    r = h.regctl("lookup", "web", "--tag", "us", registry=reg.addr)
    assert r.rc == 1, r
    inst = ok(reg.request({"op": "lookup", "service": "web"}))["instances"][0]
    assert inst["id"] == id_ and inst["description"] == "the web tier" and inst["tags"] == ["eu", "prod"], inst
    assert ok(reg.request({"op": "heartbeat", "id": id_, "token": token}))["ttl"] == 600
    r = h.regctl("deregister", id_, token, registry=reg.addr)
    assert r.rc == 0, r
    r = h.regctl("lookup", "web", registry=reg.addr)
    assert r.rc == 1, r


def test_regctl_lookup_all(h):
    reg = h.registry()
    a, b = h.listener(), h.listener()
    c = reg.conn()
    ida, _ = register(c, "pair", a.getsockname()[1], check="tcp")
    idb, _ = register(c, "pair", b.getsockname()[1], check="tcp")
    r = h.regctl("lookup", "pair", "--all", registry=reg.addr)
    assert r.rc == 0, r
    head, *lines = r.out.strip().splitlines()
    assert head.split() == ["ENDPOINT", "STATUS", "LAST_CHECK", "ID"], r
    assert len(lines) == 2, r
    want = {"127.0.0.1:%d" % a.getsockname()[1]: ida, "127.0.0.1:%d" % b.getsockname()[1]: idb}
    for line in lines:
        ep = line.split()[0]
        assert ep in want, "line should start with HOST:PORT: %r" % line
        assert want[ep] in line and "passing" in line, "line should show status and id: %r" % line


def test_regctl_list_table(h):
    reg = h.registry()
    c = reg.conn()
    register(c, "alpha", 1, description="first service")
    register(c, "alpha", 2, description="first service, again")
    register(c, "a-much-longer-service-name", 3, description="long")
    register(c, "zed", 4)
    r = h.regctl("list", registry=reg.addr)
    assert r.rc == 0, r
    lines = r.out.rstrip("\n").splitlines()
    assert len(lines) == 4, r
    head = lines[0]
    for col in ("SERVICE", "INSTANCES", "PASSING", "DESCRIPTION"):
        assert col in head, "header lacks %s: %r" % (col, head)
    assert head.index("SERVICE") == 0
    rows = lines[1:]
    assert [row.split()[0] for row in rows] == ["a-much-longer-service-name", "alpha", "zed"], r
    expect = {"a-much-longer-service-name": ("1", "1", "long"),
              "alpha": ("2", "2", "first service, again"), "zed": ("1", "1", "")}
    dcol = head.index("DESCRIPTION")
    for row in rows:
        name, inst, passing = row.split()[:3]
        e = expect[name]
        assert (inst, passing) == e[:2], "counts of %s: %r" % (name, row)
        assert row[dcol:].strip() == e[2], "DESCRIPTION column not aligned: %r\n%s" % (row, r.out)
        # the count columns line up under their headers (left- or right-aligned)
        for col, val in (("INSTANCES", inst), ("PASSING", passing)):
            s, end = head.index(col), head.index(col) + len(col)
            assert row[s:s + len(val)] == val or row[end - len(val):end] == val, \
                "%s column not aligned: %r\n%s" % (col, row, r.out)


def test_regctl_json(h):
    reg, ts, _ = services(h)
    for args in (["lookup", "timestamp"], ["list"], ["stats"], ["ping"], ["lookup", "timestamp", "--all"]):
        r = h.regctl("--json", *args, registry=reg.addr)
        assert r.rc == 0, r
        doc = json.loads(r.out)
        assert doc.get("ok") is True, r
    doc = json.loads(h.regctl("--json", "lookup", "timestamp", registry=reg.addr).out)
    assert doc["port"] == ts.port and doc["service"] == "timestamp", doc
    doc = json.loads(h.regctl("--json", "stats", registry=reg.addr).out)
    assert doc["services"] == 2, doc
    lst = h.listener()
    r = h.regctl("--json", "register", "j", "127.0.0.1", lst.getsockname()[1], registry=reg.addr)
    assert r.rc == 0, r
    doc = json.loads(r.out)
    assert doc["ok"] is True and doc["id"] and doc["token"], doc
    r = h.regctl("--json", "lookup", "nosuch", registry=reg.addr)
    assert r.rc == 1, r


def test_regctl_help_and_version(h):
    r = h.regctl("--help")
    assert r.rc == 0 and "lookup" in r.out and "call" in r.out, r
    for cmd in ("lookup", "call", "list", "register", "deregister", "stats", "ping"):
        r = h.regctl(cmd, "--help")
        assert r.rc == 0 and cmd in r.out, "regctl %s --help: %r" % (cmd, r)
    r = h.regctl("--version")
    assert r.rc == 0 and re.search(r"\d+\.\d+", r.out), r


def test_services_help(h):
    for prog in ("tsserv", "sleepserv"):
        r = h.run(prog, "--help")
        assert r.rc == 0 and "--registry" in r.out + r.err, r


def test_regctl_call_unknown_service(h):
    reg = h.registry()
    r = h.regctl("call", "nosuch", "hi", registry=reg.addr)
    assert r.rc == 1, r
