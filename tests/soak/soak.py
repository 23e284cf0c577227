#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""soak.py -- `make soak`: registryd under a long mixed load with crashes all around.

    python3 tests/soak/soak.py [--build build] [--seconds 120] [--clients 200]
                               [--services 50] [--restarts 3] [--seed N] [--keep]

For a bounded time (default 120 s; $SOAK_SECONDS or --seconds), on loopback only:
  - `--clients` connections (one asyncio process) issue lookups, registrations,
    deregistrations, heartbeats, deregisters with another instance's token, list/stats
    and malformed lines, and reconnect whenever the daemon goes away;
  - `--services` real sample services (tsserv and sleepserv, half each) start, register
    themselves, die by SIGKILL after a few seconds and are started again;
  - registryd itself is killed by SIGKILL and restarted `--restarts` times on the same
    port and database (evenly within the first 30% of the run);
  - a pinger (its own process, so the load cannot delay it) pings continuously.

Every acknowledged write is recorded. Dead services are evicted by the health checks
(--check-interval 0.5 --max-failures 2) and TTLs may expire: those are legitimate
removals, read back with the `events` op (the daemon's own durable history) before the
verdict. At the end:
  lost        an acknowledged registration, not later deregistered, is missing and no
              evict/expire event (or the deregister of an in-doubt request) explains it;
  resurrected an acknowledged deregistration is present again (or was re-registered);
  ping gap    the longest time `ping` went unanswered outside registryd's own restarts
              (kill -9 .. `listening on`) must stay under 1 s;
  RSS         registryd's RSS at the end must be within 10% of its RSS after warm-up.
              Warm-up is measured after the LAST restart (a restart is a new process, so
              an earlier figure would compare two different processes), 15% of the run
              (at least 10 s) later: a fresh registryd grows for ~10-15 s while its
              catalog, lookup cache, SQLite page cache, connection buffers and malloc
              arenas fill, then stays flat under the same load that still runs at the
              end; a leak shows as growth after that point. The end figure is taken before the verification queries, which are not
              part of the load.
It prints the figures and exits 1 on any violation (2 on a usage error). Every process
it starts is tracked by PID and stopped on exit (they also get SIGKILL if this script
dies: PR_SET_PDEATHSIG). The temp dir is removed unless the run failed or --keep.
"""

import argparse
import asyncio
import collections
import ctypes
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
LISTEN_RE = re.compile(rb"listening on ([0-9.]+):(\d+)")
SVC_REG_RE = re.compile(r"registered (\S+) (\S+) with the registry \S+ as ([0-9a-f]+)")
KEYS_PER_CLIENT = 8
CLIENT_SERVICES = 20
PING_EVERY = 0.02           # seconds between pings
PING_TIMEOUT = 1.0          # a ping unanswered this long: reconnect
REQUEST_TIMEOUT = 5.0       # load client: a reply later than this counts as a drop
MAX_PING_GAP = 1.0
RESTART_SPAN = 0.30         # restarts happen within this first fraction of the run
WARMUP_MIN = 10.0           # seconds after the last restart before the warm RSS figure
RSS_TOLERANCE = 0.10
REMOVALS = ("evict", "expire", "deregister")
REGISTRATIONS = ("register", "reregister")

MALFORMED = [
    b'{"op":"lookup","service":\n',
    b'[1,2,3]\n',
    b'"just a string"\n',
    b'{"service":"soak-00"}\n',
    b'{"op":"nosuchop"}\n',
    b'{"op":"register","service":"UPPER case","host":"127.0.0.1","port":1}\n',
    b'{"op":"register","service":"soak-00","host":"127.0.0.1","port":"80"}\n',
    b'{"op":"register","service":"soak-00","host":"127.0.0.1","port":70000}\n',
    b'{"op":"register","service":"soak-00","host":"127.0.0.1","port":0}\n',
    b'{"op":"lookup","service":"' + b"x" * 80 + b'"}\n',
    b'{"op":"lookup","service":"soak\xff\xfe"}\n',
    b'{"op":"lookup",\x00"service":"soak-00"}\n',
    b'{"op":"heartbeat","id":12,"token":[]}\n',
    b"[" * 200 + b"]" * 200 + b"\n",
]


def die_with_parent():
    """preexec_fn: the child gets SIGKILL if the thread that started it goes away."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


# =====================================================================================
# The load: many clients in one asyncio process.
# =====================================================================================
class Key:
    """One (service, 127.0.0.1, port) this client alone registers."""
    __slots__ = ("service", "port", "id", "token", "ttl", "uncertain")

    def __init__(self, service, port):
        self.service, self.port = service, port
        self.id = self.token = None
        self.ttl = 0
        self.uncertain = False   # a write was in flight when the connection died


class Load:
    def __init__(self, port, nclients, seed):
        self.port = port
        self.nclients = nclients
        self.rnd = random.Random(seed)
        self.stop = None
        self.requests = 0
        self.ops = collections.Counter()
        self.codes = collections.Counter()
        self.drops = 0
        self.unexpected = []          # (op, reply) that no correct daemon gives
        self.live_lost = []           # own non-TTL ids missing from a lookup
        self.ids = {}                 # id -> {"last": registered|deregistered|gone, "udereg": bool}
        self.uncertain_dereg = set()  # ids a deregister was in flight for when a link died

    def note_unexpected(self, what, reply):
        self.codes["unexpected"] += 1
        if len(self.unexpected) < 50:
            self.unexpected.append([what, reply])

    async def client(self, idx):
        rnd = random.Random(self.rnd.random())
        keys = [Key("soak-%02d" % ((idx * KEYS_PER_CLIENT + j) % CLIENT_SERVICES),
                    20000 + idx * KEYS_PER_CLIENT + j) for j in range(KEYS_PER_CLIENT)]
        reader = writer = None
        while not self.stop.is_set():
            if writer is None:
                try:
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection("127.0.0.1", self.port, limit=1 << 22), 2)
                except (OSError, asyncio.TimeoutError):
                    await asyncio.sleep(rnd.uniform(0.01, 0.05))
                    continue
            kind, key, line, extra = self.choose(rnd, keys)
            try:
                writer.write(line)
                raw = await asyncio.wait_for(reader.readline(), REQUEST_TIMEOUT)
                if not raw.endswith(b"\n"):
                    raise ConnectionError("closed")
                reply = json.loads(raw)
            except (OSError, ConnectionError, asyncio.TimeoutError, asyncio.IncompleteReadError,
                    asyncio.LimitOverrunError, ValueError):
                self.drops += 1
                if kind in ("register", "deregister") and key is not None:
                    key.uncertain = True
                    if kind == "deregister" and key.id:
                        self.uncertain_dereg.add(key.id)
                writer.close()
                reader = writer = None
                continue
            self.requests += 1
            self.ops[kind] += 1
            code = "ok" if reply.get("ok") is True else (reply.get("error") or {}).get("code", "?")
            self.codes[code] += 1
            self.account(kind, key, extra, reply, code)
        if writer is not None:
            writer.close()

    def choose(self, rnd, keys):
        """Picks the next request: (kind, key or None, line bytes, extra)."""
        r = rnd.random()
        key = rnd.choice(keys)
        if key.uncertain or (0.60 <= r < 0.72 and key.id is None):
            r = 0.45           # resynchronise a key whose last write is in doubt; or register
        if r < 0.40:
            if r < 0.08 and key.id and key.ttl == 0:
                return ("verify", key, self.line({"op": "lookup", "service": key.service, "all": True}),
                        key.id)
            svc = rnd.choice(["soak-%02d" % rnd.randrange(CLIENT_SERVICES), "soak-ts", "soak-sleep",
                              "nosuch-%d" % rnd.randrange(5)])
            req = {"op": "lookup", "service": svc}
            if rnd.random() < 0.3:
                req["all"] = True
            return ("lookup", None, self.line(req), None)
        if r < 0.60:
            key.ttl = rnd.choice((0, 0, 0, 5, 30, 60))  # 5 s: some do expire
            req = {"op": "register", "service": key.service, "host": "127.0.0.1", "port": key.port,
                   "check": "none", "description": "soak key %d" % key.port,
                   "tags": ["soak", "t%d" % rnd.randrange(4)]}
            if key.ttl:
                req["ttl"] = key.ttl
            return ("register", key, self.line(req), key.id)
        if r < 0.72:
            return ("deregister", key, self.line({"op": "deregister", "id": key.id, "token": key.token}),
                    key.id)
        if r < 0.86:
            if key.id is None or key.ttl == 0:
                return ("ping", None, self.line({"op": "ping"}), None)
            return ("heartbeat", key, self.line({"op": "heartbeat", "id": key.id, "token": key.token}),
                    key.id)
        if r < 0.91:
            return ("malformed", None, rnd.choice(MALFORMED), None)
        if r < 0.95:
            other = rnd.choice(keys)
            if key.id is None or other is key or other.token is None or other.uncertain:
                return ("list", None, self.line({"op": "list"}), None)
            return ("wrong_token", key, self.line({"op": "deregister", "id": key.id,
                                                   "token": other.token}), key.id)
        if r < 0.98:
            return ("list", None, self.line({"op": rnd.choice(("list", "stats"))}), None)
        return ("ping", None, self.line({"op": "ping"}), None)

    @staticmethod
    def line(obj):
        return json.dumps(obj, separators=(",", ":")).encode() + b"\n"

    def gone(self, id_):
        """The registry says id_ no longer exists (not_found, or a re-register gave a new id)."""
        st = self.ids.setdefault(id_, {"last": "registered", "udereg": False})
        if st["last"] == "registered":
            st["last"] = "gone"

    def account(self, kind, key, extra, reply, code):
        if kind == "register":
            if code != "ok":
                self.note_unexpected(kind, reply)
                return
            new = reply["id"]
            if key.id is not None and key.id != new:
                self.gone(key.id)       # the old instance vanished meanwhile
            if key.uncertain and key.id == new:
                self.uncertain_dereg.discard(new)   # that deregister did not happen
            key.id, key.token, key.uncertain = new, reply["token"], False
            self.ids[new] = {"last": "registered", "udereg": False}
        elif kind == "deregister":
            if code == "ok":
                self.ids[key.id] = {"last": "deregistered", "udereg": False}
                key.id = key.token = None
            elif code == "not_found":
                self.gone(key.id)
                key.id = key.token = None
            else:
                self.note_unexpected(kind, reply)
        elif kind == "heartbeat":
            if code == "not_found":
                self.gone(key.id)
                key.id = key.token = None
            elif code != "ok":
                self.note_unexpected(kind, reply)
        elif kind == "wrong_token":
            if code == "ok":
                self.note_unexpected("deregister with another instance's token succeeded", reply)
                self.gone(key.id)
                key.id = key.token = None
            elif code == "not_found" and key.id == extra:
                self.gone(key.id)
                key.id = key.token = None
            elif code not in ("unauthorized", "not_found"):
                self.note_unexpected(kind, reply)
        elif kind == "verify":
            ids = {i.get("id") for i in reply.get("instances", [])} if code == "ok" else set()
            if key.id == extra and extra not in ids and not key.uncertain:
                self.live_lost.append(extra)
            if code not in ("ok", "not_found"):
                self.note_unexpected(kind, reply)
        elif kind == "lookup":
            if code not in ("ok", "not_found"):
                self.note_unexpected(kind, reply)
        elif kind == "malformed":
            if code != "bad_request":
                self.note_unexpected(kind, reply)
        elif code != "ok":
            self.note_unexpected(kind, reply)

    async def main(self):
        self.stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop.set)
        loop.add_signal_handler(signal.SIGINT, self.stop.set)
        await asyncio.gather(*(self.client(i) for i in range(self.nclients)))

    def results(self):
        for id_ in self.uncertain_dereg:
            if id_ in self.ids:
                self.ids[id_]["udereg"] = True
        return {"requests": self.requests, "ops": dict(self.ops), "codes": dict(self.codes),
                "drops": self.drops, "unexpected": self.unexpected, "live_lost": self.live_lost,
                "ids": self.ids}


