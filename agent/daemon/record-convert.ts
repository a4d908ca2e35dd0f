// Engine records (one target, one aggregation interval) to the published protobuf form.
import type { AggregationRecord as EngineRecord } from '../records/record.js';
import type { AggregationRecord } from '../../gen/damon/v1/damon.js';

export interface RecordOrigin {
  sessionId: string;
  host: string;
  /** Operations that produced the record ("page_idle", "synthetic", ...). */
  operations: string;
  /** Per session, host and target, from 1; goes on across restarts (spool.ts). */
  sequence: bigint;
  /** This agent process's instance id. */
  agentInstance: string;
}

/** The record without its regions: what the header of the wire form holds. */
export function toProtoHeader(rec: EngineRecord, origin: RecordOrigin): AggregationRecord {
  return {
    sessionId: origin.sessionId,
    host: origin.host,
    pid: rec.targetId,
    startTimeNs: rec.startNs,
    endTimeNs: rec.endNs,
    maxNrAccesses: rec.maxNrAccesses,
    regions: [],
    operations: origin.operations,
    sequence: origin.sequence,
    agentInstance: origin.agentInstance,
    droppedBefore: 0n,
    packed: undefined,
    ...(rec.samplingUs !== undefined && { samplingIntervalUs: BigInt(rec.samplingUs) }),
  };
}

export function toProtoRecord(rec: EngineRecord, origin: RecordOrigin): AggregationRecord {
  return {
    ...toProtoHeader(rec, origin),
    regions: rec.regions.map((r) => ({ start: BigInt(r.start), end: BigInt(r.end), nrAccesses: r.nrAccesses, age: r.age })),
  };
}
