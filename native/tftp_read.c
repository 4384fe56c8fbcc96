/*
 * DATA packets laid out straight from the page cache (src/tftp/packets.ts layoutPacketsNow).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <sys/uio.h>

#include "napi_util.h"
#include "plinth_net.h"
#include "tftp.h"

/* readPackets(fd, position, blksize, firstBlock, count, out, outOffset, expect): lays out `count` DATA packets
 * (opcode, block number, payload; `4 + blksize` bytes apart) into `out` from the file bytes at `position`, the
 * payloads read straight into place with preadv2(RWF_NOWAIT): from the page cache only, never waiting for a disk.
 * Returns the bytes read when that is `expect` (the caller's count up to the end of the file), else -EAGAIN (not
 * all cached, or the file changed size) or -errno, and the caller reads asynchronously instead. On a warm file this
 * replaces a thread-pool read, a copy and a per-block layout loop in JavaScript with one system call on the loop
 * thread, between two windows, where no other thread competes with it for the server's core. */
napi_value read_packets(napi_env env, napi_callback_info info) {
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
      p[1] = TFTP_OP_DATA;
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
