/*
 * Plinth's socket helper: the few setsockopt/ioctl calls Node's dgram cannot make.
 *
 * Node's dgram has no SO_BINDTODEVICE and no IP_PKTINFO, so a server on several segments cannot tell on which
 * interface a broadcast DISCOVER arrived. Each function here only opens and configures a socket and returns its
 * file descriptor; Node then drives it with dgram (`socket.bind({ fd })`), so no thread, no event loop and no
 * buffer handling lives in C. Linux only.
 *
 * The exception is the TFTP transfer socket at the end of this file (udpOpen...): there dgram itself is the cost.
 * A lock-step TFTP transfer sends one 4-byte ACK and gets one DATA back per block, and dgram spends more time around
 * each datagram (a 64 KiB receive allocation, the peer address formatted as a string, an rinfo object, a send
 * request object) than the kernel spends moving it. So a transfer socket is watched here with a uv_poll_t on Node's
 * own loop (no thread), ACKs reach JavaScript as a plain number, and a whole window leaves in one system call.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <linux/errqueue.h>
#include <node_api.h>
#include <uv.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  char code[32];
  snprintf(code, sizeof code, "E%d", err);
  /* errno names matter to callers (EACCES, EADDRINUSE): map the common ones. */
  const char *name = err == EACCES ? "EACCES" : err == EPERM ? "EPERM" : err == EADDRINUSE ? "EADDRINUSE"
                   : err == ENODEV ? "ENODEV" : code;
  napi_throw_error(env, name, msg);
  return NULL;
}

static int get_string(napi_env env, napi_value v, char *buf, size_t len) {
  size_t n = 0;
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t != napi_string) return 0;
  if (napi_get_value_string_utf8(env, v, buf, len, &n) != napi_ok) return -1;
  return (int)n;
}

static napi_value ret_int(napi_env env, int n) {
  napi_value out;
  napi_create_int32(env, n, &out);
  return out;
}

/* openUdp4(ifname: string | null, port: number, address?: string, reuse?: boolean): fd
 * No SO_REUSEADDR unless asked: sockets bound to different devices share port 67 without it (Linux checks
 * the bound device), and without it a second DHCP server on the same port fails loudly with EADDRINUSE
 * instead of silently sharing the broadcasts. SO_BROADCAST for replies to 255.255.255.255. */
static napi_value open_udp4(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char ifname[IFNAMSIZ + 1] = {0};
  char addr[64] = "0.0.0.0";
  bool reuse = false;
  if (argc > 3) napi_get_value_bool(env, argv[3], &reuse);
  int iflen = argc > 0 ? get_string(env, argv[0], ifname, sizeof ifname) : 0;
  int32_t port = 0;
  if (argc < 2 || napi_get_value_int32(env, argv[1], &port) != napi_ok) {
    napi_throw_type_error(env, NULL, "openUdp4(ifname, port, address?): port must be a number");
    return NULL;
  }
  if (argc > 2) get_string(env, argv[2], addr, sizeof addr);
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket", errno);
  int one = 1;
  if (reuse) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &one, sizeof one);
  /* Room for bursts (a rack PXE-booting at once, a pause for a commit) beyond the default ~200 KB, but bounded:
   * a deeper queue only serves requests their clients have given up on (the benchmark collapsed with 16 MB).
   * 1 MB (2 MB accounted) holds ~1-2 thousand requests, well under a second of work. FORCE works as root past
   * net.core.rmem_max; otherwise the plain request is capped. */
  int rcv = 1024 * 1024;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcv, sizeof rcv) < 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
  if (iflen > 0 && setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, ifname, (socklen_t)strlen(ifname) + 1) < 0) {
    int e = errno;
    close(fd);
    return throw_errno(env, "SO_BINDTODEVICE", e);
  }
  struct sockaddr_in sa = {0};
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
    close(fd);
    napi_throw_type_error(env, NULL, "openUdp4: address is not an IPv4 address");
    return NULL;
  }
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    int e = errno;
    close(fd);
    return throw_errno(env, "bind", e);
  }
  return ret_int(env, fd);
}

