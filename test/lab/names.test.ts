/**
 * Lab names and namespace ownership without root: names derive the namespace, veth and subnet (and fit an
 * interface name); the default differs per data dir; a namespace is ours only when its marker names that very
 * namespace; deleteNamespace refuses a foreign one before running any command (a fake NETNS_RUN_DIR stands in).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { defaultLabName, labNames } from '../../src/lab/lab.js';
import { createNamespace, deleteNamespace } from '../../src/lab/netns.js';
import { ForeignNamespaceError, namespaceId, ownership, readMarker, writeMarker } from '../../src/lab/owner.js';

describe('lab names', () => {
  it('derive the namespace, host veth and subnet; --name lab keeps the names of earlier releases', () => {
    expect(labNames('lab')).toEqual({ name: 'lab', ns: 'plinth-lab', hostIf: 'plinth-lab0', subnet: 'plinth-lab' });
    const long = labNames('t-inst-12345');
    expect(long.ns).toBe('plinth-t-inst-12345');
    expect(long.hostIf).toBe('pl-t-inst-12345');
    for (const n of ['a', 'lab1234', 'lab12345', 'abcdefghijkl'])
      expect(labNames(n).hostIf.length).toBeLessThanOrEqual(15);
  });

  it('refuse names that are not interface-safe', () => {
    for (const bad of ['', 'Lab', '-x', 'a b', 'abcdefghijklm', '../x', 'lab;rm']) {
      expect(() => labNames(bad)).toThrow(/lab name/);
    }
  });

  it('default to one per data dir, stable across runs', () => {
    const a = defaultLabName('/srv/plinth-a');
    expect(a).toMatch(/^lab[0-9a-f]{4}$/);
    expect(defaultLabName('/srv/plinth-a')).toBe(a);
    expect(defaultLabName('/srv/plinth-b')).not.toBe(a);
    expect(labNames(a).hostIf).toBe(`plinth-${a}0`);
  });
});

describe('namespace ownership', () => {
  let dir: string;
  const saved = { run: process.env.PLINTH_NETNS_RUN_DIR, markers: process.env.PLINTH_NETNS_MARKERS };
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'plinth-owner-'));
    process.env.PLINTH_NETNS_RUN_DIR = path.join(dir, 'netns');
    process.env.PLINTH_NETNS_MARKERS = path.join(dir, 'markers');
    mkdirSync(process.env.PLINTH_NETNS_RUN_DIR);
  });
  afterEach(() => {
    for (const [k, v] of [
      ['PLINTH_NETNS_RUN_DIR', saved.run],
      ['PLINTH_NETNS_MARKERS', saved.markers],
    ] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('is ours only with a marker of this very namespace', () => {
    expect(ownership(undefined, undefined)).toBe('absent');
    const fake = path.join(process.env.PLINTH_NETNS_RUN_DIR!, 'plinth-t-inst-a');
    writeFileSync(fake, '');
    const id = namespaceId('plinth-t-inst-a')!;
    expect(id).toBeDefined();
    expect(ownership(id, readMarker('plinth-t-inst-a'))).toBe('foreign');
    writeMarker('plinth-t-inst-a', id);
    expect(ownership(id, readMarker('plinth-t-inst-a'))).toBe('ours');
    // Ours was deleted and someone made another of the same name: a new identity, so foreign again.
    expect(ownership({ ...id, ino: id.ino + 1 }, readMarker('plinth-t-inst-a'))).toBe('foreign');
    // A marker for another name does not count.
    writeFileSync(
      path.join(process.env.PLINTH_NETNS_MARKERS!, 'plinth-t-inst-b.json'),
      JSON.stringify({ ns: 'plinth-t-inst-a', ...id }),
    );
    expect(readMarker('plinth-t-inst-b')).toBeUndefined();
  });

  it('a foreign namespace is refused with a message that says what to do, before any command runs', () => {
    writeFileSync(path.join(process.env.PLINTH_NETNS_RUN_DIR!, 'plinth-t-inst-c'), '');
    expect(() => deleteNamespace('plinth-t-inst-c')).toThrow(ForeignNamespaceError);
    expect(() => createNamespace('plinth-t-inst-c')).toThrow(
      /'plinth-t-inst-c' exists and was not created by Plinth here.*--name NAME.*ip netns del plinth-t-inst-c/,
    );
    // Names outside Plinth's prefix are never touched at all.
    expect(() => deleteNamespace('someone-else')).toThrow(/is not Plinth's/);
  });
});
