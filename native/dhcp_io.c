/*
 * DHCP sockets, the packet path: datagrams in by the batch, replies out with one sendto each.
 *
 * Under load dgram, not the protocol, was the main thread's cost: every datagram was a callback into JavaScript
 * with its own async hooks and tick queue run after it, a 64 KiB receive allocation, an rinfo object with the
 * address as a string; every send a DNS lookup for an address that is already one, a request object and a
 * completion callback. perf at 2,000 DORA/s put half the main thread in UDPWrap::OnRecv and a third in the work
 * done after each of its callbacks. So the socket openUdp4 (dhcp_sock.c) made is watched here with a uv_poll_t
 * on Node's own loop (no thread), read with recvmmsg into a ring JavaScript allocated once, and JavaScript is
 * called once per batch with the count.
 *
 * dhcpIoOpen(fd, ring, meta, slotSize, onBatch): handle. Takes the fd over (closed by dhcpIoClose). `ring` holds
 * meta.length / 4 slots of `slotSize` bytes; per datagram i, meta[4i..4i+3] are its length, source address (a
 * host-order u32), source port and flags (1: longer than the slot, truncated). onBatch(count) sees slots
 * 0..count-1, which are overwritten by the next batch: JavaScript copies what it keeps before returning.
 * dhcpIoSend(h, buf, offset, length, address, port): 1 when queued, or -errno (EAGAIN, ENOBUFS: a full socket
 * buffer; the caller counts it, as a lost datagram is for DHCP: the client retransmits).
 * dhcpIoClose(h): stops watching and closes the socket (idempotent); datagrams still queued are dropped.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <uv.h>

#include "napi_util.h"
#include "plinth_net.h"

/* The most slots a ring may have (the batch of one recvmmsg). */
#define MAX_SLOTS 64
/* Full batches read per readiness event before the loop gets the thread back; the poll is level-triggered, so
 * what is left is read at the next turn. Few: a turn's lease writes go to the store's writer only after the poll
 * phase (setImmediate), and the writer's confirmations (the ACKs) are read only after it, so every datagram
 * handled in one readiness event delays the commits and ACKs of the first ones; another turn costs one
 * epoll_wait. dgram reads 32 per event. */
#define MAX_ROUNDS 2

typedef struct {
  uv_poll_t poll;
  napi_env env;
  napi_ref cb, ring_ref, meta_ref;
  napi_async_context ctx;
  int fd;
  int slots;
  size_t slot_size;
  unsigned char *ring;
  uint32_t *meta;
  bool closed, uv_closed, finalized;
  struct mmsghdr msgs[MAX_SLOTS];
  struct iovec iov[MAX_SLOTS];
  struct sockaddr_in from[MAX_SLOTS];
} dhcp_io;

static void io_maybe_free(dhcp_io *d) {
  if (d->uv_closed && d->finalized) free(d);
}

static void io_on_uv_close(uv_handle_t *h) {
  dhcp_io *d = (dhcp_io *)h->data;
  d->uv_closed = true;
  io_maybe_free(d);
}

static void drop_ref(napi_env env, napi_ref *r) {
  if (*r) {
    napi_delete_reference(env, *r);
    *r = NULL;
  }
}

static void io_shutdown(dhcp_io *d) {
  if (d->closed) return;
  d->closed = true;
  uv_poll_stop(&d->poll);
  uv_close((uv_handle_t *)&d->poll, io_on_uv_close);
  close(d->fd);
  d->fd = -1;
  drop_ref(d->env, &d->cb);
  drop_ref(d->env, &d->ring_ref);
  drop_ref(d->env, &d->meta_ref);
  d->ring = NULL;
  d->meta = NULL;
  if (d->ctx) {
    napi_async_destroy(d->env, d->ctx);
    d->ctx = NULL;
  }
}

static void io_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  dhcp_io *d = (dhcp_io *)data;
  d->finalized = true;
  if (!d->closed) io_shutdown(d); /* a handle dropped without dhcpIoClose: do not leak the socket */
  io_maybe_free(d);
}

/* onBatch(count) inside a callback scope (napi_make_callback): the promise jobs and nextTicks the batch queued
 * run once after it, as after any I/O callback, rather than once per datagram. */
static void io_emit(dhcp_io *d, int count) {
  napi_env env = d->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value cb, recv, argv[1], result;
  napi_get_reference_value(env, d->cb, &cb);
  napi_get_global(env, &recv);
  napi_create_int32(env, count, &argv[0]);
  if (napi_make_callback(env, d->ctx, recv, cb, 1, argv, &result) == napi_pending_exception) {
    napi_value e;
    napi_get_and_clear_last_exception(env, &e);
    napi_fatal_exception(env, e);
  }
  napi_close_handle_scope(env, scope);
}

/* One recvmmsg into the ring; the count, 0 when nothing is queued, -1 on another error. */
static int io_read(dhcp_io *d) {
  for (int i = 0; i < d->slots; i++) {
    d->msgs[i].msg_hdr.msg_namelen = sizeof d->from[i];
    d->msgs[i].msg_hdr.msg_flags = 0;
    d->msgs[i].msg_len = 0;
  }
  int n = recvmmsg(d->fd, d->msgs, (unsigned)d->slots, MSG_DONTWAIT, NULL);
  if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
  for (int i = 0; i < n; i++) {
    uint32_t *m = d->meta + 4 * i;
    const struct msghdr *h = &d->msgs[i].msg_hdr;
    bool named = h->msg_namelen >= sizeof(struct sockaddr_in) && d->from[i].sin_family == AF_INET;
    m[0] = d->msgs[i].msg_len;
    m[1] = named ? ntohl(d->from[i].sin_addr.s_addr) : 0;
    m[2] = named ? ntohs(d->from[i].sin_port) : 0;
    m[3] = (h->msg_flags & MSG_TRUNC) ? 1 : 0;
  }
  return n;
}

