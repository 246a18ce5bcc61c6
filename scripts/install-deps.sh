#!/usr/bin/env bash
# Installs what Starling's build, tests and demo need on Debian 12 (run as root, or with sudo).
# Idempotent: packages already present are skipped quickly.
set -euo pipefail
packages=(libssl-dev zlib1g-dev mktorrent python3-libtorrent aria2 transmission-cli opentracker
          iproute2 curl prometheus time procps zabbix-agent jq)
missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "installing: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
