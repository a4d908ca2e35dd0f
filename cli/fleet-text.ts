// Sessions and agents as the fleet commands print them for people (--json prints the API's
// messages instead).
import { SessionState, TargetState, type AgentInfo, type Attributes, type QuarantinedSession, type Session, type TargetStatus } from '../gen/damon/v1/damon.js';
import { DEFAULT_RESULT_FORMAT } from '../common/session-schema.js';
import { ago, cell, duration, table, timestamp } from './text-table.js';

export function sessionStateName(s: SessionState): string {
  return s === SessionState.SESSION_STATE_ON ? 'on' : s === SessionState.SESSION_STATE_OFF ? 'off' : 'unknown';
}

const TARGET_STATES: Partial<Record<TargetState, string>> = {
  [TargetState.TARGET_STATE_IDLE]: 'idle',
  [TargetState.TARGET_STATE_PENDING]: 'pending',
  [TargetState.TARGET_STATE_RUNNING]: 'running',
  [TargetState.TARGET_STATE_EXITED]: 'exited',
  [TargetState.TARGET_STATE_FAILED]: 'failed',
};

export function targetStateName(s: TargetState): string {
  return TARGET_STATES[s] ?? 'unknown';
}

/** The status of host:pid in a session, if it reports one. */
export function statusOf(s: Session, host: string, pid: number): TargetStatus | undefined {
  return s.targetStatus.find((t) => t.target?.host === host && t.target.pid === pid);
}

/** Beyond the text form: the result format, and an intervals goal when there is one. */
export function attrsExtras(a: Attributes | undefined): string[] {
  const out = [`result format ${cell(a?.resultFormat || DEFAULT_RESULT_FORMAT)}`];
  const g = a?.intervalsGoal;
  if (g) {
    out.push(
      `intervals goal: ${g.accessBp} bp of accesses every ${g.aggrs} aggregations, ` +
        `sampling within ${duration(Number(g.minSampleUs))}..${duration(Number(g.maxSampleUs))}`,
    );
  }
  return out;
}

function operationsText(s: Pick<Session, 'operations' | 'syntheticWorkload'>): string {
  if (!s.operations) return 'best each host supports';
  return s.syntheticWorkload ? `${cell(s.operations)} (workload ${cell(s.syntheticWorkload, 60)})` : cell(s.operations);
}

/** Each target with its status, as a table. */
export function targetsTable(s: Session, indent = ''): string[] {
  const rows = s.targets.map((t) => {
    const st = statusOf(s, t.host, t.pid);
    return [cell(t.host), String(t.pid), st ? targetStateName(st.state) : '-', cell(st?.operations ?? '') || '-', cell(st?.message ?? '')];
  });
  return table(['HOST', 'PID', 'STATE', 'OPERATIONS', 'MESSAGE'], rows, indent);
}

/** The schemes in their text form, one line each, and each host's statistics of them. */
export function schemesText(s: Pick<Session, 'schemesText' | 'schemeStats'>, indent = ''): string[] {
  const lines = s.schemesText.split('\n').filter((l) => l !== '').map((l, i) => `${indent}${i}: ${cell(l, 200)}`);
  if (s.schemeStats.length > 0) {
    const rows = s.schemeStats.flatMap((h) =>
      h.schemes.map((st) => [
        cell(h.host),
        String(st.scheme),
        st.active ? 'yes' : 'no',
        String(st.nrTried),
        bytesText(st.szTried),
        String(st.nrApplied),
        bytesText(st.szApplied),
        String(st.qtExceeds),
      ]),
    );
    lines.push(...table(['HOST', 'SCHEME', 'ACTIVE', 'TRIED', 'TRIED BYTES', 'APPLIED', 'APPLIED BYTES', 'QUOTA EXCEEDED'], rows, indent));
  }
  return lines;
}

/** Bytes for people: binary units above 1 KiB, exact (as a bigint counter) below. */
function bytesText(n: bigint): string {
  const units = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
  if (n < 1024n) return `${n} B`;
  let v = Number(n) / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(1)} ${units[u]}`;
}

/** One session, whole. */
export function sessionText(s: Session, now = Date.now()): string[] {
  const lines = [
    `session ${cell(s.id)}: ${sessionStateName(s.state)}` +
      (s.state !== SessionState.SESSION_STATE_ON && s.offReason ? ` (${cell(s.offReason)})` : ''),
    `  attrs       ${cell(s.attrsText)}`,
    ...attrsExtras(s.attrs).map((x) => `              ${x}`),
    `  operations  ${operationsText(s)}`,
    `  revision    ${s.revision}, created ${timestamp(Number(s.createdAtMs))}, updated ${ago(Number(s.updatedAtMs), now)}`,
  ];
  const schemes = schemesText(s, '    ');
  if (s.schemesText === '') lines.push('  schemes     none');
  else lines.push(`  schemes     ${s.attrs?.schemes.length ?? 0} (DAMON's text form; docs/schemes.md)`, ...schemes);
  if (s.targets.length === 0) lines.push('  targets     none');
  else lines.push(`  targets     ${s.targets.length}`, ...targetsTable(s, '    '));
  return lines;
}

/** Sessions in a table, then the quarantined entries. */
export function sessionsTable(sessions: readonly Session[], quarantined: readonly QuarantinedSession[], now = Date.now()): string[] {
  const lines = sessions.length === 0 && quarantined.length === 0 ? ['no sessions'] : [];
  if (sessions.length > 0) {
    const rows = sessions.map((s) => {
      const running = s.targetStatus.filter((t) => t.state === TargetState.TARGET_STATE_RUNNING).length;
      const targets = s.state === SessionState.SESSION_STATE_ON ? `${running}/${s.targets.length} running` : String(s.targets.length);
      return [cell(s.id), sessionStateName(s.state), targets, s.operations ? cell(s.operations) : 'best', ago(Number(s.updatedAtMs), now), cell(s.attrsText)];
    });
    lines.push(...table(['ID', 'STATE', 'TARGETS', 'OPERATIONS', 'UPDATED', 'ATTRS'], rows));
  }
  if (quarantined.length > 0) {
    lines.push('', "quarantined entries (they break the session schema: never run; 'sessions delete ID' removes one):");
    lines.push(...table(['ID', 'REVISION', 'ERROR'], quarantined.map((q) => [cell(q.id), String(q.revision), cell(q.error)]), '  '));
  }
  return lines;
}

/** Agents in a table: health is the lease (live while heartbeats come), then what each host lacks. */
export function agentsTable(agents: readonly AgentInfo[], now = Date.now()): string[] {
  if (agents.length === 0) return ['no agents registered'];
  const sorted = [...agents].sort((a, b) => (a.host < b.host ? -1 : a.host > b.host ? 1 : 0));
  const rows = sorted.map((a) => [
    cell(a.host),
    cell(a.address),
    a.live ? 'live' : 'lease expired',
    a.lastHeartbeatMs > 0n ? ago(Number(a.lastHeartbeatMs), now) : 'never',
    a.operations.length ? a.operations.map((o) => cell(o)).join(',') : 'none',
    cell(a.instanceId, 36),
  ]);
  const lines = table(['HOST', 'ADDRESS', 'HEALTH', 'LAST HEARTBEAT', 'OPERATIONS', 'INSTANCE'], rows);
  const missing = sorted.flatMap((a) => a.unavailable.map((u) => `  ${cell(a.host)}: ${cell(u)}`));
  if (missing.length > 0) lines.push('', 'unavailable operations:', ...missing);
  return lines;
}