static void io_on_poll(uv_poll_t *h, int status, int events) {
  dhcp_io *d = (dhcp_io *)h->data;
  (void)events;
  if (d->closed) return;
  if (status < 0) uv_poll_start(&d->poll, UV_READABLE, io_on_poll); /* a socket error: read on */
  for (int round = 0; round < MAX_ROUNDS && !d->closed; round++) {
    int n = io_read(d);
    if (n <= 0) return;
    io_emit(d, n);
    if (n < d->slots) return; /* the queue is empty: back to the loop */
  }
}

static dhcp_io *io_arg(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok || p == NULL) {
    napi_throw_type_error(env, NULL, "not a DHCP socket handle");
    return NULL;
  }
  return (dhcp_io *)p;
}

napi_value dhcp_io_open(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd = -1, slot_size = 0;
  void *ring = NULL, *meta = NULL;
  size_t ring_len = 0, meta_len = 0;
  napi_typedarray_type mt = napi_int8_array;
  napi_valuetype cbt = napi_undefined;
  if (argc >= 5) napi_typeof(env, argv[4], &cbt);
  if (argc < 5 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0 ||
      napi_get_buffer_info(env, argv[1], &ring, &ring_len) != napi_ok ||
      napi_get_typedarray_info(env, argv[2], &mt, &meta_len, &meta, NULL, NULL) != napi_ok || mt != napi_uint32_array ||
      napi_get_value_int32(env, argv[3], &slot_size) != napi_ok || cbt != napi_function) {
    napi_throw_type_error(env, NULL, "dhcpIoOpen(fd, ring: Buffer, meta: Uint32Array, slotSize, onBatch)");
    return NULL;
  }
  int slots = (int)(meta_len / 4);
  if (slot_size < 576 || slots < 1 || slots > MAX_SLOTS || (size_t)slot_size * (size_t)slots > ring_len) {
    napi_throw_range_error(env, NULL, "dhcpIoOpen: 1-64 slots of at least 576 bytes, the ring large enough for them");
    return NULL;
  }
  uv_loop_t *loop = NULL;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == NULL) {
    napi_throw_error(env, NULL, "dhcpIoOpen: no event loop");
    return NULL;
  }
  dhcp_io *d = calloc(1, sizeof *d);
  if (d == NULL) return throw_errno(env, "dhcpIoOpen", ENOMEM);
  d->env = env;
  d->fd = fd;
  d->slots = slots;
  d->slot_size = (size_t)slot_size;
  d->ring = ring;
  d->meta = meta;
  for (int i = 0; i < slots; i++) {
    d->iov[i].iov_base = d->ring + (size_t)i * d->slot_size;
    d->iov[i].iov_len = d->slot_size;
    d->msgs[i].msg_hdr.msg_name = &d->from[i];
    d->msgs[i].msg_hdr.msg_iov = &d->iov[i];
    d->msgs[i].msg_hdr.msg_iovlen = 1;
  }
  if (uv_poll_init(loop, &d->poll, fd) != 0) {
    free(d);
    napi_throw_error(env, NULL, "dhcpIoOpen: uv_poll_init failed");
    return NULL;
  }
  d->poll.data = d;
  /* The ring and meta arrays are JavaScript's memory written from here: held while the socket is open. */
  napi_create_reference(env, argv[1], 1, &d->ring_ref);
  napi_create_reference(env, argv[2], 1, &d->meta_ref);
  napi_create_reference(env, argv[4], 1, &d->cb);
  napi_value name;
  napi_create_string_utf8(env, "plinth:dhcp-socket", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, NULL, name, &d->ctx);
  uv_poll_start(&d->poll, UV_READABLE, io_on_poll);
  napi_value out;
  napi_create_external(env, d, io_finalize, NULL, &out);
  return out;
}

napi_value dhcp_io_send(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t len = -1, port = -1;
  uint32_t addr = 0;
  if (argc < 6 || napi_get_value_int32(env, argv[3], &len) != napi_ok || len < 0 ||
      napi_get_value_uint32(env, argv[4], &addr) != napi_ok || napi_get_value_int32(env, argv[5], &port) != napi_ok ||
      port < 0 || port > 0xffff) {
    napi_throw_type_error(env, NULL, "dhcpIoSend(h, buf, offset, length, address: u32, port)");
    return NULL;
  }
  dhcp_io *d = io_arg(env, argv[0]);
  if (!d) return NULL;
  int64_t off;
  unsigned char *data = buf_range(env, argv[1], argv[2], (size_t)len, &off);
  if (!data) return NULL;
  if (d->closed) return ret_int(env, -EBADF);
  struct sockaddr_in to = {0};
  to.sin_family = AF_INET;
  to.sin_addr.s_addr = htonl(addr);
  to.sin_port = htons((uint16_t)port);
  ssize_t n;
  do n = sendto(d->fd, data + off, (size_t)len, MSG_DONTWAIT, (struct sockaddr *)&to, sizeof to);
  while (n < 0 && errno == EINTR);
  return ret_int(env, n < 0 ? -errno : 1);
}

napi_value dhcp_io_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  dhcp_io *d = argc > 0 ? io_arg(env, argv[0]) : NULL;
  if (d) io_shutdown(d);
  return ret_int(env, 0);
}
