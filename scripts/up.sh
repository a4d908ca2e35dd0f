#!/usr/bin/env bash
# Installs what this machine lacks, then starts a NATS server with JetStream, the
# controller and one agent on this machine, in the background, with logs and pids in
# .run/. NATS demands a credential: each process has its nkey under .run/creds (made by
# `damon-fleet credentials`, kept across runs). Stop them with `npm run down`.
#   DAMON_NATS_PORT (4222), DAMON_CONTROLLER_PORT (7100), DAMON_AGENT_PORT (7101),
#   DAMON_CONTROLLER_METRICS_PORT (7102), DAMON_AGENT_METRICS_PORT (7103; Prometheus
#   metrics on 127.0.0.1, as deploy/prometheus/prometheus.yml scrapes them),
#   DAMON_HOST (this host's name) change the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN="$PWD/.run"
NATS_PORT="${DAMON_NATS_PORT:-4222}"
CONTROLLER_PORT="${DAMON_CONTROLLER_PORT:-7100}"
AGENT_PORT="${DAMON_AGENT_PORT:-7101}"
CONTROLLER_METRICS_PORT="${DAMON_CONTROLLER_METRICS_PORT:-7102}"
AGENT_METRICS_PORT="${DAMON_AGENT_METRICS_PORT:-7103}"
HOST_NAME="${DAMON_HOST:-$(hostname | tr -c 'A-Za-z0-9.\n-' '-')}"

say() { printf 'up: %s\n' "$*"; }
die() { printf 'up: error: %s\n' "$*" >&2; exit 1; }

if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
  [ "$(id -u)" -eq 0 ] || die "nats-server is not installed; run as root or: sudo apt-get install nats-server"
  say "installing nats-server (Debian package)"
  DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q nats-server >/dev/null
fi
NATS_SERVER="$(command -v nats-server || echo /usr/sbin/nats-server)"

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm packages (npm ci; builds native/ and the TypeScript)"
  npm ci --no-audit --no-fund >/dev/null
else
  npm run --silent build:native && npm run --silent build >/dev/null
fi

mkdir -p "$RUN/nats" "$RUN/agent-data"
CREDS="$RUN/creds"
# Idempotent: keeps the secrets it made before, rewrites the NATS configuration and the
# identities files. The agent registers 127.0.0.1:$AGENT_PORT, so its credential names 127.0.0.1.
node bin/damon-fleet.js credentials --dir "$CREDS" --agent "$HOST_NAME=127.0.0.1" --reader optimizer --optimizer 'reclaim=*' \
    --server-conf "$RUN/nats-server.conf" --listen "127.0.0.1:$NATS_PORT" --store "$RUN/nats" >/dev/null
AGENT_CREDS="$CREDS/agents/$HOST_NAME"

running() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }
wait_port() { # name port pid-name
  for _ in $(seq 1 100); do
    (echo > "/dev/tcp/127.0.0.1/$2") 2>/dev/null && return 0
    running "$3" || die "$1 exited at start; see $RUN/$3.log:
$(tail -n 15 "$RUN/$3.log")"
    sleep 0.1
  done
  die "$1 did not open port $2 within 10 s; see $RUN/$3.log"
}
wait_log() { # name pid-name pattern: a TCP probe of NATS would be logged as a failed login
  for _ in $(seq 1 100); do
    tail -c +"$((LOG_FROM + 1))" "$RUN/$2.log" 2>/dev/null | grep -q "$3" && return 0
    running "$2" || die "$1 exited at start; see $RUN/$2.log:
$(tail -n 15 "$RUN/$2.log")"
    sleep 0.1
  done
  die "$1 was not ready within 10 s; see $RUN/$2.log"
}
start() { # name command...
  local name="$1"; shift
  if running "$name"; then say "$name already running (pid $(cat "$RUN/$name.pid"))"; return 1; fi
  LOG_FROM=$(stat -c %s "$RUN/$name.log" 2>/dev/null || echo 0) # this start's lines come after
  nohup "$@" >>"$RUN/$name.log" 2>&1 &
  echo $! > "$RUN/$name.pid"
}

if running nats; then
  # Picks up users added since it started (a new --agent or --reader above).
  "$NATS_SERVER" --signal reload="$(cat "$RUN/nats.pid")" >/dev/null && say "nats-server configuration reloaded"
fi
start nats "$NATS_SERVER" -c "$RUN/nats-server.conf" && \
  { wait_log nats-server nats "Server is ready"; say "nats-server with JetStream on 127.0.0.1:$NATS_PORT (nkey users only)"; }
start controller node bin/damon-fleet.js controller --listen "127.0.0.1:$CONTROLLER_PORT" \
    --nats "nats://127.0.0.1:$NATS_PORT" --nats-nkey "$CREDS/controller/nats.nk" \
    --identities "$CREDS/controller/identities.json" --agent-key-file "$CREDS/controller/agent-call.key" \
    --metrics "127.0.0.1:$CONTROLLER_METRICS_PORT" && \
  { wait_port controller "$CONTROLLER_PORT" controller; say "controller on 127.0.0.1:$CONTROLLER_PORT"; }
start agent node bin/damon-fleet.js agent --host "$HOST_NAME" --listen "127.0.0.1:$AGENT_PORT" \
    --controller "127.0.0.1:$CONTROLLER_PORT" --nats "nats://127.0.0.1:$NATS_PORT" \
    --nats-nkey "$AGENT_CREDS/nats.nk" --token-file "$AGENT_CREDS/token" --identities "$AGENT_CREDS/identities.json" \
    --data-dir "$RUN/agent-data" --metrics "127.0.0.1:$AGENT_METRICS_PORT" && \
  { wait_port agent "$AGENT_PORT" agent; say "agent for host \"$HOST_NAME\" on 127.0.0.1:$AGENT_PORT"; }

for _ in $(seq 1 50); do
  grep -q "registered" "$RUN/agent.log" 2>/dev/null && break
  sleep 0.1
done
grep -q "registered" "$RUN/agent.log" || die "the agent did not register with the controller; see $RUN/agent.log"

cat <<MSG
up: running. Logs: $RUN/{nats,controller,agent}.log   Stop: npm run down
up: credentials (0600) are in $CREDS, one folder per identity: controller, operator,
    agents/$HOST_NAME, readers/optimizer, optimizers/reclaim. The operator drives the API with its token:
      TOKEN=\$(cat .run/creds/operator/token)
      grpcurl -plaintext -H "authorization: Bearer \$TOKEN" 127.0.0.1:$CONTROLLER_PORT damon.v1.Controller/ListAgents
    The example optimizer pages out what stays cold in session ID (docs/actions.md; --dry-run to only try):
      node dist/examples/optimizer.js --nats nats://127.0.0.1:$NATS_PORT --nats-nkey $CREDS/optimizers/reclaim/nats.nk \\
        --session ID --controller 127.0.0.1:$CONTROLLER_PORT --token-file $CREDS/optimizers/reclaim/token --min-age 30
    Prometheus metrics: http://127.0.0.1:$CONTROLLER_METRICS_PORT/metrics (controller), http://127.0.0.1:$AGENT_METRICS_PORT/metrics (agent);
      deploy/prometheus/prometheus.yml scrapes them, deploy/grafana/damon-fleet.json shows them (docs/metrics.md).
    Another host or reader: node bin/damon-fleet.js credentials --dir $CREDS --agent NEW=ADDR (or --reader NAME),
    then nats-server --signal reload=\$(cat $RUN/nats.pid); the controller picks up new identities by itself.
MSG
