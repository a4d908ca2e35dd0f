// A throwaway CA and certificates (EC P-256, via openssl) for mutual-TLS tests.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TlsPaths } from '../../../common/auth.js';

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Issues a certificate for `name` (CN and DNS SAN; also IP 127.0.0.1) signed by the CA in `dir`. */
function issue(dir: string, name: string): TlsPaths {
  const ext = join(dir, `${name}.ext`);
  writeFileSync(ext, `subjectAltName=DNS:${name},DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n`);
  openssl(dir, ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`]);
  openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-out', `${name}.crt`, '-extfile', ext]);
  return { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`), ca: join(dir, 'ca.crt') };
}

export interface TestPki {
  dir: string;
  /** Issues a certificate for `name` signed by this CA. */
  issue(name: string): TlsPaths;
  /** Deletes the directory (keys included). */
  remove(): void;
}

/** A new CA in a temporary directory. */
export function makePki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'damon-pki-'));
  openssl(dir, ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=damon-test-ca']);
  return { dir, issue: (name) => issue(dir, name), remove: () => rmSync(dir, { recursive: true, force: true }) };
}
