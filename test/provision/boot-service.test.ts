/**
 * The boot service (src/provision/boot.ts) without fastify: what each boot request does to the inventory and the
 * timeline (discovery, the trust rule, the render, /files' artifact pins and fetches), as the transports call it.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createBus } from '../../src/events.js';
import { bootRecorder } from '../../src/inventory/boots.js';
import { silentLogger } from '../../src/log.js';
import { bootService } from '../../src/provision/boot.js';
import { ANONYMOUS_UUID } from '../../src/provision/discovery.js';
import { dhcpEvidence } from '../../src/provision/evidence.js';
import { trustRule } from '../../src/provision/trust.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import type { Store } from '../../src/store/store.js';

let store: Store;
let filesDir: string;
const MAC = '52:54:00:ee:00:01';
const server = { address: '10.0.0.1', httpPort: 8080 };

beforeEach(async () => {
  store = openSqliteStore(':memory:');
  filesDir = mkdtempSync(`${tmpdir()}/plinth-boot-svc-`);
  await store.create('profiles', 'global', { name: 'global', params: {}, description: '' });
  await store.create('params', 'pw', { name: 'pw', schema: { type: 'string' }, secure: true, description: '' });
  for (const name of ['discovery', 'local']) await store.create('bootenvs', name, { name });
  await store.create('bootenvs', 'env', {
    name: 'env',
    templates: [{ name: 'ipxe', path: 'ipxe', contents: '#!ipxe\necho {{ machine.name }} pw={{ params.pw }}\n' }],
  });
});
afterEach(async () => {
  await store.close();
  rmSync(filesDir, { recursive: true, force: true });
});

function setup() {
  const bus = createBus();
  const boots = bootRecorder(store);
  const trust = trustRule({ store, evidence: dhcpEvidence(bus), checkToken: async () => null });
  const svc = bootService({ store, bus, log: silentLogger, filesDir, boots, trust });
  const acked = (mac: string, address: string) =>
    bus.emit({
      type: 'lease.acked',
      key: address,
      data: { mac, subnet: 'lab', expiresAt: '2099-01-01T00:00:00.000Z' },
    });
  const timeline = async (uuid: string) =>
    ((await boots.list(uuid))[0]?.events ?? []).map((e) => `${e.kind} ${e.detail}`);
  return { svc, bus, acked, timeline };
}

describe('boot service', () => {
  it('by MAC: anonymous without evidence, discovered with it, the request in the new timeline', async () => {
    const { svc, acked, timeline } = setup();
    const q = { mac: MAC, asked: '52-54-00-ee-00-01', source: '::ffff:10.0.0.9', server, arch: 'x86_64' };
    const anon = await svc.ipxeByMac(q);
    expect(anon.ok).toBe(true);
    expect((await store.list('machines')).total).toBe(0);
    expect(await timeline(ANONYMOUS_UUID)).toEqual([]);
    acked(MAC, '10.0.0.9');
    expect((await svc.ipxeByMac(q)).ok).toBe(true);
    const m = (await store.list('machines')).items[0]!;
    expect(m.doc).toMatchObject({ macs: [MAC], address: '10.0.0.9', bootEnv: 'discovery', arch: 'amd64' });
    expect(await timeline(m.key)).toEqual([
      `discovery unknown MAC ${MAC} registered, boots discovery`,
      'http GET /boot/ipxe/52-54-00-ee-00-01 from 10.0.0.9',
      'render boot.ipxe of bootenv discovery over HTTP',
    ]);
  });

  it("by uuid: a missing machine is not-found; secrets only with the trust rule's evidence, per transport", async () => {
    const { svc, acked, timeline } = setup();
    expect(
      await svc.machineFile({ uuid: 'nope', file: 'ipxe', transport: 'http', source: '10.0.0.5', server }),
    ).toEqual({
      ok: false,
      reason: 'not-found',
      detail: "machine 'nope' does not exist",
    });
    const uuid = '00000000-0000-4000-8000-0000000000e1';
    await store.create(
      'machines',
      uuid,
      { uuid, name: 'm1', macs: [MAC], profiles: [], params: { pw: 's3cret' }, bootEnv: 'env', description: '' },
      [{ field: 'macs', value: MAC }],
    );
    const ask = (transport: 'http' | 'tftp') =>
      svc.machineFile({ uuid, file: 'ipxe', transport, source: '10.0.0.5', server });
    expect(await ask('http')).toMatchObject({ ok: true, text: '#!ipxe\necho m1 pw=\n' });
    // An active lease in the store is HTTP-only evidence.
    await store.create('leases', '10.0.0.5', {
      address: '10.0.0.5',
      mac: MAC,
      subnet: 'lab',
      state: 'bound',
      expiresAt: new Date(Date.now() + 600_000).toISOString(),
    });
    expect(await ask('http')).toMatchObject({ ok: true, text: '#!ipxe\necho m1 pw=s3cret\n' });
    expect(await ask('tftp')).toMatchObject({ ok: true, text: '#!ipxe\necho m1 pw=\n' });
    acked(MAC, '10.0.0.5');
    expect(await ask('tftp')).toMatchObject({ ok: true, text: '#!ipxe\necho m1 pw=s3cret\n' });
    const t = await timeline(uuid);
    // HTTP fetches are recorded by the boot service; TFTP ones by the TFTP source (on the machine at the address).
    expect(t.filter((e) => e.startsWith('http GET /machines/'))).toHaveLength(2);
    expect(t.filter((e) => e.includes('over TFTP'))).toHaveLength(2);
  });

  it('/files: a pinned artifact whose bytes changed is refused, and each fetch lands in the timeline', async () => {
    const { svc, timeline } = setup();
    writeFileSync(`${filesDir}/vmlinuz`, 'kernel v2');
    await store.create('bootenvs', 'pinned', {
      name: 'pinned',
      artifacts: [{ path: 'vmlinuz', sha256: 'b'.repeat(64) }],
    });
    expect(await svc.refuseFile('vmlinuz')).toMatch(
      /^artifact vmlinuz of bootenv pinned has sha256 [0-9a-f]{64}, but the bootenv pins b{64}: refusing to serve it$/,
    );
    expect(await svc.refuseFile('other')).toBeUndefined();
    const uuid = '00000000-0000-4000-8000-0000000000e2';
    await store.create('machines', uuid, { uuid, name: 'm2', macs: [], address: '10.0.0.6', bootEnv: 'local' }, [
      { field: 'address', value: '10.0.0.6' },
    ]);
    svc.fileServed('vmlinuz', '::ffff:10.0.0.6', 409);
    await expect.poll(() => timeline(uuid)).toEqual(['http GET /files/vmlinuz -> 409']);
  });
});
