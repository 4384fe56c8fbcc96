/*
 * The functions the addon exports to JavaScript, each defined in the file of its job and registered in
 * plinth_net.c under the name in the comment. Their TypeScript signatures are in src/native/index.ts.
 */
#ifndef PLINTH_NET_H
#define PLINTH_NET_H

#include <node_api.h>

#include "napi_util.h"

/* dhcp_sock.c */
PN_INTERNAL napi_value open_udp4(napi_env env, napi_callback_info info);   /* openUdp4 */
PN_INTERNAL napi_value set_arp(napi_env env, napi_callback_info info);     /* setArp */
PN_INTERNAL napi_value close_fd(napi_env env, napi_callback_info info);    /* closeFd */

/* ra.c */
PN_INTERNAL napi_value open_icmp6(napi_env env, napi_callback_info info);  /* openIcmp6 */
PN_INTERNAL napi_value ra_start(napi_env env, napi_callback_info info);    /* raStart */
PN_INTERNAL napi_value ra_stop(napi_env env, napi_callback_info info);     /* raStop */
PN_INTERNAL napi_value ra_answered(napi_env env, napi_callback_info info); /* raAnswered */

/* tftp_xfer.c */
PN_INTERNAL napi_value udp_open(napi_env env, napi_callback_info info);       /* udpOpen */
PN_INTERNAL napi_value udp_local_port(napi_env env, napi_callback_info info); /* udpLocalPort */
PN_INTERNAL napi_value udp_close(napi_env env, napi_callback_info info);      /* udpClose */

/* tftp_send.c */
PN_INTERNAL napi_value udp_send(napi_env env, napi_callback_info info);       /* udpSend */
PN_INTERNAL napi_value udp_send_batch(napi_env env, napi_callback_info info); /* udpSendBatch */
PN_INTERNAL napi_value udp_arm(napi_env env, napi_callback_info info);        /* udpArm */
PN_INTERNAL napi_value udp_disarm(napi_env env, napi_callback_info info);     /* udpDisarm */

/* tftp_read.c */
PN_INTERNAL napi_value read_packets(napi_env env, napi_callback_info info); /* readPackets */

/* sendfile.c */
PN_INTERNAL napi_value tcp_send_file(napi_env env, napi_callback_info info);        /* tcpSendFile */
PN_INTERNAL napi_value tcp_send_file_cancel(napi_env env, napi_callback_info info); /* tcpSendFileCancel */

/* icmp_echo.c */
PN_INTERNAL napi_value icmp_open(napi_env env, napi_callback_info info);  /* icmpOpen */
PN_INTERNAL napi_value icmp_kind(napi_env env, napi_callback_info info);  /* icmpKind */
PN_INTERNAL napi_value icmp_echo(napi_env env, napi_callback_info info);  /* icmpEcho */
PN_INTERNAL napi_value icmp_close(napi_env env, napi_callback_info info); /* icmpClose */

/* dhcp_io.c */
PN_INTERNAL napi_value dhcp_io_open(napi_env env, napi_callback_info info);  /* dhcpIoOpen */
PN_INTERNAL napi_value dhcp_io_send(napi_env env, napi_callback_info info);  /* dhcpIoSend */
PN_INTERNAL napi_value dhcp_io_close(napi_env env, napi_callback_info info); /* dhcpIoClose */
/* journal.c */
PN_INTERNAL napi_value journal_lock(napi_env env, napi_callback_info info);   /* journalLock */
PN_INTERNAL napi_value journal_open(napi_env env, napi_callback_info info);   /* journalOpen */
PN_INTERNAL napi_value journal_append(napi_env env, napi_callback_info info); /* journalAppend */
PN_INTERNAL napi_value journal_append_send(napi_env env, napi_callback_info info); /* journalAppendSend */
PN_INTERNAL napi_value journal_kick(napi_env env, napi_callback_info info);   /* journalKick */
PN_INTERNAL napi_value journal_close(napi_env env, napi_callback_info info);  /* journalClose */
PN_INTERNAL napi_value journal_stats(napi_env env, napi_callback_info info);  /* journalStats */
PN_INTERNAL napi_value journal_flush(napi_env env, napi_callback_info info);    /* journalFlush */

#endif
