/*
 * One TFTP transfer socket (udpOpen's handle), shared by its receiving half (tftp_xfer.c) and its sending half
 * (tftp_send.c).
 */
#ifndef PLINTH_TFTP_XFER_H
#define PLINTH_TFTP_XFER_H

#include <netinet/in.h>
#include <node_api.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include <uv.h>

#include "napi_util.h"

typedef struct {
  uv_poll_t poll;
  struct sockaddr_in peer;
  napi_env env;
  napi_ref cb;
  napi_async_context ctx;
  int fd;
  int port;
  bool closed;     /* udpClose called: no more callbacks, no more sends */
  bool uv_closed;  /* the poll handle's close callback ran */
  bool finalized;  /* the JS handle was collected */
  bool gso;        /* UDP_SEGMENT still believed to work on this socket */
  uv_loop_t *loop;
  /* Busy polling (see xfer_spin): the longest spin allowed (0: never), when we last sent, and how long after a
   * send the client's next datagram reaches the kernel (smoothed, from SO_TIMESTAMPNS; 0 until measured). */
  int32_t busy_max_us;
  int64_t sent_at_ns;
  int32_t turn_us;
  /* The next window, handed over in advance (udpArm): sent from here the moment the ACK `arm_ack` arrives. */
  bool armed;
  uint16_t arm_ack;
  int32_t arm_slot;
  int arm_nruns;
  struct {
    unsigned char *base;
    int32_t count, last;
  } arm_runs[2];
} xfer;

/* The kernel refused UDP_SEGMENT outright (ENOPROTOOPT, EIO): stop trying anywhere (tftp_send.c). */
PN_INTERNAL extern bool gso_broken;

/* The transfer behind a udpOpen handle, or NULL with a TypeError thrown (tftp_xfer.c). */
PN_INTERNAL xfer *xfer_arg(napi_env env, napi_value v);
/* Sends `count` packets laid out `slot` bytes apart, the last `last` long (tftp_send.c, udpSendBatch). */
PN_INTERNAL int send_batch(xfer *x, unsigned char *base, int32_t slot, int32_t count, int32_t last);

static inline int64_t realtime_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

#endif
