import type { Bus } from '../events.js';
import type { BootRecorder } from '../inventory/boots.js';
import { createDoc, modifyDoc } from '../inventory/crud.js';
import { getPrefs, inventoryResource } from '../inventory/resources.js';
import type { Logger } from '../log.js';
import { rateLimitedLog } from '../log-limit.js';
import type { Machine } from '../model/machine.js';
import type { Store } from '../store/store.js';
import { tokenBuckets } from '../token-bucket.js';
import { sourceAddress, type Trust } from './trust.js';

/**
 * Which machine a boot request by MAC is (`GET /boot/ipxe/<mac>?uuid=&arch=&serial=&platform=`), and what that
 * request may change in the inventory. Anyone on the segment can send such a request with any MAC and any SMBIOS
 * UUID (the UUID is broadcast in DHCP option 97), so nothing is written on its say-so alone:
 * - a new MAC joins the record with that SMBIOS UUID (another NIC of known hardware) only when this daemon's DHCP
 *   binds that MAC to the requester's address (src/provision/trust.ts, rules b and c);
 * - an unknown MAC becomes a discovered machine only with that same evidence, at most `burst` per source address
 *   and then one per `refillMs` (token bucket), and while fewer than `maxUnclaimed` machines still boot the
 *   unknown bootenv;
 * - otherwise the request is served the unknown bootenv as an anonymous machine: no record, no token, no secrets.
 */
export type DiscoveryLimits = {
  /** Discovered machines a source address may create back to back (default 5). */
  burst: number;
  /** Then one more per this many milliseconds (default 12,000: five a minute). */
  refillMs: number;
  /** Discovered machines still on the unknown bootenv (not yet claimed by an operator) at most (default 1000). */
  maxUnclaimed: number;
};
export const DEFAULT_DISCOVERY_LIMITS: DiscoveryLimits = { burst: 5, refillMs: 12_000, maxUnclaimed: 1000 };

export type BootRequest = {
  mac: string;
  source: string;
  arch?: string;
  platform?: string;
  uuid?: string;
  serial?: string;
};

export type Resolution =
  | { kind: 'known' | 'adopted' | 'created'; machine: Machine }
  | { kind: 'anonymous'; machine: Machine; why: string };

/** The uuid an anonymous render carries: it names no record, so its callbacks find nothing. */
export const ANONYMOUS_UUID = '00000000-0000-0000-0000-000000000000';

const machinesRes = inventoryResource('machines');
const zeroUuid = /^(0{8}-0{4}-0{4}-0{4}-0{12}|f{8}-f{4}-f{4}-f{4}-f{12})$/i;
const LOG_EVERY_MS = 60_000;
const MAX_SOURCES = 10_000;

/** The SMBIOS UUID iPXE passed, if it is one (QEMU's all-zero UUID is not an identity). */
export function smbiosUuidOf(q: string | undefined): string | undefined {
  return q && !zeroUuid.test(q) && /^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$/i.test(q) ? q.toLowerCase() : undefined;
}

export function archOf(buildarch: string | undefined): string | undefined {
  if (!buildarch) return undefined;
  return (
    // iPXE's ${buildarch} (i386 for a BIOS ROM even on 64-bit hardware) or the OS's `uname -m` from discovery.
    ({ x86_64: 'amd64', i386: 'x86', arm64: 'arm64', aarch64: 'arm64', arm32: 'arm' } as Record<string, string>)[
      buildarch
    ] ?? buildarch.slice(0, 32)
  );
}

export type DiscoveryDeps = {
  store: Store;
  bus: Bus;
  log: Logger;
  boots: BootRecorder;
  trust: Trust;
  limits?: Partial<DiscoveryLimits>;
  now?: () => number;
};

