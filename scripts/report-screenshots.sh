#!/usr/bin/env bash
# Redraws the README's pictures, docs/heatmap.png and docs/wss.png: records the simulated
# hot5 workload (a 4 GiB mapping whose hot 5% moves every 4 s) with the engine for 12 s,
# then draws it with `damon-fleet report`. Needs `npm run build` first; no root, no
# page_idle. The pictures differ from run to run only as the sampling does.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
node "$repo/bin/damon-fleet.js" record --ops synthetic --workload hot5 --duration 12s --out hot5.json.zlib --quiet
node "$repo/bin/damon-fleet.js" report heatmap hot5.json.zlib --out heatmap --format png
node "$repo/bin/damon-fleet.js" report wss hot5.json.zlib --acc_thres 1,10 --plot wss --format png
cp heatmap-target-1.png "$repo/docs/heatmap.png"
cp wss-target-1.png "$repo/docs/wss.png"
echo "wrote docs/heatmap.png and docs/wss.png"
