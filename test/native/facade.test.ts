/**
 * The native facade (src/native/index.ts): it loads the addon built from native/, types every function the addon
 * exports, and reports each capability; with PLINTH_NET_ADDON naming a missing or broken file every capability is
 * absent and the DHCP and TFTP callers fall back. The override cases run in a child process each, because the
 * facade loads the addon once per process.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NATIVE_FUNCTIONS, native } from '../../src/native/index.js';
import { ADDON_FILE, ensureAddon } from '../dhcp/addon.js';

const built = ensureAddon();
const probe = fileURLToPath(new URL('./probe.ts', import.meta.url));

type Probe = {
  caps: Record<string, boolean>;
  path: string | null;
  addon: boolean;
  views: Record<string, boolean>;
  callers: { dhcp: boolean; tftp: boolean };
};

function runProbe(addonPath: string): Probe {
  const out = execFileSync(process.execPath, ['--import', 'tsx', probe], {
    env: { ...process.env, PLINTH_NET_ADDON: addonPath },
    encoding: 'utf8',
    timeout: 30_000,
  });
  return JSON.parse(out.trim().split('\n').pop() ?? '') as Probe;
}

describe.skipIf(!built)('native facade with the built addon', () => {
  it('loads the addon from native/build and reports every capability', () => {
    expect(native.path).toBe(ADDON_FILE);
    expect(native.caps).toEqual({
      dhcpSockets: true,
      raResponder: true,
      tftpFastPath: true,
      tftpArmedWindows: true,
      readPackets: true,
      httpSendfile: true,
      icmpEcho: true,
      dhcpBatchIo: true,
      leaseJournal: true,
      journalSend: true,
      journalStats: true,
    });
    expect(native.dhcpSockets).toBeDefined();
    expect(native.raResponder).toBeDefined();
    expect(native.tftpFastPath?.udpArm).toBeTypeOf('function');
    expect(native.readPackets).toBeTypeOf('function');
  });

  it('types exactly the functions the addon exports', () => {
    const exported = createRequire(import.meta.url)(ADDON_FILE) as Record<string, unknown>;
    expect([...NATIVE_FUNCTIONS].sort()).toEqual(Object.keys(exported).sort());
    for (const name of NATIVE_FUNCTIONS) expect(native.addon?.[name]).toBeTypeOf('function');
  });

  it('its views call into the addon: a loopback UDP socket opened and closed through dhcpSockets', () => {
    const sockets = native.dhcpSockets!;
    const fd = sockets.openUdp4(null, 0, '127.0.0.1');
    expect(fd).toBeGreaterThan(2);
    expect(sockets.closeFd(fd)).toBe(0);
    // The C's argument checks reach JavaScript as exceptions with the message of the signature typed here.
    expect(() => sockets.openUdp4(null, 0, 'not-an-address')).toThrow(/not an IPv4 address/);
  });

  it('a transfer socket through tftpFastPath gets a port and closes idempotently', () => {
    const tftp = native.tftpFastPath!;
    const h = tftp.udpOpen('127.0.0.1', '127.0.0.1', 9, () => {});
    expect(tftp.udpLocalPort(h)).toBeGreaterThan(0);
    expect(tftp.udpClose(h)).toBe(0);
    expect(tftp.udpClose(h)).toBe(0);
  });
});

describe('native facade with PLINTH_NET_ADDON overridden (child processes)', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'plinth-native-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const absent = {
    caps: {
      dhcpSockets: false,
      raResponder: false,
      tftpFastPath: false,
      tftpArmedWindows: false,
      readPackets: false,
      httpSendfile: false,
      icmpEcho: false,
      dhcpBatchIo: false,
      leaseJournal: false,
      journalSend: false,
      journalStats: false,
    },
    path: null,
    addon: false,
    views: { dhcpSockets: false, raResponder: false, tftpFastPath: false, readPackets: false },
    callers: { dhcp: false, tftp: false },
  };

  it('a missing file: no addon (no fall-back to native/build), every flag false, DHCP and TFTP fall back', () => {
    expect(runProbe(path.join(dir, 'missing.node'))).toEqual(absent);
  });

  it('a file that is not a loadable addon (a stale or broken build): the same', () => {
    const bogus = path.join(dir, 'bogus.node');
    writeFileSync(bogus, 'not an ELF object');
    expect(runProbe(bogus)).toEqual(absent);
  });

  it.skipIf(!built)('a copy of the built addon elsewhere: loaded from there, every flag true', () => {
    const copy = path.join(dir, 'copy.node');
    copyFileSync(ADDON_FILE, copy);
    const r = runProbe(copy);
    expect(r.path).toBe(copy);
    expect(Object.values(r.caps).every(Boolean)).toBe(true);
    expect(r.views).toEqual({ dhcpSockets: true, raResponder: true, tftpFastPath: true, readPackets: true });
    expect(r.callers).toEqual({ dhcp: true, tftp: true });
  });
});
