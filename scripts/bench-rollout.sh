#!/usr/bin/env bash
# Benchmark: the story's rollout over real SSH. ansible/rollout.yml pushes one artifact from
# a seeder to HOSTS - 1 peers in network namespaces (tests/ansible/run_rollout_test.sh with
# SA_BENCH=1: every host already has the package, each its own root and sshd), and the
# script reports the playbook's wall time, the swarm's fetch within it and the bound of the
# `ansible -m copy` it replaces (every copy through the controller's one link; at this
# shape the copy would take an hour, so it is not run).
#
#   bash scripts/bench-rollout.sh [HOSTS] [SIZE_MIB] [RATE]
#
# Defaults: 41 hosts (a tracker+seeder and 40 peers), 220 MiB, 20mbit links. Needs root and
# the .deb from `bash scripts/package.sh` (built when missing). About 3 minutes at the
# defaults; run nothing else meanwhile.
set -euo pipefail
cd "$(dirname "$0")/.."
export SA_HOSTS=${1:-41} SA_SIZE_MIB=${2:-220} SA_RATE=${3:-20mbit}
export SA_BENCH=1 SA_FETCH_TIMEOUT=${SA_FETCH_TIMEOUT:-1200} SA_PLAYBOOK_TIMEOUT=${SA_PLAYBOOK_TIMEOUT:-1800}
exec bash tests/ansible/run_rollout_test.sh
