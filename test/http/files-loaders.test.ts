/**
 * UEFI HTTP Boot fetches its loader from /files: one found only in the distribution's iPXE directories (the
 * --loader-search list) is served there by its bare name; nothing else in those directories is.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';

let d: TestDaemon;
const fixtures = path.resolve('test/fixtures/loaders');
beforeAll(async () => {
  // The test config points the loader search at test/fixtures/loaders; assets/ ships empty.
  d = await startTestDaemon();
});
afterAll(() => d.stop());

describe('/files serves the loaders Plinth found', () => {
  it('a loader in a search directory, by its bare name', async () => {
    const r = await fetch(`${d.url}/files/ipxe.efi`);
    expect(r.status).toBe(200);
    expect(Buffer.from(await r.arrayBuffer())).toEqual(readFileSync(path.join(fixtures, 'ipxe.efi')));
  });

  it('nothing else from those directories, and no loader name under a path', async () => {
    expect((await fetch(`${d.url}/files/loaders/ipxe.efi`)).status).toBe(404);
    expect((await fetch(`${d.url}/files/ipxe-arm64.efi`)).status).toBe(404);
  });
});
