/*
 * TFTP transfer sockets: the handle's life and the receiving half (sending a window is tftp_send.c).
 *
 * Here dgram itself is the cost, not a missing socket option. A lock-step TFTP transfer sends one 4-byte ACK and
 * gets one DATA back per block, and dgram spends more time around each datagram (a 64 KiB receive allocation, the
 * peer address formatted as a string, an rinfo object, a send request object) than the kernel spends moving it. So
 * a transfer socket is watched here with a uv_poll_t on Node's own loop (no thread), ACKs reach JavaScript as a
 * plain number, and a whole window leaves in one system call.
 *
 * udpOpen(bindAddress, peerAddress, peerPort, onPacket, gso = true, busyPollUs = 0): handle. A UDP socket bound to an ephemeral port
 * (the transfer's TID, RFC 1350) that talks only to the client's address and port. Each datagram from the client calls
 * onPacket(ack, msg, err): a bare ACK as onPacket(block) with no allocation; anything else as onPacket(-1, Buffer);
 * an ICMP port unreachable for the client (it has gone) as onPacket(-2, undefined, "ECONNREFUSED"). A DATA or ACK
 * from any other source gets ERROR 5 "Unknown transfer ID" and leaves the transfer alone (RFC 1350 section 4), which
 * is why the socket is not connect()ed (the kernel would drop those, answering ICMP instead) and ICMP errors are read
 * from the error queue (IP_RECVERR), where each names the address it is about.
 * udpLocalPort(h); udpClose(h): stops watching and closes the socket (idempotent).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/errqueue.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "napi_util.h"
#include "plinth_net.h"
#include "tftp.h"
#include "tftp_xfer.h"

/* Datagrams read per readiness event: fairness between transfers, the loop comes back for the rest. */
#define RECV_PER_EVENT 32
/* Longest run of busy polling in one readiness event (see xfer_spin). */
#define SPIN_SLICE_NS 2000000

static __thread unsigned char rbuf[65536];

static void xfer_maybe_free(xfer *x) {
  if (x->uv_closed && x->finalized) free(x);
}

static void xfer_on_uv_close(uv_handle_t *h) {
  xfer *x = (xfer *)h->data;
  x->uv_closed = true;
  xfer_maybe_free(x);
}

static void xfer_shutdown(xfer *x) {
  if (x->closed) return;
  x->closed = true;
  x->armed = false;
  uv_poll_stop(&x->poll);
  uv_close((uv_handle_t *)&x->poll, xfer_on_uv_close);
  close(x->fd);
  x->fd = -1;
  if (x->cb) {
    napi_delete_reference(x->env, x->cb);
    x->cb = NULL;
  }
  if (x->ctx) {
    napi_async_destroy(x->env, x->ctx);
    x->ctx = NULL;
  }
}

static void xfer_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  xfer *x = (xfer *)data;
  x->finalized = true;
  if (!x->closed) xfer_shutdown(x); /* a handle dropped without udpClose: do not leak the socket */
  xfer_maybe_free(x);
}

/* Calls onPacket inside a callback scope (napi_make_callback), so promise jobs and nextTicks queued by it run
 * before the loop goes on, as after any other I/O callback. Returns false when the handle got closed meanwhile. */
static bool xfer_emit(xfer *x, int32_t ack, const unsigned char *data, size_t len, const char *err, bool fired) {
  napi_env env = x->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value cb, recv, argv[4];
  napi_get_reference_value(env, x->cb, &cb);
  napi_get_global(env, &recv); /* napi_make_callback wants an object as `this` */
  napi_create_int32(env, ack, &argv[0]);
  if (data != NULL) napi_create_buffer_copy(env, len, data, NULL, &argv[1]);
  else napi_get_undefined(env, &argv[1]);
  if (err != NULL) napi_create_string_utf8(env, err, NAPI_AUTO_LENGTH, &argv[2]);
  else napi_get_undefined(env, &argv[2]);
  napi_get_boolean(env, fired, &argv[3]);
  napi_value result;
  if (napi_make_callback(env, x->ctx, recv, cb, 4, argv, &result) == napi_pending_exception) {
    napi_value e;
    napi_get_and_clear_last_exception(env, &e);
    napi_fatal_exception(env, e);
  }
  napi_close_handle_scope(env, scope);
  return !x->closed;
}

