#!/usr/bin/env bash
# Make sure headless Chromium and its driver are on this machine: what the console's browser
# test (tests/api_tests/test_console_browser.py) drives through Selenium.
#
# Installs Debian's chromium and chromium-driver when `chromium` or `chromedriver` is
# missing. Safe to run again: it checks before it acts, and says one line when all is there.
# Needs root (or sudo) only to install.
set -euo pipefail

say() { printf 'browser: %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    say "already installed: $(command -v chromium), $(command -v chromedriver)"
    exit 0
fi

say "chromium or chromedriver missing; installing Debian's chromium and chromium-driver (apt-get)"
as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    chromium chromium-driver >/dev/null
command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || {
    say "installed, yet chromium or chromedriver is not on PATH"
    exit 1
}
say "ready: $(chromium --version 2>/dev/null), $(chromedriver --version 2>/dev/null | head -1)"
