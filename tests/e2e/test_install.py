# SPDX-License-Identifier: BSD-2-Clause
"""test_install.py -- issue 16: `make install DESTDIR=... PREFIX=/usr` lays out the tree a
package needs, the shared library exports exactly what the headers declare, and a C and
a C++ program built against the installed library with pkg-config find a service on the
installed registryd. `make uninstall` removes it all.

The install uses the build tree under test (REG_BUILD), so nothing is compiled again;
under SANITIZE=1 the test programs are built with the same sanitizers as the library."""

import os
import re
import shutil
import subprocess

from harness import BUILD, ROOT, Proc, Skip, register, scaled, wait_for

MULTIARCH = subprocess.run(["gcc", "-print-multiarch"], capture_output=True,
                           text=True).stdout.strip() or "x86_64-linux-gnu"
LIBDIR = "/usr/lib/" + MULTIARCH
HEADERS = ("registry_client.h", "registry_json.h", "registry_helper.h")
SANITIZED = b"__asan_init" in open(os.path.join(BUILD, "registryd"), "rb").read()
SANFLAGS = ["-fsanitize=address,undefined"] if SANITIZED else []

# Ten lines each: the one-call lookup, from C with an explicit address and from C++ with
# $REGISTRY_ADDR (addr NULL).
C_PROG = r"""#include <registry_client.h>
#include <stdio.h>
int main(int argc, char **argv) {
    char host[REGC_HOST_MAX]; int port; regc_error err = {REGC_OK, 0, "", ""};
    if (argc != 3 || regc_resolve(argv[1], argv[2], host, sizeof host, &port, 5000, &err) < 0) {
        fprintf(stderr, "lookup: %s (%s)\n", err.message, REGC_VERSION); return 1;
    }
    printf("%s:%d\n", host, port);
    return 0;
}
"""
CXX_PROG = r"""#include <registry_client.h>
#include <iostream>
#include <string>
int main(int argc, char **argv) {
    char host[REGC_HOST_MAX]; int port = 0; regc_error err{};
    if (argc != 2 || regc_resolve(nullptr, argv[1], host, sizeof host, &port, 5000, &err) < 0)
        return std::cerr << err.message << '\n', 1;
    std::cout << std::string(host) + ":" << port << '\n';
    return 0;
}
"""


def run(argv, env=None, timeout=60, cwd=None):
    """Runs argv to completion with a deadline; returns (rc, stdout + stderr)."""
    p = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd or ROOT,
                       timeout=scaled(timeout))
    return p.returncode, p.stdout + p.stderr


