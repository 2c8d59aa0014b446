#!/usr/bin/env bash
# Proof on a pristine system: the README's `make demo` (DEMO_NO_SERVE=1), as root, in a clean
# clone, inside a minimal Debian 12 root built with debootstrap and entered with chroot.
#
#   sudo bash scripts/fresh_machine_check.sh              # a clean clone of HEAD (committed work only)
#   sudo bash scripts/fresh_machine_check.sh --worktree   # HEAD plus the uncommitted files of this checkout
#   options: --rebuild (build the cached root again), --keep (keep the run's root for a look
#            inside, until the next run), --no-local-index (pip inside uses PyPI only, not this
#            machine's local package index)
#
# The pristine root is what a fresh Debian 12 machine has per the README: debootstrap's minbase
# plus python3 (3.11), make, git and ca-certificates -- nothing else. Everything else (python3-venv,
# the JDBC jars, a Java runtime, the Python packages) `make demo` must install itself. The root is
# built once and cached in $FRESH_CACHE (default /var/cache/cxr-fresh, outside the repository);
# each run works on a copy, so every run starts pristine.
#
# What this workplace's network needs is copied in, and nothing else of the host: resolv.conf,
# the CA certificates of the TLS-inspecting proxy (/usr/local/share/ca-certificates/*.crt and the
# bundle), apt's settings for the mirror, /etc/pip.conf and /etc/xdg/pip/ (pip's certificate and
# constraints); the local package index that pip.conf names (/opt/wheels, /opt/pypi*) is mounted
# read-only unless --no-local-index. The demo runs with an empty environment (env -i), not the host's.
#
# Prints PASSED or FAILED with the wall times, exits 0 only when `make demo` exited 0, torch and
# torchvision are absent from the demo's .venv and the demo's terminal output has no WARN, Traceback or
# "unknown parameter". The transcript and the demo's log are kept in var/fresh-machine/.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${FRESH_CACHE:-/var/cache/cxr-fresh}"
SUITE=bookworm
worktree=0 rebuild=0 keep=0 local_index=1
for arg in "$@"; do
  case "$arg" in
    --worktree) worktree=1 ;;
    --rebuild) rebuild=1 ;;
    --keep) keep=1 ;;
    --no-local-index) local_index=0 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "fresh-machine: unknown option '$arg' (see --help)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "fresh-machine: must run as root (debootstrap, mount, chroot): sudo bash $0 $*" >&2; exit 2; }
if ! command -v debootstrap > /dev/null; then  # a fresh CI machine: install it (Debian's own package)
  echo "fresh-machine: installing debootstrap" >&2
  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap; } > /dev/null 2>&1 \
    || { echo "fresh-machine: debootstrap is missing and apt-get could not install it" >&2; exit 2; }
fi
for tool in debootstrap chroot git mount flock findmnt; do
  command -v "$tool" > /dev/null || { echo "fresh-machine: $tool not found" >&2; exit 2; }
done

BASE="$CACHE/$SUITE-minbase"
RECIPE="$SUITE minbase + python3 make git ca-certificates, /etc/hosts (recipe 2)"  # change it to rebuild the cache
RUN="$CACHE/run"
OUT="$REPO/var/fresh-machine"
mkdir -p "$CACHE" "$OUT"
exec 9> "$CACHE/lock"
flock -n 9 || { echo "fresh-machine: another check is running ($CACHE/lock)" >&2; exit 2; }
T0=$SECONDS
log() { printf 'fresh-machine: %s\n' "$*"; }

