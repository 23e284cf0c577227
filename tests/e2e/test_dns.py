# SPDX-License-Identifier: BSD-2-Clause
"""test_dns.py -- the DNS front-end with real clients: dig and dnspython (README "DNS").

Every query goes to 127.0.0.1; registered instances are loopback addresses or names
that are never resolved by anyone here.
"""

import socket
import struct
import subprocess
import sys

try:
    import dns.message  # noqa: F401
except ImportError:  # Debian's python3-dnspython, when python3 is not Debian's own
    sys.path.append("/usr/lib/python3/dist-packages")

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from harness import Skip, err, events, ok, register, stats, wait_for

DOMAIN = "registry"


def start(h, *flags, **kw):
    reg = h.registry("--dns", "127.0.0.1:0", *flags, **kw)
    assert reg.dns_port, "no `dns on` line"
    return reg


def q(reg, name, rdtype="A", tcp=False, payload=None, timeout=3.0):
    m = dns.message.make_query(name, rdtype, use_edns=payload is not None,
                               payload=payload or 512)
    if tcp:
        return dns.query.tcp(m, "127.0.0.1", port=reg.dns_port, timeout=timeout)
    return dns.query.udp(m, "127.0.0.1", port=reg.dns_port, timeout=timeout, ignore_trailing=True)


def records(resp, rdtype):
    t = dns.rdatatype.from_text(rdtype)
    return [r for rrset in resp.answer if rrset.rdtype == t for r in rrset]


def addrs(resp, rdtype="A"):
    return sorted(r.address for r in records(resp, rdtype))


def soa_min(resp):
    soa = [r for rrset in resp.authority for r in rrset if rrset.rdtype == dns.rdatatype.SOA]
    assert len(soa) == 1, resp
    return soa[0].minimum


