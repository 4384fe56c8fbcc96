/*
 * The store's lease journal (src/store/journal.ts): an append-only file in front of SQLite, so that putBatched
 * resolves after one small write and one fdatasync instead of a SQLite transaction, its page writes and its fsync.
 * JavaScript appends a record (the bytes are copied into a queue under a mutex) and gets its sequence number; a
 * thread of its own writes everything queued in one pwrite, fdatasyncs, and wakes Node's loop with a uv_async_t:
 * one JavaScript callback per wakeup, with the highest durable sequence number (or the error). Whatever is
 * appended during an fdatasync goes in the next write: group commit with no timer.
 *
 * Segments: PREFIX.<generation, 8 hex digits>, each preallocated with fallocate (size included, not KEEP_SIZE)
 * and made durable (fsync of the file and of its directory) before its first record, so a record's fdatasync
 * writes data only, never a size change. A full segment is followed by the next generation, made ready by the
 * thread in an idle moment once the current one is half full. Records:
 *
 *   u32 magic 'PLJ1' | u32 payload length | u64 sequence | u32 CRC32 (of length, sequence, payload) | u32 0 | payload
 *
 * little-endian, so recovery (src/store/journal-recovery.ts) stops at the first torn, stale or zero record.
 *
 *   journalLock(path): fd holding flock(LOCK_EX) on path (EWOULDBLOCK: another process owns the journal)
 *   journalOpen(prefix, generation, firstSeq, segmentBytes, onDurable(seq, generation, generationFirstSeq, error),
 *     groupUs, groupRate, sync): sync 0 makes a record durable once written (no fdatasync: the store's
 *     leaseDurability 'kernel', which survives the daemon's kill -9 but not a power loss); then nothing waits for
 *     the disk, so the caller writes instead of the thread: journalFlush, once per event-loop turn, writes what
 *     was appended and sends its datagrams, and onDurable is never called (the thread only makes segments ahead)
 *   journalAppend(h, payload string): its sequence number; journalKick(h): wakes the thread for what is appended
 *   journalFlush(h): sync 0 only, see above; [durable seq, generation, generationFirstSeq, seq, errno, ...]
 *   journalAppendSend(h, payload string, fd, datagram, address, port): journalAppend, and the datagram (a DHCP
 *     ACK) sent by the thread with sendmmsg right after the fdatasync that makes the record durable, or never when
 *     the journal fails first. The ACK leaves the moment its lease is on disk instead of waiting for the event loop
 *     to run the durable callback (a busy turn or a GC pause: milliseconds at high rates); onDurable's fifth
 *     argument lists [seq, errno, ...] for the sends that failed (undefined when none did). The fd must stay open
 *     until that callback has reported the record: the DHCP server closes its sockets only after its ACKs settle.
 *   journalClose(h): writes what is queued, stops the thread; the highest durable sequence number
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "napi_util.h"
#include "plinth_net.h"

#define MAGIC 0x314a4c50u /* "PLJ1" little-endian */
#define HDR 24
/* A datagram to send once record `seq` is durable; its bytes follow, the entry padded to 8 bytes. */
typedef struct {
  uint64_t seq;
  int fd;
  uint32_t addr; /* host order */
  uint16_t port;
  uint16_t len;
  uint32_t pad;
} dgram_hdr;
#define DGRAM_MAX 65507
#define SEND_BATCH 64