# -- mounts, always undone ---------------------------------------------------------------------
MOUNTS=()
mount_into() {  # SRC DEST [ro]
  mkdir -p "$2"
  mount --bind "$1" "$2"
  MOUNTS+=("$2")
  if [ "${3:-}" = ro ]; then mount -o remount,bind,ro "$2"; fi
}
cleanup() {
  local root="${CHROOT:-}" p i
  if [ -n "$root" ] && [ -d "$root" ]; then  # processes left inside the root (a failed demo's kernels)
    for p in /proc/[0-9]*; do
      [ "$(readlink "$p/root" 2>/dev/null)" = "$root" ] && kill -KILL "${p#/proc/}" 2>/dev/null || true
    done
  fi
  for (( i=${#MOUNTS[@]}-1; i>=0; i-- )); do
    umount "${MOUNTS[$i]}" 2>/dev/null || umount -l "${MOUNTS[$i]}" 2>/dev/null || true
  done
  MOUNTS=()
  if [ "$keep" = 0 ] && [ "$root" = "$RUN" ]; then remove_root "$RUN" || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

remove_root() {  # DIR: delete a root, never through a mount left inside it by an interrupted run
  local dir="$1" m
  [ -e "$dir" ] || return 0
  { findmnt -rn -o TARGET | grep -E "^$dir(/|$)" || true; } | sort -r | while read -r m; do umount -l "$m" || true; done
  if findmnt -rn -o TARGET | grep -q -E "^$dir(/|$)"; then
    echo "fresh-machine: $dir still has mounts inside; not deleting it" >&2; exit 1
  fi
  rm -rf "$dir"
}

in_root() {  # run a command in the root as a fresh login would: empty environment, root's HOME
  chroot "$CHROOT" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
}

network_into() {  # DIR: what this workplace's network needs, copied from the host
  local root="$1"
  cp -L /etc/resolv.conf "$root/etc/resolv.conf"
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then  # the host's Debian mirror (with updates, security)
    cp /etc/apt/sources.list.d/debian.sources "$root/etc/apt/sources.list.d/debian.sources"
    rm -f "$root/etc/apt/sources.list"
  fi
  for f in /etc/apt/apt.conf.d/99artifact-registry /etc/apt/apt.conf.d/99farm-no-dep11; do
    [ -f "$f" ] && cp "$f" "$root/etc/apt/apt.conf.d/"
  done
  # The proxy's CA: as local certificates (kept when a package regenerates the bundle) and the bundle itself.
  mkdir -p "$root/usr/local/share/ca-certificates" "$root/etc/ssl/certs"
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/" 2>/dev/null || true
  cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  if [ -f /etc/pip.conf ]; then cp /etc/pip.conf "$root/etc/pip.conf"; fi
  if [ -d /etc/xdg/pip ]; then mkdir -p "$root/etc/xdg"; rm -rf "$root/etc/xdg/pip"; cp -r /etc/xdg/pip "$root/etc/xdg/pip"; fi
}

mirror() {  # the Debian mirror apt uses on this machine
  local m=""
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    m="$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' /etc/apt/sources.list.d/debian.sources)"
  fi
  if [ -z "$m" ] && [ -f /etc/apt/sources.list ]; then
    m="$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }' /etc/apt/sources.list)"
  fi
  echo "${FRESH_MIRROR:-${m:-http://deb.debian.org/debian}}"
}

# -- the cached pristine root ------------------------------------------------------------------
if [ "$rebuild" = 1 ] || [ "$(head -n 1 "$BASE/.cxr-pristine" 2>/dev/null)" != "$RECIPE" ]; then
  MIRROR="$(mirror)"
  log "building the pristine root $BASE (debootstrap --variant=minbase $SUITE, $MIRROR)"
  tb=$SECONDS
  remove_root "$BASE.tmp"; remove_root "$BASE"
  debootstrap --variant=minbase "$SUITE" "$BASE.tmp" "$MIRROR" > "$CACHE/debootstrap.log" 2>&1 \
    || { echo "fresh-machine: debootstrap failed; see $CACHE/debootstrap.log" >&2; tail -n 3 "$CACHE/debootstrap.log" >&2; exit 1; }
  CHROOT="$BASE.tmp"
  network_into "$CHROOT"
  mount_into /proc "$CHROOT/proc"
  # A fresh machine per the README: Python 3.11, make and git (and the CA certificates every
  # Debian install has). Not python3-venv, Java or the JDBC jars: `make demo` installs those.
  in_root apt-get update -q > "$CACHE/base-packages.log" 2>&1
  in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    python3 make git ca-certificates >> "$CACHE/base-packages.log" 2>&1 \
    || { echo "fresh-machine: installing python3 make git ca-certificates failed; see $CACHE/base-packages.log" >&2; exit 1; }
  in_root update-ca-certificates >> "$CACHE/base-packages.log" 2>&1
  in_root apt-get clean
  # What the installer (or cloud-init) writes on every machine and debootstrap does not: without
  # /etc/hosts, "localhost" does not resolve (pyspark binds its accumulator server to it).
  printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n' \
    "$(uname -n)" > "$CHROOT/etc/hosts"
  uname -n > "$CHROOT/etc/hostname"
  rm -rf "$CHROOT"/var/lib/apt/lists/*  # a fresh machine has no package lists yet: `make demo` must update them
  cleanup
  in_py="$(chroot "$BASE.tmp" python3 --version 2>&1)"
  printf '%s\n%s, built %s\n' "$RECIPE" "$in_py" "$(date -u +%FT%TZ)" > "$BASE.tmp/.cxr-pristine"
  mv "$BASE.tmp" "$BASE"
  CHROOT=""
  log "pristine root ready in $((SECONDS - tb)) s: $(paste -sd';' "$BASE/.cxr-pristine")"
else
  log "pristine root from the cache $BASE: $(paste -sd';' "$BASE/.cxr-pristine")"
fi

# -- this run's copy, the network settings, a clean clone --------------------------------------
remove_root "$RUN"
cp -a "$BASE" "$RUN"
CHROOT="$RUN"
network_into "$CHROOT"
CLONE="$CHROOT/root/cxr"
head="$(git -C "$REPO" rev-parse --short HEAD)"
git clone -q --no-hardlinks "$REPO" "$CLONE"
what="clean clone of HEAD $head"
if [ "$worktree" = 1 ]; then  # uncommitted files of this checkout on top (tracked and untracked, not ignored)
  (cd "$REPO" && git ls-files -z --deleted) | (cd "$CLONE" && xargs -0 -r rm -f --)
  (cd "$REPO" && git ls-files -z -co --exclude-standard | while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done \
     | tar --null -T - -cf -) | tar -xf - -C "$CLONE"
  what="HEAD $head + uncommitted files (--worktree)"
fi
mount_into /proc "$CHROOT/proc"
mount_into /dev "$CHROOT/dev"
if mountpoint -q /dev/shm; then mount_into /dev/shm "$CHROOT/dev/shm"; fi
mount_into /sys "$CHROOT/sys" ro
if [ "$local_index" = 1 ]; then
  for d in /opt/wheels /opt/pypi /opt/pypi-more; do [ -d "$d" ] && mount_into "$d" "$CHROOT$d" ro; done
fi

# -- the README's command, timed ---------------------------------------------------------------
log "running \`make demo\` (DEMO_NO_SERVE=1) as root in $CHROOT/root/cxr: $what"
td=$SECONDS
rc=0
in_root bash -c 'cd /root/cxr && DEMO_NO_SERVE=1 make demo' > "$OUT/terminal.txt" 2>&1 || rc=$?
demo_s=$((SECONDS - td))
sed 's/^/  | /' "$OUT/terminal.txt"
cp "$CLONE/var/demo.log" "$OUT/demo.log" 2>/dev/null || true

problems=()
[ $rc -eq 0 ] || problems+=("make demo exited $rc")
if [ -x "$CLONE/.venv/bin/python" ]; then
  if in_root /root/cxr/.venv/bin/python -c 'import importlib.util as u, sys; sys.exit(any(u.find_spec(m) for m in ("torch", "torchvision")))'; then
    :
  else
    problems+=("torch or torchvision is installed in the demo's .venv")
  fi
  venv_mb="$(du -sm "$CLONE/.venv" | cut -f1)"
else
  venv_mb="-"
  problems+=("no .venv was made")
fi
if grep -n -E 'WARN|Traceback|unknown parameter' "$OUT/terminal.txt" > "$OUT/noise.txt"; then
  problems+=("the terminal output has $(wc -l < "$OUT/noise.txt") line(s) with WARN/Traceback/unknown parameter (see $OUT/noise.txt)")
fi
total_s=$((SECONDS - T0))
if [ ${#problems[@]} -eq 0 ]; then
  log "PASSED: make demo exited 0 in ${demo_s} s (this check: ${total_s} s in all); .venv ${venv_mb} MB without torch; $what"
  log "transcript and the demo's log: $OUT/terminal.txt, $OUT/demo.log"
  exit 0
fi
for p in "${problems[@]}"; do log "FAILED: $p"; done
log "make demo ran ${demo_s} s (this check: ${total_s} s); transcript and log: $OUT/terminal.txt, $OUT/demo.log"
[ "$keep" = 1 ] && log "the run's root is kept for a look inside: $RUN (chroot $RUN)"
exit 1
