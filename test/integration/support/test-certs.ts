// A throw-away certificate authority for mutual-TLS tests, made with the openssl CLI:
// leaf certificates for 127.0.0.1 / localhost, named by their CN.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TlsMaterial } from '../../../common/auth.js';

export interface TestCa {
  dir: string;
  caPem: Buffer;
  /** A certificate named `cn` (SAN: DNS:cn, DNS:localhost, IP:127.0.0.1), signed by this CA, with this CA as trust. */
  issue(cn: string): TlsMaterial;
  remove(): void;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

export function createTestCa(name = 'damon-test-ca'): TestCa {
  const dir = mkdtempSync(join(tmpdir(), 'damon-ca-'));
  openssl(['req', '-x509', ...EC, '-keyout', 'ca.key', '-out', 'ca.pem', '-subj', `/CN=${name}`, '-days', '2'], dir);
  const caPem = readFileSync(join(dir, 'ca.pem'));
  return {
    dir,
    caPem,
    issue(cn) {
      writeFileSync(join(dir, `${cn}.ext`), `subjectAltName=DNS:${cn},DNS:localhost,IP:127.0.0.1\n`);
      openssl(['req', ...EC, '-keyout', `${cn}.key`, '-out', `${cn}.csr`, '-subj', `/CN=${cn}`], dir);
      openssl(
        ['x509', '-req', '-in', `${cn}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
          '-out', `${cn}.pem`, '-days', '2', '-extfile', `${cn}.ext`],
        dir,
      );
      return { cert: readFileSync(join(dir, `${cn}.pem`)), key: readFileSync(join(dir, `${cn}.key`)), ca: caPem };
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
