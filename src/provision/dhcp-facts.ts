import type { Bus, PlinthEvent } from '../events.js';
import type { BootRecorder } from '../inventory/boots.js';
import { modifyDoc } from '../inventory/crud.js';
import { inventoryResource } from '../inventory/resources.js';
import type { Logger } from '../log.js';
import type { Store } from '../store/store.js';

/**
 * What this daemon's DHCP service did, written onto the machine it concerns: an acknowledgement (a lease ACK, or
 * in proxyDHCP mode the answered port-4011 REQUEST) sets its `address` and `lastSeen` (the only writer of those
 * from a boot: an HTTP or TFTP request never does, see trust.ts) and a boot offer starts a new boot in its
 * timeline. Returns the unsubscribe function.
 */
const machinesRes = inventoryResource('machines');

export function recordDhcpFacts(deps: { store: Store; bus: Bus; log: Logger; boots: BootRecorder }): () => void {
  const { store, bus, log, boots } = deps;
  const inv = { store, bus };

  const apply = async (e: PlinthEvent, mac: string) => {
    const uuid = e.machine ?? (await store.keyOf('machines', 'macs', mac));
    if (!uuid) return;
    if (e.type === 'dhcp.boot') {
      await boots.record(
        uuid,
        { kind: 'dhcp', detail: `offered ${e.data?.filename}: ${e.data?.reason}`, data: e.data },
        { firmwareStart: true },
      );
      return;
    }
    const address = e.key!;
    await modifyDoc(inv, machinesRes, uuid, (doc) => ({ ...doc, address, lastSeen: new Date().toISOString() }));
    await boots.record(uuid, {
      kind: 'dhcp',
      detail:
        e.type === 'lease.acked'
          ? `lease ${address} acknowledged (subnet ${e.data?.subnet})`
          : `proxyDHCP boot-server request from ${address} answered (subnet ${e.data?.subnet})`,
      data: e.data,
    });
  };

  return bus.on((e) => {
    if (!(e.type === 'lease.acked' || e.type === 'proxy.acked' || e.type === 'dhcp.boot')) return;
    const mac = (e.data?.mac as string | undefined) ?? (e.type === 'dhcp.boot' ? e.key : undefined);
    if (!mac || (e.type !== 'dhcp.boot' && typeof e.key !== 'string')) return;
    apply(e, mac).catch((err) =>
      log.warn({ err: (err as Error).message, mac }, 'could not record a DHCP event on its machine'),
    );
  });
}
