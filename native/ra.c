/*
 * The IPv6 Router Solicitation responder (src/dhcp/ra.ts switches it on and off per interface): a raw ICMPv6
 * socket per interface, each served by a thread of its own (ra_state below says why). The only threads the addon
 * starts.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "napi_util.h"
#include "plinth_net.h"

/* openIcmp6(ifname): fd of a raw ICMPv6 socket on one interface that sees only Router Solicitations.
 * Hop limits are 255 because RFC 4861 6.1.2 makes hosts drop an RA with any other hop limit. */
napi_value open_icmp6(napi_env env, napi_callback_info info) {
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
napi_value ra_start(napi_env env, napi_callback_info info) {
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

napi_value ra_stop(napi_env env, napi_callback_info info) {
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

napi_value ra_answered(napi_env env, napi_callback_info info) {
  int slot;
  ra_state *st = ra_arg(env, info, &slot);
  return ret_int(env, st ? (int)st->answered : 0);
}
