#!/usr/bin/env bash
# Make a Debian host ready for Ferry: runc, conmon, CNI plugins, iptables, busybox, and a CRIU
# >= 4.2 behind the fixed wrapper /usr/local/lib/ferry/bin/criu. Run as root. Idempotent: a
# re-run changes nothing and takes well under a second. One line per change; the output of
# apt/dpkg goes to $FERRY_SETUP_LOG, whose tail is shown if a step fails.
# Why each piece is needed: see ARCHITECTURE.md (host requirements).
set -euo pipefail

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export DEBIAN_FRONTEND=noninteractive LC_ALL=C

FERRY_LIB=/usr/local/lib/ferry
CRIU_PREFIX=$FERRY_LIB/criu              # private CRIU from Debian sid (when needed)
CRIU_STAMP=$CRIU_PREFIX/.ferry-installed # written last, inside the prefix: present = complete
CRIU_WRAPPER=$FERRY_LIB/bin/criu         # the engine always runs CRIU through this path
CRIU_MIN=4.2                             # < 4.2 cannot dump AF_INET sockets on kernels >= 6.16
CRIU_SUITE=sid
CRIT_PREFIX=$FERRY_LIB/crit              # crit and pycriu from Debian sid's python3-pycriu
CRIT_WRAPPER=$FERRY_LIB/bin/crit         # runs it with the host's python3 and python3-protobuf
PIPE_MAX=4194304                         # CRIU's lazy-pages transfer asks for a 4 MiB pipe
SYSCTL_CONF=/etc/sysctl.d/90-ferry.conf
LOG=${FERRY_SETUP_LOG:-/var/log/ferry-setup.log}

# gcc and libc6-dev build the tests' memory workload (test/fixtures/memhog.c, linked statically).
# mmdebstrap builds the root filesystems of the tests' real applications (test/helpers/apps.ts).
# gcc also builds ferry-attach and CRIU's tar (below, the latter with zlib1g-dev); tmux is the
# tests' real terminal (test/helpers/terminal.ts).
# docker-registry and skopeo are the real registry peers of the image tests (test/helpers/registry.ts);
# podman is the peer engine of the API and archive tests (podman --remote, Podman's archives),
# always run with a configuration of its own (runc from this list satisfies its runtime).
# python3 runs crit, CRIU's own image decoder (section 2b), which the tests compare Ferry's
# decoding with.
PACKAGES=(runc conmon iptables containernetworking-plugins busybox-static zstd
  openssh-server openssh-client util-linux iproute2 tar gcc libc6-dev zlib1g-dev mmdebstrap tmux
  docker-registry skopeo podman python3 golang-github-containernetworking-plugin-dnsname docker-compose)

# Packages in the dependency closure of criu that the binary does not need: toolchain
# bookkeeping, iconv modules, and anything that is not a library (filtered by name below).
CRIU_SKIP=(libgcc-s1 libc-gconv-modules-extra libc-bin libselinux1 libpcre2-8-0)

say() { echo "setup: $*"; }
# Failures are explained on stderr where they happen, then exit with status 3 (also from inside
# $(...)); the EXIT trap turns that into 1 and explains any other, unexpected, failure.
die() { echo "setup: error: $*" >&2; exit 3; }
log_tail() { echo "setup: last lines of $LOG:" >&2; tail -n 15 "$LOG" | sed 's/^/  | /' >&2; }
fail() { echo "setup: failed: $*" >&2; log_tail; exit 3; }
# run CMD...: run a noisy command with its output in the log; on failure show the log's tail.
run() { "$@" >>"$LOG" 2>&1 || fail "$*"; }

if [[ $(id -u) != 0 ]]; then echo "setup: error: must run as root (try: sudo bash $0)" >&2; exit 1; fi

WORK="" NEW="" err_line=""
on_exit() {
  local rc=$?
  rm -rf ${WORK:+"$WORK"} ${NEW:+"$NEW"}
  if ((rc != 0 && rc != 3)); then
    echo "setup: error: unexpected failure (status $rc${err_line:+, line $err_line})" >&2
    log_tail
  fi
  ((rc == 0)) || exit 1
}
trap on_exit EXIT
trap 'err_line=$LINENO' ERR

mkdir -p "$(dirname "$LOG")" "$FERRY_LIB/bin" /run/lock
exec 9>/run/lock/ferry-setup.lock
flock 9 # one setup at a time
echo "=== ferry setup $(date -Is)" >>"$LOG"

# ---------------------------------------------------------------------------------------------
# 1. Debian packages from the host's own suite.

missing=()
for p in "${PACKAGES[@]}"; do
  [[ $(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null) == ii* ]] || missing+=("$p")