typedef struct {
  napi_env env;
  napi_ref cb;
  napi_async_context ctx;
  uv_async_t async;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  /* Under mu: the queue JavaScript appends to, what the thread reports back, and the thread's state. */
  unsigned char *q;
  size_t qlen, qcap;
  unsigned char *sq; /* datagrams to send after the fdatasync of the records queued with them */
  size_t sqlen, sqcap;
  uint64_t *failed; /* [seq, errno] pairs of sends that failed, for the next callback */
  size_t nfailed, failcap;
  uint64_t next_seq;    /* the next record's sequence number */
  uint64_t durable;     /* the highest sequence number on disk */
  uint64_t gen;         /* the segment the thread writes to */
  uint64_t gen_first;   /* the first sequence number written to it (0: none yet) */
  char err[256];        /* the first failure; the journal takes no more records after it */
  bool waiting, stop, running;
  /* The thread's own. */
  char prefix[4000];
  int fd, dirfd, next_fd; /* next_fd: the next segment, made ready while idle (-1: not yet) */
  bool next_failed;     /* making it failed: left to the rotation, which reports the error */
  uint64_t next_gen;    /* next_fd's generation */
  bool creating;        /* the thread is making next_fd (mu released): journalFlush's rotation waits on `made` */
  pthread_cond_t made;
  uint64_t off, seg_bytes;
  /* Group commit under load: above group_rate records a second, the thread waits up to group_us (about 4
   * records' worth) before taking a group, so one fdatasync and one wakeup each way cover several records. */
  uint64_t group_us, group_rate, win_start, win_records;
  /* false (journalOpen's `sync` 0, the store's leaseDurability 'kernel'): a record is durable once written to the
   * kernel (pwrite), without the fdatasync: it survives the daemon's kill -9 or crash, not a power loss. Then
   * there is nothing to wait for, so the caller writes its own records (journalFlush, once per event-loop turn)
   * and sends their datagrams, as Kea's memfile writes in its one thread: no handoff to this thread and back,
   * whose wakeup on a core the event loop keeps busy was most of the ACK's p99 (issue 13). fd, off, gen and
   * gen_first are then the caller's, under mu; the thread only makes the segments ahead of time. */
  bool sync;
  /* Under mu (the thread, their only writer, reads them without it): the rate measured, the fdatasyncs made and
   * how many of them waited to group (journalStats). */
  uint64_t rate, groups, delayed, syncs;
  /* The loop thread's own. */
  uint64_t appended;    /* the last sequence number handed out */
  bool refd, closed, uv_closed, finalized;
} journal;

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;
static void crc_init(void) {
  for (uint32_t i = 0, c = 0, k; i < 256; crc_table[i++] = c)
    for (c = i, k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
}
/* CRC-32 (IEEE, zlib's): what zlib.crc32 computes in recovery. */
static uint32_t crc32_update(uint32_t crc, const unsigned char *p, size_t n) {
  for (crc = ~crc; n--;) crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
  return ~crc;
}

static void put32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t get32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }

static void fail(journal *j, const char *what, int e) {
  pthread_mutex_lock(&j->mu);
  if (!j->err[0]) snprintf(j->err, sizeof j->err, "journal %s: %s", what, strerror(e));
  pthread_mutex_unlock(&j->mu);
}

/* Creates segment `gen` of `size` bytes, preallocated and durable (file and directory entry) before any record goes
 * in; 0 and its fd in *out, or an errno. */
static int segment_create(journal *j, uint64_t gen, uint64_t size, int *out) {
  char path[4096 + 32];
  snprintf(path, sizeof path, "%s.%08llx", j->prefix, (unsigned long long)gen);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return errno;
  /* The size is part of the allocation (no KEEP_SIZE): a later fdatasync has no size to write. Where the file
   * system cannot (EOPNOTSUPP), a sparse file of that size still works, at the price of block allocation in
   * the fdatasyncs. */
  if ((fallocate(fd, 0, 0, (off_t)size) != 0 && ftruncate(fd, (off_t)size) != 0) || fsync(fd) != 0 ||
      fsync(j->dirfd) != 0) {
    int e = errno;
    close(fd);
    return e;
  }
  *out = fd;
  return 0;
}

/* The records go to segment `gen` (fd) from now on. `held`: the caller holds mu (journalFlush). */
static void segment_switch(journal *j, int fd, uint64_t gen, bool held) {
  if (j->fd >= 0) close(j->fd);
  j->fd = fd;
  j->off = 0;
  if (!held) pthread_mutex_lock(&j->mu);
  j->gen = gen;
  j->gen_first = 0;
  if (!held) pthread_mutex_unlock(&j->mu);
}

/* Before writing `n` bytes: the first segment, or the next one when they do not fit (the one made ready while
 * the thread was idle, else a new one now). 0 or an errno. `held`: the caller holds mu (journalFlush), and
 * waits for a segment the thread is making rather than make the same file beside it. */
static int segment_room(journal *j, uint64_t n, bool held) {
  if (j->fd >= 0 && (j->off + n <= j->seg_bytes || j->off == 0)) return 0;
  uint64_t gen = j->fd < 0 ? j->gen : j->gen + 1;
  while (held && j->creating) pthread_cond_wait(&j->made, &j->mu);
  int fd = -1, e = 0;
  if (j->next_fd >= 0 && j->next_gen == gen && n <= j->seg_bytes) {
    fd = j->next_fd;
  } else {
    if (j->next_fd >= 0) close(j->next_fd);
    e = segment_create(j, gen, n > j->seg_bytes ? n : j->seg_bytes, &fd);
  }
  j->next_fd = -1;
  j->next_failed = false;
  if (!e) segment_switch(j, fd, gen, held);
  return e;
}

