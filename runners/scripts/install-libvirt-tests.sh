#!/usr/bin/env bash
# install-libvirt-tests.sh: libvirt's own placement test data, for the libvirt-suite tier.
#
# libvirt's source carries, in tests/qemuxmlconfdata/, the domains its developers wrote with
# the QEMU argv libvirt generates for each (NAME.<arch>-latest.args, NAME.<arch>-X.Y.0.args)
# or its refusal (.err), and tests/qemuxmlconftest.c says which domain is tested on which
# arch and capabilities. This script takes both from Debian's libvirt source package (never
# committed to the repository) into $ROOT:
#
#   $ROOT/qemuxmlconfdata/       the domains and expected outputs, as shipped
#   $ROOT/qemuxmlconftest.c      the test declarations
#   $ROOT/SOURCE                 "<source package> <version> <orig tarball> sha256:<hex>"
#   $ROOT/SHA256SUMS             of every extracted file (what `check` verifies)
#
# The source package comes through a private apt state under $ROOT/.apt (one deb-src line for
# the suite below): the host's apt sources and lists are untouched and root is not needed.
# Only the upstream tarball (libvirt_<upstream>.orig.tar.xz) is needed; its sha256 is checked
# against the signed Sources index of the suite (apt-cache showsrc), else against the .dsc.
#
# Usage: install-libvirt-tests.sh [install|list|check|--help]      (default: install)
#   list:  prints the source line and the number of domains and expected outputs per arch
#   check: verifies every extracted file against SHA256SUMS
# Env:   QCONFORM_LIBVIRT_TESTS_ROOT  default $HOME/.cache/qconform/libvirt-tests
#        QCONFORM_LIBVIRT_VERSION     Debian version of the libvirt source, default 11.3.0-2~bpo12+1
#        QCONFORM_LIBVIRT_SUITE       Debian suite holding it, default bookworm-backports
#        QCONFORM_DEBIAN_MIRROR       default: the mirror of the host's bookworm apt source
#        QCONFORM_LIBVIRT_TARBALL     use this orig tarball instead of downloading (its sha256 is
#                                     still checked when the index can be read)
# Idempotent: a stamp under $ROOT/.stamps; a re-run with everything in place does no network work.
set -euo pipefail

PROG=install-libvirt-tests
HOME=${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}
ROOT=${QCONFORM_LIBVIRT_TESTS_ROOT:-$HOME/.cache/qconform/libvirt-tests}
VERSION=${QCONFORM_LIBVIRT_VERSION:-11.3.0-2~bpo12+1}
SUITE=${QCONFORM_LIBVIRT_SUITE:-bookworm-backports}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
# sha256 of libvirt_11.3.0.orig.tar.xz as downloaded from deb.debian.org (bookworm-backports)
# and checked against its Sources index; used only when neither the index nor the .dsc can be read.
KNOWN_ORIG_SHA256_11_3_0=6bcb0c42c4580436fea262ced56f68a6afe20f7390b1bea2116718cc034a0283


LOGS=$ROOT/logs
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
T_START=$(now_ms)
trap log_failed_step EXIT

