/*
 * TFTP transfer sockets, the sending half: one packet, a window in one system call, and a window armed to leave
 * the moment its ACK arrives (the handle and the receiving half are tftp_xfer.c).
 *
 * udpSend(h, buf, offset, length): 1 when queued, or -errno.
 * udpSendBatch(h, buf, offset, slot, count, lastLength): packets laid out back to back, `slot` bytes apart, the last
 * one `lastLength` long. One sendmsg with UDP_SEGMENT (GSO: the stack is walked once for the whole window; on the
 * wire they are ordinary datagrams) when the kernel and route allow it, else one sendmmsg. Returns how many packets
 * were queued (possibly fewer, e.g. on ENOBUFS: the caller's retransmission timer covers the rest), or -errno when
 * none was.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "napi_util.h"
#include "plinth_net.h"
#include "tftp_xfer.h"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
/* Linux accepts up to 64 segments per GSO send (128 since 6.x); stay at the older bound. */
#define GSO_MAX_SEGS 64
#define BATCH_MAX 64

bool gso_broken; /* the kernel refused UDP_SEGMENT outright (ENOPROTOOPT, EIO): stop trying anywhere */

/* A send can fail once with the socket error an ICMP left (IP_RECVERR sets it whoever the ICMP was about): that
 * error is consumed by the failure, so one retry sends the packet. */
static int send_one(xfer *x, const unsigned char *p, size_t len) {
  if (x->busy_max_us > 0) x->sent_at_ns = realtime_ns();
  for (int attempt = 0;; attempt++) {
    ssize_t n = sendto(x->fd, p, len, MSG_DONTWAIT, (struct sockaddr *)&x->peer, sizeof x->peer);
    if (n >= 0) return 1;
    if (errno != ECONNREFUSED || attempt > 0) return -errno;
  }
}

napi_value udp_send(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t len = -1;
  if (argc < 4 || napi_get_value_int32(env, argv[3], &len) != napi_ok || len < 0) {
    napi_throw_type_error(env, NULL, "udpSend(h, buf, offset, length)");
    return NULL;
  }
  xfer *x = xfer_arg(env, argv[0]);
  if (!x) return NULL;
  int64_t off;
  unsigned char *data = buf_range(env, argv[1], argv[2], (size_t)len, &off);
  if (!data) return NULL;
  if (x->closed) return ret_int(env, -EBADF);
  return ret_int(env, send_one(x, data + off, (size_t)len));
}

static int send_gso(xfer *x, unsigned char *base, int32_t slot, int32_t count, int32_t last) {
  struct iovec iov = {base, (size_t)slot * (size_t)(count - 1) + (size_t)last};
  char ctrl[CMSG_SPACE(sizeof(uint16_t))];
  memset(ctrl, 0, sizeof ctrl);
  struct msghdr m = {0};
  m.msg_name = &x->peer;
  m.msg_namelen = sizeof x->peer;
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = ctrl;
  m.msg_controllen = sizeof ctrl;
  struct cmsghdr *c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = SOL_UDP;
  c->cmsg_type = UDP_SEGMENT;
  c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
  uint16_t seg = (uint16_t)slot;
  memcpy(CMSG_DATA(c), &seg, sizeof seg);
  ssize_t n = sendmsg(x->fd, &m, MSG_DONTWAIT);
  if (n < 0 && errno == ECONNREFUSED) n = sendmsg(x->fd, &m, MSG_DONTWAIT);
  return n < 0 ? -errno : count;
}

