#!/usr/bin/env bash
# The deb_consumer test: makes the .deb packages of a build tree with `cpack -G DEB`, checks
# each one's name, version, files and dependencies, unpacks them all (dpkg -x) into a scratch
# root, and builds and runs tests/install/main.c against that root with find_package(rill) and
# with pkg-config (run.sh --prefix). Nothing is installed on the machine; everything it writes
# is under BUILD/deb-test. Every step is bounded in time.
#
# Usage: deb.sh --build DIR [--cc COMPILER] [--man DIR]   (DIR: man pages expected in the
#        packages, default the source tree's man/: man1/*.1 in rill-tools, man3/*.3 in librill-dev)
# Exit: 0 passed, 1 failed, 77 skipped (no dpkg-deb, or no dpkg-shlibdeps or file for cpack to
# compute the dependencies with; the message says which).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build="" cc="${CC:-cc}" man="$here/../../man"
while [ $# -gt 0 ]; do
    case "$1" in
        --build) build=$2; shift 2 ;;
        --cc) cc=$2; shift 2 ;;
        --man) man=$2; shift 2 ;;
        *) echo "deb.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -n "$build" ] || { echo "usage: deb.sh --build DIR [--cc CC]" >&2; exit 2; }
build=$(cd "$build" && pwd)

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
step() { printf '\n== %s\n' "$*"; }

command -v dpkg-deb >/dev/null 2>&1 || skip "dpkg-deb is not installed (Debian's dpkg), so no .deb can be made"
command -v dpkg-shlibdeps >/dev/null 2>&1 ||
    skip "dpkg-shlibdeps is not installed (apt-get install dpkg-dev): cpack needs it to compute the dependencies"
command -v file >/dev/null 2>&1 ||
    skip "file is not installed (apt-get install file): cpack needs it to find the ELF files"
command -v cpack >/dev/null 2>&1 || skip "cpack is not on PATH"
[ -f "$build/CPackConfig.cmake" ] || fail "$build/CPackConfig.cmake missing: not a configured rill build"

out="$build/deb-test"
rm -rf "$out"
mkdir -p "$out/debs" "$out/root"

step "cpack -G DEB into $out/debs"
timeout 300 cpack -G DEB --config "$build/CPackConfig.cmake" -B "$out/debs" >"$out/cpack.log" 2>&1 ||
    { cat "$out/cpack.log"; fail "cpack -G DEB failed"; }
