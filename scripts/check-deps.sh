#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# Checks, without installing anything, that the build can run: a C compiler, pkg-config
# and the pkg-config modules named as arguments. When something is missing it names the
# Debian packages that provide it and exits 1; `make` and `make install` stop there
# (they never run apt-get; scripts/deps.sh, which `make check`/`run`/... call, does).
# Usage: scripts/check-deps.sh CC MODULE... [LIB=DEBIAN-PACKAGE...]
# A LIB=PACKAGE argument names a library without a pkg-config file (e.g.
# http_parser=libhttp-parser-dev): a test link with -lLIB checks it.
cc="${1:-cc}"
[ $# -gt 0 ] && shift
missing=""     # Debian packages
unknown=""     # modules we have no package name for

# The Debian -dev package of a pkg-config module (empty: not known here).
deb_of() {
    case "$1" in
    libuv) echo libuv1-dev ;;
    jansson) echo libjansson-dev ;;
    sqlite3) echo libsqlite3-dev ;;
    libcrypto|libssl|openssl) echo libssl-dev ;;
    ldns|libldns) echo libldns-dev ;;
    libsystemd) echo libsystemd-dev ;;
    cmocka) echo libcmocka-dev ;;
    libcurl) echo libcurl4-openssl-dev ;;
    libllhttp|llhttp) echo libllhttp-dev ;;
    *) echo "" ;;
    esac
}

add() {
    case " $missing " in *" $1 "*) ;; *) missing="$missing $1" ;; esac
}

command -v "$cc" >/dev/null 2>&1 || add gcc
command -v make >/dev/null 2>&1 || add make
if ! command -v pkg-config >/dev/null 2>&1; then
    add pkg-config
    # Without pkg-config no module can be checked: name every one we know.
    for m in "$@"; do
        case "$m" in *=*) continue ;; esac
        d=$(deb_of "$m")
        if [ -n "$d" ]; then add "$d"; else unknown="$unknown $m"; fi
    done
else
    for m in "$@"; do
        case "$m" in *=*) continue ;; esac
        pkg-config --exists "$m" 2>/dev/null && continue
        d=$(deb_of "$m")
        if [ -n "$d" ]; then add "$d"; else unknown="$unknown $m"; fi
    done
fi

# Libraries without a pkg-config file: does a program link with -lLIB?
if command -v "$cc" >/dev/null 2>&1; then
    t=$(mktemp -d "${TMPDIR:-/tmp}/check-deps.XXXXXX")
    for a in "$@"; do
        case "$a" in *=*) ;; *) continue ;; esac
        printf 'int main(void) { return 0; }\n' > "$t/t.c"
        "$cc" -o "$t/t" "$t/t.c" "-l${a%%=*}" >/dev/null 2>&1 || add "${a#*=}"
    done
    rm -rf "$t"
fi

[ -z "$missing" ] && [ -z "$unknown" ] && exit 0
{
    echo "error: the build needs what this machine lacks."
    [ -n "$missing" ] && echo "  missing Debian packages:$missing"
    [ -n "$unknown" ] && echo "  missing pkg-config modules:$unknown (apt-file search MODULE.pc names the package)"
    [ -n "$missing" ] && echo "  install them with:  sudo apt-get install$missing"
    echo "  (make check, make run and make package install what they need by themselves)"
} >&2
exit 1