/* openIcmp6(ifname): fd of a raw ICMPv6 socket on one interface that sees only Router Solicitations.
 * Hop limits are 255 because RFC 4861 6.1.2 makes hosts drop an RA with any other hop limit. */
static napi_value open_icmp6(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char ifname[IFNAMSIZ + 1] = {0};
  if (argc < 1 || get_string(env, argv[0], ifname, sizeof ifname) <= 0) {
    napi_throw_type_error(env, NULL, "openIcmp6(ifname): ifname is required");
    return NULL;
  }
  unsigned int ifindex = if_nametoindex(ifname);
  if (ifindex == 0) return throw_errno(env, ifname, errno);
  int fd = socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMPV6);
  if (fd < 0) return throw_errno(env, "socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6)", errno);
  struct icmp6_filter filt;
  ICMP6_FILTER_SETBLOCKALL(&filt);
  ICMP6_FILTER_SETPASS(ND_ROUTER_SOLICIT, &filt);
  setsockopt(fd, IPPROTO_ICMPV6, ICMP6_FILTER, &filt, sizeof filt);
  int hops = 255;
  setsockopt(fd, IPPROTO_IPV6, IPV6_UNICAST_HOPS, &hops, sizeof hops);
  setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &hops, sizeof hops);
  if (setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, ifname, (socklen_t)strlen(ifname) + 1) < 0) {
    int e = errno;
    close(fd);
    return throw_errno(env, "SO_BINDTODEVICE", e);
  }
  /* Solicitations go to ff02::2 (all routers); a host that is no router has not joined it. */
  struct ipv6_mreq mreq = {0};
  inet_pton(AF_INET6, "ff02::2", &mreq.ipv6mr_multiaddr);
  mreq.ipv6mr_interface = ifindex;
  if (setsockopt(fd, IPPROTO_IPV6, IPV6_ADD_MEMBERSHIP, &mreq, sizeof mreq) < 0 && errno != EADDRINUSE) {
    int e = errno;
    close(fd);
    return throw_errno(env, "IPV6_ADD_MEMBERSHIP ff02::2", e);
  }
  return ret_int(env, fd);
}

/* The RA responder runs in a thread of its own: libuv (and so dgram) refuses raw sockets ("Unsupported fd
 * type"), and the job is small enough to live entirely here: wait for a Router Solicitation, answer with a
 * 16-byte RA (router lifetime 0, M=0, O=0) unicast to the soliciting link-local address. The kernel fills the
 * checksum (RFC 3542 3.1) and picks the link-local source address. */
typedef struct {
  int fd;
  volatile int stop;
  volatile long answered;
  pthread_t thread;
} ra_state;

static void *ra_loop(void *arg) {
  ra_state *st = (ra_state *)arg;
  unsigned char buf[1500];
  struct sockaddr_in6 last = {0};
  time_t last_at = 0;
  while (!st->stop) {
    struct pollfd p = {st->fd, POLLIN, 0};
    if (poll(&p, 1, 200) <= 0) continue;
    struct sockaddr_in6 from;
    socklen_t fl = sizeof from;
    ssize_t n = recvfrom(st->fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
    if (n < 8 || buf[0] != ND_ROUTER_SOLICIT || buf[1] != 0) continue;
    if (IN6_IS_ADDR_UNSPECIFIED(&from.sin6_addr)) continue; /* RFC 4861 6.2.6: no unicast to :: */
    time_t now = time(NULL);
    /* One RA per soliciting host per second (RFC 4861 6.2.6 rate-limits solicited RAs). */
    if (now == last_at && memcmp(&last.sin6_addr, &from.sin6_addr, sizeof from.sin6_addr) == 0) continue;
    last = from;
    last_at = now;
    unsigned char ra[16] = {ND_ROUTER_ADVERT, 0};
    from.sin6_port = 0;
    if (sendto(st->fd, ra, sizeof ra, 0, (struct sockaddr *)&from, sizeof from) == (ssize_t)sizeof ra) st->answered++;
  }
  return NULL;
}

#define RA_MAX 64
static ra_state *ra_table[RA_MAX];

/* raStart(ifname): id; raStop(id); raAnswered(id): count */
static napi_value ra_start(napi_env env, napi_callback_info info) {
  napi_value fdv = open_icmp6(env, info);
  if (fdv == NULL) return NULL;
  int32_t fd;
  napi_get_value_int32(env, fdv, &fd);
  int slot = -1;
  for (int i = 0; i < RA_MAX; i++)
    if (!ra_table[i]) {
      slot = i;
      break;
    }
  if (slot < 0) {
    close(fd);
    napi_throw_error(env, NULL, "too many RA responders");
    return NULL;
  }
  ra_state *st = calloc(1, sizeof *st);
  st->fd = fd;
  if (pthread_create(&st->thread, NULL, ra_loop, st) != 0) {
    close(fd);
    free(st);
    return throw_errno(env, "pthread_create", errno);
  }
  ra_table[slot] = st;
  return ret_int(env, slot);
}

static ra_state *ra_arg(napi_env env, napi_callback_info info, int *slot) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t id = -1;
  if (argc < 1 || napi_get_value_int32(env, argv[0], &id) != napi_ok || id < 0 || id >= RA_MAX) return NULL;
  *slot = id;
  return ra_table[id];
}

