/**
 * The socket path alone, without DHCP: a server process echoes every datagram back to its source through dgram or
 * through the native batch I/O (native/dhcp_io.c), and its CPU per datagram (received and answered) is read from
 * /proc/PID/task/PID/schedstat. A client in this process sends `burst` datagrams at a time and waits for their
 * echoes, `rounds` times; modes interleaved, `runs` each.
 *
 *   npx tsx bench/dhcp-io-echo.ts [--burst 1] [--rounds 20000] [--runs 3]
 */
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { parseArgs } from 'node:util';
import { NativeDhcpSocket } from '../src/dhcp/native-socket.js';
import { native } from '../src/native/index.js';
import { cpuNs } from './dhcp-servers.js';

if (process.argv[2] === 'serve') {
  const port = Number(process.argv[3]);
  if (process.argv[4] === 'native') {
    const fd = native.dhcpSockets!.openUdp4(null, port, '127.0.0.1');
    const s: NativeDhcpSocket = new NativeDhcpSocket(native.dhcpBatchIo!, fd, {
      message: (msg, src) => s.send(Buffer.from(msg), src.port, src.address, done),
      oversized: () => {},
      error: () => {},
    });
  } else {
    const s = dgram.createSocket('udp4');
    s.on('message', (msg, r) => s.send(msg, r.port, r.address, done));
    s.bind(port, '127.0.0.1');
  }
  process.stdout.write('READY\n');
} else {
  const { values } = parseArgs({
    options: {
      burst: { type: 'string', default: '1' },
      rounds: { type: 'string', default: '20000' },
      runs: { type: 'string', default: '3' },
    },
  });
  let port = 40000 + Math.floor(Math.random() * 10000);
  for (let run = 0; run < Number(values.runs); run++) {
    for (const mode of run % 2 ? ['dgram', 'native'] : ['native', 'dgram']) {
      port += 2;
      const r = await oneRun(mode, port, Number(values.burst), Number(values.rounds));
      console.log(
        `${mode.padEnd(6)} burst ${values.burst}  ${r.toFixed(2)} µs of the server's main thread per datagram`,
      );
    }
  }
}

function done(err: Error | null): void {
  if (err) process.stderr.write(`${err.message}\n`);
}

async function oneRun(mode: string, port: number, burst: number, rounds: number): Promise<number> {
  const child = spawn(
    'taskset',
    ['-c', '1', process.execPath, '--import', 'tsx', import.meta.filename, 'serve', String(port), mode],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  await new Promise<void>((res) => child.stdout.on('data', (d: Buffer) => d.toString().includes('READY') && res()));
  const c = dgram.createSocket('udp4');
  await new Promise<void>((r) => c.bind(0, '127.0.0.1', () => r()));
  const payload = Buffer.alloc(300, 7);
  let got = 0;
  let waiting: (() => void) | undefined;
  c.on('message', () => {
    got++;
    if (got % burst === 0) waiting?.();
  });
  const round = () =>
    new Promise<void>((res) => {
      const t = setTimeout(res, 200); // a lost datagram: go on
      waiting = () => {
        clearTimeout(t);
        res();
      };
      for (let i = 0; i < burst; i++) c.send(payload, port, '127.0.0.1');
    });
  for (let i = 0; i < 500; i++) await round(); // warm-up
  got = 0;
  const c0 = cpuNs(child.pid);
  for (let i = 0; i < rounds; i++) await round();
  const c1 = cpuNs(child.pid);
  const n = got;
  child.kill();
  c.close();
  return (c1.main - c0.main) / 1000 / n;
}
