/*
 * ICMP echo for the DHCP server's probe before an offer (src/dhcp/probe.ts; RFC 2131 section 2.2: "the allocating
 * server SHOULD probe the reused address before allocating the address, e.g., with an ICMP echo request", and
 * section 3.1 step 2). What ISC dhcpd's ping-check and dnsmasq do.
 *
 * icmpOpen(onReply): handle. An ICMP socket watched with a uv_poll_t on Node's own loop (no thread, nothing
 * blocks): a raw socket (SOCK_RAW, needs CAP_NET_RAW) filtered to echo replies, or, where that is refused, an
 * unprivileged ping socket (SOCK_DGRAM/IPPROTO_ICMP, allowed by net.ipv4.ping_group_range), whose identifier the
 * kernel picks and whose replies it filters. Each echo reply calls onReply(address, id, seq).
 * icmpKind(h): "raw" or "dgram". icmpEcho(h, address, id, seq): sends one echo request; 1, or -errno.
 * icmpClose(h): stops watching and closes the socket (idempotent).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/icmp.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "napi_util.h"
#include "plinth_net.h"

/* Replies read per readiness event: the loop comes back for the rest. */
#define RECV_PER_EVENT 16

typedef struct {
  uv_poll_t poll;
  napi_env env;
  napi_ref cb;
  napi_async_context ctx;
  int fd;
  bool raw;
  bool closed, uv_closed, finalized;
} prober;

static void prober_maybe_free(prober *p) {
  if (p->uv_closed && p->finalized) free(p);
}

static void prober_on_uv_close(uv_handle_t *h) {
  prober *p = (prober *)h->data;
  p->uv_closed = true;
  prober_maybe_free(p);
}

static void prober_shutdown(prober *p) {
  if (p->closed) return;
  p->closed = true;
  uv_poll_stop(&p->poll);
  uv_close((uv_handle_t *)&p->poll, prober_on_uv_close);
  close(p->fd);
  p->fd = -1;
  if (p->cb) {
    napi_delete_reference(p->env, p->cb);
    p->cb = NULL;
  }
  if (p->ctx) {
    napi_async_destroy(p->env, p->ctx);
    p->ctx = NULL;
  }
}

static void prober_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  prober *p = (prober *)data;
  p->finalized = true;
  if (!p->closed) prober_shutdown(p);
  prober_maybe_free(p);
}

static uint16_t inet_checksum(const unsigned char *b, size_t len) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < len; i += 2) sum += (uint32_t)(b[i] << 8 | b[i + 1]);
  if (len & 1) sum += (uint32_t)(b[len - 1] << 8);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return (uint16_t)~sum;
}

static void prober_emit(prober *p, const char *addr, int id, int seq) {
  napi_env env = p->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value cb, recv, argv[3], result;
  napi_get_reference_value(env, p->cb, &cb);
  napi_get_global(env, &recv);
  napi_create_string_utf8(env, addr, NAPI_AUTO_LENGTH, &argv[0]);
  napi_create_int32(env, id, &argv[1]);
  napi_create_int32(env, seq, &argv[2]);
  if (napi_make_callback(env, p->ctx, recv, cb, 3, argv, &result) == napi_pending_exception) {
    napi_value e;
    napi_get_and_clear_last_exception(env, &e);
    napi_fatal_exception(env, e);
  }
  napi_close_handle_scope(env, scope);
}

