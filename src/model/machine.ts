import { z } from 'zod';
import { IPv4, jsonBounds, MacSyntax, Name, Params, Timestamp } from './common.js';

/** A real server has a handful of NICs; thousands of MACs are an attack on every MAC lookup and unique index. */
export const MAX_MACS = 64;

/** What the API answers in place of a BMC password: the password is write-only. */
export const BMC_PASSWORD_MASK = '********';

/**
 * How Plinth reaches a machine's BMC (src/power). The password is write-only: the API answers it as
 * BMC_PASSWORD_MASK (src/http/power-api.ts), and a write that sends the mask back keeps the stored one.
 */
export const Bmc = z
  .strictObject({
    driver: z.enum(['ipmi', 'redfish', 'manual']).describe('How to talk to it; manual: a human powers the machine'),
    address: z
      .string()
      .min(1)
      .max(253)
      // Redfish: an http(s):// URL too (the lab's emulator speaks plain http), read by src/power/redfish.ts baseUrl.
      .regex(/^(https?:\/\/)?[A-Za-z0-9.:[\]_-]+\/?$/, 'a host name, an IP address, or (Redfish) an http(s):// URL')
      .describe('Host name or IP address of the BMC (Redfish: or its http(s):// base URL)'),
    port: z.int().min(1).max(65535).optional().describe('Default: 623 for IPMI, 443 for Redfish'),
    username: z.string().max(64).optional(),
    password: z.string().max(128).optional().describe(`Write-only: answered as ${BMC_PASSWORD_MASK}`),
    cipherSuite: z.int().min(0).max(17).optional().describe('IPMI lanplus cipher suite (default 3)'),
    insecureTLS: z.boolean().optional().describe("Redfish: accept the BMC's self-signed certificate"),
    systemId: z
      .string()
      .min(1)
      .max(128)
      .regex(/^[A-Za-z0-9._-]+$/, 'a Redfish System id (letters, digits, ".", "_", "-")')
      .optional()
      .describe('Redfish: which System of a BMC that lists several (a chassis manager, the lab emulator)'),
  })
  .refine((b) => b.driver === 'redfish' || !/^https?:\/\//.test(b.address), {
    path: ['address'],
    message: 'a URL is a Redfish address: an IPMI BMC is a host name or an IP address',
  })
  .describe('Baseboard management controller: power control and the next boot device');
export type Bmc = z.infer<typeof Bmc>;

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
    bmc: Bmc.optional(),
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
