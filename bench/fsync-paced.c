/*
 * The disk's own fdatasync tail at the DHCP bench's 1,000/s (README, "DHCP latency", session 22): N appends of
 * 300 bytes (a lease journal record), each fdatasynced, one a millisecond, to an 8 MiB segment made the way
 * native/journal.c makes them (`fallocate`) or written with zeros first (`zeros`). Prints the latency percentiles of
 * the appends that stay in a 4 KiB block already written and of those that begin a new one (ext4 converts an
 * unwritten extent there). Run by bench/fsync.sh:  npm run bench:fsync [-- RUNS [N [DIR]]]
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}
static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}
static double pct(const double *v, int n, double q) { return n ? v[(int)(n * q) < n ? (int)(n * q) : n - 1] : 0; }

int main(int argc, char **argv) {
  if (argc != 4 || (strcmp(argv[1], "fallocate") && strcmp(argv[1], "zeros"))) {
    fprintf(stderr, "usage: fsync-paced fallocate|zeros N FILE\n");
    return 2;
  }
  int zeros = !strcmp(argv[1], "zeros"), n = atoi(argv[2]);
  const size_t size = 8 << 20, rec = 300;
  if (n < 1 || (size_t)n * rec > size) {
    fprintf(stderr, "N: 1 to %zu\n", size / rec);
    return 2;
  }
  int fd = open(argv[3], O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return perror("open"), 1;
  if (zeros) {
    char *z = calloc(1, 1 << 20);
    for (int i = 0; i < 8; i++)
      if (write(fd, z, 1 << 20) != 1 << 20) return perror("write"), 1;
    free(z);
  } else if (fallocate(fd, 0, 0, (off_t)size) != 0) {
    return perror("fallocate"), 1;
  }
  if (fsync(fd) != 0) return perror("fsync"), 1;
  double *same = malloc(n * sizeof *same), *fresh = malloc(n * sizeof *fresh), *all = malloc(n * sizeof *all);
  int ns = 0, nf = 0;
  char b[300];
  memset(b, 'x', sizeof b);
  for (int i = 0; i < n; i++) {
    off_t off = (off_t)i * rec;
    int new_block = off / 4096 != (off + (off_t)rec - 1) / 4096 || off % 4096 == 0;
    double t = now_ms();
    if (pwrite(fd, b, rec, off) != (ssize_t)rec || fdatasync(fd) != 0) return perror("append"), 1;
    double d = now_ms() - t;
    all[i] = d;
    if (new_block) fresh[nf++] = d;
    else same[ns++] = d;
    usleep(1000);
  }
  unlink(argv[3]);
  qsort(all, n, sizeof *all, cmp);
  qsort(same, ns, sizeof *same, cmp);
  qsort(fresh, nf, sizeof *fresh, cmp);
  printf("%-9s all p50 %.3f p99 %.3f p99.9 %.3f max %.3f ms | same block (%d) p50 %.3f p99 %.3f | new block (%d) p50 %.3f p99 %.3f\n",
         argv[1], pct(all, n, .5), pct(all, n, .99), pct(all, n, .999), all[n - 1], ns, pct(same, ns, .5),
         pct(same, ns, .99), nf, pct(fresh, nf, .5), pct(fresh, nf, .99));
  return 0;
}