def make(h, goal, dest):
    """make GOAL DESTDIR=dest PREFIX=/usr on the build tree under test. The environment
    loses the outer make's MAKEFLAGS (its jobserver is not ours to use)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    argv = ["make", "--no-print-directory", "BUILD=" + BUILD, goal, "DESTDIR=" + dest,
            "PREFIX=/usr", "LIBDIR=" + LIBDIR]
    if SANITIZED:
        argv.append("SANITIZE=1")
    rc, out = run(argv, env=env)
    assert rc == 0, "make %s failed (%d):\n%s" % (goal, rc, out[-3000:])
    return out


def install(h):
    dest = h.path("root")
    make(h, "install", dest)
    return dest


def files_under(top):
    """Every file and symlink under top, as paths relative to it."""
    found = set()
    for d, _, names in os.walk(top):
        for n in names:
            found.add(os.path.relpath(os.path.join(d, n), top))
    return found


def header_functions(dest):
    """The functions the installed headers declare (comments stripped)."""
    names = set()
    for hd in HEADERS:
        with open(os.path.join(dest, "usr/include", hd)) as f:
            text = re.sub(r"/\*.*?\*/", "", f.read(), flags=re.S)
        names |= set(re.findall(r"\b(regc_\w+)\s*\(", text))
    return names


def test_install_layout_and_uninstall(h):
    dest = install(h)
    lib = LIBDIR.lstrip("/")
    want = {
        "usr/bin/regctl", "usr/sbin/registryd",
        "usr/lib/registry/tsserv", "usr/lib/registry/sleepserv",
        lib + "/libregclient.so.0.1.0", lib + "/libregclient.so.0", lib + "/libregclient.so",
        lib + "/libregclient.a", lib + "/pkgconfig/registry-client.pc",
    } | {"usr/include/" + hd for hd in HEADERS}
    # What other parts of the tree provide, when they are there.
    for src, dst in (("dist/registryd.service", "lib/systemd/system/registryd.service"),
                     ("dist/registryd.logrotate", "etc/logrotate.d/registryd"),
                     ("dist/registryd.default", "etc/default/registryd"),
                     ("dist/regctl.bash-completion",
                      "usr/share/bash-completion/completions/regctl")):
        if os.path.exists(os.path.join(ROOT, src)):
            want.add(dst)
    mandir = os.path.join(ROOT, "man")
    for m in sorted(os.listdir(mandir)) if os.path.isdir(mandir) else []:
        sec = m.rsplit(".", 1)[-1]
        if re.fullmatch(r"[1-8]", sec):
            want.add("usr/share/man/man%s/%s" % (sec, m))
    have = files_under(dest)
    assert want <= have, "missing from the install: %s" % sorted(want - have)
    assert not [f for f in have if f.startswith("usr/bin/") and f != "usr/bin/regctl"], sorted(have)

    for f in ("usr/bin/regctl", "usr/sbin/registryd", "usr/lib/registry/tsserv"):
        assert os.stat(os.path.join(dest, f)).st_mode & 0o777 == 0o755, f
    for f in ["usr/include/" + hd for hd in HEADERS] + [lib + "/libregclient.a"]:
        assert os.stat(os.path.join(dest, f)).st_mode & 0o777 == 0o644, f
    assert os.readlink(os.path.join(dest, lib, "libregclient.so.0")) == "libregclient.so.0.1.0"
    assert os.path.realpath(os.path.join(dest, lib, "libregclient.so")) == \
        os.path.realpath(os.path.join(dest, lib, "libregclient.so.0.1.0"))
    unit = os.path.join(dest, "lib/systemd/system/registryd.service")
    if os.path.exists(unit):
        with open(unit) as f:
            assert "ExecStart=/usr/sbin/registryd" in f.read(), "unit does not start /usr/sbin/registryd"

    so = os.path.join(dest, lib, "libregclient.so.0.1.0")
    rc, out = run(["readelf", "-d", so])
    assert rc == 0 and "Library soname: [libregclient.so.0]" in out, out
    rc, out = run(["nm", "-D", "--defined-only", so])
    assert rc == 0, out
    exported = set(re.findall(r"\b(regc_\w+)@", out))
    declared = header_functions(dest)
    assert exported == declared, ("exports and headers differ: only exported %s, only declared %s "
                                  "(client/libregclient.map lists the exports)"
                                  % (sorted(exported - declared), sorted(declared - exported)))
    assert not re.search(r" T (?!regc_)\w", out), "non-regc_ symbols exported:\n%s" % out

    # The lookup-only header pulls in neither libuv nor jansson.
    src = h.path("only.c")
    with open(src, "w") as f:
        f.write("#include <registry_client.h>\nint main(void) { return regc_valid_service(\"a\") ? 0 : 1; }\n")
    rc, out = run(["cc", "-H", "-fsyntax-only", "-I", os.path.join(dest, "usr/include"), src])
    assert rc == 0, out
    assert not re.search(r"\b(uv|jansson)\.h\b", out), "registry_client.h includes:\n%s" % out

    make(h, "uninstall", dest)
    left = files_under(dest)
    assert not left, "left behind by make uninstall: %s" % sorted(left)


def test_c_and_cxx_programs_against_installed_library(h):
    if not shutil.which("g++"):
        raise Skip("g++ not installed (make check installs it)")
    dest = install(h)
    env = dict(os.environ, PKG_CONFIG_SYSROOT_DIR=dest,
               PKG_CONFIG_PATH=os.path.join(dest, LIBDIR.lstrip("/"), "pkgconfig"))
    env.pop("REGISTRY_ADDR", None)
    rc, flags = run(["pkg-config", "--cflags", "--libs", "registry-client"], env=env)
    assert rc == 0, flags
    flags = flags.split()
    assert "-I%s/usr/include" % dest in flags and "-lregclient" in flags, flags
    assert "-luv" not in flags and "-ljansson" not in flags, "lookups need -lregclient only: %s" % flags
    rc, modversion = run(["pkg-config", "--modversion", "registry-client"], env=env)
    with open(os.path.join(dest, "usr/include/registry_client.h")) as f:
        header_version = re.search(r'#define REGC_VERSION\s+"([^"]+)"', f.read()).group(1)
    assert modversion.strip() == header_version, (modversion, header_version)

    progs = []
    for name, compiler, std, text in (("lookup_c", "cc", "-std=c99", C_PROG),
                                       ("lookup_cxx", "g++", "-std=c++11", CXX_PROG)):
        src = h.path(name + (".c" if compiler == "cc" else ".cc"))
        with open(src, "w") as f:
            f.write(text)
        exe = h.path(name)
        rc, out = run([compiler, std, "-Wall", "-Wextra", "-Werror", "-o", exe, src] + SANFLAGS + flags,
                      env=env)
        assert rc == 0, "%s failed:\n%s" % (compiler, out)
        progs.append(exe)
    run_env = dict(env, LD_LIBRARY_PATH=os.path.join(dest, LIBDIR.lstrip("/")))
    rc, out = run([progs[0]], env=dict(run_env, LD_TRACE_LOADED_OBJECTS="1"))
    assert os.path.join(dest, LIBDIR.lstrip("/"), "libregclient.so.0") in out, \
        "not linked against the installed library:\n%s" % out

    # The installed daemon, an installed sample service, and one more instance.
    reg = h.registry(exe=os.path.join(dest, "usr/sbin/registryd"))
    rc, out = run([os.path.join(dest, "usr/sbin/registryd"), "--version"])
    assert rc == 0 and header_version in out, out
    ts = Proc(h, "tsserv", [os.path.join(dest, "usr/lib/registry/tsserv"), "--registry", reg.addr,
                            "--listen", "127.0.0.1:0"], "service")
    ts_host, ts_port = ts.wait_listening()
    web = h.listener()
    conn = reg.conn()
    register(conn, "web", web.getsockname()[1])

    rc, out = run([progs[0], reg.addr, "web"], env=run_env, timeout=15)
    assert rc == 0 and out == "127.0.0.1:%d\n" % web.getsockname()[1], (rc, out)
    rc, out = run([progs[1], "web"], env=dict(run_env, REGISTRY_ADDR=reg.addr), timeout=15)
    assert rc == 0 and out == "127.0.0.1:%d\n" % web.getsockname()[1], (rc, out)
    rc, out = run([progs[0], reg.addr, "nosuch"], env=run_env, timeout=15)
    assert rc == 1 and "nosuch" in out, (rc, out)
    # tsserv registers itself at start, through the helper, a moment after it listens.
    ts_env = dict(run_env, REGISTRY_ADDR=reg.addr)

    def resolved():
        rc, out = run([progs[1], "timestamp"], env=ts_env)
        return out if rc == 0 else None
    found = wait_for(resolved, 5, "tsserv registered at %s" % reg.addr)
    assert found == "%s:%d\n" % (ts_host, ts_port), found

    rc, out = run([os.path.join(dest, "usr/bin/regctl"), "--registry", reg.addr, "lookup", "web"])
    assert rc == 0 and out.strip() == "127.0.0.1:%d" % web.getsockname()[1], (rc, out)
