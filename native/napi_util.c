/*
 * The N-API helpers every part of the addon uses: errors as JavaScript exceptions with errno names, string and
 * integer arguments, buffer ranges checked against the buffer's bounds.
 */
#include "napi_util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

napi_value throw_errno(napi_env env, const char *what, int err) {
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

int get_string(napi_env env, napi_value v, char *buf, size_t len) {
  size_t n = 0;
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t != napi_string) return 0;
  if (napi_get_value_string_utf8(env, v, buf, len, &n) != napi_ok) return -1;
  return (int)n;
}

napi_value ret_int(napi_env env, int n) {
  napi_value out;
  napi_create_int32(env, n, &out);
  return out;
}

/* Buffer and byte range from (buf, offset, length) arguments, checked against the buffer's bounds. */
unsigned char *buf_range(napi_env env, napi_value b, napi_value o, size_t need_from_off, int64_t *off_out) {
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
