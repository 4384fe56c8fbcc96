/**
 * One boot render (src/provision/boot-render.ts) loads its context once: the param definitions are read once
 * (resolution and the secure names together), and each failure carries a transport-neutral reason.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createBus } from '../../src/events.js';
import { bootRecorder } from '../../src/inventory/boots.js';
import { silentLogger } from '../../src/log.js';
import type { Machine } from '../../src/model/machine.js';
import { bootRenderer } from '../../src/provision/boot-render.js';
import type { TrustVerdict } from '../../src/provision/trust.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import type { Store } from '../../src/store/store.js';

let store: Store;
let paramLists = 0;
beforeEach(async () => {
  store = openSqliteStore(':memory:');
  paramLists = 0;
  await store.create('profiles', 'global', { name: 'global', params: {}, description: '' });
  await store.create('params', 'pw', { name: 'pw', schema: { type: 'string' }, secure: true, description: '' });
  await store.create('bootenvs', 'env', {
    name: 'env',
    templates: [{ name: 'ipxe', path: 'ipxe', contents: '#!ipxe\necho {{ params.user }}/{{ params.pw }}\n' }],
  });
});
afterEach(async () => {
  await store.close();
});

/** The store, counting how often the param definitions are listed. */
const counting = (s: Store): Store =>
  new Proxy(s, {
    get(target, k) {
      if (k === 'list')
        return (kind: string, ...rest: unknown[]) => {
          if (kind === 'params') paramLists++;
          return (target.list as (...a: unknown[]) => unknown)(kind, ...rest);
        };
      const v = (target as unknown as Record<string | symbol, unknown>)[k];
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });

const machine = (bootEnv: string): Machine =>
  ({
    uuid: '00000000-0000-4000-8000-000000000001',
    name: 'm1',
    macs: [],
    profiles: [],
    params: { user: 'u', pw: 'secret' },
    bootEnv,
    description: '',
    locked: false,
  }) as unknown as Machine;

const view = (trust: TrustVerdict) => ({
  server: { address: '127.0.0.1', httpPort: 8080 },
  trust,
  via: 'HTTP',
  record: false,
});

describe('boot render', () => {
  it('reads the param definitions once per render, and withholds secure params from anyone but the machine', async () => {
    const s = counting(store);
    const svc = bootRenderer({
      store: s,
      bus: createBus(),
      log: silentLogger,
      filesDir: '/nonexistent',
      boots: bootRecorder(s),
    });
    const other = await svc.render(machine('env'), 'ipxe', view({ machine: false, why: 'no evidence' }));
    expect(other).toMatchObject({ ok: true, text: '#!ipxe\necho u/\n' });
    expect(paramLists).toBe(1);
    const own = await svc.render(machine('env'), 'ipxe', view({ machine: true, by: 'machine-token' }));
    expect(own).toMatchObject({ ok: true, text: '#!ipxe\necho u/secret\n' });
    expect(paramLists).toBe(2);
  });

  it('says why there is no file, whatever the transport', async () => {
    const svc = bootRenderer({
      store,
      bus: createBus(),
      log: silentLogger,
      filesDir: '/nonexistent',
      boots: bootRecorder(store),
    });
    const untrusted = view({ machine: false, why: 'no evidence' });
    expect(await svc.render(machine('gone'), 'ipxe', untrusted)).toMatchObject({
      ok: false,
      reason: 'no-bootenv',
    });
    expect(await svc.render(machine('env'), 'kickstart', untrusted)).toMatchObject({
      ok: false,
      reason: 'no-template',
    });
  });
});
