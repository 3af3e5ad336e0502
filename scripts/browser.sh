#!/usr/bin/env bash
# Install the real browser the web form's test drives: headless Chromium and its driver, from Debian's
# packages. Safe to run again: nothing is done when both are there.
#
#   bash scripts/browser.sh
set -euo pipefail

if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    exit 0
fi
[ "$(id -u)" -eq 0 ] || { echo "browser: must run as root to install chromium and chromium-driver" >&2; exit 1; }
echo "browser: installing chromium and chromium-driver"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
