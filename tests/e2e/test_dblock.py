# SPDX-License-Identifier: BSD-2-Clause
"""test_dblock.py -- one registryd per database: a second registryd on the same --db,
under any spelling of its path, exits 1 at once with one line naming the holder and
touches nothing, while the first keeps serving; the lock goes with its holder however
it ends (SIGTERM or kill -9), so the next start is never blocked by a stale lock."""

import os
import pwd
import shutil
import signal
import sqlite3

from harness import ok, err, register, VALGRIND, Skip, binary


def _files(db):
    """Bytes and mtime of the database and of its SQLite side files (None: absent)."""
    snap = {}
    for side in ("", "-wal", "-shm", "-journal"):
        p = db + side
        if os.path.exists(p):
            with open(p, "rb") as f:
                snap[side] = (f.read(), os.stat(p).st_mtime_ns)
        else:
            snap[side] = None
    return snap


def _refused(h, holder, db_arg, holder_pid=None, **kw):
    """Starts a second registryd on db_arg while `holder` runs: it must exit 1 within the
    deadline with exactly the one line (naming holder_pid, by default the holder's pid),
    without listening and without changing a byte (or an mtime) of the database and its
    side files. Returns that registryd."""
    before = _files(holder.db)
    second = h.registry(db=db_arg, log=kw.pop("log", h.path("second.log")), wait=False, **kw)
    rc = second.wait(timeout=5)
    text = second.stderr()
    pid = holder.pid if holder_pid is None else holder_pid
    want = "registryd: database %s is in use by another registryd, pid %s\n" % (db_arg, pid)
    assert rc == 1, "second registryd on %s: exit %s, want 1; stderr %r" % (db_arg, rc, text)
    assert text == want, "stderr %r, want exactly %r" % (text, want)
    assert "listening on" not in second.stdout(), "the second registryd half-started"
    after = _files(holder.db)
    for side in before:
        assert after[side] == before[side], \
            "the second registryd changed %s%s" % (os.path.basename(holder.db), side)
    return second


def _ids(reg, service):
    r = reg.request({"op": "lookup", "service": service, "all": True})
    return {i["id"] for i in r.get("instances", [])}


def test_second_registryd_refused(h):
    first = h.registry()
    c = first.conn()
    id_, token = register(c, "held", 7001)
    _refused(h, first, first.db)
    # The first one serves on, reads and writes, its tokens intact.
    assert _ids(first, "held") == {id_}
    id2, _ = register(c, "held", 7002)
    assert c.request({"op": "heartbeat", "id": id_, "token": token}).get("ok") is True
    ok(c.request({"op": "deregister", "id": id_, "token": token}))
    assert _ids(first, "held") == {id2}
    assert first.alive()


def test_other_spellings_refused(h):
    """The lock is on the file, not on its name: a relative path, a detour through a
    directory, a symlink (from elsewhere) and a hard link all meet it. The pid file is
    found through the real path, so only the hard link (a second name SQLite itself
    does not support: its -wal would differ) does not name the holder."""
    first = h.registry()
    register(first.conn(), "held", 7001)
    os.mkdir(h.path("sub"))
    os.symlink(first.db, h.path("sub/link.db"))
    os.link(first.db, h.path("hard.db"))
    # registryd runs in h.tmp, where the database is.
    for spelling in ("registry.db", "./sub/../registry.db", "sub/link.db", first.db):
        _refused(h, first, spelling)
    _refused(h, first, "hard.db", holder_pid="unknown")
    assert _ids(first, "held")


def test_sqlite_reader_beside_the_lock(h):
    """The lock (flock) and SQLite's own locks (fcntl) are independent: another SQLite
    program still reads the database while registryd holds it, and registryd writes
    on meanwhile."""
    first = h.registry()
    c = first.conn()
    for port in range(7001, 7006):
        register(c, "shared", port)
    con = sqlite3.connect("file:%s?mode=ro" % first.db, uri=True, timeout=5)
    try:
        n = con.execute("SELECT count(*) FROM instances WHERE service = 'shared'").fetchone()[0]
        assert n == 5, n
        register(c, "shared", 7006)     # a write while a reader has the file open
        n = con.execute("SELECT count(*) FROM instances WHERE service = 'shared'").fetchone()[0]
        assert n == 6, n
    finally:
        con.close()
    assert len(_ids(first, "shared")) == 6


def test_lock_released_on_sigterm(h):
    first = h.registry()
    id_, _ = register(first.conn(), "kept", 7001)
    assert first.stop() == 0
    assert not os.path.exists(first.db + ".pid"), "a clean stop leaves the pid file behind"
    second = h.registry(db=first.db)
    assert _ids(second, "kept") == {id_}
    register(second.conn(), "kept", 7002)
    _refused(h, second, second.db)


def test_lock_released_on_kill9(h):
    """kill -9 leaves no stale lock: the kernel drops flock locks with the process. The
    pid file it leaves names a dead process, and the next holder rewrites it."""
    first = h.registry()
    id_, _ = register(first.conn(), "kept", 7001)
    first.kill9()
    assert os.path.exists(first.db + ".pid")
    second = h.registry(db=first.db)
    assert _ids(second, "kept") == {id_}
    _refused(h, second, second.db)      # names the new holder, not the dead one


def test_readonly_directory(h):
    """A database in a directory registryd may not write (the file read-only too, its
    -wal and -shm left writable by a kill -9, which is what a read-only start needs):
    registryd starts read-only as before, serving lookups, and a second one is refused
    all the same: the lock needs no new file. No pid file can be written there, and
    the one the killed holder left names a dead process, so the line says "pid
    unknown" rather than a wrong pid."""
    as_root = os.geteuid() == 0
    pre, exe, pw = None, None, None
    if as_root:
        try:
            pw = pwd.getpwnam("nobody")
        except KeyError:
            raise Skip("running as root and there is no user nobody to drop to")
        os.chmod(h.tmp, 0o777 if VALGRIND else 0o755)
        exe = os.path.join(h.tmp, "registryd")     # the checkout may be closed to nobody
        shutil.copy(binary("registryd"), exe)
        os.chmod(exe, 0o755)

        def pre():
            os.setgroups([])
            os.setgid(pw.pw_gid)
            os.setuid(pw.pw_uid)
    d = h.path("ro")
    os.mkdir(d)
    db = os.path.join(d, "r.db")
    seed = h.registry(db=db)
    id_, _ = register(seed.conn(), "ro", 7001)
    seed.kill9()
    assert os.path.exists(db + ".pid") and os.path.exists(db + "-shm")
    logs = h.path("logs")                           # where nobody may write its logs
    os.mkdir(logs)
    if as_root:
        os.chown(logs, pw.pw_uid, pw.pw_gid)
    os.chmod(db + "-wal", 0o666)
    os.chmod(db + "-shm", 0o666)
    os.chmod(db, 0o444)
    os.chmod(d, 0o555)
    try:
        first = h.registry(db=db, log=os.path.join(logs, "first.log"), preexec_fn=pre, exe=exe)
        assert _ids(first, "ro") == {id_}, "lookups from a read-only directory"
        err(first.request({"op": "register", "service": "ro", "host": "127.0.0.1",
                           "port": 7002, "check": "none"}), "unavailable")
        _refused(h, first, db, holder_pid="unknown", log=os.path.join(logs, "second.log"),
                 preexec_fn=pre, exe=exe)
        assert _ids(first, "ro") == {id_}
        assert first.stop() == 0
    finally:
        os.chmod(d, 0o755)
        os.chmod(db, 0o644)