done
if ((${#missing[@]})); then
  # The system sshd is not needed (Ferry runs its own sshd with its own config): when this
  # script is the one installing openssh-server, keep the service from ever starting. Both the
  # systemd unit and the init script honour this file. An sshd that was already installed is
  # left alone: it may be how people log in to this machine.
  if [[ " ${missing[*]} " == *" openssh-server "* && ! -e /etc/ssh/sshd_not_to_be_run ]]; then
    mkdir -p /etc/ssh
    echo "created by ferry scripts/setup.sh: only the sshd binary is needed" \
      >/etc/ssh/sshd_not_to_be_run
    say "system sshd service disabled (/etc/ssh/sshd_not_to_be_run; delete it to enable sshd)"
  fi
  say "installing ${missing[*]} (missing Debian packages)"
  run apt-get update
  run apt-get install -y --no-install-recommends "${missing[@]}"
  # The tests start registries of their own on 127.0.0.1: the package's system service (a
  # registry on every address, port 5000) is not wanted. Only when this script installed it.
  if [[ " ${missing[*]} " == *" docker-registry "* ]]; then
    if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
      systemctl disable --now docker-registry.service >>"$LOG" 2>&1 || true
    elif [[ -x /etc/init.d/docker-registry ]]; then
      /etc/init.d/docker-registry stop >>"$LOG" 2>&1 || true
      update-rc.d docker-registry disable >>"$LOG" 2>&1 || true
    fi
    say "the docker-registry system service is disabled (the tests start their own)"
  fi
fi

# ---------------------------------------------------------------------------------------------
# 2. CRIU >= 4.2 behind $CRIU_WRAPPER.

criu_version() { # prints "4.2.1" for a criu command line, or nothing
  "$@" --version 2>/dev/null | sed -n 's/^Version: *\([0-9][0-9.]*\).*/\1/p' | head -n 1
}
criu_check() { "$@" check >>"$LOG" 2>&1; }

# A criu on PATH that is new enough and works on this kernel is used as is.
system_criu="" why_private="no criu on PATH"
while IFS= read -r c; do
  [[ $(readlink -f "$c") == "$(readlink -f "$CRIU_WRAPPER" 2>/dev/null)" ]] && continue
  v=$(criu_version "$c")
  if [[ -z $v ]]; then
    why_private="$c --version fails"
  elif ! dpkg --compare-versions "$v" ge "$CRIU_MIN"; then
    why_private="$c is $v, older than $CRIU_MIN"
  elif ! criu_check "$c"; then
    why_private="$c $v fails 'criu check'"
  else
    system_criu=$c
  fi
  break # only the first criu on PATH counts, like for any other tool
done < <(type -ap criu)

arch=$(dpkg --print-architecture)
case $arch in
  amd64) triplet=x86_64-linux-gnu ldso=ld-linux-x86-64.so.2 ;;
  arm64) triplet=aarch64-linux-gnu ldso=ld-linux-aarch64.so.1 ;;
  ppc64el) triplet=powerpc64le-linux-gnu ldso=ld64.so.2 ;;
  s390x) triplet=s390x-linux-gnu ldso=ld64.so.1 ;;
  *) triplet="" ldso="" ;;
esac

# The Debian mirror of this machine: URI of the entry for the host's own suite (never the
# -security one). Prints "URI KEYRING" (KEYRING may be empty).
host_mirror() {
  local codename f
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  [[ -n $codename ]] || die "no VERSION_CODENAME in /etc/os-release"
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -r $f ]] || continue
    # deb822: blank-line separated stanzas of "Field: value"
    awk -v suite="$codename" '
      function flush() {
        if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && tolower(enabled) != "no" && uris != "") {
          split(uris, u, " "); print u[1], signed; found = 1; exit
        }
        types = suites = uris = signed = enabled = ""
      }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      /^[A-Za-z-]+:/ {
        key = tolower($1); sub(/:$/, "", key); val = $0; sub(/^[^:]*:[ \t]*/, "", val)
        if (key == "types") types = val; else if (key == "suites") suites = val
        else if (key == "uris") uris = val; else if (key == "enabled") enabled = val
        else if (key == "signed-by" && val ~ /^\//) signed = val
      }
      END { if (!found) flush() }' "$f" | head -n 1 | grep . && return 0
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -r $f ]] || continue
    # one-line: deb [opt=val ...] URI SUITE COMPONENTS...
    sed -e 's/#.*//' "$f" | awk -v suite="$codename" '
      $1 == "deb" {
        line = $0; signed = ""
        if (match(line, /\[[^]]*\]/)) {
          opts = substr(line, RSTART + 1, RLENGTH - 2)
          if (match(opts, /signed-by=[^ ]+/)) signed = substr(opts, RSTART + 10, RLENGTH - 10)
          line = substr(line, 1, index(line, "[") - 1) substr(line, index(line, "]") + 1)
        }
        n = split(line, w, /[ \t]+/)
        if (n >= 3 && w[3] == suite) { print w[2], signed; exit }
      }' | head -n 1 | grep . && return 0
  done
  die "no apt source for suite '$codename' in /etc/apt (needed to find the Debian mirror)"
}

