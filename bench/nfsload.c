/*
 * nfsload: an NFSv3 load generator on libnfs's raw async RPC API (libnfs 4.x).
 *
 * Many requests in flight per TCP connection (--qd, per connection), one or more connections
 * (--conns), one poll() loop over all of them. Each workload runs for --warmup seconds (not
 * counted), then --seconds measured, then drains what is still in flight (not counted, except the
 * final COMMIT of seqwrite, whose wait is part of the measured time). Prints one JSON line.
 *
 *   nfsload run --url 'nfs://127.0.0.1/bench?version=3&nfsport=P&mountport=P' --workload seqread
 *   nfsload prepare --root DIR [--file-size BYTES] [--dir-entries N]
 *   nfsload check-file --path FILE --seed S --length BYTES      (verify a file on disk)
 *
 * Workloads (one "op" is one RPC; latency is per RPC, from the call being queued to its reply):
 *   seqread       READ of --bs (1 MiB) sequentially through --file (wraps), pattern checked
 *   seqwrite      UNSTABLE WRITE of --bs sequentially into --wfile (created empty; wraps at
 *                 --wfile-size), a COMMIT of each --commit-mb range once all its writes are
 *                 acknowledged, and a final COMMIT; then (unless --no-verify) the written extent is
 *                 read back over NFS and checked. The pattern seed is in the JSON ("seed") so
 *                 `check-file` can check the file on disk too.
 *   randread      READ of 4 KiB at random 4 KiB-aligned offsets of --file, pattern checked
 *   getattr       GETATTR of --file (type and size checked)
 *   lookup        LOOKUP of a random f%05d name in --dir
 *   create-remove CREATE (GUARDED) of a unique name in --wdir, then REMOVE of it (2 ops)
 *   readdirplus   full READDIRPLUS listings of --dir, each listing's entry count checked
 *                 (--dir-entries); --qd listings run in parallel per connection. Servers return
 *                 different numbers of entries per reply, so compare entries_per_s (listings_per_s is
 *                 entries_per_s / --dir-entries: listings' worth of entries, finished or not)
 *
 * File pattern: the little-endian 64-bit word at byte offset o (a multiple of 8) is
 * (o ^ seed) * 0x9E3779B97F4A7C15. `prepare` writes --file with seed FILE_SEED.
 *
 * Build: cc -O2 -Wall -o nfsload nfsload.c -lnfs    (Debian: apt-get install libnfs-dev)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <nfsc/libnfs.h>
#include <nfsc/libnfs-raw.h>
#include <nfsc/libnfs-raw-mount.h>
#include <nfsc/libnfs-raw-nfs.h>

#define FILE_SEED 0x5EED0001ULL
#define MULT 0x9E3779B97F4A7C15ULL
#define MAX_CONNS 64

static inline uint64_t pattern_word(uint64_t off, uint64_t seed) { return (off ^ seed) * MULT; }

static void fill_pattern(char *buf, uint64_t off, size_t len, uint64_t seed) {
  uint64_t *w = (uint64_t *)buf;
  for (size_t i = 0; i < len / 8; i++) w[i] = pattern_word(off + i * 8, seed);
}

/* returns 0 if buf holds the pattern for [off, off+len) */
static int check_pattern(const char *buf, uint64_t off, size_t len, uint64_t seed) {
  uint64_t w;
  for (size_t i = 0; i < len / 8; i++) {
    memcpy(&w, buf + i * 8, 8);
    if (w != pattern_word(off + i * 8, seed)) return -1;
  }
  return 0;
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "nfsload: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  exit(2);
}

/* ---- latency histogram: exact below 64 us, then 32 sub-buckets per power of two (~3%) ------ */

#define HBUCKETS (64 + 58 * 32)
static uint64_t hist[HBUCKETS];
static uint64_t hist_n, hist_max, hist_sum;

static int hbucket(uint64_t v) {
  if (v < 64) return (int)v;
  int msb = 63 - __builtin_clzll(v);
  int shift = msb - 5;
  return 64 + (shift - 1) * 32 + (int)((v >> shift) - 32);
}
static uint64_t hvalue(int b) { /* middle of the bucket */
  if (b < 64) return (uint64_t)b;
  int shift = (b - 64) / 32 + 1;
  uint64_t lo = ((uint64_t)((b - 64) % 32) + 32) << shift;
  return lo + ((1ULL << shift) >> 1);
}
static void hrecord(uint64_t us) {
  int b = hbucket(us);
  if (b >= HBUCKETS) b = HBUCKETS - 1;
  hist[b]++;
  hist_n++;
  hist_sum += us;
  if (us > hist_max) hist_max = us;
}
static uint64_t hpercentile(double p) {
  if (!hist_n) return 0;
  uint64_t want = (uint64_t)(p * (double)hist_n + 0.999999), seen = 0;
  if (want < 1) want = 1;
  for (int b = 0; b < HBUCKETS; b++) {
    seen += hist[b];
    if (seen >= want) return hvalue(b) > hist_max ? hist_max : hvalue(b);
  }
  return hist_max;
}

/* ---- options ------------------------------------------------------------------------------ */

static struct {
  const char *url, *workload, *label;
  const char *file, *dir, *wdir, *wfile;
  double seconds, warmup;
  int qd, conns, verify, dir_entries;
  uint64_t bs, wfile_size, commit_bytes;
  uint32_t rdp_maxcount, rdp_dircount;
  int uid, gid; /* -1: libnfs default (getuid/getgid) */
} opt = {
    .workload = "seqread", .label = "", .file = "bigfile", .dir = "dir10k", .wdir = "empty",
    .wfile = "seqwrite.dat", .seconds = 10, .warmup = 2, .qd = 32, .conns = 1, .verify = 1,
    .dir_entries = 10000, .bs = 1 << 20, .wfile_size = 1ULL << 30, .commit_bytes = 256ULL << 20,
    .rdp_maxcount = 65536, .rdp_dircount = 65536, .uid = -1, .gid = -1,
};

