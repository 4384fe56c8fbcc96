import type { Bus } from '../events.js';
import type { BootRecorder } from '../inventory/boots.js';
import { modifyDoc } from '../inventory/crud.js';
import { inventoryResource } from '../inventory/resources.js';
import type { Logger } from '../log.js';
import { Mac } from '../model/common.js';
import type { Machine } from '../model/machine.js';
import { NotFoundError, type Store } from '../store/store.js';
import type { BootRenderer } from './boot-render.js';
import { archOf } from './discovery.js';

/**
 * What a booted machine tells us, with its token (the API scope checks it): "I am up" or "I failed" (ends the
 * boot in its timeline; an onlyOnce bootenv falls back to `local`), and discovery's inventory report (hardware
 * facts; its NICs' MACs join the record). The HTTP routes only parse and reply (src/http/machine-api.ts).
 */
const machinesRes = inventoryResource('machines');
const zeroUuid = /^(0{8}-0{4}-0{4}-0{4}-0{12}|f{8}-f{4}-f{4}-f{4}-f{12})$/i;

export type ReportDeps = {
  store: Store;
  bus: Bus;
  log: Logger;
  boots: BootRecorder;
  bootEnvOf: BootRenderer['bootEnvOf'];
};

export function machineReports(deps: ReportDeps) {
  const { store, bus, log, boots } = deps;
  const inv = { store, bus };

  return {
    async callback(id: string, event: string, data: Record<string, unknown>, from: string) {
      const m = (await store.get('machines', id))?.doc as Machine | undefined;
      if (!m) throw new NotFoundError('machines', id);
      const result = event === 'booted' ? 'booted' : event === 'failed' ? 'failed' : undefined;
      const b = await boots.record(m.uuid, { kind: 'callback', detail: `${event} from ${from}`, data }, { result });
      let next = m.bootEnv;
      if (result === 'booted' && m.bootEnv) {
        const be = await deps.bootEnvOf(m.bootEnv);
        if (be?.onlyOnce) {
          await modifyDoc(inv, machinesRes, m.uuid, (d) => ({ ...d, bootEnv: 'local' }));
          next = 'local';
          log.info({ machine: m.name, bootEnv: be.name }, 'boot-once bootenv done: machine falls back to local');
        }
      }
      await modifyDoc(inv, machinesRes, m.uuid, (d) => ({ ...d, lastSeen: new Date().toISOString() }));
      bus.emit({ type: `machine.${event}`, machine: m.uuid, data });
      return { machine: m.uuid, boot: b.id, bootEnv: next };
    },

    /** `body` is a JSON object (the route checked that and its size). */
    async inventory(id: string, body: Record<string, unknown>) {
      const nicMacs: string[] = [];
      for (const n of Array.isArray(body.nics) ? body.nics : []) {
        const r = Mac.safeParse((n as { mac?: unknown })?.mac);
        if (r.success) nicMacs.push(r.data);
      }
      const uuid =
        typeof body.smbiosUuid === 'string' && !zeroUuid.test(body.smbiosUuid)
          ? body.smbiosUuid.toLowerCase()
          : undefined;
      const s = await modifyDoc(inv, machinesRes, id, (d) => {
        const macs = new Set((d.macs as string[]) ?? []);
        for (const mac of nicMacs) macs.add(mac);
        return {
          ...d,
          macs: [...macs],
          ...(typeof body.arch === 'string' ? { arch: archOf(body.arch) } : {}),
          inventory: { ...(d.inventory as object), ...body, ...(uuid ? { smbiosUuid: uuid } : {}) },
          lastSeen: new Date().toISOString(),
        };
      });
      await boots.record(s.key, { kind: 'callback', detail: `inventory reported (${nicMacs.length} NICs)` });
      bus.emit({ type: 'machine.inventory', machine: s.key });
      return s.doc;
    },

    async bootsOf(id: string) {
      const key = (await store.get('machines', id)) ? id : await machinesRes.resolveKey!(store, id);
      if (!key) throw new NotFoundError('machines', id);
      return boots.list(key);
    },
  };
}
export type MachineReports = ReturnType<typeof machineReports>;