/* Fills in each record's CRC (off the event loop), returns the last sequence number in the buffer. */
static uint64_t seal(unsigned char *b, size_t n, uint64_t *first) {
  uint64_t last = 0;
  for (size_t at = 0; at + HDR <= n;) {
    uint32_t len = get32(b + at + 4);
    put32(b + at + 16, crc32_update(crc32_update(0, b + at + 4, 12), b + at + HDR, len));
    memcpy(&last, b + at + 8, 8);
    if (*first == 0) *first = last;
    at += HDR + len;
  }
  return last;
}

static int write_all(int fd, const unsigned char *b, size_t n, uint64_t off) {
  for (ssize_t w; n > 0; b += w, n -= (size_t)w, off += (uint64_t)w)
    if ((w = pwrite(fd, b, n, (off_t)off)) < 0) {
      if (errno != EINTR) return errno;
      w = 0;
    }
  return 0;
}

/* Remembers a failed send for the next callback (dropped when memory runs out: the ACK is lost either way). */
static void send_failed(journal *j, uint64_t seq, int e) {
  pthread_mutex_lock(&j->mu);
  if (j->nfailed + 2 > j->failcap) {
    size_t cap = j->failcap ? j->failcap * 2 : 64;
    uint64_t *f = realloc(j->failed, cap * sizeof *f);
    if (f) j->failed = f, j->failcap = cap;
  }
  if (j->nfailed + 2 <= j->failcap) {
    j->failed[j->nfailed++] = seq;
    j->failed[j->nfailed++] = (uint64_t)e;
  }
  pthread_mutex_unlock(&j->mu);
}

/* The failed sends recorded since the last call ([seq, errno] pairs, *n numbers; the caller frees them). Under mu. */
static uint64_t *take_failed(journal *j, size_t *n) {
  uint64_t *failed = j->failed;
  *n = j->nfailed;
  j->failed = NULL;
  j->nfailed = j->failcap = 0;
  return failed;
}

/* Sends the datagrams in b[0..n): runs of one fd with one sendmmsg each (up to SEND_BATCH). A datagram the
 * socket refuses (EAGAIN, ENOBUFS: a full buffer) is reported and skipped, as a lost reply is for DHCP. */
static void send_durable(journal *j, unsigned char *b, size_t n) {
  struct mmsghdr msgs[SEND_BATCH];
  struct iovec iov[SEND_BATCH];
  struct sockaddr_in to[SEND_BATCH];
  dgram_hdr *hdrs[SEND_BATCH];
  size_t at = 0;
  while (at < n) {
    int k = 0, fd = -1;
    for (; k < SEND_BATCH && at < n; k++) {
      dgram_hdr *d = (dgram_hdr *)(b + at);
      if (k > 0 && d->fd != fd) break;
      fd = d->fd;
      hdrs[k] = d;
      memset(&to[k], 0, sizeof to[k]);
      to[k].sin_family = AF_INET;
      to[k].sin_addr.s_addr = htonl(d->addr);
      to[k].sin_port = htons(d->port);
      iov[k].iov_base = (unsigned char *)d + sizeof *d;
      iov[k].iov_len = d->len;
      memset(&msgs[k], 0, sizeof msgs[k]);
      msgs[k].msg_hdr.msg_name = &to[k];
      msgs[k].msg_hdr.msg_namelen = sizeof to[k];
      msgs[k].msg_hdr.msg_iov = &iov[k];
      msgs[k].msg_hdr.msg_iovlen = 1;
      at += (sizeof *d + d->len + 7) & ~(size_t)7;
    }
    for (int i = 0; i < k;) {
      int r = sendmmsg(fd, msgs + i, (unsigned)(k - i), MSG_DONTWAIT);
      if (r > 0) {
        i += r;
      } else if (r < 0 && errno == EINTR) {
        continue;
      } else {
        send_failed(j, hdrs[i]->seq, r < 0 ? errno : EIO);
        i++;
      }
    }
  }
}

/* Takes what the loop queued in (*q, *len, *cap), `*n` bytes, and gives the loop the thread's spare buffer
 * (*spare, *spare_cap), emptied, in its place; the taken one becomes the thread's spare. Under mu. */
