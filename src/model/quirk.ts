import { z } from 'zod';

/** The TFTP blksize range of RFC 2348. */
export const Blksize = z.number().int().min(8).max(65464);

/**
 * A loader is served from the root of assets/ or the file store, over TFTP and as /files/<name> over HTTP: a
 * plain file name, never a path (no "/", no "..", no backslash, no NUL).
 */
export const LoaderName = z
  .string()
  .max(128)
  .regex(
    /^[A-Za-z0-9_][A-Za-z0-9._+-]*$/,
    'expected a plain file name like snponly.efi (letters, digits, . _ + -; no directories)',
  );

/** A MAC prefix as operators write it (1 to 6 octets, ":" or "-"); stored lower-case, colon-separated. */
export const MacPrefix = z
  .string()
  .trim()
  .transform((s) => s.toLowerCase().replace(/-/g, ':'))
  .pipe(z.string().regex(/^[0-9a-f]{2}(:[0-9a-f]{2}){0,5}$/, 'expected a MAC prefix like 00:15:5d'));

/**
 * An operator's firmware quirk (the `firmwareQuirks` pref): for clients that match every given field, a loader
 * instead of the usual one and/or a cap on the TFTP blksize they are granted. Operator entries come before the
 * built-in table, and per field the first matching entry wins.
 */
export const FirmwareQuirk = z
  .strictObject({
    match: z
      .strictObject({
        vendorClass: z
          .string()
          .min(1)
          .max(255)
          .optional()
          .describe('A prefix of DHCP option 60, e.g. PXEClient:Arch:00007'),
        arch: z.number().int().min(0).max(65535).optional().describe('DHCP option 93 (client architecture), e.g. 7'),
        macPrefix: MacPrefix.optional().describe('A prefix of the client MAC, e.g. 00:15:5d'),
      })
      .refine((m) => m.vendorClass !== undefined || m.arch !== undefined || m.macPrefix !== undefined, {
        message: 'give at least one of vendorClass, arch, macPrefix (an empty match would catch every client)',
      })
      .describe('Every given field must match'),
    loader: LoaderName.optional().describe('Loader file served instead of the usual one (e.g. snponly.efi)'),
    blksize: Blksize.optional().describe('Largest TFTP blksize granted to the clients it matches (8..65464)'),
    why: z
      .string()
      .trim()
      .min(1, 'say which firmware and which symptom')
      .max(512)
      .describe('Which firmware, which symptom: shown in the boot timeline and the log'),
  })
  .superRefine((q, ctx) => {
    if (q.loader === undefined && q.blksize === undefined) {
      ctx.addIssue({ code: 'custom', path: ['loader'], message: 'a quirk sets loader, blksize or both' });
    }
  });
export type FirmwareQuirk = z.infer<typeof FirmwareQuirk>;
