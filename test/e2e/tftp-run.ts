/**
 * Runs Plinth's TFTP server alone, for the e2e suite and the benchmark (started inside a network namespace with
 * `ip netns exec NS node --import tsx test/e2e/tftp-run.ts --root DIR --address A [--port 69] [--max-blksize N]`).
 * Prints "READY <port>" on stdout once listening, the stats as JSON on SIGTERM/SIGINT, then exits.
 */
import { parseArgs } from 'node:util';
import pino from 'pino';
import { startTftpServer } from '../../src/tftp/server.js';
import { fileRootSource } from '../../src/tftp/source.js';

const { values } = parseArgs({
  options: {
    root: { type: 'string' },
    address: { type: 'string', default: '0.0.0.0' },
    port: { type: 'string', default: '69' },
    'max-blksize': { type: 'string', default: '65464' },
    'max-windowsize': { type: 'string', default: '64' },
    'log-level': { type: 'string', default: 'silent' },
    /** A/B measurements: send windows with sendmmsg instead of UDP GSO. */
    'no-gso': { type: 'boolean', default: false },
    /** A/B measurements: no window handed to the socket ahead of its ACK. */
    'no-arm': { type: 'boolean', default: false },
    /** A/B measurements: busy polling bound in microseconds (0 = off). */
    'busy-poll-us': { type: 'string', default: '200' },
  },
});
if (values.root === undefined) {
  process.stderr.write('usage: tftp-run.ts --root DIR [--address A] [--port N] [--max-blksize N]\n');
  process.exit(2);
}

const server = await startTftpServer({
  source: fileRootSource(values.root),
  address: values.address,
  port: Number(values.port),
  maxBlksize: Number(values['max-blksize']),
  maxWindowsize: Number(values['max-windowsize']),
  gso: !values['no-gso'],
  armWindows: !values['no-arm'],
  busyPollUs: Number(values['busy-poll-us']),
  logger: pino({ level: values['log-level'] ?? 'silent' }, pino.destination(2)),
});
process.stdout.write(`READY ${server.port}\n`);

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await server.close();
  process.stdout.write(`STATS ${JSON.stringify(server.stats)}\n`);
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
