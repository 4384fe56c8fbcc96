/**
 * The Store contract, run on both backends (SQLite always, PostgreSQL with PLINTH_TEST_PG_URL): the same calls
 * give the same documents, etags, errors, list orders and unique-value ownership. A difference between the
 * backends fails here, whichever of them is wrong.
 */
import { describe, expect, it } from 'vitest';
import { etagOf } from '../../src/store/batch.mjs';
import {
  BackendError,
  ConflictError,
  NotFoundError,
  PreconditionError,
  type Store,
  StoreError,
} from '../../src/store/store.js';
import { type Backend, backends, skipUnavailable } from './backends.js';

const fresh = async (b: Backend): Promise<Store> => (await b.db()).open();
const keys = (r: { items: { key: string }[] }) => r.items.map((i) => i.key);

describe.each(backends(import.meta.filename))('store contract on $name', (b) => {
  skipUnavailable(b);

  it('create then get: the JSON as written, its etagOf, the parsed document; a missing key is undefined', async () => {
    const s = await fresh(b);
    const doc = { name: 'm1', z: 1, a: [1, 'x'], nested: { b: true, a: null }, s: 'é 🙂 \u0000 \ud800' };
    const made = await s.create('machines', 'u1', doc, [{ field: 'name', value: 'm1' }]);
    expect(made.json).toBe(JSON.stringify(doc));
    expect(made.etag).toBe(etagOf(made.json));
    const got = await s.get('machines', 'u1');
    // Byte for byte: key order, the NUL and the lone surrogate's escapes as JSON.stringify wrote them.
    expect(got?.json).toBe(JSON.stringify(doc));
    expect(got?.etag).toBe(made.etag);
    expect(got?.doc).toEqual(doc);
    expect(await s.get('machines', 'nope')).toBeUndefined();
    expect(await s.get('machines', 'has\0nul')).toBeUndefined();
    // A filter on that string still finds it.
    expect(keys(await s.list('machines', { filters: [{ field: 's', value: doc.s }] }))).toEqual(['u1']);
  });

  it('getMany: the documents of the keys that exist, by key in byte order, each as get returns it', async () => {
    const s = await fresh(b);
    await s.create('files', 'ipxe.efi', { path: 'ipxe.efi', sha256: 'a' });
    await s.putBatched('files', 'undionly.kpxe', { path: 'undionly.kpxe', sha256: 'b' });
    await s.create('files', 'Z', { path: 'Z' });
    const got = await s.getMany!('files', ['undionly.kpxe', 'nope', 'ipxe.efi', 'Z', 'has\0nul', 'ipxe.efi']);
    expect(got.map((g) => g.key)).toEqual(['Z', 'ipxe.efi', 'undionly.kpxe']);
    expect(got[1]).toEqual(await s.get('files', 'ipxe.efi'));
    expect(got[2]?.doc).toEqual({ path: 'undionly.kpxe', sha256: 'b' });
    expect(await s.getMany!('files', [])).toEqual([]);
  });

  it('a taken key or unique value is a ConflictError naming its owner, and nothing is written', async () => {
    const s = await fresh(b);
    await s.create('machines', 'u1', { name: 'a' }, [
      { field: 'name', value: 'a' },
      { field: 'mac', value: '52:54:00:00:00:01' },
    ]);
    const dupKey = s.create('machines', 'u1', { name: 'b' }, []);
    await expect(dupKey).rejects.toBeInstanceOf(ConflictError);
    await expect(dupKey).rejects.toMatchObject({ field: 'key', value: 'u1' });
    const dupMac = s.create('machines', 'u2', { name: 'b' }, [
      { field: 'name', value: 'b' },
      { field: 'mac', value: '52:54:00:00:00:01' },
    ]);
    await expect(dupMac).rejects.toMatchObject({ field: 'mac', value: '52:54:00:00:00:01', owner: 'u1' });
    expect(await s.get('machines', 'u2')).toBeUndefined();
    expect(await s.keyOf('machines', 'name', 'b')).toBeUndefined();
    // Unique values are per kind.
    await s.create('reservations', 'r1', {}, [{ field: 'mac', value: '52:54:00:00:00:01' }]);
    expect(await s.keyOf('reservations', 'mac', '52:54:00:00:00:01')).toBe('r1');
  });

  it('replace: not found, then If-Match, then unique values; unique values move with the document', async () => {
    const s = await fresh(b);
    await expect(s.replace('machines', 'u9', {}, [], { ifMatch: 'x' })).rejects.toBeInstanceOf(NotFoundError);
    const one = await s.create('machines', 'u1', { name: 'a' }, [{ field: 'name', value: 'a' }]);
    await s.create('machines', 'u2', { name: 'b' }, [{ field: 'name', value: 'b' }]);
    await expect(
      s.replace('machines', 'u1', { name: 'b' }, [{ field: 'name', value: 'b' }], { ifMatch: 'stale' }),
    ).rejects.toBeInstanceOf(PreconditionError);
    const taken = s.replace('machines', 'u1', { name: 'b' }, [{ field: 'name', value: 'b' }], { ifMatch: one.etag });
    await expect(taken).rejects.toMatchObject({ field: 'name', owner: 'u2' });
    expect((await s.get('machines', 'u1'))?.etag).toBe(one.etag);
    expect(await s.keyOf('machines', 'name', 'a')).toBe('u1');

    const two = await s.replace('machines', 'u1', { name: 'c' }, [{ field: 'name', value: 'c' }], {
      ifMatch: one.etag,
    });
    expect(two.etag).toBe(etagOf(JSON.stringify({ name: 'c' })));
    expect(await s.keyOf('machines', 'name', 'a')).toBeUndefined();
    expect(await s.keyOf('machines', 'name', 'c')).toBe('u1');
    // Keeping a value it already owns is no conflict; without If-Match, last writer wins.
    await s.replace('machines', 'u1', { name: 'c', x: 1 }, [{ field: 'name', value: 'c' }]);
    expect((await s.get('machines', 'u1'))?.doc).toEqual({ name: 'c', x: 1 });
  });

  it('remove: not found, If-Match, and it frees the unique values', async () => {
    const s = await fresh(b);
    await expect(s.remove('machines', 'u1')).rejects.toBeInstanceOf(NotFoundError);
    const m = await s.create('machines', 'u1', { name: 'a' }, [{ field: 'name', value: 'a' }]);
    await expect(s.remove('machines', 'u1', { ifMatch: 'stale' })).rejects.toBeInstanceOf(PreconditionError);
    await s.remove('machines', 'u1', { ifMatch: m.etag });
    expect(await s.get('machines', 'u1')).toBeUndefined();
    await s.create('machines', 'u2', { name: 'a' }, [{ field: 'name', value: 'a' }]);
    expect(await s.keyOf('machines', 'name', 'a')).toBe('u2');
  });

  it('list: filters on strings, numbers, booleans, null and array members; limit, offset and total', async () => {
    const s = await fresh(b);
    const docs: Record<string, Record<string, unknown>> = {
      a: { arch: 'amd64', cpus: 4, ok: true, macs: ['m1', 'm2'], tag: null },
      b: { arch: 'arm64', cpus: 8, ok: false, macs: ['m3'] },
      c: { arch: 'amd64', cpus: 8, ok: true, macs: [], tag: 'x' },
      d: { arch: 'amd64', cpus: '8', macs: 'm9' },
    };
    for (const [k, d] of Object.entries(docs)) await s.create('machines', k, d);
    const f = (field: string, value: string | number | boolean | null, array?: boolean) =>
      s.list('machines', { filters: [{ field, value, array }] }).then(keys);
    expect(await f('arch', 'amd64')).toEqual(['a', 'c', 'd']);
    expect(await f('cpus', 8)).toEqual(['b', 'c']); // the string '8' is not the number 8
    expect(await f('cpus', '8')).toEqual(['d']);
    expect(await f('ok', true)).toEqual(['a', 'c']);
    expect(await f('tag', null)).toEqual(['a', 'b', 'd']); // null and missing alike
    expect(await f('macs', 'm2', true)).toEqual(['a']);
    expect(await f('macs', 'm9', true)).toEqual(['d']); // a scalar field matches itself
    expect(await f('macs', null, true)).toEqual([]);
    const two = await s.list('machines', {
      filters: [
        { field: 'arch', value: 'amd64' },
        { field: 'ok', value: true },
      ],
    });
    expect(keys(two)).toEqual(['a', 'c']);
    const page = await s.list('machines', { filters: [{ field: 'arch', value: 'amd64' }], limit: 1, offset: 1 });
    expect([keys(page), page.total]).toEqual([['c'], 3]);
    const past = await s.list('machines', { limit: 2, offset: 10 });
    expect([keys(past), past.total]).toEqual([[], 4]);
    await expect(s.list('machines', { filters: [{ field: 'a;drop', value: 1 }] })).rejects.toBeInstanceOf(StoreError);
  });

  it('list order: keys by bytes; a sorted field puts missing first, numbers before strings, ties by key', async () => {
    const s = await fresh(b);
    for (const k of ['b', 'B', 'a', '_', 'ä', '10', '9']) await s.putBatched('leases', k, { k });
    expect(keys(await s.list('leases'))).toEqual(['10', '9', 'B', '_', 'a', 'b', 'ä']);
    const docs: Record<string, Record<string, unknown>> = {
      k1: { n: 10, s: 'b' },
      k2: { n: 9, s: 'B' },
      k3: { s: 'a' },
      k4: { n: 10, s: 'a' },
      k5: { n: 'x', s: null },
      k6: { n: 2.5, s: 'é' },
    };
    for (const [k, d] of Object.entries(docs)) await s.create('machines', k, d);
    const sorted = (field: string, desc?: boolean) => s.list('machines', { sort: { field, desc } }).then(keys);
    expect(await sorted('n')).toEqual(['k3', 'k6', 'k2', 'k1', 'k4', 'k5']);
    expect(await sorted('n', true)).toEqual(['k5', 'k1', 'k4', 'k2', 'k6', 'k3']);
    expect(await sorted('s')).toEqual(['k5', 'k2', 'k3', 'k4', 'k1', 'k6']);
    expect(keys(await s.list('machines', { sort: { field: 'n' }, limit: 2, offset: 1 }))).toEqual(['k6', 'k2']);
  });

  it('putBatched: upserts and deletes, the last write of a key in a batch wins, reads see it with its etag', async () => {
    const s = await fresh(b);
    await Promise.all([
      s.putBatched('leases', '10.0.0.1', { v: 1 }),
      s.putBatched('leases', '10.0.0.2', { v: 1 }),
      s.putBatched('leases', '10.0.0.1', { v: 2 }),
      s.putBatched('boots', 'b1', { machine: 'm' }),
      s.putBatched('leases', '10.0.0.2', null),
    ]);
    const all = await s.list('leases');
    expect(all.items.map((i) => [i.key, i.doc])).toEqual([['10.0.0.1', { v: 2 }]]);
    expect(all.items[0]!.etag).toBe(etagOf('{"v":2}'));
    expect((await s.get('boots', 'b1'))?.doc).toEqual({ machine: 'm' });
    // Deleted then written again in one batch: written.
    await Promise.all([s.putBatched('leases', '10.0.0.3', null), s.putBatched('leases', '10.0.0.3', { v: 3 })]);
    expect((await s.get('leases', '10.0.0.3'))?.doc).toEqual({ v: 3 });
    await expect(s.putBatched('nope' as never, 'k', {})).rejects.toThrow(/unknown kind/);
  });

  it('a closed store refuses writes; close waits for the batch in flight', async () => {
    const s = await fresh(b);
    const pending = Array.from({ length: 50 }, (_, i) => s.putBatched('leases', `k${i}`, { i }));
    await s.close();
    await Promise.all(pending);
    await expect(s.putBatched('leases', 'late', {})).rejects.toBeInstanceOf(BackendError);
  });

  it('two openers of one database (two daemons): one wins a race for a unique value, each sees the other', async () => {
    const db = await b.db();
    const [one, two] = [await db.open(), await db.open()];
    const race = await Promise.allSettled(
      Array.from({ length: 10 }, (_, i) =>
        (i % 2 ? one : two).create('machines', `u${i}`, { name: 'same' }, [{ field: 'mac', value: 'aa' }]),
      ),
    );
    const won = race.filter((r) => r.status === 'fulfilled');
    expect(won).toHaveLength(1);
    for (const r of race) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(ConflictError);
    const owner = await two.keyOf('machines', 'mac', 'aa');
    expect((await one.list('machines')).items.map((i) => i.key)).toEqual([owner]);
    // If-Match across openers: a write made through one invalidates the etag the other read.
    const read = (await one.get('machines', owner!))!;
    await two.replace('machines', owner!, { name: 'changed' }, [{ field: 'mac', value: 'aa' }]);
    await expect(one.replace('machines', owner!, { name: 'mine' }, [], { ifMatch: read.etag })).rejects.toBeInstanceOf(
      PreconditionError,
    );
    // Claims of the same values listed in opposite orders: one wins each round, the other gets a
    // ConflictError, never a deadlock's BackendError.
    for (let round = 0; round < 20; round++) {
      const macs = [`x${round}`, `y${round}`].map((value) => ({ field: 'mac', value }));
      const [p, q] = await Promise.allSettled([
        one.create('machines', `p${round}`, {}, macs),
        two.create('machines', `q${round}`, {}, [...macs].reverse()),
      ]);
      const failures = [p, q].filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason);
      expect(failures).toHaveLength(1);
      expect(failures[0]).toBeInstanceOf(ConflictError);
    }
    await one.putBatched('leases', 'l', { from: 'one' });
    // SQLite's lease journal: the other opener sees it once applied (every 50 ms).
    await expect.poll(async () => (await two.get('leases', 'l'))?.doc).toEqual({ from: 'one' });
  });
});
