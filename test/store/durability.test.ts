/**
 * putBatched's promise is the DHCP server's licence to send an ACK: every write it resolved survives a kill -9
 * of the writing process, on both backends. A child writes and prints each acknowledged key, and gets SIGKILL
 * right after an acknowledgement (from itself, in the resolving callback: no later moment of the writer is
 * closer to the ACK, so a store that resolved before its COMMIT loses that write here); the parent then finds
 * every acknowledged key stored.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { backends, skipUnavailable } from './backends.js';

const CHILD = fileURLToPath(new URL('./durability-child.ts', import.meta.url));

/** Runs the child until its SIGKILL after `acks` acknowledged writes; returns the keys it acknowledged. */
function writeThenKill(backend: string, where: string, acks: number): Promise<string[]> {
  const ackFile = path.join(mkdtempSync(path.join(tmpdir(), 'plinth-acks-')), 'acks');
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, backend, where, String(acks), ackFile], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`child did not acknowledge ${acks} writes in 60 s: ${err}`));
    }, 60_000);
    child.stderr.on('data', (d) => {
      err += d;
    });
    child.on('exit', (_code, signal) => {
      clearTimeout(timer);
      if (signal !== 'SIGKILL') return reject(new Error(`child exited by itself: ${err}`));
      const lines = readFileSync(ackFile, 'utf8').split('\n');
      rmSync(path.dirname(ackFile), { recursive: true, force: true });
      resolve(lines.filter((l) => l.startsWith('ACK ')).map((l) => l.slice(4)));
    });
  });
}

describe.each(backends(import.meta.filename))('putBatched durability on $name', (b) => {
  skipUnavailable(b);

  it('every write acknowledged before a kill -9 of the writer is stored', async () => {
    const db = await b.db();
    await (await db.open()).close(); // the schema exists before the child starts (migrations applied once)
    const acked = await writeThenKill(b.name, db.where, 2001);
    expect(acked.length).toBe(2001);
    const store = await db.open();
    const stored = new Set((await store.list('leases')).items.map((i) => i.key));
    const lost = acked.filter((k) => !stored.has(k));
    expect(lost).toEqual([]);
    // The kill came while other writes were in flight: more may be stored than was acknowledged, never fewer.
    expect(stored.size).toBeGreaterThanOrEqual(acked.length);
  }, 90_000);
});