def role_load(args):
    load = Load(args.port, args.clients, args.seed)
    asyncio.run(load.main())
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(load.results(), f)
    os.rename(tmp, args.out)
    return 0


# =====================================================================================
# The pinger: its own process, so the load cannot delay it. Each line it writes is one
# "unanswered" interval: from the moment it started trying (send, or connect after a drop)
# to the reply that ended it. Its own pauses between pings are not in them; a line
# "S START LATE" notes a pause that overran by LATE s (this process was not scheduled).
# =====================================================================================
def role_pinger(args):
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    out = open(args.out, "w", buffering=1)
    sock, buf, trying = None, b"", None
    while not stop:
        if trying is None:
            trying = time.monotonic()
        if sock is None:
            try:
                sock = socket.create_connection(("127.0.0.1", args.port), timeout=PING_TIMEOUT)
                buf = b""
            except OSError:
                time.sleep(0.005)
                continue
        try:
            sock.settimeout(PING_TIMEOUT)
            sock.sendall(b'{"op":"ping"}\n')
            while b"\n" not in buf:
                chunk = sock.recv(4096)
                if not chunk:
                    raise ConnectionError("closed")
                buf += chunk
            line, _, buf = buf.partition(b"\n")
            if json.loads(line).get("ok") is not True:
                raise ValueError("ping not ok")
            out.write("%.6f %.6f\n" % (trying, time.monotonic()))
            trying = None
        except (OSError, ValueError, ConnectionError):
            sock.close()
            sock = None
            continue
        t = time.monotonic()
        time.sleep(PING_EVERY)
        late = time.monotonic() - t - PING_EVERY
        if late > 0.1:
            out.write("S %.6f %.6f\n" % (t, late))
    out.close()
    return 0


