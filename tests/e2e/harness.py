# SPDX-License-Identifier: BSD-2-Clause
"""harness.py -- the shared end-to-end harness: real processes over real sockets.

A test file holds plain functions `def test_xxx(h):`; each gets a fresh Harness `h`
that owns a temp dir and every process the test starts (tracked by PID, stopped and
checked at the end: SIGTERM must give exit 0, so sanitizer/valgrind reports at exit
fail the test). Readiness is read from the programs' `listening on HOST:PORT` line,
never guessed; waiting is polling with a deadline (wait_for), never a bare sleep.

Run one file (tests/run.py does this, one subprocess per file, under a watchdog):
    python3 tests/e2e/harness.py tests/e2e/test_protocol.py [-k PATTERN] [--quick]
It prints one machine-readable line per event on stdout: `@@E2E {json}`.

Environment: REG_BUILD (build dir, default build), VALGRIND=1 (run registryd under
valgrind; SIGTERM at the end must still give exit 0, so a definite leak fails the test),
REG_TIMEOUT_SCALE (multiply every deadline; 4 under valgrind).

What a test uses: h.registry(*flags) -> Registry (.addr .host .port .db, .conn(),
.request(), .stop(), .kill9(), .restart(); with --http: .http_url, .http(method, path)
-> HttpResult, also http_request(url, ...)); h.registry_on_port(port); h.service("tsserv",
reg.addr) -> Service; h.regctl(*args, registry=addr) -> Result (rc, out, err, .elapsed);
h.conn(addr) -> Conn (.send/.recv/.request/.expect_closed); h.listener(); wait_for();
h.etcd(n=3) -> EtcdCluster (tests/e2e/etcd.py: real etcd members on loopback);
h.registry_etcd(cluster, *flags, node=NAME) -> Registry on it (no --db);
markers @timeout(s), @timing (skipped under valgrind), @slow (skipped by --quick);
raise Skip("why") to skip.
"""

import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, os.environ.get("REG_BUILD", "build"))
VALGRIND = os.environ.get("VALGRIND") == "1"
SCALE = float(os.environ.get("REG_TIMEOUT_SCALE", "4" if VALGRIND else "1"))
LISTEN_RE = re.compile(rb"listening on (\[[0-9a-fA-F:.]+\]|[0-9.]+):(\d+)")
SAN_RE = re.compile(r"ERROR: \w+Sanitizer|runtime error:|==\d+==ERROR")
TEST_TIMEOUT = 60  # seconds per test (scaled) unless @timeout says otherwise


def scaled(seconds):
    return seconds * SCALE


def binary(name):
    path = os.path.join(BUILD, name)
    if not os.access(path, os.X_OK):
        raise AssertionError("binary %s not built (REG_BUILD=%s)" % (path, BUILD))
    return path


# --- markers --------------------------------------------------------------------------
def slow(fn):
    """Marks a test skipped by --quick (used for the valgrind run)."""
    fn.slow = True
    return fn


def timing(fn):
    """Marks a test that measures wall-clock durations: skipped under valgrind."""
    fn.timing = True
    return fn


def timeout(seconds):
    def mark(fn):
        fn.timeout = seconds
        return fn
    return mark


class Skip(Exception):
    pass


# --- polling -------------------------------------------------------------------------
def wait_for(cond, timeout=5.0, msg="condition", interval=0.02):
    """Polls cond() until it returns a truthy value (returned) or the deadline passes
    (AssertionError naming msg and the last exception cond raised, if any)."""
    deadline = time.monotonic() + scaled(timeout)
    last = None
    while True:
        try:
            v = cond()
            if v:
                return v
            last = None
        except (OSError, ValueError, AssertionError, EOFError) as e:
            last = e
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s%s"
                                 % (scaled(timeout), msg, " (last error: %r)" % last if last else ""))
        time.sleep(interval)


def split_addr(addr):
    """'127.0.0.1:80' / '[::1]:80' -> (host, port)."""
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


def free_port(host="127.0.0.1"):
    """A port nothing listens on right now (bound then released)."""
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


