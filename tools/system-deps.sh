#!/usr/bin/env bash
# Debian packages the tests start for real: a PostgreSQL server and a headless chromium for the web page, and the
# libraries opencv-python needs (the invisible-watermark baseline).
# Installs only what is missing, saying first what and why; without root (and without sudo) it says what to install
# and carries on, and the tests that need the missing program are skipped with that reason.
set -euo pipefail
missing=()
why=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" > /dev/null || command -v initdb > /dev/null || {
    missing+=(postgresql); why+=("postgresql: the registry and service tests start a real PostgreSQL server"); }
command -v chromium > /dev/null || command -v chromium-browser > /dev/null || {
    missing+=(chromium); why+=("chromium: the web page tests drive a headless chromium"); }
# opencv-python (pulled by invisible-watermark, the evaluate baseline) loads libGL and GLib at import
ldconfig -p 2> /dev/null | grep -q "libGL.so.1 " || {
    missing+=(libgl1); why+=("libgl1: opencv-python (the invisible-watermark baseline) loads libGL at import"); }
ldconfig -p 2> /dev/null | grep -q "libglib-2.0.so.0 " || {
    missing+=(libglib2.0-0); why+=("libglib2.0-0: opencv-python loads GLib at import"); }
# the README's and docs' service examples (tests/test_docs.py) talk to the server with curl; unshare and nsenter
# (util-linux) give each docs page a network namespace of its own, whose loopback iproute2 brings up
command -v curl > /dev/null || { missing+=(curl); why+=("curl: the docs' service examples call the server"); }
command -v nsenter > /dev/null || {
    missing+=(util-linux); why+=("util-linux: unshare and nsenter give each docs page its own network"); }
command -v ip > /dev/null || { missing+=(iproute2); why+=("iproute2: brings a docs page's loopback up"); }
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get > /dev/null; then
    echo "system-deps: install ${missing[*]} to run the service tests (no apt-get here)" >&2
    exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo > /dev/null; then
        echo "system-deps: run 'apt-get install ${missing[*]}' as root to run the service tests" >&2
        exit 0
    fi
    sudo="sudo"
fi
echo "system-deps: installing Debian packages the tests need (make system-deps; docs/install.md):" >&2
printf '  %s\n' "${why[@]}" >&2
echo "system-deps: running: ${sudo:+sudo }apt-get update && ${sudo:+sudo }apt-get install -y ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
