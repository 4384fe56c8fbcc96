/**
 * The bus keeps a plain listener list (no EventEmitter, which copies its array on every emit): subscribing or
 * unsubscribing while an event is delivered must behave as EventEmitter did.
 */
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { createBus } from '../../src/events.js';

const ev = { type: 'prefs.updated', key: 'global' } as const;

describe('bus listeners changed during an emit', () => {
  it('one removed during an emit still hears that event, not the next; one added hears only the next', () => {
    const bus = createBus(pino({ level: 'silent' }));
    const heard: string[] = [];
    let offB = () => {};
    let added = false;
    bus.on(() => {
      heard.push('a');
      offB();
      if (!added) {
        added = true;
        bus.on(() => heard.push('c'));
      }
    });
    offB = bus.on(() => heard.push('b'));
    bus.emit(ev);
    expect(heard).toEqual(['a', 'b']);
    bus.emit(ev);
    expect(heard).toEqual(['a', 'b', 'a', 'c']);
  });

  it('one function subscribed twice hears each event twice, and each off() removes one subscription', () => {
    const bus = createBus(pino({ level: 'silent' }));
    let n = 0;
    const fn = () => n++;
    const off1 = bus.on(fn);
    bus.on(fn);
    bus.emit(ev);
    expect(n).toBe(2);
    off1();
    off1();
    bus.emit(ev);
    expect(n).toBe(3);
  });
});