static unsigned char *swap_out(unsigned char **q, size_t *len, size_t *cap, unsigned char **spare, size_t *spare_cap,
                               size_t *n) {
  unsigned char *b = *q;
  size_t c = *cap;
  *n = *len;
  *q = *spare;
  *cap = *spare_cap;
  *len = 0;
  *spare = b;
  *spare_cap = c;
  return b;
}

static uint64_t mono_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

static void *journal_loop(void *arg) {
  journal *j = arg;
  unsigned char *mine = NULL, *mine_s = NULL;
  size_t mine_cap = 0, mine_scap = 0;
  for (;;) {
    pthread_mutex_lock(&j->mu);
    /* With sync 0 the records are the caller's to write (journalFlush): this thread only makes segments. */
    while ((j->qlen == 0 || !j->sync) && !j->stop) {
      /* Idle past half the segment: the next one is made now, so the rotation under load costs no fsyncs. With
       * sync 0 the first one too, so that no journalFlush makes it unless it comes first. */
      if (j->next_fd < 0 && !j->next_failed &&
          (j->fd >= 0 ? j->off * 2 >= j->seg_bytes : !j->sync && !j->err[0])) {
        uint64_t gen = j->fd >= 0 ? j->gen + 1 : j->gen;
        j->creating = true;
        pthread_mutex_unlock(&j->mu);
        int fd = -1;
        int e = segment_create(j, gen, j->seg_bytes, &fd);
        pthread_mutex_lock(&j->mu);
        j->creating = false;
        if (e) j->next_failed = true;
        else j->next_fd = fd, j->next_gen = gen;
        pthread_cond_broadcast(&j->made);
        continue;
      }
      j->waiting = true;
      pthread_cond_wait(&j->cv, &j->mu);
      j->waiting = false;
    }
    if ((j->qlen == 0 || !j->sync) && j->stop) {
      pthread_mutex_unlock(&j->mu);
      break;
    }
    /* Group commit under load (PostgreSQL's commit_delay, by rate rather than by sibling count): at group_rate
     * records a second or more, wait for about 4 records' arrivals (at most group_us) before taking a group of
     * fewer than 4 (the queued records: appended and not yet durable).
     * Each fdatasync and each wakeup of this thread and of the loop then covers several records; at 4,000
     * DORA/s on one core that was 15-25% less CPU per DORA. Below that rate nothing waits. */
    if (j->group_us && j->rate >= j->group_rate && j->rate > 0 && !j->stop && j->next_seq - 1 - j->durable < 4) {
      uint64_t d = 4000000u / j->rate;
      j->delayed++;
      if (d > j->group_us) d = j->group_us;
      pthread_mutex_unlock(&j->mu);
      struct timespec ts = {0, (long)(d * 1000u)};
      nanosleep(&ts, NULL);
      pthread_mutex_lock(&j->mu);
    }
    /* Swap buffers: appends go on into the other ones while these are written. The datagrams are those of
     * exactly these records, queued under the same lock. */
    size_t n, sn;
    unsigned char *b = swap_out(&j->q, &j->qlen, &j->qcap, &mine, &mine_cap, &n);
    unsigned char *sb = swap_out(&j->sq, &j->sqlen, &j->sqcap, &mine_s, &mine_scap, &sn);
    pthread_mutex_unlock(&j->mu);
    uint64_t first = 0, last = seal(b, n, &first);
    /* The rate the group commit goes by: records a second, over windows of 100 ms or more. */
    uint64_t now = mono_us();
    j->win_records += n > 0 ? last - first + 1 : 0;
    int e = segment_room(j, n, false);
    if (e) fail(j, "segment", e);
    if (!e && (e = write_all(j->fd, b, n, j->off)) != 0) fail(j, "write", e);
    if (!e && j->sync && fdatasync(j->fd) != 0) fail(j, "fdatasync", e = errno);
    if (!e) j->off += n;
    /* Durable: their ACKs leave now, before the loop hears of it. After a failure they are dropped (the records'
     * writes are refused, so no ACK may leave). */
    if (!e && sn > 0) send_durable(j, sb, sn);
    pthread_mutex_lock(&j->mu);
    if (now - j->win_start >= 100000u) { /* an idle journal's first group still goes by the last rate: one wait */
      j->rate = j->win_records * 1000000u / (now - j->win_start);
      j->win_start = now;
      j->win_records = 0;
    }
    if (!e) {
      j->groups++;
      if (j->sync) j->syncs++;
      j->durable = last;
      if (j->gen_first == 0) j->gen_first = first;
    }
    bool failed = j->err[0] != 0;
    pthread_mutex_unlock(&j->mu);
    uv_async_send(&j->async);
    if (failed) break;
  }
  free(mine);
  free(mine_s);
  return NULL;
}