static napi_value ra_stop(napi_env env, napi_callback_info info) {
  int slot;
  ra_state *st = ra_arg(env, info, &slot);
  if (!st) return ret_int(env, 0);
  st->stop = 1;
  pthread_join(st->thread, NULL);
  close(st->fd);
  ra_table[slot] = NULL;
  long n = st->answered;
  free(st);
  return ret_int(env, (int)n);
}

static napi_value ra_answered(napi_env env, napi_callback_info info) {
  int slot;
  ra_state *st = ra_arg(env, info, &slot);
  return ret_int(env, st ? (int)st->answered : 0);
}

/* setArp(fd, ifname, ip, mac[6]): a permanent-enough ARP entry so a unicast reply reaches a client that has no
 * address yet (RFC 2131 4.1: unicast to chaddr/yiaddr when the broadcast bit is clear). What dnsmasq does too. */
static napi_value set_arp(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd = -1;
  char ifname[IFNAMSIZ + 1] = {0};
  char ip[64] = {0};
  void *mac = NULL;
  size_t maclen = 0;
  if (argc < 4 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || get_string(env, argv[1], ifname, sizeof ifname) <= 0 ||
      get_string(env, argv[2], ip, sizeof ip) <= 0 || napi_get_buffer_info(env, argv[3], &mac, &maclen) != napi_ok || maclen != 6) {
    napi_throw_type_error(env, NULL, "setArp(fd, ifname, ip, mac: Buffer(6))");
    return NULL;
  }
  struct arpreq req;
  memset(&req, 0, sizeof req);
  struct sockaddr_in *pa = (struct sockaddr_in *)&req.arp_pa;
  pa->sin_family = AF_INET;
  if (inet_pton(AF_INET, ip, &pa->sin_addr) != 1) {
    napi_throw_type_error(env, NULL, "setArp: ip is not an IPv4 address");
    return NULL;
  }
  req.arp_ha.sa_family = ARPHRD_ETHER;
  memcpy(req.arp_ha.sa_data, mac, 6);
  req.arp_flags = ATF_COM;
  memcpy(req.arp_dev, ifname, strnlen(ifname, sizeof req.arp_dev - 1));
  if (ioctl(fd, SIOCSARP, &req) < 0) return throw_errno(env, "SIOCSARP", errno);
  return ret_int(env, 0);
}

static napi_value close_fd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd = -1;
  if (argc > 0 && napi_get_value_int32(env, argv[0], &fd) == napi_ok && fd > 2) close(fd);
  return ret_int(env, 0);
}


