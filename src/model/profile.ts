import { z } from 'zod';
import { jsonBounds, Name, Params } from './common.js';
import { FirmwareQuirk } from './quirk.js';

export const Profile = z.strictObject({
  name: Name,
  params: Params.default({}),
  description: z.string().max(4096).default(''),
});
export type Profile = z.infer<typeof Profile>;

/** A param definition: its JSON schema validates every value set anywhere; `secure` hides it in lists and logs. */
export const ParamDef = z.strictObject({
  name: z
    .string()
    .min(1)
    .max(128)
    .regex(/^[A-Za-z0-9][A-Za-z0-9._/-]*$/, 'use letters, digits and . _ / -'),
  schema: z
    .record(z.string().max(128), z.unknown())
    .superRefine(jsonBounds('schema', { depth: 32, bytes: 64 * 1024, keys: 256 }))
    .default({})
    .describe('JSON schema of the value; "default" is the fallback'),
  description: z.string().max(4096).default(''),
  secure: z.boolean().default(false),
});
export type ParamDef = z.infer<typeof ParamDef>;

export const Prefs = z.strictObject({
  defaultBootEnv: Name.default('local').describe('bootEnv given to machines created without one'),
  unknownBootEnv: Name.default('discovery').describe('What unknown machines boot'),
  knownTokenTtl: z.number().int().min(60).max(31_536_000).default(3600).describe('Machine token lifetime, seconds'),
  rogueDhcpWarnings: z.boolean().default(true).describe('Warn when another DHCP server answers on a served segment'),
  answerRouterSolicitations: z
    .boolean()
    .default(true)
    .describe(
      'Answer IPv6 router solicitations on served interfaces with lifetime-0 RAs (iPXE otherwise waits ~16 s for IPv6)',
    ),
  firmwareQuirks: z
    .array(FirmwareQuirk)
    .max(256)
    .default([])
    .describe(
      'Operator firmware quirks, checked before the built-in ones (first match wins per field): a loader or a TFTP blksize cap by vendor class, arch or MAC prefix',
    ),
});
export type Prefs = z.infer<typeof Prefs>;
