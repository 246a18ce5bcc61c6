#!/usr/bin/env bash
# The unit and end-to-end suites under a sanitizer, in a build folder of their own.
#
#   scripts/sanitize.sh [address|thread] [swift test options...]
#   scripts/sanitize.sh address --filter '^BencodeTests\.'  one test target under AddressSanitizer
#   scripts/sanitize.sh thread --filter '^StarlingNodeTests\.'  the engine under ThreadSanitizer
#
# Default: AddressSanitizer on every suite but AnsibleRolloutTests (minutes of sshd and
# ansible, nothing of ours that ASan would see). Installs the test tools first, as test.sh does.
set -euo pipefail
cd "$(dirname "$0")/.."
SANITIZER=address
case "${1:-}" in address|thread) SANITIZER=$1; shift ;; esac
[ "${NO_DEPS:-0}" = 1 ] || bash scripts/install-deps.sh
# The Swift runtime's crash handler would itself run under the sanitizer and muddle its report.
export SWIFT_BACKTRACE=enable=no
# Leaks: NIO's singletons and the suites' shared fixtures live until exit; ASan still reports
# every out-of-bounds access, use-after-free and double free.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=0 second_deadlock_stack=1}
SCRATCH=".build-${SANITIZER:0:1}san"
# The end-to-end tests run the sanitized `starling` too (CLITests finds it beside the tests).
export STARLING_BIN=${STARLING_BIN:-$PWD/$SCRATCH/debug/starling}
ARGS=("$@")
[ ${#ARGS[@]} -gt 0 ] || ARGS=(--skip "AnsibleRolloutTests|ZabbixTests")
swift build --build-tests --sanitize="$SANITIZER" --scratch-path "$SCRATCH"
swift test --skip-build --sanitize="$SANITIZER" --scratch-path "$SCRATCH" "${ARGS[@]}"