UPSTREAM=${VERSION#*:}
UPSTREAM=${UPSTREAM%-*}
ORIG=libvirt_$UPSTREAM.orig.tar.xz
TOP=libvirt-$UPSTREAM

# ---- private apt with one deb-src line -------------------------------------------------------

APT_DIR=$ROOT/.apt
papt() { # papt apt-get|apt-cache ARGS...
  local tool=$1; shift
  local a=$APT_DIR
  "$tool" -o "Dir::Etc::SourceList=$a/sources.list" -o "Dir::Etc::SourceParts=/dev/null" \
    -o "Dir::Etc::Preferences=/dev/null" -o "Dir::Etc::PreferencesParts=/dev/null" \
    -o "Dir::State=$a/state" -o "Dir::State::Lists=$a/lists" -o "Dir::State::status=$a/status" \
    -o "Dir::Cache=$a/cache" -o "Dir::Cache::Archives=$a/cache/archives" \
    -o "Acquire::Languages=none" \
    -o "APT::Sandbox::User=$(id -un)" "$@"
}

apt_setup() {
  local mirror=${QCONFORM_DEBIAN_MIRROR:-$(source_uri bookworm)}
  mirror=${mirror:-http://deb.debian.org/debian}
  mkdir -p "$APT_DIR/state" "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial"
  : >>"$APT_DIR/status"
  printf 'deb-src [signed-by=%s] %s %s main\n' "$KEYRING" "$mirror" "$SUITE" >"$APT_DIR/sources.list"
  log "source: $(cat "$APT_DIR/sources.list")"
  quietly apt-update papt apt-get update
}

# expected sha256 of the orig tarball: the suite's (signed) Sources index, else empty
index_sha256() {
  papt apt-cache showsrc libvirt 2>/dev/null |
    awk -v f="$ORIG" -v v="$VERSION" '
      /^Package:/ { ver = "" } /^Version:/ { ver = $2 }
      /^Checksums-Sha256:/ { on = 1; next } /^[^ ]/ { on = 0 }
      on && ver == v && $3 == f { print $1; exit }'
}

dsc_sha256() { # DSC: the orig tarball's sha256 listed in a .dsc
  awk -v f="$ORIG" '/^Checksums-Sha256:/ { on = 1; next } /^[^ ]/ { on = 0 } on && $3 == f { print $1; exit }' "$1"
}

fetch() { # -> $WORK/$ORIG with its sha256 checked; sets ORIG_SHA256
  local want="" got dsc
  apt_setup
  want=$(index_sha256 || true)
  mkdir -p "$WORK/src"
  if [ -n "${QCONFORM_LIBVIRT_TARBALL:-}" ]; then
    cp "$QCONFORM_LIBVIRT_TARBALL" "$WORK/src/$ORIG"
  else
    # apt-get source fetches the .dsc, the orig tarball and the Debian tarball; a mirror may
    # miss the signature or the Debian tarball, which are not needed here.
    (cd "$WORK/src" && papt apt-get source --download-only "libvirt=$VERSION" >"$LOGS/apt-source.log" 2>&1) ||
      log "apt-get source did not fetch every file (see $LOGS/apt-source.log); only $ORIG is needed"
  fi
  [ -f "$WORK/src/$ORIG" ] || die "no $ORIG downloaded for libvirt=$VERSION from $SUITE (see $LOGS/apt-source.log)"
  dsc=$(find "$WORK/src" -maxdepth 1 -name 'libvirt_*.dsc' | head -n 1)
  if [ -z "$want" ] && [ -n "$dsc" ]; then want=$(dsc_sha256 "$dsc"); fi
  if [ -z "$want" ] && [ "$UPSTREAM" = 11.3.0 ]; then
    want=$KNOWN_ORIG_SHA256_11_3_0
    log "neither the Sources index nor the .dsc lists $ORIG; checking the recorded sha256"
  fi
  got=$(sha256sum "$WORK/src/$ORIG" | cut -d' ' -f1)
  [ -n "$want" ] || die "no sha256 to check $ORIG against (libvirt=$VERSION is not in the $SUITE Sources index)"
  [ "$got" = "$want" ] || die "$ORIG: sha256 $got, expected $want"
  ORIG_SHA256=$got
  log "$ORIG sha256 $got ok ($(du -h "$WORK/src/$ORIG" | cut -f1))"
}

extract() { # $WORK/$ORIG -> $ROOT/{qemuxmlconfdata,qemuxmlconftest.c,SOURCE,SHA256SUMS}
  local x=$WORK/x new=$WORK/new
  rm -rf "$x" "$new"
  mkdir -p "$x" "$new"
  tar -xJf "$WORK/src/$ORIG" -C "$x" "$TOP/tests/qemuxmlconfdata" "$TOP/tests/qemuxmlconftest.c"
  mv "$x/$TOP/tests/qemuxmlconfdata" "$new/qemuxmlconfdata"
  mv "$x/$TOP/tests/qemuxmlconftest.c" "$new/qemuxmlconftest.c"
  printf 'libvirt %s %s sha256:%s\n' "$VERSION" "$ORIG" "$ORIG_SHA256" >"$new/SOURCE"
  (cd "$new" && find qemuxmlconfdata qemuxmlconftest.c SOURCE -type f -print0 | LC_ALL=C sort -z |
    xargs -0 sha256sum >SHA256SUMS)
  # swap in: the old tree is moved aside first, so a reader never sees a half-written one
  rm -rf "$WORK/old"
  mkdir -p "$WORK/old"
  local f
  for f in qemuxmlconfdata qemuxmlconftest.c SOURCE SHA256SUMS; do
    if [ -e "$ROOT/$f" ]; then mv "$ROOT/$f" "$WORK/old/$f"; fi
  done
  for f in qemuxmlconfdata qemuxmlconftest.c SOURCE SHA256SUMS; do mv "$new/$f" "$ROOT/$f"; done
  log "$(find "$ROOT/qemuxmlconfdata" -type f | wc -l) files, $(du -sh "$ROOT/qemuxmlconfdata" | cut -f1)"
}

# ---- subcommands -----------------------------------------------------------------------------

cmd_install() {
  mkdir -p "$ROOT" "$LOGS"
  exec 9>"$ROOT/.lock"
  flock 9
  local st=$ROOT/.stamps/tests
  if stamp_ok "$st" "$VERSION" && [ -f "$ROOT/SOURCE" ] && [ -d "$ROOT/qemuxmlconfdata" ] && [ -f "$ROOT/qemuxmlconftest.c" ]; then
    log "libvirt $VERSION test data in place ($(cat "$ROOT/SOURCE"))"
    return 0
  fi
  WORK=$ROOT/.work
  rm -rf "$WORK"
  mkdir -p "$WORK"
  log "root $ROOT; libvirt=$VERSION from $SUITE"
  step fetch fetch
  step extract extract
  stamp_set "$st" "$VERSION"
  rm -rf "$WORK"   # the tarball is ~10 MB and not needed again
  local total=$(($(now_ms) - T_START))
  log "install finished in $(fmt_ms "$total")s"
  printf '%s\t%s\t%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "install-total" "$(fmt_ms "$total")" >>"$LOGS/timings.tsv"
}

cmd_list() {
  [ -f "$ROOT/SOURCE" ] || die "no test data under $ROOT; run '$0 install' first"
  printf 'source\t%s\n' "$(cat "$ROOT/SOURCE")"
  printf 'root\t%s\n' "$ROOT"
  printf 'domains\t%s\n' "$(find "$ROOT/qemuxmlconfdata" -maxdepth 1 -name '*.xml' | grep -Evc '\.[a-z0-9_]+-(latest|[0-9.]+)[^/]*\.xml$')"
  find "$ROOT/qemuxmlconfdata" -maxdepth 1 -type f \( -name '*.args' -o -name '*.err' \) -printf '%f\n' |
    sed -nE 's/^.*\.([a-z0-9_]+)-(latest|[0-9]+\.[0-9]+\.[0-9]+)[^.]*(\.abi-update)?\.(args|err)$/\1\t\4/p' |
    sort | uniq -c | awk '{ printf "expected\t%s\t%s\t%d\n", $2, $3, $1 }'
}

cmd_check() {
  [ -f "$ROOT/SHA256SUMS" ] || die "no test data under $ROOT; run '$0 install' first"
  local n
  n=$(wc -l <"$ROOT/SHA256SUMS")
  if (cd "$ROOT" && sha256sum --quiet -c SHA256SUMS); then
    printf 'ok\t%s files\t%s\n' "$n" "$(cat "$ROOT/SOURCE")"
  else
    printf 'FAIL\t%s: files differ from SHA256SUMS (re-install: rm -r %s/.stamps)\n' "$ROOT" "$ROOT"
    return 1
  fi
}

case ${1:-install} in
  install) cmd_install ;;
  list) cmd_list ;;
  check) cmd_check ;;
  -h | --help | help) usage ;;
  *) usage >&2; exit 2 ;;
esac
