#!/usr/bin/env bash
# execbox set-up and entry point. Each command installs whatever is missing first:
#
#   ./run.sh serve [FLAGS]   set up, then run the server in the foreground (embedded defaults)
#   ./run.sh test  [ARGS]    set up, then run the whole test suite (pytest ARGS)
#   ./run.sh bench [ARGS]    set up, then run the sandbox benchmark
#   ./run.sh setup           set up only
#
# What set-up does (every step is skipped when already done, so a second run is quick):
#   1. Debian packages: bubblewrap, util-linux (setpriv, losetup), e2fsprogs (mkfs.ext4),
#      libseccomp2, python3 (the sandbox's interpreter).
#   2. .venv/: the server's Python environment (execbox and its dependencies, test tools).
#   3. .venv/sdk-1.1/: a second environment with the 1.1 release of the anthropic SDK, for
#      the compatibility tests, and Debian's chromium and chromium-driver for the playground's
#      browser tests (test only).
#   4. .venv/node-sdk-<version>/: the TypeScript SDK (@anthropic-ai/sdk) for the end-to-end
#      tests that drive the server from node (test only; skipped when node is not installed).
#   5. The sandbox runtime environment (pandas, numpy, ...), built once per pin set into
#      /var/cache/execbox and reused by every later run on the machine.
set -euo pipefail

cd "$(dirname "$0")"
ROOT=$PWD
VENV=$ROOT/.venv
SDK1_VENV=$VENV/sdk-1.1
TS_SDK_VERSION=1.14.0   # the latest 1.x release of @anthropic-ai/sdk; tests/e2e/test_typescript_sdk.py reads this line
TS_SDK_DIR=$VENV/node-sdk-$TS_SDK_VERSION
APT_PACKAGES=(bubblewrap util-linux e2fsprogs libseccomp2 python3 mount ca-certificates)
# The playground's browser tests drive Debian's chromium through Debian's chromedriver.
TEST_APT_PACKAGES=(chromium chromium-driver fonts-dejavu-core)
# uv trusts the system's certificate store (where a TLS-intercepting proxy's CA is installed).
export UV_SYSTEM_CERTS=1 UV_NATIVE_TLS=1

step() { printf '\n==> %s\n' "$*" >&2; }

install_apt() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    step "installing Debian packages: ${missing[*]}"
    if [ "$(id -u)" != 0 ]; then
        echo "execbox needs root (namespaces, cgroups, loop disks); run this as root" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

pick_python() {
    for candidate in python3.11 python3 /usr/bin/python3; do
        if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
            command -v "$candidate"
            return
        fi
    done
    echo "execbox needs Python 3.11 or newer" >&2
    exit 1
}

install_venv() {
    local stamp
    stamp="$VENV/.execbox-deps-$(sha256sum pyproject.toml | cut -c1-12)"
    [ -f "$stamp" ] && return 0
    step "installing execbox's Python environment in .venv"
    [ -x "$VENV/bin/python" ] || "$(pick_python)" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check uv
    "$VENV/bin/uv" pip install -q --python "$VENV/bin/python" -e ".[test]"
    rm -f "$VENV"/.execbox-deps-*
    touch "$stamp"
}

install_sdk1_venv() {
    local stamp=$SDK1_VENV/.execbox-anthropic-1.1.0
    [ -f "$stamp" ] && return 0
    step "installing the anthropic 1.1 SDK environment for the compatibility tests"
    "$VENV/bin/uv" venv -q --python "$VENV/bin/python" "$SDK1_VENV"
    "$VENV/bin/uv" pip install -q --python "$SDK1_VENV/bin/python" \
        "anthropic==1.1.0" "pytest>=8" "pytest-timeout>=2.3" "httpx>=0.27"
    touch "$stamp"
}

install_ts_sdk() {
    local stamp=$TS_SDK_DIR/.execbox-installed
    [ -f "$stamp" ] && return 0
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        step "node/npm not found: the TypeScript SDK tests will be skipped"
        return 0
    fi
    step "installing @anthropic-ai/sdk $TS_SDK_VERSION for the TypeScript end-to-end tests"
    mkdir -p "$TS_SDK_DIR"
    npm install --prefix "$TS_SDK_DIR" --no-audit --no-fund --no-save --silent "@anthropic-ai/sdk@$TS_SDK_VERSION" >&2
    touch "$stamp"
}

setup() {
    install_apt "${APT_PACKAGES[@]}"
    [ "${1:-}" = test ] && install_apt "${TEST_APT_PACKAGES[@]}"
    install_venv
    [ "${1:-}" = test ] && install_sdk1_venv && install_ts_sdk
    step "sandbox runtime environment"
    "$VENV/bin/execbox" setup-runtime
}

cmd=${1:-}
shift || true
case "$cmd" in
    serve)
        setup
        step "starting execbox (Ctrl-C stops it)"
        exec "$VENV/bin/execbox" serve "$@"
        ;;
    test)
        setup test
        step "running the test suite"
        exec "$VENV/bin/python" -m pytest "$@"
        ;;
    bench)
        setup
        exec "$VENV/bin/python" bench/bench_sandbox.py "$@"
        ;;
    setup)
        setup test
        ;;
    *)
        echo "usage: ./run.sh serve|test|bench|setup [ARGS]" >&2
        exit 2
        ;;
esac