static void prober_on_poll(uv_poll_t *h, int status, int events) {
  prober *p = (prober *)h->data;
  (void)events;
  if (p->closed) return;
  if (status < 0) uv_poll_start(&p->poll, UV_READABLE, prober_on_poll); /* a socket error: read on */
  for (int i = 0; i < RECV_PER_EVENT && !p->closed; i++) {
    unsigned char buf[1500];
    struct sockaddr_in from;
    socklen_t fl = sizeof from;
    ssize_t n = recvfrom(p->fd, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
    if (n < 0) {
      /* EAGAIN: all read. Anything else (an ICMP error left on a ping socket) is about a probe that then times
       * out as silence: read on. */
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
      continue;
    }
    size_t off = 0;
    if (p->raw) {
      /* A raw socket hands over the IP header too; its length is in its first byte. Untrusted: checked. */
      if (n < 20) continue;
      off = (size_t)(buf[0] & 0x0f) * 4;
    }
    if (fl < sizeof from || off < (p->raw ? 20u : 0u) || (size_t)n < off + 8) continue;
    const unsigned char *icmp = buf + off;
    if (icmp[0] != ICMP_ECHOREPLY || icmp[1] != 0) continue;
    char addr[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &from.sin_addr, addr, sizeof addr);
    prober_emit(p, addr, icmp[4] << 8 | icmp[5], icmp[6] << 8 | icmp[7]);
  }
}

static prober *prober_arg(napi_env env, napi_value v) {
  void *ptr = NULL;
  if (napi_get_value_external(env, v, &ptr) != napi_ok || ptr == NULL) {
    napi_throw_type_error(env, NULL, "not an ICMP probe handle");
    return NULL;
  }
  return (prober *)ptr;
}

napi_value icmp_open(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  napi_valuetype t = napi_undefined;
  if (argc >= 1) napi_typeof(env, argv[0], &t);
  if (t != napi_function) {
    napi_throw_type_error(env, NULL, "icmpOpen(onReply)");
    return NULL;
  }
  bool raw = true;
  int fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_ICMP);
  if (fd >= 0) {
    /* Every ICMP message the host receives reaches a raw socket: let through echo replies only. */
    struct icmp_filter filt = {~(1u << ICMP_ECHOREPLY)};
    setsockopt(fd, SOL_RAW, ICMP_FILTER, &filt, sizeof filt);
  } else if (errno == EPERM || errno == EACCES) {
    raw = false;
    fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_ICMP);
  }
  if (fd < 0) return throw_errno(env, raw ? "socket(SOCK_RAW, IPPROTO_ICMP)" : "socket(SOCK_DGRAM, IPPROTO_ICMP)", errno);
  uv_loop_t *loop = NULL;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == NULL) {
    close(fd);
    napi_throw_error(env, NULL, "icmpOpen: no event loop");
    return NULL;
  }
  prober *p = calloc(1, sizeof *p);
  p->env = env;
  p->fd = fd;
  p->raw = raw;
  if (uv_poll_init(loop, &p->poll, fd) != 0) {
    close(fd);
    free(p);
    napi_throw_error(env, NULL, "icmpOpen: uv_poll_init failed");
    return NULL;
  }
  p->poll.data = p;
  napi_create_reference(env, argv[0], 1, &p->cb);
  napi_value name;
  napi_create_string_utf8(env, "plinth:icmp-echo", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, NULL, name, &p->ctx);
  uv_poll_start(&p->poll, UV_READABLE, prober_on_poll);
  napi_value out;
  napi_create_external(env, p, prober_finalize, NULL, &out);
  return out;
}

napi_value icmp_kind(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  prober *p = argc > 0 ? prober_arg(env, argv[0]) : NULL;
  if (!p) return NULL;
  napi_value out;
  napi_create_string_utf8(env, p->raw ? "raw" : "dgram", NAPI_AUTO_LENGTH, &out);
  return out;
}

napi_value icmp_echo(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char addr[64] = {0};
  int32_t id = -1, seq = -1;
  if (argc < 4 || get_string(env, argv[1], addr, sizeof addr) <= 0 ||
      napi_get_value_int32(env, argv[2], &id) != napi_ok || napi_get_value_int32(env, argv[3], &seq) != napi_ok ||
      id < 0 || id > 0xffff || seq < 0 || seq > 0xffff) {
    napi_throw_type_error(env, NULL, "icmpEcho(h, address, id, seq)");
    return NULL;
  }
  prober *p = prober_arg(env, argv[0]);
  if (!p) return NULL;
  struct sockaddr_in to = {0};
  to.sin_family = AF_INET;
  if (inet_pton(AF_INET, addr, &to.sin_addr) != 1) {
    napi_throw_type_error(env, NULL, "icmpEcho: address must be IPv4");
    return NULL;
  }
  if (p->closed) return ret_int(env, -EBADF);
  /* Type 8, code 0, checksum, identifier, sequence, then a payload naming the sender for whoever captures it. */
  unsigned char pkt[8 + 16] = {ICMP_ECHO, 0, 0, 0, (unsigned char)(id >> 8), (unsigned char)id,
                               (unsigned char)(seq >> 8), (unsigned char)seq};
  memcpy(pkt + 8, "plinth dhcp probe", 16);
  uint16_t sum = inet_checksum(pkt, sizeof pkt);
  pkt[2] = (unsigned char)(sum >> 8);
  pkt[3] = (unsigned char)sum;
  ssize_t n = sendto(p->fd, pkt, sizeof pkt, MSG_DONTWAIT, (struct sockaddr *)&to, sizeof to);
  return ret_int(env, n < 0 ? -errno : 1);
}

napi_value icmp_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  prober *p = argc > 0 ? prober_arg(env, argv[0]) : NULL;
  if (p) prober_shutdown(p);
  return ret_int(env, 0);
}