# =====================================================================================
# The orchestrator.
# =====================================================================================
class Soak:
    def __init__(self, args):
        self.args = args
        self.build = args.build if os.path.isabs(args.build) else os.path.join(ROOT, args.build)
        for b in ("registryd", "tsserv", "sleepserv"):
            if not os.access(os.path.join(self.build, b), os.X_OK):
                raise SystemExit("soak: %s/%s is not built (run make)" % (self.build, b))
        self.tmp = tempfile.mkdtemp(prefix="reg-soak-")
        self.db = os.path.join(self.tmp, "soak.db")
        self.log = os.path.join(self.tmp, "registry.log")
        self.children = []            # every Popen this process started (main thread)
        self.reg = None
        self.port = 0
        self.generation = 0
        self.windows = []             # (t_kill, t_ready) of each restart
        self.violations = []
        self.rss_samples = []
        self.churn_stop = threading.Event()
        self.churn_quit = threading.Event()
        self.churn_stats = collections.Counter()
        self.svc_procs = []           # the churn thread's live Popens
        self.svc_lock = threading.Lock()
        self.churner = None
        self.churn_error = self.spawn_error = None
        self.warm_after = self.end_after_warm = 0.0
        self.dstate = []              # (t, wchan) when registryd's loop thread was in D state
        self.sampler_stop = threading.Event()

    # --- registryd ---------------------------------------------------------------------
    def start_registry(self):
        """Starts registryd (port 0 the first time, then the same port), waits for its
        `listening on`; retries while the port is still held."""
        deadline = time.monotonic() + 15
        while True:
            self.generation += 1
            out = os.path.join(self.tmp, "registryd.%d.out" % self.generation)
            argv = [os.path.join(self.build, "registryd"), "--listen", "127.0.0.1:%d" % self.port,
                    "--db", self.db, "--log", self.log, "--check-interval", "0.5",
                    "--check-timeout", "0.25", "--max-failures", "2", "--events-keep", "100000000"]
            with open(out, "wb") as f:
                p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                     preexec_fn=die_with_parent)
            self.children.append(p)
            while True:
                with open(out, "rb") as f:
                    m = LISTEN_RE.search(f.read())
                if m:
                    self.reg, self.port = p, int(m.group(2))
                    return
                if p.poll() is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.005)
            if p.poll() is None:
                p.kill()
                p.wait()
            with open(out, "rb") as f:
                text = f.read().decode(errors="replace")
            if time.monotonic() > deadline or "in use" not in text:
                raise RuntimeError("registryd did not start (exit %s): %s" % (p.returncode, text.strip()))
            time.sleep(0.05)

    def restart_registry(self):
        t_kill = time.monotonic()
        self.reg.send_signal(signal.SIGKILL)
        self.reg.wait()
        self.start_registry()
        self.windows.append((t_kill, time.monotonic()))

    def sample_dstate(self):
        """Thread: is registryd's loop thread blocked in the kernel (D state), and where?
        Explains a ping gap as the daemon's own blocking I/O rather than the machine."""
        while not self.sampler_stop.wait(0.02):
            p = self.reg
            if p is None:
                continue
            try:
                with open("/proc/%d/task/%d/stat" % (p.pid, p.pid)) as f:
                    state = f.read().rpartition(")")[2].split()[0]
                if state == "D":
                    with open("/proc/%d/task/%d/wchan" % (p.pid, p.pid)) as f:
                        self.dstate.append((time.monotonic(), f.read().strip() or "?"))
            except (OSError, IndexError):
                pass

    # --- the services -----------------------------------------------------------------------
    def churn(self):
        """Runs in its own thread (children die with it: PR_SET_PDEATHSIG is per thread,
        so it lives until cleanup, even if the churn itself failed)."""
        try:
            self.churn_loop()
        except Exception as e:  # reported as a violation: the soak did not do its job
            self.churn_error = "%s: %s" % (type(e).__name__, e)
        self.churn_quit.wait()
        with self.svc_lock:
            procs = list(self.svc_procs)
        for p in procs:            # stop gracefully: they deregister
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def churn_loop(self):
        """Starts, SIGKILLs and restarts the services until churn_stop."""
        rnd = random.Random(self.args.seed + 1)
        n = self.args.services
        slots = []
        for i in range(n):
            prog = "tsserv" if i % 2 == 0 else "sleepserv"
            slots.append({"prog": prog, "name": "soak-ts" if prog == "tsserv" else "soak-sleep",
                          "file": os.path.join(self.tmp, "svc.%02d.log" % i), "proc": None,
                          "until": 0.0, "start_at": time.monotonic() + rnd.uniform(0, 1)})
        life = (1.0, 6.0)
        while not self.churn_stop.is_set():
            now = time.monotonic()
            for s in slots:
                p = s["proc"]
                if p is not None and (now >= s["until"] or p.poll() is not None):
                    if p.poll() is None:
                        p.send_signal(signal.SIGKILL)
                        self.churn_stats["killed"] += 1
                    else:
                        self.churn_stats["died_alone"] += 1
                    p.wait()
                    with self.svc_lock:
                        self.svc_procs.remove(p)
                    s["proc"] = None
                    s["start_at"] = now + rnd.uniform(0, 0.5)
                if s["proc"] is None and now >= s["start_at"]:
                    argv = [os.path.join(self.build, s["prog"]), "--registry",
                            "127.0.0.1:%d" % self.port, "--listen", "127.0.0.1:0",
                            "--name", s["name"], "--ttl", "15",
                            "--description", "soak slot %s" % os.path.basename(s["file"])]
                    try:
                        with open(s["file"], "ab") as f:
                            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f,
                                                 stderr=f, preexec_fn=die_with_parent)
                    except OSError as e:
                        self.churn_stats["spawn_failed"] += 1
                        self.spawn_error = self.spawn_error or "%s: %s" % (argv[0], e)
                        s["start_at"] = now + 0.5
                        continue
                    with self.svc_lock:
                        self.svc_procs.append(p)
                    s["proc"] = p
                    s["until"] = now + rnd.uniform(*life)
                    self.churn_stats["started"] += 1
            time.sleep(0.02)

    def service_acks(self):
        """Every registration a service logged as acknowledged: [(id, service, addr)]."""
        acks = []
        for name in sorted(os.listdir(self.tmp)):
            if name.startswith("svc."):
                with open(os.path.join(self.tmp, name), errors="replace") as f:
                    for line in f:
                        m = SVC_REG_RE.search(line)
                        if m:
                            acks.append((m.group(3), m.group(1), m.group(2)))
        return acks

    # --- talking to registryd -------------------------------------------------------------
    def query(self, reqs):
        """Sends requests on one fresh connection; returns the replies."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        f = s.makefile("rwb")
        out = []
        try:
            for r in reqs:
                f.write(json.dumps(r).encode() + b"\n")
                f.flush()
                out.append(json.loads(f.readline()))
        finally:
            f.close()
            s.close()
        return out

    def final_state(self):
        services = self.query([{"op": "list"}])[0]["services"]
        present = {}
        replies = self.query([{"op": "lookup", "service": s["service"], "all": True} for s in services])
        for r in replies:
            if r.get("ok"):
                for i in r["instances"]:
                    present[i["id"]] = r["service"]
        events, since = [], 0
        while True:
            r = self.query([{"op": "events", "since": since, "limit": 10000}])[0]
            if not r.get("ok"):
                raise RuntimeError("events: %r" % r)
            if not r["events"]:
                break
            events += r["events"]
            since = r["events"][-1]["seq"]
        return present, events

    # --- the run ----------------------------------------------------------------------------
    def run(self):
        a = self.args
        T = float(a.seconds)
        self.start_registry()
        t0 = time.monotonic()
        me = os.path.abspath(__file__)
        pings = os.path.join(self.tmp, "pings.txt")
        load_out = os.path.join(self.tmp, "load.json")
        pinger = subprocess.Popen([sys.executable, me, "--role", "pinger", "--port", str(self.port),
                                   "--out", pings], preexec_fn=die_with_parent)
        self.children.append(pinger)
        load = subprocess.Popen([sys.executable, me, "--role", "load", "--port", str(self.port),
                                 "--out", load_out, "--clients", str(a.clients), "--seed", str(a.seed)],
                                preexec_fn=die_with_parent)
        self.children.append(load)
        self.churner = threading.Thread(target=self.churn, daemon=True)
        self.churner.start()
        threading.Thread(target=self.sample_dstate, daemon=True).start()

        # Restarts over the first 30% of the run; warm-up ends 15% of the run (at least
        # WARMUP_MIN s: the page cache and allocator need that long to fill) after the last.
        step = RESTART_SPAN / max(1, a.restarts)
        plan = [(t0 + step * (k + 1) * T, "restart") for k in range(a.restarts)]
        last = step * a.restarts * T
        warm_at = t0 + last + min(max(0.15 * T, WARMUP_MIN), 0.8 * T - last)
        self.warm_after = warm_at - t0 - last
        plan += [(warm_at, "warm"), (t0 + T, "end")]
        plan.sort()
        rss_warm = rss_end = None
        print("soak: %g s, %d clients, %d services, %d registryd restarts (SIGKILL); port %d, dir %s"
              % (T, a.clients, a.services, a.restarts, self.port, self.tmp), flush=True)
        for when, what in plan:
            while time.monotonic() < when:
                if self.reg.poll() is not None:
                    raise RuntimeError("registryd exited by itself (status %s); see %s"
                                       % (self.reg.returncode, self.tmp))
                if load.poll() is not None or pinger.poll() is not None:
                    raise RuntimeError("the load or the pinger exited early (see above)")
                r = rss_kb(self.reg.pid)
                if r:
                    self.rss_samples.append((time.monotonic() - t0, r))
                time.sleep(min(0.25, max(0.0, when - time.monotonic())))
            if what == "restart":
                self.restart_registry()
                w = self.windows[-1]
                print("  %6.1fs  registryd killed (SIGKILL) and restarted: back in %.3f s"
                      % (w[0] - t0, w[1] - w[0]), flush=True)
            elif what == "warm":
                rss_warm = rss_kb(self.reg.pid)
                t_warm = time.monotonic()
                print("  %6.1fs  RSS after warm-up: %d kB" % (time.monotonic() - t0, rss_warm), flush=True)
            else:
                rss_end = rss_kb(self.reg.pid)
                self.end_after_warm = time.monotonic() - t_warm
        # Stop the load, then the churn (live services stay up), then the pinger.
        load.send_signal(signal.SIGTERM)
        try:
            load.wait(30)
        except subprocess.TimeoutExpired:
            raise RuntimeError("the load did not stop within 30 s")
        self.churn_stop.set()
        self.sampler_stop.set()
        t_end = time.monotonic()
        pinger.send_signal(signal.SIGTERM)
        pinger.wait(10)
        if load.returncode != 0 or not os.path.exists(load_out):
            raise RuntimeError("the load process failed (exit %s)" % load.returncode)
        with open(load_out) as f:
            res = json.load(f)
        time.sleep(0.2)   # registrations of services started a moment ago settle
        # Acknowledgements first, then the state: whatever was acknowledged before the
        # snapshot must be in it, or removed by an event the events op then returns.
        svc_acks = self.service_acks()
        present, events = self.final_state()
        stats = self.query([{"op": "stats"}])[0]
        return self.verdict(res, svc_acks, present, events, stats, pings, t0, t_end, rss_warm,
                            rss_end)

    def stop_services(self):
        """Ends the churn thread, which stops the live services (SIGTERM) first."""
        self.churn_stop.set()
        self.churn_quit.set()
        if self.churner is not None:
            self.churner.join(30)

    def verdict(self, res, svc_acks, present, events, stats, pings, t0, t_end, rss_warm, rss_end):
        by_id = collections.defaultdict(list)
        for e in events:
            if e.get("id"):
                by_id[e["id"]].append((e["seq"], e["event"]))

        def last(id_, kinds):
            seqs = [s for s, k in by_id.get(id_, ()) if k in kinds]
            return max(seqs) if seqs else 0

        def explained(id_, udereg):
            """A removal event after the instance's last registration."""
            kinds = REMOVALS if udereg else ("evict", "expire")
            reg_seq = last(id_, REGISTRATIONS)
            return reg_seq > 0 and last(id_, kinds) > reg_seq

        lost, resurrected = [], []
        n_registered = n_deregistered = n_gone = 0
        for id_, st in res["ids"].items():
            if st["last"] == "registered":
                n_registered += 1
                if id_ not in present and not explained(id_, st["udereg"]):
                    lost.append(id_)
            elif st["last"] == "gone":
                n_gone += 1
                if id_ in present:
                    resurrected.append(id_)
                elif not explained(id_, st["udereg"]):
                    lost.append(id_)
            else:
                n_deregistered += 1
                if id_ in present or last(id_, REGISTRATIONS) > last(id_, ("deregister",)):
                    resurrected.append(id_)
        svc_ids = {}
        for id_, svc, addr in svc_acks:
            svc_ids[id_] = (svc, addr)
        for id_ in svc_ids:
            if id_ not in present and not explained(id_, True) and id_ not in lost:
                lost.append(id_)
        lost += [i for i in res["live_lost"] if i not in lost]

        # Unanswered pings, minus registryd's own restarts.
        spans, stalls = [], []
        with open(pings) as f:
            for line in f:
                w = line.split()
                if len(w) == 3 and w[0] == "S":
                    stalls.append((float(w[2]), float(w[1]) - t0))
                elif len(w) == 2:
                    spans.append((float(w[0]), float(w[1])))
        gap, gap_at = 0.0, None
        if not spans:
            self.violations.append("no ping was ever answered")
        for a_, b_ in spans:
            segs = [(a_, b_)]
            for k, r in self.windows:
                nxt = []
                for s, e in segs:
                    if e <= k or s >= r:
                        nxt.append((s, e))
                        continue
                    if s < k:
                        nxt.append((s, k))
                    if e > r:
                        nxt.append((r, e))
                segs = nxt
            for s, e in segs:
                if e - s > gap:
                    gap, gap_at = e - s, s - t0
        outages = []
        for k, r in self.windows:
            after = [e for _, e in spans if e > r]
            outages.append((r - k, (after[0] - k) if after else None))
        times = spans

        evicted = sum(1 for e in events if e["event"] == "evict")
        expired = sum(1 for e in events if e["event"] == "expire")
        codes = res["codes"]
        print()
        print("figures")
        print("  requests            %d answered (%d/s), %d ping" % (
            res["requests"], res["requests"] / max(1.0, t_end - t0), len(times)))
        print("  by op               " + ", ".join("%s %d" % kv for kv in sorted(res["ops"].items())))
        print("  replies by code     " + ", ".join("%s %d" % kv for kv in sorted(codes.items())))
        print("  registryd errors    " + ", ".join("%s %d" % kv for kv in sorted(stats["errors"].items())
                                                   ) + "  (stats, since the last restart)")
        print("  dropped requests    %d (connection lost mid-request: restarts)" % res["drops"])
        print("  restarts            %d (SIGKILL); outage kill->listening %s; ->first ping %s" % (
            len(self.windows), ", ".join("%.3fs" % o[0] for o in outages),
            ", ".join("%.3fs" % o[1] if o[1] is not None else "never" for o in outages)))
        print("  service processes   %d started, %d SIGKILLed, %d died alone; %d registrations acked"
              % (self.churn_stats["started"], self.churn_stats["killed"],
                 self.churn_stats["died_alone"], len(svc_acks)))
        print("  client ids          %d registered at the end, %d deregistered (acked), %d gone "
              "(expired/evicted)" % (n_registered, n_deregistered, n_gone))
        print("  events              %d (evict %d, expire %d); instances present at the end %d"
              % (len(events), evicted, expired, len(present)))
        print("  lost = %d" % len(lost))
        print("  resurrected = %d" % len(resurrected))
        print("  max ping gap        %.3f s unanswered outside restarts%s" % (
            gap, " (at %.1fs)" % gap_at if gap_at is not None else ""))
        stalls.sort(reverse=True)
        print("  pinger not run      %s" % (", ".join("%.3fs at %.1fs" % st for st in stalls[:3])
                                            if stalls else "never over 0.1 s (machine not starved)"))
        blocked = collections.Counter(w for _, w in self.dstate)
        print("  registryd in D      %s" % (", ".join("%s x%d" % kv for kv in blocked.most_common(4))
                                            if blocked else "never seen (main thread, sampled every 20 ms)"))
        growth = (rss_end - rss_warm) / rss_warm if rss_warm and rss_end else None
        print("  RSS warm / end      %s kB / %s kB (%s); warm = %.0f s after the last restart, "
              "end = %.0f s later" % (rss_warm, rss_end,
                                     "%+.1f%%" % (100 * growth) if growth is not None else "?",
                                     self.warm_after, self.end_after_warm))
        marks, nxt = [], 0.0
        for t, r in self.rss_samples:
            if t >= nxt:
                marks.append("%.0fs:%d" % (t, r))
                nxt = t + (t_end - t0) / 10
        print("  RSS over the run    " + " ".join(marks) + " (kB)")

        if lost:
            self.violations.append("lost %d acknowledged registrations, e.g. %s" % (
                len(lost), ", ".join(self.describe(i, by_id, res, svc_ids) for i in lost[:5])))
        if resurrected:
            self.violations.append("resurrected %d deregistered instances, e.g. %s" % (
                len(resurrected), ", ".join(self.describe(i, by_id, res, svc_ids)
                                            for i in resurrected[:5])))
        if gap > MAX_PING_GAP:
            self.violations.append("ping went unanswered for %.3f s (limit %.1f s) outside restarts"
                                   % (gap, MAX_PING_GAP))
        if growth is None or abs(growth) > RSS_TOLERANCE:
            self.violations.append("RSS at the end %s kB vs %s kB after warm-up: beyond %d%%"
                                   % (rss_end, rss_warm, 100 * RSS_TOLERANCE))
        if res["unexpected"]:
            self.violations.append("%d unexpected replies, e.g. %s" % (
                codes.get("unexpected", 0), "; ".join(json.dumps(u)[:300] for u in res["unexpected"][:5])))
        if self.churn_error:
            self.violations.append("the service churn failed: %s" % self.churn_error)
        if self.churn_stats["spawn_failed"]:
            self.violations.append("%d service starts failed, e.g. %s" % (
                self.churn_stats["spawn_failed"], self.spawn_error))
        if len(self.windows) != self.args.restarts:
            self.violations.append("only %d of %d restarts happened" % (len(self.windows), self.args.restarts))
        if res["requests"] == 0 or not svc_acks:
            self.violations.append("no load ran (requests %d, service registrations %d)"
                                   % (res["requests"], len(svc_acks)))
        return stats

    @staticmethod
    def describe(id_, by_id, res, svc_ids):
        who = "client" if id_ in res["ids"] else "service %s %s" % svc_ids.get(id_, ("?", "?"))
        st = res["ids"].get(id_, {})
        return "%s (%s, last ack %s, events %s)" % (id_, who, st.get("last", "register"),
                                                    by_id.get(id_, [])[-6:])

    def stop_registry(self):
        """SIGTERM: a clean exit 0 after all this is part of the verdict."""
        if self.reg is None or self.reg.poll() is not None:
            return
        self.reg.send_signal(signal.SIGTERM)
        try:
            rc = self.reg.wait(20)
        except subprocess.TimeoutExpired:
            self.violations.append("registryd did not exit within 20 s of SIGTERM")
            return
        if rc != 0:
            self.violations.append("registryd exited %s on SIGTERM" % rc)

    def cleanup(self):
        self.sampler_stop.set()
        self.stop_services()
        for p in self.children:
            if p.poll() is None:
                p.kill()
                p.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--role", choices=("main", "load", "pinger"), default="main", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--build", default="build", help="build directory (default build)")
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", "120")),
                    help="duration (default $SOAK_SECONDS or 120)")
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--services", type=int, default=50)
    ap.add_argument("--restarts", type=int, default=3)
    ap.add_argument("--seed", type=int, default=int(os.environ.get("SOAK_SEED", "6")))
    ap.add_argument("--keep", action="store_true", help="keep the temp dir even on success")
    a = ap.parse_args()
    if a.role == "load":
        return role_load(a)
    if a.role == "pinger":
        return role_pinger(a)
    if not (5 <= a.seconds <= 86400 and 1 <= a.clients <= 5000 and 0 <= a.services <= 500
            and 0 <= a.restarts <= 20):
        ap.error("out of range: --seconds 5-86400, --clients 1-5000, --services 0-500, --restarts 0-20")

    def on_signal(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGTERM, on_signal)

    soak = Soak(a)
    ok = False
    try:
        soak.run()
        soak.stop_services()          # live services stop (SIGTERM: they deregister)
        soak.stop_registry()
        ok = not soak.violations
    except KeyboardInterrupt as e:
        soak.violations.append("interrupted (%s)" % e)
    except Exception as e:  # a harness failure is a failed soak, with its reason
        soak.violations.append("soak aborted: %s: %s" % (type(e).__name__, e))
    finally:
        soak.cleanup()
    for v in soak.violations:
        print("VIOLATION: " + v)
    print("soak: %s" % ("PASS" if ok else "FAIL"), flush=True)
    if ok and not a.keep:
        shutil.rmtree(soak.tmp, ignore_errors=True)
    else:
        print("soak: files kept in %s" % soak.tmp)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
