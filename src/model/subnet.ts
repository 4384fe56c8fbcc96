import { z } from 'zod';
import { Cidr, cidrContains, IPv4, ipToInt, MacSyntax, Name, parseCidr } from './common.js';
import { checkOptionValue } from './dhcp-option-values.js';
import { Blksize } from './quirk.js';

/**
 * A DHCP option as operators write it: the value is a string (a template for any option), a number, a boolean or
 * an array. Checked against the option's RFC type and stored in its canonical spelling (dhcp-option-values.ts).
 */
export const DhcpOption = z
  .strictObject({
    code: z.number().int().min(1).max(254),
    value: z.union([
      z.string().max(4096),
      z.number(),
      z.boolean(),
      z.array(z.union([z.string().max(4096), z.number()])).max(256),
    ]),
  })
  .transform((o, ctx) => {
    const r = checkOptionValue(o.code, o.value);
    if (r.ok) return { code: o.code, value: r.value };
    ctx.issues.push({ code: 'custom', path: ['value'], message: r.message, input: o.value });
    return z.NEVER;
  });

/** A daemon's serverId, as `--server-id` takes it (src/config-cluster.ts). */
const ServerId = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'a serverId: letters, digits, dot, dash, underscore; at most 63');

export const Picker = z.enum(['hint', 'nextFree', 'mostExpired', 'none']);

export const Subnet = z
  .strictObject({
    name: Name,
    subnet: Cidr,
    activeStart: IPv4.optional(),
    activeEnd: IPv4.optional(),
    leaseTime: z.number().int().min(60).max(31_536_000).default(3600),
    reservedLeaseTime: z.number().int().min(60).max(31_536_000).default(7200),
    nextServer: IPv4.optional().describe('Boot server address (siaddr); default: the address of the serving interface'),
    options: z.array(DhcpOption).max(255, 'at most 255 DHCP options').default([]),
    enabled: z.boolean().default(true),
    proxy: z.boolean().default(false).describe('proxyDHCP: give only PXE boot information, no addresses'),
    unmanaged: z.boolean().default(false).describe('Give addresses, never PXE boot options'),
    onlyReservations: z
      .boolean()
      .default(false)
      .describe(
        'Answer only MACs that have a reservation (for a segment shared with another DHCP server). A subnet without activeStart/activeEnd also gives addresses to reservations only, but answers DHCPINFORM from any host',
      ),
    pickers: z.array(Picker).max(8).default(['hint', 'nextFree', 'mostExpired']),
    tftpMaxBlksize: Blksize.optional().describe(
      'Largest TFTP blksize granted to clients with an address in this subnet (8..65464); the smallest applicable cap wins',
    ),
    unknownOfferShare: z
      .number()
      .min(0)
      .max(1)
      .optional()
      .describe(
        "Share of the pool's free addresses that clients unknown to the inventory may hold in un-REQUESTed offers (default 0.5; 0: none, 1: no share kept for known machines)",
      ),
    probeBeforeOffer: z
      .boolean()
      .optional()
      .describe(
        'Probe a new address before offering it (as ISC dhcpd ping-check, dnsmasq); one that answers is quarantined like a DECLINEd one. Default off',
      ),
    owners: z
      .array(ServerId)
      .max(16)
      .optional()
      .describe(
        "serverIds of the daemons that serve this subnet, in order of preference: owners[0] (the primary) always answers, a standby only when every owner before it is not alive (heartbeat stale, GET /api/v1/daemons), the client's secs reaches standbySecs or the request names the standby in option 54; a daemon not listed never answers. Absent or empty: every daemon serves it. One owner: no other daemon answers its clients, so its offers are not claimed in a shared lease database (one transaction per DORA instead of two); its leases still are",
      ),
    standbySecs: z
      .number()
      .int()
      .min(1)
      .max(65535)
      .optional()
      .describe(
        "A standby owner answers a client whose secs field is at least this while the primary is alive (ISC dhcpd failover's load balance max seconds). Default 10",
      ),
    description: z.string().max(4096).default(''),
  })
  .superRefine((s, ctx) => {
    s.owners?.forEach((o, i) => {
      if (s.owners!.indexOf(o) !== i)
        ctx.addIssue({ code: 'custom', path: ['owners', i], message: `${o} is listed twice` });
    });
    if (!Cidr.safeParse(s.subnet).success) return;
    const c = parseCidr(s.subnet);
    for (const f of ['activeStart', 'activeEnd'] as const) {
      const v = s[f];
      if (v !== undefined && IPv4.safeParse(v).success && !cidrContains(s.subnet, v)) {
        ctx.addIssue({ code: 'custom', path: [f], message: `${v} is outside ${s.subnet}` });
      }
    }
    // No range at all is a subnet of reservations (and INFORM for statically configured hosts); half a range
    // is a typo.
    if (!s.proxy && (s.activeStart === undefined) !== (s.activeEnd === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: [s.activeStart === undefined ? 'activeStart' : 'activeEnd'],
        message:
          'set both activeStart and activeEnd for a dynamic range, or neither for a subnet that serves reservations only',
      });
    }
    if (s.activeStart && s.activeEnd && IPv4.safeParse(s.activeStart).success && IPv4.safeParse(s.activeEnd).success) {
      if (ipToInt(s.activeEnd) < ipToInt(s.activeStart)) {
        ctx.addIssue({
          code: 'custom',
          path: ['activeEnd'],
          message: `activeEnd ${s.activeEnd} is before activeStart ${s.activeStart}`,
        });
      }
      const a = ipToInt(s.activeStart);
      if (c.prefix < 31 && (a === c.network || ipToInt(s.activeEnd) === c.broadcast)) {
        ctx.addIssue({
          code: 'custom',
          path: [a === c.network ? 'activeStart' : 'activeEnd'],
          message: 'the range must not include the network or broadcast address',
        });
      }
    }
  });
export type Subnet = z.infer<typeof Subnet>;

export const Reservation = z.strictObject({
  address: IPv4,
  mac: MacSyntax,
  subnet: Name.describe('Name of the subnet it belongs to'),
  options: z.array(DhcpOption).max(255, 'at most 255 DHCP options').default([]),
  nextServer: IPv4.optional(),
  description: z.string().max(4096).default(''),
});
export type Reservation = z.infer<typeof Reservation>;

export const LeaseState = z.enum(['offered', 'bound', 'released', 'expired', 'declined']);
export const Lease = z.strictObject({
  address: IPv4,
  mac: MacSyntax,
  subnet: Name,
  state: LeaseState,
  expiresAt: z.string().datetime({ offset: true }),
  clientId: z.string().optional().describe('Option 61, hex'),
  hostname: z.string().optional(),
  updatedAt: z.string().datetime({ offset: true }).optional(),
  serverId: ServerId.optional().describe(
    "serverId of the daemon that last wrote the lease (its --server-id: the DHCP server's offer, ACK, release, decline or expiry, or the leading daemon's sweep of ended leases); absent on leases written before Plinth recorded it",
  ),
});
export type Lease = z.infer<typeof Lease>;
