#!/usr/bin/env bash
# install-matrix.sh: install several real QEMU releases side by side from Debian's archive
# and generate one launcher per (version, arch) for the qconform harness.
#
#   5.2   bullseye            debootstrap minbase + apt   -> $ROOT/bullseye-root
#   7.2   bookworm            apt-get download + dpkg -x  -> $ROOT/trees/7.2
#   10.0  bookworm-backports  apt-get download + dpkg -x  -> $ROOT/trees/10.0
#   11.1  sid                 debootstrap minbase + apt   -> $ROOT/sid-root
#
# Each tree holds what `apt install qemu-system-<arch>` holds there: the QEMU packages plus the
# module packages they recommend that add device or block types (qemu-block-extra; from 10.0 on
# also qemu-system-modules-spice, which has qxl/qxl-vga, and qemu-system-modules-opengl).
#
# Arches: x86_64 aarch64 ppc64 s390x riscv64 (qemu-system-<arch>).
#
# The two dpkg -x trees run on the host's own libc; their runtime libraries (plain bookworm
# packages) are apt-installed on the host. The sid and bullseye roots are self-contained and are
# started from the host through their own dynamic loader (ld.so --library-path), so no chroot
# is needed at run time and host paths (kernels, sockets, temp dirs) work as usual.
#
# Launchers: $ROOT/bin/qemu-<major.minor>-<arch>. Each one is a /bin/sh script that sets
# QEMU_MODULE_DIR to its tree and `exec`s QEMU with -L for the tree's firmware dirs, so the
# spawned pid is QEMU itself and QMP over stdio goes straight through.
#
# $ROOT/matrix.tsv (rewritten atomically on every install), one row per launcher, TAB-separated:
#   version(major.minor)  arch  launcher_path  real_binary_path  full_version_string
# real_binary_path is the ELF qemu-system-<arch> inside the tree (hash it to identify a build).
#
# Usage: install-matrix.sh [install|list|check|--help]     (default: install)
# Env:   QCONFORM_MATRIX_ROOT      default $HOME/.cache/qconform/matrix
#        QCONFORM_MATRIX_VERSIONS  default "5.2 7.2 10.0 11.1"  ("sid" is accepted for 11.1,
#                                  "bullseye" for 5.2)
#        QCONFORM_MATRIX_ARCHES    default "x86_64 aarch64 ppc64 s390x riscv64"
#        QCONFORM_DEBIAN_MIRROR    default: the mirror of the host's bookworm apt source
#        QCONFORM_MATRIX_APT_SUITES  suites added to the host's apt, pinned low (priority 100/50/40);
#                                  default: none besides bookworm-backports, which is always added
#                                  (e.g. "trixie sid" to make those suites visible to host apt too;
#                                  the matrix itself does not need them, and every extra suite slows
#                                  down each apt call on the host)
#        QCONFORM_MATRIX_REFRESH=1 re-resolve package versions (apt-get update) even when stamped
#        QCONFORM_MATRIX_SAMPLES   1 (default) also installs the qualify sample: bookworm-security's
#                                  QEMU 7.2 x86_64 build, not part of the matrix ($ROOT/samples.tsv)
#
# `install` needs root (host apt sources + packages, debootstrap, chroot) unless every step is
# already done. Every step leaves a stamp; a re-run with everything in place does no network or
# package work. Delete $ROOT (and /etc/apt/{sources.list.d,preferences.d}/qconform-matrix*) to
# start over.
set -euo pipefail

PROG=install-matrix
HOME=${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}
ROOT=${QCONFORM_MATRIX_ROOT:-$HOME/.cache/qconform/matrix}
VERSIONS=${QCONFORM_MATRIX_VERSIONS:-"5.2 7.2 10.0 11.1"}
ARCHES=${QCONFORM_MATRIX_ARCHES:-"x86_64 aarch64 ppc64 s390x riscv64"}
TRIPLET=x86_64-linux-gnu
STAMPS=$ROOT/stamps
LOGS=$ROOT/logs
APT_SOURCES_FILE=/etc/apt/sources.list.d/qconform-matrix.sources
APT_PINS_FILE=/etc/apt/preferences.d/qconform-matrix
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
# Release files served by snapshot-style mirrors can be past their Valid-Until date.
# Another apt/dpkg run on the machine (a teammate, unattended-upgrades) holds the lock: wait for it.
APT_OPTS=(-o Acquire::Check-Valid-Until=false -o Acquire::Check-Date=false -o APT::Sandbox::User=root
  -o DPkg::Lock::Timeout=600)
export DEBIAN_FRONTEND=noninteractive

