#!/usr/bin/env bash
# install-guest.sh: install the guest-tier assets of qconform: a Debian kernel and a tiny
# busybox initramfs per guest arch, which boot under QEMU (TCG), list the PCI functions the
# guest kernel sees, and power off.
#
#   $ROOT/<arch>/vmlinuz      Debian kernel (linux-image-<abi>-<flavour>, the newest of the suite and
#                             its -security suite), the /boot/vmlinuz-* or /boot/vmlinux-* of the deb
#                             (ppc64: the ELF vmlinux, which SLOF loads as it is)
#   $ROOT/<arch>/initrd.gz    static busybox of that arch + /init (below), newc cpio, gzip
#   $ROOT/<arch>/ASSETS       "<package> <version>" of the kernel and busybox packages used
#   $ROOT/<arch>/SHA256SUMS   sha256sum of vmlinuz and initrd.gz
#   arches (Debian architecture, kernel flavour, suite):
#     x86_64 (amd64, amd64, bookworm)        s390x (s390x, s390x, bookworm)
#     aarch64 (arm64, arm64, bookworm)       ppc64 (ppc64el, powerpc64le, bookworm)
#     riscv64 (riscv64, riscv64, trixie: riscv64 is a release architecture from trixie on;
#              bookworm has it only on debian-ports, which is not a mirror of Debian proper)
#
# Guest output contract (parsed by the Rust guest tier; keep both sides in sync):
# /init mounts proc and sysfs, then writes to the console, one line per directory in
# /sys/bus/pci/devices, sorted by name (the name is the guest address DDDD:BB:SS.F, lowercase hex;
# the domain has 4 digits here, Linux prints more only for domains above 0xffff):
#
#   === PCI-DEVICES-BEGIN
#   PCI <DDDD:BB:SS.F> vendor=0xVVVV device=0xDDDD class=0xCCCCCC revision=0xRR subsystem=VVVV:DDDD [sec=N] [uid=0xU fid=0xFFFFFFFF]
#   ...
#   === PCI-DEVICES-END
#
#   vendor, device, class, revision: the sysfs files verbatim (lowercase hex with 0x: 4, 4, 6, 2 digits)
#   subsystem: subsystem_vendor:subsystem_device, 4 lowercase hex digits each, no 0x
#   sec=N:     decimal secondary_bus_number; only for bridges (the file exists only for them)
#   uid, fid:  s390x zPCI only, the sysfs files uid ("0x%x") and function_id ("0x%08x") verbatim;
#              each printed when its file exists. The guest PCI domain equals the zPCI uid.
#   Fields are separated by one space, in exactly this order.
#
# Then, only where the guest has a CCW bus (s390x), one line per directory in
# /sys/bus/ccw/devices, sorted by bus-id (cssid.ssid.devno as the guest numbers them, lowercase hex):
#
#   === CCW-DEVICES-BEGIN
#   CCW <C.S.DDDD> cutype=TTTT/MM devtype=TTTT/MM online=0|1
#   ...
#   === CCW-DEVICES-END
#
#   cutype, devtype, online: the sysfs files verbatim (virtio-ccw: cutype 3832/<virtio device id>)
#
# After the last END, /init powers off
#   (poweroff -f; if that fails, init exits and the kernel panics, so boot with
#   "panic=-1" and QEMU's -no-reboot). Lines arrive on a serial console: expect "\r\n" line
#   ends, QEMU warnings and kernel messages before and after the markers (with "quiet
#   loglevel=3" rarely between them); take only the lines that start with "PCI " between
#   the two marker lines. A missing END marker means the guest did not finish.
#
# Boot (firmware-free direct kernel boot, TCG; -serial stdio gives the console):
#   x86_64:  qemu-system-x86_64 -machine q35 -accel tcg -m 512 -nodefaults -display none -no-reboot
#            -kernel vmlinuz -initrd initrd.gz -append "console=ttyS0 panic=-1 quiet loglevel=3 no_timer_check" -serial stdio
#            (no_timer_check: under TCG on a loaded host the kernel's timer IRQ test can fail and
#            panic with "IO-APIC + timer doesn't work!")
#   s390x:   -machine s390-ccw-virtio ... -append "console=ttysclp0 panic=-1 quiet loglevel=3"
#   aarch64: -machine virt -cpu max ... -append "console=ttyAMA0 panic=-1 quiet loglevel=3"
#   ppc64:   -machine pseries ... -append "console=hvc0 panic=-1 quiet loglevel=3"  (SLOF loads the kernel)
#   riscv64: -machine virt ... -append "console=ttyS0 panic=-1 quiet loglevel=3"  (OpenSBI, -bios default)
#
# Packages come through a private apt state under $ROOT/.apt/<debian-arch> (the suite,
# its -updates and -security suites, for that architecture only): the host's dpkg
# architectures and apt lists are not touched, and root is not needed.
#
# Usage: install-guest.sh [install|list|check|--help]      (default: install)
#   check: boots every installed arch with the newest QEMU of install-matrix.sh's matrix.tsv
#          and checks the marker lines (x86_64 with a PCIe root port, s390x with a zpci uid/fid and
#          a virtio-rng-ccw at devno fe.1.0005, which the guest must list as 0.1.0005; aarch64,
#          ppc64 and riscv64 with a virtio-net-pci).
# Env:   QCONFORM_GUEST_ROOT       default $HOME/.cache/qconform/guest
#        QCONFORM_GUEST_ARCHES     default "x86_64 s390x aarch64 ppc64 riscv64"
#        QCONFORM_DEBIAN_MIRROR    default: the mirror of the host's bookworm apt source
#        QCONFORM_DEBIAN_SECURITY_MIRROR  default: the host's bookworm-security source
#        QCONFORM_MATRIX_ROOT      (check only) where matrix.tsv is, default $HOME/.cache/qconform/matrix
#        QCONFORM_GUEST_QEMU_VERSION  (check only) QEMU major.minor to boot with, default the newest
#        QCONFORM_GUEST_REFRESH=1  re-resolve the newest kernel/busybox even when stamped
# Idempotent: stamps under $ROOT/<arch>/.stamps; a re-run with everything in place does no network work.
set -euo pipefail

