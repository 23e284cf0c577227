# SPDX-License-Identifier: BSD-2-Clause
"""test_regctl.py -- regctl for operators (issue 16): registered text is escaped in every
text output, events --tail / --follow, watch's header, SEQ column, --json and reconnection
by seq, -h everywhere, version, and the bash completion (README "regctl").

Terminal behaviour is tested under a real pseudo-terminal (pty)."""

import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import threading
import time

from harness import (Skip, binary, err, events, free_port, ok, register, scaled, stats,
                     wait_for, ROOT)

ESC = "\x1b"
HOSTILE = "fake row\nevil  9  9  pwned " + ESC + "[31mred" + ESC + "[0m\tend\u0085\u202e\\"
# what regctl shows of it: one line, nothing a terminal would act on
SHOWN = "fake row\\nevil  9  9  pwned \\e[31mred\\e[0m\\tend\\u0085\\u202e\\\\"


def run_tty(h, *args, timeout=10.0, env=None):
    """Runs regctl with stdout on a pseudo-terminal; returns (rc, output text)."""
    master, slave = pty.openpty()
    full_env = dict(os.environ)
    full_env.pop("REGISTRY_ADDR", None)
    full_env.update(env or {})
    p = subprocess.Popen([binary("regctl")] + [str(a) for a in args], stdin=subprocess.DEVNULL,
                         stdout=slave, stderr=subprocess.PIPE, cwd=h.tmp, env=full_env)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + scaled(timeout)
    try:
        while time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 0.1)
            if not r:
                if p.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:   # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        rc = p.wait(timeout=scaled(timeout))
    finally:
        os.close(master)
        if p.poll() is None:
            p.kill()
            p.wait()
    return rc, out.replace(b"\r\n", b"\n").decode("utf-8", "replace")


def stdout_lines(proc):
    return proc.stdout().splitlines()


def event_rows(proc):
    """A stream's rows (watch, events -f) after its header, as (seq, event, rest)."""
    lines = stdout_lines(proc)
    if not lines:
        return []
    assert lines[0].split() == ["SEQ", "TIME", "EVENT", "SERVICE", "ENDPOINT", "DETAIL"], lines[0]
    return [(int(l.split()[0]), l.split()[2], l) for l in lines[1:]]


# --- escaping ---------------------------------------------------------------------------------

def test_registered_text_is_escaped_in_every_text_output(h):
    reg = h.registry()
    c = reg.conn()
    iid, _ = register(c, "evil", 7401, description=HOSTILE)
    register(c, "zzz", 7402, description="plain")
    ok(c.request({"op": "maintenance", "id": iid, "enable": True, "reason": HOSTILE}))
    outs = {}
    for args in (["list"], ["lookup", "evil", "--all"], ["events", "--tail", "5"],
                 ["events"], ["stats"]):
        r = h.regctl(*args, registry=reg.addr)
        assert r.rc == 0, r
        assert ESC not in r.out and "\t" not in r.out and "\u0085" not in r.out, (args, r.out)
        outs[args[0] + args[-1]] = r.out
    # list: the description is one cell of one row, shown escaped
    rows = outs["listlist"].splitlines()
    assert len(rows) == 3, rows
    assert rows[1].split()[0] == "evil" and rows[1].endswith(SHOWN), rows[1]
    assert rows[2].split()[0] == "zzz", rows
    # events: the reason in the detail, JSON text (its own escapes kept, the rest escaped)
    shown = outs["events5"].lower()   # JSON may spell \u001B
    assert "pwned \\u001b[31mred" in shown and "\\u0085" in shown, outs["events5"]
    assert [l.split()[0] for l in outs["events5"].splitlines()[1:]] == ["1", "2", "3", "4"], \
        outs["events5"]   # start, register x2, maintenance_on: one row each
    # --json stays JSON, exact
    r = h.regctl("--json", "list", registry=reg.addr)
    assert json.loads(r.out)["services"][0]["description"] == HOSTILE, r
    # an error message quoting what a client sent is escaped too
    r = h.regctl("deregister", "--force", "bad" + ESC + "[2J", registry=reg.addr)
    assert r.rc == 1 and ESC not in r.err and "bad\\e[2J" in r.err, r
    # a live watch prints the same escaped text
    watch = h.spawn([binary("regctl"), "--registry", reg.addr, "watch"], name="regctl-watch")
    wait_for(lambda: stats(c)["watchers"] == 1, 5, "watch subscribed")
    ok(c.request({"op": "maintenance", "id": iid, "enable": False, "reason": HOSTILE}))
    rows = wait_for(lambda: [r for r in event_rows(watch) if r[1] == "maintenance_off"], 5,
                    "the watch printed maintenance_off")
    assert ESC not in watch.stdout() and "\\u001b[31m" in rows[0][2].lower(), watch.stdout()


