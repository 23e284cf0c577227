# SPDX-License-Identifier: BSD-2-Clause
"""etcd.py -- a real etcd cluster on loopback for the end-to-end tests (stdlib only).

Debian's etcd-server (3.4, /usr/bin/etcd), installed by `make check` (scripts/deps.sh).
Every member is a process of the test's Harness (kind "backend": killed at the end,
after every registryd has stopped), on loopback ports of its own with its data dir in
the test's temp dir. etcd's election timeout and heartbeat stay at their defaults.

    from etcd import EtcdCluster, EtcdError, require
    require()                       # Skip when /usr/bin/etcd is missing
    c = EtcdCluster(h)              # 3 members, started at once; returns when healthy
    c = EtcdCluster(h, n=1)         # one member
    c.endpoints                     # "http://127.0.0.1:P1,http://127.0.0.1:P2,..."
    c.members[i].client_url, .peer_url, .pid, .name, .data_dir, .alive(), .proc
    c.kill9(i); c.stop(i); c.start(i)          # restart: same data dir and ports
    c.leader() -> index or None; c.wait_leader(timeout) -> index
    c.wait_healthy(timeout)         # every running member has a leader and serves
    c.put(k, v) -> revision; c.get(k) -> bytes or None; c.delete(k) -> count
    c.range(prefix) -> {key: value}; c.kvs(prefix) -> [KV]; c.revision()
    c.lease_grant(ttl) -> id; c.lease_ttl(id) -> seconds left (-1: gone); c.compact()

Keys are str (or bytes), values bytes (str is UTF-8 encoded); they travel base64 through
etcd's v3 JSON gateway. Every call has a client timeout (default 2 s, scaled under
valgrind); a failure raises EtcdError, an AssertionError, so wait_for() polls through it.
"""

import base64
import http.client
import json
import os
import random
import socket
import time
from collections import namedtuple

from harness import SCALE, Skip, free_port, scaled

ETCD = "/usr/bin/etcd"
LOOPBACK = "127.0.0.1"
# Ports make run-cluster uses (scripts/run-cluster.sh): never picked here.
_RESERVED = {2379, 2380, 22379, 22380, 32379, 32380}


def require():
    """Skip the test when etcd is not installed (make check installs it: only a machine
    where that failed lacks it)."""
    if not os.access(ETCD, os.X_OK):
        raise Skip("%s is not installed (Debian etcd-server; make check installs it)" % ETCD)


class EtcdError(AssertionError):
    """A gateway call that failed. kind: "timeout" (no answer within the client
    timeout), "refused" (nothing listening / connection lost), "http" (an error answer:
    .status, .code is gRPC's code, .message etcd's text)."""

    def __init__(self, kind, message, status=None, code=None):
        super().__init__("etcd %s: %s" % (kind, message))
        self.kind, self.message, self.status, self.code = kind, message, status, code


KV = namedtuple("KV", "key value create_revision mod_revision version lease")


