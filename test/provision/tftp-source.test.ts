/**
 * The daemon's TFTP source (src/provision/tftp-source.ts), socket-free: each opened file carries its client's
 * blksize cap, and a machine file's render outcome maps to the TFTP answer (not-found -> ERROR 1, a digest
 * mismatch -> ERROR 2, a render error -> thrown, ERROR 0), each fetch in the timeline of the machine there.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createBus } from '../../src/events.js';
import { bootRecorder } from '../../src/inventory/boots.js';
import { tokenChecker } from '../../src/inventory/tokens.js';
import { silentLogger } from '../../src/log.js';
import { bootService } from '../../src/provision/boot.js';
import { dhcpEvidence } from '../../src/provision/evidence.js';
import { bootSessions } from '../../src/provision/sessions.js';
import { bootTftpSource, TftpRenderFailed, tftpOutcome } from '../../src/provision/tftp-source.js';
import { trustRule } from '../../src/provision/trust.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import type { Store } from '../../src/store/store.js';
import { SourceBusy } from '../../src/tftp/source.js';

let store: Store;
let dir: string;
const UUID = '00000000-0000-4000-8000-0000000000a1';

beforeEach(async () => {
  store = openSqliteStore(':memory:');
  dir = mkdtempSync(path.join(tmpdir(), 'plinth-tftp-src-'));
  mkdirSync(path.join(dir, 'files'));
  writeFileSync(path.join(dir, 'files', 'loader.efi'), Buffer.alloc(3000, 1));
  await store.create('profiles', 'global', { name: 'global', params: {}, description: '' });
  await store.create('prefs', 'prefs', { unknownBootEnv: 'discovery' });
});
afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

function source() {
  const bus = createBus();
  const boots = bootRecorder(store);
  const trust = trustRule({ store, evidence: dhcpEvidence(bus), checkToken: tokenChecker(store) });
  const boot = bootService({ store, bus, log: silentLogger, filesDir: path.join(dir, 'files'), boots, trust });
  const sessions = bootSessions(bus);
  const src = bootTftpSource({
    store,
    log: silentLogger,
    boots,
    boot,
    sessions,
    roots: [path.join(dir, 'files')],
    serverAddress: () => '10.0.0.1',
    httpPort: 8080,
    maxBlksize: 1468,
  });
  return { src, sessions, boots };
}

const client = (address: string) => ({ address, port: 2000 });
const machine = (bootEnv: string, address?: string) =>
  store.create('machines', UUID, {
    uuid: UUID,
    name: 'm1',
    macs: ['52:54:00:aa:00:01'],
    profiles: [],
    params: {},
    bootEnv,
    description: '',
    locked: false,
    ...(address ? { address } : {}),
  });

describe('TFTP source: the cap travels with the file', () => {
  it("a boot offer's quirk caps the file opened from its address, and only there", async () => {
    const { src, sessions } = source();
    sessions.record({
      mac: '52:54:00:aa:00:01',
      mode: 'proxy',
      address: '10.0.0.5',
      bootEnv: 'local',
      filename: 'loader.efi',
      reason: 'quirk',
      blksize: { value: 1024, why: 'test firmware' },
    });
    const r = await src.open('loader.efi', client('10.0.0.5'));
    expect(r).toMatchObject({ status: 'ok', size: 3000, blksizeCap: 1024 });
    if (r.status === 'ok') r.close();
    const other = await src.open('loader.efi', client('10.0.0.6'));
    expect(other.status).toBe('ok');
    if (other.status === 'ok') {
      expect(other.blksizeCap).toBeUndefined();
      other.close();
    }
    // A cap at or above the global maximum changes nothing and is not reported.
    sessions.record({
      mac: '52:54:00:aa:00:02',
      mode: 'server',
      address: '10.0.0.7',
      bootEnv: 'local',
      filename: 'x',
      reason: 'q',
      blksize: { value: 1468, why: 'w' },
    });
    const same = await src.open('loader.efi', client('10.0.0.7'));
    expect(same.status).toBe('ok');
    if (same.status === 'ok') {
      expect(same.blksizeCap).toBeUndefined();
      same.close();
    }
  });
});

describe('TFTP source: render outcomes', () => {
  it('maps each render failure to a TFTP answer', () => {
    expect(tftpOutcome('not-found', 'no machine')).toEqual({ status: 'not-found', reason: 'no machine' });
    expect(tftpOutcome('no-bootenv', 'b').status).toBe('not-found');
    expect(tftpOutcome('no-template', 't').status).toBe('not-found');
    expect(tftpOutcome('digest-mismatch', 'pinned')).toEqual({ status: 'refused', reason: 'pinned' });
    expect(() => tftpOutcome('render-error', 'bad template')).toThrow(TftpRenderFailed);
    // A full queue is load: no answer (SourceBusy), so the firmware repeats its request rather than abort.
    expect(() => tftpOutcome('render-busy', 'queue full')).toThrow(SourceBusy);
  });

  it('a missing machine, a missing template, a pinned artifact that changed, a broken template', async () => {
    const { src, boots } = source();
    expect((await src.open(`machines/${UUID}/grub.cfg`, client('10.0.0.5'))).status).toBe('not-found');
    await store.create('bootenvs', 'env', {
      name: 'env',
      templates: [
        { name: 'grub', path: 'grub.cfg', contents: 'set x={{ machine.name }}\n' },
        { name: 'bad', path: 'bad.cfg', contents: '{{ 1 | nosuchfilter }}' },
      ],
    });
    await machine('env', '10.0.0.5');
    const ok = await src.open(`machines/${UUID}/grub.cfg`, client('10.0.0.5'));
    expect(ok.status).toBe('ok');
    if (ok.status === 'ok') expect((await ok.read(0, 100)).toString()).toBe('set x=m1\n');
    expect((await src.open(`machines/${UUID}/nope.cfg`, client('10.0.0.5'))).status).toBe('not-found');
    await expect(src.open(`machines/${UUID}/bad.cfg`, client('10.0.0.5'))).rejects.toBeInstanceOf(TftpRenderFailed);

    await store.replace('bootenvs', 'env', {
      name: 'env',
      artifacts: [{ path: 'loader.efi', sha256: 'a'.repeat(64) }],
      templates: [{ name: 'grub', path: 'grub.cfg', contents: 'x' }],
    });
    const refused = await src.open(`machines/${UUID}/grub.cfg`, client('10.0.0.5'));
    expect(refused).toMatchObject({ status: 'refused', reason: expect.stringContaining('refusing to boot env') });

    const details = async () => (await boots.list(UUID))[0]!.events.map((e) => `${e.kind} ${e.detail}`);
    await expect
      .poll(details)
      .toEqual(
        expect.arrayContaining([
          `tftp RRQ machines/${UUID}/grub.cfg -> 9 bytes`,
          `tftp RRQ machines/${UUID}/nope.cfg -> not-found`,
          `tftp RRQ machines/${UUID}/bad.cfg -> render-error`,
        ]),
      );
  });
});
