/**
 * Config templates through the boot render (src/provision/boot-render.ts): a template of a config kind whose
 * output is not a valid config is a render error in the machine's boot timeline and mints no token; the shipped
 * debian-live bootenv renders a valid NoCloud seed for the machine (hostname = its name, its SSH key, the booted
 * callback with its token), and its secure params and token only for the machine itself.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { createBus } from '../../src/events.js';
import { bootRecorder } from '../../src/inventory/boots.js';
import { silentLogger } from '../../src/log.js';
import { BootEnv } from '../../src/model/bootenv.js';
import type { Machine } from '../../src/model/machine.js';
import { bootRenderer } from '../../src/provision/boot-render.js';
import type { TrustVerdict } from '../../src/provision/trust.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import type { Store } from '../../src/store/store.js';

const UUID = '00000000-0000-4000-8000-000000000001';
let store: Store;
let svc: ReturnType<typeof bootRenderer>;
let boots: ReturnType<typeof bootRecorder>;

const shipped = BootEnv.parse(
  YAML.parse(readFileSync(path.resolve(import.meta.dirname, '../../src/lab/image/debian-live.yaml'), 'utf8')),
);

beforeEach(async () => {
  store = openSqliteStore(':memory:');
  await store.create('profiles', 'global', { name: 'global', params: {}, description: '' });
  await store.create('params', 'ssh/authorized-keys', {
    name: 'ssh/authorized-keys',
    schema: { type: 'array' },
    secure: true,
    description: '',
  });
  await store.create('bootenvs', 'debian-live', shipped);
  await store.create('bootenvs', 'ign', {
    name: 'ign',
    templates: [
      {
        name: 'ignition',
        path: 'config.ign',
        kind: 'ignition',
        contents:
          '{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"{{ params.dir }}/x"}]},"t":"{{ token }}"}',
      },
      { name: 'raw', path: 'raw.txt', contents: 'not json {{ token }}' },
    ],
  });
  boots = bootRecorder(store);
  svc = bootRenderer({ store, bus: createBus(), log: silentLogger, filesDir: '/nonexistent', boots });
});
afterEach(async () => {
  await store.close();
});

const machine = (name: string, bootEnv: string, params: Record<string, unknown> = {}): Machine =>
  ({
    uuid: UUID,
    name,
    macs: ['52:54:00:00:00:01'],
    profiles: [],
    params,
    bootEnv,
    description: '',
    locked: false,
  }) as unknown as Machine;
const view = (trust: TrustVerdict) => ({ server: { address: '10.0.0.1', httpPort: 8091 }, trust, via: 'HTTP' });
const own = view({ machine: true, by: 'dhcp-ack' });
const stranger = view({ machine: false, why: 'no evidence' });
const tokenCount = async () => (await store.list('tokens', { filters: [{ field: 'role', value: 'machine' }] })).total;

describe('config templates in the boot render', () => {
  it('an invalid Ignition render is a render error in the timeline, and mints no token', async () => {
    const r = await svc.render(machine('m1', 'ign', { dir: 'relative' }), 'config.ign', own);
    expect(r).toMatchObject({ ok: false, reason: 'render-error', bootEnv: 'ign' });
    expect(!r.ok && r.detail).toContain('config.ign is not a valid ignition config: $.t: not a key of Ignition 3.3.0');
    expect(!r.ok && r.detail).toContain('$.storage.files[0].path: an absolute path');
    const [b] = await boots.list(UUID);
    expect(b!.result).toBe('failed');
    expect(b!.events.at(-1)).toMatchObject({ kind: 'render', data: { file: 'config.ign' } });
    expect(b!.events.at(-1)!.detail).toMatch(/^render error: config.ign is not a valid ignition config/);
    expect(await tokenCount()).toBe(0);
    // The same text from a raw template is served as rendered (and its token stored).
    expect(await svc.render(machine('m1', 'ign'), 'raw.txt', own)).toMatchObject({ ok: true });
    expect(await tokenCount()).toBe(1);
  });

  it('the shipped debian-live bootenv renders a valid NoCloud seed: hostname, SSH key, booted callback', async () => {
    const m = machine('node-7', 'debian-live', { 'ssh/authorized-keys': ['ssh-ed25519 AAAA op@x'] });
    const ud = await svc.render(m, 'user-data', own);
    expect(ud.ok).toBe(true);
    const text = ud.ok ? ud.text : '';
    const doc = YAML.parse(text);
    expect(text.startsWith('#cloud-config\n')).toBe(true);
    expect(doc.hostname).toBe('node-7');
    expect(doc.ssh_authorized_keys).toEqual(['ssh-ed25519 AAAA op@x']);
    const script = doc.write_files.find((f: { path: string }) => f.path === '/usr/local/sbin/plinth-booted').content;
    expect(script).toMatch(
      new RegExp(`'http://10.0.0.1:8091/api/v1/machines/${UUID}/callback\\?token=[A-Za-z0-9_-]{20,}'`),
    );
    const md = await svc.render(m, 'meta-data', own);
    expect(md.ok && YAML.parse(md.text)).toEqual({ 'instance-id': UUID, 'local-hostname': 'node-7' });
    const nc = await svc.render(m, 'network-config', own);
    expect(nc.ok && YAML.parse(nc.text).ethernets.boot.match.macaddress).toBe('52:54:00:00:00:01');
    const ipxe = await svc.render(m, 'boot.ipxe', own);
    expect(ipxe.ok && ipxe.text).toContain(
      `boot=live fetch=http://10.0.0.1:8091/files/debian-live/filesystem.squashfs`,
    );
    expect(ipxe.ok && ipxe.text).toContain(`ds=nocloud-net;s=http://10.0.0.1:8091/machines/${UUID}/ `);
  });

  it('secure params and the token only for the machine: a stranger gets no key and no token', async () => {
    const m = machine('node-7', 'debian-live', { 'ssh/authorized-keys': ['ssh-ed25519 AAAA op@x'] });
    const r = await svc.render(m, 'user-data', stranger);
    expect(r.ok).toBe(true);
    const doc = YAML.parse(r.ok ? r.text : '');
    expect(doc.ssh_authorized_keys).toEqual([]);
    expect(JSON.stringify(doc)).toContain("/callback?token='");
    expect(await tokenCount()).toBe(0);
  });

  it('a machine name that is not a host name is refused, not booted with a broken hostname', async () => {
    const r = await svc.render(machine('rack1_node@7', 'debian-live'), 'meta-data', own);
    expect(r).toMatchObject({ ok: false, reason: 'render-error' });
    expect(!r.ok && r.detail).toContain('local-hostname: a host name');
  });
});
