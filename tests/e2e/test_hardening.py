# SPDX-License-Identifier: BSD-2-Clause
"""test_hardening.py -- one hostile or broken client must not take the registry down.

Each limit trips while another client keeps being served (--max-conns, --max-output-buffer,
--idle-timeout, --request-timeout, --max-instances[-per-service], descriptor exhaustion);
access control (the shared secret, owner tokens, hashes only on disk, the secret never
echoed or logged); and the store's faults: a database that cannot be written (read-only
at start, made immutable or full while running), a corrupt or foreign file at start.

Root matters here: root ignores file modes, so "read-only" is produced the ways that bind
root too (running registryd as nobody, the immutable attribute, a full tmpfs); each such
test skips, saying why, where the machine does not allow that way.
"""

import json
import os
import pwd
import random
import resource
import shutil
import socket
import sqlite3
import subprocess
import time

from harness import (Conn, Skip, binary, err, ok, register, scaled, still_serving, wait_for,
                     VALGRIND)


# --- helpers -----------------------------------------------------------------------------
def proc_status(pid, field):
    """A kB figure from /proc/PID/status (VmRSS, VmHWM...)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s in /proc/%d/status" % (field, pid))


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def log_lines(reg):
    """The daemon's log file, parsed (lines that are not JSON are skipped)."""
    out = []
    try:
        with open(reg.log, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return out
    for raw in data.splitlines():
        try:
            out.append(json.loads(raw))
        except ValueError:
            pass
    return out


def wait_log(reg, pred, msg, timeout=5.0):
    """Waits for a log line matching pred; returns it."""
    def find():
        for e in log_lines(reg):
            if pred(e):
                return e
        return None
    return wait_for(find, timeout, "log line: " + msg)


def limit_logged(reg, name, timeout=5.0):
    return wait_log(reg, lambda e: e.get("event") == "limit" and e.get("limit") == name,
                    '{"event":"limit","limit":"%s"}' % name, timeout)


def is_closed(conn, timeout=0.05):
    """True once the peer has closed (EOF/reset); unread lines are kept in conn.buf."""
    conn.sock.settimeout(timeout)
    try:
        chunk = conn.sock.recv(65536)
    except socket.timeout:
        return False
    except (ConnectionResetError, BrokenPipeError):
        return True
    if not chunk:
        return True
    conn.buf += chunk
    return False


def fresh_ping(addr):
    """A new connection answers ping (False when it is refused, closed or rejected)."""
    c = Conn(addr, timeout=2.0)
    try:
        return c.request({"op": "ping"}).get("ok") is True
    except (EOFError, OSError, AssertionError):
        return False
    finally:
        c.close()


def file_bytes(*paths):
    data = b""
    for p in paths:
        if os.path.exists(p):
            with open(p, "rb") as f:
                data += f.read()
    return data


def db_files(db):
    return [db, db + "-wal", db + "-shm", db + "-journal"]


def write_secret(h, secret, pad=True):
    path = h.path("secret")
    with open(path, "w") as f:
        f.write("\n  %s \t\n" % secret if pad else secret)
    return path


def register_once_writable(conn, req, msg, timeout=5.0):
    """Repeats a register the daemon refuses with `unavailable` (a store fault) until it is
    acknowledged; returns the acknowledgement. Any other answer fails at once: while the
    fault lasts `unavailable` is the only refusal the daemon may give."""
    other = []

    def attempt():
        r = conn.request(req)
        if r.get("ok") is True:
            return r
        if (r.get("error") or {}).get("code") != "unavailable":
            other.append(r)
            return True  # stop waiting; reported below
        return None
    r = wait_for(attempt, timeout, msg)
    assert not other, "%s: expected unavailable until it succeeds, got %r" % (msg, other[0])
    assert isinstance(r.get("id"), str) and r["id"], "%s: no id: %r" % (msg, r)
    assert isinstance(r.get("token"), str) and r["token"], "%s: no token: %r" % (msg, r)
    return r


def lookup_ids(conn, service, **extra):
    req = {"op": "lookup", "service": service, "all": True}
    req.update(extra)
    r = conn.request(req)
    if r.get("ok") is not True:
        return set()
    return {i["id"] for i in r["instances"]}


# --- limits ----------------------------------------------------------------------------------
def test_max_conns(h):
    n = 4
    reg = h.registry("--max-conns", str(n))
    cs = [reg.conn() for _ in range(n)]
    for i, c in enumerate(cs):
        ok(c.request({"op": "ping", "request_id": i}), "ping on connection %d of %d" % (i + 1, n))
    extra = reg.conn()
    err(extra.recv(), "unavailable", "connection %d over --max-conns %d" % (n + 1, n))
    extra.expect_closed()
    for c in cs:
        still_serving(c, "connection %d was rejected" % (n + 1))
    ent = limit_logged(reg, "max_conns")
    assert ent.get("level") == "warn", ent
    st = ok(cs[0].request({"op": "stats"}))
    assert st["connections"] == n and st["rejected_connections"] >= 1, st
    # A slot that frees up is served again.
    cs[-1].close()
    wait_for(lambda: fresh_ping(reg.addr), 5, "a new connection served after one closed")


def test_max_output_buffer(h):
    cap = 256 * 1024
    reg = h.registry("--max-output-buffer", str(cap))
    c = reg.conn()
    for i in range(40):  # a `list` reply of ~45 KB
        register(c, "big-%02d" % i, 1000 + i, description="d" * 1000)
    reply = len(json.dumps(ok(c.request({"op": "list"}))))
    assert reply > 40000, reply
    rss0 = proc_status(reg.pid, "VmRSS")

    # The hog pipelines requests whose replies would total ~230 MB and never reads.
    hog = socket.socket()
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    hog.connect((reg.host, reg.port))
    h.sockets.append(hog)
    n = 10000
    batch = b"".join(json.dumps({"op": "list" if i % 2 else "lookup", "service": "big-01",
                                 "request_id": i}).encode() + b"\n" for i in range(n))
    hog.settimeout(scaled(10))
    try:
        hog.sendall(batch)
    except (BrokenPipeError, ConnectionResetError):
        pass   # dropped before it finished sending: that is the point
    except socket.timeout:
        raise AssertionError("the daemon stopped reading the hog's requests instead of dropping it")
    still_serving(c, "a client flooded its output buffer")

    # The hog is disconnected: what it may still read (kernel buffers) ends in EOF.
    got, deadline = 0, time.monotonic() + scaled(10)
    hog.settimeout(1)
    while True:
        assert time.monotonic() < deadline, "hog not disconnected (read %d bytes so far)" % got
        try:
            chunk = hog.recv(1 << 20)
        except socket.timeout:
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        got += len(chunk)
    assert got < 32 << 20, "hog read %d bytes: the output was not capped" % got
    ent = limit_logged(reg, "max_output_buffer")
    assert ent.get("level") == "warn", ent
    still_serving(c, "the hog was disconnected")
    assert fresh_ping(reg.addr)
    peak = proc_status(reg.pid, "VmHWM")
    assert VALGRIND or peak - rss0 < 48 * 1024, \
        "RSS peaked %d kB above the %d kB before the hog (cap %d bytes)" % (peak - rss0, rss0, cap)


def test_idle_timeout(h):
    reg = h.registry("--idle-timeout", "1")
    silent = reg.conn()                 # never says anything
    quiet = reg.conn()                  # says one thing, then nothing
    ok(quiet.request({"op": "ping"}))
    watcher = reg.conn()                # watchers are exempt
    ok(watcher.request({"op": "watch", "service": "idle"}))
    active = reg.conn()
    t0 = time.monotonic()
    while time.monotonic() - t0 < scaled(2.5):
        ok(active.request({"op": "ping"}), "active client while others idle")
        time.sleep(0.1)
    assert is_closed(silent, timeout=scaled(2)), "a silent client outlived --idle-timeout 1"
    assert is_closed(quiet, timeout=scaled(2)), "an idle client outlived --idle-timeout 1"
    still_serving(active, "idle clients were dropped")
    limit_logged(reg, "idle_timeout")
    # The watcher, idle for 2.5 s, still gets events.
    register(active, "idle", 7000)
    ev = watcher.recv(timeout=5)
    assert ev.get("event") == "register" and ev.get("service") == "idle", ev


def test_request_timeout_slowloris(h):
    reg = h.registry("--request-timeout", "0.5")
    slow = reg.conn()
    slow.send(b'{"op":"pi')         # half a line, then nothing
    drip = reg.conn()
    active = reg.conn()
    line = b'{"op":"ping","pad":"' + b"x" * 200 + b'"}\n'
    t0, closed_slow, closed_drip, k = time.monotonic(), None, None, 0
    while closed_slow is None or closed_drip is None:
        now = time.monotonic() - t0
        assert now < scaled(4), "slowloris not dropped within 4 s of --request-timeout 0.5 " \
            "(half line: %s, one byte per 50 ms: %s)" % (closed_slow, closed_drip)
        if closed_drip is None:
            try:
                drip.send(line[k:k + 1])  # keeps the connection busy, never finishes
                k += 1
            except (BrokenPipeError, ConnectionResetError):
                closed_drip = now
        if closed_drip is None and is_closed(drip, 0.01):
            closed_drip = now
        if closed_slow is None and is_closed(slow, 0.01):
            closed_slow = now
        ok(active.request({"op": "ping"}), "active client during the slowloris")
        time.sleep(0.05)
    assert k < len(line) - 1, "the drip finished its line (%d bytes) before being dropped" % k
    # A line that takes a little while but less than the timeout is fine.
    part = reg.conn()
    part.send(b'{"op":"pi')
    time.sleep(0.15)
    part.send(b'ng","request_id":1}\n')
    assert ok(part.recv()).get("request_id") == 1
    still_serving(active, "slow clients were dropped")
    limit_logged(reg, "request_timeout")


def test_max_instances(h):
    reg = h.registry("--max-instances", "5", "--max-instances-per-service", "3")
    c = reg.conn()
    a = [register(c, "alpha", 8000 + i) for i in range(3)]
    msg = err(c.request({"op": "register", "service": "alpha", "host": "127.0.0.1", "port": 8003,
                         "check": "none"}), "unavailable", "4th instance of a service, limit 3")
    assert "max-instances-per-service" in msg or "service" in msg, msg
    limit_logged(reg, "max_instances")
    b = [register(c, "beta", 9000 + i) for i in range(2)]
    err(c.request({"op": "register", "service": "gamma", "host": "127.0.0.1", "port": 1,
                   "check": "none"}), "unavailable", "6th instance, --max-instances 5")
    still_serving(c, "register got unavailable")
    # Updating an existing instance is not a new one: allowed at the limit.
    id0, tok0 = register(c, "alpha", 8000, description="updated")
    assert id0 == a[0][0]
    # Lookups, list and the other connections are unaffected.
    assert lookup_ids(c, "alpha") == {i for i, _ in a}
    assert lookup_ids(reg.conn(), "beta") == {i for i, _ in b}
    lst = ok(c.request({"op": "list"}))
    assert [(s["service"], s["instances"]) for s in lst["services"]] == [("alpha", 3), ("beta", 2)], lst
    # Room made is room available.
    ok(c.request({"op": "deregister", "id": b[0][0], "token": b[0][1]}))
    register(c, "gamma", 1)
    ok(c.request({"op": "deregister", "id": id0, "token": tok0}))
    register(c, "alpha", 8003)


def test_emfile_no_spin(h):
    if VALGRIND:
        raise Skip("valgrind needs descriptors of its own")
    limit = 64

    def low_nofile():
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    reg = h.registry("--max-conns", "10000", preexec_fn=low_nofile)
    base = len(os.listdir("/proc/%d/fd" % reg.pid))
    assert base < limit - 10, "registryd uses %d descriptors at start" % base
    c0 = reg.conn()
    id_, _ = register(c0, "emfile", 4242)
    conns = []
    try:
        for _ in range(2 * limit):
            conns.append(Conn(reg.addr, timeout=5))
        # Served ones answer; the rest are closed by the daemon (accept-and-close), none hang.
        served = closed = 0
        for c in conns:
            try:
                c.send({"op": "ping"})
                r = c.recv(timeout=5)
                if r.get("ok") is True:
                    served += 1
                else:   # refused with a reason, then closed: still not served
                    err(r, "unavailable", "connection over the descriptor headroom")
                    closed += 1
            except (EOFError, ConnectionResetError, BrokenPipeError):
                closed += 1
        assert served + closed == len(conns)
        assert 0 < served < len(conns) and closed > 0, (served, closed)
        # More keep arriving while the table is full: the loop must sleep, not spin.
        extra = [Conn(reg.addr, timeout=5) for _ in range(20)]
        conns += extra
        cpu0, t0 = cpu_seconds(reg.pid), time.monotonic()
        time.sleep(1.0)
        cpu1, t1 = cpu_seconds(reg.pid), time.monotonic()
        used = cpu1 - cpu0
        assert used < 0.3 * (t1 - t0), \
            "registryd used %.2f CPU-s in %.2f s with its descriptor table full" % (used, t1 - t0)
        assert reg.alive(), "registryd died at EMFILE:\n%s" % reg.tail()
        still_serving(c0, "descriptor exhaustion")
        assert lookup_ids(c0, "emfile") == {id_}
    finally:
        for c in conns:
            c.close()
    wait_for(lambda: fresh_ping(reg.addr), 5, "serving new connections after the excess closed")
    more = [reg.conn() for _ in range(10)]
    for c in more:
        still_serving(c, "descriptors came back")
    register(more[0], "emfile", 4243)
    wait_log(reg, lambda e: e.get("level") in ("warn", "error") and
             ("too many open files" in json.dumps(e).lower() or "emfile" in json.dumps(e).lower()),
             "a warning about descriptor exhaustion (EMFILE)")


# --- access control ------------------------------------------------------------------------
SECRET = "Zq9-shared-s3cret-%08x" % random.getrandbits(32)


def test_auth_register(h):
    path = write_secret(h, SECRET)
    reg = h.registry("--auth-token-file", path)
    c = reg.conn()
    base = {"op": "register", "service": "locked", "host": "127.0.0.1", "port": 6001, "check": "none"}
    err(c.request(base), "unauthorized", "register without auth")
    for wrong in ("nope", SECRET + "x", SECRET[:-1], SECRET.upper(), ""):
        err(c.request(dict(base, auth=wrong)), "unauthorized", "register with auth %r" % wrong)
    still_serving(c, "unauthorized registers")
    r = ok(c.request(dict(base, auth=SECRET)), "register with the secret (file had whitespace)")
    # Lookups stay open without --auth-lookups.
    r2 = ok(reg.conn().request({"op": "lookup", "service": "locked"}))
    assert r2["port"] == 6001 and [i["id"] for i in r2["instances"]] == [r["id"]], r2
    ok(c.request({"op": "list"}))
    ok(c.request({"op": "events"}))
    assert lookup_ids(c, "locked") == {r["id"]}
    # The owner token alone still works for the instance it owns.
    ok(c.request({"op": "heartbeat", "id": r["id"], "token": r["token"]}))


def test_auth_lookups(h):
    path = write_secret(h, SECRET)
    reg = h.registry("--auth-token-file", path, "--auth-lookups")
    c = reg.conn()
    ok(c.request({"op": "register", "service": "hidden", "host": "127.0.0.1", "port": 6002,
                  "check": "none", "auth": SECRET}))
    for req in ({"op": "lookup", "service": "hidden"}, {"op": "list"}, {"op": "events"},
                {"op": "watch"}):
        err(c.request(req), "unauthorized", "%s without auth" % req["op"])
        err(c.request(dict(req, auth="wrong")), "unauthorized", "%s with a wrong secret" % req["op"])
    still_serving(c, "unauthorized reads")
    r = ok(c.request({"op": "lookup", "service": "hidden", "auth": SECRET}))
    assert r["port"] == 6002, r
    ok(c.request({"op": "list", "auth": SECRET}))
    ok(c.request({"op": "events", "auth": SECRET}))


def _assert_no_secret(h, reg, where_extra=()):
    """The secret is nowhere: log file, registryd's stdout/stderr, database files."""
    places = {"log file": file_bytes(reg.log), "stdout/stderr": file_bytes(reg.out_path, reg.err_path),
              "database files": file_bytes(*db_files(reg.db))}
    places.update(where_extra)
    for where, data in places.items():
        if isinstance(data, str):
            data = data.encode()
        assert SECRET.encode() not in data, "the shared secret appears in the %s" % where


def test_secret_never_leaks(h):
    path = write_secret(h, SECRET)
    reg = h.registry("--auth-token-file", path, "--log-level", "debug", "--log-lookups")
    c = reg.conn()
    replies = []
    reqs = [
        {"op": "register", "service": "s", "host": "127.0.0.1", "port": 1, "check": "none"},
        {"op": "register", "service": "s", "host": "127.0.0.1", "port": 1, "auth": "wrong"},
        {"op": "register", "service": "s", "host": "127.0.0.1", "port": 1, "check": "none",
         "auth": SECRET},
        {"op": "lookup", "service": "s", "auth": SECRET},
        {"op": "list", "auth": SECRET},
        # well-formed JSON, invalid requests, the secret inside: rejected and logged
        {"auth": SECRET, "op": "register", "service": "s", "host": "127.0.0.1", "port": 0},
        {"auth": SECRET, "op": "register", "service": "BAD NAME", "port": 1},
        {"auth": SECRET, "op": "nosuchop"},
        {"auth": SECRET, "op": "deregister", "id": "0000000000000000", "token": "x"},
    ]
    for q in reqs:
        replies.append(c.request(q))
    st = ok(c.request({"op": "stats"}))
    ok(c.request({"op": "events"}))
    c.close()
    assert reg.stop() == 0
    _assert_no_secret(h, reg, {"replies (errors)": json.dumps(replies), "stats": json.dumps(st)})


def test_secret_not_logged_from_malformed_line(h):
    """A line that is not even JSON can still carry the secret: its logged head must not."""
    path = write_secret(h, SECRET)
    reg = h.registry("--auth-token-file", path, "--log-level", "debug")
    c = reg.conn()
    lines = [b'{"auth":"' + SECRET.encode() + b'","op":"register",',
             b'{"auth": "' + SECRET.encode() + b'"  oops}',
             b'{"op":"register","auth":"' + SECRET.encode() + b'\xff\xfe"}']
    replies = []
    for line in lines:
        replies.append(c.request(line + b"\n"))
        err(replies[-1], "bad_request", "malformed line %r" % line[:20])
    c.close()
    assert reg.stop() == 0
    _assert_no_secret(h, reg, {"replies (errors)": json.dumps(replies)})


def test_deregister_with_another_instances_token(h):
    reg = h.registry()
    c = reg.conn()
    a_id, a_tok = register(c, "owned", 7001)
    b_id, b_tok = register(c, "owned", 7002)
    for op in ("deregister", "heartbeat"):
        m = err(c.request({"op": op, "id": a_id, "token": b_tok}), "unauthorized",
                "%s A with B's token" % op)
        assert b_tok not in m and a_tok not in m, m
        err(c.request({"op": op, "id": a_id, "token": "0" * 32}), "unauthorized",
            "%s with a made-up token" % op)
    still_serving(c, "unauthorized deregisters")
    assert lookup_ids(reg.conn(), "owned") == {a_id, b_id}, "A vanished after a refused deregister"
    # A re-registration issues a new token; the old one stops working.
    a_id2, a_tok2 = register(c, "owned", 7001)
    assert a_id2 == a_id and a_tok2 != a_tok
    err(c.request({"op": "deregister", "id": a_id, "token": a_tok}), "unauthorized", "old token")
    ok(c.request({"op": "deregister", "id": a_id, "token": a_tok2}))
    assert lookup_ids(c, "owned") == {b_id}


def test_database_holds_no_plaintext_token(h):
    reg = h.registry()
    c = reg.conn()
    owned = [register(c, "hashed", 5000 + i) for i in range(20)]
    tokens = [t for _, t in owned]
    owned[0] = register(c, "hashed", 5000)   # a re-registration: a new token for the same row
    tokens.append(owned[0][1])

    def scan(when):
        data = file_bytes(*db_files(reg.db))
        assert len(data) > 4096, "no database data to scan %s" % when
        for tok in tokens:
            for form in (tok.encode(), tok.upper().encode(), bytes.fromhex(tok)):
                assert form not in data, "token %s found in the database files %s" % (tok, when)
        log = file_bytes(reg.log)
        for tok in tokens:
            assert tok.encode() not in log, "token %s found in the log %s" % (tok, when)

    scan("while running")
    c.close()
    assert reg.stop() == 0
    scan("after a clean stop")
    # The hashes are enough to check tokens after a restart.
    reg2 = reg.restart()
    c = reg2.conn()
    assert lookup_ids(c, "hashed") == {i for i, _ in owned}
    err(c.request({"op": "deregister", "id": owned[1][0], "token": owned[2][1]}), "unauthorized")
    for i, t in owned[:5]:
        ok(c.request({"op": "deregister", "id": i, "token": t}), "deregister after restart")


def test_non_loopback_warning(h):
    def warned_line(e):
        return e.get("level") in ("warn", "error") and "auth-token-file" in json.dumps(e)

    def warned(reg):
        for e in log_lines(reg):
            if warned_line(e):
                return e
        return None

    reg = h.registry(listen="0.0.0.0:0")
    w = wait_for(lambda: warned(reg), 5, "log line: a warning about listening beyond "
                 "loopback without --auth-token-file")
    assert w["level"] == "warn", "not logged as a warning: %r" % w
    text = w.get("msg") or w.get("message")
    assert isinstance(text, str) and "--auth-token-file" in text, \
        "the warning does not name --auth-token-file: %r" % w
    assert fresh_ping("127.0.0.1:%d" % reg.port)
    # Loopback, or a secret: no warning.
    quiet = [h.registry(log=h.path("lo.log"), db=h.path("lo.db")),  # one daemon per database
             h.registry("--auth-token-file", write_secret(h, SECRET), listen="0.0.0.0:0",
                        log=h.path("auth.log"), db=h.path("auth.db"))]
    for r in quiet:
        assert fresh_ping("127.0.0.1:%d" % r.port)
        wait_log(r, lambda e: e.get("event") == "start", "start event")
        assert warned(r) is None, "unexpected warning: %r" % warned(r)
    # Logged once, at start, not once per connection.
    assert [e for e in log_lines(reg) if warned_line(e)] == [w], log_lines(reg)


# --- store faults --------------------------------------------------------------------------
def _drop_privileges():
    """preexec_fn: become nobody (root ignores file modes, nobody does not)."""
    pw = pwd.getpwnam("nobody")
    os.setgroups([])
    os.setgid(pw.pw_gid)
    os.setuid(pw.pw_uid)


def test_readonly_db_at_start(h):
    """A database file the daemon may not write: it serves lookups from it, refuses
    registrations with `unavailable`, and writes once the file is writable again."""
    as_root = os.geteuid() == 0
    if as_root:
        try:
            pw = pwd.getpwnam("nobody")
        except KeyError:
            raise Skip("running as root and there is no user nobody to drop to")
    d = h.path("ro")
    os.mkdir(d)
    if as_root:   # nobody must reach its directory (and write valgrind's log there)
        os.chmod(h.tmp, 0o777 if VALGRIND else 0o755)
        os.chown(d, pw.pw_uid, pw.pw_gid)
    pre = _drop_privileges if as_root else None
    exe = None
    if as_root:   # the checkout may sit in a directory nobody cannot enter (mktemp -d: 0700)
        exe = os.path.join(h.tmp, "registryd")
        shutil.copy(binary("registryd"), exe)
        os.chmod(exe, 0o755)
    db, log = os.path.join(d, "r.db"), os.path.join(d, "r.log")
    reg = h.registry(db=db, log=log, preexec_fn=pre, exe=exe)
    c = reg.conn()
    owned = [register(c, "ro", 3000 + i) for i in range(5)]
    kept = {i for i, _ in owned}
    c.close()
    assert reg.stop() == 0
    os.chmod(db, 0o444)
    reg = h.registry(db=db, log=log, preexec_fn=pre, exe=exe)
    c = reg.conn()
    assert lookup_ids(c, "ro") == kept, "lookups from a read-only database"
    req = {"op": "register", "service": "ro", "host": "127.0.0.1", "port": 3999, "check": "none"}
    for _ in range(3):
        err(c.request(req), "unavailable", "register into a read-only database")
    err(c.request({"op": "deregister", "id": owned[0][0], "token": owned[0][1]}), "unavailable",
        "deregister from a read-only database")
    still_serving(c, "register got unavailable")
    assert lookup_ids(reg.conn(), "ro") == kept
    assert ok(c.request({"op": "list"}))["services"][0]["instances"] == 5
    os.chmod(db, 0o644)
    r = register_once_writable(c, req, "register once the file is writable")
    new = lookup_ids(c, "ro") - kept
    assert new == {r["id"]}, "the acknowledged registration %s, not %s, is new" % (r["id"], new)
    c.close()
    assert reg.stop() == 0
    reg = h.registry(db=db, log=log, preexec_fn=pre, exe=exe)
    assert lookup_ids(reg.conn(), "ro") == kept | new, "acknowledged registrations lost"


def _chattr(flag, *paths):
    return subprocess.run(["chattr", flag] + [p for p in paths if os.path.exists(p)],
                          capture_output=True).returncode == 0


def test_readonly_db_while_running(h):
    """The database turns unwritable under a running daemon (the immutable attribute, which
    binds root too): register gets `unavailable`, nothing acknowledged is lost, lookups
    keep working, writes resume once it is writable again."""
    if shutil.which("chattr") is None:
        raise Skip("no chattr")
    reg = h.registry()
    c = reg.conn()
    kept = {register(c, "imm", 2000 + i)[0] for i in range(5)}
    files = [reg.db, reg.db + "-wal"]
    if not _chattr("+i", *files):
        _chattr("-i", *files)
        raise Skip("chattr +i not possible here (not root, or the filesystem lacks it)")
    try:
        req = {"op": "register", "service": "imm", "host": "127.0.0.1", "port": 2999,
               "check": "none"}
        for _ in range(3):
            err(c.request(req), "unavailable", "register into an immutable database")
        a = ok(c.request({"op": "lookup", "service": "imm", "all": True}))
        assert {i["id"] for i in a["instances"]} == kept
        assert lookup_ids(reg.conn(), "imm") == kept
        still_serving(c, "failed commits")
    finally:
        assert _chattr("-i", *files), "could not clear the immutable attribute"
    r = register_once_writable(c, req, "register after the fault cleared")
    new = lookup_ids(c, "imm") - kept
    assert new == {r["id"]}, "the acknowledged registration %s, not %s, is new" % (r["id"], new)
    kept |= new
    c.close()
    reg2 = reg.restart()
    assert lookup_ids(reg2.conn(), "imm") == kept, "acknowledged registrations lost"


def test_disk_full(h):
    """The database's filesystem fills up (a small tmpfs): same promises as read-only."""
    if os.geteuid() != 0:
        raise Skip("mounting a small tmpfs needs root")
    d = h.path("full")
    os.mkdir(d)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", d],
                      capture_output=True).returncode != 0:
        raise Skip("cannot mount a tmpfs here")
    try:
        reg = h.registry(db=os.path.join(d, "r.db"))
        c = reg.conn()
        kept = {register(c, "full", 1000 + i)[0] for i in range(5)}
        filler = os.path.join(d, "filler")
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            for chunk in (65536, 512):   # every last block
                try:
                    while os.write(fd, b"\0" * chunk) > 0:
                        pass
                except OSError:
                    pass
        finally:
            os.close(fd)
        req = {"op": "register", "service": "full", "host": "127.0.0.1", "port": 1999,
               "check": "none", "description": "z" * 1000}
        got = [c.request(dict(req, port=1999 - i)) for i in range(20)]
        assert any(g.get("ok") is not True for g in got), \
            "20 registrations on a full filesystem all succeeded"
        for g in got:
            if g.get("ok") is not True:
                err(g, "unavailable", "register on a full disk")
            else:
                kept.add(g["id"])
        assert lookup_ids(c, "full") == kept
        still_serving(c, "disk full")
        os.unlink(filler)
        r = register_once_writable(c, dict(req, port=1), "register once space came back")
        new = lookup_ids(c, "full") - kept
        assert new == {r["id"]}, "the acknowledged registration %s, not %s, is new" % (r["id"], new)
        kept |= new
        c.close()
        reg2 = reg.restart()
        assert lookup_ids(reg2.conn(), "full") == kept, "acknowledged registrations lost"
        assert reg2.stop() == 0
    finally:
        for p in h.procs:
            if p.alive():
                p.kill9()
        subprocess.run(["umount", "-l", d], capture_output=True)


