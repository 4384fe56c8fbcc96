/**
 * Run as a child process by facade.test.ts, with its own PLINTH_NET_ADDON (the addon is loaded once per process):
 * prints what the facade and its callers in DHCP and TFTP see, as one JSON line.
 */
import { loadNetAddon } from '../../src/dhcp/bind.js';
import { native } from '../../src/native/index.js';
import { transferAddon } from '../../src/tftp/transport.js';

console.log(
  JSON.stringify({
    caps: native.caps,
    path: native.path ?? null,
    addon: native.addon !== undefined,
    views: {
      dhcpSockets: native.dhcpSockets !== undefined,
      raResponder: native.raResponder !== undefined,
      tftpFastPath: native.tftpFastPath !== undefined,
      readPackets: native.readPackets !== undefined,
    },
    callers: { dhcp: loadNetAddon() !== undefined, tftp: transferAddon() !== undefined },
  }),
);
