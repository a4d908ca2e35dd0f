// Agent.ApplyAction (docs/actions.md): the controller's forwarding of an optimizer's action
// on one target of a session this agent runs. The requested range is clipped to the
// target's mappings as they are now (/proc/PID/maps; the vDSO's special mappings, which no
// advice applies to, are left out), nothing silently: what was left out is counted; the
// advice goes through process_madvise(2) on a pidfd (a dry run stops just before). Every
// action that reached the target (done, dry run, refused by the kernel or the process) is
// an ActionEvent on damon.actions.<session>.<host>. The session is never changed.
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { RpcError, statusName } from '../../common/grpc-server.js';
import { actionName, checkActionRequest, formatRange, type ActionAdvice } from '../../common/actions.js';
import { errorMessage, type Logger } from '../../common/log.js';
import { actionsSubject } from '../../common/subjects.js';
import { ActionEvent, TargetState, type ActionResult, type AddressRange, type ApplyActionRequest, type ObservedSession } from '../../gen/damon/v1/damon.js';
import { parseMaps } from '../ops/vaddr-regions.js';
import { MadviseError, adviceSupported, openProcess, processMadvise, type ProcessHandle } from '../ops/process-madvise.js';

/** What the runner needs of a JetStream client: a publish acknowledged by the stream. */
export interface ActionEventSink {
  publish(subject: string, payload: Uint8Array, opts: { msgID: string; timeout: number }): Promise<unknown>;
}

/** process_madvise and the pidfd, replaceable in unit tests. */
export interface MadviseOps {
  openProcess(pid: number): ProcessHandle;
  processMadvise(h: ProcessHandle, ranges: readonly { start: number; end: number }[], advice: ActionAdvice): { bytes: number };
  adviceSupported(advice: ActionAdvice): boolean;
}

export const NATIVE_MADVISE: MadviseOps = { openProcess, processMadvise, adviceSupported };

/** How long the agent waits for the stream to acknowledge an action's event before answering anyway. */
export const ACTION_EVENT_ACK_MS = 5000;

// Mappings of the kernel's own that no madvise advice applies to (VM_PFNMAP / VM_IO: EINVAL).
const SPECIAL_MAPPINGS = new Set(['[vvar]', '[vvar_vclock]', '[vdso]', '[vsyscall]']);

export interface ActionRunnerDeps {
  host: string;
  instanceId: string;
  /** The sessions this agent runs, as GetState reports them. */
  observed(): ObservedSession[];
  log: Logger;
  madvise?: MadviseOps;
  /** /proc/PID/maps text (ENOENT / ESRCH once the process is gone). */
  readMaps?: (pid: number) => string;
  now?: () => number;
}

/** The part of [start, end) inside `mappings`, in address order, and the bytes outside them. */
export function clipToMappings(
  range: { start: bigint; end: bigint },
  mappings: readonly { start: number; end: number }[],
): { ranges: AddressRange[]; eligible: bigint; clipped: bigint } {
  const ranges: AddressRange[] = [];
  let eligible = 0n;
  for (const m of mappings) {
    const start = BigInt(m.start) > range.start ? BigInt(m.start) : range.start;
    const end = BigInt(m.end) < range.end ? BigInt(m.end) : range.end;
    if (start >= end) continue;
    const last = ranges[ranges.length - 1];
    if (last && last.end === start) last.end = end; // adjacent mappings: one range for the kernel
    else ranges.push({ start, end });
    eligible += end - start;
  }
  return { ranges, eligible, clipped: range.end - range.start - eligible };
}

/** The mappings of maps text that an advice may apply to: all but the kernel's special ones. */
export function advisableMappings(mapsText: string): { start: number; end: number }[] {
  const kept = mapsText.split('\n').filter((line) => !SPECIAL_MAPPINGS.has(line.trim().split(/\s+/)[5] ?? ''));
  return parseMaps(kept.join('\n'));
}

function errnoOf(err: unknown): string | undefined {
  if (err instanceof MadviseError) return err.errno;
  return (err as NodeJS.ErrnoException)?.code;
}

/** A refusal of the kernel or the process as a gRPC status (docs/actions.md has the table). */
export function refusalStatus(errno: string, pid: number, advice: ActionAdvice, detail: string): RpcError {
  switch (errno) {
    case 'ESRCH':
    case 'ENOENT':
      return new RpcError(grpc.status.NOT_FOUND, `process exited: process ${pid} is gone (${detail})`);
    case 'EPERM':
    case 'EACCES':
      return new RpcError(
        grpc.status.FAILED_PRECONDITION,
        `the kernel refused process_madvise on process ${pid} (${errno}): the agent needs CAP_SYS_NICE and ptrace read access ` +
          `(PTRACE_MODE_READ: same user or CAP_SYS_PTRACE, and Yama's ptrace_scope allowing it) to the process (${detail})`,
      );
    case 'EINVAL':
      return new RpcError(
        grpc.status.INVALID_ARGUMENT,
        `the kernel refused ${advice} on part of the range (EINVAL: memory that advice cannot apply to, such as locked, ` +
          `huge TLB or PFN-mapped pages) (${detail})`,
      );
    case 'ENOMEM':
      return new RpcError(grpc.status.ABORTED, `the target's mappings changed while acting (ENOMEM: part of the range is no longer mapped); retry (${detail})`);
    case 'EAGAIN':
      return new RpcError(grpc.status.UNAVAILABLE, `the kernel was short of resources (EAGAIN); retry (${detail})`);
    case 'ENOLIB':
      return new RpcError(grpc.status.FAILED_PRECONDITION, `this agent cannot advise processes: ${detail}`);
    default:
      return new RpcError(grpc.status.FAILED_PRECONDITION, `the kernel refused ${advice} on process ${pid} (${errno}) (${detail})`);
  }
}

