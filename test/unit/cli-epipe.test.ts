// `damon-fleet ... | head -1`: the command stops quietly when its reader goes away.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openResultWriter } from '../../agent/records/result-writer.js';
import { INTERVALS, snapshots, tempDir } from './result-file-fixtures.js';

const BIN = fileURLToPath(new URL('../../../bin/damon-fleet.js', import.meta.url));

test('report FILE | head -1: one line, exit 0, nothing on stderr (no EPIPE stack trace)', async (t) => {
  const path = join(tempDir(t), 'long.data');
  const w = await openResultWriter(path, { intervals: INTERVALS });
  for (const s of snapshots(2000)) await w.writeSnapshot(s); // far more output than a pipe holds
  await w.close();
  const sh = `'${process.execPath}' '${BIN}' report '${path}' --rows 2000 --width 100 | head -1; echo "status=\${PIPESTATUS[0]}" >&2`;
  const r = spawnSync('bash', ['-c', sh], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.stdout.split('\n').filter((l) => l !== '').length, 1, r.stdout);
  assert.match(r.stdout, /long\.data \(binary version 2\), 2000 snapshots/);
  assert.equal(r.stderr.trim(), 'status=0', 'quiet, with exit status 0');
  // the same output, read whole, is much longer than one pipe buffer: the pipe did close early
  const full = spawnSync(process.execPath, [BIN, 'report', path, '--rows', '2000', '--width', '100'], { encoding: 'utf8', maxBuffer: 1 << 26 });
  assert.ok(full.stdout.length > 256 * 1024, `${full.stdout.length} bytes of output`);
});