PROG=install-guest
HOME=${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}
ROOT=${QCONFORM_GUEST_ROOT:-$HOME/.cache/qconform/guest}
ARCHES=${QCONFORM_GUEST_ARCHES:-"x86_64 s390x aarch64 ppc64 riscv64"}
MATRIX_ROOT=${QCONFORM_MATRIX_ROOT:-$HOME/.cache/qconform/matrix}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg


# ---- logging and timing (lib.sh: log, die, step, quietly; Debian mirror: source_uri) ---------

LOGS=$ROOT/logs
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
T_START=$(now_ms)
trap log_failed_step EXIT

# ---- Debian mirror (same rules as install-matrix.sh) -----------------------------------------

mirrors() { # sets MIRROR and SECURITY_MIRROR
  MIRROR=${QCONFORM_DEBIAN_MIRROR:-$(source_uri bookworm)}
  MIRROR=${MIRROR:-http://deb.debian.org/debian}
  SECURITY_MIRROR=${QCONFORM_DEBIAN_SECURITY_MIRROR:-$(source_uri bookworm-security)}
  SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
}

# ---- arches ----------------------------------------------------------------------------------

deb_arch() { # guest arch -> Debian architecture
  case $1 in
    x86_64) echo amd64 ;;
    s390x) echo s390x ;;
    aarch64) echo arm64 ;;
    ppc64) echo ppc64el ;;
    riscv64) echo riscv64 ;;
    *) die "unknown guest arch '$1' (known: x86_64 s390x aarch64 ppc64 riscv64)" ;;
  esac
}
flavour() { # Debian architecture -> kernel flavour (linux-image-<flavour> metapackage)
  case $1 in
    ppc64el) echo powerpc64le ;;
    *) echo "$1" ;;
  esac
}
suite() { # Debian architecture -> suite its kernel and busybox come from
  case $1 in
    riscv64) echo trixie ;;
    *) echo bookworm ;;
  esac
}

# ---- private apt per Debian architecture -----------------------------------------------------

APT_DIR=$ROOT/.apt
apt_opts() { # DEBARCH -> options for a private apt that sees only its suite for that architecture
  local a=$APT_DIR/$1
  printf '%s\n' \
    -o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$a/sources.list.d" \
    -o "Dir::Etc::Preferences=/dev/null" -o "Dir::Etc::PreferencesParts=$a/preferences.d" \
    -o "Dir::State=$a/state" -o "Dir::State::Lists=$a/lists" -o "Dir::State::status=$a/status" \
    -o "Dir::Cache=$a/cache" -o "Dir::Cache::Archives=$a/cache/archives" \
    -o "APT::Architecture=$1" -o "APT::Architectures=$1" -o "Acquire::Languages=none" \
    -o "Acquire::Check-Valid-Until=false" -o "Acquire::Check-Date=false" \
    -o "APT::Sandbox::User=$(id -un)"
}
papt() { # papt DEBARCH apt-get|apt-cache ARGS...
  local arch=$1 tool=$2; shift 2
  local opts; mapfile -t opts < <(apt_opts "$arch")
  "$tool" "${opts[@]}" "$@"
}

