# SPDX-License-Identifier: BSD-2-Clause
"""test_config.py -- registryd --config FILE: the long flags' settings, one `name value`
a line; the command line wins whatever the order; a bad line is exit 2 naming
FILE:LINE."""

import json
import os
import re

from harness import ok, register, wait_for


def write(h, name, text):
    path = h.path(name)
    with open(path, "w") as f:
        f.write(text)
    return path


def one_line(err):
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, "expected exactly one line on stderr, got %r" % err
    return lines[0]


def start_event(reg):
    def find():
        with open(reg.log) as f:
            for line in f:
                e = json.loads(line)
                if e.get("event") == "start":
                    return e
        return None
    return wait_for(find, 5, "the start event in the log")


def test_settings_from_file_apply(h):
    conf = write(h, "registryd.conf",
                 "# registryd settings\n"
                 "\n"
                 "   # an indented comment\n"
                 "dns 127.0.0.1:0\n"
                 "http 127.0.0.1:0\n"
                 "dns-domain example.test   \n"
                 "log-lookups\n"
                 "auth-lookups no\n"
                 "cache-size\t100\r\n")
    reg = h.registry("--config", conf)
    assert reg.dns_port, "dns from the file should serve DNS: %r" % reg.stdout()
    assert "http on http://127.0.0.1:" in reg.stdout(), \
        "http from the file (a flag added after --config) should serve HTTP: %r" % reg.stdout()
    c = reg.conn()
    register(c, "web", 8080)
    ok(c.request({"op": "lookup", "service": "web"}))

    def logged_lookup():
        with open(reg.log) as f:
            return any(json.loads(l).get("event") == "lookup" for l in f)
    wait_for(logged_lookup, 5, "a lookup line of its own (log-lookups from the file)")


def test_command_line_wins(h):
    """The file names a database and log that cannot be opened; the command line's (the
    harness passes --db and --log before --config) win, and so does a flag after it."""
    conf = write(h, "registryd.conf",
                 "db %s\n"
                 "log %s\n"
                 "max-conns 1\n" % (h.path("no/such/dir/r.db"), h.path("no/such/dir/r.log")))
    reg = h.registry("--config", conf, "--max-conns", "5")
    assert start_event(reg)["db"] == reg.db
    cs = [reg.conn() for _ in range(3)]
    for c in cs:
        ok(c.request({"op": "ping"}), "a connection past the file's max-conns 1")


def test_flag_without_value_yes(h):
    conf = write(h, "a.conf", "auth-lookups yes\n")
    r = h.run("registryd", "--db", h.path("r.db"), "--config", conf)
    assert r.rc == 2 and "--auth-lookups needs --auth-token-file" in one_line(r.err), r


def test_unknown_setting_exit_2(h):
    conf = write(h, "bad.conf", "# ok so far\nlisten 127.0.0.1:0\n\nfoo bar\n")
    r = h.run("registryd", "--db", h.path("r.db"), "--config", conf)
    assert r.rc == 2, r
    assert one_line(r.err) == 'registryd: %s:4: unknown setting "foo"' % conf, r
    assert "listening on" not in r.out
    for text, line in (("help\n", 1), ("\nconfig other.conf\n", 2), ("--db x\n", 1)):
        conf = write(h, "bad.conf", text)
        r = h.run("registryd", "--config", conf)
        assert r.rc == 2, r
        assert one_line(r.err).startswith("registryd: %s:%d: unknown setting" % (conf, line)), r


def test_bad_value_exit_2(h):
    for text, line, says in (("max-conns 10\nmax-conns lots\n", 2, '"lots"'),
                             ("sync sometimes\n", 1, "sometimes"),
                             ("log-lookups maybe\n", 1, "maybe"),
                             ("\n\n\nlisten\n", 4, "needs a value")):
        conf = write(h, "bad.conf", text)
        r = h.run("registryd", "--db", h.path("r.db"), "--config", conf)
        assert r.rc == 2, r
        msg = one_line(r.err)
        assert msg.startswith("registryd: %s:%d: " % (conf, line)) and says in msg, (text, r)
        assert not os.path.exists(h.path("r.db")), "a usage error must not touch the db"


def test_missing_file(h):
    path = h.path("nope.conf")
    r = h.run("registryd", "--db", h.path("r.db"), "--config", path)
    assert r.rc == 2, r
    msg = one_line(r.err)
    assert path in msg and "No such file" in msg, r


def test_every_flag_is_a_setting(h):
    """The file is read through the flags' own table: every long flag of --help (those
    added later included) is a setting name, never an unknown one."""
    r = h.run("registryd", "--help")
    names = sorted(set(re.findall(r"^\s+--([a-z][a-z0-9-]*)", r.out, re.M)) -
                   {"help", "version", "config"})
    assert "listen" in names and "dns-ttl" in names, names
    for name in names:
        conf = write(h, "one.conf", "%s\n" % name)
        # A bad --listen on the command line stops a flag without a value from starting
        # a daemon; a flag with one stops at "needs a value" first.
        r = h.run("registryd", "--db", h.path("r.db"), "--config", conf, "--listen", "bad")
        assert r.rc == 2, (name, r)
        msg = one_line(r.err)
        assert "unknown setting" not in msg, (name, msg)
        assert ("%s:1: %s needs a value" % (conf, name)) in msg or "--listen" in msg, (name, msg)