class ReplyServer:
    """A service answering every line with the given bytes (a thread of the test)."""

    def __init__(self, reply):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.reply = reply
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                f = conn.makefile("rb")
                for _ in f:
                    conn.sendall(self.reply)

    def close(self):
        self.sock.close()


def test_call_reply_raw_into_a_pipe_escaped_on_a_terminal(h):
    reg = h.registry()
    srv = ReplyServer(b"hi " + ESC.encode() + b"]0;title\x07 \xff\xfe bye\n")
    try:
        register(reg.conn(), "odd", srv.port, check="tcp")
        r = subprocess.run([binary("regctl"), "--registry", reg.addr, "call", "odd", "x"],
                           capture_output=True, timeout=scaled(10))
        assert r.returncode == 0 and r.stdout == b"hi \x1b]0;title\x07 \xff\xfe bye\n", r
        rc, out = run_tty(h, "--registry", reg.addr, "call", "odd", "x")
        assert rc == 0 and out == "hi \\e]0;title\\x07 \\xff\\xfe bye\n", repr(out)
        rc, out = run_tty(h, "--registry", reg.addr, "call", "--raw", "odd", "x")
        assert rc == 0 and ESC in out, repr(out)
    finally:
        srv.close()
    r = h.regctl("call", "--help")
    assert r.rc == 0 and "--raw" in r.out and "terminal" in r.out, r


# --- events: --tail, the terminal default, --follow -------------------------------------------

def test_events_tail_and_the_terminal_default(h):
    reg = h.registry()
    c = reg.conn()
    for k in range(30):
        register(c, "t%d" % (k % 3), 7500 + k)
    last = events(c)[-1]["seq"]
    # a pipe: as always, the oldest first
    r = h.regctl("events", registry=reg.addr)
    rows = r.out.splitlines()
    assert rows[0].split()[:3] == ["SEQ", "TIME", "EVENT"] and rows[1].split()[0] == "1", r
    # a terminal: the newest 20
    rc, out = run_tty(h, "--registry", reg.addr, "events")
    seqs = [int(l.split()[0]) for l in out.splitlines()[1:]]
    assert rc == 0 and seqs == list(range(last - 19, last + 1)), out
    # --tail N anywhere; with --service; --json
    r = h.regctl("events", "--tail", "4", registry=reg.addr)
    assert [int(l.split()[0]) for l in r.out.splitlines()[1:]] == list(range(last - 3, last + 1))
    r = h.regctl("events", "--tail", "3", "--service", "t1", registry=reg.addr)
    got = [l.split() for l in r.out.splitlines()[1:]]
    assert len(got) == 3 and all(g[3] == "t1" for g in got) and int(got[-1][0]) == last - 1, r
    r = h.regctl("--json", "events", "--tail", "2", registry=reg.addr)
    doc = json.loads(r.out)
    assert doc["ok"] is True and [e["seq"] for e in doc["events"]] == [last - 1, last], doc
    r = h.regctl("events", "--tail", "2", "--limit", "3", registry=reg.addr)
    assert r.rc == 2, r
    # the protocol underneath: "tail", "before" (only with tail), filtered by service
    got = ok(c.request({"op": "events", "tail": 3, "before": 10}))["events"]
    assert [e["seq"] for e in got] == [7, 8, 9], got
    got = ok(c.request({"op": "events", "tail": 2, "before": 10, "service": "t2"}))["events"]
    assert [e["seq"] for e in got] == [4, 7], got   # t2: k = 2, 5, 8...: seq k + 2
    got = ok(c.request({"op": "events", "tail": 5, "since": last - 2}))["events"]
    assert [e["seq"] for e in got] == [last - 1, last], got
    err(c.request({"op": "events", "before": 10}), "bad_request", "before without tail")
    err(c.request({"op": "events", "tail": 0}), "bad_request", "tail 0")


