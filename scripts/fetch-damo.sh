#!/bin/sh
# Checks out the damo releases the compatibility tests run (test/support/damo.ts):
# v2.0.1 (the last to read DAMON's binary format) and v3.3.0, into
# ${DAMO_DIR:-~/.cache/damon-fleet/damo}/<tag>. Needs network once; the tests skip,
# saying so, where they are absent.
set -eu
dir=${DAMO_DIR:-$HOME/.cache/damon-fleet/damo}
mkdir -p "$dir"
[ -d "$dir/repo.git" ] || git clone --bare https://github.com/damonitor/damo "$dir/repo.git"
for tag in v2.0.1 v3.3.0; do
  rm -rf "$dir/$tag"
  mkdir -p "$dir/$tag"
  git --git-dir="$dir/repo.git" archive "$tag" | tar -x -C "$dir/$tag"
done
python3 "$dir/v2.0.1/damo" version
python3 "$dir/v3.3.0/damo" version