def _b64(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


def _unb64(text):
    return base64.b64decode(text or "")


def _prefix_end(prefix):
    """The range_end that selects every key starting with prefix (etcd's rule)."""
    p = bytearray(prefix.encode() if isinstance(prefix, str) else prefix)
    while p:
        if p[-1] < 0xFF:
            p[-1] += 1
            return bytes(p)
        p.pop()
    return b"\0"  # every key


def _port_candidates():
    """Loopback ports for a member: below the kernel's ephemeral range when there is
    room (so no outgoing connection can be holding one when a member restarts on it),
    else whatever free_port gives."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 0
    if low > 12000:
        return lambda: random.randrange(10000, low)
    return None


def _bindable(port):
    s = socket.socket(socket.AF_INET)
    try:
        s.bind((LOOPBACK, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def pick_ports(n):
    """n distinct loopback ports nothing listens on right now."""
    draw = _port_candidates()
    ports = []
    while len(ports) < n:
        p = draw() if draw else free_port(LOOPBACK)
        if p in ports or p in _RESERVED or not _bindable(p):
            continue
        ports.append(p)
    return ports


class Member:
    """One etcd member: its name, ports, data dir and current process (None before the
    first start)."""

    def __init__(self, cluster, index, client_port, peer_port):
        self.cluster, self.index = cluster, index
        self.name = "etcd%d" % index
        self.client_port, self.peer_port = client_port, peer_port
        self.client_url = "http://%s:%d" % (LOOPBACK, client_port)
        self.peer_url = "http://%s:%d" % (LOOPBACK, peer_port)
        self.data_dir = os.path.join(cluster.dir, self.name)
        self.proc = None
        self.id = None  # etcd's member id (decimal string), once it reported one

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.alive()

    def argv(self, state):
        c = self.cluster
        return [ETCD, "--name", self.name, "--data-dir", self.data_dir,
                "--listen-client-urls", self.client_url,
                "--advertise-client-urls", self.client_url,
                "--listen-peer-urls", self.peer_url,
                "--initial-advertise-peer-urls", self.peer_url,
                "--initial-cluster", c.initial_cluster,
                "--initial-cluster-token", c.token,
                "--initial-cluster-state", state,
                "--logger", "zap", "--log-outputs", "stderr"] + list(c.extra)

    def spawn(self, state):
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        self.proc = self.cluster.h.spawn(self.argv(state), name=self.name, env=env, kind="backend")
        return self.proc

    def port_clash(self):
        """The process exited because one of its ports was taken."""
        return (self.proc is not None and not self.proc.alive()
                and "address already in use" in self.proc.stderr())

    def __repr__(self):
        return "<%s %s pid %s%s>" % (self.name, self.client_url, self.pid,
                                     "" if self.alive() else " down")


class EtcdCluster:
    """n etcd members on loopback, started in parallel; the constructor returns once
    every member is healthy and there is a leader (deadline `timeout`, scaled)."""

    def __init__(self, h, n=3, extra=(), timeout=20.0, attempts=3):
        """extra: more etcd flags for every member (e.g. "--auto-compaction-retention=1").
        A port taken between picking and binding starts the whole cluster again on fresh
        ports, up to `attempts` times."""
        if not os.access(ETCD, os.X_OK):
            raise AssertionError("%s is missing: install Debian's etcd-server "
                                 "(make check does, through scripts/deps.sh)" % ETCD)
        self.h, self.n, self.extra = h, n, tuple(extra)
        for attempt in range(1, attempts + 1):
            self.token = "reg-e2e-%d-%s" % (os.getpid(), os.urandom(6).hex())
            self.dir = os.path.join(h.tmp, "etcd.%d" % attempt)
            os.makedirs(self.dir)
            ports = pick_ports(2 * n)
            self.members = [Member(self, i, ports[2 * i], ports[2 * i + 1]) for i in range(n)]
            self.initial_cluster = ",".join("%s=%s" % (m.name, m.peer_url) for m in self.members)
            for m in self.members:
                m.spawn("new")
            try:
                self.wait_healthy(timeout)
                self.wait_leader(timeout)
                return
            except AssertionError:
                clash = any(m.port_clash() for m in self.members)
                if not clash or attempt == attempts:
                    raise
                for m in self.members:
                    if m.alive():
                        m.proc.kill9()

    # --- the cluster's shape ---------------------------------------------------------
    @property
    def endpoints(self):
        """Every member's client URL, comma-separated (registryd's --etcd)."""
        return ",".join(m.client_url for m in self.members)

    def urls(self, indices=None):
        return [self.members[i].client_url for i in (indices if indices is not None else range(self.n))]

    def __len__(self):
        return self.n

    # --- members up and down -----------------------------------------------------------
    def kill9(self, i):
        """SIGKILL member i and reap it; returns its exit code."""
        m = self.members[i]
        assert m.alive(), "%r is not running" % m
        return m.proc.kill9()

    def stop(self, i, timeout=10.0):
        """SIGTERM member i (a leader hands its leadership over first) and wait for it;
        returns its exit code (etcd dies of the signal: -15)."""
        m = self.members[i]
        assert m.alive(), "%r is not running" % m
        return m.proc.stop(timeout)

    def start(self, i, wait=True, timeout=15.0):
        """Starts member i again: same name, data dir and ports (--initial-cluster-state
        existing). wait: returns once it serves, which needs a quorum of running members;
        start the others with wait=False first, then wait_healthy(). A port still held
        (just after a kill) is retried until the deadline."""
        m = self.members[i]
        assert not m.alive(), "%r is already running" % m
        deadline = time.monotonic() + scaled(timeout)
        while True:
            m.spawn("existing")
            t_end = time.monotonic() + 0.5
            while time.monotonic() < t_end and m.alive():
                time.sleep(0.02)
            if m.alive() or not m.port_clash():
                break
            if time.monotonic() > deadline:
                raise AssertionError("%s could not get its ports back:\n%s" % (m.name, m.proc.tail()))
            time.sleep(0.1)
        if not m.alive():
            raise AssertionError("%s exited at restart with %s:\n%s"
                                 % (m.name, m.proc.popen.returncode, m.proc.tail()))
        if wait:
            self.wait_healthy(max(0.1, deadline - time.monotonic()) / SCALE, members=[i])
        return m

    # --- health and leadership -----------------------------------------------------------
    def status(self, i, timeout=1.0):
        """Member i's /v3/maintenance/status (answered locally, no quorum needed once the
        member serves), as the JSON object."""
        st = self.request("/v3/maintenance/status", {}, member=i, timeout=timeout)
        self.members[i].id = st.get("header", {}).get("member_id")
        return st

    def healthy(self, i, timeout=1.0):
        """etcd's /health on member i: it has a leader and a quorum read succeeded."""
        try:
            r = self._http(self.members[i], "GET", "/health", None, timeout)
        except EtcdError:
            return False
        return str(r.get("health")).lower() == "true"

    def wait_healthy(self, timeout=15.0, members=None):
        """Waits until every running member (or those listed) is healthy. A member that
        exits meanwhile fails at once, with its log."""
        idx = list(members) if members is not None else [m.index for m in self.members if m.proc]
        deadline = time.monotonic() + scaled(timeout)
        left = list(idx)
        while True:
            for i in list(left):
                m = self.members[i]
                if not m.alive():
                    raise AssertionError("%s exited with %s:\n%s" % (m.name, m.proc.popen.returncode,
                                                                     m.proc.tail()))
                if self.healthy(i, timeout=0.5):
                    left.remove(i)
            if not left:
                return
            if time.monotonic() > deadline:
                raise AssertionError("etcd members %s not healthy within %.1fs:\n%s"
                                     % ([self.members[i].name for i in left], scaled(timeout),
                                        "\n".join(self.members[i].proc.tail(8) for i in left)))
            time.sleep(0.05)

    def leader(self):
        """The index of the running member that says it is the leader, or None (an
        election under way, no quorum)."""
        for m in self.members:
            if not m.alive():
                continue
            try:
                st = self.status(m.index, timeout=0.5)
            except EtcdError:
                continue
            if st.get("leader") and st.get("leader") == st.get("header", {}).get("member_id"):
                return m.index
        return None

    def wait_leader(self, timeout=10.0):
        """Polls until a running member is the leader; returns its index."""
        deadline = time.monotonic() + scaled(timeout)
        while True:
            i = self.leader()
            if i is not None:
                return i
            if time.monotonic() > deadline:
                raise AssertionError("no etcd leader within %.1fs (members %r)" % (scaled(timeout), self.members))
            time.sleep(0.05)

    # --- the v3 JSON gateway -----------------------------------------------------------
    def _http(self, m, method, path, body, timeout):
        c = http.client.HTTPConnection(LOOPBACK, m.client_port, timeout=scaled(timeout))
        try:
            c.request(method, path, body=None if body is None else json.dumps(body),
                      headers={"Content-Type": "application/json"})
            r = c.getresponse()
            data = r.read()
        except socket.timeout:
            raise EtcdError("timeout", "%s %s on %s: no answer within %.1fs"
                            % (method, path, m.name, scaled(timeout)))
        except (OSError, http.client.HTTPException) as e:
            raise EtcdError("refused", "%s %s on %s: %s" % (method, path, m.name, e))
        finally:
            c.close()
        try:
            obj = json.loads(data) if data else {}
        except ValueError:
            raise EtcdError("http", "%s %s on %s: HTTP %d, not JSON: %r"
                            % (method, path, m.name, r.status, data[:200]), status=r.status)
        if r.status != 200 or (isinstance(obj, dict) and "error" in obj and "header" not in obj):
            d = obj if isinstance(obj, dict) else {}
            msg = d.get("message") or d.get("error") or obj
            raise EtcdError("http", "%s %s on %s: HTTP %d: %s" % (method, path, m.name, r.status, msg),
                            status=r.status, code=d.get("code"))
        return obj

    def request(self, path, body, member=None, timeout=2.0):
        """POSTs body (a dict) to the gateway path (e.g. "/v3/kv/range") and returns the
        answer. member: that member only; else the running members in turn, moving on
        only when one refuses the connection (a timeout is the answer: a cluster without
        quorum times out on every member)."""
        if member is not None:
            return self._http(self.members[member], "POST", path, body, timeout)
        last = None
        for m in self.members:
            if not m.alive():
                continue
            try:
                return self._http(m, "POST", path, body, timeout)
            except EtcdError as e:
                if e.kind != "refused":
                    raise
                last = e
        raise last or EtcdError("refused", "no etcd member is running")

    def put(self, key, value, lease=None, member=None, timeout=2.0):
        """Writes key=value (through a quorum); returns the new revision."""
        body = {"key": _b64(key), "value": _b64(value)}
        if lease:
            body["lease"] = str(lease)
        r = self.request("/v3/kv/put", body, member, timeout)
        return int(r["header"]["revision"])

    def kvs(self, prefix, member=None, timeout=2.0, serializable=False, revision=None):
        """Every key under prefix ("" = all), sorted, as KV(key str, value bytes,
        create_revision, mod_revision, version, lease: ints). serializable: the member's
        own copy, no quorum needed."""
        body = {"key": _b64(prefix or b"\0"), "range_end": _b64(_prefix_end(prefix))}
        if serializable:
            body["serializable"] = True
        if revision:
            body["revision"] = str(revision)
        r = self.request("/v3/kv/range", body, member, timeout)
        return [KV(_unb64(kv["key"]).decode(errors="surrogateescape"), _unb64(kv.get("value")),
                   int(kv.get("create_revision", 0)), int(kv.get("mod_revision", 0)),
                   int(kv.get("version", 0)), int(kv.get("lease", 0)))
                for kv in r.get("kvs", [])]

    def range(self, prefix, **kw):
        """{key: value bytes} for every key under prefix, in key order."""
        return {kv.key: kv.value for kv in self.kvs(prefix, **kw)}

    def get_kv(self, key, member=None, timeout=2.0, serializable=False):
        """One key as a KV, or None."""
        body = {"key": _b64(key)}
        if serializable:
            body["serializable"] = True
        r = self.request("/v3/kv/range", body, member, timeout)
        for kv in r.get("kvs", []):
            return KV(_unb64(kv["key"]).decode(errors="surrogateescape"), _unb64(kv.get("value")),
                      int(kv.get("create_revision", 0)), int(kv.get("mod_revision", 0)),
                      int(kv.get("version", 0)), int(kv.get("lease", 0)))
        return None

    def get(self, key, **kw):
        """The value of key (bytes), or None."""
        kv = self.get_kv(key, **kw)
        return kv.value if kv else None

    def delete(self, key, prefix=False, member=None, timeout=2.0):
        """Deletes key (prefix=True: every key under it); returns how many went."""
        body = {"key": _b64(key)}
        if prefix:
            body["range_end"] = _b64(_prefix_end(key))
        r = self.request("/v3/kv/deleterange", body, member, timeout)
        return int(r.get("deleted", 0))

    def revision(self, member=None, timeout=2.0):
        """The store's current revision (a quorum read)."""
        r = self.request("/v3/kv/range", {"key": _b64("\0"), "limit": "1"}, member, timeout)
        return int(r["header"]["revision"])

    def compact(self, revision=None, member=None, timeout=5.0):
        """Compacts history up to revision (default: the current one), so a watch from
        an older revision is told it was compacted."""
        rev = revision or self.revision(member=member)
        self.request("/v3/kv/compaction", {"revision": str(rev), "physical": True}, member, timeout)
        return rev

    def lease_grant(self, ttl, member=None, timeout=2.0):
        """A new lease of ttl seconds; returns its id (int)."""
        r = self.request("/v3/lease/grant", {"TTL": str(ttl)}, member, timeout)
        return int(r["ID"])

    def lease_ttl(self, lease, keys=False, member=None, timeout=2.0):
        """Seconds left on a lease (-1: expired or unknown); keys=True: (ttl, granted
        ttl, [keys]) instead."""
        r = self.request("/v3/lease/timetolive", {"ID": str(lease), "keys": bool(keys)}, member, timeout)
        ttl = int(r.get("TTL", -1))
        if not keys:
            return ttl
        return ttl, int(r.get("grantedTTL", 0)), [_unb64(k).decode(errors="surrogateescape")
                                                   for k in r.get("keys", [])]

    def lease_revoke(self, lease, member=None, timeout=2.0):
        self.request("/v3/lease/revoke", {"ID": str(lease)}, member, timeout)

    def __repr__(self):
        return "<EtcdCluster %s>" % self.members
