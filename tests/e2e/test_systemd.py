# SPDX-License-Identifier: BSD-2-Clause
"""test_systemd.py -- registryd as a systemd service: the readiness protocol (READY=1 on
NOTIFY_SOCKET once it listens, STOPPING=1 at the orderly stop, RELOADING=1/READY=1
around SIGHUP), journal priorities on stderr (<N> prefixes only when JOURNAL_STREAM
names our stderr), and the unit file in dist/ checked by systemd-analyze."""

import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import time

from harness import ROOT, Conn, Proc, Skip, binary, ok, scaled, split_addr

UNIT = os.path.join(ROOT, "dist", "registryd.service")


def notify_socket(h):
    """An AF_UNIX datagram socket in the test's temp dir, as systemd's NOTIFY_SOCKET."""
    path = h.path("notify")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    h.sockets.append(s)
    return s, path


def recv_until(sock, want, timeout=10.0):
    """Reads notification datagrams until one holds the line `want`; returns every
    message read, in order. Fails at the deadline."""
    deadline = time.monotonic() + scaled(timeout)
    got = []
    while True:
        left = deadline - time.monotonic()
        assert left > 0, "no %s within %.1fs; got %r" % (want, scaled(timeout), got)
        r, _, _ = select.select([sock], [], [], left)
        if not r:
            continue
        msg = sock.recv(4096).decode()
        got.append(msg)
        if want in msg.split("\n"):
            return got


def env_without(*names, **extra):
    env = dict(os.environ)
    for n in names:
        env.pop(n, None)
    env.update(extra)
    return env


def start_registryd(h, *flags, env=None):
    argv = [binary("registryd"), "--listen", "127.0.0.1:0", "--db", h.path("r.db"),
            "--log", h.path("r.log")] + list(flags)
    return Proc(h, "registryd", argv, "registry", env=env)


def test_ready_once_listening(h):
    """READY=1 arrives once registryd listens (its STATUS names the address, and a
    request there is answered at once); SIGHUP gives RELOADING=1 then READY=1; SIGTERM
    gives STOPPING=1 and exit 0."""
    sock, path = notify_socket(h)
    p = start_registryd(h, env=env_without("JOURNAL_STREAM", NOTIFY_SOCKET=path))
    msgs = recv_until(sock, "READY=1")
    text = "\n".join(msgs)
    m = re.search(r"^STATUS=listening on (\S+)$", text, re.M)
    assert m, "READY=1 should come with STATUS=listening on HOST:PORT: %r" % msgs
    host, port = split_addr(m.group(1))
    c = Conn((host, port))
    h.conns.append(c)
    ok(c.request({"op": "ping"}), "ping right after READY=1")
    assert "listening on %s" % m.group(1) in p.stdout(), \
        "READY=1 before the `listening on` line: %r" % p.stdout()

    p.signal(signal.SIGHUP)
    msgs = recv_until(sock, "READY=1")
    assert any("RELOADING=1" in m.split("\n") for m in msgs), \
        "SIGHUP should say RELOADING=1 before READY=1: %r" % msgs

    p.signal(signal.SIGTERM)
    msgs = recv_until(sock, "STOPPING=1")
    assert p.wait() == 0, p.tail()


def test_no_notify_socket_no_notification(h):
    """Without NOTIFY_SOCKET registryd starts as ever (nothing to send to)."""
    p = start_registryd(h, env=env_without("NOTIFY_SOCKET", "JOURNAL_STREAM"))
    host, port = p.wait_listening()
    c = Conn((host, port))
    h.conns.append(c)
    ok(c.request({"op": "ping"}))


class StderrPipe:
    """registryd with its stderr on a pipe the test reads (as journald's stream would
    be), JOURNAL_STREAM set as asked: 'match' (the pipe's dev:ino), 'other' (someone
    else's stream) or None."""

    def __init__(self, h, journal, *flags, listen="127.0.0.1:0"):
        r, w = os.pipe()
        st = os.fstat(w)
        env = env_without("NOTIFY_SOCKET", "JOURNAL_STREAM")
        if journal == "match":
            env["JOURNAL_STREAM"] = "%d:%d" % (st.st_dev, st.st_ino)
        elif journal == "other":
            env["JOURNAL_STREAM"] = "%d:%d" % (st.st_dev, st.st_ino + 1)
        self.out_path = h.path("stdout.%d" % len(h.procs))
        argv = [binary("registryd"), "--listen", listen, "--db", h.path("r.db")] + list(flags)
        with open(self.out_path, "wb") as out:
            self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=w,
                                      env=env, cwd=h.tmp)
        os.close(w)
        self.r = r

    def finish(self, timeout=10.0, stop=True):
        """Stops registryd (SIGTERM, unless stop=False: it is to exit by itself) and
        returns (rc, its stderr), read to EOF with a deadline."""
        if stop and self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + scaled(timeout)
        data = b""
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("registryd's stderr not closed within %.1fs: %r"
                                         % (scaled(timeout), data[-500:]))
                ready, _, _ = select.select([self.r], [], [], left)
                if not ready:
                    continue
                chunk = os.read(self.r, 65536)
                if not chunk:
                    break
                data += chunk
            return self.p.wait(scaled(timeout)), data.decode(errors="replace")
        finally:
            if self.p.poll() is None:
                self.p.kill()
                self.p.wait()
            os.close(self.r)

    def wait_listening(self, timeout=10.0):
        """Waits for `listening on`; on failure stops registryd and reports its stderr."""
        deadline = time.monotonic() + scaled(timeout)
        while True:
            with open(self.out_path) as f:
                if "listening on" in f.read():
                    return
            if self.p.poll() is not None or time.monotonic() > deadline:
                rc, err = self.finish()
                raise AssertionError("registryd (exit %s) printed no `listening on`:\n%s"
                                     % (rc, err))
            time.sleep(0.01)


