// The capabilities deploy/kubernetes/agent.yaml and deploy/systemd's agent unit give the
// agent, tried on this host's kernel: a process bounded to exactly that set (setpriv, as
// root) reads another user's /proc/PID/pagemap with its page frame numbers, which is what
// the page_idle operations need, and advises it with process_madvise (the schemes' actions,
// through agent/ops/process-madvise.ts); without CAP_DAC_READ_SEARCH the open is refused,
// without CAP_SYS_ADMIN the frame numbers read as zero, without CAP_SYS_NICE the advice. CAP_SYS_PTRACE is the kernel's rule for
// maps and pagemap of other users' and non-dumpable processes (__ptrace_may_access); the
// kernel this was written on let those reads through without it, so its absence is not
// tried here. Needs root and setpriv; skipped visibly otherwise.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { parse } from 'yaml';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const SETPRIV = '/usr/bin/setpriv';
const NOBODY = 65534;

const agentYaml = parse(readFileSync(join(ROOT, 'deploy', 'kubernetes', 'agent.yaml'), 'utf8'));
const CAPS: string[] = agentYaml.spec.template.spec.containers[0].securityContext.capabilities.add;

// Run with the bounded set: opens the target's maps and pagemap as the page_idle operations
// do, and reports the first present page's frame number (bits 0-54 of its entry).
// And advises that mapping MADV_COLD (harmless: the pages only move to the inactive list).
const MADVISE_JS = join(ROOT, 'dist', 'agent', 'ops', 'process-madvise.js');
const PROBE = `
import fs from 'node:fs';
const { openProcess, processMadvise } = await import(${JSON.stringify(MADVISE_JS)});
const pid = Number(process.argv[1]);
const out = {};
const first = fs.readFileSync('/proc/' + pid + '/maps', 'utf8').split('\\n')[0];
const [start, end] = first.split(' ')[0].split('-').map((h) => BigInt('0x' + h));
try {
  const fd = fs.openSync('/proc/' + pid + '/pagemap', 'r');
  const buf = Buffer.alloc(8);
  out.present = false;
  for (let a = start; a < end; a += 4096n) {
    fs.readSync(fd, buf, 0, 8, Number((a / 4096n) * 8n));
    const e = buf.readBigUInt64LE();
    if (e >> 63n) { out.present = true; out.pfn = String(e & ((1n << 55n) - 1n)); break; }
  }
  fs.closeSync(fd);
} catch (err) {
  out.error = err.code;
}
try {
  const h = openProcess(pid);
  try {
    out.advised = processMadvise(h, [{ start: Number(start), end: Number(end) }], 'cold').bytes;
  } finally {
    h.close();
  }
} catch (err) {
  out.madvise = err.errno ?? err.message;
}
process.stdout.write(JSON.stringify(out));
`;

function probe(caps: string[], pid: number): { error?: string; present?: boolean; pfn?: string; advised?: number; madvise?: string } {
  const bounding = ['-all', ...caps.map((c) => `+${c.toLowerCase()}`)].join(',');
  const r = spawnSync(SETPRIV, [`--bounding-set=${bounding}`, '--inh-caps=-all', '--', process.execPath, '--input-type=module', '-e', PROBE, String(pid)], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

test("the agent's capabilities, and no fewer, read another user's pagemap with its frame numbers and advise its memory", async (t) => {
  if (process.getuid?.() !== 0 || !existsSync(SETPRIV)) {
    t.skip(`needs root and ${SETPRIV}: the capability set was not tried on this kernel`);
    return;
  }
  assert.deepEqual([...CAPS].sort(), ['DAC_READ_SEARCH', 'SYS_ADMIN', 'SYS_NICE', 'SYS_PTRACE']);
  // A target of another user; sleep's first mapping (its text) is resident.
  const target = spawn(SETPRIV, [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', 'sleep', '60'], { stdio: 'ignore' });
  try {
    const deadline = Date.now() + 30_000;
    while (readFileSync(`/proc/${target.pid}/status`, 'utf8').match(/^Uid:\s+(\d+)/m)?.[1] !== String(NOBODY) || !readFileSync(`/proc/${target.pid}/cmdline`, 'utf8').startsWith('sleep')) {
      assert.ok(Date.now() < deadline, 'the target runs as nobody');
      await new Promise((r) => setTimeout(r, 50));
    }
    const full = probe(CAPS, target.pid!);
    assert.equal(full.error, undefined);
    assert.equal(full.present, true);
    assert.notEqual(full.pfn, '0', 'frame numbers visible');
    assert.equal(full.madvise, undefined, 'process_madvise accepted');
    assert.ok(full.advised! > 0);
    const noNice = probe(CAPS.filter((c) => c !== 'SYS_NICE'), target.pid!);
    assert.equal(noNice.madvise, 'EPERM', 'process_madvise needs CAP_SYS_NICE');
    const noDac = probe(CAPS.filter((c) => c !== 'DAC_READ_SEARCH'), target.pid!);
    assert.equal(noDac.error, 'EACCES', 'pagemap is 0400, owned by the target\'s user');
    const noAdmin = probe(CAPS.filter((c) => c !== 'SYS_ADMIN'), target.pid!);
    assert.equal(noAdmin.error, undefined);
    assert.equal(noAdmin.pfn, '0', 'frame numbers read as zero without CAP_SYS_ADMIN');
  } finally {
    target.kill();
  }
});
