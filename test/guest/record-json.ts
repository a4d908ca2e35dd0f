// Aggregation records as compact JSON, for programs in the guest that report what an
// engine saw to the test on the host (through stdout): times as decimal strings (they
// pass 2^53), each region as [start, end, nrAccesses, age].
import type { AggregationRecord } from '../../agent/records/record.js';

export interface RecordJson {
  t: number;
  s: string;
  e: string;
  m: number;
  r: [number, number, number, number][];
}

export function recordToJson(rec: AggregationRecord): RecordJson {
  return {
    t: rec.targetId,
    s: rec.startNs.toString(),
    e: rec.endNs.toString(),
    m: rec.maxNrAccesses,
    r: rec.regions.map((g) => [g.start, g.end, g.nrAccesses, g.age]),
  };
}

export function recordFromJson(j: RecordJson): AggregationRecord {
  return {
    targetId: j.t,
    startNs: BigInt(j.s),
    endNs: BigInt(j.e),
    maxNrAccesses: j.m,
    regions: j.r.map(([start, end, nrAccesses, age]) => ({ start, end, nrAccesses, age })),
  };
}