apt_setup() { # DEBARCH: write the private sources and refresh its lists (once per run)
  local arch=$1 a=$APT_DIR/$1 su
  su=$(suite "$arch")
  mkdir -p "$a/sources.list.d" "$a/preferences.d" "$a/state" "$a/lists/partial" "$a/cache/archives/partial"
  : >>"$a/status"
  cat >"$a/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $su $su-updates
Components: main
Architectures: $arch
Signed-By: $KEYRING

Types: deb
URIs: $SECURITY_MIRROR
Suites: $su-security
Components: main
Architectures: $arch
Signed-By: $KEYRING
EOF
  # A mirror caught mid-sync (or a caching proxy holding an older index) fails one index of
  # the update; the others are kept. Go on when the suite's own main index is there: the
  # kernel is then the newest of what the mirror serves consistently.
  if ! quietly "apt-update-$arch" papt "$arch" apt-get update; then
    compgen -G "$a/lists/*_dists_${su}_main_binary-${arch}_Packages*" >/dev/null ||
      die "apt-get update for $arch ($su) failed; see $LOGS/apt-update-$arch.log"
    log "WARNING: apt-get update for $arch failed in part; going on with the indexes it fetched"
  fi
}

# download DEBARCH PKG DIR: apt-get download PKG into DIR, echo the .deb path
download() {
  local arch=$1 pkg=$2 dir=$3
  mkdir -p "$dir"
  (cd "$dir" && quietly "download-$pkg-$arch" papt "$arch" apt-get download "$pkg:$arch")
  find "$dir" -maxdepth 1 -name "${pkg}_*_$arch.deb" | head -n 1
}

# ---- the guest's /init -----------------------------------------------------------------------

init_script() {
  cat <<'EOF'
#!/bin/sh
# qconform guest-tier /init (generated by install-guest.sh): list the PCI functions seen by the
# guest kernel on the console, then power off. Line format: see install-guest.sh.
PATH=/bin
export PATH
mount -t devtmpfs devtmpfs /dev 2>/dev/null
[ -c /dev/console ] && exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo "=== PCI-DEVICES-BEGIN"
for d in /sys/bus/pci/devices/*; do
  [ -r "$d/vendor" ] || continue
  line="PCI ${d##*/} vendor=$(cat "$d/vendor") device=$(cat "$d/device") class=$(cat "$d/class")"
  line="$line revision=$(cat "$d/revision")"
  sv=$(cat "$d/subsystem_vendor"); sd=$(cat "$d/subsystem_device")
  line="$line subsystem=${sv#0x}:${sd#0x}"
  [ -r "$d/secondary_bus_number" ] && line="$line sec=$(cat "$d/secondary_bus_number")"
  [ -r "$d/uid" ] && line="$line uid=$(cat "$d/uid")"
  [ -r "$d/function_id" ] && line="$line fid=$(cat "$d/function_id")"
  echo "$line"
done
echo "=== PCI-DEVICES-END"
if [ -d /sys/bus/ccw/devices ]; then
  echo "=== CCW-DEVICES-BEGIN"
  for d in /sys/bus/ccw/devices/*; do
    [ -r "$d/cutype" ] || continue
    echo "CCW ${d##*/} cutype=$(cat "$d/cutype") devtype=$(cat "$d/devtype") online=$(cat "$d/online")"
  done
  echo "=== CCW-DEVICES-END"
fi
sync
poweroff -f
sleep 5
echo o >/proc/sysrq-trigger
EOF
}

# ---- steps -----------------------------------------------------------------------------------

APT_READY=" "
ensure_apt() { # DEBARCH: private apt lists for that architecture, refreshed once per run
  case $APT_READY in *" $1 "*) return 0 ;; esac
  step "apt-update-$1" apt_setup "$1"
  APT_READY+="$1 "
}

# kernel package of the suite's newest ABI: the dependency of the linux-image-<flavour> metapackage
kernel_package() {
  local arch=$1 fl
  fl=$(flavour "$arch")
  papt "$arch" apt-cache depends "linux-image-$fl" 2>/dev/null |
    sed -nE "s/^ *Depends: (linux-image-[0-9][^ ]*-$fl)( .*)?$/\1/p" | head -n 1
}

