// The clock binary result files keep time on.
//
// Records carry wall-clock nanoseconds since the Unix epoch (NATS, JSON files). The binary
// format stores them as tv_sec/tv_nsec, which damo up to v2.0.1 reads into Python numbers
// and, in `report heats`, into floats: above 2^53 ns (about 104 days) float arithmetic
// loses nanoseconds and its pixel arithmetic indexes past its rows. The kernel stored a
// monotonic clock (seconds since boot), which stayed small. A binary file written here
// counts nanoseconds from the start of its recording instead: its first record starts at
// 0, and 2^53 ns is reached only after 104 days of one recording (uptime plays no part).
//
// A file that is continued (the recorder or the agent restarting) keeps its clock: the
// file's modification time is taken as the wall-clock time of its last snapshot's end,
// so the time the recording was stopped shows as a gap. When that would not move forward
// (a copied file, a clock stepped back), the new records start where the file ends.

/** Maps a writer's wall-clock record times to a binary file's recording clock. */
export class RecordingClock {
  private constructor(
    /** Wall-clock ns at the file's time 0. */
    readonly epochNs: bigint,
  ) {}

  /** A new file: time 0 is the start of its first record. */
  static startingAt(firstStartNs: bigint): RecordingClock {
    return new RecordingClock(firstStartNs);
  }

  /**
   * A continued file whose last snapshot ends at `lastEndNs` on its clock and which was
   * last modified at wall-clock `mtimeNs`; `firstStartNs` is the first new record's start.
   */
  static continuing(lastEndNs: bigint, mtimeNs: bigint, firstStartNs: bigint): RecordingClock {
    const epoch = mtimeNs - lastEndNs;
    return new RecordingClock(firstStartNs - epoch >= lastEndNs ? epoch : firstStartNs - lastEndNs);
  }

  /** A wall-clock time on the file's clock. */
  toFile(wallNs: bigint): bigint {
    return wallNs - this.epochNs;
  }
}