/* ---------------------------------------------------------------------------------------------------------------
 * TFTP transfer sockets.
 *
 * udpOpen(bindAddress, peerAddress, peerPort, onPacket, gso = true, busyPollUs = 0): handle. A UDP socket bound to an ephemeral port
 * (the transfer's TID, RFC 1350) that talks only to the client's address and port. Each datagram from the client calls
 * onPacket(ack, msg, err): a bare ACK as onPacket(block) with no allocation; anything else as onPacket(-1, Buffer);
 * an ICMP port unreachable for the client (it has gone) as onPacket(-2, undefined, "ECONNREFUSED"). A DATA or ACK
 * from any other source gets ERROR 5 "Unknown transfer ID" and leaves the transfer alone (RFC 1350 section 4), which
 * is why the socket is not connect()ed (the kernel would drop those, answering ICMP instead) and ICMP errors are read
 * from the error queue (IP_RECVERR), where each names the address it is about.
 * udpSend(h, buf, offset, length): 1 when queued, or -errno.
 * udpSendBatch(h, buf, offset, slot, count, lastLength): packets laid out back to back, `slot` bytes apart, the last
 * one `lastLength` long. One sendmsg with UDP_SEGMENT (GSO: the stack is walked once for the whole window; on the
 * wire they are ordinary datagrams) when the kernel and route allow it, else one sendmmsg. Returns how many packets
 * were queued (possibly fewer, e.g. on ENOBUFS: the caller's retransmission timer covers the rest), or -errno when
 * none was.
 * udpLocalPort(h); udpClose(h): stops watching and closes the socket (idempotent). */

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
/* Linux accepts up to 64 segments per GSO send (128 since 6.x); stay at the older bound. */
#define GSO_MAX_SEGS 64
#define BATCH_MAX 64
/* Datagrams read per readiness event: fairness between transfers, the loop comes back for the rest. */
#define RECV_PER_EVENT 32
/* Longest run of busy polling in one readiness event (see xfer_spin). */
#define SPIN_SLICE_NS 2000000

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

static bool gso_broken; /* the kernel refused UDP_SEGMENT outright (ENOPROTOOPT, EIO): stop trying anywhere */
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
static const unsigned char unknown_tid[] = "\0\5\0\5Unknown transfer ID";

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

static int send_batch(xfer *x, unsigned char *base, int32_t slot, int32_t count, int32_t last);

static int64_t realtime_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* After a send, when the client's answers come back within busy_max_us, wait for the next one by polling rather
 * than by going back to epoll_wait to sleep. On a virtual machine the sleep is the expensive part: an idle vCPU
 * halts, and waking it for the ACK took 45-50 us here, per window, against ~35 us to send the window itself. The
 * spin ends as soon as this socket has a datagram (true: read it now), any other handle of the loop is ready (its
 * epoll descriptor is readable: go back and serve it), or the expected moment has passed by half again (false).
 * Linux offers the same trade for NIC queues (SO_BUSY_POLL, net.core.busy_read); nothing there covers a veth or a
 * halted vCPU, hence here. */
