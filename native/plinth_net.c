/*
 * Plinth's native helper, one N-API addon (plinth_net.node) for the few socket calls Node cannot make. Linux only.
 * This file only registers the functions; each job lives in its own file (see README.md):
 *
 *   dhcp_sock.c    DHCP sockets bound to one interface (SO_BINDTODEVICE) and the ARP entry for unicast replies
 *   ra.c           the IPv6 Router Solicitation responder: a raw ICMPv6 socket served by a thread of its own
 *   tftp_xfer.c    TFTP transfer sockets watched on Node's loop (uv_poll_t, no thread): receive, ERROR 5, ICMP
 *   tftp_send.c    sending a transfer's window in one system call (UDP GSO, else sendmmsg), armed windows
 *   tftp_read.c    DATA packets read straight from the page cache (preadv2 RWF_NOWAIT)
 *   sendfile.c     a file onto an HTTP connection with sendfile(2), watched on Node's loop
 *   icmp_echo.c    ICMP echo for the DHCP probe before an offer, watched on Node's loop
 *   dhcp_io.c      DHCP datagrams in by the batch (recvmmsg) and replies out by sendto, watched on Node's loop
 *   journal.c      the store's lease journal: appends made durable (fdatasync) by a thread of its own
 *   napi_util.c    the N-API argument and error helpers they share
 *
 * Built by `npm run build:native` (node-gyp rebuild -C native, against the headers installed beside node via
 * --nodedir, so nothing is downloaded), which npm install and npm ci run as postinstall. A failed build does not
 * fail the install; src/native/index.ts then reports every capability as absent and each user falls back or says
 * how to build it.
 */
#include <node_api.h>

#include "plinth_net.h"

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"openUdp4", NULL, open_udp4, NULL, NULL, NULL, napi_enumerable, NULL},
      {"openIcmp6", NULL, open_icmp6, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setArp", NULL, set_arp, NULL, NULL, NULL, napi_enumerable, NULL},
      {"closeFd", NULL, close_fd, NULL, NULL, NULL, napi_enumerable, NULL},
      {"raStart", NULL, ra_start, NULL, NULL, NULL, napi_enumerable, NULL},
      {"raStop", NULL, ra_stop, NULL, NULL, NULL, napi_enumerable, NULL},
      {"raAnswered", NULL, ra_answered, NULL, NULL, NULL, napi_enumerable, NULL},
      {"udpOpen", NULL, udp_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"udpLocalPort", NULL, udp_local_port, NULL, NULL, NULL, napi_enumerable, NULL},
      {"udpSend", NULL, udp_send, NULL, NULL, NULL, napi_enumerable, NULL},
      {"udpSendBatch", NULL, udp_send_batch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"udpClose", NULL, udp_close, NULL, NULL, NULL, napi_enumerable, NULL},
      {"udpArm", NULL, udp_arm, NULL, NULL, NULL, napi_enumerable, NULL},
      {"udpDisarm", NULL, udp_disarm, NULL, NULL, NULL, napi_enumerable, NULL},
      {"readPackets", NULL, read_packets, NULL, NULL, NULL, napi_enumerable, NULL},
      {"tcpSendFile", NULL, tcp_send_file, NULL, NULL, NULL, napi_enumerable, NULL},
      {"tcpSendFileCancel", NULL, tcp_send_file_cancel, NULL, NULL, NULL, napi_enumerable, NULL},
      {"icmpOpen", NULL, icmp_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"icmpKind", NULL, icmp_kind, NULL, NULL, NULL, napi_enumerable, NULL},
      {"icmpEcho", NULL, icmp_echo, NULL, NULL, NULL, napi_enumerable, NULL},
      {"icmpClose", NULL, icmp_close, NULL, NULL, NULL, napi_enumerable, NULL},
      {"dhcpIoOpen", NULL, dhcp_io_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"dhcpIoSend", NULL, dhcp_io_send, NULL, NULL, NULL, napi_enumerable, NULL},
      {"dhcpIoClose", NULL, dhcp_io_close, NULL, NULL, NULL, napi_enumerable, NULL},
      {"journalLock", NULL, journal_lock, NULL, NULL, NULL, napi_enumerable, NULL},
      {"journalOpen", NULL, journal_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"journalAppend", NULL, journal_append, NULL, NULL, NULL, napi_enumerable, NULL},
      {"journalAppendSend", NULL, journal_append_send, NULL, NULL, NULL, napi_enumerable, NULL},
      {"journalKick", NULL, journal_kick, NULL, NULL, NULL, napi_enumerable, NULL},
      {"journalClose", NULL, journal_close, NULL, NULL, NULL, napi_enumerable, NULL},
      {"journalStats", NULL, journal_stats, NULL, NULL, NULL, napi_enumerable, NULL},
      {"journalFlush", NULL, journal_flush, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