def _refused_at_start(h, db, what):
    with open(db, "rb") as f:
        before = f.read()
    mtime = os.stat(db).st_mtime_ns
    reg = h.registry(db=db, wait=False)
    rc = reg.wait(timeout=10)
    text = reg.stderr()
    assert rc == 1, "registryd on %s: exit %s, want 1; stderr: %r" % (what, rc, text)
    assert db in text or os.path.basename(db) in text, "message does not name the file: %r" % text
    assert "listening on" not in reg.stdout(), "half-started on %s" % what
    with open(db, "rb") as f:
        assert f.read() == before, "the %s was modified" % what
    assert os.stat(db).st_mtime_ns == mtime, "the %s was touched" % what
    for side in ("-wal", "-journal"):
        p = db + side
        assert not os.path.exists(p) or os.path.getsize(p) == 0, \
            "registryd left %s next to the %s" % (p, what)
    return text


def test_corrupt_db_refused(h):
    rnd = random.Random(6)
    garbage = h.path("garbage.db")
    with open(garbage, "wb") as f:
        f.write(bytes(rnd.getrandbits(8) for _ in range(8192)))
    msg = _refused_at_start(h, garbage, "garbage file")
    assert any(w in msg.lower() for w in ("corrupt", "not a", "database")), msg
    # The SQLite magic, then garbage: looks like SQLite, is not.
    fake = h.path("fake.db")
    with open(fake, "wb") as f:
        f.write(b"SQLite format 3\0" + bytes(rnd.getrandbits(8) for _ in range(4096 - 16)))
    msg = _refused_at_start(h, fake, "SQLite header over garbage")
    assert "corrupt" in msg.lower() or "not a" in msg.lower() or "malformed" in msg.lower(), msg
    # A real registry database with a page overwritten is corrupt too.
    reg = h.registry(db=h.path("real.db"))
    c = reg.conn()
    for i in range(200):
        register(c, "page", 1 + i, description="p" * 200)
    c.close()
    assert reg.stop() == 0
    with open(h.path("real.db"), "r+b") as f:
        size = f.seek(0, 2)
        assert size >= 4 * 4096, size
        f.seek(2 * 4096)
        f.write(bytes(rnd.getrandbits(8) for _ in range(4096)))
    _refused_at_start(h, h.path("real.db"), "registry database with a smashed page")


def test_foreign_db_refused(h):
    db = h.path("foreign.db")
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    con.executemany("INSERT INTO users (name) VALUES (?)", [("ann",), ("bob",)])
    con.commit()
    con.close()
    msg = _refused_at_start(h, db, "foreign SQLite database")
    assert "not a registry" in msg.lower() or "foreign" in msg.lower() or "users" in msg, msg
    con = sqlite3.connect(db)
    assert [r[0] for r in con.execute("SELECT name FROM sqlite_master")] == ["users"]
    con.close()


def test_empty_file_and_new_path_initialised(h):
    empty = h.path("empty.db")
    open(empty, "wb").close()
    newp = h.path("sub-new.db")
    assert not os.path.exists(newp)
    for db in (empty, newp):
        reg = h.registry(db=db, log=db + ".log")
        i, _ = register(reg.conn(), "fresh", 1234)
        assert reg.stop() == 0
        assert os.path.getsize(db) > 0
        reg2 = reg.restart()
        assert lookup_ids(reg2.conn(), "fresh") == {i}
        assert reg2.stop() == 0