# Private apt, fully separate from the system's: own sources, lists, cache, and an empty
# dpkg status (so the sid closure is resolved on its own, not against installed bookworm).
papt_init() {
  WORK=$(mktemp -d /var/tmp/ferry-criu.XXXXXX)
  mkdir -p "$WORK"/{sources,lists/partial,cache/archives/partial,debs,keyring}
  : >"$WORK/status"
  # apt downloads as the _apt user
  if id _apt >/dev/null 2>&1; then chown -R _apt "$WORK"; chmod 755 "$WORK"; fi
  PAPT=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$WORK/sources"
    -o "Dir::State::Lists=$WORK/lists" -o "Dir::Cache=$WORK/cache"
    -o "Dir::State::status=$WORK/status" -o "Acquire::Languages=none"
    -o "APT::Get::List-Cleanup=false")
}
papt_sources() { # SUITE KEYRING: point the private apt at one suite of the host's mirror
  rm -f "$WORK"/sources/*
  {
    echo "Types: deb"
    echo "URIs: $MIRROR"
    echo "Suites: $1"
    echo "Components: main"
    echo "Architectures: $arch"
    [[ -z $2 ]] || echo "Signed-By: $2"
  } >"$WORK/sources/ferry-$1.sources"
  rm -rf "$WORK"/lists/*_dists_* "$WORK"/cache/*.bin
}

# Update the private apt for sid. If sid's Release is signed by a key the host does not have
# yet (a newer archive key), fetch debian-archive-keyring through a suite that the current
# keyring does verify (trixie, then forky) and retry with that keyring: every step stays
# signature-checked; verification is never turned off. Any other failure (network, a Release
# file past its Valid-Until, ...) is reported as is. The host's apt.conf settings (proxy,
# Check-Valid-Until, ...) apply to the private apt too.
papt_update() { # SUITE: true when its package list was fetched and verified
  apt-get "${PAPT[@]}" update >"$WORK/update.out" 2>&1 || true
  cat "$WORK/update.out" >>"$LOG"
  compgen -G "$WORK/lists/*_dists_${1}_main_binary-*_Packages*" >/dev/null
}
unknown_key() { grep -qE 'NO_PUBKEY|EXPKEYSIG|is not signed' "$WORK/update.out"; }
papt_update_sid() {
  local keyring=$1 suite
  papt_sources "$CRIU_SUITE" "$keyring"
  papt_update "$CRIU_SUITE" && return 0
  unknown_key || fail "cannot fetch the package list of Debian $CRIU_SUITE"
  for suite in trixie forky; do
    papt_sources "$suite" "$keyring"
    papt_update "$suite" || continue
    (cd "$WORK/debs" && apt-get "${PAPT[@]}" download debian-archive-keyring) >>"$LOG" 2>&1 || continue
    rm -rf "$WORK/keyring"/* && dpkg-deb -x "$WORK"/debs/debian-archive-keyring_*.deb "$WORK/keyring"
    rm -f "$WORK"/debs/debian-archive-keyring_*.deb
    keyring=$WORK/keyring/usr/share/keyrings/debian-archive-keyring.gpg
    [[ -s $keyring ]] || continue
    papt_sources "$CRIU_SUITE" "$keyring"
    if papt_update "$CRIU_SUITE"; then
      say "verified Debian $CRIU_SUITE with debian-archive-keyring from $suite (host keyring lacks its key)"
      return 0
    fi
    unknown_key || break
  done
  fail "cannot verify the signature of Debian $CRIU_SUITE with the host's or a newer archive keyring"
}

# Dependency closure of criu + libcompel1 in sid, keeping only the libraries: Depends and
# Pre-Depends, first choice of an alternative, first provider of a virtual package, and no
# descent into packages that are not libraries.
criu_closure() {
  local -A seen=()
  local frontier=(criu libcompel1) next p skip=" ${CRIU_SKIP[*]} "
  while ((${#frontier[@]})); do
    for p in "${frontier[@]}"; do seen[$p]=1; done
    next=()
    while IFS= read -r p; do
      [[ -n ${seen[$p]:-} || $skip == *" $p "* || $p != lib* ]] && continue
      seen[$p]=1
      next+=("$p")
    done < <(apt-cache "${PAPT[@]}" depends --no-recommends --no-suggests --no-conflicts \
      --no-breaks --no-replaces --no-enhances "${frontier[@]}" 2>>"$LOG" | awk '
        /^[^ ]/ { alt = 0; virt = 0; next }            # a package heading
        /^  (\|)?(Pre)?Depends: / {
          inalt = alt; alt = ($1 ~ /^\|/); virt = 0
          if (inalt) next                               # 2nd+ choice of an alternative
          name = $2
          if (name ~ /^</) { virt = 1; next }           # virtual: take its first provider
          sub(/:.*/, "", name); print name; next
        }
        /^    [^ ]/ && virt { name = $1; sub(/:.*/, "", name); print name; virt = 0 }
      ' | sort -u)
    frontier=("${next[@]}")
  done
  printf '%s\n' "${!seen[@]}" | sort
}