static bool is_peer(const xfer *x, const struct sockaddr_in *a) {
  return a->sin_family == AF_INET && a->sin_port == x->peer.sin_port && a->sin_addr.s_addr == x->peer.sin_addr.s_addr;
}

/* ICMP errors queued by IP_RECVERR. Only one about the client's own address and port ends the transfer: an error
 * about a stray sender we answered with ERROR 5 must not. Returns false when the handle got closed. */
static bool xfer_drain_errors(xfer *x) {
  for (int i = 0; i < 64 && !x->closed; i++) {
    struct sockaddr_in about;
    char ctrl[512];
    unsigned char one;
    struct iovec iov = {&one, sizeof one};
    struct msghdr m = {0};
    m.msg_name = &about;
    m.msg_namelen = sizeof about;
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = ctrl;
    m.msg_controllen = sizeof ctrl;
    if (recvmsg(x->fd, &m, MSG_ERRQUEUE | MSG_DONTWAIT) < 0) break;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c != NULL; c = CMSG_NXTHDR(&m, c)) {
      if (c->cmsg_level != SOL_IP || c->cmsg_type != IP_RECVERR) continue;
      struct sock_extended_err ee;
      memcpy(&ee, CMSG_DATA(c), sizeof ee);
      if (ee.ee_origin == SO_EE_ORIGIN_ICMP && ee.ee_errno == ECONNREFUSED && is_peer(x, &about) &&
          !xfer_emit(x, -2, NULL, 0, "ECONNREFUSED", false))
        return false;
    }
  }
  /* IP_RECVERR also sets the socket error; it was about a datagram already gone, so clear it. */
  int err = 0;
  socklen_t el = sizeof err;
  getsockopt(x->fd, SOL_SOCKET, SO_ERROR, &err, &el);
  return !x->closed;
}

/* ERROR 5 (RFC 1350 section 4); the string literal brings the final NUL. */
static const unsigned char unknown_tid[] = TFTP_ERROR_UNKNOWN_TID;

static const char *errno_name(int e) {
  switch (e) {
    case ECONNREFUSED: return "ECONNREFUSED";
    case EHOSTUNREACH: return "EHOSTUNREACH";
    case ENETUNREACH: return "ENETUNREACH";
    case ENOBUFS: return "ENOBUFS";
    case EMSGSIZE: return "EMSGSIZE";
    default: return "EIO";
  }
}
/* After a send, when the client's answers come back within busy_max_us, wait for the next one by polling rather
 * than by going back to epoll_wait to sleep. On a virtual machine the sleep is the expensive part: an idle vCPU
 * halts, and waking it for the ACK took 45-50 us here, per window, against ~35 us to send the window itself. The
 * spin ends as soon as this socket has a datagram (true: read it now), any other handle of the loop is ready (its
 * epoll descriptor is readable: go back and serve it), or the expected moment has passed by half again (false).
 * Linux offers the same trade for NIC queues (SO_BUSY_POLL, net.core.busy_read); nothing there covers a veth or a
 * halted vCPU, hence here.
 *
 * Polling pays only on a CPU that would otherwise sit idle. Where other tasks want this CPU the scheduler takes it
 * from the spinner, and a task that burnt its share spinning is the last to get it back when the ACK arrives,
 * where a task asleep in epoll_wait is woken ahead of them: measured under load, polling then made one windowed
 * client slower than no polling at all. A gap between two polls (preempted: the kernel ran something else) stops
 * the spin and every spin of this thread for SPIN_BACKOFF_NS. */
#define SPIN_PREEMPTED_NS 50000
#define SPIN_BACKOFF_NS 100000000
static int64_t spin_resume_ns; /* no spin before this: one was preempted (Node's loop is one thread) */