export class ActionRunner {
  private sink: ActionEventSink | undefined;
  private readonly madvise: MadviseOps;
  private readonly readMaps: (pid: number) => string;
  private readonly now: () => number;

  constructor(private readonly d: ActionRunnerDeps) {
    this.madvise = d.madvise ?? NATIVE_MADVISE;
    this.readMaps = d.readMaps ?? ((pid) => readFileSync(`/proc/${pid}/maps`, 'utf8'));
    this.now = d.now ?? Date.now;
  }

  /** Publishes events through `sink` from now on (the agent's NATS connection came up). */
  setSink(sink: ActionEventSink): void {
    this.sink = sink;
  }

  async apply(call: ApplyActionRequest): Promise<ActionResult> {
    const req = call.request;
    if (!req) throw new RpcError(grpc.status.INVALID_ARGUMENT, 'request: required');
    const advice = checkActionRequest(req);
    if (req.host !== this.d.host) {
      throw new RpcError(grpc.status.INVALID_ARGUMENT, `host: this agent is "${this.d.host}", not "${req.host}"`);
    }
    const session = this.d.observed().find((s) => s.sessionId === req.sessionId);
    if (!session) throw new RpcError(grpc.status.NOT_FOUND, `session "${req.sessionId}" does not run on host "${this.d.host}"`);
    const target = session.targets.find((t) => t.pid === req.pid);
    if (!target) throw new RpcError(grpc.status.NOT_FOUND, `pid ${req.pid} is not a target of session "${req.sessionId}" on host "${this.d.host}"`);
    if (target.state === TargetState.TARGET_STATE_EXITED) {
      throw new RpcError(grpc.status.NOT_FOUND, `process exited: process ${req.pid} of session "${req.sessionId}" is no longer running`);
    }

    const result: ActionResult = {
      actionId: call.actionId,
      sessionId: req.sessionId,
      host: req.host,
      pid: req.pid,
      action: req.action,
      requested: { start: req.start, end: req.end },
      ranges: [],
      bytesEligible: 0n,
      bytesClipped: req.end - req.start,
      bytesApplied: 0n,
      dryRun: req.dryRun,
      error: '',
      message: '',
      timeMs: BigInt(this.now()),
      requestedBy: call.requestedBy,
      durationUs: 0n,
    };
    const what = `action ${call.actionId} (${call.requestedBy}): ${actionName(req.action)} of ${formatRange(req)} on process ${req.pid} of session ${req.sessionId}`;
    let failure: RpcError | undefined;
    let h: ProcessHandle | undefined;
    try {
      if (!this.madvise.adviceSupported(advice)) {
        throw new RpcError(grpc.status.FAILED_PRECONDITION, `this kernel lacks process_madvise with ${advice} (MADV_${advice.toUpperCase()})`);
      }
      // The pidfd first: the mappings read next are this process's, and the advice goes to it
      // even should the pid be reused meanwhile.
      h = this.madvise.openProcess(req.pid);
      const clip = clipToMappings(req, advisableMappings(this.readMaps(req.pid)));
      result.ranges = clip.ranges;
      result.bytesEligible = clip.eligible;
      result.bytesClipped = clip.clipped;
      if (clip.ranges.length === 0) result.message = 'nothing of the range is mapped (advisably) now';
      else if (!req.dryRun) {
        const t0 = process.hrtime.bigint();
        try {
          result.bytesApplied = BigInt(this.madvise.processMadvise(h, clip.ranges.map((r) => ({ start: Number(r.start), end: Number(r.end) })), advice).bytes);
        } finally {
          result.durationUs = (process.hrtime.bigint() - t0) / 1000n;
        }
      }
    } catch (err) {
      if (err instanceof MadviseError) result.bytesApplied = BigInt(err.bytesAdvised);
      const errno = errnoOf(err);
      failure = err instanceof RpcError ? err : errno !== undefined ? refusalStatus(errno, req.pid, advice, errorMessage(err)) : undefined;
      if (!failure) throw err; // a bug: INTERNAL
      result.error = statusName(failure.code);
      result.message = failure.message;
    } finally {
      h?.close();
    }
    await this.publish(result, what);
    if (failure) {
      this.d.log.info(`${what}: refused: ${failure.message}`);
      throw failure;
    }
    this.d.log.info(
      `${what}: ${req.dryRun ? 'dry run, ' : ''}${result.bytesEligible} bytes in ${result.ranges.length} range(s), ` +
        `${result.bytesClipped} clipped, ${result.bytesApplied} advised`,
    );
    return result;
  }

  /** Publishes the event; a NATS that does not take it is logged and does not undo the answer. */
  private async publish(result: ActionResult, what: string): Promise<void> {
    if (!this.sink) {
      this.d.log.warn(`${what}: no NATS connection; its event is not published`);
      return;
    }
    const data = ActionEvent.encode({ result, agentInstance: this.d.instanceId }).finish();
    try {
      await this.sink.publish(actionsSubject(result.sessionId, result.host), data, { msgID: result.actionId, timeout: ACTION_EVENT_ACK_MS });
    } catch (err) {
      this.d.log.warn(`${what}: its event was not published: ${errorMessage(err)}`);
    }
  }
}