install_kernel() { # ARCH DEBARCH
  local arch=$1 darch=$2 dir=$ROOT/$1 pkg deb tmp
  pkg=$(kernel_package "$darch")
  [ -n "$pkg" ] || die "$arch: no linux-image-*-$(flavour "$darch") found in $(suite "$darch")"
  tmp=$ROOT/.work/$arch-kernel
  rm -rf "$tmp"
  deb=$(download "$darch" "$pkg" "$tmp")
  mkdir -p "$tmp/x" "$dir"
  dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp/x" ./boot
  local k
  k=$(find "$tmp/x/boot" -maxdepth 1 \( -name 'vmlinuz-*' -o -name 'vmlinux-*' \) | head -n 1)
  [ -n "$k" ] || die "$arch: $pkg has no /boot/vmlinuz-* or /boot/vmlinux-*"
  cp "$k" "$dir/vmlinuz.tmp"
  mv "$dir/vmlinuz.tmp" "$dir/vmlinuz"
  cp "$tmp"/x/boot/config-* "$dir/kernel.config"
  printf '%s %s\n' "$(dpkg-deb -f "$deb" Package)" "$(dpkg-deb -f "$deb" Version)" >"$dir/.kernel-package"
  rm -rf "$tmp"   # the deb is ~60 MB of modules that are never used
  log "$arch: kernel $(cat "$dir/.kernel-package"), vmlinuz $(du -h "$dir/vmlinuz" | cut -f1)"
}

busybox_in() { # DIR: the busybox binary of an unpacked busybox-static (bin/ up to bookworm, usr/bin/ from trixie)
  local p
  for p in "$1/bin/busybox" "$1/usr/bin/busybox"; do
    [ -f "$p" ] && { echo "$p"; return 0; }
  done
  return 1
}

install_busybox() { # ARCH DEBARCH: the static busybox of that arch -> $ROOT/<arch>/.busybox
  local arch=$1 darch=$2 dir=$ROOT/$1 deb tmp
  tmp=$ROOT/.work/$arch-busybox
  rm -rf "$tmp"
  deb=$(download "$darch" busybox-static "$tmp")
  mkdir -p "$tmp/x" "$dir"
  dpkg-deb -x "$deb" "$tmp/x"
  local b
  b=$(busybox_in "$tmp/x") || die "$arch: no bin/busybox in $(basename "$deb")"
  cp "$b" "$dir/.busybox.tmp"
  mv "$dir/.busybox.tmp" "$dir/.busybox"
  printf '%s %s\n' "$(dpkg-deb -f "$deb" Package)" "$(dpkg-deb -f "$deb" Version)" >"$dir/.busybox-package"
  rm -rf "$tmp"
  log "$arch: $(cat "$dir/.busybox-package")"
}

# A busybox that runs on this host packs the cpio (the host has no cpio of its own).
host_busybox() {
  local hb=$ROOT/.tools/busybox
  if [ ! -x "$hb" ]; then
    local self="" a
    for a in $ARCHES; do [ "$a" = x86_64 ] && self=$ROOT/x86_64/.busybox; done
    if [ -z "$self" ] || [ ! -x "$self" ]; then
      ensure_apt amd64
      install_busybox_tool
      self=$ROOT/.tools/busybox
    fi
    mkdir -p "$ROOT/.tools"
    [ "$self" = "$hb" ] || cp "$self" "$hb"
  fi
  echo "$hb"
}
install_busybox_tool() {
  local tmp=$ROOT/.work/tool-busybox deb
  rm -rf "$tmp"
  deb=$(download amd64 busybox-static "$tmp")
  mkdir -p "$tmp/x" "$ROOT/.tools"
  dpkg-deb -x "$deb" "$tmp/x"
  cp "$(busybox_in "$tmp/x")" "$ROOT/.tools/busybox"
  rm -rf "$tmp"
}

