import { z } from 'zod';
import { IPv4, jsonBounds, MacSyntax, Name, Params, Timestamp } from './common.js';

/** A real server has a handful of NICs; thousands of MACs are an attack on every MAC lookup and unique index. */
export const MAX_MACS = 64;

/** A physical (or virtual) server Plinth knows. JSON field names are a public contract. */
export const Machine = z
  .strictObject({
    uuid: z.uuid().optional().describe('Stable identity; generated when absent'),
    name: Name.describe('Unique name'),
    macs: z
      .array(z.unknown())
      .max(MAX_MACS, `a machine has at most ${MAX_MACS} MACs`)
      // The count first: 300,000 MACs are refused before any is parsed.
      .pipe(z.array(MacSyntax))
      .default([])
      .describe(`Every MAC of the machine (at most ${MAX_MACS}); a MAC belongs to at most one machine`),
    address: IPv4.optional().describe('Current IPv4 address'),
    arch: z.string().max(32).optional().describe('amd64, arm64, ... (from DHCP option 93 when discovered)'),
    bootEnv: Name.optional().describe('The boot environment it boots next'),
    profiles: z
      .array(Name)
      .max(64, 'a machine has at most 64 profiles')
      .default([])
      .describe('Profiles whose params apply, in order'),
    params: Params.default({}).describe('Machine-level param values; win over profiles'),
    description: z.string().max(4096).default(''),
    locked: z.boolean().default(false).describe('A locked machine refuses changes until unlocked'),
    createdAt: Timestamp.optional(),
    updatedAt: Timestamp.optional(),
    lastSeen: Timestamp.optional().describe('Last time its firmware or OS talked to Plinth'),
    inventory: z
      .record(z.string().max(128), z.unknown())
      .superRefine(jsonBounds('inventory'))
      .optional()
      .describe('Hardware facts from discovery and DHCP: smbiosUuid, serial, cpus, memory, disks, nics'),
  })
  .superRefine((m, ctx) => {
    const seen = new Set<string>();
    m.macs.forEach((mac, i) => {
      if (seen.has(mac)) ctx.addIssue({ code: 'custom', path: ['macs', i], message: `MAC ${mac} is listed twice` });
      seen.add(mac);
    });
  });

export type Machine = z.infer<typeof Machine> & { uuid: string };