static void journal_free_maybe(journal *j) {
  if (j->uv_closed && j->finalized) {
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    pthread_cond_destroy(&j->made);
    free(j->q);
    free(j->sq);
    free(j->failed);
    free(j);
  }
}

static void on_uv_close(uv_handle_t *h) {
  journal *j = h->data;
  j->uv_closed = true;
  journal_free_maybe(j);
}

/* The loop thread: one callback with what the thread made durable since the last one (or its error). */
static void on_async(uv_async_t *h) {
  journal *j = h->data;
  if (j->closed) return;
  pthread_mutex_lock(&j->mu);
  uint64_t durable = j->durable, gen = j->gen, gen_first = j->gen_first;
  char err[256];
  memcpy(err, j->err, sizeof err);
  size_t nfailed;
  uint64_t *failed = take_failed(j, &nfailed);
  pthread_mutex_unlock(&j->mu);
  /* Referenced only while records wait for their fdatasync: an idle journal never keeps the process alive. */
  if ((durable >= j->appended || err[0]) && j->refd) {
    uv_unref((uv_handle_t *)&j->async);
    j->refd = false;
  }
  napi_env env = j->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value cb, recv, argv[5], result;
  napi_get_reference_value(env, j->cb, &cb);
  napi_get_global(env, &recv);
  napi_create_double(env, (double)durable, &argv[0]);
  napi_create_double(env, (double)gen, &argv[1]);
  napi_create_double(env, (double)gen_first, &argv[2]);
  if (err[0]) napi_create_string_utf8(env, err, NAPI_AUTO_LENGTH, &argv[3]);
  else napi_get_undefined(env, &argv[3]);
  if (nfailed > 0) {
    napi_create_array_with_length(env, nfailed, &argv[4]);
    for (size_t i = 0; i < nfailed; i++) {
      napi_value v;
      napi_create_double(env, (double)failed[i], &v);
      napi_set_element(env, argv[4], (uint32_t)i, v);
    }
  } else {
    napi_get_undefined(env, &argv[4]);
  }
  free(failed);
  if (napi_make_callback(env, j->ctx, recv, cb, 5, argv, &result) == napi_pending_exception) {
    napi_value e;
    napi_get_and_clear_last_exception(env, &e);
    napi_fatal_exception(env, e);
  }
  napi_close_handle_scope(env, scope);
}

static void journal_shutdown(journal *j) {
  if (j->closed) return;
  pthread_mutex_lock(&j->mu);
  j->stop = true;
  pthread_cond_signal(&j->cv);
  pthread_mutex_unlock(&j->mu);
  if (j->running) pthread_join(j->thread, NULL);
  j->closed = true; /* and never again: the thread is joined once */
  if (j->fd >= 0) close(j->fd);
  if (j->next_fd >= 0) close(j->next_fd);
  if (j->dirfd >= 0) close(j->dirfd);
  j->fd = j->dirfd = j->next_fd = -1;
  napi_delete_reference(j->env, j->cb);
  napi_async_destroy(j->env, j->ctx);
  uv_close((uv_handle_t *)&j->async, on_uv_close);
}

static void journal_finalize(napi_env env, void *data, void *hint) {
  (void)env, (void)hint;
  journal *j = data;
  journal_shutdown(j);
  j->finalized = true;
  journal_free_maybe(j);
}

/* The journal handle in the first of the call's arguments (argv: room for *argc of them), or NULL (thrown). */
static journal *journal_arg(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv) {
  void *p = NULL;
  napi_valuetype t;
  napi_get_cb_info(env, info, argc, argv, NULL, NULL);
  if (*argc < 1 || napi_typeof(env, argv[0], &t) != napi_ok || t != napi_external ||
      napi_get_value_external(env, argv[0], &p) != napi_ok || p == NULL) {
    napi_throw_type_error(env, NULL, "not a journal handle");
    return NULL;
  }
  return p;
}

