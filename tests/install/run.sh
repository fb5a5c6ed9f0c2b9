#!/usr/bin/env bash
# The install_consumer test: installs a rill build tree into a scratch prefix, then builds
# tests/install/main.c against that prefix twice, as an embedder would,
#   1. with CMake: find_package(rill) -> rill::rill (shared) and rill::rill_static;
#   2. with pkg-config: cc main.c $(pkg-config --cflags --libs rill);
# and runs every program built; then checks that man -w finds the installed man pages. Nothing
# outside the build tree is touched.
# With --prefix DIR it installs nothing and builds against DIR instead, in --work DIR (deb.sh:
# the packages unpacked into a scratch root).
#
# Usage: run.sh --build DIR [--prefix DIR --work DIR] [--config CFG] [--cc COMPILER]
#               [--flags "SANITIZER FLAGS"]
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build="" prefix="" work="" config="" cc="${CC:-cc}" flags=""
while [ $# -gt 0 ]; do
    case "$1" in
        --build) build=$2; shift 2 ;;
        --prefix) prefix=$2; shift 2 ;;
        --work) work=$2; shift 2 ;;
        --config) config=$2; shift 2 ;;
        --cc) cc=$2; shift 2 ;;
        --flags) flags=$2; shift 2 ;;
        *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -n "$build" ] || { echo "usage: run.sh --build DIR [--config CFG] [--cc CC] [--flags F]" >&2; exit 2; }
build=$(cd "$build" && pwd)

step() { printf '\n== %s\n' "$*"; }

if [ -n "$prefix" ]; then
    prefix=$(cd "$prefix" && pwd)
    work=${work:-$build/install-consumer-prefix}
    rm -rf "$work"
    mkdir -p "$work"
else
    prefix="$build/install-test"
    work="$build/install-consumer"
    rm -rf "$prefix" "$work"
    mkdir -p "$work"
    step "install into $prefix"
    cmake --install "$build" --prefix "$prefix" ${config:+--config "$config"} >"$work/install.log"
fi
[ -f "$prefix/include/rill.h" ] || { echo "rill.h not installed in $prefix/include" >&2; exit 1; }
libdir=$(dirname "$(find "$prefix" -name 'librill.so' -print -quit)")
[ -f "$libdir/librill.a" ] || { echo "librill.a not installed next to librill.so" >&2; exit 1; }
[ -f "$libdir/pkgconfig/rill.pc" ] || { echo "rill.pc not installed" >&2; exit 1; }
[ -f "$libdir/cmake/rill/rillConfig.cmake" ] || { echo "rillConfig.cmake not installed" >&2; exit 1; }
ls -l "$libdir"/librill*

step "find_package(rill): configure and build tests/install"
cmake -S "$here" -B "$work/cmake" \
    -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_C_COMPILER="$cc" \
    -DCMAKE_BUILD_TYPE="${config:-Release}" \
    -DCMAKE_C_FLAGS="$flags" \
    -DCMAKE_EXE_LINKER_FLAGS="$flags" >"$work/configure.log" ||
    { cat "$work/configure.log"; exit 1; }
cmake --build "$work/cmake" >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }

step "run the CMake-built consumers"
"$work/cmake/consumer_shared"
"$work/cmake/consumer_static"
# The shared consumer must use the library just installed, not one found elsewhere.
ldd "$work/cmake/consumer_shared" | grep -F "$libdir/librill.so" ||
    { echo "consumer_shared does not load $libdir/librill.so" >&2; ldd "$work/cmake/consumer_shared"; exit 1; }

step "pkg-config: compile and run"
export PKG_CONFIG_PATH="$libdir/pkgconfig"
pkg-config --print-errors --exists rill
echo "pkg-config --cflags --libs rill: $(pkg-config --cflags --libs rill)"
pc_libdir=$(pkg-config --variable=libdir rill)
# shellcheck disable=SC2046,SC2086 # the flags are meant to split into words
"$cc" $flags -o "$work/consumer_pc" "$here/main.c" $(pkg-config --cflags --libs rill) \
    -Wl,-rpath,"$pc_libdir"
"$work/consumer_pc"

# The man pages: man -w finds one for every RILL_API function of the installed header, and one
# for every tool installed.
step "man pages: MANPATH=$prefix/share/man man -w"
if command -v man >/dev/null 2>&1; then
    names=$(grep -o 'RILL_API[^(]*(' "$prefix/include/rill.h" | sed 's/.*[ *]\([a-z_0-9]*\)($/\1/' | grep '^rill_')
    [ "$(echo "$names" | wc -l)" -gt 50 ] || { echo "few RILL_API names found: $names" >&2; exit 1; }
    for tool in rill-echo rill-http rill-load rill-probe; do
        [ -x "$prefix/bin/$tool" ] && names="$names $tool"
    done
    missing=""
    for f in $names; do
        page=$(MANPATH="$prefix/share/man" man -w "$f" 2>/dev/null) || page=""
        case "$page" in "$prefix"/share/man/*) ;; *) missing="$missing $f" ;; esac
    done
    [ -z "$missing" ] || { echo "no installed man page for:$missing" >&2; exit 1; }
    echo "$(echo $names | wc -w) pages found"
else
    echo "man not installed (apt-get install man-db): not checked"
fi

step "install_consumer: OK"