# ---- logging and timing (lib.sh: log, die, step, quietly; Debian mirror: source_uri) ---------

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
T_START=$(now_ms)

BG_PIDS=
on_exit() {
  local rc=$?
  if [ "$rc" -ne 0 ] && [ -n "$CURRENT_STEP" ]; then
    log "step $CURRENT_STEP: FAILED (exit $rc) after $(fmt_ms $(($(now_ms) - STEP_T0)))s"
  fi
  # the main process failed while background root steps still run: stop them
  if [ "$BASHPID" = "$$" ]; then
    local p
    for p in $BG_PIDS; do
      kill -0 "$p" 2>/dev/null || continue
      log "stopping background root step (pid $p)"
      pkill -TERM -P "$p" 2>/dev/null || true
      kill -TERM "$p" 2>/dev/null || true
    done
  fi
}
trap on_exit EXIT

need_root() {
  [ "$(id -u)" -eq 0 ] || die "$1 needs root (run as root, or finish the install once as root)"
}


# ---- Debian mirror ---------------------------------------------------------------------------

MIRROR=${QCONFORM_DEBIAN_MIRROR:-}
mirror() {
  if [ -z "$MIRROR" ]; then
    MIRROR=$(source_uri bookworm)
    [ -n "$MIRROR" ] || MIRROR=http://deb.debian.org/debian
  fi
  echo "$MIRROR"
}

# ---- what goes where -------------------------------------------------------------------------

# normalise the version list to tree labels: 7.2 and 10.0 are dpkg -x trees, "sid" (11.1) and
# "bullseye" (5.2) are debootstrapped roots
norm_versions() {
  local v out=""
  for v in $VERSIONS; do
    case $v in
      7.2 | 10.0) out+=" $v" ;;
      11.1 | sid) out+=" sid" ;;
      5.2 | bullseye) out+=" bullseye" ;;
      *) die "unknown version '$v' in QCONFORM_MATRIX_VERSIONS (known: 5.2 7.2 10.0 11.1)" ;;
    esac
  done
  echo "${out# }"
}
is_root_label() { case $1 in sid | bullseye) return 0 ;; *) return 1 ;; esac; }
root_of() { echo "$ROOT/$1-root"; }        # debootstrapped root of LABEL
version_of() { case $1 in sid) echo 11.1 ;; bullseye) echo 5.2 ;; *) echo "$1" ;; esac; }
check_arches() {
  local a
  for a in $ARCHES; do
    case $a in x86_64 | aarch64 | ppc64 | s390x | riscv64) ;; *) die "unknown arch '$a' (known: x86_64 aarch64 ppc64 s390x riscv64)" ;; esac
  done
}

# packages LABEL: Debian packages that provide the selected arches for that tree.
# 5.2 and 7.2 ship s390x and riscv64 inside qemu-system-misc; from 10.0 on they have their own
# packages. Every qemu-system-* package of these releases Recommends qemu-block-extra, and from
# 10.0 on also qemu-system-modules-spice and -opengl (Debian moved qxl, the spice chardevs and
# the virtio-gpu GL variants there), so a default `apt install` has them: the matrix does too.
# (qemu-system-gui, also recommended, holds display backends only; -display none never loads it.)
packages() {
  local label=$1 a pkgs="" old=0 arches=$ARCHES
  case $label in 7.2 | bullseye | sample-7.2) old=1 ;; esac
  [ "$label" = sample-7.2 ] && arches=x86_64
  for a in $arches; do
    case $a in
      x86_64) pkgs+=" qemu-system-x86 seabios ipxe-qemu" ;;
      aarch64) pkgs+=" qemu-system-arm" ;;
      ppc64) pkgs+=" qemu-system-ppc" ;;
      s390x) [ "$old" = 1 ] && pkgs+=" qemu-system-misc" || pkgs+=" qemu-system-s390x" ;;
      riscv64) { [ "$old" = 1 ] && pkgs+=" qemu-system-misc" || pkgs+=" qemu-system-riscv"; } && pkgs+=" opensbi" ;;
    esac
  done
  pkgs+=" qemu-block-extra"
  [ "$old" = 1 ] || pkgs+=" qemu-system-modules-spice qemu-system-modules-opengl"
  is_root_label "$label" || pkgs+=" qemu-system-common qemu-system-data"
  # shellcheck disable=SC2086 # word splitting intended
  printf '%s\n' $pkgs | sort -u | tr '\n' ' ' | sed 's/ $//'
}