napi_value journal_lock(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char path[4096];
  if (argc < 1 || get_string(env, argv[0], path, sizeof path) <= 0) {
    napi_throw_type_error(env, NULL, "journalLock(path)");
    return NULL;
  }
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return throw_errno(env, path, errno);
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    close(fd);
    if (e != EWOULDBLOCK) return throw_errno(env, "flock", e);
    napi_throw_error(env, "EWOULDBLOCK", "the journal is in use by another process");
    return NULL;
  }
  return ret_int(env, fd);
}

napi_value journal_open(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  journal *j = calloc(1, sizeof *j);
  if (!j) return throw_errno(env, "journalOpen", ENOMEM);
  double gen = 0, first = 0, seg = 0;
  napi_valuetype t = napi_undefined;
  if (argc >= 5) napi_typeof(env, argv[4], &t);
  if (argc < 5 || get_string(env, argv[0], j->prefix, sizeof j->prefix) <= 0 ||
      napi_get_value_double(env, argv[1], &gen) != napi_ok || napi_get_value_double(env, argv[2], &first) != napi_ok ||
      napi_get_value_double(env, argv[3], &seg) != napi_ok || t != napi_function || gen < 1 || first < 1 ||
      seg < 4096) {
    free(j);
    napi_throw_type_error(env, NULL, "journalOpen(prefix, generation, firstSeq, segmentBytes, onDurable)");
    return NULL;
  }
  /* Optional: the group commit's longest wait (µs, 0: never) and the rate (records a second) it starts at. */
  /* And whether a group is fdatasynced (1, the default) or durable once written to the kernel (0). */
  double group_us = 0, group_rate = 0, sync = 1;
  if ((argc >= 6 && napi_get_value_double(env, argv[5], &group_us) != napi_ok && (group_us = -1)) ||
      (argc >= 7 && napi_get_value_double(env, argv[6], &group_rate) != napi_ok && (group_rate = -1)) ||
      (argc >= 8 && napi_get_value_double(env, argv[7], &sync) != napi_ok && (sync = -1)) ||
      group_us < 0 || group_us > 100000 || group_rate < 0 || (sync != 0 && sync != 1)) {
    free(j);
    napi_throw_type_error(env, NULL, "journalOpen(..., groupUs 0-100000, groupRate >= 0, sync 0 or 1)");
    return NULL;
  }
  pthread_once(&crc_once, crc_init);
  j->env = env;
  j->fd = j->next_fd = -1;
  j->gen = (uint64_t)gen;
  j->seg_bytes = (uint64_t)seg;
  j->next_seq = (uint64_t)first;
  j->group_us = (uint64_t)group_us;
  j->group_rate = (uint64_t)group_rate;
  j->sync = sync == 1;
  j->win_start = mono_us();
  j->durable = j->appended = (uint64_t)first - 1;
  char dir[4000];
  snprintf(dir, sizeof dir, "%s", j->prefix);
  pthread_mutex_init(&j->mu, NULL);
  pthread_cond_init(&j->cv, NULL);
  pthread_cond_init(&j->made, NULL);
  j->dirfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int e = j->dirfd < 0 ? errno : 0; /* the segments are made by the thread, never on the event loop */
  uv_loop_t *loop = NULL;
  if (!e && (napi_get_uv_event_loop(env, &loop) != napi_ok || !loop || uv_async_init(loop, &j->async, on_async)))
    e = EIO;
  if (e) {
    if (j->dirfd >= 0) close(j->dirfd);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    pthread_cond_destroy(&j->made);
    free(j);
    return throw_errno(env, "journalOpen", e);
  }
  j->async.data = j;
  uv_unref((uv_handle_t *)&j->async);
  napi_create_reference(env, argv[4], 1, &j->cb);
  napi_value name;
  napi_create_string_utf8(env, "plinth:journal", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, NULL, name, &j->ctx);
  if ((e = pthread_create(&j->thread, NULL, journal_loop, j)) != 0) fail(j, "thread", e);
  else j->running = true, pthread_setname_np(j->thread, "plinth-journal"); /* named for top -H and perf */
  napi_value out;
  napi_create_external(env, j, journal_finalize, NULL, &out);
  return out;
}

/* Grows *buf to hold `need` bytes (doubling from 64 KiB); false when out of memory. */
static bool reserve(unsigned char **buf, size_t *cap, size_t need) {
  if (need <= *cap) return true;
  size_t c = *cap ? *cap : 64 * 1024;
  while (c < need) c *= 2;
  unsigned char *q = realloc(*buf, c);
  if (!q) return false;
  *buf = q;
  *cap = c;
  return true;
}

