#!/usr/bin/env bash
# Installs what Starling's build, tests and demo need on Debian 12 (run as root, or with sudo).
# Idempotent: packages already present are skipped quickly.
set -euo pipefail
packages=(libssl-dev zlib1g-dev mktorrent python3-libtorrent aria2 transmission-cli opentracker
          iproute2 curl prometheus time procps zabbix-agent jq openssh-server ansible-core
          # scripts/package.sh (static libstdc++ and libgcc_eh, strip, objdump, .deb, .rpm, man
          # page, lintian) and its test in a debootstrap'd Debian 12 root
          libstdc++-12-dev libgcc-12-dev binutils dpkg-dev rpm lintian help2man debootstrap util-linux
          # tests/zabbix/run_zabbix_test.sh: Zabbix 6.0's server, frontend and their database
          zabbix-server-pgsql zabbix-frontend-php php-pgsql postgresql apache2 libapache2-mod-php)
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
# ansible-lint (PyPI) in a venv of its own, so its ansible-core does not shadow Debian's:
# scripts/test.sh lints ansible/ with it. Best effort: without it the lint step is skipped.
if [ ! -x /opt/ansible-lint-venv/bin/ansible-lint ] && ! command -v ansible-lint >/dev/null; then
    { python3 -m venv /opt/ansible-lint-venv && /opt/ansible-lint-venv/bin/pip install -q ansible-lint; } >/dev/null 2>&1 \
        || echo "ansible-lint could not be installed (pip install ansible-lint); the lint step will be skipped"
fi
