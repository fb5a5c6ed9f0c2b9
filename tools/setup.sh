#!/usr/bin/env bash
# Sets up a Debian machine for rill and builds it.
#
#   bash tools/setup.sh deps    install the build and test packages that are missing
#   bash tools/setup.sh test    deps, then configure (ci preset: Release + -Werror), build, ctest
#   bash tools/setup.sh demo    deps, then a release build, then tools/demo.sh
#   bash tools/setup.sh build [PRESET]   deps, then configure + build PRESET (default: release)
#
# Packages are installed only when dpkg says they are missing, with apt-get as root (or sudo).
set -euo pipefail

self="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
cd "$(dirname "$self")/.."

PACKAGES=(
    build-essential cmake pkg-config   # toolchain
    liburing-dev                       # io_uring backend (the epoll backend needs nothing)
    libc-ares-dev                      # asynchronous name resolution (librill links c-ares)
    libjemalloc-dev                    # allocator of the tools and benchmarks
    libjansson-dev                     # rill-load: --json output and merge input
    dpkg-dev file                      # cpack -G DEB: dpkg-shlibdeps computes the dependencies
    libcriterion-dev                   # tests
    libbenchmark-dev                   # bench/micro
    clang libclang-rt-dev              # libFuzzer targets (the fuzz preset)
    libuv1-dev libevent-dev            # bench/peers: the libuv and libevent echo peers
    nginx wrk                          # bench/peers: the HTTP peer and its load generator
    gnuplot-nox                        # bench/macro/report.py: the PNG plots
    groff-base man-db                  # tests/check_man.py renders man/, install_consumer runs man -w
    python3                            # tests/check_man.py, bench/macro/report.py and hostile.py
)

jobs=$(nproc 2>/dev/null || echo 2)

missing_packages() {
    local p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
    done
}

install_deps() {
    local missing
    missing=$(missing_packages | tr '\n' ' ')
    if [ -z "${missing// /}" ]; then
        echo "setup: all packages present"
        return 0
    fi
    echo "setup: installing $missing"
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo=(sudo)
        else
            echo "setup: not root and no sudo; install these packages first: $missing" >&2
            return 1
        fi
    fi
    # shellcheck disable=SC2086 # one word per package
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing
}

build_preset() {
    local preset=$1
    shift
    cmake --preset "$preset" "$@"
    cmake --build --preset "$preset" -j "$jobs"
}

case "${1:-}" in
    deps)
        install_deps
        ;;
    test)
        install_deps
        build_preset ci
        ctest --preset ci --output-on-failure
        ;;
    build)
        install_deps
        build_preset "${2:-release}"
        ;;
    demo)
        install_deps
        build_preset release
        if [ -f tools/demo.sh ]; then
            bash tools/demo.sh
        else
            echo "setup: tools/demo.sh does not exist yet; the release build is in build/release"
        fi
        ;;
    *)
        sed -n '2,9p' "$self" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
esac