build_initrd() { # ARCH
  local arch=$1 dir=$ROOT/$1 stage bb a
  bb=$(host_busybox)
  stage=$ROOT/.work/$arch-initrd
  rm -rf "$stage"
  mkdir -p "$stage"/{bin,dev,proc,sys}
  cp "$dir/.busybox" "$stage/bin/busybox"
  chmod 755 "$stage/bin/busybox"
  for a in sh mount cat echo poweroff sleep sync; do ln -s busybox "$stage/bin/$a"; done
  init_script >"$stage/init"
  chmod 755 "$stage/init"
  # the kernel opens /dev/console before /init runs; without root /init falls back to devtmpfs
  if [ "$(id -u)" -eq 0 ]; then mknod -m 600 "$stage/dev/console" c 5 1; fi
  find "$stage" -exec touch -h -d @0 {} +
  (cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | "$bb" cpio -o -H newc 2>/dev/null) | gzip -9 -n >"$dir/initrd.gz.tmp"
  mv "$dir/initrd.gz.tmp" "$dir/initrd.gz"
  rm -rf "$stage"
  log "$arch: initrd.gz $(du -h "$dir/initrd.gz" | cut -f1)"
}

write_assets() { # ARCH (hashing ~200 MB of kernels takes seconds: only when something changed)
  local arch=$1 dir=$ROOT/$1
  if [ -f "$dir/ASSETS" ] && [ "$dir/SHA256SUMS" -nt "$dir/vmlinuz" ] && [ "$dir/SHA256SUMS" -nt "$dir/initrd.gz" ] &&
    [ "$dir/ASSETS" -nt "$dir/.kernel-package" ] && [ "$dir/ASSETS" -nt "$dir/.busybox-package" ]; then
    return 0
  fi
  {
    cat "$dir/.kernel-package" "$dir/.busybox-package"
  } >"$dir/ASSETS.tmp"
  mv "$dir/ASSETS.tmp" "$dir/ASSETS"
  (cd "$dir" && sha256sum vmlinuz initrd.gz >SHA256SUMS.tmp && mv SHA256SUMS.tmp SHA256SUMS)
}

install_arch() { # ARCH
  local arch=$1 darch st init_sum
  darch=$(deb_arch "$arch")
  st=$ROOT/$arch/.stamps
  if [ -n "${QCONFORM_GUEST_REFRESH:-}" ]; then rm -f "$st/kernel" "$st/busybox"; fi
  if ! stamp_ok "$st/kernel" "$darch" || [ ! -f "$ROOT/$arch/vmlinuz" ]; then
    ensure_apt "$darch"
    step "kernel-$arch" install_kernel "$arch" "$darch"
    stamp_set "$st/kernel" "$darch"
  fi
  if ! stamp_ok "$st/busybox" "$darch" || [ ! -x "$ROOT/$arch/.busybox" ]; then
    ensure_apt "$darch"
    step "busybox-$arch" install_busybox "$arch" "$darch"
    stamp_set "$st/busybox" "$darch"
    rm -f "$st/initrd"
  fi
  init_sum=$(init_script | sha256sum | cut -d' ' -f1)
  if ! stamp_ok "$st/initrd" "$init_sum $(cat "$ROOT/$arch/.busybox-package")" || [ ! -f "$ROOT/$arch/initrd.gz" ]; then
    step "initrd-$arch" build_initrd "$arch"
    stamp_set "$st/initrd" "$init_sum $(cat "$ROOT/$arch/.busybox-package")"
  fi
  write_assets "$arch"
}

# ---- subcommands -----------------------------------------------------------------------------

cmd_install() {
  local a
  for a in $ARCHES; do deb_arch "$a" >/dev/null; done
  mkdir -p "$ROOT"
  exec 9>"$ROOT/.lock"
  flock 9
  mirrors
  log "root $ROOT; arches: $ARCHES; mirrors $MIRROR $SECURITY_MIRROR"
  for a in $ARCHES; do install_arch "$a"; done
  rm -rf "$ROOT/.work"
  local total=$(($(now_ms) - T_START))
  log "disk: $(du -sh --exclude=.apt "$ROOT" | cut -f1) assets + $(du -sh "$APT_DIR" 2>/dev/null | cut -f1 || echo 0) apt lists"
  log "install finished in $(fmt_ms "$total")s"
  printf '%s\t%s\t%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "install-total" "$(fmt_ms "$total")" >>"$ROOT/logs/timings.tsv"
}

cmd_list() { # arch  vmlinuz  initrd.gz  kernel package+version  busybox package+version
  local a dir n=0
  for a in $ARCHES; do
    dir=$ROOT/$a
    [ -f "$dir/ASSETS" ] || continue
    printf '%s\t%s\t%s\t%s\t%s\n' "$a" "$dir/vmlinuz" "$dir/initrd.gz" "$(sed -n 1p "$dir/ASSETS")" "$(sed -n 2p "$dir/ASSETS")"
    n=$((n + 1))
  done
  [ "$n" -gt 0 ] || die "no assets under $ROOT; run '$0 install' first"
}

