#!/usr/bin/env bash
# Install the Debian packages gptqd builds and runs against.
#
#   deploy/install-deps.sh            install what is missing (no apt at all when nothing is)
#   deploy/install-deps.sh --force    apt-get update and reinstall every package
#
# Runs as root, or through sudo when it is not root and sudo exists.
set -euo pipefail

PACKAGES=(
    build-essential
    pkg-config
    ca-certificates
    libmicrohttpd-dev
    libcurl4-openssl-dev
    libopenblas-dev
    liblapacke-dev
    libcjson-dev
    libsqlite3-dev
    libssl-dev
    libpcre2-dev
    libutf8proc-dev
    # make demo: deploy/demo.sh drives the REST API with curl and reads its JSON with jq
    curl
    jq
    # ops and test: the sqlite3 shell (backups in deploy/README.md; tests/demo_test.sh reads the job back)
    sqlite3
    # test-only: the libFuzzer targets in tests/fuzz (run by make test / CI)
    clang
    libclang-rt-14-dev
    # test-only: the browser for the dashboard test (tests/web_dashboard.sh, via npm playwright-core)
    chromium
    # test-only: systemd-analyze, for deploy/check-unit.sh (verifies deploy/gptqd.service)
    systemd
)

force=0
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        -h|--help)
            sed -n '2,7s/^# \{0,1\}//p' "$0"
            exit 0
            ;;
        *)
            echo "install-deps: unknown argument '$arg' (try --help)" >&2
            exit 2
            ;;
    esac
done

# A package counts as present only when dpkg says "install ok installed";
# half-configured or removed-with-config packages are reinstalled.
missing=()
for p in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing+=("$p")
done

if [ "$force" -eq 0 ] && [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all ${#PACKAGES[@]} packages already installed, skipping apt (--force reinstalls)"
    exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        echo "install-deps: not root and sudo is not available; run this script as root" >&2
        exit 1
    fi
fi

apt_install=(env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends)
if [ "$force" -eq 1 ]; then
    echo "install-deps: --force: reinstalling ${PACKAGES[*]}"
    targets=("${PACKAGES[@]}")
    apt_install+=(--reinstall)
else
    echo "install-deps: missing: ${missing[*]}"
    targets=("${missing[@]}")
fi

echo "install-deps: ${SUDO[*]:+${SUDO[*]} }apt-get update"
"${SUDO[@]}" apt-get update
echo "install-deps: ${SUDO[*]:+${SUDO[*]} }${apt_install[*]} ${targets[*]}"
"${SUDO[@]}" "${apt_install[@]}" "${targets[@]}"
echo "install-deps: done"
