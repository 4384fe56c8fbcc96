{
  "targets": [
    {
      "target_name": "plinth_net",
      "sources": ["plinth_net.c", "napi_util.c", "dhcp_sock.c", "ra.c", "tftp_xfer.c", "tftp_send.c", "tftp_read.c", "sendfile.c", "icmp_echo.c", "dhcp_io.c", "journal.c"],
      "cflags": ["-Wall", "-O2"],
      "defines": ["NAPI_VERSION=8"],
      "libraries": ["-lpthread"]
    }
  ]
}