# suites and version pattern used to pick each package of a dpkg -x tree
tree_suites() {
  case $1 in
    7.2) echo "bookworm bookworm-updates bookworm-security" ;;
    sample-7.2) echo "bookworm-security" ;;
    10.0) echo "bookworm-backports" ;;
  esac
}
tree_qemu_version_re() {
  case $1 in
    7.2 | sample-7.2) echo '^1:7\.2[+.~]' ;;
    10.0) echo '^1:10\.0[+.~]' ;;
  esac
}

# pick_version MADISON PKG "SUITES" [VERSION_ERE]: highest version of PKG in the
# `apt-cache madison` output MADISON that comes from one of SUITES (one madison call for all
# packages: without apt's binary cache every apt-cache call re-parses all package lists)
pick_version() {
  local madison=$1 pkg=$2 suites=$3 re=${4:-.} best="" v
  while read -r v; do
    if [ -z "$best" ] || dpkg --compare-versions "$v" gt "$best"; then best=$v; fi
  done < <(awk -F'|' -v pkg="$pkg" -v suites=" $suites " -v re="$re" '
    {
      gsub(/^[[:space:]]+|[[:space:]]+$/, "", $1); gsub(/^[[:space:]]+|[[:space:]]+$/, "", $2)
      split($3, w, /[[:space:]]+/); s = w[3]; sub(/\/.*/, "", s)
      if ($1 == pkg && index(suites, " " s " ") && $2 ~ re) print $2
    }' <<<"$madison")
  echo "$best"
}

# ---- step: host apt sources ------------------------------------------------------------------

# Suites this script adds to the host's apt, with pins low enough that nothing installed on the
# host is ever upgraded from them.
EXTRA_SUITES="bookworm-backports ${QCONFORM_MATRIX_APT_SUITES-}"
pin_of() { case $1 in bookworm-backports) echo 100 ;; trixie) echo 50 ;; *) echo 40 ;; esac; }

configured_elsewhere() { # SUITE: already served by a host source that is not ours?
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    if [ ! -f "$f" ] || [ "$f" = "$APT_SOURCES_FILE" ]; then continue; fi
    grep -v '^[[:space:]]*#' "$f" | grep -Eq "(^|[[:space:]])$1([[:space:]]|$)" && return 0
  done
  return 1
}

host_apt_sources() {
  local s suites="" pins="" want_src want_pins changed=0 m
  m=$(mirror)
  for s in $EXTRA_SUITES; do
    case " $suites " in *" $s "*) continue ;; esac
    configured_elsewhere "$s" && continue
    suites+=" $s"
    pins+=$'\n'"Package: *"$'\n'"Pin: release n=$s"$'\n'"Pin-Priority: $(pin_of "$s")"$'\n'
  done
  suites=${suites# }
  if [ -n "$suites" ]; then
    want_src="# Written by qconform install-matrix.sh: suites for side-by-side QEMU trees.
Types: deb
URIs: $m
Suites: $suites
Components: main
Architectures: amd64
Signed-By: $KEYRING"
    want_pins="# Written by qconform install-matrix.sh: never upgrade host packages from these suites.
${pins%$'\n'}"
    if [ "$(cat "$APT_SOURCES_FILE" 2>/dev/null)" != "$want_src" ] || [ "$(cat "$APT_PINS_FILE" 2>/dev/null)" != "$want_pins" ]; then
      need_root "adding apt suites"
      printf '%s\n' "$want_src" >"$APT_SOURCES_FILE"
      printf '%s\n' "$want_pins" >"$APT_PINS_FILE"
      log "apt: added suites '$suites' from $m (pinned low) in $APT_SOURCES_FILE"
      changed=1
    fi
  fi
  # refresh the package lists when a needed suite is unknown to apt (fresh machine, new file)
  if [ "$changed" = 1 ] || [ -n "${QCONFORM_MATRIX_REFRESH:-}" ] || ! apt_knows_suite bookworm-backports || ! apt_knows_suite bookworm; then
    need_root "apt-get update"
    log "apt: apt-get update"
    apt_update
  fi
}

apt_update() { # retried while another apt holds the lists lock
  local i
  for i in 1 2 3 4 5 6; do
    if quietly apt-update apt-get "${APT_OPTS[@]}" update; then return 0; fi
    grep -q 'Could not get lock' "$LOGS/apt-update.log" || return 1
    log "apt: lists locked by another apt run; retry $i in 20s"
    sleep 20
  done
  return 1
}
apt_knows_suite() { # SUITE: are its lists downloaded? (file test: apt-cache would parse every list)
  local lists
  eval "$(apt-config shell lists Dir::State::Lists/d)"
  compgen -G "${lists:-/var/lib/apt/lists}/*_dists_${1}_*Release" >/dev/null
}

