import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { type CrudEventType, createBus, type PlinthEvent } from '../../src/events.js';

function captureLogger() {
  const lines: Record<string, any>[] = [];
  const dest = new Writable({
    write(chunk, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { logger: pino({ level: 'info' }, dest), lines };
}

const acked = { type: 'lease.acked', key: '10.0.0.5', data: { mac: 'aa', subnet: 's', expiresAt: 'x' } } as const;

describe('event bus', () => {
  it('stamps `at` on the event it is given and hands subscribers that object; a frozen one is copied', () => {
    const bus = createBus(undefined, { clock: () => 0 });
    const seen: PlinthEvent[] = [];
    bus.on((e) => seen.push(e));
    const fresh = { type: 'lease.offered', key: '10.0.0.6', data: { mac: 'bb', subnet: 's' } } as const;
    bus.emit(fresh);
    expect(seen[0]).toBe(fresh);
    expect(seen[0]!.at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    const frozen = Object.freeze({
      type: 'lease.released',
      key: '10.0.0.7',
      data: { mac: 'cc', subnet: 's' },
    } as const);
    expect(() => bus.emit(frozen)).not.toThrow();
    expect(seen[1]).not.toBe(frozen);
    expect(seen[1]).toMatchObject({ type: 'lease.released', key: '10.0.0.7', data: { mac: 'cc', subnet: 's' } });
    expect(seen[1]!.at).toBeTypeOf('string');
    expect('at' in frozen).toBe(false);
  });

  it('logs a throwing subscriber with the event type and the error, and still runs the others', () => {
    const { logger, lines } = captureLogger();
    const bus = createBus(logger);
    const seen: string[] = [];
    bus.on((e) => seen.push(`first ${e.type}`));
    bus.on((e) => {
      if (e.type === 'lease.acked') throw new Error(`cannot handle ${e.data.mac}`);
    });
    bus.on((e) => seen.push(`last ${e.type}`));
    expect(() => bus.emit(acked)).not.toThrow();
    expect(seen).toEqual(['first lease.acked', 'last lease.acked']);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 50, event: 'lease.acked', msg: 'event subscriber failed on lease.acked' });
    expect(lines[0]!.err).toMatchObject({ message: 'cannot handle aa', type: 'Error' });
    expect(lines[0]!.err.stack).toContain('events.test.ts');
  });

  it('a subscriber failing on every event writes one line per type and interval, then counts what it left out', () => {
    const { logger, lines } = captureLogger();
    let t = 0;
    const bus = createBus(logger, { logIntervalMs: 1000, clock: () => t });
    bus.on(() => {
      throw new Error('broken');
    });
    for (let i = 0; i < 500; i++) bus.emit(acked);
    bus.emit({ type: 'prefs.updated', key: 'global' });
    expect(lines.map((l) => l.event)).toEqual(['lease.acked', 'prefs.updated']);
    t = 1500;
    bus.emit(acked);
    expect(lines).toHaveLength(3);
    expect(lines[2]).toMatchObject({ event: 'lease.acked', suppressed: 499 });
  });

  it('an unsubscribed listener hears nothing more; events are stamped', () => {
    const bus = createBus(pino({ level: 'silent' }));
    const got: PlinthEvent[] = [];
    const off = bus.on((e) => got.push(e));
    bus.emit({ type: 'machines.created', key: 'u1', machine: 'u1' });
    off();
    bus.emit({ type: 'machines.deleted', key: 'u1', machine: 'u1' });
    expect(got).toHaveLength(1);
    expect(got[0]!.at).toMatch(/^\d{4}-\d\d-\d\dT/);
  });

  it('narrows on type: each event has its own data (checked by tsc)', () => {
    const bus = createBus(pino({ level: 'silent' }));
    const out: unknown[] = [];
    const off = bus.on((e) => {
      // Before narrowing, a key some event carries can be read (a machine's callback data makes it unknown); a key
      // no event carries is an error.
      const mac = e.data?.mac;
      // @ts-expect-error no event has a `nope` in its data
      out.push(e.data?.nope, mac);
      if (e.type === 'lease.acked') {
        const when: string = e.data.expiresAt; // no `?.`: lease.acked always has data
        // @ts-expect-error lease.acked carries no blksize
        const cap: number = e.data.blksize;
        out.push(when, cap);
      } else if (e.type === 'dhcp.boot') {
        const cap: number | undefined = e.data.blksize;
        // @ts-expect-error blksize is optional on dhcp.boot
        const sure: number = e.data.blksize;
        out.push(cap, sure);
      } else if (e.type === 'subnets.updated') {
        // @ts-expect-error CRUD events carry no data
        out.push(e.data.mac);
      }
    });
    bus.emit({
      type: 'dhcp.boot',
      key: 'aa',
      data: { mac: 'aa', filename: 'f', nextServer: 'n', bootEnv: 'b', reason: 'r', mode: 'full', blksize: 512 },
    });
    off();
    // @ts-expect-error lease.acked needs its subnet and expiry
    bus.emit({ type: 'lease.acked', key: '10.0.0.5', data: { mac: 'aa' } });
    // @ts-expect-error an event cannot carry another event's keys
    bus.emit({ type: 'lease.released', key: '10.0.0.5', data: { mac: 'aa', subnet: 's', blksize: 512 } });
    // @ts-expect-error unknown event types are refused
    bus.emit({ type: 'lease.stolen', key: '10.0.0.5' });
    const crud: CrudEventType = 'machines.updated';
    // @ts-expect-error only inventory resources have CRUD events
    const notCrud: CrudEventType = 'tokens.created';
    expect([crud, notCrud]).toHaveLength(2);
    expect(out).toEqual([undefined, 'aa', 512, 512]);
  });
});
