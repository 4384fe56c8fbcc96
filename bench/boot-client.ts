/**
 * The boot storm's client side, run inside the client namespace by bench/boot.ts: N simulated machines, each
 * does a relayed DHCP DORA (as a relay agent would forward it: giaddr set, answers to port 67), fetches its iPXE
 * script over HTTP, then the kernel and initrd the script names. Prints one JSON line of results.
 * Args: SERVER RELAY_IP COUNT CONCURRENCY [nginx-base-url]
 */
import dgram from 'node:dgram';
import { ipBytes, MessageType, Opt } from '../src/dhcp/options.js';
import { decode, emptyPacket, encode, macBytes } from '../src/dhcp/packet.js';

const [server, relay, countS, concS, nginx] = process.argv.slice(2);
const COUNT = Number(countS ?? 200);
const CONC = Number(concS ?? 50);
/** Each phase (the storm, each download run) stops starting machines after this long. */
const PHASE_MS = 300_000;

const sock = dgram.createSocket('udp4');
await new Promise<void>((r) => sock.bind(67, relay, () => r()));
const waiting = new Map<number, (p: ReturnType<typeof decode>) => void>();
sock.on('message', (msg) => {
  const r = decode(msg);
  if (r.ok) waiting.get(r.packet.xid)?.(r);
});

function ask(
  mac: string,
  type: number,
  xid: number,
  extra: [number, Buffer][] = [],
): Promise<{ yiaddr: string; file: string; type: number }> {
  const p = emptyPacket(1);
  p.xid = xid;
  p.giaddr = relay!;
  p.hops = 1;
  p.chaddr = Buffer.concat([macBytes(mac), Buffer.alloc(10)]);
  p.options.set(Opt.MessageType, Buffer.from([type]));
  p.options.set(93, Buffer.from([0, 0])); // BIOS
  p.options.set(60, Buffer.from('PXEClient:Arch:00000:UNDI:002001'));
  p.options.set(77, Buffer.from('iPXE'));
  for (const [c, v] of extra) p.options.set(c, v);
  const buf = encode(p);
  return new Promise((resolve, reject) => {
    let tries = 0;
    const send = () => {
      if (tries++ >= 4) {
        waiting.delete(xid);
        return reject(new Error(`no answer to ${type} for ${mac}`));
      }
      sock.send(buf, 67, server);
      timer = setTimeout(send, 2000);
    };
    let timer: NodeJS.Timeout;
    waiting.set(xid, (r) => {
      if (!r.ok) return;
      clearTimeout(timer);
      waiting.delete(xid);
      resolve({ yiaddr: r.packet.yiaddr, file: r.packet.file, type: r.packet.options.get(Opt.MessageType)?.[0] ?? 0 });
    });
    send();
  });
}

let retried = 0;
/**
 * A GET, sent again (at most twice, and counted) when its connection closed before any response: a pooled
 * keep-alive connection the server closed as idle just as this client reused it. The request was never served,
 * and an idempotent request is retried then (RFC 9112 9.3.1). The next pooled connection may be as old, hence
 * more than once. A failure after the response began is an error.
 */
async function get(url: string): Promise<Response> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fetch(url);
    } catch (err) {
      if (attempt >= 2) throw err;
      retried++;
    }
  }
}

async function drain(url: string): Promise<number> {
  const r = await get(url);
  if (!r.ok) throw new Error(`GET ${url}: ${r.status}`);
  let n = 0;
  for await (const c of r.body!) n += (c as Uint8Array).length;
  return n;
}

const steps: Record<string, number[]> = { dora: [], script: [], kernel: [], initrd: [] };
let errors = 0;
let bytes = 0;
/** Each kind of error (step, message, cause) and how often it happened: the first five are rarely the story. */
const errorKinds = new Map<string, number>();
const seen = (what: string) => errorKinds.set(what, (errorKinds.get(what) ?? 0) + 1);

function describe(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  return `${(err as Error).message}${cause ? ` (${cause.code ?? ''} ${cause.message ?? ''})` : ''}`;
}