# --- a line-oriented protocol client -------------------------------------------------------
class Conn:
    """One TCP connection speaking newline-delimited JSON; every read has a deadline."""

    def __init__(self, addr, timeout=5.0, rcvbuf=None, source=None):
        """rcvbuf: a receive buffer size set before connecting (a small window from the
        first byte, e.g. for a client that is meant to stop reading). source: the local
        address to connect from (another loopback address, e.g. 127.0.0.2, plays another
        host)."""
        host, port = split_addr(addr) if isinstance(addr, str) else addr
        self.timeout = scaled(timeout)
        if rcvbuf is None and source is None:
            self.sock = socket.create_connection((host, port), timeout=self.timeout)
        else:
            self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
            if rcvbuf is not None:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            if source is not None:
                self.sock.bind((source, 0))
            self.sock.settimeout(self.timeout)
            self.sock.connect((host, port))
        self.buf = b""

    def send(self, obj):
        """Sends a dict (encoded as one line) or raw bytes/str as is."""
        if isinstance(obj, dict):
            data = json.dumps(obj).encode() + b"\n"
        elif isinstance(obj, str):
            data = obj.encode()
        else:
            data = obj
        self.sock.sendall(data)

    def recv_line(self, timeout=None):
        """The next line without its newline. EOFError if the peer closed first."""
        deadline = time.monotonic() + (scaled(timeout) if timeout else self.timeout)
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no reply line within %.1fs (have %r)" % (self.timeout, self.buf[:200]))
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                raise EOFError("connection closed (partial data %r)" % self.buf[:200])
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line

    def recv(self, timeout=None):
        line = self.recv_line(timeout)
        try:
            obj = json.loads(line)
        except ValueError:
            raise AssertionError("reply is not JSON: %r" % line[:300])
        assert isinstance(obj, dict), "reply is not a JSON object: %r" % line[:300]
        return obj

    def request(self, obj, timeout=None):
        self.send(obj)
        return self.recv(timeout)

    def expect_closed(self, timeout=5.0):
        """Asserts the peer closes (EOF or reset) within the deadline, unread lines aside."""
        deadline = time.monotonic() + scaled(timeout)
        while True:
            left = deadline - time.monotonic()
            assert left > 0, "connection still open after %.1fs" % scaled(timeout)
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                return
            if not chunk:
                return
            self.buf += chunk

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# --- an HTTP client ---------------------------------------------------------------------------
class HttpResult:
    """status, headers (names lower-cased), body (bytes); .json() decodes the body."""

    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            raise AssertionError("HTTP body is not JSON: %r" % self.body[:300])

    def __repr__(self):
        return "HTTP %s %r %r" % (self.status, self.headers, self.body[:300])