enum wl { W_SEQREAD, W_SEQWRITE, W_RANDREAD, W_GETATTR, W_LOOKUP, W_CREATE_REMOVE, W_READDIRPLUS };
static const char *wl_names[] = {"seqread", "seqwrite", "randread", "getattr", "lookup", "create-remove", "readdirplus"};
static enum wl wl;

/* ---- connections and setup ---------------------------------------------------------------- */

struct fh { u_int len; char data[NFS3_FHSIZE]; };

static char host[256], export_path[1024];
static int nfsport = 2049, mountport = 0;
static struct rpc_context *conn[MAX_CONNS];
static int nconn;

static void fh_set(struct fh *dst, u_int len, const char *val) {
  if (len > NFS3_FHSIZE) die("file handle of %u bytes", len);
  dst->len = len;
  memcpy(dst->data, val, len);
}
static nfs_fh3 fh3(struct fh *f) {
  nfs_fh3 r;
  r.data.data_len = f->len;
  r.data.data_val = f->data;
  return r;
}

/* synchronous helpers used only during setup */
struct sync_cb { int done, status; char err[256]; union { struct fh fh; fattr3 attr; uint32_t nfsstat; } u; int ok; };

static void wait_done(struct rpc_context *rpc, struct sync_cb *s) {
  while (!s->done) {
    struct pollfd p = {.fd = rpc_get_fd(rpc), .events = rpc_which_events(rpc)};
    if (poll(&p, 1, 1000) < 0 && errno != EINTR) die("poll: %s", strerror(errno));
    if (rpc_service(rpc, p.revents) < 0 && !s->done) die("connection failed: %s", rpc_get_error(rpc));
  }
}

/* Every synchronous-style callback starts the same way: mark done, keep the RPC status and, on an
 * RPC failure, the message libnfs passes as data. Returns whether the reply can be read. */
static int sync_begin(struct sync_cb *s, int status, void *data) {
  s->done = 1;
  s->status = status;
  if (status == RPC_STATUS_SUCCESS) return 1;
  snprintf(s->err, sizeof s->err, "%s", data ? (char *)data : "cancelled");
  return 0;
}

static void connect_cb(struct rpc_context *rpc, int status, void *data, void *priv) {
  struct sync_cb *s = priv;
  (void)rpc;
  s->done = 1;
  s->status = status;
  if (status != RPC_STATUS_SUCCESS && data) snprintf(s->err, sizeof s->err, "%s", (char *)data);
}

static struct rpc_context *connect_to(int port, int prog, int vers) {
  struct rpc_context *rpc = rpc_init_context();
  struct sync_cb s = {0};
  if (!rpc) die("rpc_init_context failed");
  if (opt.uid >= 0) rpc_set_uid(rpc, opt.uid);
  if (opt.gid >= 0) rpc_set_gid(rpc, opt.gid);
  if (rpc_connect_port_async(rpc, host, port, prog, vers, connect_cb, &s) != 0)
    die("cannot connect to %s:%d: %s", host, port, rpc_get_error(rpc));
  wait_done(rpc, &s);
  if (s.status != RPC_STATUS_SUCCESS) die("cannot connect to %s:%d: %s", host, port, s.err);
  return rpc;
}

static void mnt_cb(struct rpc_context *rpc, int status, void *data, void *priv) {
  struct sync_cb *s = priv;
  (void)rpc;
  if (!sync_begin(s, status, data)) return;
  mountres3 *r = data;
  s->u.nfsstat = r->fhs_status;
  if (r->fhs_status == MNT3_OK) {
    fh_set(&s->u.fh, r->mountres3_u.mountinfo.fhandle.fhandle3_len, r->mountres3_u.mountinfo.fhandle.fhandle3_val);
    s->ok = 1;
  }
}

static void lookup_sync_cb(struct rpc_context *rpc, int status, void *data, void *priv) {
  struct sync_cb *s = priv;
  (void)rpc;
  if (!sync_begin(s, status, data)) return;
  LOOKUP3res *r = data;
  s->u.nfsstat = r->status;
  if (r->status == NFS3_OK) {
    fh_set(&s->u.fh, r->LOOKUP3res_u.resok.object.data.data_len, r->LOOKUP3res_u.resok.object.data.data_val);
    s->ok = 1;
  }
}

static void getattr_sync_cb(struct rpc_context *rpc, int status, void *data, void *priv) {
  struct sync_cb *s = priv;
  (void)rpc;
  if (!sync_begin(s, status, data)) return;
  GETATTR3res *r = data;
  s->u.nfsstat = r->status;
  if (r->status == NFS3_OK) {
    s->u.attr = r->GETATTR3res_u.resok.obj_attributes;
    s->ok = 1;
  }
}

static void create_sync_cb(struct rpc_context *rpc, int status, void *data, void *priv) {
  struct sync_cb *s = priv;
  (void)rpc;
  if (!sync_begin(s, status, data)) return;
  CREATE3res *r = data;
  s->u.nfsstat = r->status;
  if (r->status == NFS3_OK && r->CREATE3res_u.resok.obj.handle_follows) {
    fh_set(&s->u.fh, r->CREATE3res_u.resok.obj.post_op_fh3_u.handle.data.data_len,
           r->CREATE3res_u.resok.obj.post_op_fh3_u.handle.data.data_val);
    s->ok = 1;
  } else if (r->status == NFS3_OK) {
    s->ok = 2; /* created, no handle: look it up */
  }
}

static struct fh root_fh;

/* resolves a path of names below the export root */
static struct fh lookup_path(struct rpc_context *rpc, const char *path) {
  struct fh cur = root_fh;
  char buf[1024], *save = NULL;
  snprintf(buf, sizeof buf, "%s", path);
  for (char *name = strtok_r(buf, "/", &save); name; name = strtok_r(NULL, "/", &save)) {
    struct sync_cb s = {0};
    LOOKUP3args a = {.what = {.dir = fh3(&cur), .name = name}};
    if (rpc_nfs3_lookup_async(rpc, lookup_sync_cb, &a, &s) != 0) die("LOOKUP %s: %s", name, rpc_get_error(rpc));
    wait_done(rpc, &s);
    if (s.status != RPC_STATUS_SUCCESS) die("LOOKUP %s: %s", name, s.err);
    if (!s.ok) die("LOOKUP %s in the export: NFS3 status %u (prepare the export first)", path, s.u.nfsstat);
    cur = s.u.fh;
  }
  return cur;
}

