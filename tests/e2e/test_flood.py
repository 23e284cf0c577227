# SPDX-License-Identifier: BSD-2-Clause
"""test_flood.py -- hash flooding (issue 10): names a client chooses must not make it slow.

The catalog's and the caches' hash tables (registry/base/dict.c) are keyed by names the
clients choose. When the hash was the unkeyed FNV-1a 64, anyone could compute names that
all land on one home slot: every insert and every lookup then walks one probe run as long
as the whole set, so the cost grows quadratically with the number of names. Now the hash
is SipHash-1-3 under a key drawn at random per process, so no name set can be computed in
advance.

The test registers N names that all share their low 16 bits under FNV-1a 64 (one home
slot in every table of up to 65536 slots) in one daemon, and N random names of the same
lengths in another, then times interleaved passes of pipelined lookups of every name on
each. A lookup probes three tables keyed by the name (services, the lookup cache, the
lookup counts), so with the old hash the flood set costs the daemon about 3x the CPU of
the ordinary set at N = 8000 (and more as N grows); with the keyed hash, the same. The
bound is on the daemons' CPU time, which a busy machine disturbs less than wall time;
both are printed. N stays below 10,000 names: one client registers them all.
"""

import os
import random
import time

from harness import ok, timeout, timing

N = 8000
MASK = 0xFFFF            # the home slot in a table of up to 65536 slots
FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
CHUNK = 2000             # lookups in flight per pipelined batch
ROUNDS = 5               # timed passes per daemon, interleaved
MAX_RATIO = 2.0          # flood set / ordinary set, the daemons' CPU time


def fnv1a64(data):
    h = FNV_OFFSET
    for b in data:
        h = ((h ^ b) * FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return h


def flood_names(n, target=0x5EED):
    """n distinct names of [a-z0-9-] whose FNV-1a 64 hash & MASK == target, in well under a
    second: the low 16 bits of FNV-1a depend only on the low 16 bits of its state, and one
    step is invertible (the prime is odd). So each 3-character suffix needs exactly one
    state before it to end on target; prefixes "f<i>-" whose state is one of those get
    that suffix (about half of them do)."""
    prime = FNV_PRIME & MASK
    inv = pow(prime, -1, MASK + 1)
    suffix_for = {}
    for a in ALNUM:
        for b in ALNUM:
            for c in ALNUM:
                st = target
                for ch in (c, b, a):             # undo the last byte first
                    st = ((st * inv) & MASK) ^ ord(ch)
                suffix_for[st] = a + b + c
    names, i = [], 0
    while len(names) < n:
        prefix = "f%d-" % i
        i += 1
        sfx = suffix_for.get(fnv1a64(prefix.encode()) & MASK)
        if sfx is not None:
            names.append(prefix + sfx)
    for name in names[:100] + names[-100:]:
        assert fnv1a64(name.encode()) & MASK == target, name
    return names


def ordinary_names(like, seed=10):
    """Random distinct names, one of the same length as each name of `like`."""
    rnd = random.Random(seed)
    out, seen = [], set()
    for name in like:
        while True:
            s = rnd.choice(ALNUM[:26]) + "".join(rnd.choice(ALNUM) for _ in range(len(name) - 1))
            if s not in seen:
                seen.add(s)
                out.append(s)
                break
    return out


def pipelined(conn, lines, check):
    """Sends the request lines CHUNK at a time, reading each batch's replies before the
    next; check(raw replies, batch size) inspects each batch."""
    for k in range(0, len(lines), CHUNK):
        batch = lines[k:k + CHUNK]
        conn.send(b"".join(batch))
        data = b""
        while data.count(b"\n") < len(batch):
            data += conn.buf + conn.sock.recv(1 << 20)
            conn.buf = b""
        assert data.count(b"\n") == len(batch), "more replies than requests: %r" % data[-300:]
        check(data, len(batch))


def register_all(reg, names):
    conn = reg.conn(timeout=30.0)
    lines = [('{"op":"register","service":"%s","host":"127.0.0.1","port":%d,"check":"none"}\n'
              % (name, 1000 + i % 60000)).encode() for i, name in enumerate(names)]

    def check(data, n):
        assert data.count(b'"ok":true') == n, "a register failed: %r" % data[:500]
    pipelined(conn, lines, check)
    return conn


def lookup_lines(names):
    return [('{"op":"lookup","service":"%s"}\n' % name).encode() for name in names]


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def lookup_pass(reg, conn, lines):
    """(wall seconds, daemon CPU seconds) of one pipelined pass of lookups; every one must
    find its service."""
    def check(data, n):
        assert data.count(b'"ok":true') == n, "a lookup failed: %r" % data[:500]
    c0, t0 = cpu_seconds(reg.pid), time.monotonic()
    pipelined(conn, lines, check)
    return time.monotonic() - t0, cpu_seconds(reg.pid) - c0


@timing
@timeout(90)
def test_fnv_colliding_names_are_not_slower(h):
    flood = flood_names(N)
    plain = ordinary_names(flood)
    reg_flood = h.registry("--sync", "normal", db=h.path("flood.db"), log=h.path("flood.log"))
    reg_plain = h.registry("--sync", "normal", db=h.path("plain.db"), log=h.path("plain.log"))
    t0 = time.monotonic()
    c_flood = register_all(reg_flood, flood)
    t_reg_flood = time.monotonic() - t0
    t0 = time.monotonic()
    c_plain = register_all(reg_plain, plain)
    t_reg_plain = time.monotonic() - t0
    n = ok(c_flood.request({"op": "stats"}), "stats").get("services")
    assert n == N, "flood daemon has %r services, want %d" % (n, N)

    l_flood, l_plain = lookup_lines(flood), lookup_lines(plain)
    lookup_pass(reg_flood, c_flood, l_flood)   # warm-up: lookup sets, caches, lookup counts
    lookup_pass(reg_plain, c_plain, l_plain)
    wall = {"flood": [], "plain": []}
    cpu = {"flood": 0.0, "plain": 0.0}
    for _ in range(ROUNDS):         # interleaved, so a busy moment hits both alike
        for key, reg, conn, lines in (("flood", reg_flood, c_flood, l_flood),
                                      ("plain", reg_plain, c_plain, l_plain)):
            w, c = lookup_pass(reg, conn, lines)
            wall[key].append(w)
            cpu[key] += c
    best_flood, best_plain = min(wall["flood"]), min(wall["plain"])
    wall_ratio = best_flood / best_plain
    cpu_ratio = cpu["flood"] / max(cpu["plain"], 0.01)
    print("%d names: register %.2fs (flood) vs %.2fs (ordinary); lookups %.0f/s (flood) vs "
          "%.0f/s (ordinary), fastest pass, ratio %.2f; daemon CPU %.2fs vs %.2fs, ratio %.2f"
          % (N, t_reg_flood, t_reg_plain, N / best_flood, N / best_plain, wall_ratio,
             cpu["flood"], cpu["plain"], cpu_ratio))
    assert cpu_ratio < MAX_RATIO, (
        "lookups of %d names colliding under FNV-1a cost the daemon %.2fx the CPU of %d "
        "ordinary names (%.2fs vs %.2fs in %d passes): the table hash is floodable"
        % (N, cpu_ratio, N, cpu["flood"], cpu["plain"], ROUNDS))