/* journalAppend and journalAppendSend: argv[1] the payload; with `send`, argv[2..5] fd, datagram, address, port. */
static napi_value append(napi_env env, napi_callback_info info, bool send) {
  size_t argc = 6;
  napi_value argv[6];
  journal *j = journal_arg(env, info, &argc, argv);
  if (!j) return NULL;
  /* The UTF-16 length costs nothing (V8 keeps it); three UTF-8 bytes per unit at most, so the string is encoded
   * once, straight into the queue, without a first pass to count its UTF-8 bytes. */
  size_t len16 = 0;
  if (argc < 2 || napi_get_value_string_utf16(env, argv[1], NULL, 0, &len16) != napi_ok || len16 > 0x20000000) {
    napi_throw_type_error(env, NULL, "journalAppend(h, payload string)");
    return NULL;
  }
  int32_t fd = -1;
  uint32_t addr = 0, port = 0;
  void *data = NULL;
  size_t dlen = 0;
  bool is_buf = false;
  if (send && (argc < 6 || napi_get_value_int32(env, argv[2], &fd) != napi_ok || fd < 0 ||
               napi_is_buffer(env, argv[3], &is_buf) != napi_ok || !is_buf ||
               napi_get_buffer_info(env, argv[3], &data, &dlen) != napi_ok || dlen == 0 || dlen > DGRAM_MAX ||
               napi_get_value_uint32(env, argv[4], &addr) != napi_ok ||
               napi_get_value_uint32(env, argv[5], &port) != napi_ok || port > 0xffff)) {
    napi_throw_type_error(env, NULL, "journalAppendSend(h, payload string, fd, datagram, address u32, port)");
    return NULL;
  }
  pthread_mutex_lock(&j->mu);
  if (j->err[0] || j->closed || j->stop) {
    napi_throw_error(env, "EJOURNAL", j->err[0] ? j->err : "journal is closed"); /* copies the message */
    pthread_mutex_unlock(&j->mu);
    return NULL;
  }
  size_t dsize = (sizeof(dgram_hdr) + dlen + 7) & ~(size_t)7;
  if (!reserve(&j->q, &j->qcap, j->qlen + HDR + 3 * len16 + 1) || /* +1: napi writes a terminating NUL */
      (send && !reserve(&j->sq, &j->sqcap, j->sqlen + dsize))) {
    pthread_mutex_unlock(&j->mu);
    return throw_errno(env, "journalAppend", ENOMEM);
  }
  unsigned char *h = j->q + j->qlen;
  uint64_t seq = j->next_seq++;
  size_t len = 0;
  napi_get_value_string_utf8(env, argv[1], (char *)h + HDR, 3 * len16 + 1, &len);
  put32(h, MAGIC);
  put32(h + 4, (uint32_t)len);
  put64(h + 8, seq);
  put32(h + 16, 0); /* the CRC, filled in by the thread */
  put32(h + 20, 0);
  j->qlen += HDR + len; /* no wakeup here: journalKick, once per turn, so a turn's records share one write */
  if (send) {
    /* Queued with its record under the same lock: the thread takes both in one swap, so the datagram leaves
     * after the fdatasync of this very record, never before and never with a later one's. */
    dgram_hdr *d = (dgram_hdr *)(j->sq + j->sqlen);
    d->seq = seq;
    d->fd = fd;
    d->addr = addr;
    d->port = (uint16_t)port;
    d->len = (uint16_t)dlen;
    d->pad = 0;
    memcpy((unsigned char *)d + sizeof *d, data, dlen);
    j->sqlen += dsize;
  }
  pthread_mutex_unlock(&j->mu);
  j->appended = seq;
  if (j->sync && !j->refd) { /* sync 0: journalFlush, on this thread, makes it durable; nothing to wait for */
    uv_ref((uv_handle_t *)&j->async);
    j->refd = true;
  }
  napi_value out;
  napi_create_double(env, (double)seq, &out);
  return out;
}

/* The journal of a call whose one argument is its handle, or NULL (thrown). */
static journal *handle_only(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  return journal_arg(env, info, &argc, argv);
}

napi_value journal_append(napi_env env, napi_callback_info info) { return append(env, info, false); }