def test_events_tail_pages_back_through_big_events(h):
    """The newest N come page by page ("tail" + "before"), the oldest page by page
    forwards, and a page too big for one protocol line is asked for again in halves: 40
    events of ~6 KiB each."""
    reg = h.registry()
    c = reg.conn()
    iid, _ = register(c, "big", 7601)
    reason = "\x01" * 1000   # 6 bytes each in JSON
    for k in range(40):
        ok(c.request({"op": "maintenance", "id": iid, "enable": k % 2 == 0, "reason": reason}))
    last = events(c)[-1]["seq"]
    r = h.regctl("events", "--tail", "40", registry=reg.addr)
    assert r.rc == 0, r
    seqs = [int(l.split()[0]) for l in r.out.splitlines()[1:]]
    assert seqs == list(range(last - 39, last + 1)), seqs
    r = h.regctl("events", "--tail", "250", registry=reg.addr)
    assert r.rc == 0 and len(r.out.splitlines()) == 1 + last, r.out[-300:]
    # forward too: the oldest first (a pipe's default), and --since/--limit
    r = h.regctl("events", registry=reg.addr)
    assert r.rc == 0 and len(r.out.splitlines()) == 1 + last, r.err
    r = h.regctl("events", "--since", "5", "--limit", "30", registry=reg.addr)
    seqs = [int(l.split()[0]) for l in r.out.splitlines()[1:]]
    assert r.rc == 0 and seqs == list(range(6, 36)), (seqs, r.err)
    r = h.regctl("--json", "events", "--since", "40", registry=reg.addr)
    assert [e["seq"] for e in json.loads(r.out)["events"]] == list(range(41, last + 1)), r


def test_events_follow_no_gap_no_duplicate(h):
    reg = h.registry("--sync", "normal")
    c = reg.conn()
    for k in range(10):
        register(c, "pre", 7700 + k)
    stop = threading.Event()

    def churn():
        cc = reg.conn()
        k = 0
        while not stop.is_set():
            register(cc, "churn", 8000 + k % 500)
            k += 1
    t = threading.Thread(target=churn, daemon=True)
    t.start()
    try:
        f = h.spawn([binary("regctl"), "--registry", reg.addr, "events", "-f", "--tail", "5"],
                    name="regctl-follow")
        wait_for(lambda: len(event_rows(f)) >= 60, 10, "the follow printed the tail and more")
    finally:
        stop.set()
        t.join()
    last = ok(c.request({"op": "events", "tail": 1}))["events"][0]["seq"]
    wait_for(lambda: event_rows(f) and event_rows(f)[-1][0] == last, 5, "the follow caught up")
    seqs = [s for s, _, _ in event_rows(f)]
    assert seqs == list(range(seqs[0], last + 1)), "gap or duplicate: %s" % seqs
    f.signal(signal.SIGINT)
    assert f.wait() == 0, f.stderr()


# --- watch ---------------------------------------------------------------------------------------

def test_watch_header_seq_and_json_events_only(h):
    reg = h.registry()
    c = reg.conn()
    w = h.spawn([binary("regctl"), "--registry", reg.addr, "watch"], name="regctl-watch")
    wj = h.spawn([binary("regctl"), "--registry", reg.addr, "--json", "watch"], name="regctl-wj")
    wait_for(lambda: stats(c)["watchers"] == 2, 5, "two watches subscribed")
    iid, _ = register(c, "a-rather-long-service-name", 7801, ttl=1)
    wait_for(lambda: [r for r in event_rows(w) if r[1] == "expire"], 5,
             "heartbeat_missed and expire printed")
    lines = stdout_lines(w)
    mine = [r[2] for r in event_rows(w) if iid in r[2] or "a-rather-long" in r[2]]
    assert [l.split()[2] for l in mine] == ["register", "heartbeat_missed", "expire"], lines
    # The columns line up, heartbeat_missed included: SERVICE starts at one offset.
    col = lines[0].index("SERVICE")
    for l in mine:
        assert l[col:].startswith("a-rather-long-service-name"), "misaligned:\n%s" % "\n".join(lines)
    stored = [e for e in events(c) if e.get("id") == iid]

    def printed():
        got = [json.loads(l) for l in stdout_lines(wj)]
        return len([e for e in got if e.get("id") == iid]) == len(stored) and got
    got = wait_for(printed, 5, "the JSON watch printed them")
    assert all("ok" not in e and "seq" in e for e in got), got   # events only
    assert [e for e in got if e.get("id") == iid] == stored, got
    for p in (w, wj):
        p.signal(signal.SIGTERM)
        assert p.wait() == 0, p.stderr()


def test_watch_reconnects_and_resumes_by_seq(h):
    """registryd is killed and started again (same database, same port) under a running
    watch; what was registered while it was down-and-back is printed, each event once."""
    port = free_port()
    reg = h.registry_on_port(port)
    c = reg.conn()
    w = h.spawn([binary("regctl"), "--registry", reg.addr, "watch"], name="regctl-watch")
    wait_for(lambda: stats(c)["watchers"] == 1, 5, "watch subscribed")
    register(c, "before", 7901)
    first = wait_for(lambda: event_rows(w), 5, "the first event printed")[0][0]
    c.close()
    reg.kill9()
    reg2 = h.registry_on_port(port, db=reg.db)
    c = reg2.conn()
    register(c, "back", 7902)          # most likely before the watch is back
    wait_for(lambda: "reconnected" in w.stderr(), 10, "the watch reconnected")
    register(c, "after", 7903)
    stored = [e["seq"] for e in events(c, since=first - 1)]
    wait_for(lambda: [s for s, _, _ in event_rows(w)] == stored, 5,
             "every stored event printed once: %s" % stored)
    names = [r[2].split()[3] for r in event_rows(w) if r[1] == "register"]
    assert names == ["before", "back", "after"], names
    assert "lost the registry" in w.stderr(), w.stderr()
    w.signal(signal.SIGTERM)
    assert w.wait() == 0, w.stderr()