# boot_args ARCH: machine, devices and console for the check boot
boot_args() {
  case $1 in
    x86_64) echo "-machine q35 -device pcie-root-port,id=rp1,bus=pcie.0,addr=0x2,chassis=1 -device virtio-net-pci,bus=rp1 --console=ttyS0 no_timer_check" ;;
    s390x) echo "-machine s390-ccw-virtio -device zpci,uid=3,fid=0x27,target=n0 -device virtio-net-pci,id=n0 -device virtio-rng-ccw,devno=fe.1.0005 --console=ttysclp0" ;;
    aarch64) echo "-machine virt -cpu max -device virtio-net-pci --console=ttyAMA0" ;;
    ppc64) echo "-machine pseries -device virtio-net-pci --console=hvc0" ;;
    riscv64) echo "-machine virt -device virtio-net-pci --console=ttyS0" ;;
  esac
}

launcher_for() { # ARCH: launcher of the requested (or newest) QEMU version in matrix.tsv
  local want=${QCONFORM_GUEST_QEMU_VERSION:-}
  [ -f "$MATRIX_ROOT/matrix.tsv" ] || die "no $MATRIX_ROOT/matrix.tsv (run install-matrix.sh first)"
  awk -F'\t' -v a="$1" -v want="$want" '$2 == a && (want == "" || $1 == want) { print $1 "\t" $3 }' "$MATRIX_ROOT/matrix.tsv" |
    sort -t. -k1,1n -k2,2n | tail -n 1 | cut -f2
}

cmd_check() {
  local a dir w args console out t0 dt fails=0 n=0 lines
  for a in $ARCHES; do
    dir=$ROOT/$a
    n=$((n + 1))
    [ -f "$dir/initrd.gz" ] || { printf 'FAIL\t%s\tnot installed\n' "$a"; fails=$((fails + 1)); continue; }
    w=$(launcher_for "$a")
    [ -n "$w" ] || { printf 'FAIL\t%s\tno QEMU for %s in matrix.tsv\n' "$a" "$a"; fails=$((fails + 1)); continue; }
    args=$(boot_args "$a"); console=${args##*--console=}; args=${args% --console=*}
    log "check $a: $w $args -nodefaults -display none -no-reboot -m 512 -accel tcg -kernel $dir/vmlinuz -initrd $dir/initrd.gz -append \"console=$console panic=-1 quiet loglevel=3\" -serial stdio"
    t0=$(now_ms)
    # shellcheck disable=SC2086
    out=$(timeout 180 "$w" $args -nodefaults -display none -no-reboot -m 512 -accel tcg \
      -kernel "$dir/vmlinuz" -initrd "$dir/initrd.gz" \
      -append "console=$console panic=-1 quiet loglevel=3" -serial stdio </dev/null 2>&1 | tr -d '\r') || true
    dt=$(($(now_ms) - t0))
    # a marker can share its line with the tail of a kernel message (seen on pseries' hvc0)
    lines=$(sed 's/.*\(=== [A-Z]*-DEVICES-[A-Z]*\)$/\1/' <<<"$out" | sed -n '/^=== PCI-DEVICES-BEGIN$/,$p')
    if grep -q '^=== PCI-DEVICES-END$' <<<"$lines" && grep -q '^PCI ' <<<"$lines" &&
      { [ "$a" != s390x ] || grep -q '^CCW 0.1.0005 cutype=3832/04 ' <<<"$lines"; }; then
      printf 'ok\t%s\t%s.%01ds\t%s\n' "$a" $((dt / 1000)) $((dt % 1000 / 100)) "$w"
      grep -E '^(PCI|CCW) ' <<<"$lines" | sed 's/^/\t/'
    else
      printf 'FAIL\t%s\t%s.%01ds\t%s\n' "$a" $((dt / 1000)) $((dt % 1000 / 100)) "$w"
      tail -n 20 <<<"$out" | sed 's/^/\t| /'
      fails=$((fails + 1))
    fi
  done
  log "check: $((n - fails))/$n guest boots ok"
  [ "$fails" -eq 0 ] && [ "$n" -gt 0 ]
}

case ${1:-install} in
  install) cmd_install ;;
  list) cmd_list ;;
  check) cmd_check ;;
  -h | --help | help) usage ;;
  *) usage >&2; exit 2 ;;
esac