napi_value journal_append_send(napi_env env, napi_callback_info info) { return append(env, info, true); }

napi_value journal_kick(napi_env env, napi_callback_info info) {
  journal *j = handle_only(env, info);
  if (!j) return NULL;
  pthread_mutex_lock(&j->mu);
  if (j->waiting && j->qlen > 0) pthread_cond_signal(&j->cv);
  pthread_mutex_unlock(&j->mu);
  return NULL;
}

/* [groups, delayed, rate, syncs]: the groups written, those that waited to group, the records a second last
 * measured, the fdatasyncs made (as many as the groups, or none when the journal does not sync). */
napi_value journal_stats(napi_env env, napi_callback_info info) {
  journal *j = handle_only(env, info);
  if (!j) return NULL;
  pthread_mutex_lock(&j->mu);
  double v[4] = {(double)j->groups, (double)j->delayed, (double)j->rate, (double)j->syncs};
  pthread_mutex_unlock(&j->mu);
  napi_value out, x;
  napi_create_array_with_length(env, 4, &out);
  for (uint32_t i = 0; i < 4; i++) {
    napi_create_double(env, v[i], &x);
    napi_set_element(env, out, i, x);
  }
  return out;
}

/* sync 0: writes what was appended since the last flush in one pwrite, on the caller's thread, and sends their
 * datagrams (sendmmsg) right after. [durable seq, generation, its first seq, then seq, errno of each failed send];
 * throws EJOURNAL when the write fails (those records are not durable, their datagrams never sent). */
napi_value journal_flush(napi_env env, napi_callback_info info) {
  journal *j = handle_only(env, info);
  if (!j) return NULL;
  if (j->sync) {
    napi_throw_type_error(env, NULL, "journalFlush: only for a journal opened with sync 0");
    return NULL;
  }
  pthread_mutex_lock(&j->mu);
  if (j->err[0] || j->closed || j->stop) {
    napi_throw_error(env, "EJOURNAL", j->err[0] ? j->err : "journal is closed");
    pthread_mutex_unlock(&j->mu);
    return NULL;
  }
  /* Only this thread appends to q and sq and flushes them (the journal's thread never takes them with sync 0). */
  size_t n = j->qlen, sn = j->sqlen;
  int e = 0;
  const char *what = "segment";
  if (n > 0) {
    uint64_t first = 0, last = seal(j->q, n, &first);
    /* The room is made under mu: a segment the thread is making is waited for, not made a second time. */
    if (!(e = segment_room(j, n, true)) && (e = write_all(j->fd, j->q, n, j->off)) != 0) what = "write";
    if (e) {
      if (!j->err[0]) snprintf(j->err, sizeof j->err, "journal %s: %s", what, strerror(e));
    } else {
      j->off += n;
      j->groups++;
      j->durable = last;
      if (j->gen_first == 0) j->gen_first = first;
      /* Past half the segment: the thread makes the next one while the appends go on. */
      if (j->waiting && j->next_fd < 0 && !j->next_failed && j->off * 2 >= j->seg_bytes) pthread_cond_signal(&j->cv);
    }
  }
  j->qlen = j->sqlen = 0;
  uint64_t durable = j->durable, gen = j->gen, gen_first = j->gen_first;
  pthread_mutex_unlock(&j->mu);
  if (e) {
    napi_throw_error(env, "EJOURNAL", j->err);
    return NULL;
  }
  if (sn > 0) send_durable(j, j->sq, sn); /* failures land in j->failed, under mu */
  pthread_mutex_lock(&j->mu);
  size_t nfailed;
  uint64_t *failed = take_failed(j, &nfailed);
  pthread_mutex_unlock(&j->mu);
  napi_value out, x;
  napi_create_array_with_length(env, 3 + nfailed, &out);
  double head[3] = {(double)durable, (double)gen, (double)gen_first};
  for (uint32_t i = 0; i < 3 + nfailed; i++) {
    napi_create_double(env, i < 3 ? head[i] : (double)failed[i - 3], &x);
    napi_set_element(env, out, i, x);
  }
  free(failed);
  return out;
}

napi_value journal_close(napi_env env, napi_callback_info info) {
  journal *j = handle_only(env, info);
  if (!j) return NULL;
  journal_shutdown(j); /* the thread is joined: its last durable sequence number is final */
  napi_value out;
  napi_create_double(env, (double)j->durable, &out);
  return out;
}