PRIO = {"debug": 7, "info": 6, "warn": 4, "error": 3}


def test_journal_priorities(h):
    """With JOURNAL_STREAM naming its stderr, every log line starts with <N>, N the
    syslog priority of the line's level (so journalctl -p warning filters)."""
    s = StderrPipe(h, "match", "--log-level", "debug", listen="0.0.0.0:0")
    s.wait_listening()
    rc, err = s.finish()
    assert rc == 0, (rc, err)
    lines = [l for l in err.splitlines() if l]
    levels = set()
    for l in lines:
        m = re.match(r"^<(\d)>(\{.*\})$", l)
        assert m, "a line without a <N> priority prefix: %r" % l
        e = json.loads(m.group(2))
        assert int(m.group(1)) == PRIO[e["level"]], \
            "level %s should be <%d>: %r" % (e["level"], PRIO[e["level"]], l)
        levels.add(e["level"])
    assert {"info", "warn"} <= levels, "expected info and warn lines (the non-loopback " \
        "warning): %r" % lines


def test_no_journal_no_prefix(h):
    """Without JOURNAL_STREAM, or with one naming another stream (inherited from a
    journald-started shell and redirected since), lines are bare JSON."""
    for journal in (None, "other"):
        s = StderrPipe(h, journal)
        s.wait_listening()
        rc, err = s.finish()
        assert rc == 0, (rc, err)
        lines = [l for l in err.splitlines() if l]
        assert lines, "no log lines on stderr"
        for l in lines:
            assert l.startswith("{"), "JOURNAL_STREAM=%s: a prefixed line %r" % (journal, l)


def test_journal_start_failure_is_an_error(h):
    """A start that fails says why at priority 3 (err) when stderr is the journal."""
    s = StderrPipe(h, "match", "--db", h.path("no/such/dir/r.db"))
    rc, err = s.finish(stop=False)
    assert rc == 1, (rc, err)
    assert re.match(r"^<3>registryd: ", err), err
    s = StderrPipe(h, "match", "--max-conns", "lots")
    rc, err = s.finish(stop=False)
    assert rc == 2, (rc, err)
    assert re.match(r"^<3>registryd: --max-conns", err), err


def test_unit_verifies(h):
    """dist/registryd.service passes systemd-analyze verify (ExecStart pointed at the
    built binary, since /usr/sbin/registryd need not exist here), with the man pages its
    Documentation= names found in man/."""
    exe = shutil.which("systemd-analyze")
    if not exe:
        raise Skip("no systemd-analyze")
    with open(UNIT) as f:
        text = f.read()
    assert "ExecStart=/usr/sbin/registryd " in text, "ExecStart should run /usr/sbin/registryd"
    unit = h.path("registryd.service")
    with open(unit, "w") as f:
        f.write(text.replace("/usr/sbin/registryd", binary("registryd")))
    # Documentation=man:registryd(8) ...: systemd-analyze runs man(1); give it ours.
    mandir = h.path("man")
    for page in os.listdir(os.path.join(ROOT, "man")):
        m = re.match(r"^.+\.(\d)$", page)
        if m:
            os.makedirs(os.path.join(mandir, "man" + m.group(1)), exist_ok=True)
            shutil.copy(os.path.join(ROOT, "man", page), os.path.join(mandir, "man" + m.group(1)))
    man = ["--man=no"] if not shutil.which("man") else []
    r = subprocess.run([exe, "verify"] + man + [unit], capture_output=True, text=True,
                       timeout=scaled(60), env=dict(os.environ, MANPATH=mandir), cwd=h.tmp)
    assert r.returncode == 0 and not r.stderr.strip(), \
        "systemd-analyze verify: rc %s\n%s%s" % (r.returncode, r.stdout, r.stderr)


def test_unit_security_exposure(h):
    """systemd-analyze security rates the unit's sandbox at most 2.0 ("OK"; 10 is
    UNSAFE). It needs --offline (systemd 252+) outside a running systemd."""
    exe = shutil.which("systemd-analyze")
    if not exe:
        raise Skip("no systemd-analyze")
    r = subprocess.run([exe, "security", "--offline=yes", "--no-pager", UNIT],
                       capture_output=True, text=True, timeout=scaled(60), cwd=h.tmp)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout)
    if not m and ("--offline" in r.stderr or "unrecognized option" in r.stderr):
        raise Skip("systemd-analyze security has no --offline here")
    assert m, "no exposure level: rc %s\n%s%s" % (r.returncode, r.stdout[-2000:], r.stderr)
    assert float(m.group(1)) <= 2.0, "exposure %s (want <= 2.0):\n%s" % (m.group(1), r.stdout)
