import { EventEmitter } from 'node:events';

/**
 * The daemon's internal event bus: the API publishes inventory changes, DHCP/TFTP/HTTP publish what they
 * served. Subscribers (the DHCP server's subnet cache, the SSE stream, metrics) must never block a publisher:
 * listeners run synchronously, so they only queue or flag work.
 */
export type PlinthEvent = {
  type: string; // e.g. 'machines.created', 'subnets.updated', 'lease.acked', 'boot.file'
  key?: string; // the object's key (machine uuid, subnet name, lease address)
  machine?: string; // machine uuid when the event concerns one
  at: string;
  data?: Record<string, unknown>;
};

export type Bus = {
  emit(e: Omit<PlinthEvent, 'at'>): void;
  on(fn: (e: PlinthEvent) => void): () => void;
};

export function createBus(): Bus {
  const ee = new EventEmitter();
  ee.setMaxListeners(0);
  return {
    emit(e) {
      ee.emit('event', { ...e, at: new Date().toISOString() });
    },
    on(fn) {
      const safe = (e: PlinthEvent) => {
        try {
          fn(e);
        } catch {
          // A broken subscriber must not break the publisher.
        }
      };
      ee.on('event', safe);
      return () => ee.off('event', safe);
    },
  };
}
