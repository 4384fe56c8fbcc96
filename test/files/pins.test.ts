/**
 * What a bootenv pins at creation (src/files/pins.ts), socket-free: its kernel, initrds and every file its
 * bootParams or inline templates name by `artifacts["<path>"]` (the render gives that path's pinned URL), found
 * in either quote style; the operator's own pins are kept as given.
 */
import { describe, expect, it } from 'vitest';
import { pinCurrentFiles, referencedArtifacts } from '../../src/files/pins.js';

const digests: Record<string, string> = {
  'os/vmlinuz': 'a'.repeat(64),
  'os/initrd.img': 'b'.repeat(64),
  'os/root.squashfs': 'c'.repeat(64),
  'os/extra.img': 'd'.repeat(64),
};
const infoOf = async (rel: string) => (digests[rel] ? { sha256: digests[rel]! } : undefined);

describe('pins', () => {
  it('finds the paths named by artifacts["..."] in bootParams and inline templates, once each', () => {
    expect(
      referencedArtifacts({
        bootParams: `fetch={{ artifacts["os/root.squashfs"] }} x={{ artifacts[ 'os/extra.img' ] }} {{ files }}/os/other`,
        templates: [
          { name: 't', contents: 'curl {{ artifacts["os/root.squashfs"] }}' },
          { name: 'u', templateId: 'global' },
        ],
      }),
    ).toEqual(['os/root.squashfs', 'os/extra.img']);
    expect(referencedArtifacts({})).toEqual([]);
    expect(referencedArtifacts({ bootParams: 'artifacts[os/x] artifacts["unclosed' })).toEqual([]);
  });

  it('pins kernel, initrds and the named files that exist; keeps pins the operator gave', async () => {
    const doc = {
      name: 'live',
      kernel: 'os/vmlinuz',
      initrds: ['os/initrd.img'],
      bootParams: 'fetch={{ artifacts["os/root.squashfs"] }} y={{ artifacts["os/missing"] }}',
    };
    expect((await pinCurrentFiles(doc, infoOf)).artifacts).toEqual([
      { path: 'os/vmlinuz', sha256: digests['os/vmlinuz'] },
      { path: 'os/initrd.img', sha256: digests['os/initrd.img'] },
      { path: 'os/root.squashfs', sha256: digests['os/root.squashfs'] },
    ]);
    const given = { ...doc, artifacts: [{ path: 'os/vmlinuz', sha256: 'e'.repeat(64) }] };
    expect(await pinCurrentFiles(given, infoOf)).toBe(given);
  });
});