let started = 0;
async function machine(i: number) {
  started++;
  const mac = `02:be:00:00:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;
  let step = 'dora';
  try {
    let t = performance.now();
    const xid = (0x5000_0000 + i) >>> 0;
    const offer = await ask(mac, MessageType.DISCOVER, xid);
    const ack = await ask(mac, MessageType.REQUEST, xid, [
      [Opt.RequestedIp, ipBytes(offer.yiaddr)],
      [Opt.ServerId, ipBytes(server!)],
    ]);
    if (ack.type !== MessageType.ACK) throw new Error(`no ACK for ${mac}`);
    steps.dora!.push(performance.now() - t);
    t = performance.now();
    step = 'script';
    const script = await (await get(`http://${server}:8091/boot/ipxe/${mac.replace(/:/g, '-')}`)).text();
    steps.script!.push(performance.now() - t);
    const kernel = /^kernel (\S+)/m.exec(script)?.[1];
    const initrd = /^initrd (\S+)/m.exec(script)?.[1];
    if (!kernel || !initrd) throw new Error(`script for ${mac} names no kernel/initrd: ${script.slice(0, 200)}`);
    t = performance.now();
    step = 'kernel';
    const kb = await drain(kernel);
    bytes += kb;
    steps.kernel!.push(performance.now() - t);
    t = performance.now();
    step = 'initrd';
    const ib = await drain(initrd);
    bytes += ib;
    steps.initrd!.push(performance.now() - t);
  } catch (err) {
    errors++;
    seen(`${step}: ${describe(err).replace(/02:be:\S+/g, 'MAC')}`);
  }
}

async function pool(n: number, conc: number, fn: (i: number) => Promise<void>) {
  let next = 0;
  const deadline = Date.now() + PHASE_MS;
  await Promise.all(
    Array.from({ length: conc }, async () => {
      while (next < n && Date.now() < deadline) await fn(next++);
    }),
  );
}

const p99 = (a: number[]) =>
  a.length ? [...a].sort((x, y) => x - y)[Math.min(a.length - 1, Math.floor(a.length * 0.99))]! : Number.NaN;
const t0 = performance.now();
await pool(COUNT, CONC, machine);
const seconds = (performance.now() - t0) / 1000;
const out: Record<string, unknown> = {
  machines: COUNT,
  started,
  seconds,
  errors,
  httpMiBps: bytes / 1048576 / seconds,
  p99ms: Object.fromEntries(Object.entries(steps).map(([k, v]) => [k, Math.round(p99(v))])),
};
// HTTP alone, identical for both servers: the same downloads, same concurrency, nothing else in between.
const downloads = async (base: string) => {
  let n = 0;
  const k: number[] = [];
  const i: number[] = [];
  const t = performance.now();
  await pool(COUNT, CONC, async () => {
    // Not `n += await ...`: that reads n before the await and loses the other workers' bytes.
    let t1 = performance.now();
    try {
      const kb = await drain(`${base}/lab/vmlinuz`);
      k.push(performance.now() - t1);
      t1 = performance.now();
      const ib = await drain(`${base}/lab/initrd.img`);
      i.push(performance.now() - t1);
      n += kb + ib;
    } catch (err) {
      // Counted and shown like the storm's errors, never a crash that loses the whole run's figures.
      errors++;
      seen(`${base} downloads: ${describe(err)}`);
    }
  });
  return {
    MiBps: n / 1048576 / ((performance.now() - t) / 1000),
    p99ms: { kernel: Math.round(p99(k)), initrd: Math.round(p99(i)) },
  };
};
// Alternating, twice each, so a burst of other load on a shared machine does not land on one server only.
const runs: Record<string, { MiBps: number; p99ms: { kernel: number; initrd: number } }[]> = { plinth: [], nginx: [] };
for (let r = 0; r < 2; r++) {
  runs.plinth!.push(await downloads(`http://${server}:8091/files`));
  if (nginx) runs.nginx!.push(await downloads(nginx));
}
const best = (a: { MiBps: number; p99ms: { kernel: number; initrd: number } }[]) =>
  a.length
    ? {
        MiBps: Math.max(...a.map((x) => x.MiBps)),
        p99ms: { kernel: Math.min(...a.map((x) => x.p99ms.kernel)), initrd: Math.min(...a.map((x) => x.p99ms.initrd)) },
      }
    : undefined;
out.plinthFiles = best(runs.plinth!);
out.retried = retried;
out.downloadErrors = errors - (out.errors as number);
out.errorsSeen = [...errorKinds].sort((a, b) => b[1] - a[1]).map(([what, n]) => `${n} x ${what}`);
if (nginx) out.nginx = best(runs.nginx!);
console.log(JSON.stringify(out));
sock.close();