shopt -s nullglob
debs=("$out/debs"/*.deb)
[ ${#debs[@]} -eq 3 ] || { ls -l "$out/debs"; fail "expected 3 .deb files, found ${#debs[@]}"; }
ls -l "${debs[@]}"

# The version every package must carry: the one in rill.h, which rill_version() returns; the
# consumer below checks that rill_version() agrees with rill.h, and that it prints this.
version=$(sed -n 's/^#define RILL_VERSION_STRING "\(.*\)"$/\1/p' "$here/../../include/rill.h")
[ -n "$version" ] || fail "no RILL_VERSION_STRING in include/rill.h"
major=${version%%.*}
arch=$(dpkg --print-architecture) || fail "dpkg --print-architecture failed"

field() { dpkg-deb -f "$1" "$2"; }

# check_deb NAME FILE...: NAME_VERSION_ARCH.deb exists, says Package NAME and Version $version,
# and holds each FILE (a path under /usr).
check_deb() {
    local name=$1 deb
    shift
    deb="$out/debs/${name}_${version}_${arch}.deb"
    [ -f "$deb" ] || fail "$deb was not made"
    [ "$(field "$deb" Package)" = "$name" ] || fail "$deb: Package is $(field "$deb" Package)"
    [ "$(field "$deb" Version)" = "$version" ] ||
        fail "$deb: Version $(field "$deb" Version), but rill_version() is $version"
    dpkg-deb -c "$deb" | awk '{ print $6 }' | sed 's|^\./|/|' >"$out/$name.files"
    local f
    for f in "$@"; do
        grep -qxF -- "$f" "$out/$name.files" || fail "$deb lacks $f (it holds: $(tr '\n' ' ' <"$out/$name.files"))"
    done
    printf '%s: Version %s, Depends: %s\n' "$name" "$(field "$deb" Version)" "$(field "$deb" Depends)"
}

step "package contents and fields"
check_deb "librill$major" "/usr/lib/librill.so.$major" "/usr/lib/librill.so.$version"
check_deb librill-dev /usr/include/rill.h /usr/lib/librill.so /usr/lib/librill.a \
    /usr/lib/pkgconfig/rill.pc /usr/lib/cmake/rill/rillConfig.cmake \
    /usr/lib/cmake/rill/rillConfigVersion.cmake /usr/lib/cmake/rill/rillTargets.cmake
tools=(/usr/bin/rill-echo /usr/bin/rill-load /usr/bin/rill-probe /usr/bin/rill-http)
check_deb rill-tools "${tools[@]}"

# Each file in exactly one package; the runtime holds nothing a program is built with.
sort "$out"/*.files | grep -v '/$' | uniq -d >"$out/dups"
[ ! -s "$out/dups" ] || fail "files in more than one package: $(tr '\n' ' ' <"$out/dups")"
! grep -Eq '\.(h|a|pc|cmake)$|/librill\.so$' "$out/librill$major.files" ||
    fail "librill$major holds development files"
# Man pages go with their section: 3 to -dev, 1 to the tools, compressed; each page of the
# --man directory's man1 and man3 (the source tree's man/; when there are any) in its package.
! grep -q '/man1/' "$out/librill-dev.files" "$out/librill$major.files" || fail "man 1 pages outside rill-tools"
! grep -q '/man3/' "$out/rill-tools.files" "$out/librill$major.files" || fail "man 3 pages outside librill-dev"
for page in "$man"/man1/*.1 "$man"/man3/*.3; do
    sec=${page##*.}
    pkg=rill-tools
    [ "$sec" = 3 ] && pkg=librill-dev
    grep -qxF "/usr/share/man/man$sec/$(basename "$page").gz" "$out/$pkg.files" ||
        fail "man page $(basename "$page") is not in $pkg (as /usr/share/man/man$sec/$(basename "$page").gz)"
done

# Dependencies: computed by dpkg-shlibdeps (libc6 for every ELF file), the -dev package on the
# runtime of the same version.
for name in "librill$major" rill-tools; do
    field "$out/debs/${name}_${version}_${arch}.deb" Depends | grep -q 'libc6 (>=' ||
        fail "$name: no computed dependency on libc6"
done
field "$out/debs/librill-dev_${version}_${arch}.deb" Depends | grep -qF "librill$major (= $version)" ||
    fail "librill-dev does not depend on librill$major (= $version)"
# The shlibs file, so packages built against librill depend on it in turn.
dpkg-deb --ctrl-tarfile "$out/debs/librill${major}_${version}_${arch}.deb" | tar -xO ./shlibs |
    grep -qx "librill $major librill$major (= $version)" || fail "librill$major: no shlibs entry"

step "dpkg -x every package into $out/root"
for deb in "${debs[@]}"; do
    dpkg -x "$deb" "$out/root"
done
for t in "${tools[@]}"; do
    [ -x "$out/root$t" ] || fail "$t is not an executable in the unpacked root"
done
timeout 10 "$out/root/usr/bin/rill-load" --help >/dev/null || fail "the packaged rill-load --help failed"

step "consumers against the unpacked packages (find_package and pkg-config)"
timeout 240 bash "$here/run.sh" --build "$build" --prefix "$out/root/usr" --work "$out/consumer" \
    --cc "$cc" | tee "$out/consumer.log"
grep -qx "rill $version: loop created and destroyed" "$out/consumer.log" ||
    fail "the consumer's rill_version() is not the packages' version $version"

step "deb_consumer: OK (packages in $out/debs)"
