# SPDX-License-Identifier: BSD-2-Clause
"""test_daemon_cli.py -- registryd's command line: usage errors exit 2, runtime errors
exit 1, each with one clear line on stderr and never a half-started daemon."""

import os
import re
import socket

from harness import Conn, ok, free_port, wait_for


def run_registryd(h, *args, timeout=10):
    return h.run("registryd", *args, timeout=timeout)


def one_line(err):
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, "expected exactly one line on stderr, got %r" % err
    return lines[0]


def test_help_and_version(h):
    r = run_registryd(h, "--help")
    assert r.rc == 0, r
    assert "--listen" in r.out and "--db" in r.out, "--help should list the flags: %r" % r
    r = run_registryd(h, "--version")
    assert r.rc == 0, r
    assert re.search(r"\d+\.\d+\.\d+", r.out), "--version should print a version: %r" % r


def test_bad_flags_exit_2(h):
    db = h.path("x.db")
    for args in (["--bogus"], ["--listen"], ["--sync", "sometimes"], ["--max-conns", "abc"],
                 ["--max-conns", "-5"], ["--listen", "not-an-address"], ["--listen", "127.0.0.1:70000"],
                 ["--listen", "127.0.0.1:port"], ["stray-argument"]):
        r = run_registryd(h, "--db", db, *args)
        assert r.rc == 2, "registryd %s: expected exit 2, got %r" % (" ".join(args), r)
        one_line(r.err)
        assert "listening on" not in r.out, r


def test_port_in_use_exit_1(h):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    h.sockets.append(s)
    port = s.getsockname()[1]
    r = run_registryd(h, "--listen", "127.0.0.1:%d" % port, "--db", h.path("r.db"), "--log", h.path("r.log"))
    assert r.rc == 1, "port in use: expected exit 1, got %r" % r
    line = one_line(r.err)
    assert str(port) in line or "in use" in line.lower(), "the message should name the problem: %r" % line
    assert "listening on" not in r.out, r


def test_bad_database_exit_1(h):
    garbage = h.path("garbage.db")
    with open(garbage, "wb") as f:
        f.write(os.urandom(8192))
    with open(garbage, "rb") as f:
        before = f.read()
    cases = [("missing directory", h.path("no/such/dir/r.db")),
             ("a directory", h.tmp),
             ("not a database", garbage)]
    for what, path in cases:
        r = run_registryd(h, "--listen", "127.0.0.1:0", "--db", path, "--log", h.path("r.log"))
        assert r.rc == 1, "db %s: expected exit 1, got %r" % (what, r)
        one_line(r.err)
        assert "listening on" not in r.out, r
    with open(garbage, "rb") as f:
        assert f.read() == before, "a file that is not our database must never be modified"


def test_unwritable_log_exit_1(h):
    r = run_registryd(h, "--listen", "127.0.0.1:0", "--db", h.path("r.db"),
                      "--log", h.path("no/such/dir/r.log"))
    assert r.rc == 1, "unwritable log: expected exit 1, got %r" % r
    one_line(r.err)


def test_port_in_use_by_another_registryd(h):
    reg = h.registry()
    r = run_registryd(h, "--listen", reg.addr, "--db", h.path("other.db"), "--log", h.path("o.log"))
    assert r.rc == 1, r
    one_line(r.err)
    ok(reg.request({"op": "ping"}))


def test_listen_reports_bound_port(h):
    port = free_port()
    reg = h.registry_on_port(port)
    assert reg.port == port and reg.host == "127.0.0.1", (reg.host, reg.port)
    ok(reg.request({"op": "ping"}))


def test_max_conns(h):
    """Past --max-conns a new connection is refused (closed, or told `unavailable`);
    the connections already open keep working, and a slot frees up when one closes."""
    reg = h.registry("--max-conns", "5")
    cs = [reg.conn() for _ in range(5)]
    for c in cs:
        ok(c.request({"op": "ping"}))
    extra = Conn(reg.addr, timeout=5)
    h.conns.append(extra)
    try:
        extra.send({"op": "ping"})
        r = extra.recv()
        assert r.get("ok") is False and r["error"]["code"] == "unavailable", \
            "connection over --max-conns was served: %r" % r
        extra.expect_closed()
    except (EOFError, ConnectionResetError, BrokenPipeError):
        pass
    for c in cs:
        ok(c.request({"op": "ping"}))
    cs[0].close()

    def sixth_served():
        c = Conn(reg.addr, timeout=2)
        h.conns.append(c)
        return c.request({"op": "ping"}).get("ok") is True
    wait_for(sixth_served, 5, "a freed connection slot to be reused")
