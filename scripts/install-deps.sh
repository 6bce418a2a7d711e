#!/usr/bin/env bash
# Install the Debian packages the build, `make run` and `make test` need.
# Only missing packages are installed, so a second run costs nothing.
set -euo pipefail
pkgs=(nginx nginx-dev libhiredis-dev libjansson-dev libcurl4-openssl-dev
      libssl-dev redis-server redis-sentinel wrk make gcc perl
      libtest-base-perl libtext-diff-perl libtest-longstring-perl
      liblist-moreutils-perl libhttp-message-perl liburi-perl libwww-perl
      libjson-pp-perl libcryptx-perl curl
      chromium)   # the dashboard's browser tests (t/080-dashboard.t)
# Node.js runs the MCP SDK and oidc-provider test servers; keep one that is there.
command -v npm >/dev/null 2>&1 || pkgs+=(nodejs npm)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's nginx package starts a system nginx and redis; the project runs its own.
