/**
 * The Router Solicitation responder's switch (src/dhcp/ra.ts), socket-free: a fake native helper records which
 * interfaces answer. Issue 14: iPXE waits ~16 s for IPv6 on an IPv4-only segment unless someone answers its RS,
 * so answering is the default; a lab's interface that appears after the daemon started must be answered too.
 */
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { NetAddon } from '../../src/dhcp/bind.js';
import { startRaResponder } from '../../src/dhcp/ra.js';
import type { InventoryCache } from '../../src/inventory/cache.js';
import { Prefs } from '../../src/model/profile.js';

const silent = pino({ level: 'silent' });

function fakeAddon(refuse: Set<string> = new Set()) {
  let next = 0;
  const live = new Map<number, string>();
  const starts: string[] = [];
  const addon = {
    raStart: (ifname: string) => {
      starts.push(ifname);
      if (refuse.has(ifname)) throw Object.assign(new Error('socket: EPERM'), { code: 'EPERM' });
      live.set(++next, ifname);
      return next;
    },
    raStop: (id: number) => {
      if (!live.delete(id)) throw new Error(`stop of unknown responder ${id}`);
      return 0;
    },
    raAnswered: () => 1,
  } as unknown as NetAddon;
  return { addon, starts, live: () => [...live.values()].sort() };
}

const until = async (f: () => boolean, ms = 2000) => {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 5))) if (f()) return true;
  return f();
};

describe('router solicitation responder', () => {
  it('answers by default: a prefs document with nothing set turns it on for the served interfaces', () => {
    expect(Prefs.parse({}).answerRouterSolicitations).toBe(true);
    const f = fakeAddon();
    const inventory = { prefs: () => Prefs.parse({}) } as unknown as InventoryCache;
    const ra = startRaResponder({
      interfaces: () => ['br0'],
      inventory,
      log: silent,
      addon: f.addon,
      ipv6Of: () => ['fe80::1'],
    });
    try {
      expect(f.live()).toEqual(['br0']);
      expect(ra.answered()).toBe(1);
    } finally {
      ra.close();
    }
    expect(f.live()).toEqual([]);
  });

  it('follows the served interfaces and the pref: a new one starts, a gone one stops, off stops all', async () => {
    const f = fakeAddon();
    let ifs = ['br0'];
    let on = true;
    const inventory = { prefs: () => ({ answerRouterSolicitations: on }) } as unknown as InventoryCache;
    const ra = startRaResponder({ interfaces: () => ifs, inventory, log: silent, addon: f.addon, checkEveryMs: 10 });
    try {
      expect(f.live()).toEqual(['br0']);
      ifs = ['br0', 'plinth-lab0']; // `plinth lab up` added a veth while the daemon runs
      expect(await until(() => f.live().length === 2)).toBe(true);
      expect(f.live()).toEqual(['br0', 'plinth-lab0']);
      expect(f.starts.filter((i) => i === 'br0')).toHaveLength(1); // not restarted
      ifs = ['plinth-lab0'];
      expect(await until(() => f.live().length === 1)).toBe(true);
      expect(f.live()).toEqual(['plinth-lab0']);
      on = false;
      expect(await until(() => f.live().length === 0)).toBe(true);
      on = true;
      expect(await until(() => f.live().length === 1)).toBe(true);
      expect(ra.interfaces()).toEqual(['plinth-lab0']);
    } finally {
      ra.close();
    }
    expect(f.live()).toEqual([]);
  });

  it('stays silent where IPv6 is configured (a router answers there), and answers once it is gone', async () => {
    const f = fakeAddon();
    const v6: Record<string, string[]> = { br0: ['fe80::1'], eth0: ['fe80::2', '2001:db8::5'] };
    const inventory = { prefs: () => ({ answerRouterSolicitations: true }) } as unknown as InventoryCache;
    const ra = startRaResponder({
      interfaces: () => ['br0', 'eth0'],
      inventory,
      log: silent,
      addon: f.addon,
      checkEveryMs: 10,
      ipv6Of: (i) => v6[i] ?? [],
    });
    try {
      expect(f.live()).toEqual(['br0']); // link-local only: answered; a global address: not
      v6.eth0 = ['fe80::2'];
      expect(await until(() => f.live().length === 2)).toBe(true);
      v6.br0 = ['fe80::1', 'fd00::1'];
      expect(await until(() => f.live().length === 1)).toBe(true);
      expect(f.live()).toEqual(['eth0']);
    } finally {
      ra.close();
    }
  });

  it('an interface that refuses (no privilege, no IPv6) is not retried while served, and does not stop the others', async () => {
    const f = fakeAddon(new Set(['eth1']));
    let ifs = ['eth1', 'br0'];
    const inventory = { prefs: () => ({ answerRouterSolicitations: true }) } as unknown as InventoryCache;
    const ra = startRaResponder({ interfaces: () => ifs, inventory, log: silent, addon: f.addon, checkEveryMs: 10 });
    try {
      expect(f.live()).toEqual(['br0']);
      await new Promise((r) => setTimeout(r, 80));
      expect(f.starts.filter((i) => i === 'eth1')).toHaveLength(1);
      ifs = ['br0']; // it went away; when it comes back (say, with IPv6 now) it is tried again
      await new Promise((r) => setTimeout(r, 40));
      ifs = ['eth1', 'br0'];
      expect(await until(() => f.starts.filter((i) => i === 'eth1').length === 2)).toBe(true);
    } finally {
      ra.close();
    }
  });
});