# ---- step: host prerequisites ----------------------------------------------------------------

host_prereqs() {
  local missing=() t
  for t in debootstrap:debootstrap wget:wget gpgv:gpgv; do
    command -v "${t%%:*}" >/dev/null || missing+=("${t#*:}")
  done
  [ -f "$KEYRING" ] || missing+=(debian-archive-keyring)
  [ ${#missing[@]} -eq 0 ] && return 0
  need_root "installing ${missing[*]}"
  log "host: apt-get install ${missing[*]}"
  quietly host-prereqs apt-get "${APT_OPTS[@]}" install -y --no-install-recommends "${missing[@]}"
}

# ---- steps: dpkg -x trees (7.2, 10.0) --------------------------------------------------------

# resolve_specs LABEL: "pkg=version ..." for the tree, from the suites of that label
resolve_specs() {
  local label=$1 suites re pkg v specs="" pkgs madison
  suites=$(tree_suites "$label")
  re=$(tree_qemu_version_re "$label")
  pkgs=$(packages "$label")
  # shellcheck disable=SC2086
  madison=$(apt-cache madison $pkgs 2>/dev/null)
  for pkg in $pkgs; do
    case $pkg in
      qemu-*) v=$(pick_version "$madison" "$pkg" "$suites" "$re") ;;
      # firmware: newest from the tree's suites, else from bookworm (no ipxe-qemu in backports)
      *) v=$(pick_version "$madison" "$pkg" "$suites")
         [ -n "$v" ] || v=$(pick_version "$madison" "$pkg" "bookworm bookworm-updates bookworm-security") ;;
    esac
    [ -n "$v" ] || die "$label: no version of $pkg in suites '$suites' (apt-get update done?)"
    specs+=" $pkg=$v"
  done
  echo "${specs# }"
}

download_tree() { # LABEL SPECS
  local label=$1 specs=$2 dir=$ROOT/debs/$1
  rm -rf "$dir.tmp"; mkdir -p "$dir.tmp"
  # shellcheck disable=SC2086
  (cd "$dir.tmp" && quietly "download-$label" apt-get "${APT_OPTS[@]}" download $specs)
  rm -rf "$dir"; mv "$dir.tmp" "$dir"
  log "$label: $(find "$dir" -name '*.deb' | wc -l) debs, $(du -sh "$dir" | cut -f1)"
}

extract_tree() { # LABEL
  local label=$1 debs=$ROOT/debs/$1 tree=$ROOT/trees/$1 d
  rm -rf "$tree.tmp"; mkdir -p "$tree.tmp"
  for d in "$debs"/*.deb; do dpkg-deb -x "$d" "$tree.tmp"; done
  fix_abs_symlinks "$tree.tmp" "$tree"
  for d in "$debs"/*.deb; do dpkg-deb -f "$d" Package Version Architecture | paste -sd' '; done >"$tree.tmp/PACKAGES"
  rm -rf "$tree"; mv "$tree.tmp" "$tree"
  log "$label: tree $(du -sh "$tree" | cut -f1)"
}

# Debian ships absolute symlinks (e.g. firmware links into /usr/lib/...); inside an extracted
# tree they would point at the host. Re-point them into the tree (FINAL is the tree's final path).
fix_abs_symlinks() {
  local dir=$1 final=$2 l t
  while IFS= read -r -d '' l; do
    t=$(readlink "$l")
    case $t in /*) ln -sfn "$final$t" "$l" ;; esac
  done < <(find "$dir" -type l -print0)
}

# runtime libraries named in the Depends: of the tree's debs (not qemu/firmware packages)
tree_libs() {
  local d
  for d in "$ROOT/debs/$1"/*.deb; do dpkg-deb -f "$d" Depends; done | tr ',' '\n' |
    sed -E 's/\([^)]*\)//g; s/\|.*//; s/[[:space:]]//g; s/:any$//' |
    grep -Ev '^(qemu-|seabios|ipxe|opensbi|$)' | sort -u
}

tree_host_libs() { # LABEL
  local label=$1 lib missing=()
  for lib in $(tree_libs "$label"); do
    dpkg-query -W -f='${db:Status-Status}\n' "$lib" 2>/dev/null | grep -qx installed || missing+=("$lib")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    need_root "installing runtime libraries"
    log "$label: apt-get install ${#missing[@]} runtime libs: ${missing[*]}"
    quietly "libs-$label" apt-get "${APT_OPTS[@]}" install -y --no-install-recommends "${missing[@]}"
  else
    log "$label: runtime libs already installed"
  fi
  check_ldd "$label" "$ROOT/trees/$label" ldd
}