static int send_mmsg(xfer *x, unsigned char *base, int32_t slot, int32_t count, int32_t last) {
  struct mmsghdr msgs[BATCH_MAX];
  struct iovec iov[BATCH_MAX];
  int sent = 0;
  while (sent < count) {
    int k = count - sent < BATCH_MAX ? count - sent : BATCH_MAX;
    memset(msgs, 0, sizeof(struct mmsghdr) * (size_t)k);
    for (int i = 0; i < k; i++) {
      int idx = sent + i;
      iov[i].iov_base = base + (size_t)slot * (size_t)idx;
      iov[i].iov_len = (size_t)(idx == count - 1 ? last : slot);
      msgs[i].msg_hdr.msg_name = &x->peer;
      msgs[i].msg_hdr.msg_namelen = sizeof x->peer;
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int n = sendmmsg(x->fd, msgs, (unsigned)k, MSG_DONTWAIT);
    if (n < 0 && errno == ECONNREFUSED) n = sendmmsg(x->fd, msgs, (unsigned)k, MSG_DONTWAIT);
    if (n < 0) return sent > 0 ? sent : -errno;
    sent += n;
    if (n < k) break;
  }
  return sent;
}

int send_batch(xfer *x, unsigned char *base, int32_t slot, int32_t count, int32_t last) {
  if (x->busy_max_us > 0) x->sent_at_ns = realtime_ns();
  if (count == 1) return send_one(x, base, (size_t)last);
  /* GSO needs equal segments except a shorter last one, at most 64 of them, in one IP datagram (64 KiB), each small
   * enough for the route's MTU; the kernel checks the last and answers EINVAL. */
  if (x->gso && count <= GSO_MAX_SEGS && (size_t)slot * (size_t)(count - 1) + (size_t)last <= 65000) {
    int r = send_gso(x, base, slot, count, last);
    if (r > 0) return r;
    if (r == -ENOPROTOOPT || r == -EIO || r == -EOPNOTSUPP) gso_broken = true;
    if (r == -EINVAL || r == -EMSGSIZE || gso_broken) x->gso = false; /* e.g. segments above the MTU: not again */
    else return r;                                                     /* EAGAIN, ENOBUFS, ECONNREFUSED... */
  }
  return send_mmsg(x, base, slot, count, last);
}

napi_value udp_send_batch(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t slot = 0, count = 0, last = -1;
  if (argc < 6 || napi_get_value_int32(env, argv[3], &slot) != napi_ok ||
      napi_get_value_int32(env, argv[4], &count) != napi_ok || napi_get_value_int32(env, argv[5], &last) != napi_ok ||
      slot <= 0 || slot > 65535 || count < 0 || last < 0 || last > slot) {
    napi_throw_type_error(env, NULL, "udpSendBatch(h, buf, offset, slot, count, lastLength)");
    return NULL;
  }
  xfer *x = xfer_arg(env, argv[0]);
  if (!x) return NULL;
  if (count == 0) return ret_int(env, 0);
  int64_t off;
  unsigned char *data = buf_range(env, argv[1], argv[2], (size_t)slot * (size_t)(count - 1) + (size_t)last, &off);
  if (!data) return NULL;
  if (x->closed) return ret_int(env, -EBADF);
  return ret_int(env, send_batch(x, data + off, slot, count, last));
}

/* udpArm(h, ack, slot, buf, offset, count, lastLength[, buf2, offset2, count2, lastLength2]): when a bare ACK
 * `ack` (16-bit) is the next datagram from the client, send these one or two runs of packets (laid out as for
 * udpSendBatch) at once, before calling onPacket(ack, undefined, undefined, true). Any other datagram cancels it, so
 * does udpDisarm(h). The caller keeps the buffers alive and unchanged until then. */
napi_value udp_arm(napi_env env, napi_callback_info info) {
  size_t argc = 11;
  napi_value argv[11];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t ack = -1, slot = 0;
  if ((argc != 7 && argc != 11) || napi_get_value_int32(env, argv[1], &ack) != napi_ok ||
      napi_get_value_int32(env, argv[2], &slot) != napi_ok || ack < 0 || ack > 65535 || slot <= 0 || slot > 65535) {
    napi_throw_type_error(env, NULL, "udpArm(h, ack, slot, buf, offset, count, lastLength[, buf2, offset2, count2, lastLength2])");
    return NULL;
  }
  xfer *x = xfer_arg(env, argv[0]);
  if (!x) return NULL;
  x->armed = false;
  int nruns = argc == 11 ? 2 : 1;
  for (int r = 0; r < nruns; r++) {
    napi_value *a = argv + 3 + 4 * r;
    int32_t count = 0, last = -1;
    if (napi_get_value_int32(env, a[2], &count) != napi_ok || napi_get_value_int32(env, a[3], &last) != napi_ok ||
        count <= 0 || last < 0 || last > slot) {
      napi_throw_type_error(env, NULL, "udpArm: count must be > 0 and 0 <= lastLength <= slot");
      return NULL;
    }
    int64_t off;
    unsigned char *data = buf_range(env, a[0], a[1], (size_t)slot * (size_t)(count - 1) + (size_t)last, &off);
    if (!data) return NULL;
    x->arm_runs[r].base = data + off;
    x->arm_runs[r].count = count;
    x->arm_runs[r].last = last;
  }
  if (x->closed) return ret_int(env, -EBADF);
  x->arm_ack = (uint16_t)ack;
  x->arm_slot = slot;
  x->arm_nruns = nruns;
  x->armed = true;
  return ret_int(env, 1);
}

napi_value udp_disarm(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  xfer *x = argc > 0 ? xfer_arg(env, argv[0]) : NULL;
  if (x) x->armed = false;
  return ret_int(env, 0);
}
