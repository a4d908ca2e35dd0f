#!/usr/bin/env bash
# Runs before `npm test`: installs the Debian packages the tests need (when missing) and
# builds the guest kernel (cached: instant when test/guest/kernel.config is unchanged;
# about 10 minutes on 2 cores the first time).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for pkg in $(grep -v '^#' scripts/test-packages.txt); do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "test-deps: missing Debian packages: ${missing[*]}" >&2
    echo "test-deps: install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "test-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q "${missing[@]}"
fi

bash test/guest/build-kernel.sh