# check_ldd LABEL TREE LDD...: every ELF binary and module of the tree resolves its libraries
check_ldd() {
  local label=$1 tree=$2; shift 2
  local f bad=0 out
  for f in "$tree"/usr/bin/qemu-system-* "$tree/usr/lib/$TRIPLET/qemu"/*.so; do
    if [ ! -f "$f" ] || [ -L "$f" ]; then continue; fi
    out=$("$@" "$f" 2>&1 || true)
    if grep -q 'not found' <<<"$out"; then
      log "$label: unresolved libraries in $f:"; grep 'not found' <<<"$out" | sed 's/^/    /' >&2
      bad=1
    fi
  done
  [ "$bad" = 0 ] || die "$label: shared libraries missing (see above)"
}

install_tree() { # LABEL
  local label=$1 specs
  specs=$(resolve_specs "$label")
  if ! stamp_ok "$STAMPS/download-$label" "$specs"; then
    need_root "downloading $label"
    step "download-$label" download_tree "$label" "$specs"
    rm -f "$STAMPS/extract-$label" "$STAMPS/libs-$label"
    stamp_set "$STAMPS/download-$label" "$specs"
  fi
  if ! stamp_ok "$STAMPS/extract-$label" "$specs"; then
    step "extract-$label" extract_tree "$label"
    stamp_set "$STAMPS/extract-$label" "$specs"
  fi
  if ! stamp_ok "$STAMPS/libs-$label" "$specs"; then
    step "host-libs-$label" tree_host_libs "$label"
    stamp_set "$STAMPS/libs-$label" "$specs"
  fi
  stamp_set "$STAMPS/tree-$label" "$(packages "$label")"
}

# ---- steps: debootstrapped roots (sid: 11.1, bullseye: 5.2) ----------------------------------

# apt sources inside the root of LABEL (one-line format, understood by every release)
root_sources() {
  local m; m=$(mirror)
  case $1 in
    sid) printf 'deb %s sid main\n' "$m" ;;
    bullseye)
      # bullseye's QEMU point releases land in bullseye-security; the security archive is a
      # sibling of the main one on deb.debian.org and its mirrors
      printf 'deb %s bullseye main\ndeb %s bullseye-updates main\ndeb %s-security bullseye-security main\n' \
        "$m" "$m" "$m" ;;
  esac
}

root_debootstrap() { # LABEL
  local label=$1 r m; r=$(root_of "$1"); m=$(mirror)
  rm -rf "$r"
  mkdir -p "$ROOT"
  quietly "debootstrap-$label" debootstrap --variant=minbase --keyring="$KEYRING" "$label" "$r" "$m"
  root_sources "$label" >"$r/etc/apt/sources.list"
  # the mirror may serve Release files past Valid-Until; apt inside the root must accept them
  printf 'Acquire::Check-Valid-Until "false";\nAcquire::Check-Date "false";\n' >"$r/etc/apt/apt.conf.d/99qconform-no-valid-until"
  # the host's apt proxy settings, if any, apply inside the root too
  apt-config dump 2>/dev/null | grep -Ei '^Acquire::(https?::)?Proxy' >"$r/etc/apt/apt.conf.d/98qconform-proxy" || true
  [ -s "$r/etc/apt/apt.conf.d/98qconform-proxy" ] || rm -f "$r/etc/apt/apt.conf.d/98qconform-proxy"
  # never start services inside the root
  printf '#!/bin/sh\nexit 101\n' >"$r/usr/sbin/policy-rc.d"
  chmod 755 "$r/usr/sbin/policy-rc.d"
}

root_install_qemu() { # LABEL PKGS
  local label=$1 r; r=$(root_of "$1")
  cp -L /etc/resolv.conf "$r/etc/resolv.conf" 2>/dev/null || true
  quietly "apt-$label" chroot "$r" /bin/sh -c "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $2 && apt-get clean"
  # shellcheck disable=SC2016 # dpkg-query format, not shell
  chroot "$r" dpkg-query -W -f='${Package} ${Version} ${Architecture}\n' >"$r/PACKAGES"
  log "$label: $(grep -E '^qemu-system-[a-z0-9]+ ' "$r/PACKAGES" | head -n1), root $(du -sh "$r" | cut -f1)"
}

root_ldso() { # LABEL: the root's dynamic loader (merged /usr or not)
  local r d; r=$(root_of "$1")
  for d in "$r/usr/lib/$TRIPLET" "$r/lib/$TRIPLET" "$r/lib64"; do
    [ -e "$d/ld-linux-x86-64.so.2" ] && { echo "$d/ld-linux-x86-64.so.2"; return; }
  done
  echo "$r/usr/lib/$TRIPLET/ld-linux-x86-64.so.2"
}
# ld.so of glibc >= 2.33 takes --argv0 (QEMU then sees its own name); bullseye has 2.31
root_argv0_ok() { # (the help text is captured first: grep -q closing the pipe early would fail it)
  local h; h=$("$(root_ldso "$1")" --help 2>/dev/null || true)
  grep -q -- --argv0 <<<"$h"
}
declare -A ROOT_LIBPATH=() ROOT_ARGV0=()
root_libpath() { # LABEL: the root's library dirs (ld.so.conf.d) so the host's own are never used
  local r d p=""; r=$(root_of "$1")
  for d in "/usr/lib/$TRIPLET" /usr/lib "/lib/$TRIPLET" /lib $(cat "$r"/etc/ld.so.conf.d/*.conf 2>/dev/null | grep '^/' || true); do
    [ -d "$r$d" ] || continue
    # a merged-/usr root has /lib -> usr/lib: list each real dir once
    case $d in /lib | /lib/*) [ -L "$r/lib" ] && continue ;; esac
    case ":$p:" in *":$r$d:"*) ;; *) p+=":$r$d" ;; esac
  done
  echo "${p#:}"
}

install_root() { # LABEL
  local label=$1 pkgs; pkgs=$(packages "$1")
  if ! stamp_ok "$STAMPS/debootstrap-$label" "$label"; then
    need_root "debootstrap"
    rm -f "$STAMPS/apt-$label"
    step "debootstrap-$label" root_debootstrap "$label"
    stamp_set "$STAMPS/debootstrap-$label" "$label"
  fi
  if ! stamp_ok "$STAMPS/apt-$label" "$pkgs"; then
    need_root "apt-get inside the $label root"
    step "apt-$label" root_install_qemu "$label" "$pkgs"
    step "check-libs-$label" check_ldd "$label" "$(root_of "$label")" "$(root_ldso "$label")" --library-path "$(root_libpath "$label")" --list
    stamp_set "$STAMPS/apt-$label" "$pkgs"
  fi
}

# ---- step: launchers + matrix.tsv ------------------------------------------------------------

shq() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; } # quote for /bin/sh

fw_args() { # TREE -> -L args for the firmware dirs the tree has
  local t=$1 d out=""
  for d in usr/share/qemu usr/share/seabios usr/lib/ipxe/qemu; do
    [ -d "$t/$d" ] && out+=" -L $(shq "$t/$d")"
  done
  echo "${out# }"
}

# write_if_changed FILE CONTENT: keep the file (and its mtime) when nothing changed
write_if_changed() {
  if [ "$(cat "$1" 2>/dev/null)" != "$2" ]; then
    printf '%s\n' "$2" >"$1.tmp"; chmod 755 "$1.tmp"; mv "$1.tmp" "$1"
  fi
}

launcher_body() { # TREE BIN LABEL ARCH
  local tree=$1 bin=$2 label=$3 arch=$4 run
  if is_root_label "$label"; then
    run="$(shq "$(root_ldso "$label")") --library-path $(shq "${ROOT_LIBPATH[$label]}")"
    [ "${ROOT_ARGV0[$label]}" = 1 ] && run+=" --argv0 qemu-system-$arch"
    run+=" $(shq "$bin")"
  else
    run=$(shq "$bin")
  fi
  cat <<EOF
#!/bin/sh
# qconform launcher generated by install-matrix.sh; do not edit (rerun the installer instead).
# Runs qemu-system-$arch of $tree with the tree's firmware and modules.
QEMU_MODULE_DIR=$(shq "$tree/usr/lib/$TRIPLET/qemu")
export QEMU_MODULE_DIR
exec $run $(fw_args "$tree") "\$@"
EOF
}

make_launchers() {
  local rows=() label tree arch bin w body full mm tmp c_mm c_bin c_full
  local -A cached=()
  mkdir -p "$ROOT/bin"
  # rows of the previous matrix.tsv, by binary: reused when neither binary nor launcher changed
  if [ -f "$ROOT/matrix.tsv" ]; then
    while IFS=$'\t' read -r c_mm _ _ c_bin c_full; do
      cached[$c_bin]="$c_mm"$'\t'"$c_full"
    done <"$ROOT/matrix.tsv"
  fi
  for label in $(norm_versions); do
    if is_root_label "$label"; then
      tree=$(root_of "$label")
      ROOT_LIBPATH[$label]=$(root_libpath "$label")
      ROOT_ARGV0[$label]=0
      if root_argv0_ok "$label"; then ROOT_ARGV0[$label]=1; fi
    else
      tree=$ROOT/trees/$label
    fi
    for arch in $ARCHES; do
      bin=$tree/usr/bin/qemu-system-$arch
      if [ ! -f "$bin" ] || [ -L "$bin" ]; then die "$label: no ELF binary $bin"; fi
      [ "$(head -c 4 "$bin" | tail -c 3)" = ELF ] || die "$label: $bin is not an ELF file"
      body=$(launcher_body "$tree" "$bin" "$label" "$arch")
      full=""
      if [ -n "${cached[$bin]:-}" ] && [ "$bin" -ot "$ROOT/matrix.tsv" ]; then
        mm=${cached[$bin]%%$'\t'*}
        [ "$(cat "$ROOT/bin/qemu-$mm-$arch" 2>/dev/null)" = "$body" ] && full=${cached[$bin]#*$'\t'}
      fi
      if [ -z "$full" ]; then
        # name the launcher after what the binary says it is (sid moves on over time)
        w=$ROOT/bin/.probe-$label-$arch
        write_if_changed "$w" "$body"
        full=$("$w" -version </dev/null 2>/dev/null | head -n 1) || true
        rm -f "$w"
        mm=$(sed -nE 's/^QEMU emulator version ([0-9]+)\.([0-9]+).*/\1.\2/p' <<<"$full")
        [ -n "$mm" ] || die "$label $arch: '$bin -version' printed '$full'"
        if [ "$label" != sid ] && [ "$mm" != "$(version_of "$label")" ]; then die "$label $arch: binary reports $full"; fi
        if [ "$label" = sid ] && [ "$mm" != 11.1 ]; then log "note: sid now carries QEMU $mm (expected 11.1); launcher named qemu-$mm-$arch"; fi
        write_if_changed "$ROOT/bin/qemu-$mm-$arch" "$body"
      fi
      rows+=("$mm"$'\t'"$arch"$'\t'"$ROOT/bin/qemu-$mm-$arch"$'\t'"$bin"$'\t'"$full")
    done
  done
  tmp=$(mktemp "$ROOT/.matrix.tsv.XXXXXX")
  printf '%s\n' "${rows[@]}" >"$tmp"
  chmod 644 "$tmp"
  mv "$tmp" "$ROOT/matrix.tsv"
  log "matrix: ${#rows[@]} launchers in $ROOT/bin, table $ROOT/matrix.tsv"
}

