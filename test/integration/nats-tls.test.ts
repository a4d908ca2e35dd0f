// NATS over TLS with client certificates, as docs/nats.md describes it: the processes'
// --nats-ca / --nats-cert / --nats-key reach nats.js, and the nkey still names the user.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { connectNats, ensureStreams, jetStream } from '../../common/nats.js';
import { RECORDS_STREAM } from '../../common/subjects.js';
import { startNatsServer, type NatsServer } from './support/nats-server.js';
import { createTestCa, type TestCa } from './support/test-certs.js';

let ca: TestCa;
let nats: NatsServer;

before(async () => {
  ca = createTestCa();
  ca.issue('nats-server');
  ca.issue('controller');
  const f = (n: string) => JSON.stringify(join(ca.dir, n));
  nats = await startNatsServer({
    extraConf: `tls { cert_file: ${f('nats-server.pem')}, key_file: ${f('nats-server.key')}, ca_file: ${f('ca.pem')}, verify: true }\n`,
  });
});

after(async () => {
  await nats?.stop();
  ca?.remove();
});

test('with the CA and a client certificate: connected, and the nkey user works', async () => {
  const nc = await connectNats({
    servers: `tls://127.0.0.1:${nats.port}`,
    nkeyFile: nats.credentials.controller,
    tls: { ca: join(ca.dir, 'ca.pem'), cert: join(ca.dir, 'controller.pem'), key: join(ca.dir, 'controller.key') },
  });
  try {
    await ensureStreams(jetStream(nc));
    const jsm = await jetStream(nc).jetstreamManager();
    assert.equal((await jsm.streams.info(RECORDS_STREAM)).config.name, RECORDS_STREAM);
  } finally {
    await nc.close();
  }
});