def dig(reg, *args):
    if subprocess.run(["sh", "-c", "command -v dig"], capture_output=True).returncode != 0:
        raise Skip("dig is not installed (bind9-dnsutils)")
    r = subprocess.run(["dig", "@127.0.0.1", "-p", str(reg.dns_port), "+time=2", "+tries=1"]
                       + list(args), capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r
    return r.stdout


def test_a_aaaa_and_dig(h):
    reg = start(h)
    c = reg.conn()
    register(c, "web", 8080)
    register(c, "web", 8081, host="127.0.0.2")
    register(c, "web", 8082, host="::1")
    r = q(reg, "web.service.registry")
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA, r
    assert addrs(r) == ["127.0.0.1", "127.0.0.2"], r
    assert addrs(q(reg, "web.service.registry", "AAAA"), "AAAA") == ["::1"]
    out = dig(reg, "+short", "WEB.Service.Registry", "A")
    assert sorted(out.split()) == ["127.0.0.1", "127.0.0.2"], out


def test_srv_with_additional_addresses(h):
    reg = start(h)
    c = reg.conn()
    a, _ = register(c, "db", 5432)
    b, _ = register(c, "db", 5433, host="::1")
    register(c, "db", 5434, host="db.example")
    r = q(reg, "_db._tcp.service.registry", "SRV")
    srv = sorted((x.port, x.target.to_text()) for x in records(r, "SRV"))
    assert srv == [(5432, "%s.instance.registry." % a), (5433, "%s.instance.registry." % b),
                   (5434, "db.example.")], srv
    assert all(x.priority == 1 and x.weight == 1 for x in records(r, "SRV"))
    extra = {rrset.name.to_text(): [x.to_text() for x in rrset] for rrset in r.additional}
    assert extra["%s.instance.registry." % a] == ["127.0.0.1"], extra
    assert extra["%s.instance.registry." % b] == ["::1"], extra
    # the targets resolve
    assert addrs(q(reg, "%s.instance.registry" % a)) == ["127.0.0.1"]


def test_tags_in_both_forms(h):
    reg = start(h)
    c = reg.conn()
    register(c, "api", 1, tags=["v2"])
    register(c, "api", 2, host="127.0.0.2")
    assert addrs(q(reg, "v2.api.service.registry")) == ["127.0.0.1"]
    r = q(reg, "_api._v2.service.registry", "SRV")
    assert [x.port for x in records(r, "SRV")] == [1], r
    assert q(reg, "v9.api.service.registry").rcode() == dns.rcode.NXDOMAIN


def test_dotted_service_name_before_tag(h):
    reg = start(h)
    c = reg.conn()
    register(c, "v2.api", 7)                     # a service whose name has a dot
    register(c, "api", 8, host="127.0.0.2", tags=["v2"])
    r = q(reg, "v2.api.service.registry")
    assert addrs(r) == ["127.0.0.1"], "the whole prefix is a service first: %r" % r


def test_nxdomain_nodata_refused(h):
    reg = start(h, "--dns-ttl", "7")
    c = reg.conn()
    register(c, "only4", 1)
    r = q(reg, "nope.service.registry")
    assert r.rcode() == dns.rcode.NXDOMAIN and soa_min(r) == 7, r
    r = q(reg, "only4.service.registry", "AAAA")
    assert r.rcode() == dns.rcode.NOERROR and not r.answer and soa_min(r) == 7, r
    r = q(reg, "only4.service.registry")
    assert r.answer[0].ttl == 7, r
    assert q(reg, "example.com").rcode() == dns.rcode.REFUSED
    r = q(reg, "registry", "SOA")
    assert records(r, "SOA"), r


def test_rotation_and_registration_seen_at_once(h):
    reg = start(h)
    c = reg.conn()
    register(c, "rr", 1)
    assert addrs(q(reg, "rr.service.registry")) == ["127.0.0.1"]
    register(c, "rr", 2, host="127.0.0.2")
    register(c, "rr", 3, host="127.0.0.3")
    firsts = set()
    for _ in range(6):
        r = q(reg, "rr.service.registry")
        assert len(records(r, "A")) == 3, "a registration is answered at once: %r" % r
        firsts.add(records(r, "A")[0].address)
    assert len(firsts) == 3, "the order does not rotate: %s" % firsts


def test_critical_never_answered_and_evicted_gone(h):
    dead = h.listener()
    port = dead.getsockname()[1]
    dead.close()
    reg = start(h, "--check-interval", "0.1", "--check-timeout", "0.1", "--max-failures", "3")
    c = reg.conn()
    register(c, "mix", 9)                                       # check none: passing
    bad, _ = register(c, "mix", port, host="127.0.0.2", check="tcp")
    wait_for(lambda: [e for e in events(c) if e["event"] == "check_failed" and e["id"] == bad],
             5, "a failed check")
    for _ in range(5):
        assert addrs(q(reg, "mix.service.registry")) == ["127.0.0.1"]
    wait_for(lambda: [e for e in events(c) if e["event"] == "evict"], 5, "eviction")
    assert q(reg, "%s.instance.registry" % bad).rcode() == dns.rcode.NXDOMAIN


def test_truncation_over_udp_and_full_answer_over_tcp(h):
    reg = start(h)
    c = reg.conn()
    for i in range(40):
        register(c, "big", 1000 + i, host="127.0.1.%d" % (i + 1))
    r = q(reg, "big.service.registry")
    assert r.flags & dns.flags.TC, "40 A records do not fit 512 bytes: %r" % r
    assert len(r.to_wire()) <= 512
    full = q(reg, "big.service.registry", tcp=True)
    assert len(records(full, "A")) == 40 and not full.flags & dns.flags.TC
    edns = q(reg, "big.service.registry", payload=4096)
    assert len(records(edns, "A")) == 40 and not edns.flags & dns.flags.TC
    assert stats(c)["dns"]["truncated"] >= 1


def raw_udp(reg, payload, timeout=0.5):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(payload, ("127.0.0.1", reg.dns_port))
        return s.recvfrom(65535)[0]
    except socket.timeout:
        return None
    finally:
        s.close()


def header(qd=1, flags=0x0100, qid=0x1234):
    return struct.pack(">HHHHHH", qid, flags, qd, 0, 0, 0)


def question(name=b"\x03web\x07service\x08registry\x00", qtype=1, qclass=1):
    return name + struct.pack(">HH", qtype, qclass)


def test_bad_input_and_the_daemon_goes_on(h):
    reg = start(h)
    c = reg.conn()
    register(c, "web", 80)
    assert raw_udp(reg, b"") is None
    assert raw_udp(reg, b"\x00" * 11) is None
    cases = {
        "65535 questions": header(qd=65535) + question(),
        "compression loop": header() + b"\xc0\x0c" + struct.pack(">HH", 1, 1),
        "64-byte label": header() + b"\x40" + b"a" * 64 + b"\x00" + struct.pack(">HH", 1, 1),
        "name over 255 bytes": header() + (b"\x3f" + b"a" * 63) * 5 + b"\x00" +
        struct.pack(">HH", 1, 1),
    }
    for what, pkt in cases.items():
        resp = raw_udp(reg, pkt)
        assert resp is not None and resp[:2] == b"\x12\x34", what
        assert resp[3] & 0x0f == 1, "%s: rcode %d, not FORMERR" % (what, resp[3] & 0x0f)
    assert raw_udp(reg, header(flags=0x8100) + question()) is None, "a response is ignored"
    resp = raw_udp(reg, header() + question(qclass=3))            # CHAOS
    assert resp is not None and resp[3] & 0x0f == 5, "unknown class: REFUSED"
    resp = raw_udp(reg, header(flags=0x2100) + question())       # opcode 4 (NOTIFY)
    assert resp is not None and resp[3] & 0x0f == 4, "NOTIMP"
    # TCP: a length prefix larger than what follows, and a client that stalls mid-message
    stall = socket.create_connection(("127.0.0.1", reg.dns_port))
    stall.sendall(struct.pack(">H", 500) + header())
    half = socket.create_connection(("127.0.0.1", reg.dns_port))
    half.sendall(b"\x00")
    assert addrs(q(reg, "web.service.registry", tcp=True)) == ["127.0.0.1"]
    assert addrs(q(reg, "web.service.registry")) == ["127.0.0.1"]
    stall.close()
    half.close()
    st = stats(c)["dns"]
    assert st["formerr"] >= 4 and st["refused"] >= 1 and st["tcp"] >= 1, st


def test_stats_and_dns_off_by_default(h):
    reg = h.registry()
    assert reg.dns_port is None
    assert "dns" not in stats(reg.conn())
    reg2 = start(h, db=h.path("two.db"))
    c = reg2.conn()
    register(c, "s", 1)
    q(reg2, "s.service.registry")
    q(reg2, "nope.service.registry")
    st = stats(c)["dns"]
    assert st["queries"] == 2 and st["answered"] == 1 and st["nxdomain"] == 1, st


def test_auth_lookups_refuses_dns(h):
    secret = h.path("secret")
    with open(secret, "w") as f:
        f.write("s3cret\n")
    reg = start(h, "--auth-token-file", secret, "--auth-lookups")
    c = reg.conn()
    iid, _ = register(c, "hidden", 1, auth="s3cret")
    assert q(reg, "hidden.service.registry").rcode() == dns.rcode.REFUSED
    assert q(reg, "%s.instance.registry" % iid).rcode() == dns.rcode.REFUSED
    assert q(reg, "_hidden._tcp.service.registry", "SRV").rcode() == dns.rcode.REFUSED


def test_lookup_summary_counts_dns_on_its_own_lines(h):
    import json
    reg = start(h, "--log-lookups-interval", "0.2")
    c = reg.conn()
    register(c, "seen", 1)
    for _ in range(3):
        q(reg, "seen.service.registry")
    ok(c.request({"op": "lookup", "service": "seen"}))

    def summaries():
        with open(reg.log) as f:
            lines = [json.loads(l) for l in f if '"summary"' in l]
        return [l for l in lines if l.get("service") == "seen"]
    def counts():
        lines = summaries()
        return (sum(l["count"] for l in lines if l.get("via") == "dns"),
                sum(l["count"] for l in lines if "via" not in l))
    wait_for(lambda: counts() == (3, 1), 5, "3 DNS and 1 line lookups summarised apart")
    assert all(l.get("via") in (None, "dns") for l in summaries()), summaries()
