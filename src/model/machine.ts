import { z } from 'zod';
import { IPv4, Mac, Name, Params, Timestamp } from './common.js';

/** A physical (or virtual) server Plinth knows. JSON field names are a public contract. */
export const Machine = z
  .strictObject({
    uuid: z.uuid().optional().describe('Stable identity; generated when absent'),
    name: Name.describe('Unique name'),
    macs: z.array(Mac).default([]).describe('Every MAC of the machine; a MAC belongs to at most one machine'),
    address: IPv4.optional().describe('Current IPv4 address'),
    arch: z.string().max(32).optional().describe('amd64, arm64, ... (from DHCP option 93 when discovered)'),
    bootEnv: Name.optional().describe('The boot environment it boots next'),
    profiles: z.array(Name).default([]).describe('Profiles whose params apply, in order'),
    params: Params.default({}).describe('Machine-level param values; win over profiles'),
    description: z.string().max(4096).default(''),
    locked: z.boolean().default(false).describe('A locked machine refuses changes until unlocked'),
    createdAt: Timestamp.optional(),
    updatedAt: Timestamp.optional(),
    lastSeen: Timestamp.optional().describe('Last time its firmware or OS talked to Plinth'),
    inventory: z
      .record(z.string(), z.unknown())
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
