#!/bin/sh
# The console's browser tests (tests/gateway/test_console.py) drive Debian's Chromium through its chromedriver.
# Idempotent: does nothing when both are there; else, as root, installs Debian's packages (no browser download).
# Without root it says what to install and fails, so `make test` stops here instead of skipping the tests.
set -eu
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "the console's browser tests need Debian's chromium and chromium-driver:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y chromium chromium-driver" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends chromium chromium-driver
