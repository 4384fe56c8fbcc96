/**
 * A DISCOVER's candidates after lost claims on a shared lease table (src/dhcp/shared-candidates.ts), without a
 * database: the free addresses come from `freeAddresses`, read from the address lost on and checked against the
 * index; lost guesses of the index stop at MAX_CLAIMS, lost free addresses (another DISCOVER took each a moment
 * before) only at MAX_FREE_CLAIMS.
 */
import { describe, expect, it } from 'vitest';
import type { LeaseTable } from '../../src/dhcp/lease-types.js';
import { MAX_CLAIMS, MAX_FREE_CLAIMS, sharedCandidates } from '../../src/dhcp/shared-candidates.js';
import type { SubnetInfo } from '../../src/inventory/cache.js';
import { ipToInt } from '../../src/model/common.js';

const subnet = { name: 'lab', start: ipToInt('10.0.0.1'), end: ipToInt('10.0.0.254') } as unknown as SubnetInfo;
const client = { mac: '52:54:00:00:00:01' };

function setup(taken: Set<string> = new Set()) {
  const reads: string[] = [];
  const leases = { usable: (_s: SubnetInfo, _c: unknown, a: string) => !taken.has(a) } as unknown as LeaseTable;
  let n = 100;
  const freeAddresses = async (_s: SubnetInfo, from: string, limit: number) => {
    reads.push(from);
    return Array.from({ length: limit }, () => `10.0.0.${n++}`);
  };
  return { reads, env: { leases, freeAddresses } };
}
const guess = { address: '10.0.0.7', why: 'next free address' };

describe('shared candidates', () => {
  it('reads free addresses from the one lost on, skips what the index says is taken, and reads again when used up', async () => {
    const { reads, env } = setup(new Set(['10.0.0.101']));
    const c = sharedCandidates({ subnet, client, reservation: undefined }, env);
    const first = await c.lost(guess, () => guess);
    expect(first).toEqual({ address: '10.0.0.100', why: 'free in the shared lease table' });
    expect(reads).toEqual(['10.0.0.7']);
    expect((await c.lost(first, () => guess)).address).toBe('10.0.0.102');
    expect((await c.lost({ address: '10.0.0.102', why: first.why }, () => guess)).address).toBe('10.0.0.103');
    expect((await c.lost({ address: '10.0.0.103', why: first.why }, () => guess)).address).toBe('10.0.0.104');
    expect(reads).toEqual(['10.0.0.7', '10.0.0.103']);
  });

  it(`gives up after ${MAX_CLAIMS} lost guesses, or ${MAX_FREE_CLAIMS} lost free addresses`, async () => {
    const none = { leases: setup().env.leases };
    const alone = sharedCandidates({ subnet, client, reservation: undefined }, none);
    for (let i = 1; i < MAX_CLAIMS; i++) expect((await alone.lost(guess, () => guess)).address).toBe(guess.address);
    expect(await alone.lost(guess, () => guess)).toEqual({
      why: `${MAX_CLAIMS} addresses held by other servers' clients`,
    });
    const c = sharedCandidates({ subnet, client, reservation: undefined }, setup().env);
    let alloc = await c.lost(guess, () => guess);
    for (let i = 1; i < MAX_FREE_CLAIMS; i++) {
      expect(alloc.address).toBeDefined();
      alloc = await c.lost(alloc, () => guess);
    }
    expect(alloc.address).toBeDefined();
    // The first loss was a guess of the index's, then MAX_FREE_CLAIMS free addresses lost.
    expect(await c.lost(alloc, () => guess)).toEqual({
      why: `${MAX_FREE_CLAIMS + 1} addresses held by other servers' clients`,
    });
  });

  it('offers a reserved client nothing but its reservation', async () => {
    const { reads, env } = setup();
    const c = sharedCandidates({ subnet, client, reservation: { address: '10.0.0.9' } as never }, env);
    expect(await c.lost(guess, () => ({ why: 'reserved address taken' }))).toEqual({ why: 'reserved address taken' });
    expect(reads).toEqual([]);
  });
});
