/**
 * How the leader tells a request written on another daemon (pause, resume, abort: only the state and its reason
 * changed) from a version another driver wrote, and what it takes from a request (src/fleet/rollout-sync.ts);
 * and that a lone SQLite daemon lists itself as the leader.
 */
import { describe, expect, it } from 'vitest';
import { applyRequest, isRequestOnly } from '../../src/fleet/rollout-sync.js';
import type { Rollout } from '../../src/model/rollout.js';
import { startTestDaemon } from '../helpers/daemon.js';

const FINAL = new Set(['done', 'failed', 'rolled-back', 'aborted']);
const rollout = (over: Partial<Rollout> = {}): Rollout => ({
  id: 'r',
  spec: {
    selector: { namePattern: 'x*' },
    bootEnv: 'b',
    healthTimeout: 60,
    pauseBetween: 0,
    onFailure: 'stop',
    dhcpTimeout: 60,
  },
  state: 'running',
  batch: 1,
  batches: 3,
  machines: [
    { uuid: 'u1', name: 'x1', batch: 0, result: 'ok' },
    {
      uuid: 'u2',
      name: 'x2',
      batch: 1,
      run: { machine: 'u2', bootEnv: 'b', step: 'power', stepAt: 't', startedAt: 't', steps: [] },
    },
  ],
  createdAt: 't0',
  updatedAt: 't1',
  ...over,
});

describe('rollout requests across daemons', () => {
  it('a version differing only in state, reason and updatedAt is a request; any progress is not', () => {
    const mine = rollout();
    expect(isRequestOnly(rollout({ state: 'paused', updatedAt: 't2' }), mine)).toBe(true);
    expect(isRequestOnly(rollout({ state: 'aborted', reason: 'aborted by request', updatedAt: 't2' }), mine)).toBe(
      true,
    );
    expect(isRequestOnly(rollout({ batch: 2 }), mine)).toBe(false);
    const moved = rollout();
    moved.machines[1]!.run!.step = 'dhcp';
    expect(isRequestOnly(moved, mine)).toBe(false);
    // A machine's own `reason` is progress, not a request's field.
    const failed = rollout();
    failed.machines[1]!.reason = 'no DHCP';
    expect(isRequestOnly(failed, mine)).toBe(false);
  });

  it('takes pause, resume and abort in; an ended rollout keeps its end', () => {
    const live = rollout();
    expect(applyRequest(live, rollout({ state: 'paused' }), FINAL)).toBeUndefined();
    expect(live.state).toBe('paused');
    expect(applyRequest(live, rollout({ state: 'running' }), FINAL)).toBeUndefined();
    expect(live.state).toBe('running');
    expect(applyRequest(live, rollout({ state: 'aborted', reason: 'aborted by request' }), FINAL)).toBe('abort');
    expect([live.state, live.reason]).toEqual(['aborted', 'aborted by request']);
    const done = rollout({ state: 'done' });
    expect(applyRequest(done, rollout({ state: 'paused' }), FINAL)).toBeUndefined();
    expect(done.state).toBe('done');
    // A pause that raced with the driver starting a rollback does not stop the rollback.
    const back = rollout({ state: 'rolling-back' });
    applyRequest(back, rollout({ state: 'paused' }), FINAL);
    expect(back.state).toBe('rolling-back');
  });
});

describe('a lone daemon (SQLite)', () => {
  it('leads, and says so in /daemons and /info', async () => {
    const d = await startTestDaemon();
    try {
      const list = (await d.api('GET', '/api/v1/daemons')).body as { leader: boolean; alive: boolean }[];
      expect(list.map((x) => [x.alive, x.leader])).toEqual([[true, true]]);
      expect(((await d.api('GET', '/api/v1/info')).body as { daemon: { leader: boolean } }).daemon.leader).toBe(true);
    } finally {
      await d.stop();
    }
  });
});
