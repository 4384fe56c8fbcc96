/*
 * Plinth's socket helper: the few setsockopt/ioctl calls Node's dgram cannot make.
 *
 * Node's dgram has no SO_BINDTODEVICE and no IP_PKTINFO, so a server on several segments cannot tell on which
 * interface a broadcast DISCOVER arrived. Each function here only opens and configures a socket and returns its
 * file descriptor; Node then drives it with dgram (`socket.bind({ fd })`), so no thread, no event loop and no
 * buffer handling lives in C. Linux only.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <node_api.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
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

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"openUdp4", NULL, open_udp4, NULL, NULL, NULL, napi_enumerable, NULL},
      {"openIcmp6", NULL, open_icmp6, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setArp", NULL, set_arp, NULL, NULL, NULL, napi_enumerable, NULL},
      {"closeFd", NULL, close_fd, NULL, NULL, NULL, napi_enumerable, NULL},
      {"raStart", NULL, ra_start, NULL, NULL, NULL, napi_enumerable, NULL},
      {"raStop", NULL, ra_stop, NULL, NULL, NULL, napi_enumerable, NULL},
      {"raAnswered", NULL, ra_answered, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