def http_request(url, method, path, body=None, headers=None, source=None, timeout=5.0):
    """One request on a new connection (http.client) to url ("http://HOST:PORT/"), from
    local address source if given; body: bytes, str or a dict/list sent as JSON."""
    import http.client
    host, port = split_addr(url.split("//", 1)[1].rstrip("/"))
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    c = http.client.HTTPConnection(host, port, timeout=scaled(timeout),
                                   source_address=(source, 0) if source else None)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return HttpResult(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
    finally:
        c.close()


# --- processes -------------------------------------------------------------------------
class Proc:
    """A started child: stdout and stderr go to files in the test's temp dir (no pipe can
    fill up and block the child); `listening on` is read from them."""

    def __init__(self, h, name, argv, kind, env=None, preexec_fn=None):
        """preexec_fn runs in the child before exec (e.g. setrlimit, setuid)."""
        self.h, self.name, self.kind = h, name, kind
        n = len(h.procs)
        self.out_path = os.path.join(h.tmp, "%s.%d.out" % (name, n))
        self.err_path = os.path.join(h.tmp, "%s.%d.err" % (name, n))
        self.argv = argv
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                          env=env, cwd=h.tmp, preexec_fn=preexec_fn)
        self.pid = self.popen.pid
        self.rc = None
        h.procs.append(self)

    def alive(self):
        return self.popen.poll() is None

    def stdout(self):
        with open(self.out_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode(errors="replace")

    def tail(self, n=25):
        """The end of stderr, or a sanitizer report from its start, for failure reports."""
        lines = self.stderr().splitlines()
        start = max(0, len(lines) - n)
        for i, l in enumerate(lines):
            if SAN_RE.search(l):
                start = max(0, i - 3)
                break
        return "\n".join("    " + l for l in lines[start:start + max(n, 45)])

    def wait_listening(self, timeout=10.0):
        """Waits for `listening on HOST:PORT` on stdout (or stderr); returns (host, port).
        Fails fast, with the child's stderr, if it exits first."""
        deadline = time.monotonic() + scaled(timeout)
        while True:
            for path in (self.out_path, self.err_path):
                with open(path, "rb") as f:
                    m = LISTEN_RE.search(f.read())
                if m:
                    return m.group(1).decode().strip("[]"), int(m.group(2))
            if not self.alive():
                raise AssertionError("%s exited with %s before listening:\n%s"
                                     % (self.name, self.popen.returncode, self.tail()))
            if time.monotonic() > deadline:
                raise AssertionError("%s printed no `listening on` within %.1fs:\n%s"
                                     % (self.name, scaled(timeout), self.tail()))
            time.sleep(0.01)

    def signal(self, sig):
        if self.alive():
            os.kill(self.pid, sig)

    def wait(self, timeout=10.0):
        """Waits for exit; returns the exit code (negative: killed by that signal)."""
        try:
            self.rc = self.popen.wait(scaled(timeout))
        except subprocess.TimeoutExpired:
            raise AssertionError("%s (pid %d) did not exit within %.1fs"
                                 % (self.name, self.pid, scaled(timeout)))
        return self.rc

    def stop(self, timeout=10.0):
        """SIGTERM, wait with a deadline; returns the exit code."""
        self.signal(signal.SIGTERM)
        try:
            return self.wait(timeout)
        except AssertionError:
            self.kill9()
            raise

    def kill9(self):
        self.signal(signal.SIGKILL)
        self.rc = self.popen.wait()
        return self.rc


class Registry(Proc):
    """registryd on a temp database; .addr/.host/.port once listening."""

    def __init__(self, h, *flags, db=None, listen="127.0.0.1:0", log=None, wait=True,
                 preexec_fn=None, exe=None):
        # db=False: no --db at all (a store given by the flags, e.g. --etcd URLS)
        self.db = None if db is False else db or os.path.join(h.tmp, "registry.db")
        self.log = log or os.path.join(h.tmp, "registry.log")
        self.flags = list(flags)
        dbflag = [] if self.db is None else ["--db", self.db]
        argv = [exe or binary("registryd"), "--listen", listen] + dbflag + ["--log", self.log] + self.flags
        if VALGRIND:
            self.vg_log = os.path.join(h.tmp, "valgrind.%d.log" % len(h.procs))
            argv = ["valgrind", "--leak-check=full", "--error-exitcode=99",
                    "--errors-for-leak-kinds=definite", "--log-file=" + self.vg_log] + argv
        super().__init__(h, "registryd", argv, "registry", preexec_fn=preexec_fn)
        if wait:
            self.host, self.port = self.wait_listening(timeout=15.0)
            self.addr = ("[%s]:%d" if ":" in self.host else "%s:%d") % (self.host, self.port)
            # With --dns, "dns on HOST:PORT" is printed with the listening line.
            with open(self.out_path, "rb") as f:
                m = re.search(rb"^dns on (\S+):(\d+)\s*$", f.read(), re.M)
            self.dns_port = int(m.group(2)) if m else None
            # With --http, "http on http://HOST:PORT/" follows.
            with open(self.out_path, "rb") as f:
                m = re.search(rb"^http on (http://\S+/)\s*$", f.read(), re.M)
            self.http_url = m.group(1).decode() if m else None

    def conn(self, timeout=5.0, source=None):
        c = Conn(self.addr, timeout, source=source)
        self.h.conns.append(c)
        return c

    def request(self, obj):
        """One request on a fresh connection."""
        c = self.conn()
        try:
            return c.request(obj)
        finally:
            c.close()

    def http(self, method, path, body=None, headers=None, **kw):
        """One HTTP request to this daemon's --http front-end; an HttpResult."""
        assert self.http_url, "registryd was not started with --http"
        return http_request(self.http_url, method, path, body, headers, **kw)

    def restart(self, *flags, **kw):
        """Stops this daemon (SIGTERM, exit 0 expected) and starts another on the same DB."""
        if self.alive():
            rc = self.stop()
            assert rc == 0, "registryd exited %s on SIGTERM:\n%s" % (rc, self.tail())
        return Registry(self.h, *(flags or self.flags), db=False if self.db is None else self.db,
                        log=self.log, **kw)

    def tail(self, n=25):
        text = super().tail(n)
        if VALGRIND and os.path.exists(self.vg_log):
            with open(self.vg_log, errors="replace") as f:
                text += "\n  valgrind:\n" + "\n".join("    " + l for l in f.read().splitlines()[-60:])
        return text


class Service(Proc):
    """tsserv or sleepserv, registered at `registry` (an address string)."""

    def __init__(self, h, prog, registry, *flags, listen="127.0.0.1:0"):
        argv = [binary(prog), "--registry", registry, "--listen", listen] + list(flags)
        super().__init__(h, prog, argv, "service")
        self.host, self.port = self.wait_listening()
        self.addr = "%s:%d" % (self.host, self.port)

    def conn(self, timeout=5.0):
        c = Conn(self.addr, timeout)
        self.h.conns.append(c)
        return c


class Result:
    """What a finished command gave: rc, out, err (text), elapsed seconds."""

    def __init__(self, rc, out, err, elapsed):
        self.rc, self.out, self.err, self.elapsed = rc, out, err, elapsed

    def __iter__(self):
        return iter((self.rc, self.out, self.err))

    def __repr__(self):
        return "rc=%s out=%r err=%r (%.2fs)" % (self.rc, self.out[:500], self.err[:500], self.elapsed)


class Harness:
    """Per-test context: a temp dir, the processes and connections the test opened."""

    def __init__(self, name):
        self.name = name
        self.tmp = tempfile.mkdtemp(prefix="reg-e2e-%s-" % name)
        self.procs = []
        self.conns = []
        self.sockets = []

    # starting things
    def registry(self, *flags, **kw):
        return Registry(self, *flags, **kw)

    def registry_etcd(self, cluster, *flags, node=None, prefix=None, **kw):
        """registryd on an etcd cluster (an EtcdCluster, or an endpoints string) instead
        of a database: --etcd URLS [--node-name NODE] [--etcd-prefix PREFIX] FLAGS."""
        urls = cluster if isinstance(cluster, str) else cluster.endpoints
        pre = ["--etcd", urls] + (["--node-name", node] if node else []) + \
              (["--etcd-prefix", prefix] if prefix else [])
        return Registry(self, *(pre + list(flags)), db=False, **kw)

    def registry_on_port(self, port, *flags, db=None, timeout=5.0):
        """Starts registryd on a given loopback port, retrying while the port is still
        held (e.g. just after a kill -9), until the deadline."""
        deadline = time.monotonic() + scaled(timeout)
        while True:
            try:
                return Registry(self, *flags, db=db, listen="127.0.0.1:%d" % port)
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def service(self, prog, registry, *flags, **kw):
        return Service(self, prog, registry, *flags, **kw)

    def spawn(self, argv, name=None, env=None, kind="other"):
        """Any other long-running program (tracked, killed at the end). kind "backend":
        something registryd depends on (an etcd member), killed only after every
        registryd has stopped, so their orderly stops can still reach it."""
        return Proc(self, name or os.path.basename(argv[0]), argv, kind, env=env)

    def etcd(self, n=3, **kw):
        """A real etcd cluster of n members on loopback (tests/e2e/etcd.py)."""
        from etcd import EtcdCluster
        return EtcdCluster(self, n, **kw)

    def conn(self, addr, timeout=5.0):
        c = Conn(addr, timeout)
        self.conns.append(c)
        return c

    def listener(self, host="127.0.0.1"):
        """A listening socket the test owns (a live port to register; closed at the end)."""
        s = socket.socket(socket.AF_INET)
        s.bind((host, 0))
        s.listen(128)
        self.sockets.append(s)
        return s

    def path(self, name):
        return os.path.join(self.tmp, name)

    def run(self, prog, *args, timeout=15.0, input=None, env=None):
        """Runs a build binary to completion with a deadline; returns a Result."""
        full_env = dict(os.environ)
        full_env.pop("REGISTRY_ADDR", None)
        full_env.update(env or {})
        t0 = time.monotonic()
        try:
            p = subprocess.run([binary(prog)] + [str(a) for a in args], input=input,
                               capture_output=True, timeout=scaled(timeout), env=full_env, cwd=self.tmp)
        except subprocess.TimeoutExpired as e:
            raise AssertionError("%s %s did not finish within %.1fs; stderr: %r"
                                 % (prog, " ".join(map(str, args)), scaled(timeout), e.stderr))
        return Result(p.returncode, p.stdout.decode(errors="replace"),
                      p.stderr.decode(errors="replace"), time.monotonic() - t0)

    def regctl(self, *args, registry=None, **kw):
        """regctl [--registry ADDR] ARGS...; returns a Result (unpacks to rc, out, err)."""
        pre = ["--registry", registry] if registry else []
        return self.run("regctl", *(pre + list(args)), **kw)

    # ending
    def cleanup(self):
        """Closes connections, stops every process this test started (services first, so
        they can deregister), checks graceful exits, removes the temp dir. Returns a list of
        problems (non-zero exits on SIGTERM) that fail the test."""
        problems = []
        for c in self.conns:
            c.close()
        for s in self.sockets:
            s.close()
        order = {"service": 0, "other": 1, "registry": 2, "backend": 3}
        for p in sorted(self.procs, key=lambda p: order[p.kind]):
            if not p.alive():
                continue
            if p.kind in ("other", "backend"):
                p.kill9()
                continue
            try:
                rc = p.stop(timeout=15.0)
            except AssertionError as e:
                problems.append("%s\n%s" % (e, p.tail()))
                continue
            if rc != 0:
                problems.append("%s (pid %d) exited %s on SIGTERM at test end:\n%s"
                                % (p.name, p.pid, rc, p.tail()))
        for p in self.procs:  # belt and braces: nothing we started survives the test
            if p.alive():
                p.kill9()
        shutil.rmtree(self.tmp, ignore_errors=True)
        return problems

    def logs(self):
        """Stderr tails of every process, for a failure report."""
        parts = []
        for p in self.procs:
            t = p.tail()
            if t.strip():
                parts.append("  %s (pid %d) stderr:\n%s" % (p.name, p.pid, t))
        return "\n".join(parts)


# --- protocol helpers shared by the test files -------------------------------------------
def ok(resp, what="request"):
    assert resp.get("ok") is True, "%s failed: %r" % (what, resp)
    return resp


def events(conn, since=0, limit=10000, service=None):
    """The stored lifecycle events (the events op), oldest first."""
    req = {"op": "events", "since": since, "limit": limit}
    if service is not None:
        req["service"] = service
    r = ok(conn.request(req), "events")
    assert isinstance(r.get("events"), list), r
    return r["events"]


def stats(conn):
    return ok(conn.request({"op": "stats"}), "stats")


def err(resp, code, what="request"):
    """Asserts an error response with this code and a human message; returns the message."""
    assert resp.get("ok") is False, "%s: expected error %s, got %r" % (what, code, resp)
    e = resp.get("error")
    assert isinstance(e, dict), "%s: error is not an object: %r" % (what, resp)
    assert e.get("code") == code, "%s: expected error code %s, got %r" % (what, code, resp)
    assert isinstance(e.get("message"), str) and e["message"], "%s: no error message: %r" % (what, resp)
    return e["message"]


def register(conn, service, port, host="127.0.0.1", check="none", **fields):
    """Registers an instance (check none by default: these ports have no listener) and
    returns (id, token)."""
    req = {"op": "register", "service": service, "host": host, "port": port, "check": check}
    if host is None:
        del req["host"]
    req.update(fields)
    r = ok(conn.request(req), "register %s %s:%s" % (service, host, port))
    assert isinstance(r.get("id"), str) and r["id"], "register: no id: %r" % r
    assert isinstance(r.get("token"), str) and r["token"], "register: no token: %r" % r
    return r["id"], r["token"]


def still_serving(conn, what="the previous request"):
    """The same connection still answers the next request."""
    try:
        r = conn.request({"op": "ping", "request_id": "after"})
    except (EOFError, OSError) as e:
        raise AssertionError("connection unusable after %s: %s" % (what, e))
    assert r.get("ok") is True and r.get("request_id") == "after", \
        "ping after %s: %r" % (what, r)


# --- the per-file runner ----------------------------------------------------------------------
def _emit(out, **fields):
    out.write("@@E2E " + json.dumps(fields) + "\n")
    out.flush()


class _Timeout(BaseException):
    pass


def _on_alarm(signum, frame):
    raise _Timeout()


def _on_term(signum, frame):
    raise KeyboardInterrupt("terminated by the watchdog")


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description="run the tests of one e2e file")
    ap.add_argument("file")
    ap.add_argument("-k", dest="pattern", default=None)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)

    # Protocol lines go to the original stdout; anything a test prints goes to stderr.
    out = os.fdopen(os.dup(1), "w")
    sys.stdout = sys.stderr
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.signal(signal.SIGTERM, _on_term)

    base = os.path.splitext(os.path.basename(args.file))[0]
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location(base, args.file)
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
    except Exception:
        _emit(out, event="result", name=base + "::<import>", status="fail", duration=0,
              detail=traceback.format_exc())
        return 1
    tests = [(n, f) for n, f in vars(mod).items() if n.startswith("test_") and callable(f)]
    tests.sort(key=lambda t: t[1].__code__.co_firstlineno)
    for n, fn in tests:
        name = "%s::%s" % (base, n)
        if args.pattern and args.pattern not in name:
            continue
        if args.quick and getattr(fn, "slow", False):
            _emit(out, event="result", name=name, status="skip", duration=0, detail="slow (--quick)")
            continue
        if VALGRIND and getattr(fn, "timing", False):
            _emit(out, event="result", name=name, status="skip", duration=0, detail="timing (valgrind)")
            continue
        _emit(out, event="start", name=name)
        h = Harness(n)
        t0 = time.monotonic()
        status, detail = "pass", ""
        signal.alarm(int(scaled(getattr(fn, "timeout", TEST_TIMEOUT))))
        try:
            fn(h)
        except Skip as e:
            status, detail = "skip", str(e)
        except _Timeout:
            status = "fail"
            detail = "test timed out after %ds\n" % scaled(getattr(fn, "timeout", TEST_TIMEOUT))
            detail += traceback.format_exc(limit=-3)
        except KeyboardInterrupt:
            status, detail = "fail", "interrupted (watchdog)\n" + traceback.format_exc(limit=-3)
        except BaseException:
            status, detail = "fail", traceback.format_exc()
        finally:
            signal.alarm(0)
        if status == "fail":
            detail += "\n" + h.logs()
        try:
            problems = h.cleanup()
        except BaseException:
            problems = ["cleanup failed:\n" + traceback.format_exc()]
        if problems and status != "skip":
            if status == "pass":
                status, detail = "fail", ""
            detail += "\n" + "\n".join(problems)
        _emit(out, event="result", name=name, status=status,
              duration=round(time.monotonic() - t0, 3), detail=detail.strip())
        if "watchdog" in detail:
            return 1
    return 0


if __name__ == "__main__":
    sys.modules["harness"] = sys.modules[__name__]  # test files import this very module
    sys.exit(main(sys.argv[1:]))
