// A throw-away certificate authority for mutual-TLS tests, made with the openssl CLI.
// Leaf certificates name localhost and 127.0.0.1 (or the given names), and optionally a
// damon-fleet identity as a URI SAN (spiffe://damon-fleet/<role>[/<name>]).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TlsMaterial } from '../../../common/auth.js';

export interface IssueOptions {
  /** A URI SAN naming the identity, e.g. spiffeId('agent', 'h1'). */
  id?: string;
  /** DNS SANs (default: the CN and localhost). */
  dns?: string[];
  /** IP SANs (default: 127.0.0.1). */
  ips?: string[];
}

export interface TestCa {
  dir: string;
  caPem: Buffer;
  /** A certificate with CN `cn`, signed by this CA, with this CA as trust (files in `dir`: <cn>.pem, <cn>.key). */
  issue(cn: string, o?: IssueOptions): TlsMaterial;
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
  const issued = new Map<string, number>();
  return {
    dir,
    caPem,
    issue(cn, o = {}) {
      // Files are named by the CN (<cn>.pem, <cn>.key; <cn>-2.pem for a second one).
      const n = (issued.get(cn) ?? 0) + 1;
      issued.set(cn, n);
      const f = n === 1 ? cn : `${cn}-${n}`;
      const sans = [
        ...(o.dns ?? [cn, 'localhost']).map((d) => `DNS:${d}`),
        ...(o.ips ?? ['127.0.0.1']).map((ip) => `IP:${ip}`),
        ...(o.id ? [`URI:${o.id}`] : []),
      ];
      writeFileSync(join(dir, `${f}.ext`), `subjectAltName=${sans.join(',')}\nextendedKeyUsage=serverAuth,clientAuth\n`);
      openssl(['req', ...EC, '-keyout', `${f}.key`, '-out', `${f}.csr`, '-subj', `/CN=${cn}`], dir);
      openssl(
        ['x509', '-req', '-in', `${f}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
          '-out', `${f}.pem`, '-days', '2', '-extfile', `${f}.ext`],
        dir,
      );
      return { cert: readFileSync(join(dir, `${f}.pem`)), key: readFileSync(join(dir, `${f}.key`)), ca: caPem };
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
