// The Prometheus endpoint of the controller and the agents: GET /metrics on its own HTTP
// listener (--metrics HOST:PORT), off unless asked for. The figures carry no secret, but
// they name sessions and hosts: the listener binds loopback unless given another address
// (docs/metrics.md says how to protect a wider one).
import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';
import { OptionError, parseHostPort } from './cli-values.js';
import { errorMessage, type BasicLogger as Logger } from './log.js';

export const METRICS_PATH = '/metrics';
/** The ports the docs suggest: one above each gRPC port's neighbours (7100 controller, 7101 agent). */
export const SUGGESTED_METRICS_PORTS = { controller: 7102, agent: 7103 } as const;

/**
 * --metrics: "HOST:PORT", "[::1]:PORT", or a bare PORT (on 127.0.0.1). ":PORT" (every
 * interface) is refused: say 0.0.0.0 or [::] to mean it.
 */
export function parseMetricsAddress(text: string): { host: string; port: number } {
  if (/^\d{1,5}$/.test(text)) return checkPort({ host: '127.0.0.1', port: Number(text) }, text);
  const a = parseHostPort('--metrics', text);
  if (a.host === '') throw new OptionError(`--metrics ${text}: name the address (127.0.0.1:PORT, or 0.0.0.0:PORT for every interface)`);
  return checkPort(a, text);
}

function checkPort(a: { host: string; port: number }, text: string): { host: string; port: number } {
  if (a.port > 65535) throw new OptionError(`--metrics ${text}: port out of range`);
  return a;
}

export interface MetricsServer {
  /** "host:port" bound. */
  readonly address: string;
  readonly port: number;
  close(): Promise<void>;
}

/** Serves `registry` at GET /metrics on host:port (port 0 picks one); resolves once bound. */
export async function startMetricsServer(registry: Registry, at: { host: string; port: number }, log: Logger): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (path !== METRICS_PATH) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found; metrics are at ${METRICS_PATH}\n`);
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('only GET\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(req.method === 'HEAD' ? undefined : text),
      (err: unknown) => {
        log.error(`metrics: collecting failed: ${errorMessage(err)}`);
        res.writeHead(500, { 'content-type': 'text/plain' }).end('collecting metrics failed\n');
      },
    );
  });
  // A scrape is one short request: slow or idle clients do not hold sockets.
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new Error(`--metrics ${at.host}:${at.port}: ${errorMessage(err)}`)));
    server.listen(at.port, at.host, () => resolve());
  });
  const bound = server.address();
  const port = typeof bound === 'object' && bound ? bound.port : at.port;
  const address = `${at.host.includes(':') ? `[${at.host}]` : at.host}:${port}`;
  log.info(`metrics at http://${address}${METRICS_PATH}`);
  return {
    address,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