static bool xfer_spin(xfer *x, int64_t entered_ns) {
  if (x->busy_max_us <= 0 || x->turn_us <= 0 || x->turn_us > x->busy_max_us || x->sent_at_ns == 0) return false;
  int64_t now = realtime_ns();
  if (now < spin_resume_ns) return false;
  /* Timers and immediates are not descriptors the poll can see: hand the thread back to the loop every 2 ms. */
  if (now - entered_ns > SPIN_SLICE_NS) return false;
  int64_t budget = (int64_t)x->turn_us * 3 / 2 + 10;
  if (budget > x->busy_max_us) budget = x->busy_max_us;
  int64_t until = x->sent_at_ns + budget * 1000;
  struct pollfd pf[2] = {{x->fd, POLLIN, 0}, {uv_backend_fd(x->loop), POLLIN, 0}};
  for (int64_t prev = now; now < until; prev = now) {
    if (poll(pf, 2, 0) > 0) return (pf[0].revents & POLLIN) != 0;
    now = realtime_ns();
    if (now - prev > SPIN_PREEMPTED_NS) {
      spin_resume_ns = now + SPIN_BACKOFF_NS;
      return false;
    }
  }
  return false;
}

/* Smoothed like an RTT (7/8 old, 1/8 new); only for the first datagram after each send. */
static void xfer_turnaround(xfer *x, const struct timespec *rx) {
  if (x->sent_at_ns == 0 || rx->tv_sec == 0) return;
  int64_t us = ((int64_t)rx->tv_sec * 1000000000 + rx->tv_nsec - x->sent_at_ns) / 1000;
  x->sent_at_ns = 0;
  if (us < 0 || us > 1000000) return;
  x->turn_us = x->turn_us == 0 ? (int32_t)us : (int32_t)((x->turn_us * 7 + us) / 8);
}

static void xfer_on_poll(uv_poll_t *h, int status, int events) {
  xfer *x = (xfer *)h->data;
  (void)events;
  if (x->closed) return;
  if (status < 0) {
    /* POLLERR (a queued ICMP error): libuv has stopped this watcher. Read the errors, then watch again unless the
     * callback closed the socket. */
    if (!xfer_drain_errors(x)) return;
    uv_poll_start(&x->poll, UV_READABLE, xfer_on_poll);
  }
  int64_t entered_ns = x->busy_max_us > 0 ? realtime_ns() : 0;
  for (int i = 0; i < RECV_PER_EVENT && !x->closed; i++) {
    struct sockaddr_in from;
    struct iovec iov = {rbuf, sizeof rbuf};
    char ctrl[CMSG_SPACE(sizeof(struct timespec))];
    struct msghdr m = {0};
    m.msg_name = &from;
    m.msg_namelen = sizeof from;
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = ctrl;
    m.msg_controllen = sizeof ctrl;
    ssize_t n = recvmsg(x->fd, &m, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (i > 0 && xfer_spin(x, entered_ns)) continue;
        return;
      }
      if (errno == EINTR) return;
      if (errno == ECONNREFUSED) continue; /* the socket error IP_RECVERR sets: the error queue says about whom */
      xfer_emit(x, -2, NULL, 0, errno_name(errno), false);
      return;
    }
    if (m.msg_namelen < sizeof from || !is_peer(x, &from)) {
      /* Only to what looks like a misdirected transfer (DATA, ACK), never to an ERROR: two servers must not
       * answer each other's errors for ever, and garbage gets no reply (no reflection). */
      if (n >= 4 && rbuf[0] == 0 && (rbuf[1] == TFTP_OP_DATA || rbuf[1] == TFTP_OP_ACK))
        sendto(x->fd, unknown_tid, sizeof unknown_tid, MSG_DONTWAIT, (struct sockaddr *)&from, sizeof from);
      continue;
    }
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    if (c != NULL && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_TIMESTAMPNS) {
      struct timespec rx;
      memcpy(&rx, CMSG_DATA(c), sizeof rx);
      xfer_turnaround(x, &rx);
    }
    /* Whatever the client sent, an armed window is either sent now or dropped: JavaScript decides afresh. */
    bool armed = x->armed;
    x->armed = false;
    if (n == 4 && rbuf[0] == 0 && rbuf[1] == TFTP_OP_ACK) {
      int32_t block = (rbuf[2] << 8) | rbuf[3];
      bool fired = armed && block == x->arm_ack;
      /* The hot path of a windowed read: the next window leaves before any JavaScript runs, so the client starts on
       * it while the server does its bookkeeping. Losses (ENOBUFS...) are left to the retransmission timer. */
      for (int r = 0; fired && r < x->arm_nruns; r++)
        send_batch(x, x->arm_runs[r].base, x->arm_slot, x->arm_runs[r].count, x->arm_runs[r].last);
      if (!xfer_emit(x, block, NULL, 0, NULL, fired)) return;
    } else if (!xfer_emit(x, -1, rbuf, (size_t)n, NULL, false)) {
      return;
    }
  }
}

