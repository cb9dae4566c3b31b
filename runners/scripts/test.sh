#!/usr/bin/env bash
# The test command: installs what the tests need (QEMU matrix with the qualify sample, guest
# kernels, Chromium for the HTML check, libvirt's test data for the libvirt-suite tier) when
# missing, checks formatting and lints (`cargo fmt --check`, then clippy with warnings as
# errors; either failing stops the run before any test), then runs the whole workspace's tests:
# unit tests, the offline replay of every case against every snapshot, the live tier against
# the installed matrix, a bounded guest-boot subset, and the libvirt-suite parity line
# (libvirt's own test domains replayed).
#
# Usage: runners/scripts/test.sh [extra cargo test args...]
#        (`--no-run` builds the tests without running them: a quick check of the lint step)
# Env:   QCONFORM_SKIP_INSTALL=1   do not install anything (tests needing QEMU are then ignored)
#        QCONFORM_GUEST=subset|all|none   guest tier selection (default: subset)
#        any QCONFORM_* variable of the install scripts (matrix root, versions, arches)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
cd "$top"

log() { printf '[test %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

if [ "${QCONFORM_SKIP_INSTALL:-0}" != 1 ]; then
    if [ "$(id -u)" = 0 ]; then
        log "installing the QEMU matrix and the qualify sample (idempotent)"
        "$here/install-matrix.sh" install
        log "installing guest kernels and initramfs (idempotent)"
        "$here/install-guest.sh" install
        if ! command -v chromium >/dev/null 2>&1; then
            log "installing chromium for the HTML report check"
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
        fi
    else
        log "not root: skipping installs; tests that need missing parts are ignored with a reason"
    fi
    log "installing libvirt's test data for the libvirt-suite tier (idempotent, no root needed)"
    "$here/install-libvirt-tests.sh" install
fi

log "cargo fmt --all --check"
if ! cargo fmt --all --check; then
    log "FAILED: formatting differs (run: cargo fmt --all)"
    exit 1
fi
log "cargo clippy --workspace --all-targets --locked -- -D warnings"
if ! cargo clippy --workspace --all-targets --locked -- -D warnings; then
    log "FAILED: clippy warnings (fix them; the tests were not run)"
    exit 1
fi

export QCONFORM_GUEST=${QCONFORM_GUEST:-subset}
log "cargo test --workspace (guest tier: $QCONFORM_GUEST)"
exec cargo test --workspace --locked "$@"
