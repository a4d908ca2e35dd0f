// The credential options that the controller and the agent share on their command lines,
// and their checks: mutual TLS files, --insecure, and the NATS credential and TLS files.
// Each daemon adds what is its own (--identities, --token-file, --agent-key-file).
import { readTls, type TlsMaterial } from './auth.js';
import { OptionError } from './cli-values.js';
import { readNkeySeed } from './nats-access.js';
import { checkNatsUrls, natsTlsOption, type NatsTlsFiles } from './nats.js';
import { checkTrust } from './trust.js';

/** parseArgs specs of the shared options. */
export const CREDENTIAL_OPTIONS = {
  identities: { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'tls-ca': { type: 'string' },
  insecure: { type: 'boolean', default: false },
  nats: { type: 'string', default: 'nats://127.0.0.1:4222' },
  'nats-nkey': { type: 'string' },
  'nats-ca': { type: 'string' },
  'nats-cert': { type: 'string' },
  'nats-key': { type: 'string' },
} as const;

/** What parseArgs gives for CREDENTIAL_OPTIONS. */
export interface CredentialValues {
  identities?: string;
  'tls-cert'?: string;
  'tls-key'?: string;
  'tls-ca'?: string;
  insecure?: boolean;
  nats?: string;
  'nats-nkey'?: string;
  'nats-ca'?: string;
  'nats-cert'?: string;
  'nats-key'?: string;
}

export interface DaemonCredentials {
  identities?: string;
  tls?: TlsMaterial;
  insecure: boolean;
  nats: string[];
  natsNkeyFile?: string;
  natsTls?: NatsTlsFiles;
}

/**
 * Checks the shared options of a daemon listening on `listen` that presents `own` (its
 * option's name, and whether it was given) to the peers it calls; throws OptionError
 * saying what is wrong or missing. Files are read here, so a bad one fails the start.
 */
export function parseDaemonCredentials(
  values: CredentialValues,
  listen: string,
  own: { option: string; given: boolean },
): DaemonCredentials {
  const tlsGiven = [values['tls-cert'], values['tls-key'], values['tls-ca']].filter(Boolean).length;
  if (tlsGiven !== 0 && tlsGiven !== 3) throw new OptionError('--tls-cert, --tls-key and --tls-ca go together');
  const nats = (values.nats ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  if (nats.length === 0) throw new OptionError('--nats: at least one URL');
  try {
    const tls = tlsGiven === 3 ? readTls({ cert: values['tls-cert']!, key: values['tls-key']!, ca: values['tls-ca']! }) : undefined;
    const insecure = values.insecure ?? false;
    checkTrust(
      listen,
      { identities: Boolean(values.identities), tls: Boolean(tls), ownCredential: own.given, insecure },
      { accept: '--identities FILE', present: `${own.option} FILE` },
    );
    checkNatsUrls(nats);
    if (values['nats-nkey']) readNkeySeed(values['nats-nkey']);
    const natsTls = natsTlsOption(values['nats-ca'], values['nats-cert'], values['nats-key']);
    return { identities: values.identities, tls, insecure, nats, natsNkeyFile: values['nats-nkey'], natsTls };
  } catch (err) {
    throw err instanceof OptionError ? err : new OptionError((err as Error).message);
  }
}
