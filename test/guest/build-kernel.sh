#!/usr/bin/env bash
# Builds the guest kernel of the test rig: Linux from the Debian source tarball,
# `make tinyconfig`, the options of test/guest/kernel.config merged over it, checked,
# then bzImage. The result is cached under a key made of the fragment and the source
# tarball's identity, so only a change to either rebuilds it.
#
# Usage: test/guest/build-kernel.sh             build if needed, print the image path last
#        test/guest/build-kernel.sh --print-image  print the image path if it is built for the
#                                                current fragment; exit 2 if not built, 3 if
#                                                the last build for this key failed
#        test/guest/build-kernel.sh --force      rebuild even if cached
# Environment: DAMON_RIG_CACHE         cache directory (default ~/.cache/damon-fleet/guest,
#                                     shared by every clone on the machine)
#              DAMON_RIG_KERNEL_SOURCE kernel source tarball (default /usr/src/linux-source-6.12.tar.xz)
#              DAMON_RIG_JOBS          make -j value (default 3)
set -euo pipefail

# The whole script is one function so bash parses all of it before running any: editing
# the file during a (long) build then cannot derail the running build.
main() {
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  cache=${DAMON_RIG_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/damon-fleet/guest}
  source_tar=${DAMON_RIG_KERNEL_SOURCE:-/usr/src/linux-source-6.12.tar.xz}
  fragment=$here/kernel.config
  jobs=${DAMON_RIG_JOBS:-3}

  log() { printf '[kernel %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
  die() { printf '[kernel] error: %s\n' "$*" >&2; exit 1; }

  mode=build
  case "${1:-}" in
    '') ;;
    --print-image) mode=print ;;
    --force) mode=force ;;
    *) die "unknown argument '$1' (expected --print-image or --force)" ;;
  esac

  [[ -f $fragment ]] || die "config fragment $fragment is missing"
  [[ -f $source_tar ]] || die "kernel source tarball $source_tar not found (install the Debian package linux-source-6.12, or set DAMON_RIG_KERNEL_SOURCE)"
  [[ $jobs =~ ^[1-9][0-9]*$ ]] || die "DAMON_RIG_JOBS must be a positive integer, got '$jobs'"

  # The source is identified by name, size and mtime (hashing 150 MB on every run would cost
  # seconds); the image key adds the fragment's content.
  source_id=$(stat -c '%n %s %Y' "$source_tar")
  source_key=$(printf '%s' "$source_id" | sha256sum | cut -c1-12)
  key=$( { cat "$fragment"; printf '\n%s\n' "$source_id"; } | sha256sum | cut -c1-16)

  kdir=$cache/kernel
  image_dir=$kdir/images/$key
  image=$image_dir/bzImage

  if [[ $mode == print ]]; then
    if [[ -f $image ]]; then
      echo "$image"
      exit 0
    fi
    if [[ -f $image_dir/FAILED ]]; then
      echo "the last guest kernel build for this config failed (log: $image_dir/build.log); fix it and run test/guest/build-kernel.sh; log tail:" >&2
      tail -n 20 "$image_dir/build.log" >&2 || true
      exit 3
    fi
    echo "guest kernel not built for the current test/guest/kernel.config (expected $image); run test/guest/build-kernel.sh (about 8 minutes on 2 cores)" >&2
    exit 2
  fi

  if [[ $mode == build && -f $image ]]; then
    log "up to date: $image"
    echo "$image"
    exit 0
  fi

  for tool in make gcc flex bison bc tar xz; do
    command -v "$tool" >/dev/null || die "'$tool' not found; the kernel build needs: make gcc flex bison bc libelf-dev libssl-dev xz-utils"
  done

  mkdir -p "$kdir"
  # One build at a time per cache: a second caller waits, then finds the image built.
  exec 9>"$kdir/lock"
  if ! flock -n 9; then
    log "another build holds $kdir/lock; waiting for it"
    flock 9
    if [[ $mode == build && -f $image ]]; then
      log "up to date: $image"
      echo "$image"
      exit 0
    fi
  fi

  started=$SECONDS
  src_parent=$kdir/src-$source_key
  src=$src_parent/$(basename "$source_tar" .tar.xz)
  build=$kdir/build-$source_key

  if [[ ! -f $src_parent/.extracted ]]; then
    log "extracting $source_tar into $src_parent (about a minute)"
    rm -rf "$src_parent"
    mkdir -p "$src_parent"
    tar -xJf "$source_tar" -C "$src_parent"
    [[ -f $src/Makefile ]] || die "the tarball did not extract to $src (expected a top-level $(basename "$src")/ directory)"
    touch "$src_parent/.extracted"
  fi

  rm -rf "$image_dir"
  mkdir -p "$image_dir" "$build"
  build_log=$image_dir/build.log
  : >"$build_log"

  fail() {
    touch "$image_dir/FAILED"
    printf '[kernel] error: %s\n' "$1" >&2
    printf '[kernel] last 40 lines of %s:\n' "$build_log" >&2
    tail -n 40 "$build_log" >&2
    exit 1
  }

  kmake() { make -C "$src" O="$build" ARCH=x86_64 "$@" >>"$build_log" 2>&1; }

  log "make tinyconfig"
  kmake tinyconfig || fail "make tinyconfig failed"
  log "merging $fragment"
  (cd "$build" && "$src/scripts/kconfig/merge_config.sh" -m -O "$build" "$build/.config" "$fragment") >>"$build_log" 2>&1 \
    || fail "merging the config fragment failed"
  log "make olddefconfig"
  kmake olddefconfig || fail "make olddefconfig failed"

  log "verifying the options of the fragment"
  missing=()
  while IFS= read -r line; do
    if [[ $line =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]]; then
      grep -qxF "$line" "$build/.config" || missing+=("${BASH_REMATCH[1]} (wanted ${BASH_REMATCH[2]}, got $(grep -E "^(# )?${BASH_REMATCH[1]}[= ]" "$build/.config" || echo 'absent'))")
    elif [[ $line =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
      if grep -qE "^${BASH_REMATCH[1]}=" "$build/.config"; then missing+=("${BASH_REMATCH[1]} (wanted unset, got set)"); fi
    fi
  done <"$fragment"
  if ((${#missing[@]} > 0)); then
    touch "$image_dir/FAILED"
    {
      printf '[kernel] error: these options of %s did not end up as written after olddefconfig (a dependency is missing from the fragment, or the option does not exist in this kernel):\n' "$fragment"
      printf '  %s\n' "${missing[@]}"
    } | tee -a "$build_log" >&2
    exit 1
  fi
  cp "$build/.config" "$image_dir/config"

  log "make -j$jobs bzImage (about 8 minutes on 2 cores from scratch); log: $build_log"
  kmake -j"$jobs" bzImage &
  make_pid=$!
  # Progress while make runs: elapsed time, objects compiled so far, the latest step.
  while kill -0 "$make_pid" 2>/dev/null; do
    for _ in $(seq 30); do
      kill -0 "$make_pid" 2>/dev/null || break
      sleep 1
    done
    kill -0 "$make_pid" 2>/dev/null || break
    compiled=$(grep -c '^  CC ' "$build_log" || true)
    last=$(grep -E '^  [A-Z]+ ' "$build_log" | tail -n 1 | sed 's/^ *//' || true)
    log "building: $(((SECONDS - started) / 60))m$(((SECONDS - started) % 60))s, $compiled objects compiled, at: $last"
  done
  if ! wait "$make_pid"; then
    fail "make bzImage failed"
  fi
  [[ -f $build/arch/x86/boot/bzImage ]] || fail "make succeeded but $build/arch/x86/boot/bzImage does not exist"
  cp "$build/arch/x86/boot/bzImage" "$image.tmp"
  mv "$image.tmp" "$image"
  log "built $image ($(stat -c %s "$image") bytes) in $(((SECONDS - started) / 60))m$(((SECONDS - started) % 60))s"
  echo "$image"
}

main "$@"