xfer *xfer_arg(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok || p == NULL) {
    napi_throw_type_error(env, NULL, "not a transfer socket handle");
    return NULL;
  }
  return (xfer *)p;
}

napi_value udp_open(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char local[64] = {0}, peer[64] = {0};
  bool want_gso = true;
  int32_t busy_max_us = 0;
  if (argc > 4) napi_get_value_bool(env, argv[4], &want_gso);
  if (argc > 5) napi_get_value_int32(env, argv[5], &busy_max_us);
  int32_t peer_port = 0;
  napi_valuetype cbt = napi_undefined;
  if (argc >= 4) napi_typeof(env, argv[3], &cbt);
  if (argc < 4 || get_string(env, argv[0], local, sizeof local) <= 0 ||
      get_string(env, argv[1], peer, sizeof peer) <= 0 ||
      napi_get_value_int32(env, argv[2], &peer_port) != napi_ok || cbt != napi_function) {
    napi_throw_type_error(env, NULL, "udpOpen(bindAddress, peerAddress, peerPort, onPacket)");
    return NULL;
  }
  struct sockaddr_in la = {0}, pa = {0};
  la.sin_family = pa.sin_family = AF_INET;
  pa.sin_port = htons((uint16_t)peer_port);
  if (inet_pton(AF_INET, local, &la.sin_addr) != 1 || inet_pton(AF_INET, peer, &pa.sin_addr) != 1) {
    napi_throw_type_error(env, NULL, "udpOpen: addresses must be IPv4");
    return NULL;
  }
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return throw_errno(env, "socket", errno);
  int one = 1;
  setsockopt(fd, SOL_IP, IP_RECVERR, &one, sizeof one);
  /* Kernel arrival times of the client's datagrams: how soon it answers (busy polling, xfer_spin). */
  if (busy_max_us > 0) setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
  if (bind(fd, (struct sockaddr *)&la, sizeof la) < 0) {
    int e = errno;
    close(fd);
    return throw_errno(env, "bind", e);
  }
  struct sockaddr_in bound = {0};
  socklen_t bl = sizeof bound;
  getsockname(fd, (struct sockaddr *)&bound, &bl);
  uv_loop_t *loop = NULL;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == NULL) {
    close(fd);
    napi_throw_error(env, NULL, "udpOpen: no event loop");
    return NULL;
  }
  xfer *x = calloc(1, sizeof *x);
  x->env = env;
  x->fd = fd;
  x->peer = pa;
  x->port = ntohs(bound.sin_port);
  x->gso = want_gso && !gso_broken;
  x->loop = loop;
  x->busy_max_us = busy_max_us < 0 ? 0 : busy_max_us > 10000 ? 10000 : busy_max_us;
  if (uv_poll_init(loop, &x->poll, fd) != 0) {
    close(fd);
    free(x);
    napi_throw_error(env, NULL, "udpOpen: uv_poll_init failed");
    return NULL;
  }
  x->poll.data = x;
  napi_create_reference(env, argv[3], 1, &x->cb);
  napi_value name;
  napi_create_string_utf8(env, "plinth:tftp-transfer", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, NULL, name, &x->ctx);
  uv_poll_start(&x->poll, UV_READABLE, xfer_on_poll);
  napi_value out;
  napi_create_external(env, x, xfer_finalize, NULL, &out);
  return out;
}

napi_value udp_local_port(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  xfer *x = argc > 0 ? xfer_arg(env, argv[0]) : NULL;
  return x ? ret_int(env, x->port) : NULL;
}

napi_value udp_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  xfer *x = argc > 0 ? xfer_arg(env, argv[0]) : NULL;
  if (x) xfer_shutdown(x);
  return ret_int(env, 0);
}