# ---- step: the qualify sample ----------------------------------------------------------------

# A real QEMU build that is not part of the matrix (so no snapshot in capsdata/ was recorded
# from it): bookworm-security's 7.2 x86_64 build, an older point release than the matrix's 7.2
# (bookworm main carries a later binNMU). The qualify tests qualify it against the 7.2
# snapshot. Table: $ROOT/samples.tsv, same columns as matrix.tsv; launcher
# $ROOT/samples/bin/qemu-7.2-x86_64 (same form as the matrix launchers).
SAMPLES=${QCONFORM_MATRIX_SAMPLES:-1}
want_samples() { [ "$SAMPLES" = 1 ]; }

make_samples() {
  local tree=$ROOT/trees/sample-7.2 bin body full tmp
  bin=$tree/usr/bin/qemu-system-x86_64
  [ -f "$bin" ] || die "sample: no $bin"
  mkdir -p "$ROOT/samples/bin"
  body=$(launcher_body "$tree" "$bin" sample-7.2 x86_64)
  write_if_changed "$ROOT/samples/bin/qemu-7.2-x86_64" "$body"
  full=$("$ROOT/samples/bin/qemu-7.2-x86_64" -version </dev/null 2>/dev/null | head -n 1) || true
  case $full in "QEMU emulator version 7.2."*) ;; *) die "sample: '$bin -version' printed '$full'" ;; esac
  tmp=$(mktemp "$ROOT/.samples.tsv.XXXXXX")
  printf '%s\t%s\t%s\t%s\t%s\n' 7.2 x86_64 "$ROOT/samples/bin/qemu-7.2-x86_64" "$bin" "$full" >"$tmp"
  chmod 644 "$tmp"
  mv "$tmp" "$ROOT/samples.tsv"
  log "sample: $full in $ROOT/samples.tsv"
}

