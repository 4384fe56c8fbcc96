/**
 * A crafted-packet DHCP client for the e2e suite, run inside a client namespace:
 *   ip netns exec NS node --import tsx test/e2e/dhcp-probe.ts '{"ifname":"eth0","bindPort":68,"sends":[...],"listenMs":1500}'
 * Binds to the interface (SO_BINDTODEVICE through Plinth's addon), sends each packet (hex) and prints every
 * reply as one JSON line.
 */
import dgram from 'node:dgram';
import { loadNetAddon } from '../../src/dhcp/bind.js';
import { decodeOptionValue } from '../../src/dhcp/options.js';
import { decode, encode } from '../../src/dhcp/packet.js';

type Spec = {
  ifname: string;
  bindPort: number;
  sends: { hex: string; to: string; port: number; ciaddr?: string }[];
  listenMs: number;
};
const spec = JSON.parse(process.argv[2]!) as Spec;
const addon = loadNetAddon();
if (!addon) throw new Error('the native addon is not built: npm run build:native');
const fd = addon.openUdp4(spec.ifname, spec.bindPort);
const s = dgram.createSocket('udp4');
s.on('message', (m, r) => {
  const d = decode(m);
  const out = d.ok
    ? {
        from: `${r.address}:${r.port}`,
        yiaddr: d.packet.yiaddr,
        siaddr: d.packet.siaddr,
        file: d.packet.file,
        xid: d.packet.xid,
        options: Object.fromEntries([...d.packet.options].map(([c, v]) => [c, decodeOptionValue(c, v)])),
      }
    : { from: `${r.address}:${r.port}`, error: d.message };
  process.stdout.write(`${JSON.stringify(out)}\n`);
});
await new Promise<void>((res) => s.bind({ fd }, () => res()));
s.setBroadcast(true);
for (const x of spec.sends) {
  let buf: Buffer = Buffer.from(x.hex, 'hex');
  if (x.ciaddr) {
    const d = decode(buf);
    if (d.ok) buf = encode({ ...d.packet, ciaddr: x.ciaddr }, 1500);
  }
  await new Promise<void>((res, rej) => s.send(buf, x.port, x.to, (e) => (e ? rej(e) : res())));
}
setTimeout(() => s.close(() => process.exit(0)), spec.listenMs);
