# lib.sh: shell helpers shared by the install scripts (sourced, not run).
# The sourcing script sets PROG (the name in log lines) and LOGS (the directory of command
# logs and timings.tsv) before calling these.
# shellcheck shell=bash
# CURRENT_STEP is set here and read by the sourcing script's EXIT trap.
# shellcheck disable=SC2034

# ---- logging and timing ----------------------------------------------------------------------

now_ms() { local t; t=$(date +%s%N); echo $((t / 1000000)); }
log() { printf '[%s %s] %s\n' "$PROG" "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
fmt_ms() { printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)); }

# step NAME CMD...: run one step, log start/end with its wall time, append to logs/timings.tsv.
# (No `|| rc=$?` here: that would switch off `set -e` inside the step. A failing step ends the
# script through errexit and the script's EXIT trap names it from CURRENT_STEP and STEP_T0.)
CURRENT_STEP=
STEP_T0=0
step() {
  local name=$1; shift
  CURRENT_STEP=$name
  STEP_T0=$(now_ms)
  log "step $name: start"
  "$@"
  local dt=$(($(now_ms) - STEP_T0))
  CURRENT_STEP=
  mkdir -p "$LOGS"
  printf '%s\t%s\t%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$name" "$(fmt_ms "$dt")" >>"$LOGS/timings.tsv"
  log "step $name: done in $(fmt_ms "$dt")s"
}

# quietly NAME CMD...: run CMD with its output in logs/NAME.log; show the log tail on failure
quietly() {
  local name=$1; shift
  mkdir -p "$LOGS"
  if ! "$@" >"$LOGS/$name.log" 2>&1; then
    log "command failed: $*"
    tail -n 40 "$LOGS/$name.log" | sed 's/^/    /' >&2
    return 1
  fi
}

# ---- Debian mirror ---------------------------------------------------------------------------

# source_uri SUITE: first URI of an enabled `deb` source (deb822 or one-line) that serves SUITE.
source_uri() {
  local suite=$1 f
  {
    for f in /etc/apt/sources.list.d/*.sources; do
      [ -f "$f" ] || continue
      awk -v want="$suite" '
        function flush() {
          if (types ~ /(^| )deb( |$)/ && enabled != "no" && (" " suites " ") ~ (" " want " ") && uri != "")
            print uri
          types = ""; suites = ""; uri = ""; enabled = ""
        }
        /^[[:space:]]*#/ { next }
        /^[[:space:]]*$/ { flush(); next }
        {
          key = tolower($1); sub(/:$/, "", key); $1 = ""; sub(/^[[:space:]]+/, "")
          if (key == "types") types = $0
          else if (key == "suites") suites = $0
          else if (key == "enabled") enabled = tolower($0)
          else if (key == "uris") { split($0, u, /[[:space:]]+/); uri = u[1] }
        }
        END { flush() }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [ -f "$f" ] || continue
      awk -v want="$suite" '
        $1 != "deb" { next }
        {
          i = 2
          if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
          if ($(i + 1) == want) print $i
        }' "$f"
    done
  } | head -n 1 | sed 's#/*$##'
}

# The script's own help: its header comment, up to `set -euo`.
usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
}

# An EXIT trap for the installers: names the step that failed and how long it ran.
log_failed_step() {
  local rc=$?
  if [ "$rc" -ne 0 ] && [ -n "$CURRENT_STEP" ]; then
    log "step $CURRENT_STEP: FAILED (exit $rc) after $(fmt_ms $(($(now_ms) - STEP_T0)))s"
  fi
}

# A stamp file holds the key of what was installed; a changed key means install again.
stamp_ok() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }
stamp_set() { mkdir -p "$(dirname "$1")"; printf '%s\n' "$2" >"$1.tmp"; mv "$1.tmp" "$1"; }