# ---- subcommands -----------------------------------------------------------------------------

cmd_install() {
  check_arches
  mkdir -p "$ROOT" "$STAMPS" "$LOGS"
  # one installer at a time per root
  exec 9>"$ROOT/.lock"
  flock 9
  local labels need_apt=0 l
  labels=$(norm_versions)
  log "root $ROOT; versions: $labels; arches: $ARCHES"
  # the network/apt steps only run when something is not stamped yet
  for l in $labels; do
    if is_root_label "$l"; then
      stamp_ok "$STAMPS/apt-$l" "$(packages "$l")" && [ -x "$(root_ldso "$l")" ] || need_apt=1
    else
      stamp_ok "$STAMPS/tree-$l" "$(packages "$l")" && [ -d "$ROOT/trees/$l" ] || need_apt=1
    fi
  done
  if want_samples && ! { stamp_ok "$STAMPS/tree-sample-7.2" "$(packages sample-7.2)" && [ -d "$ROOT/trees/sample-7.2" ]; }; then
    need_apt=1
  fi
  if [ "$need_apt" = 1 ] || [ -n "${QCONFORM_MATRIX_REFRESH:-}" ]; then
    log "mirror $(mirror)"
    step host-apt-sources host_apt_sources
    step host-prereqs host_prereqs
    # The debootstrapped roots (~30 s each) do not touch the host's apt/dpkg: build them in the
    # background while the dpkg -x trees are downloaded, unpacked and their libs installed.
    local -A bg=()
    for l in $labels; do
      if is_root_label "$l"; then install_root "$l" & bg[$l]=$!; BG_PIDS+=" $!"; fi
    done
    for l in $labels; do
      is_root_label "$l" || install_tree "$l"
    done
    if want_samples; then install_tree sample-7.2; fi
    for l in "${!bg[@]}"; do
      wait "${bg[$l]}" || die "$l root failed (see above)"
    done
    BG_PIDS=
  else
    log "all trees stamped; skipping apt (set QCONFORM_MATRIX_REFRESH=1 to re-resolve versions)"
  fi
  step launchers make_launchers
  if want_samples; then step samples make_samples; fi
  local total=$(($(now_ms) - T_START))
  [ "$need_apt" = 0 ] || log "disk: $(du -sh "$ROOT" 2>/dev/null | cut -f1) in $ROOT"
  log "install finished in $(fmt_ms "$total")s"
  printf '%s\t%s\t%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "install-total" "$(fmt_ms "$total")" >>"$LOGS/timings.tsv"
}

