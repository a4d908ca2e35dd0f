// Scraping a damon-fleet process's /metrics as Prometheus does.
import type { FleetProcess } from './fleet-processes.js';
import { parseExposition, type Sample } from '../../support/prometheus-text.js';

export { samples, valueOf, type Sample } from '../../support/prometheus-text.js';

/** The metrics address a process logged ("metrics at http://ADDR/metrics"). */
export function metricsAddressOf(p: FleetProcess): string {
  const m = p.log.map((l) => /metrics at http:\/\/([^/\s]+)\/metrics/.exec(l)).find((x) => x);
  if (!m) throw new Error(`${p.name}: no metrics address in its log:\n${p.log.join('\n')}`);
  return m[1];
}

/** GET http://ADDR/metrics, parsed; throws on a status other than 200. */
export async function scrape(address: string): Promise<Sample[]> {
  const res = await fetch(`http://${address}/metrics`);
  const text = await res.text();
  if (res.status !== 200) throw new Error(`GET /metrics: ${res.status} ${text.slice(0, 200)}`);
  if (!/^text\/plain; version=0\.0\.4/.test(res.headers.get('content-type') ?? '')) throw new Error(`content-type ${res.headers.get('content-type')}`);
  return parseExposition(text);
}
