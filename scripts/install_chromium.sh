#!/usr/bin/env bash
# Install headless Chromium and its WebDriver (Debian packages `chromium` and `chromium-driver`) for the
# dashboard's browser test. Idempotent: does nothing when both /usr/bin/chromium and
# /usr/bin/chromedriver are present. Needs root (or passwordless sudo) and apt-get.
set -euo pipefail

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'install_chromium.sh: %s\n' "$*" >&2; exit 1; }

CHROMIUM="${CHROMIUM_BIN:-/usr/bin/chromium}"
CHROMEDRIVER="${CHROMEDRIVER_BIN:-/usr/bin/chromedriver}"

if [[ -x "$CHROMIUM" && -x "$CHROMEDRIVER" ]]; then
  say "Chromium is installed: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM") / $CHROMEDRIVER"
  exit 0
fi

command -v apt-get >/dev/null 2>&1 \
  || die "apt-get not found: install Chromium and chromedriver with your system's package manager so that $CHROMIUM and $CHROMEDRIVER exist (or set CHROMIUM_BIN / CHROMEDRIVER_BIN)"

if [[ "$(id -u)" -eq 0 ]]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO=(sudo -n)
else
  die "installing the Debian packages chromium and chromium-driver needs root; run: sudo $0"
fi

export DEBIAN_FRONTEND=noninteractive
say "apt-get update"
"${SUDO[@]}" apt-get update -q || die "apt-get update failed (see above); check the network / apt sources"
say "apt-get install chromium chromium-driver (about 100 MB download, a minute or two)"
"${SUDO[@]}" apt-get install -y -q --no-install-recommends chromium chromium-driver fonts-liberation \
  || die "apt-get install chromium chromium-driver failed (see above)"

[[ -x "$CHROMIUM" && -x "$CHROMEDRIVER" ]] \
  || die "packages installed but $CHROMIUM or $CHROMEDRIVER is missing; check 'dpkg -L chromium chromium-driver'"
say "installed: $("$CHROMIUM" --version 2>/dev/null) / $("$CHROMEDRIVER" --version 2>/dev/null | head -1)"