cmd_list() {
  [ -f "$ROOT/matrix.tsv" ] || die "no $ROOT/matrix.tsv; run '$0 install' first"
  cat "$ROOT/matrix.tsv"
}

# check: QMP greeting + qmp_capabilities + query-version through every launcher
cmd_check() {
  [ -f "$ROOT/matrix.tsv" ] || die "no $ROOT/matrix.tsv; run '$0 install' first"
  local mm arch w full out t0 dt fails=0 n=0 got
  while IFS=$'\t' read -r mm arch w _ full; do
    n=$((n + 1))
    t0=$(now_ms)
    out=$(printf '%s\n' '{"execute":"qmp_capabilities"}' '{"execute":"query-version"}' '{"execute":"quit"}' |
      timeout 30 "$w" -machine none -nodefaults -S -display none -qmp stdio 2>&1) || true
    dt=$(($(now_ms) - t0))
    # the query-version reply: {"return": {"qemu": {"micro": M, "minor": N, "major": J}, ...}}
    got=$(grep -m1 '"qemu": *{' <<<"$out" | sed -nE 's/.*"major": *([0-9]+).*/\1/p' || true)
    got+=.$(grep -m1 '"qemu": *{' <<<"$out" | sed -nE 's/.*"minor": *([0-9]+).*/\1/p' || true)
    if grep -q '"QMP"' <<<"$out" && [ "$got" = "$mm" ]; then
      printf 'ok\t%s\t%s\t%sms\n' "$mm" "$arch" "$dt"
    else
      printf 'FAIL\t%s\t%s\t%sms\t%s\n' "$mm" "$arch" "$dt" "$(head -c 300 <<<"$out" | tr '\n' ' ')"
      fails=$((fails + 1))
    fi
  done <"$ROOT/matrix.tsv"
  log "check: $((n - fails))/$n launchers ok"
  [ "$fails" -eq 0 ] && [ "$n" -gt 0 ]
}

case ${1:-install} in
  install) cmd_install ;;
  list) cmd_list ;;
  check) cmd_check ;;
  -h | --help | help) usage ;;
  *) usage >&2; exit 2 ;;
esac