static fattr3 getattr_sync(struct rpc_context *rpc, struct fh *f, const char *what) {
  struct sync_cb s = {0};
  GETATTR3args a = {.object = fh3(f)};
  if (rpc_nfs3_getattr_async(rpc, getattr_sync_cb, &a, &s) != 0) die("GETATTR %s: %s", what, rpc_get_error(rpc));
  wait_done(rpc, &s);
  if (s.status != RPC_STATUS_SUCCESS) die("GETATTR %s: %s", what, s.err);
  if (!s.ok) die("GETATTR %s: NFS3 status %u", what, s.u.nfsstat);
  return s.u.attr;
}

static void parse_url(const char *url) {
  const char *p = url;
  if (strncmp(p, "nfs://", 6) != 0) die("the URL must start with nfs://: %s", url);
  p += 6;
  const char *slash = strchr(p, '/');
  const char *q = strchr(p, '?');
  if (!slash || (q && q < slash)) die("the URL has no export path: %s", url);
  size_t hl = (size_t)(slash - p);
  if (hl == 0 || hl >= sizeof host) die("bad host in %s", url);
  memcpy(host, p, hl);
  host[hl] = 0;
  size_t pl = q ? (size_t)(q - slash) : strlen(slash);
  if (pl >= sizeof export_path) die("export path too long");
  memcpy(export_path, slash, pl);
  export_path[pl] = 0;
  while (pl > 1 && export_path[pl - 1] == '/') export_path[--pl] = 0;
  if (q) {
    char buf[1024], *save = NULL;
    snprintf(buf, sizeof buf, "%s", q + 1);
    for (char *kv = strtok_r(buf, "&", &save); kv; kv = strtok_r(NULL, "&", &save)) {
      char *eq = strchr(kv, '=');
      if (!eq) continue;
      *eq = 0;
      const char *v = eq + 1;
      if (!strcmp(kv, "nfsport")) nfsport = atoi(v);
      else if (!strcmp(kv, "mountport")) mountport = atoi(v);
      else if (!strcmp(kv, "version")) { if (atoi(v) != 3) die("only version=3 is supported"); }
      else if (!strcmp(kv, "uid")) opt.uid = atoi(v);
      else if (!strcmp(kv, "gid")) opt.gid = atoi(v);
    }
  }
  if (!mountport) mountport = nfsport;
}

/* ---- the load ------------------------------------------------------------------------------ */

enum phase { P_WARMUP, P_MEASURE, P_DRAIN };
static enum phase phase = P_WARMUP;
static uint64_t t_measure_start, t_measure_end, t_done;

static uint64_t n_ops, n_bytes, n_errors, n_listings, n_entries, n_inflight;
static char first_error[256];

static struct fh file_fh, dir_fh, wdir_fh, wfile_fh;
static uint64_t file_size; /* of --file, rounded down to a multiple of 4 KiB */
static uint64_t next_off;  /* seqread / seqwrite */
static uint64_t write_seed, written_extent;
static uint64_t *range_acked; /* seqwrite: bytes acknowledged per commit range */
static uint64_t nranges;
static int final_commit_sent, final_commit_done;
static uint64_t name_seq, run_nonce;

struct slot {
  int id;
  struct rpc_context *rpc;
  uint64_t t0, off, rng;
  int busy;
  char *wbuf;
  /* create-remove */
  int removing;
  char name[96];
  /* readdirplus */
  uint64_t cookie;
  char verf[NFS3_COOKIEVERFSIZE];
  int entries;
};
static struct slot *slots;
static int nslots;

static void error_note(const char *fmt, ...) {
  n_errors++;
  if (first_error[0]) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(first_error, sizeof first_error, fmt, ap);
  va_end(ap);
}

