/**
 * As root only (skipped otherwise): `plinth lab up` refuses a namespace of its name that Plinth did not create,
 * and leaves it and the process inside it alone; a namespace this code created is deleted; one deleted behind
 * our back and recreated by someone else under the same name is foreign again. Namespaces are named
 * plinth-t-inst-*, markers go to a temp dir, and everything created here is deleted after.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { labUp } from '../../src/lab/lab.js';
import { createNamespace, deleteNamespace, namespaces } from '../../src/lab/netns.js';
import { ForeignNamespaceError } from '../../src/lab/owner.js';

const isRoot = process.getuid?.() === 0;
const suffix = String(process.pid % 100000);
const FOREIGN = `t-inst-${suffix}`;
const NS = `plinth-${FOREIGN}`;
const OURS = `plinth-t-inst-o${suffix}`;
let markers: string;
let dir: string;
const saved = process.env.PLINTH_NETNS_MARKERS;

const ipDel = (ns: string) => {
  try {
    execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
  } catch {
    // not there
  }
};

beforeAll(() => {
  if (!isRoot) return;
  markers = mkdtempSync(path.join(tmpdir(), 'plinth-markers-'));
  dir = mkdtempSync(path.join(tmpdir(), 'plinth-lab-'));
  process.env.PLINTH_NETNS_MARKERS = markers;
});
afterAll(() => {
  if (!isRoot) return;
  ipDel(NS);
  ipDel(OURS);
  if (saved === undefined) delete process.env.PLINTH_NETNS_MARKERS;
  else process.env.PLINTH_NETNS_MARKERS = saved;
  rmSync(markers, { recursive: true, force: true });
  rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!isRoot)('lab namespaces as root', () => {
  it('lab up refuses a foreign namespace of its name and leaves it and its processes alone', async () => {
    execFileSync('ip', ['netns', 'add', NS]);
    const sleeper = spawn('ip', ['netns', 'exec', NS, 'sleep', '60'], { stdio: 'ignore' });
    try {
      await new Promise((r) => setTimeout(r, 200));
      const api = {
        json: async () => {
          throw new Error('the API must not be called');
        },
      };
      await expect(labUp({ name: FOREIGN, vms: 1, dir, api })).rejects.toThrow(ForeignNamespaceError);
      await expect(labUp({ name: FOREIGN, vms: 1, dir, api })).rejects.toThrow(/ip netns del plinth-t-inst-/);
      expect(namespaces()).toContain(NS);
      expect(sleeper.exitCode).toBeNull();
      expect(execFileSync('ip', ['netns', 'pids', NS], { encoding: 'utf8' }).trim()).not.toBe('');
    } finally {
      sleeper.kill('SIGKILL');
      ipDel(NS);
    }
  });

  it('deletes what it created, but not a namespace recreated under the same name by someone else', () => {
    createNamespace(OURS);
    expect(namespaces()).toContain(OURS);
    deleteNamespace(OURS);
    expect(namespaces()).not.toContain(OURS);

    createNamespace(OURS);
    // Deleted behind our back and made again by someone else: the marker names the old namespace.
    ipDel(OURS);
    execFileSync('ip', ['netns', 'add', OURS]);
    expect(() => deleteNamespace(OURS)).toThrow(ForeignNamespaceError);
    expect(namespaces()).toContain(OURS);
    ipDel(OURS);
  });
});
