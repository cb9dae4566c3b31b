#!/usr/bin/env bash
# nightly.sh: the full conformance job for CI nightlies, usable on a fresh Debian machine.
#
#   1. install what is missing: the QEMU matrix (7.2, 10.0, 11.1 x five arches), the guest
#      kernels + initramfs and libvirt's test data (runners/scripts/install-matrix.sh,
#      install-guest.sh, install-libvirt-tests.sh, run by `qconform run --install`; the matrix
#      needs root unless it is already installed)
#   2. build qconform (release)
#   3. qconform run --install --guest all: probe installed binaries that have no snapshot yet,
#      replay every case against every snapshot, run every live trial on the real binaries
#      and boot every guest case, replay libvirt's own test domains (the libvirt-suite parity,
#      checked against cases/libvirt-suite-exceptions.toml), then write the report (JUnit XML,
#      JSON lines, HTML, libvirt-suite.json) into
#      $OUT/run-<UTC time>-<id>/ with $OUT/latest pointing at it
#
# Usage: runners/scripts/nightly.sh [extra qconform run args...]
# Env:   QCONFORM_NIGHTLY_OUT   report root (default: results)
#        QCONFORM_JOBS          trial threads and concurrent QEMU processes (default: cores)
#        QCONFORM_MATRIX_ROOT, QCONFORM_GUEST_ROOT and the other variables of the install scripts
#
# Exit status: that of `qconform run`: 0 all passed, 1 the product failed (a trial, or a
# libvirt-suite regression against its committed baseline), 3 the rig is broken
# (an install step failed, QEMU could not be launched), 2 bad usage.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
cd "$top"

log() { printf '[nightly %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

out=${QCONFORM_NIGHTLY_OUT:-results}
jobs=()
if [ -n "${QCONFORM_JOBS:-}" ]; then
    jobs=(--jobs "$QCONFORM_JOBS")
fi

if ! command -v cargo >/dev/null 2>&1; then
    log "cargo is not installed: the nightly job builds qconform from this checkout"
    exit 3
fi

t0=$(date +%s)
log "building qconform (release)"
cargo build --release --locked -p qconform
bin=${CARGO_TARGET_DIR:-$top/target}/release/qconform
t1=$(date +%s)
log "build took $((t1 - t0))s"

log "qconform run --install --guest all --out $out ${jobs[*]} $*"
set +e
"$bin" run --install --tiers plan,live,guest --guest all --out "$out" "${jobs[@]}" "$@"
status=$?
set -e
t2=$(date +%s)
log "run took $((t2 - t1))s, exit status $status; report: $out/latest/report.html"
exit "$status"
