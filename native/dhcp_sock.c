/*
 * DHCP sockets: a UDP socket bound to one interface (SO_BINDTODEVICE), which Node's dgram cannot make, so a server
 * on several segments knows on which interface a broadcast DISCOVER arrived; and the ARP entry that lets a unicast
 * reply reach a client without an address. Each function only opens or configures a socket and returns; the socket
 * is then read and written by dhcp_io.c on Node's loop (or by dgram, `socket.bind({ fd })`, in a build without it),
 * so no thread, no event loop and no buffers live here.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "napi_util.h"
#include "plinth_net.h"

/* openUdp4(ifname: string | null, port: number, address?: string, reuse?: boolean): fd
 * No SO_REUSEADDR unless asked: sockets bound to different devices share port 67 without it (Linux checks
 * the bound device), and without it a second DHCP server on the same port fails loudly with EADDRINUSE
 * instead of silently sharing the broadcasts. SO_BROADCAST for replies to 255.255.255.255. */
napi_value open_udp4(napi_env env, napi_callback_info info) {
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

/* setArp(fd, ifname, ip, mac[6]): a permanent-enough ARP entry so a unicast reply reaches a client that has no
 * address yet (RFC 2131 4.1: unicast to chaddr/yiaddr when the broadcast bit is clear). What dnsmasq does too. */
napi_value set_arp(napi_env env, napi_callback_info info) {
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

napi_value close_fd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd = -1;
  if (argc > 0 && napi_get_value_int32(env, argv[0], &fd) == napi_ok && fd > 2) close(fd);
  return ret_int(env, 0);
}
