/*
 * N-API helpers shared by every file of the addon (napi_util.c).
 */
#ifndef PLINTH_NAPI_UTIL_H
#define PLINTH_NAPI_UTIL_H

#include <node_api.h>
#include <stddef.h>
#include <stdint.h>

/* Functions shared between the addon's files but not meant for anyone else: hidden, so no other library loaded
 * into node can interpose a symbol of the same name. */
#define PN_INTERNAL __attribute__((visibility("hidden")))

/* Throws an Error whose code is the errno's name (EACCES, EADDRINUSE, ...) or E<n>; returns NULL. */
PN_INTERNAL napi_value throw_errno(napi_env env, const char *what, int err);
/* Copies a string argument into buf: its length, 0 when it is not a string, -1 on failure. */
PN_INTERNAL int get_string(napi_env env, napi_value v, char *buf, size_t len);
PN_INTERNAL napi_value ret_int(napi_env env, int n);
/* Buffer and byte range from (buf, offset, length) arguments, checked against the buffer's bounds. */
PN_INTERNAL unsigned char *buf_range(napi_env env, napi_value b, napi_value o, size_t need_from_off, int64_t *off_out);

#endif
