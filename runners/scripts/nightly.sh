#!/usr/bin/env bash
# nightly.sh: the full conformance job for CI nightlies, usable on a fresh Debian machine.
#
#   1. install what is missing: the QEMU matrix (5.2, 7.2, 10.0, 11.1 x five arches), the guest
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
#   4. qconform explore --time $QCONFORM_EXPLORE_TIME: random domains from every snapshot's
#      vocabulary, planned and checked on the real binaries; the summary (explore/summary.json,
#      summary.txt) and the minimised case directories of every disagreement go into the run
#      directory, and report.html gets a section with the summary and links to the cases
#
# Usage: runners/scripts/nightly.sh [extra qconform run args...]
#        (--tiers and --guest default to plan,live,guest and all; giving either replaces
#        that default, e.g. `nightly.sh --guest subset`)
# Env:   QCONFORM_NIGHTLY_OUT   report root (default: results)
#        QCONFORM_JOBS          trial threads and concurrent QEMU processes (default: cores)
#        QCONFORM_EXPLORE_TIME  time budget of the explore step (default: 20m; 0 skips it)
#        QCONFORM_EXPLORE_SEED  its seed (default: the day, YYYYMMDD, so each night differs)
#        QCONFORM_MATRIX_ROOT, QCONFORM_GUEST_ROOT and the other variables of the install scripts
#
# Exit status: the worst of `qconform run` and `qconform explore`: 0 all passed, 1 the product
# failed (a trial, a libvirt-suite regression against its committed baseline, or a
# disagreement found by explore), 3 the rig is broken (an install step
# failed, QEMU could not be launched), 2 bad usage.
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

defaults=()
case " $* " in *" --tiers "* | *" --tiers="*) ;; *) defaults+=(--tiers plan,live,guest) ;; esac
case " $* " in *" --guest "* | *" --guest="*) ;; *) defaults+=(--guest all) ;; esac
log "qconform run --install ${defaults[*]} --out $out ${jobs[*]} $*"
set +e
"$bin" run --install "${defaults[@]}" --out "$out" "${jobs[@]}" "$@"
status=$?
set -e
t2=$(date +%s)
log "run took $((t2 - t1))s, exit status $status"

explore_time=${QCONFORM_EXPLORE_TIME:-20m}
explore_seed=${QCONFORM_EXPLORE_SEED:-$(date -u +%Y%m%d)}
explore_status=0
if [ "$explore_time" != "0" ] && [ -d "$out/latest" ]; then
    edir="$out/latest/explore"
    mkdir -p "$edir"
    log "qconform explore --time $explore_time --seed $explore_seed --out $edir ${jobs[*]}"
    set +e
    # summary.json and the report section are written by --report; the text summary too.
    "$bin" explore --time "$explore_time" --seed "$explore_seed" --out "$edir" "${jobs[@]}" \
        --report "$out/latest" >"$edir/summary.txt"
    explore_status=$?
    set -e
    t3=$(date +%s)
    log "explore took $((t3 - t2))s, exit status $explore_status; summary: $edir/summary.json"
fi
log "report: $out/latest/report.html"

# The worst status wins: rig broken (3) over product failed (1) over passed (0).
if [ "$status" -eq 3 ] || [ "$explore_status" -eq 3 ]; then
    exit 3
elif [ "$status" -ne 0 ]; then
    exit "$status"
fi
exit "$explore_status"
