/*
 * A file's bytes onto an HTTP connection with sendfile(2): the kernel moves page-cache pages to the socket, no read
 * into a JavaScript buffer and no write back out of it. Serving kernels and initrds to a boot storm is the bulk of
 * Plinth's HTTP work; through streams it ran at half of nginx's rate on one core, most of it the copies and the
 * per-chunk trips through the event loop.
 *
 * tcpSendFile(sockFd, fileFd, position, length, onProgress): handle. Node keeps owning the connection: the socket
 * is used through a dup of its descriptor (libuv refuses a second watcher on the same fd number; epoll watches
 * the dup on its own), watched for writability with a uv_poll_t on Node's own loop (no thread). The caller has
 * written the response headers and has nothing else queued on the socket. onProgress(sent, done, err) runs after
 * each writable event that moved bytes (the caller's idle timer), and once with done = true: every byte sent, or
 * err = "EOF" (the file got shorter than promised) or the errno's name (the client went away: EPIPE,
 * ECONNRESET). The file descriptor stays the caller's; the dup is closed when done.
 * tcpSendFileCancel(h): stops and closes the dup (idempotent; the client closed, the server is stopping); the
 * bytes sent so far.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "napi_util.h"
#include "plinth_net.h"

typedef struct {
  uv_poll_t poll;
  napi_env env;
  napi_ref cb;
  napi_async_context ctx;
  int sock; /* our dup of Node's socket descriptor */
  int file; /* the caller's */
  off_t pos;
  int64_t left;
  int64_t sent;
  bool closed;    /* done or cancelled: no more callbacks */
  bool uv_closed; /* the poll handle's close callback ran */
  bool finalized; /* the JS handle was collected */
} sendjob;

static void job_maybe_free(sendjob *j) {
  if (j->uv_closed && j->finalized) free(j);
}

static void job_on_uv_close(uv_handle_t *h) {
  sendjob *j = (sendjob *)h->data;
  j->uv_closed = true;
  job_maybe_free(j);
}

static void job_shutdown(sendjob *j) {
  if (j->closed) return;
  j->closed = true;
  uv_poll_stop(&j->poll);
  uv_close((uv_handle_t *)&j->poll, job_on_uv_close);
  close(j->sock);
  j->sock = -1;
  napi_delete_reference(j->env, j->cb);
  j->cb = NULL;
  if (j->ctx != NULL) napi_async_destroy(j->env, j->ctx);
  j->ctx = NULL;
}

static void job_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  sendjob *j = (sendjob *)data;
  j->finalized = true;
  if (!j->closed) job_shutdown(j); /* dropped without being cancelled: do not keep the connection open */
  job_maybe_free(j);
}

static const char *errno_name(int e) {
  switch (e) {
    case EPIPE: return "EPIPE";
    case ECONNRESET: return "ECONNRESET";
    case ETIMEDOUT: return "ETIMEDOUT";
    case EIO: return "EIO";
    case EINVAL: return "EINVAL";
    case ENOMEM: return "ENOMEM";
    default: return "EIO";
  }
}

/* onProgress inside a callback scope (napi_make_callback), so promise jobs and nextTicks queued by it run before
 * the loop goes on, as after any other I/O callback. A final report shuts the job down first: the callback may
 * drop the handle. */
static void job_emit(sendjob *j, bool done, const char *err) {
  napi_env env = j->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value cb, recv, argv[3];
  napi_get_reference_value(env, j->cb, &cb); /* held by this scope past the shutdown below */
  napi_async_context ctx = j->ctx;
  napi_get_global(env, &recv);
  napi_create_int64(env, j->sent, &argv[0]);
  napi_get_boolean(env, done, &argv[1]);
  if (err != NULL) napi_create_string_utf8(env, err, NAPI_AUTO_LENGTH, &argv[2]);
  else napi_get_undefined(env, &argv[2]);
  if (done) {
    j->ctx = NULL; /* destroyed below, after the call */
    job_shutdown(j);
  }
  napi_value result;
  if (napi_make_callback(env, ctx, recv, cb, 3, argv, &result) == napi_pending_exception) {
    napi_value e;
    napi_get_and_clear_last_exception(env, &e);
    napi_fatal_exception(env, e);
  }
  if (done) napi_async_destroy(env, ctx);
  napi_close_handle_scope(env, scope);
}

