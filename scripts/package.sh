#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# scripts/package.sh OUTDIR -- what `make package` runs (after installing dpkg-dev,
# debhelper, fakeroot and lintian): builds the Debian packages from debian/ in a temp copy
# of the tree (the tree itself gets no debian/tmp, no ../*.deb), runs lintian on them
# (an error fails, warnings are counted), then unpacks every .deb into a throw-away root
# and runs the programs from there. The .debs, the .changes, the build log and
# lintian's report are left in OUTDIR.
set -eu
out=$1
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/registry-package.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
t0=$(date +%s)

say() { printf 'package: %s\n' "$*"; }
fail() { printf 'package: FAILED: %s\n' "$*" >&2; exit 1; }

case "$out" in /*) ;; *) out="$root/$out" ;; esac
rm -rf "$out"
mkdir -p "$out"
ver=$(dpkg-parsechangelog -l "$root/debian/changelog" -S Version)
arch=$(dpkg-architecture -qDEB_HOST_ARCH)

# The copy: every file git tracks or would track (so uncommitted work is packaged too),
# none it ignores (build trees, databases). Outside git (an unpacked tarball): every
# file but build trees, databases and the in-tree copies of the programs.
src="$tmp/registry-$ver"
mkdir "$src"
list_files() {
    if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git -C "$root" ls-files -co --exclude-standard
    else
        (cd "$root" && find . \( -path './build*' -o -path './debian/build' -o -path './debian/tmp' \
            -o -name '*.db' -o -name '*.db-*' -o -name '__pycache__' -o -name '*.o' \) -prune \
            -o \( -type f -o -type l \) -print | sed 's|^\./||' |
            grep -v -x -e registry/registryd -e client/regctl -e services/tsserv \
                -e services/sleepserv -e tests/bench/regbench)
    fi
}
list_files | while IFS= read -r f; do
    [ -e "$root/$f" ] || [ -L "$root/$f" ] || continue    # deleted, not yet committed
    printf '%s\n' "$f"
done > "$tmp/files"
tar -C "$root" -cf - -T "$tmp/files" | tar -C "$src" -xf -
say "building $ver for $arch in a copy of the tree ($(wc -l < "$tmp/files") files)"

# Build-Depends this machine lacks (debian/control may name more than scripts/deps.sh).
need=$(cd "$src" && dpkg-checkbuilddeps 2>&1 | sed -n 's/.*Unmet build dependencies: //p' |
       sed -e 's/([^)]*)//g' -e 's/|[^,]*//g' -e 's/,/ /g')
[ -z "$need" ] || sh "$root/scripts/deps.sh" $need

if ! (cd "$src" && dpkg-buildpackage -us -uc -b -j"$(nproc)") > "$out/build.log" 2>&1; then
    tail -n 40 "$out/build.log" >&2
    fail "dpkg-buildpackage (full log: $out/build.log)"
fi
cp "$tmp"/*.deb "$tmp"/*.changes "$tmp"/*.buildinfo "$out/"
changes=$(ls "$out"/*.changes)
say "built: $(cd "$out" && ls *.deb | tr '\n' ' ')"

# lintian: an error fails; the report stays in OUTDIR.
lrc=0
lintian --fail-on error --display-info "$changes" > "$out/lintian.txt" 2>&1 || lrc=$?
cat "$out/lintian.txt"
errors=$(grep -c '^E: ' "$out/lintian.txt" || true)
warnings=$(grep -c '^W: ' "$out/lintian.txt" || true)
infos=$(grep -c '^I: ' "$out/lintian.txt" || true)
say "lintian: $errors errors, $warnings warnings, $infos info"
[ "$lrc" -eq 0 ] || fail "lintian exit $lrc"

# The packages' programs run from an unpacked root (no maintainer scripts, no root).
r="$tmp/root"
mkdir "$r"
for d in "$out"/*.deb; do dpkg-deb -x "$d" "$r"; done
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
for f in usr/sbin/registryd usr/bin/regctl usr/lib/registry/tsserv usr/lib/registry/sleepserv \
         "usr/lib/$multiarch/libregclient.so.0" usr/include/registry_client.h \
         "usr/lib/$multiarch/pkgconfig/registry-client.pc"; do
    [ -e "$r/$f" ] || fail "$f is in no package"
done
v=$("$r/usr/sbin/registryd" --version) || fail "registryd --version"
say "registryd --version: $v"
"$r/usr/bin/regctl" --help > "$tmp/help" 2>&1 || fail "regctl --help"
say "regctl --help: $(head -n 1 "$tmp/help")"
say "ok in $(( $(date +%s) - t0 )) s; packages and lintian.txt in $out"