static uint64_t xorshift(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

/* a completed RPC: counts it when it completed inside the measured window */
static void done_rpc(struct slot *sl, uint64_t bytes) {
  uint64_t t = now_ns();
  n_inflight--;
  sl->busy = 0;
  if (phase == P_MEASURE || (wl == W_SEQWRITE && phase == P_DRAIN && t_measure_start)) {
    n_ops++;
    n_bytes += bytes;
    hrecord((t - sl->t0 + 500) / 1000);
  }
}

static int rpc_failed(struct slot *sl, int status, void *data, const char *what) {
  if (status == RPC_STATUS_SUCCESS) return 0;
  error_note("%s: rpc %s", what, status == RPC_STATUS_ERROR && data ? (char *)data : "cancelled/timeout");
  n_inflight--;
  sl->busy = 0;
  return 1;
}

static void issue(struct slot *sl);

static void read_cb(struct rpc_context *rpc, int status, void *data, void *priv) {
  struct slot *sl = priv;
  (void)rpc;
  if (rpc_failed(sl, status, data, "READ")) return;
  READ3res *r = data;
  uint64_t want = wl == W_RANDREAD ? 4096 : opt.bs;
  if (sl->off + want > file_size) want = file_size - sl->off;
  if (r->status != NFS3_OK) error_note("READ at %" PRIu64 ": NFS3 status %d", sl->off, r->status);
  else if (r->READ3res_u.resok.data.data_len != want || r->READ3res_u.resok.count != want)
    error_note("READ at %" PRIu64 ": %u bytes, expected %" PRIu64, sl->off, r->READ3res_u.resok.data.data_len, want);
  else if (opt.verify && check_pattern(r->READ3res_u.resok.data.data_val, sl->off, want, FILE_SEED))
    error_note("READ at %" PRIu64 ": data does not match the pattern", sl->off);
  done_rpc(sl, r->status == NFS3_OK ? r->READ3res_u.resok.data.data_len : 0);
  issue(sl);
}

static void commit_cb(struct rpc_context *rpc, int status, void *data, void *priv) {
  struct slot *sl = priv;
  (void)rpc;
  int final = sl->off == UINT64_MAX;
  if (final) final_commit_done = 1;
  if (rpc_failed(sl, status, data, "COMMIT")) return;
  COMMIT3res *r = data;
  if (r->status != NFS3_OK) error_note("COMMIT: NFS3 status %d", r->status);
  done_rpc(sl, 0);
  if (final) t_done = now_ns();
  issue(sl);
}

static void send_commit(struct slot *sl, uint64_t off, uint32_t count) {
  COMMIT3args a = {.file = fh3(&wfile_fh), .offset = off, .count = count};
  sl->off = count == 0 ? UINT64_MAX : off;
  sl->t0 = now_ns();
  sl->busy = 1;
  n_inflight++;
  if (rpc_nfs3_commit_async(sl->rpc, commit_cb, &a, sl) != 0) {
    n_inflight--;
    sl->busy = 0;
    if (count == 0) final_commit_done = 1;
    error_note("COMMIT: cannot queue: %s", rpc_get_error(sl->rpc));
  }
}

static void write_cb(struct rpc_context *rpc, int status, void *data, void *priv) {
  struct slot *sl = priv;
  (void)rpc;
  if (rpc_failed(sl, status, data, "WRITE")) return;
  WRITE3res *r = data;
  if (r->status != NFS3_OK) error_note("WRITE at %" PRIu64 ": NFS3 status %d", sl->off, r->status);
  else if (r->WRITE3res_u.resok.count != opt.bs)
    error_note("WRITE at %" PRIu64 ": short write of %u", sl->off, r->WRITE3res_u.resok.count);
  done_rpc(sl, r->status == NFS3_OK ? r->WRITE3res_u.resok.count : 0);
  if (sl->off + opt.bs > written_extent) written_extent = sl->off + opt.bs;
  /* the last acknowledged write of a commit range commits it (unless the run is draining) */
  uint64_t range = sl->off / opt.commit_bytes;
  range_acked[range] += opt.bs;
  if (range_acked[range] >= opt.commit_bytes) {
    range_acked[range] = 0;
    if (phase != P_DRAIN) {
      send_commit(sl, range * opt.commit_bytes, (uint32_t)opt.commit_bytes);
      return;
    }
  }
  issue(sl);
}

static void getattr_cb(struct rpc_context *rpc, int status, void *data, void *priv) {
  struct slot *sl = priv;
  (void)rpc;
  if (rpc_failed(sl, status, data, "GETATTR")) return;
  GETATTR3res *r = data;
  if (r->status != NFS3_OK) error_note("GETATTR: NFS3 status %d", r->status);
  else if (r->GETATTR3res_u.resok.obj_attributes.type != NF3REG)
    error_note("GETATTR: type %d", r->GETATTR3res_u.resok.obj_attributes.type);
  done_rpc(sl, 0);
  issue(sl);
}

static void lookup_cb(struct rpc_context *rpc, int status, void *data, void *priv) {
  struct slot *sl = priv;
  (void)rpc;
  if (rpc_failed(sl, status, data, "LOOKUP")) return;
  LOOKUP3res *r = data;
  if (r->status != NFS3_OK) error_note("LOOKUP %s: NFS3 status %d", sl->name, r->status);
  done_rpc(sl, 0);
  issue(sl);
}

static void create_cb(struct rpc_context *rpc, int status, void *data, void *priv) {
  struct slot *sl = priv;
  (void)rpc;
  if (rpc_failed(sl, status, data, "CREATE")) return;
  CREATE3res *r = data;
  if (r->status != NFS3_OK) {
    error_note("CREATE %s: NFS3 status %d", sl->name, r->status);
    sl->removing = 0;
  } else {
    sl->removing = 1; /* the REMOVE is sent even while draining: no file is left behind */
  }
  done_rpc(sl, 0);
  issue(sl);
}

static void remove_cb(struct rpc_context *rpc, int status, void *data, void *priv) {
  struct slot *sl = priv;
  (void)rpc;
  sl->removing = 0;
  if (rpc_failed(sl, status, data, "REMOVE")) return;
  REMOVE3res *r = data;
  if (r->status != NFS3_OK) error_note("REMOVE %s: NFS3 status %d", sl->name, r->status);
  done_rpc(sl, 0);
  issue(sl);
}

static void readdirplus_cb(struct rpc_context *rpc, int status, void *data, void *priv) {
  struct slot *sl = priv;
  (void)rpc;
  if (rpc_failed(sl, status, data, "READDIRPLUS")) return;
  READDIRPLUS3res *r = data;
  int eof = 1;
  if (r->status != NFS3_OK) {
    error_note("READDIRPLUS: NFS3 status %d", r->status);
  } else {
    READDIRPLUS3resok *ok = &r->READDIRPLUS3res_u.resok;
    int n = 0;
    for (entryplus3 *e = ok->reply.entries; e; e = e->nextentry) {
      if (strcmp(e->name, ".") && strcmp(e->name, "..")) {
        sl->entries++;
        if (phase == P_MEASURE) n_entries++;
      }
      if (!e->name_handle.handle_follows || !e->name_attributes.attributes_follow) {
        if (strcmp(e->name, ".") && strcmp(e->name, ".."))
          error_note("READDIRPLUS: entry %s without handle or attributes", e->name);
      }
      sl->cookie = e->cookie;
      n++;
    }
    memcpy(sl->verf, ok->cookieverf, NFS3_COOKIEVERFSIZE);
    eof = ok->reply.eof;
    if (!eof && n == 0) {
      error_note("READDIRPLUS: no entries and no eof");
      eof = 1;
    }
    if (eof) {
      if (sl->entries != opt.dir_entries)
        error_note("READDIRPLUS: listing had %d entries, expected %d", sl->entries, opt.dir_entries);
      else if (phase == P_MEASURE)
        n_listings++;
    }
  }
  done_rpc(sl, 0);
  if (eof) {
    sl->cookie = 0;
    sl->entries = 0;
    memset(sl->verf, 0, sizeof sl->verf);
  }
  issue(sl);
}

/* queues the slot's next RPC, unless the run is draining */
static void issue(struct slot *sl) {
  int ret = 0;
  const char *what = wl_names[wl];
  if (phase == P_DRAIN) {
    if (wl == W_CREATE_REMOVE && sl->removing) goto remove; /* clean up */
    return;
  }
  sl->t0 = now_ns();
  switch (wl) {
  case W_SEQREAD: {
    sl->off = next_off;
    next_off += opt.bs;
    if (next_off >= file_size) next_off = 0;
    uint64_t count = opt.bs;
    if (sl->off + count > file_size) count = file_size - sl->off;
    READ3args a = {.file = fh3(&file_fh), .offset = sl->off, .count = (count3)count};
    ret = rpc_nfs3_read_async(sl->rpc, read_cb, &a, sl);
    break;
  }
  case W_RANDREAD: {
    sl->off = (xorshift(&sl->rng) % (file_size / 4096)) * 4096;
    READ3args a = {.file = fh3(&file_fh), .offset = sl->off, .count = 4096};
    ret = rpc_nfs3_read_async(sl->rpc, read_cb, &a, sl);
    break;
  }
  case W_SEQWRITE: {
    sl->off = next_off;
    next_off += opt.bs;
    if (next_off + opt.bs > opt.wfile_size) next_off = 0;
    fill_pattern(sl->wbuf, sl->off, opt.bs, write_seed);
    WRITE3args a = {.file = fh3(&wfile_fh), .offset = sl->off, .count = (count3)opt.bs, .stable = UNSTABLE};
    a.data.data_len = (u_int)opt.bs;
    a.data.data_val = sl->wbuf;
    ret = rpc_nfs3_write_async(sl->rpc, write_cb, &a, sl);
    break;
  }
  case W_GETATTR: {
    GETATTR3args a = {.object = fh3(&file_fh)};
    ret = rpc_nfs3_getattr_async(sl->rpc, getattr_cb, &a, sl);
    break;
  }
  case W_LOOKUP: {
    snprintf(sl->name, sizeof sl->name, "f%05d", (int)(xorshift(&sl->rng) % (uint64_t)opt.dir_entries));
    LOOKUP3args a = {.what = {.dir = fh3(&dir_fh), .name = sl->name}};
    ret = rpc_nfs3_lookup_async(sl->rpc, lookup_cb, &a, sl);
    break;
  }
  case W_CREATE_REMOVE: {
    if (sl->removing) goto remove;
    snprintf(sl->name, sizeof sl->name, "cr-%" PRIx64 "-%d-%" PRIu64, run_nonce, sl->id, name_seq++);
    CREATE3args a;
    memset(&a, 0, sizeof a);
    a.where.dir = fh3(&wdir_fh);
    a.where.name = sl->name;
    a.how.mode = GUARDED;
    a.how.createhow3_u.g_obj_attributes.mode.set_it = 1;
    a.how.createhow3_u.g_obj_attributes.mode.set_mode3_u.mode = 0644;
    ret = rpc_nfs3_create_async(sl->rpc, create_cb, &a, sl);
    what = "CREATE";
    break;
  }
  case W_READDIRPLUS: {
    READDIRPLUS3args a;
    memset(&a, 0, sizeof a);
    a.dir = fh3(&dir_fh);
    a.cookie = sl->cookie;
    memcpy(a.cookieverf, sl->verf, NFS3_COOKIEVERFSIZE);
    a.dircount = opt.rdp_dircount;
    a.maxcount = opt.rdp_maxcount;
    ret = rpc_nfs3_readdirplus_async(sl->rpc, readdirplus_cb, &a, sl);
    break;
  }
  }
  goto queued;
remove : {
  sl->t0 = now_ns();
  REMOVE3args a = {.object = {.dir = fh3(&wdir_fh), .name = sl->name}};
  ret = rpc_nfs3_remove_async(sl->rpc, remove_cb, &a, sl);
  what = "REMOVE";
}
queued:
  if (ret != 0) {
    error_note("%s: cannot queue: %s", what, rpc_get_error(sl->rpc));
    return;
  }
  sl->busy = 1;
  n_inflight++;
}

static int all_conns_poll(int timeout_ms) {
  struct pollfd pfd[MAX_CONNS];
  for (int i = 0; i < nconn; i++) {
    pfd[i].fd = rpc_get_fd(conn[i]);
    pfd[i].events = (short)rpc_which_events(conn[i]);
    pfd[i].revents = 0;
  }
  int n = poll(pfd, (nfds_t)nconn, timeout_ms);
  if (n < 0) {
    if (errno == EINTR) return 0;
    die("poll: %s", strerror(errno));
  }
  for (int i = 0; i < nconn && n > 0; i++) {
    if (!pfd[i].revents) continue;
    if (rpc_service(conn[i], pfd[i].revents) < 0) {
      error_note("connection %d: %s", i, rpc_get_error(conn[i]));
      return -1;
    }
  }
  return 0;
}

/* reads [0, extent) of the written file back over NFS and checks it; returns mismatching blocks */
static uint64_t rb_next, rb_extent, rb_bad, rb_inflight;
static void readback_cb(struct rpc_context *rpc, int status, void *data, void *priv) {
  struct slot *sl = priv;
  (void)rpc;
  rb_inflight--;
  READ3res *r = data;
  if (status != RPC_STATUS_SUCCESS || r->status != NFS3_OK || r->READ3res_u.resok.data.data_len != opt.bs ||
      check_pattern(r->READ3res_u.resok.data.data_val, sl->off, opt.bs, write_seed)) {
    if (!rb_bad) error_note("read-back of the written file: block at %" PRIu64 " does not match", sl->off);
    else n_errors++;
    rb_bad++;
  }
  if (status != RPC_STATUS_SUCCESS) return;
  if (rb_next < rb_extent) {
    sl->off = rb_next;
    rb_next += opt.bs;
    READ3args a = {.file = fh3(&wfile_fh), .offset = sl->off, .count = (count3)opt.bs};
    if (rpc_nfs3_read_async(sl->rpc, readback_cb, &a, sl) == 0) rb_inflight++;
  }
}

static void readback(void) {
  rb_next = 0;
  rb_extent = written_extent;
  for (int i = 0; i < nslots && rb_next < rb_extent; i++) {
    struct slot *sl = &slots[i];
    sl->off = rb_next;
    rb_next += opt.bs;
    READ3args a = {.file = fh3(&wfile_fh), .offset = sl->off, .count = (count3)opt.bs};
    if (rpc_nfs3_read_async(sl->rpc, readback_cb, &a, sl) == 0) rb_inflight++;
  }
  while (rb_inflight > 0)
    if (all_conns_poll(1000) < 0) break;
}

static void json_str(const char *s) {
  putchar('"');
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') printf("\\%c", *s);
    else if ((unsigned char)*s < 0x20) printf("\\u%04x", *s);
    else putchar(*s);
  }
  putchar('"');
}