def test_watch_follows_a_registry_that_starts_over(h):
    """Restarted on another (empty) database, the registry's seqs start over: the watch
    notices and prints its events rather than waiting for seqs it already passed."""
    port = free_port()
    reg = h.registry_on_port(port)
    c = reg.conn()
    for k in range(5):
        register(c, "old", 7950 + k)
    w = h.spawn([binary("regctl"), "--registry", reg.addr, "watch"], name="regctl-watch")
    wait_for(lambda: stats(c)["watchers"] == 1, 5, "watch subscribed")
    c.close()
    reg.kill9()
    reg2 = h.registry_on_port(port, db=h.path("other.db"))
    c = reg2.conn()
    wait_for(lambda: "start over" in w.stderr(), 10, "the watch noticed: %s" % w.stderr())
    register(c, "new", 7960)
    rows = wait_for(lambda: [r for r in event_rows(w) if r[1] == "register"], 5,
                    "the new registry's event printed")
    assert len(rows) == 1 and " new " in rows[0][2], event_rows(w)
    w.signal(signal.SIGTERM)
    assert w.wait() == 0, w.stderr()


def test_watch_no_reconnect_exits_3(h):
    reg = h.registry()
    c = reg.conn()
    w = h.spawn([binary("regctl"), "--registry", reg.addr, "watch", "--no-reconnect"],
                name="regctl-watch")
    wait_for(lambda: stats(c)["watchers"] == 1, 5, "watch subscribed")
    c.close()
    reg.kill9()
    assert w.wait() == 3, w.stderr()


# --- the rest ----------------------------------------------------------------------------------

def test_help_short_flag_everywhere_and_version(h):
    r = h.regctl("-h")
    assert r.rc == 0 and "usage: regctl" in r.out, r
    for cmd in ("lookup", "call", "list", "register", "deregister", "heartbeat", "maintenance",
                "stats", "ping", "version", "events", "watch", "help"):
        r = h.regctl(cmd, "-h")
        assert r.rc == 0 and r.out.startswith("usage: regctl") and cmd in r.out, (cmd, r)
        assert r.out == h.regctl(cmd, "--help").out, cmd
    reg = h.registry()
    r = h.regctl("version", registry=reg.addr)
    lines = r.out.splitlines()
    assert r.rc == 0 and re.match(r"^regctl \d+\.\d+", lines[0]), r
    assert re.match(r"^registryd \d+\.\d+", lines[1]) and reg.addr in lines[1], r
    r = h.regctl("version", registry="127.0.0.1:%d" % free_port())
    assert r.rc == 3 and r.out.startswith("regctl "), r


def complete(h, words, env=None):
    """COMPREPLY of _regctl for the words (the last one is completed)."""
    script = ('source %s; COMP_WORDS=(%s); COMP_CWORD=%d; _regctl; printf "%%s\\n" "${COMPREPLY[@]}"'
              % (os.path.join(ROOT, "dist", "regctl.bash-completion"),
                 " ".join("'%s'" % w for w in words), len(words) - 1))
    full_env = dict(os.environ)
    full_env["PATH"] = os.path.dirname(binary("regctl")) + ":" + full_env.get("PATH", "")
    full_env.update(env or {})
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                       timeout=scaled(10), env=full_env)
    assert r.returncode == 0, r
    return sorted(w for w in r.stdout.split("\n") if w)


def test_bash_completion(h):
    if subprocess.run(["sh", "-c", "command -v bash"], capture_output=True).returncode != 0:
        raise Skip("bash is not installed")
    assert complete(h, ["regctl", "lo"]) == ["lookup"]
    assert complete(h, ["regctl", "--json", "ma"]) == ["maintenance"]
    assert "--follow" in complete(h, ["regctl", "events", "--f"])
    assert complete(h, ["regctl", "maintenance", "0123456789abcdef", "o"]) == ["off", "on"]
    reg = h.registry()
    c = reg.conn()
    register(c, "web", 1)
    register(c, "worker", 2)
    register(c, "db", 3)
    assert complete(h, ["regctl", "lookup", "w"], env={"REGISTRY_ADDR": reg.addr}) == \
        ["web", "worker"]
    assert complete(h, ["regctl", "--registry", reg.addr, "call", ""]) == ["db", "web", "worker"]
