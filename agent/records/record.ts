// One aggregation record: what a target's regions looked like at the end of one
// aggregation interval. The unit every writer, publisher and consumer shares.
export interface RegionRecord {
  start: number;
  end: number;
  nrAccesses: number;
  /** In aggregation intervals. */
  age: number;
}

export interface AggregationRecord {
  targetId: number;
  /** Wall-clock nanoseconds since the Unix epoch at the start of the aggregation interval. */
  startNs: bigint;
  /** Wall-clock nanoseconds since the Unix epoch at the end of the aggregation interval. */
  endNs: bigint;
  /** aggregation interval / sampling interval: the largest nrAccesses possible. */
  maxNrAccesses: number;
  /** The sampling interval the samples were taken at (tuned by an intervals goal); absent where unknown. */
  samplingUs?: number;
  regions: RegionRecord[];
}