static void job_on_poll(uv_poll_t *h, int status, int events) {
  sendjob *j = (sendjob *)h->data;
  (void)events;
  if (j->closed) return;
  int64_t before = j->sent;
  int err = status < 0 ? EPIPE : 0;
  while (err == 0 && j->left > 0) {
    /* Up to what the socket takes now; the kernel caps one call at about 2 GiB anyway. */
    size_t want = j->left > (1 << 30) ? (size_t)1 << 30 : (size_t)j->left;
    ssize_t n = sendfile(j->sock, j->file, &j->pos, want);
    if (n > 0) {
      j->sent += n;
      j->left -= n;
    } else if (n == 0) {
      job_emit(j, true, "EOF");
      return;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      break;
    } else if (errno != EINTR) {
      err = errno;
    }
  }
  if (err != 0) job_emit(j, true, errno_name(err));
  else if (j->left == 0) job_emit(j, true, NULL);
  else if (j->sent != before) job_emit(j, false, NULL);
}

static sendjob *job_arg(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok || p == NULL) {
    napi_throw_type_error(env, NULL, "not a tcpSendFile handle");
    return NULL;
  }
  return (sendjob *)p;
}

napi_value tcp_send_file(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t sock = -1, file = -1;
  int64_t pos = -1, len = -1;
  napi_valuetype cbt = napi_undefined;
  if (argc >= 5) napi_typeof(env, argv[4], &cbt);
  if (argc < 5 || napi_get_value_int32(env, argv[0], &sock) != napi_ok ||
      napi_get_value_int32(env, argv[1], &file) != napi_ok || napi_get_value_int64(env, argv[2], &pos) != napi_ok ||
      napi_get_value_int64(env, argv[3], &len) != napi_ok || cbt != napi_function || sock < 0 || file < 0 ||
      pos < 0 || len < 0) {
    napi_throw_type_error(env, NULL, "tcpSendFile(sockFd, fileFd, position, length, onProgress)");
    return NULL;
  }
  int type = 0;
  socklen_t tl = sizeof type;
  if (getsockopt(sock, SOL_SOCKET, SO_TYPE, &type, &tl) < 0) return throw_errno(env, "tcpSendFile", errno);
  if (type != SOCK_STREAM) {
    napi_throw_type_error(env, NULL, "tcpSendFile: not a stream socket");
    return NULL;
  }
  uv_loop_t *loop = NULL;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == NULL) {
    napi_throw_error(env, NULL, "tcpSendFile: no event loop");
    return NULL;
  }
  int dup_fd = fcntl(sock, F_DUPFD_CLOEXEC, 0);
  if (dup_fd < 0) return throw_errno(env, "tcpSendFile: dup", errno);
  sendjob *j = calloc(1, sizeof *j);
  if (j == NULL || uv_poll_init(loop, &j->poll, dup_fd) != 0) {
    close(dup_fd);
    free(j);
    napi_throw_error(env, NULL, "tcpSendFile: uv_poll_init failed");
    return NULL;
  }
  j->env = env;
  j->sock = dup_fd;
  j->file = file;
  j->pos = (off_t)pos;
  j->left = len;
  j->poll.data = j;
  napi_create_reference(env, argv[4], 1, &j->cb);
  napi_value name;
  napi_create_string_utf8(env, "plinth:http-sendfile", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, NULL, name, &j->ctx);
  /* The first sendfile runs from the loop, not here: onProgress is never called before this returns. */
  uv_poll_start(&j->poll, UV_WRITABLE | UV_DISCONNECT, job_on_poll);
  napi_value out;
  napi_create_external(env, j, job_finalize, NULL, &out);
  return out;
}

napi_value tcp_send_file_cancel(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  sendjob *j = argc > 0 ? job_arg(env, argv[0]) : NULL;
  if (j == NULL) return NULL;
  job_shutdown(j);
  napi_value out;
  napi_create_int64(env, j->sent, &out);
  return out;
}