static int cmd_run(void) {
  if (!opt.url) die("--url is required");
  int found = 0;
  for (int i = 0; i < (int)(sizeof wl_names / sizeof *wl_names); i++)
    if (!strcmp(opt.workload, wl_names[i])) { wl = (enum wl)i; found = 1; }
  if (!found) die("unknown workload %s", opt.workload);
  if (opt.conns < 1 || opt.conns > MAX_CONNS) die("--conns must be 1..%d", MAX_CONNS);
  if (opt.qd < 1) die("--qd must be >= 1");
  if (opt.bs < 4096 || opt.bs % 4096) die("--bs must be a multiple of 4096");
  if (opt.commit_bytes < opt.bs || opt.commit_bytes % opt.bs) die("--commit-mb must be a multiple of --bs");
  if (opt.wfile_size < opt.commit_bytes) opt.wfile_size = opt.commit_bytes;
  parse_url(opt.url);

  /* MOUNT (on its own connection, then closed) */
  struct rpc_context *m = connect_to(mountport, MOUNT_PROGRAM, MOUNT_V3);
  struct sync_cb s = {0};
  if (rpc_mount3_mnt_async(m, mnt_cb, export_path, &s) != 0) die("MNT: %s", rpc_get_error(m));
  wait_done(m, &s);
  if (s.status != RPC_STATUS_SUCCESS) die("MNT %s: %s", export_path, s.err);
  if (!s.ok) die("MNT %s: mount status %u", export_path, s.u.nfsstat);
  root_fh = s.u.fh;
  rpc_destroy_context(m);

  nconn = opt.conns;
  for (int i = 0; i < nconn; i++) {
    conn[i] = connect_to(nfsport, NFS_PROGRAM, NFS_V3);
    rpc_set_next_xid(conn[i], (uint32_t)(i + 1) << 24);
  }
  struct rpc_context *c0 = conn[0];
  run_nonce = ((uint64_t)getpid() << 32) ^ (uint64_t)time(NULL) ^ now_ns();
  write_seed = run_nonce * MULT | 1;

  switch (wl) {
  case W_SEQREAD:
  case W_RANDREAD:
  case W_GETATTR: {
    file_fh = lookup_path(c0, opt.file);
    fattr3 a = getattr_sync(c0, &file_fh, opt.file);
    file_size = a.size / 4096 * 4096;
    if (file_size < opt.bs) die("%s is %" PRIu64 " bytes: too small", opt.file, (uint64_t)a.size);
    break;
  }
  case W_LOOKUP:
  case W_READDIRPLUS:
    dir_fh = lookup_path(c0, opt.dir);
    break;
  case W_CREATE_REMOVE:
    wdir_fh = lookup_path(c0, opt.wdir);
    break;
  case W_SEQWRITE: {
    /* CREATE UNCHECKED with size 0: a new, empty file each run */
    char dirpart[1024], *base;
    snprintf(dirpart, sizeof dirpart, "%s", opt.wfile);
    struct fh d = root_fh;
    base = strrchr(dirpart, '/');
    if (base) {
      *base++ = 0;
      d = lookup_path(c0, dirpart);
    } else {
      base = dirpart;
    }
    CREATE3args a;
    memset(&a, 0, sizeof a);
    a.where.dir = fh3(&d);
    a.where.name = base;
    a.how.mode = UNCHECKED;
    a.how.createhow3_u.obj_attributes.mode.set_it = 1;
    a.how.createhow3_u.obj_attributes.mode.set_mode3_u.mode = 0644;
    a.how.createhow3_u.obj_attributes.size.set_it = 1;
    a.how.createhow3_u.obj_attributes.size.set_size3_u.size = 0;
    struct sync_cb cs = {0};
    if (rpc_nfs3_create_async(c0, create_sync_cb, &a, &cs) != 0) die("CREATE %s: %s", opt.wfile, rpc_get_error(c0));
    wait_done(c0, &cs);
    if (cs.status != RPC_STATUS_SUCCESS) die("CREATE %s: %s", opt.wfile, cs.err);
    if (!cs.ok) die("CREATE %s: NFS3 status %u", opt.wfile, cs.u.nfsstat);
    wfile_fh = cs.ok == 1 ? cs.u.fh : lookup_path(c0, opt.wfile);
    nranges = opt.wfile_size / opt.commit_bytes + 1;
    range_acked = calloc(nranges, sizeof *range_acked);
    break;
  }
  }

  nslots = nconn * opt.qd;
  slots = calloc((size_t)nslots, sizeof *slots);
  for (int i = 0; i < nslots; i++) {
    slots[i].id = i;
    slots[i].rpc = conn[i % nconn];
    slots[i].rng = (run_nonce + (uint64_t)i * 0x9E3779B97F4A7C15ULL) | 1;
    if (wl == W_SEQWRITE && !(slots[i].wbuf = aligned_alloc(4096, opt.bs))) die("out of memory");
  }

  struct rusage ru0, ru1;
  uint64_t t_start = now_ns();
  uint64_t t_warm_end = t_start + (uint64_t)(opt.warmup * 1e9);
  for (int i = 0; i < nslots; i++) issue(&slots[i]);
  if (opt.warmup <= 0) {
    phase = P_MEASURE;
    t_measure_start = t_start;
    t_measure_end = t_start + (uint64_t)(opt.seconds * 1e9);
    getrusage(RUSAGE_SELF, &ru0);
  }

  int broken = 0;
  for (;;) {
    uint64_t t = now_ns();
    if (phase == P_WARMUP && t >= t_warm_end) {
      phase = P_MEASURE;
      t_measure_start = t;
      t_measure_end = t + (uint64_t)(opt.seconds * 1e9);
      n_listings = 0;
      n_entries = 0;
      getrusage(RUSAGE_SELF, &ru0);
      /* errors seen in the warm-up still count */
    }
    if (phase == P_MEASURE && t >= t_measure_end) {
      phase = P_DRAIN;
      t_done = t;
    }
    if (phase == P_DRAIN) {
      if (wl == W_SEQWRITE && !final_commit_sent && n_inflight == 0) {
        final_commit_sent = 1;
        send_commit(&slots[0], 0, 0);
      }
      if (n_inflight == 0 && (wl != W_SEQWRITE || final_commit_done)) break;
    }
    if (n_inflight == 0 && phase != P_DRAIN) {
      error_note("nothing in flight: every request failed to queue");
      broken = 1;
      break;
    }
    if (all_conns_poll(50) < 0) {
      broken = 1;
      break;
    }
  }
  getrusage(RUSAGE_SELF, &ru1);
  double secs = (double)(t_done - t_measure_start) / 1e9;
  double cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
               (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
  if (wl == W_SEQWRITE && opt.verify && !broken) readback();

  printf("{\"workload\":\"%s\",\"label\":", wl_names[wl]);
  json_str(opt.label);
  printf(",\"conns\":%d,\"qd\":%d,\"ops\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"seconds\":%.3f,\"ops_per_s\":%.1f,"
         "\"MiB_per_s\":%.1f,\"p50_us\":%" PRIu64 ",\"p90_us\":%" PRIu64 ",\"p99_us\":%" PRIu64 ",\"p999_us\":%" PRIu64 ",\"mean_us\":%.1f,\"max_us\":%" PRIu64
         ",\"errors\":%" PRIu64 ",\"client_cpu\":%.3f",
         nconn, opt.qd, n_ops, n_bytes, secs, secs > 0 ? n_ops / secs : 0, secs > 0 ? n_bytes / secs / 1048576.0 : 0,
         hpercentile(0.50), hpercentile(0.90), hpercentile(0.99), hpercentile(0.999), hist_n ? (double)hist_sum / hist_n : 0, hist_max, n_errors,
         secs > 0 ? cpu / secs : 0);
  if (wl == W_READDIRPLUS)
    printf(",\"listings\":%" PRIu64 ",\"entries\":%" PRIu64 ",\"entries_per_s\":%.1f,\"listings_per_s\":%.2f", n_listings,
           n_entries, secs > 0 ? n_entries / secs : 0, secs > 0 ? n_entries / secs / opt.dir_entries : 0);
  if (wl == W_SEQWRITE)
    printf(",\"seed\":\"%" PRIu64 "\",\"written_extent\":%" PRIu64 ",\"verified\":%s", write_seed, written_extent,
           opt.verify && !broken ? (rb_bad ? "false" : "true") : "null");
  if (wl == W_SEQREAD || wl == W_RANDREAD) printf(",\"verified\":%s", opt.verify ? (n_errors ? "false" : "true") : "null");
  if (first_error[0]) {
    printf(",\"first_error\":");
    json_str(first_error);
  }
  printf("}\n");
  fflush(stdout);
  for (int i = 0; i < nconn; i++) rpc_destroy_context(conn[i]);
  return n_errors || broken ? 1 : 0;
}

/* ---- local helpers for the driver script ---------------------------------------------------- */

static const char *prep_root, *check_path;
static uint64_t prep_file_size = 1ULL << 30, check_seed, check_length;

static void write_all(int fd, const char *buf, size_t len, const char *path) {
  while (len) {
    ssize_t n = write(fd, buf, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("write %s: %s", path, strerror(errno));
    }
    buf += n;
    len -= (size_t)n;
  }
}

/* creates ROOT/bigfile (pattern, FILE_SEED), ROOT/dir10k/f00000.. (empty), ROOT/empty/ */
static int cmd_prepare(void) {
  char path[4096];
  if (!prep_root) die("--root is required");
  if (prep_file_size % 4096) die("--file-size must be a multiple of 4096");
  snprintf(path, sizeof path, "%s/%s", prep_root, opt.file);
  struct stat st;
  int have = stat(path, &st) == 0 && (uint64_t)st.st_size == prep_file_size;
  if (have) { /* spot-check the existing file */
    int fd = open(path, O_RDONLY);
    char b[4096];
    have = fd >= 0 && pread(fd, b, sizeof b, (off_t)(prep_file_size - 4096)) == 4096 &&
           !check_pattern(b, prep_file_size - 4096, 4096, FILE_SEED);
    if (fd >= 0) close(fd);
  }
  if (!have) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) die("open %s: %s", path, strerror(errno));
    size_t chunk = 4 << 20;
    char *buf = aligned_alloc(4096, chunk);
    for (uint64_t off = 0; off < prep_file_size; off += chunk) {
      size_t n = prep_file_size - off < chunk ? (size_t)(prep_file_size - off) : chunk;
      fill_pattern(buf, off, n, FILE_SEED);
      write_all(fd, buf, n, path);
    }
    if (fsync(fd) != 0) die("fsync %s: %s", path, strerror(errno));
    close(fd);
    free(buf);
  }
  snprintf(path, sizeof path, "%s/%s", prep_root, opt.dir);
  if (mkdir(path, 0755) != 0 && errno != EEXIST) die("mkdir %s: %s", path, strerror(errno));
  for (int i = 0; i < opt.dir_entries; i++) {
    snprintf(path, sizeof path, "%s/%s/f%05d", prep_root, opt.dir, i);
    int fd = open(path, O_WRONLY | O_CREAT, 0644);
    if (fd < 0) die("create %s: %s", path, strerror(errno));
    close(fd);
  }
  snprintf(path, sizeof path, "%s/%s", prep_root, opt.wdir);
  if (mkdir(path, 0777) != 0 && errno != EEXIST) die("mkdir %s: %s", path, strerror(errno));
  printf("{\"prepared\":\"%s\",\"file_size\":%" PRIu64 ",\"dir_entries\":%d,\"reused_file\":%s}\n", prep_root,
         prep_file_size, opt.dir_entries, have ? "true" : "false");
  return 0;
}