# The private apt, pointed at sid of the host's mirror and updated: once per run.
papt_sid() {
  [[ -z $WORK ]] || return 0
  local keyring="" mirror_line
  mirror_line=$(host_mirror)
  MIRROR=${mirror_line%% *}
  keyring=${mirror_line#"$MIRROR"}; keyring=${keyring# }
  # Keyring to trust: FERRY_APT_KEYRING, else the host entry's Signed-By, else the archive
  # keyring, else apt's trusted.gpg.d (no Signed-By).
  keyring=${FERRY_APT_KEYRING:-$keyring}
  [[ -n $keyring || ! -r /usr/share/keyrings/debian-archive-keyring.gpg ]] ||
    keyring=/usr/share/keyrings/debian-archive-keyring.gpg

  papt_init
  papt_update_sid "$keyring"
}

install_private_criu() {
  local ver candidate new old pkgs
  [[ -n $triplet ]] || die "no private CRIU build for architecture $arch; install criu >= $CRIU_MIN"
  papt_sid
  candidate=$(apt-cache "${PAPT[@]}" policy criu 2>>"$LOG" | awk '/Candidate:/ { print $2 }')
  [[ -n $candidate && $candidate != "(none)" ]] || die "Debian $CRIU_SUITE has no criu package"
  dpkg --compare-versions "$candidate" ge "$CRIU_MIN" ||
    die "Debian $CRIU_SUITE has criu $candidate, older than $CRIU_MIN"

  mapfile -t pkgs < <(criu_closure)
  echo "criu closure: ${pkgs[*]}" >>"$LOG"
  (cd "$WORK/debs" && run apt-get "${PAPT[@]}" download "${pkgs[@]}")

  # Build the prefix next to its final place, verify it, then rename it in: an interrupted
  # run leaves only a .criu.new.* directory (removed by the next run), never a half prefix.
  rm -rf "$FERRY_LIB"/.criu.new.* "$FERRY_LIB"/.criu.old.*
  new=$(mktemp -d "$FERRY_LIB/.criu.new.XXXXXX")
  NEW=$new
  chmod 755 "$new"
  for deb in "$WORK"/debs/*.deb; do run dpkg-deb -x "$deb" "$new"; done
  local ld=$new/usr/lib/$triplet/$ldso
  [[ -e $ld && -x $new/usr/sbin/criu ]] || die "unexpected layout of the $CRIU_SUITE packages in $new"
  ver=$(criu_version "$ld" --library-path "$new/usr/lib/$triplet" "$new/usr/sbin/criu")
  [[ -n $ver ]] || { run "$ld" --library-path "$new/usr/lib/$triplet" "$new/usr/sbin/criu" --version; die "criu $candidate from $CRIU_SUITE does not start"; }
  criu_check "$ld" --library-path "$new/usr/lib/$triplet" "$new/usr/sbin/criu" || fail "criu $ver check"
  printf 'criu %s\nsuite %s\nmirror %s\npackages %s\n' "$ver" "$CRIU_SUITE" "$MIRROR" \
    "$(cd "$WORK/debs" && printf '%s ' ./*.deb)" >"$new/.ferry-installed"
  if [[ -e $CRIU_PREFIX ]]; then
    old=$FERRY_LIB/.criu.old.$$
    mv "$CRIU_PREFIX" "$old"
  fi
  mv "$new" "$CRIU_PREFIX"
  NEW=""
  [[ -z ${old:-} ]] || rm -rf "$old"
  say "installed CRIU $ver from Debian $CRIU_SUITE into $CRIU_PREFIX ($why_private)"
}

# CRIU keeps what it learns about the kernel (~30 ms of probes, iptables runs among them, in
# every dump and restore) in /run/criu.kdat, but only where that is a tmpfs, so that a reboot
# clears it. On hosts whose /run is not one (these machines: ext4) every CRIU run probes again.
# The private CRIU keeps it in /dev/criu.kdat instead: /dev is a tmpfs too (devtmpfs), cleared at
# boot and writable by root only. The path is a string of the same length in the binary; a build
# without that string is left as it is (and probes as before).
patch_kdat_path() {
  local bin=$1 from=/run/criu.kdat to=/dev/criu.kdat n
  n=$(grep -c -a -F "$from" "$bin" || true)
  if ((n == 0)); then
    grep -q -a -F "$to" "$bin" || say "warning: $bin has no $from: CRIU probes the kernel at every run"
    return 0
  fi
  ((n == 1)) || { say "warning: $bin names $from more than once: left unpatched"; return 0; }
  sed "s|$from|$to|" "$bin" >"$bin.kdat-tmp"
  [[ $(stat -c %s "$bin.kdat-tmp") == $(stat -c %s "$bin") ]] || { rm -f "$bin.kdat-tmp"; die "patching $bin changed its size"; }
  chmod --reference="$bin" "$bin.kdat-tmp"
  mv "$bin.kdat-tmp" "$bin"
  say "the private CRIU keeps its kernel facts in $to (a tmpfs), not $from"
}

# CRIU reads each task's rlimits with prlimit(), which for a task of another user needs
# CAP_SYS_RESOURCE; where root lacks it (as here), a container whose process is not root could
# not be checkpointed. A small library preloaded into CRIU answers those reads from
# /proc/PID/limits (scripts/criu-rlimits.c); rebuilt when its source changes.
SHIM_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/criu-rlimits.c
SHIM=$FERRY_LIB/lib/criu-rlimits.so
shim_sum=$(sha256sum "$SHIM_SRC" | cut -d' ' -f1)
if [[ ! -e $SHIM || $(cat "$SHIM.sha256" 2>/dev/null) != "$shim_sum" ]]; then
  mkdir -p "$FERRY_LIB/lib"
  run gcc -shared -fPIC -O2 -Wall -o "$SHIM.tmp" "$SHIM_SRC"
  mv "$SHIM.tmp" "$SHIM"
  echo "$shim_sum" >"$SHIM.sha256"
  say "built $SHIM (CRIU reads another user's rlimits from /proc without CAP_SYS_RESOURCE)"
fi

# Small helper programs in C, each rebuilt when its source changes:
# build_helper NAME WHAT [OUT [GCC ARGS...]] (OUT defaults to $FERRY_LIB/bin/NAME).
build_helper() {
  local src out sum
  src=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$1.c
  out=${3:-$FERRY_LIB/bin/$1}
  sum=$({ cat "$src"; if (($# > 3)); then printf '%s\n' "${@:4}"; fi; } | sha256sum | cut -d' ' -f1)
  if [[ ! -x $out || $(cat "$FERRY_LIB/lib/$1.sha256" 2>/dev/null) != "$sum" ]]; then
    mkdir -p "$FERRY_LIB/lib" "$(dirname "$out")"
    run gcc -O2 -Wall -o "$out.tmp" "$src" "${@:4}"
    mv "$out.tmp" "$out"
    echo "$sum" >"$FERRY_LIB/lib/$1.sha256"
    say "built $out ($2)"
  fi
}
# Bun cannot open conmon's attach socket (SOCK_SEQPACKET): `run -it`, `attach` and `start -ai`
# connect the terminal through ferry-attach. ferry-lo-up is the prestart hook that sets lo up in
# a container's own network namespace (--network none): one small program rather than a shell,
# sed, nsenter and ip.
build_helper ferry-attach "terminals and stdin of containers, through conmon's attach socket"
build_helper ferry-lo-up "loopback up in a container's own network namespace"
# CRIU saves and restores every tmpfs of a container with `tar --gzip`, ~3.5 ms each (tar, then
# gzip), six per container. criu-tar does what those hold (directories, links, device nodes,
# small files) itself, with GNU tar's archive and result, and hands anything else to GNU tar.
# Ferry puts its directory first on the PATH of the CRIU it runs (CRIU runs `tar` by name).
# Static: no dynamic loader at each of its starts.
build_helper criu-tar "the tmpfs mounts of a checkpoint without GNU tar and gzip" \
  "$FERRY_LIB/criu-path/tar" -static -lz

if [[ -n $system_criu ]]; then
  wrapper_body="LD_PRELOAD=$SHIM exec $system_criu \"\$@\""
  wrapper_note="uses the host's criu"
else
  stamp_ok=0
  if [[ -s $CRIU_STAMP && -n $triplet && -x $CRIU_PREFIX/usr/sbin/criu &&
    -e $CRIU_PREFIX/usr/lib/$triplet/$ldso ]]; then
    stamp_ok=1
  fi
  ((stamp_ok)) || install_private_criu
  patch_kdat_path "$CRIU_PREFIX/usr/sbin/criu"
  wrapper_body="exec $CRIU_PREFIX/usr/lib/$triplet/$ldso --preload $SHIM --library-path $CRIU_PREFIX/usr/lib/$triplet $CRIU_PREFIX/usr/sbin/criu \"\$@\""
  wrapper_note="runs the private CRIU from Debian $CRIU_SUITE with its own glibc ($why_private)"
fi
wrapper="#!/bin/sh
# Written by ferry scripts/setup.sh: $wrapper_note.
$wrapper_body"
if [[ ! -x $CRIU_WRAPPER || $(cat "$CRIU_WRAPPER") != "$wrapper" ]]; then
  printf '%s\n' "$wrapper" >"$CRIU_WRAPPER.tmp"
  chmod 755 "$CRIU_WRAPPER.tmp"
  mv "$CRIU_WRAPPER.tmp" "$CRIU_WRAPPER"
  say "wrote $CRIU_WRAPPER: $wrapper_note"
fi
criu_ver=$(criu_version "$CRIU_WRAPPER")
[[ -n $criu_ver ]] || { run "$CRIU_WRAPPER" --version; die "$CRIU_WRAPPER does not run"; }
dpkg --compare-versions "$criu_ver" ge "$CRIU_MIN" || die "$CRIU_WRAPPER is criu $criu_ver, need >= $CRIU_MIN"
criu_check "$CRIU_WRAPPER" || fail "$CRIU_WRAPPER check"

# The options Ferry's own CRIU runs take (the engine names this file in CRIU_CONFIG_FILE; bare
# runc and Podman never see it). The network lock by nftables where this CRIU and kernel have it:
# CRIU's default, iptables, runs iptables-restore/ip6tables-restore five times to unlock a
# restored container's network namespace (~40-55 ms of every restore here), nftables is one
# netlink transaction inside CRIU. A restore uses the method its dump recorded.
CRIU_CONF=$FERRY_LIB/etc/criu.conf
mkdir -p "$FERRY_LIB/etc"
if "$CRIU_WRAPPER" check --feature network_lock_nftables >>"$LOG" 2>&1; then
  conf="network-lock nftables"
  if [[ ! -f $CRIU_CONF || $(cat "$CRIU_CONF") != "$conf" ]]; then
    printf '%s\n' "$conf" >"$CRIU_CONF.tmp" && mv "$CRIU_CONF.tmp" "$CRIU_CONF"
    say "wrote $CRIU_CONF: CRIU locks a container's network with nftables"
  fi
else
  rm -f "$CRIU_CONF"
  say "CRIU locks a container's network with iptables (no nftables lock here: criu check --feature network_lock_nftables)"
fi

# ---------------------------------------------------------------------------------------------
# 2b. crit, CRIU's own image decoder, the way CRIU is installed: sid's python3-pycriu (pure
# Python: crit and pycriu, the same version as the CRIU above) and the host suite's
# python3-protobuf unpacked into $CRIT_PREFIX, run by $CRIT_WRAPPER with the host's python3.
# Nothing goes on the system's Python path. Only the tests use it (Ferry decodes the images itself): a crit that cannot be
# installed or does not run on this Python is a warning, and the comparison test skips.

crit_works() { # WRAPPER: decodes a (minimal) stats image as CRIU writes one
  local probe=$FERRY_LIB/.crit-probe rc=0
  printf '\x40\x59\x10\x55\x06\x33\x09\x57\x00\x00\x00\x00' >"$probe"
  "$1" decode -i "$probe" >>"$LOG" 2>&1 || rc=$?
  rm -f "$probe"
  return $rc
}

install_private_crit() { # on failure sets crit_note to why
  local candidate new
  papt_sid
  candidate=$(apt-cache "${PAPT[@]}" policy python3-pycriu 2>>"$LOG" | awk '/Candidate:/ { print $2 }')
  if [[ -z $candidate || $candidate == "(none)" ]]; then crit_note="Debian $CRIU_SUITE has no python3-pycriu"; return 0; fi
  mkdir -p "$WORK/crit-debs"
  if id _apt >/dev/null 2>&1; then chown _apt "$WORK/crit-debs"; fi
  if ! (cd "$WORK/crit-debs" && apt-get "${PAPT[@]}" download python3-pycriu) >>"$LOG" 2>&1; then
    crit_note="cannot download python3-pycriu $candidate from Debian $CRIU_SUITE"
    return 0
  fi
  # python3-protobuf for the host's python3: from the host's own suite (its apt lists, updated
  # once if they do not know the package yet).
  if ! (cd "$WORK/crit-debs" && apt-get download python3-protobuf) >>"$LOG" 2>&1 &&
    ! { apt-get update >>"$LOG" 2>&1 && (cd "$WORK/crit-debs" && apt-get download python3-protobuf) >>"$LOG" 2>&1; }; then
    crit_note="cannot download python3-protobuf from the host's Debian suite"
    return 0
  fi
  rm -rf "$FERRY_LIB"/.crit.new.*
  new=$(mktemp -d "$FERRY_LIB/.crit.new.XXXXXX")
  NEW=$new
  chmod 755 "$new"
  local deb pkgs=""
  for deb in "$WORK"/crit-debs/*.deb; do
    dpkg-deb -x "$deb" "$new" >>"$LOG" 2>&1 || { crit_note="cannot unpack $(basename "$deb")"; return 0; }
    pkgs+=" $(basename "$deb" .deb)"
  done
  local site=$new/usr/lib/python3/dist-packages
  if [[ ! -d $site/crit || ! -d $site/pycriu || ! -d $site/google/protobuf ]]; then
    crit_note="unexpected layout of python3-pycriu $candidate or python3-protobuf"
    return 0
  fi
  printf 'packages%s\nsuite %s\nmirror %s\n' "$pkgs" "$CRIU_SUITE" "$MIRROR" >"$new/.ferry-installed"
  rm -rf "$CRIT_PREFIX"
  mv "$new" "$CRIT_PREFIX"
  NEW=""
  say "installed crit (python3-pycriu $candidate) from Debian $CRIU_SUITE into $CRIT_PREFIX"
}

crit_wrapper="#!/bin/sh
# Written by ferry scripts/setup.sh: crit from Debian $CRIU_SUITE's python3-pycriu in $CRIT_PREFIX,
# with the host suite's python3-protobuf there too, in its pure-Python form (its C++ part would
# need libprotobuf), run by the host's python3 with only that directory added to its path.
PYTHONPATH=$CRIT_PREFIX/usr/lib/python3/dist-packages PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python exec /usr/bin/python3 -s -m crit \"\$@\""
crit_note="" crit_changed=0
if [[ ! -x /usr/bin/python3 ]]; then
  crit_note="no /usr/bin/python3"
else
  [[ -s $CRIT_PREFIX/.ferry-installed ]] || { install_private_crit; crit_changed=1; }
  if [[ -z $crit_note && ( ! -x $CRIT_WRAPPER || $(cat "$CRIT_WRAPPER") != "$crit_wrapper" ) ]]; then
    printf '%s\n' "$crit_wrapper" >"$CRIT_WRAPPER.tmp"
    chmod 755 "$CRIT_WRAPPER.tmp"
    mv "$CRIT_WRAPPER.tmp" "$CRIT_WRAPPER"
    say "wrote $CRIT_WRAPPER"
    crit_changed=1
  fi
  # Checked when something changed (a re-run stays fast); a crit that fails is removed, so the
  # next run tries again.
  if [[ -z $crit_note ]] && ((crit_changed)) && ! crit_works "$CRIT_WRAPPER"; then
    crit_note="$CRIT_WRAPPER does not run with $(/usr/bin/python3 --version 2>&1) (see $LOG)"
  fi
fi
if [[ -n $crit_note ]]; then
  rm -rf "$CRIT_WRAPPER" "$CRIT_PREFIX"
  say "warning: crit not available: $crit_note; the tests that compare with it skip"
fi

# ---------------------------------------------------------------------------------------------
# 3. sysctl: lazy-pages migration needs 4 MiB pipes, and without CAP_SYS_RESOURCE CRIU cannot
# go over fs.pipe-max-size itself.

cur=$(cat /proc/sys/fs/pipe-max-size)
if ((cur < PIPE_MAX)); then
  echo "$PIPE_MAX" >/proc/sys/fs/pipe-max-size 2>>"$LOG" ||
    die "cannot set fs.pipe-max-size (read-only /proc/sys?); lazy-pages migration needs $PIPE_MAX"
  say "fs.pipe-max-size $cur -> $PIPE_MAX (CRIU lazy pages need a 4 MiB pipe)"
fi
conf="# Written by ferry scripts/setup.sh: CRIU lazy-pages migration needs 4 MiB pipes.
fs.pipe-max-size = $PIPE_MAX"
if [[ ! -f $SYSCTL_CONF || $(cat "$SYSCTL_CONF") != "$conf" ]]; then
  printf '%s\n' "$conf" >"$SYSCTL_CONF"
  say "wrote $SYSCTL_CONF (keeps fs.pipe-max-size = $PIPE_MAX across reboots)"
fi

# ---------------------------------------------------------------------------------------------
# 4. Kernel pieces: overlayfs for root filesystems; bridge, veth and netfilter for CNI and for
# CRIU's network lock. Probed in a throwaway network namespace; modules loaded when missing.

load_modules() { # MODULE...: modprobe what is missing, or explain
  command -v modprobe >/dev/null || die "kernel lacks $* and modprobe is not installed (apt-get install kmod)"
  local m
  for m in "$@"; do
    run modprobe "$m"
    say "loaded kernel module $m (needed by runc/CNI)"
  done
}
grep -qw overlay /proc/filesystems || load_modules overlay
grep -qw overlay /proc/filesystems || die "kernel has no overlayfs"
netprobe() {
  unshare --net sh -c 'ip link add ferry-br0 type bridge && ip link add ferry-v0 type veth peer name ferry-v1 &&
    iptables -w -t filter -L -n >/dev/null' >>"$LOG" 2>&1
}
if ! netprobe; then
  load_modules bridge veth nf_tables
  netprobe || fail "kernel cannot make bridges/veths or iptables rules"
fi
grep -qw cgroup2 /proc/mounts || grep -qw cgroup /proc/mounts ||
  die "no cgroup filesystem mounted under /sys/fs/cgroup (runc needs one)"

# ---------------------------------------------------------------------------------------------
# 4b. Debian's docker CLI 20.10 (API v1.41), the second real client of the API tests (the other
# is the docker CLI on PATH): only usr/bin/docker, extracted from the docker.io package into
# $DOCKER20_DIR. The package is downloaded, never installed: no dockerd, no service.

DOCKER20_DIR=$FERRY_LIB/docker-20.10
DOCKER20=$DOCKER20_DIR/docker
docker20_ok() { [[ -x $DOCKER20 ]] && "$DOCKER20" --version 2>/dev/null | grep -q '^Docker version 20\.10\.'; }
if ! docker20_ok; then
  d=$(mktemp -d /var/tmp/ferry-docker.XXXXXX)
  NEW=$d # removed on exit whatever happens
  if id _apt >/dev/null 2>&1; then chown _apt "$d"; fi # apt downloads as the _apt user
  if ! (cd "$d" && apt-get download docker.io) >>"$LOG" 2>&1; then
    run apt-get update
    (cd "$d" && run apt-get download docker.io)
  fi
  deb=$(find "$d" -maxdepth 1 -name 'docker.io_*.deb' | head -n 1)
  [[ -n $deb ]] || fail "apt-get download docker.io left no package"
  ver=$(dpkg-deb -f "$deb" Version)
  [[ $ver == 20.10.* ]] || die "this suite's docker.io is $ver, not 20.10 (the API tests' second client): skip it or use Debian 12"
  run dpkg-deb -x "$deb" "$d/x"
  [[ -f $d/x/usr/bin/docker ]] || fail "docker.io $ver has no usr/bin/docker"
  mkdir -p "$DOCKER20_DIR"
  install -m 0755 "$d/x/usr/bin/docker" "$DOCKER20.new"
  mv -f "$DOCKER20.new" "$DOCKER20"
  rm -rf "$d"
  NEW=""
  docker20_ok || fail "$DOCKER20 --version does not say 20.10"
  say "docker CLI $ver extracted to $DOCKER20 (client only; dockerd is not installed)"
fi

# ---------------------------------------------------------------------------------------------
# 5. Final check.

runc_ver=$(runc --version 2>/dev/null | sed -n 's/^runc version \([0-9][0-9.]*\).*/\1/p')
conmon_ver=$(conmon --version 2>/dev/null | sed -n 's/^conmon version \([0-9][0-9.]*\).*/\1/p')
[[ -n $runc_ver ]] || die "runc --version failed"
[[ -n $conmon_ver ]] || die "conmon --version failed"
command -v iptables-restore >/dev/null || die "iptables-restore not found"
[[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local ]] || die "CNI plugins missing in /usr/lib/cni"
bb=$(command -v busybox) || die "busybox not found"
bb_ldd=$(ldd "$bb" 2>&1 || true)
[[ $bb_ldd == *"not a dynamic executable"* || $bb_ldd == *"statically linked"* ]] || die "$bb is not static (busybox-static)"

echo "setup: ready (runc $runc_ver, conmon $conmon_ver, criu $criu_ver)"
