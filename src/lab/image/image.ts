/**
 * Plinth's immutable Debian image as code: build it (build-immutable.sh, cached under the hash of its inputs),
 * read its manifest, and turn it into a bootenv whose every artifact is pinned, with the paths it is uploaded
 * to under /files. Each build gets its own paths (debian-live/<first 12 hex of the squashfs digest>/...), so two
 * builds are two bootenvs side by side and rolling back is assigning the previous one.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';

const HERE = import.meta.dirname;
export const BUILD_SCRIPT = path.join(HERE, 'build-immutable.sh');
export const BOOTENV_TEMPLATE = path.join(HERE, 'debian-live.yaml');

export type ImageArtifact = { name: string; sha256: string; size: number };
export type ImageManifest = {
  name: string;
  inputs: string;
  suite: string;
  mirror: string;
  sourceDateEpoch: number;
  flavor: string;
  buildSeconds: number;
  artifacts: ImageArtifact[];
};
export type BuiltImage = { dir: string; manifest: ImageManifest };

export type BuildOptions = {
  /** Where builds are cached (default /var/cache/plinth/images, PLINTH_IMAGE_CACHE). */
  cacheRoot?: string;
  /** Changes the image's bytes (a file in it) and its input hash: a second, different image. */
  flavor?: string;
  /** Build output (stderr of the script) goes here; default: inherited. */
  quiet?: boolean;
  timeoutMs?: number;
};

export function readManifest(dir: string): ImageManifest {
  const m = JSON.parse(readFileSync(path.join(dir, 'manifest.json'), 'utf8')) as ImageManifest;
  for (const f of ['vmlinuz', 'initrd.img', 'filesystem.squashfs'])
    if (!m.artifacts.some((a) => a.name === f && /^[0-9a-f]{64}$/.test(a.sha256)))
      throw new Error(`image manifest in ${dir} does not pin ${f}`);
  return m;
}

/** Builds the image (or finds it in the cache: seconds) and returns its directory and manifest. Needs root. */
export function buildImage(o: BuildOptions = {}): BuiltImage {
  const env = { ...process.env };
  if (o.flavor) env.PLINTH_IMAGE_FLAVOR = o.flavor;
  const args = [BUILD_SCRIPT, ...(o.cacheRoot ? ['--cache-root', o.cacheRoot] : [])];
  const out = execFileSync('bash', args, {
    env,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', o.quiet ? 'ignore' : 'inherit'],
    timeout: o.timeoutMs ?? 3_600_000,
  });
  const dir = out.trim().split('\n').at(-1)!;
  return { dir, manifest: readManifest(dir) };
}

const digestOf = (m: ImageManifest, name: string) => m.artifacts.find((a) => a.name === name)!.sha256;

/** Where a build's files go under /files: its own directory, named by the squashfs digest. */
export function imagePrefix(m: ImageManifest): string {
  return `debian-live/${digestOf(m, 'filesystem.squashfs').slice(0, 12)}`;
}

/**
 * The bootenv for a built image: the shipped debian-live template with the build's paths and every artifact
 * pinned (kernel, initrd, and the squashfs the initrd fetches, which Plinth then serves only with that digest).
 */
export function imageBootenv(m: ImageManifest, name: string): Record<string, unknown> {
  const doc = YAML.parse(readFileSync(BOOTENV_TEMPLATE, 'utf8')) as Record<string, unknown>;
  const prefix = imagePrefix(m);
  const files = ['vmlinuz', 'initrd.img', 'filesystem.squashfs'];
  return {
    ...doc,
    name,
    description: `${doc.description} (squashfs ${digestOf(m, 'filesystem.squashfs').slice(0, 12)}, inputs ${m.inputs.slice(0, 12)})`,
    kernel: `${prefix}/vmlinuz`,
    initrds: [`${prefix}/initrd.img`],
    bootParams: String(doc.bootParams).replaceAll('artifacts["debian-live/', `artifacts["${prefix}/`),
    artifacts: files.map((f) => ({ path: `${prefix}/${f}`, sha256: digestOf(m, f) })),
  };
}