static int cmd_check_file(void) {
  if (!check_path) die("--path is required");
  int fd = open(check_path, O_RDONLY);
  if (fd < 0) die("open %s: %s", check_path, strerror(errno));
  size_t chunk = 4 << 20;
  char *buf = aligned_alloc(4096, chunk);
  uint64_t bad = 0, first_bad = UINT64_MAX;
  for (uint64_t off = 0; off < check_length; off += chunk) {
    size_t n = check_length - off < chunk ? (size_t)(check_length - off) : chunk;
    ssize_t got = pread(fd, buf, n, (off_t)off);
    if (got != (ssize_t)n) die("read %s at %" PRIu64 ": short", check_path, off);
    for (size_t b = 0; b < n; b += 4096) {
      size_t len = n - b < 4096 ? n - b : 4096;
      if (check_pattern(buf + b, off + b, len & ~(size_t)7, check_seed)) {
        if (first_bad == UINT64_MAX) first_bad = off + b;
        bad++;
      }
    }
  }
  close(fd);
  printf("{\"checked\":\"%s\",\"length\":%" PRIu64 ",\"bad_blocks\":%" PRIu64, check_path, check_length, bad);
  if (bad) printf(",\"first_bad\":%" PRIu64, first_bad);
  printf("}\n");
  return bad ? 1 : 0;
}

