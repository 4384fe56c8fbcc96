/**
 * Subnet owners and HA pairs without sockets: the rule (`ownerDecision`), the subnet fields' validation, and the
 * gate the packet path asks, against a live-daemon cache read from a real store's `daemons` kind.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { DaemonDoc } from '../../src/daemon-registry.js';
import { backgroundGuard } from '../../src/dhcp/guard.js';
import { MessageType, Opt } from '../../src/dhcp/options.js';
import { type OwnerGate, type OwnerGateOptions, ownerDecision, ownerGate } from '../../src/dhcp/owners.js';
import { silentLogger } from '../../src/log.js';
import { Subnet } from '../../src/model/subnet.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import type { Store } from '../../src/store/store.js';
import { ip4, request, SUBNET } from './helpers.js';

const alive = (...ids: string[]) => new Set(ids);
const pair = { owners: ['a', 'b'] };

describe('ownerDecision', () => {
  it('no owners (absent or empty): every daemon answers, whatever the live set', () => {
    for (const subnet of [{}, { owners: [] }])
      expect(ownerDecision({ subnet, serverId: 'x', alive: alive(), secs: 0 })).toEqual({
        answer: true,
        reason: 'no owners',
      });
  });

  it('the primary always answers, alive or not in the list, secs 0', () => {
    for (const set of [alive('a', 'b'), alive('b'), alive()])
      expect(ownerDecision({ subnet: pair, serverId: 'a', alive: set, secs: 0 })).toEqual({
        answer: true,
        reason: 'primary',
      });
  });

  it('a standby is silent while the primary is alive', () => {
    expect(ownerDecision({ subnet: pair, serverId: 'b', alive: alive('a', 'b'), secs: 0 })).toEqual({
      answer: false,
      reason: 'standby',
      waitingFor: 'a',
    });
  });

  it('a standby answers once the primary is not alive (stale heartbeat or none)', () => {
    expect(ownerDecision({ subnet: pair, serverId: 'b', alive: alive('b'), secs: 0 })).toEqual({
      answer: true,
      reason: 'owners before it not alive',
    });
  });

  it('a standby answers a client whose secs reached standbySecs (default 10), even with the primary alive', () => {
    const at = (secs: number, standbySecs?: number) =>
      ownerDecision({ subnet: { ...pair, standbySecs }, serverId: 'b', alive: alive('a'), secs }).answer;
    expect(at(9)).toBe(false);
    expect(at(10)).toBe(true);
    expect(at(65535)).toBe(true);
    expect(at(2, 3)).toBe(false);
    expect(at(3, 3)).toBe(true);
    expect(ownerDecision({ subnet: pair, serverId: 'b', alive: alive('a'), secs: 10 }).reason).toBe('secs');
  });

  it('a standby answers a request that names it in option 54 (its own OFFER), else stays silent', () => {
    expect(ownerDecision({ subnet: pair, serverId: 'b', alive: alive('a'), secs: 0, chosen: true })).toEqual({
      answer: true,
      reason: 'chosen',
    });
    expect(ownerDecision({ subnet: pair, serverId: 'b', alive: alive('a'), secs: 0, chosen: false }).answer).toBe(
      false,
    );
  });

  it('a daemon not among the owners never answers: not for secs, a dead primary, or option 54', () => {
    for (const set of [alive('a', 'b'), alive()])
      expect(ownerDecision({ subnet: pair, serverId: 'c', alive: set, secs: 65535, chosen: true })).toEqual({
        answer: false,
        reason: 'not an owner',
      });
  });

  it('the third owner waits for every owner before it', () => {
    const trio = { owners: ['a', 'b', 'c'] };
    const c = (set: Set<string>) => ownerDecision({ subnet: trio, serverId: 'c', alive: set, secs: 0 });
    expect(c(alive('a'))).toMatchObject({ answer: false, waitingFor: 'a' });
    expect(c(alive('b'))).toMatchObject({ answer: false, waitingFor: 'b' });
    expect(c(alive('c'))).toMatchObject({ answer: true });
    // The second one does not care whether the third is alive.
    expect(ownerDecision({ subnet: trio, serverId: 'b', alive: alive('c'), secs: 0 }).answer).toBe(true);
  });
});

describe('subnet owners and standbySecs fields', () => {
  const paths = (doc: object) => {
    const r = Subnet.safeParse({ ...SUBNET, ...doc });
    return r.success ? [] : r.error.issues.map((i) => i.path.join('.'));
  };

  it('accepts serverIds and standbySecs 1-65535, leaves both absent by default', () => {
    const s = Subnet.parse({ ...SUBNET, owners: ['rack-a', 'rack.b_2'], standbySecs: 1 });
    expect(s).toMatchObject({ owners: ['rack-a', 'rack.b_2'], standbySecs: 1 });
    const plain = Subnet.parse(SUBNET);
    expect('owners' in plain || 'standbySecs' in plain).toBe(false);
    expect(paths({ owners: [] })).toEqual([]);
    expect(paths({ standbySecs: 65535 })).toEqual([]);
  });

  it('names the field when wrong', () => {
    expect(paths({ owners: ['ok', '-bad'] })).toEqual(['owners.1']);
    expect(paths({ owners: ['a'.repeat(64)] })).toEqual(['owners.0']);
    expect(paths({ owners: 'rack-a' })).toEqual(['owners']);
    expect(paths({ owners: ['a', 'b', 'a'] })).toEqual(['owners.2']);
    expect(paths({ owners: Array.from({ length: 17 }, (_, i) => `d${i}`) })).toEqual(['owners']);
    for (const standbySecs of [0, 65536, 1.5, '10']) expect(paths({ standbySecs })).toEqual(['standbySecs']);
  });
});

describe('ownerGate', () => {
  let store: Store;
  let gate: OwnerGate | undefined;
  afterEach(async () => {
    gate?.close();
    gate = undefined;
    await store?.close();
  });

  const beat = (serverId: string, agoMs: number, extra: Partial<DaemonDoc> = {}) =>
    store.putBatched('daemons', serverId, {
      serverId,
      host: 'h',
      pid: 1,
      version: 'test',
      backend: 'sqlite',
      startedAt: new Date(Date.now() - 60_000).toISOString(),
      beatAt: new Date(Date.now() - agoMs).toISOString(),
      beatSeconds: 1,
      ...extra,
    } satisfies DaemonDoc);

  function open(over: Partial<OwnerGateOptions> = {}) {
    const drops: string[] = [];
    gate = ownerGate({
      store,
      serverId: 'b',
      log: silentLogger,
      guard: backgroundGuard(silentLogger),
      isOurs: (sid, server) => sid === server,
      dropped: (why) => drops.push(why),
      wanted: () => true,
      refreshMs: 20,
      ...over,
    });
    return { gate, drops };
  }
  const discover = (secs = 0, sid?: string) =>
    request(MessageType.DISCOVER, '52:54:00:00:00:01', { secs }, sid ? [[Opt.ServerId, ip4(sid)]] : []);
  const lab = { name: 'lab', owners: ['a', 'b'] };

  it('follows the daemons list: silent while the primary beats, answering once its heartbeat is stale', async () => {
    store = openSqliteStore(':memory:');
    await beat('a', 0);
    await beat('b', 0);
    const { gate, drops } = open();
    await vi.waitFor(() => expect(gate.alive().has('a')).toBe(true));
    expect(gate.answers(lab, discover(), '10.99.1.2')).toBe(false);
    expect(drops).toEqual(['standby']);
    // Option 54 naming this server (its own OFFER), or secs at the threshold: answered with the primary alive.
    expect(gate.answers(lab, discover(0, '10.99.1.2'), '10.99.1.2')).toBe(true);
    expect(gate.answers(lab, discover(0, '10.99.1.1'), '10.99.1.2')).toBe(false);
    expect(gate.answers(lab, discover(10), '10.99.1.2')).toBe(true);
    // beatSeconds 1: stale after 3 s without a beat.
    await beat('a', 3500);
    await vi.waitFor(() => expect(gate.alive().has('a')).toBe(false));
    expect(gate.answers(lab, discover(), '10.99.1.2')).toBe(true);
    // A primary that stopped cleanly is not alive either, however recent its last beat.
    await beat('a', 0);
    await vi.waitFor(() => expect(gate.alive().has('a')).toBe(true));
    await beat('a', 0, { stoppedAt: new Date().toISOString() });
    await vi.waitFor(() => expect(gate.alive().has('a')).toBe(false));
    expect(gate.answers(lab, discover(), '10.99.1.2')).toBe(true);
    expect(drops).toEqual(['standby', 'standby']);
  });

  it('a non-owner drops every request, subnets without owners pass', async () => {
    store = openSqliteStore(':memory:');
    const { gate, drops } = open({ serverId: 'c' });
    expect(gate.answers(lab, discover(65535, '10.99.1.3'), '10.99.1.3')).toBe(false);
    expect(gate.answers({ name: 'other' }, discover(), '10.99.1.3')).toBe(true);
    expect(gate.answers({ name: 'other', owners: [] }, discover(), '10.99.1.3')).toBe(true);
    expect(drops).toEqual(['not an owner']);
  });

  it('before its first read, earlier owners count as alive; it reads the store only while some subnet has owners', async () => {
    store = openSqliteStore(':memory:');
    const list = vi.spyOn(store, 'list');
    let wanted = false;
    const { gate } = open({ wanted: () => wanted });
    await new Promise((r) => setTimeout(r, 100));
    expect(list).not.toHaveBeenCalled();
    expect(gate.alive().has('a')).toBe(true);
    wanted = true;
    await vi.waitFor(() => expect(list).toHaveBeenCalledWith('daemons'));
    // No daemon has ever beaten: none is alive, so the standby answers.
    await vi.waitFor(() => expect(gate.answers(lab, discover(), '10.99.1.2')).toBe(true));
  });

  it('a failed read keeps the last live set and is reported as a background failure', async () => {
    store = openSqliteStore(':memory:');
    await beat('a', 0);
    const guard = backgroundGuard(silentLogger);
    const { gate } = open({ guard });
    await vi.waitFor(() => expect(gate.alive().has('a')).toBe(true));
    vi.spyOn(store, 'list').mockRejectedValue(new Error('database is down'));
    await vi.waitFor(() => expect(guard.failures()).toBeGreaterThan(0));
    expect(gate.alive().has('a')).toBe(true);
    expect(gate.answers(lab, discover(), '10.99.1.2')).toBe(false);
  });
});