static bool xfer_spin(xfer *x, int64_t entered_ns) {
  if (x->busy_max_us <= 0 || x->turn_us <= 0 || x->turn_us > x->busy_max_us || x->sent_at_ns == 0) return false;
  /* Timers and immediates are not descriptors the poll can see: hand the thread back to the loop every 2 ms. */
  if (realtime_ns() - entered_ns > SPIN_SLICE_NS) return false;
  int64_t budget = (int64_t)x->turn_us * 3 / 2 + 10;
  if (budget > x->busy_max_us) budget = x->busy_max_us;
  int64_t until = x->sent_at_ns + budget * 1000;
  struct pollfd pf[2] = {{x->fd, POLLIN, 0}, {uv_backend_fd(x->loop), POLLIN, 0}};
  while (realtime_ns() < until) {
    if (poll(pf, 2, 0) > 0) return (pf[0].revents & POLLIN) != 0;
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
      if (n >= 4 && rbuf[0] == 0 && (rbuf[1] == 3 || rbuf[1] == 4))
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
    if (n == 4 && rbuf[0] == 0 && rbuf[1] == 4) {
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

static xfer *xfer_arg(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok || p == NULL) {
    napi_throw_type_error(env, NULL, "not a transfer socket handle");
    return NULL;
  }
  return (xfer *)p;
}

static napi_value udp_open(napi_env env, napi_callback_info info) {
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

static napi_value udp_local_port(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  xfer *x = argc > 0 ? xfer_arg(env, argv[0]) : NULL;
  return x ? ret_int(env, x->port) : NULL;
}

static napi_value udp_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  xfer *x = argc > 0 ? xfer_arg(env, argv[0]) : NULL;
  if (x) xfer_shutdown(x);
  return ret_int(env, 0);
}

/* Buffer and byte range from (buf, offset, length) arguments, checked against the buffer's bounds. */
static unsigned char *buf_range(napi_env env, napi_value b, napi_value o, size_t need_from_off, int64_t *off_out) {
  void *data = NULL;
  size_t len = 0;
  int64_t off = -1;
  if (napi_get_buffer_info(env, b, &data, &len) != napi_ok || napi_get_value_int64(env, o, &off) != napi_ok ||
      off < 0 ||
      (uint64_t)off + need_from_off > len) {
    napi_throw_range_error(env, NULL, "buffer range out of bounds");
    return NULL;
  }
  *off_out = off;
  return (unsigned char *)data;
}

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

static napi_value udp_send(napi_env env, napi_callback_info info) {
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

static int send_batch(xfer *x, unsigned char *base, int32_t slot, int32_t count, int32_t last) {
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

static napi_value udp_send_batch(napi_env env, napi_callback_info info) {
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
static napi_value udp_arm(napi_env env, napi_callback_info info) {
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

static napi_value udp_disarm(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  xfer *x = argc > 0 ? xfer_arg(env, argv[0]) : NULL;
  if (x) x->armed = false;
  return ret_int(env, 0);
}

/* readPackets(fd, position, blksize, firstBlock, count, out, outOffset, expect): lays out `count` DATA packets
 * (opcode, block number, payload; `4 + blksize` bytes apart) into `out` from the file bytes at `position`, the
 * payloads read straight into place with preadv2(RWF_NOWAIT): from the page cache only, never waiting for a disk.
 * Returns the bytes read when that is `expect` (the caller's count up to the end of the file), else -EAGAIN (not
 * all cached, or the file changed size) or -errno, and the caller reads asynchronously instead. On a warm file this
 * replaces a thread-pool read, a copy and a per-block layout loop in JavaScript with one system call on the loop
 * thread, between two windows, where no other thread competes with it for the server's core. */
static napi_value read_packets(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd = -1, blksize = 0, first = 0, count = 0;
  int64_t position = -1, expect = -1;
  if (argc < 8 || napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_value_int64(env, argv[1], &position) != napi_ok ||
      napi_get_value_int32(env, argv[2], &blksize) != napi_ok || napi_get_value_int32(env, argv[3], &first) != napi_ok ||
      napi_get_value_int32(env, argv[4], &count) != napi_ok || napi_get_value_int64(env, argv[7], &expect) != napi_ok ||
      fd < 0 || position < 0 || blksize < 1 || blksize > 65464 || count < 1 || expect < 0 ||
      expect > (int64_t)blksize * count) {
    napi_throw_type_error(env, NULL, "readPackets(fd, position, blksize, firstBlock, count, out, outOffset, expect)");
    return NULL;
  }
  size_t slot = (size_t)blksize + 4;
  int64_t off;
  unsigned char *data = buf_range(env, argv[5], argv[6], slot * (size_t)count, &off);
  if (!data) return NULL;
  unsigned char *out = data + off;
  struct iovec iov[1024];
  int64_t done = 0;
  for (int i = 0; i < count; i += 1024) {
    int k = count - i < 1024 ? count - i : 1024;
    for (int j = 0; j < k; j++) {
      unsigned char *p = out + slot * (size_t)(i + j);
      uint16_t block = (uint16_t)(first + i + j);
      p[0] = 0;
      p[1] = 3;
      p[2] = (unsigned char)(block >> 8);
      p[3] = (unsigned char)block;
      iov[j].iov_base = p + 4;
      iov[j].iov_len = (size_t)blksize;
    }
    int64_t want = expect - done < (int64_t)blksize * k ? expect - done : (int64_t)blksize * k;
    if (want <= 0) break;
    ssize_t n = preadv2(fd, iov, k, position + done, RWF_NOWAIT);
    if (n < 0) return ret_int(env, -errno);
    done += n;
    if (n < want) return ret_int(env, -EAGAIN);
  }
  return ret_int(env, done == expect ? (int)done : -EAGAIN);
}

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
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