static uint64_t parse_size(const char *s) {
  char *end;
  double v = strtod(s, &end);
  switch (*end) {
  case 'k': case 'K': v *= 1024; break;
  case 'm': case 'M': v *= 1048576; break;
  case 'g': case 'G': v *= 1073741824; break;
  case 0: break;
  default: die("bad size %s", s);
  }
  return (uint64_t)v;
}

static void usage(void) {
  fprintf(stderr,
          "usage: nfsload run --url nfs://HOST/EXPORT?version=3&nfsport=P&mountport=P --workload W [options]\n"
          "         W: seqread seqwrite randread getattr lookup create-remove readdirplus\n"
          "         --seconds 10 --warmup 2 --qd 32 (per connection) --conns 1 --bs 1M\n"
          "         --file bigfile --dir dir10k --dir-entries 10000 --wdir empty\n"
          "         --wfile seqwrite.dat --wfile-size 1G --commit-mb 256\n"
          "         --rdp-maxcount 65536 --rdp-dircount 65536 --no-verify --label TEXT\n"
          "       nfsload prepare --root DIR [--file-size 1G] [--dir-entries 10000]\n"
          "       nfsload check-file --path FILE --seed S --length BYTES\n");
  exit(2);
}

int main(int argc, char **argv) {
  if (argc < 2) usage();
  const char *cmd = argv[1];
  static struct option lo[] = {
      {"url", 1, 0, 'u'},          {"workload", 1, 0, 'w'},     {"seconds", 1, 0, 's'},
      {"warmup", 1, 0, 'W'},       {"qd", 1, 0, 'q'},           {"conns", 1, 0, 'c'},
      {"bs", 1, 0, 'b'},           {"file", 1, 0, 'f'},         {"dir", 1, 0, 'd'},
      {"dir-entries", 1, 0, 'n'},  {"wdir", 1, 0, 'D'},         {"wfile", 1, 0, 'F'},
      {"wfile-size", 1, 0, 'S'},   {"commit-mb", 1, 0, 'C'},    {"rdp-maxcount", 1, 0, 'M'},
      {"rdp-dircount", 1, 0, 'R'}, {"no-verify", 0, 0, 'V'},    {"label", 1, 0, 'l'},
      {"root", 1, 0, 'r'},         {"file-size", 1, 0, 'z'},    {"path", 1, 0, 'p'},
      {"seed", 1, 0, 'e'},         {"length", 1, 0, 'L'},       {"help", 0, 0, 'h'},
      {0, 0, 0, 0}};
  int c;
  optind = 2;
  while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
    switch (c) {
    case 'u': opt.url = optarg; break;
    case 'w': opt.workload = optarg; break;
    case 's': opt.seconds = atof(optarg); break;
    case 'W': opt.warmup = atof(optarg); break;
    case 'q': opt.qd = atoi(optarg); break;
    case 'c': opt.conns = atoi(optarg); break;
    case 'b': opt.bs = parse_size(optarg); break;
    case 'f': opt.file = optarg; break;
    case 'd': opt.dir = optarg; break;
    case 'n': opt.dir_entries = atoi(optarg); break;
    case 'D': opt.wdir = optarg; break;
    case 'F': opt.wfile = optarg; break;
    case 'S': opt.wfile_size = parse_size(optarg); break;
    case 'C': opt.commit_bytes = (uint64_t)atoi(optarg) << 20; break;
    case 'M': opt.rdp_maxcount = (uint32_t)parse_size(optarg); break;
    case 'R': opt.rdp_dircount = (uint32_t)parse_size(optarg); break;
    case 'V': opt.verify = 0; break;
    case 'l': opt.label = optarg; break;
    case 'r': prep_root = optarg; break;
    case 'z': prep_file_size = parse_size(optarg); break;
    case 'p': check_path = optarg; break;
    case 'e': check_seed = strtoull(optarg, NULL, 0); break;
    case 'L': check_length = parse_size(optarg); break;
    default: usage();
    }
  }
  if (optind != argc) usage();
  if (!strcmp(cmd, "run")) return cmd_run();
  if (!strcmp(cmd, "prepare")) return cmd_prepare();
  if (!strcmp(cmd, "check-file")) return cmd_check_file();
  usage();
  return 2;
}
