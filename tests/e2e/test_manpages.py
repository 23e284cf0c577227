# SPDX-License-Identifier: BSD-2-Clause
"""test_manpages.py -- the manual pages in man/: mandoc -Tlint clean, and in step with
the programs (every long flag of `registryd --help` is in registryd.8, every command
and option of `regctl --help` and `regctl COMMAND --help` is in regctl.1)."""

import os
import re
import shutil
import subprocess

from harness import ROOT, Skip, scaled

MAN = os.path.join(ROOT, "man")
PAGES = ["registryd.8", "regctl.1", "registry-client.3", "registry-protocol.7"]


def page(name):
    with open(os.path.join(MAN, name)) as f:
        return f.read()


def long_flags(text):
    return sorted(set(re.findall(r"(?<![\w-])--([a-z][a-z0-9-]*)", text)))


def documented(man, flag):
    """Is --flag in the page as an mdoc flag (Fl -flag, not a prefix of a longer one)?"""
    return re.search(r"\bFl -%s(?![a-z0-9-])" % re.escape(flag), man) is not None


def test_pages_lint_clean(h):
    if not shutil.which("mandoc"):
        raise Skip("no mandoc (make check installs it)")
    for name in PAGES:
        path = os.path.join(MAN, name)
        assert os.path.exists(path), "missing man page %s" % path
        with open(path) as f:
            assert f.readline().startswith('.\\" SPDX-License-Identifier:'), \
                "%s: the first line should be the SPDX line" % name
        r = subprocess.run(["mandoc", "-Tlint", "-Wwarning", path], capture_output=True,
                           text=True, timeout=scaled(30))
        out = (r.stdout + r.stderr).strip()
        assert not out, "mandoc -Tlint -Wwarning %s:\n%s" % (name, out)


def test_registryd_flags_documented(h):
    r = h.run("registryd", "--help")
    assert r.rc == 0, r
    flags = long_flags(r.out)
    assert "listen" in flags and "config" in flags, flags
    man = page("registryd.8")
    missing = [f for f in flags if not documented(man, f)]
    assert not missing, "flags of registryd --help missing from man/registryd.8: %s" % missing
    assert "man registryd" in r.out.strip().splitlines()[-1], \
        "registryd --help should end by pointing at man registryd: %r" % r.out[-200:]
    # And the other way: the page documents no flag the program lacks.
    extra = [f for f in re.findall(r"\bFl -([a-z][a-z0-9-]*)", man) if f not in flags]
    assert not extra, "man/registryd.8 documents flags registryd --help lacks: %s" % extra


def test_regctl_commands_documented(h):
    r = h.run("regctl", "--help")
    assert r.rc == 0, r
    m = re.search(r"^Commands:\n(.*?)\n\n", r.out, re.S | re.M)
    assert m, "no Commands: section in regctl --help: %r" % r.out
    commands = [l.split()[0] for l in m.group(1).splitlines() if re.match(r"^  \S", l)]
    assert "lookup" in commands and "watch" in commands, commands
    man = page("regctl.1")
    missing = [c for c in commands
               if not re.search(r"^\.It (?:Cm|Xo\n\.Cm) %s\b" % re.escape(c), man, re.M)]
    assert not missing, "regctl commands missing from man/regctl.1: %s" % missing
    flags = set(long_flags(r.out))
    for c in commands:
        rc = h.run("regctl", "help", c)
        assert rc.rc == 0, (c, rc)
        flags |= set(long_flags(rc.out))
    missing = [f for f in sorted(flags) if not documented(man, f)]
    assert not missing, "regctl options missing from man/regctl.1: %s" % missing
