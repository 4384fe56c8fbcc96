/**
 * What bootenvs pin: the digests gc must keep, and the pins a bootenv gets at creation when the operator gives
 * none (its kernel and initrds as the files root holds them then), so a later PUT of the same path changes what a
 * new bootenv boots, never what this one boots.
 */
import type { BootEnv } from '../model/bootenv.js';
import type { Doc, Store } from '../store/store.js';
import type { FileInfo } from './store-files.js';

export type Artifact = BootEnv['artifacts'][number];

/** Every digest any bootenv pins. */
export async function pinnedDigests(store: Store): Promise<Set<string>> {
  const { items } = await store.list('bootenvs');
  const out = new Set<string>();
  for (const b of items) for (const a of (b.doc.artifacts as Artifact[] | undefined) ?? []) out.add(a.sha256);
  return out;
}

/**
 * The files a bootenv's text names by `artifacts["<path>"]` (its bootParams and inline templates): the pinned URL
 * the render gives for that path (src/provision/artifacts.ts), e.g. the root image live-boot's `fetch=` downloads.
 */
export function referencedArtifacts(doc: { bootParams?: unknown; templates?: unknown }): string[] {
  const texts = [
    typeof doc.bootParams === 'string' ? doc.bootParams : '',
    ...((doc.templates as { contents?: unknown }[] | undefined) ?? []).map((t) =>
      typeof t?.contents === 'string' ? t.contents : '',
    ),
  ];
  const out = new Set<string>();
  for (const t of texts) for (const m of t.matchAll(ARTIFACT_REF)) out.add(m[2]!);
  return [...out];
}
const ARTIFACT_REF = /artifacts\[\s*(["'])([^"'\]]+)\1\s*\]/g;

/**
 * The bootenv document with `artifacts` filled from the current files when it has none: its kernel, each
 * initrd and each file its text names by `artifacts["<path>"]` that exists gets a pin. `infoOf` says what the files root holds at a path (the upload index, or
 * fileInfo). A bootenv with pins of its own is returned as it is: the operator's pins are the truth.
 */
export async function pinCurrentFiles(
  doc: Doc,
  infoOf: (rel: string) => Promise<Pick<FileInfo, 'sha256'> | undefined>,
): Promise<Doc> {
  const given = (doc.artifacts as Artifact[] | undefined) ?? [];
  if (given.length > 0) return doc;
  const paths = [
    doc.kernel as string | undefined,
    ...((doc.initrds as string[] | undefined) ?? []),
    ...referencedArtifacts(doc),
  ].filter((p): p is string => typeof p === 'string' && p.length > 0);
  const artifacts: Artifact[] = [];
  for (const p of [...new Set(paths)]) {
    const info = await infoOf(p).catch(() => undefined);
    if (info) artifacts.push({ path: p, sha256: info.sha256 });
  }
  return artifacts.length ? { ...doc, artifacts } : doc;
}

/** `infoOf` from the store's index of uploads (what a write hook has: the store, not the files root). */
export function indexedInfo(store: Store): (rel: string) => Promise<{ sha256: string } | undefined> {
  return async (rel) => {
    const d = (await store.get('files', rel))?.doc as { sha256?: string } | undefined;
    return d?.sha256 ? { sha256: d.sha256 } : undefined;
  };
}
