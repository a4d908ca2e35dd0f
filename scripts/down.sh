#!/usr/bin/env bash
# Stops what scripts/up.sh started (agent, controller, nats-server), in that order.
set -uo pipefail
cd "$(dirname "$0")/.."
RUN="$PWD/.run"
for name in agent controller nats; do
  f="$RUN/$name.pid"
  [ -f "$f" ] || continue
  pid="$(cat "$f")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    echo "down: stopped $name (pid $pid)"
  fi
  rm -f "$f"
done