export function discovery(deps: DiscoveryDeps) {
  const { store, bus, log, boots, trust } = deps;
  const limits = { ...DEFAULT_DISCOVERY_LIMITS, ...deps.limits };
  const now = deps.now ?? Date.now;
  const inv = { store, bus };
  let unclaimed: { count: number; at: number; bootEnv: string } | undefined;

  /** One line per kind of refusal per minute: a flood must not become a log flood. */
  const limited = rateLimitedLog(log, LOG_EVERY_MS, now);
  const logLimited = (kind: string, obj: Record<string, unknown>, msg: string) => limited('warn', kind, obj, msg);

  const buckets = tokenBuckets({ burst: limits.burst, refillMs: limits.refillMs, maxKeys: MAX_SOURCES });
  const takeToken = (source: string): boolean => buckets.take(source, now());

  /** Machines still booting the unknown bootenv; counted in the store at most every few seconds. */
  const unclaimedCount = async (bootEnv: string): Promise<number> => {
    const t = now();
    if (!unclaimed || unclaimed.bootEnv !== bootEnv || t - unclaimed.at > 5_000) {
      const { total } = await store.list('machines', { filters: [{ field: 'bootEnv', value: bootEnv }], limit: 1 });
      unclaimed = { count: total, at: t, bootEnv };
    }
    return unclaimed.count;
  };

  const anonymous = (req: BootRequest, bootEnv: string, why: string): Resolution => ({
    kind: 'anonymous',
    why,
    machine: {
      uuid: ANONYMOUS_UUID,
      name: `d-${req.mac.replace(/:/g, '')}`,
      macs: [req.mac],
      bootEnv,
      arch: archOf(req.arch),
      profiles: [],
      params: {},
      description: 'not in the inventory',
      locked: false,
    },
  });

  return {
    async resolve(req: BootRequest): Promise<Resolution> {
      const { mac } = req;
      const source = sourceAddress(req.source);
      const key = await store.keyOf('machines', 'macs', mac);
      if (key) {
        const s = await store.get('machines', key);
        if (s) return { kind: 'known', machine: s.doc as Machine };
      }
      const prefs = await getPrefs(store);
      const smbios = smbiosUuidOf(req.uuid);
      const evidence = await trust.dhcpBinds([mac], source, 'http');
      if (smbios) {
        const owner = await store.keyOf('machines', 'smbiosUuid', smbios);
        if (owner) {
          if (!evidence) {
            logLimited(
              'smbios',
              { mac, source, machine: owner },
              `discovery: ${mac} from ${source} claims the SMBIOS UUID of a known machine, but no DHCP from this daemon binds that MAC to that address: not adopted, served the unknown bootenv`,
            );
            return anonymous(req, prefs.unknownBootEnv, 'SMBIOS UUID of a known machine, without DHCP evidence');
          }
          // Known hardware booting from another NIC: add the MAC, never a second record.
          const s = await modifyDoc(inv, machinesRes, owner, (d) => ({
            ...d,
            macs: [...new Set([...((d.macs as string[]) ?? []), mac])],
          }));
          log.info(
            { mac, machine: owner, evidence },
            'discovery: known machine (SMBIOS UUID) booted from a new NIC: MAC added',
          );
          await boots.record(owner, {
            kind: 'discovery',
            detail: `MAC ${mac} added: same SMBIOS UUID, DHCP binds it to ${source} (${evidence})`,
            data: { ip: source },
          });
          return { kind: 'adopted', machine: s.doc as Machine };
        }
      }
      if (!evidence) {
        logLimited(
          'evidence',
          { mac, source },
          `discovery: unknown ${mac} from ${source} without a DHCP lease from this daemon for that MAC at that address: not registered, served the unknown bootenv`,
        );
        return anonymous(req, prefs.unknownBootEnv, 'no DHCP evidence for this MAC at this address');
      }
      if ((await unclaimedCount(prefs.unknownBootEnv)) >= limits.maxUnclaimed) {
        logLimited(
          'cap',
          { mac, source, max: limits.maxUnclaimed },
          `discovery: ${limits.maxUnclaimed} machines already wait on bootenv ${prefs.unknownBootEnv}: ${mac} not registered; assign or delete discovered machines`,
        );
        return anonymous(req, prefs.unknownBootEnv, 'too many unclaimed discovered machines');
      }
      if (!takeToken(source)) {
        logLimited(
          `rate`,
          { mac, source },
          `discovery: ${source} registers machines faster than ${limits.burst} at once and one per ${limits.refillMs / 1000} s: ${mac} not registered`,
        );
        return anonymous(req, prefs.unknownBootEnv, 'discovery rate limit for this source address');
      }
      const inventory: Record<string, unknown> = {};
      if (smbios) inventory.smbiosUuid = smbios;
      if (req.serial) inventory.serial = req.serial.slice(0, 128);
      if (req.platform) inventory.platform = req.platform.slice(0, 32);
      const created = await createDoc(inv, machinesRes, {
        name: `d-${mac.replace(/:/g, '')}`,
        macs: [mac],
        address: source,
        arch: archOf(req.arch),
        bootEnv: prefs.unknownBootEnv,
        description: 'discovered: booted by MAC, not yet in the inventory',
        inventory,
        lastSeen: new Date(now()).toISOString(),
      });
      if (unclaimed) unclaimed.count++;
      log.info({ mac, machine: created.key, bootEnv: prefs.unknownBootEnv }, 'discovery: unknown MAC registered');
      await boots.record(created.key, {
        kind: 'discovery',
        detail: `unknown MAC ${mac} registered, boots ${prefs.unknownBootEnv}`,
        data: { ip: source, evidence },
      });
      return { kind: 'created', machine: created.doc as Machine };
    },
  };
}
export type Discovery = ReturnType<typeof discovery>;
