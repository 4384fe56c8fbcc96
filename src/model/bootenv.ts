import { z } from 'zod';
import { Name } from './common.js';

const RelPath = z
  .string()
  .min(1)
  .max(1024)
  .refine((p) => !p.startsWith('/') && !p.split('/').includes('..') && !p.includes('\0') && !p.includes('\\'), {
    message: 'expected a relative path without ".." segments',
  });
const Sha256 = z.string().regex(/^[0-9a-f]{64}$/, 'expected a sha256 digest: 64 lower-case hex digits');

export const BootEnvTemplate = z
  .strictObject({
    name: z.string().min(1).max(128),
    path: z.string().min(1).max(1024).describe('Where the rendered file is served, under /machines/<uuid>/'),
    kind: z
      .enum(['raw', 'ignition', 'cloud-config', 'meta-data', 'network-config', 'talos'])
      .optional()
      .describe('Validated as this format before it is served (src/provision/config-kind.ts); absent: raw'),
    contents: z.string().max(1_000_000).optional(),
    templateId: Name.optional(),
  })
  .refine((t) => (t.contents === undefined) !== (t.templateId === undefined), {
    message: 'give exactly one of contents or templateId',
  });

/** What OS a bootenv boots (display and selection only); an image manifest carries the same. */
export const BootEnvOs = z
  .strictObject({
    name: z.string().max(128).default(''),
    family: z.string().max(128).default(''),
    version: z.string().max(128).default(''),
  })
  .default({ name: '', family: '', version: '' });

export const BootEnv = z.strictObject({
  name: Name,
  description: z.string().max(4096).default(''),
  os: BootEnvOs,
  kernel: z.string().max(1024).default('').describe('Kernel path under the files root (or an artifact path)'),
  initrds: z.array(z.string().max(1024)).max(64, 'at most 64 initrds').default([]),
  bootParams: z.string().max(16384).default('').describe('Kernel command line: a template'),
  templates: z.array(BootEnvTemplate).max(64, 'at most 64 templates').default([]),
  requiredParams: z.array(z.string().max(128)).max(256, 'at most 256 required params').default([]),
  optionalParams: z.array(z.string().max(128)).max(256, 'at most 256 optional params').default([]),
  artifacts: z
    .array(z.strictObject({ path: RelPath, sha256: Sha256, url: z.url().max(4096).optional() }))
    .max(256, 'at most 256 artifacts')
    .default([])
    .describe('Files the bootenv serves, pinned by digest'),
  onlyOnce: z.boolean().default(false).describe('After one successful boot the machine falls back to local'),
});
export type BootEnv = z.infer<typeof BootEnv>;
