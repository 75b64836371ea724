/* simt.cc: the SIMT emulator's scheduler and collectives (simt-device.h) and the part of the CUDA
 * runtime the kernels and the CUDA suites call, over host memory (cuBLAS: cublas-host.cc), so
 * that those suites run their checks on the emulated kernels on a machine without a GPU.
 *
 * A launch runs its blocks in order. A block's threads are fibers (own stacks, switched by
 * fiber-switch.h) started in thread order (reverse order on odd blocks); each runs until it
 * finishes or waits at a barrier or collective, then the next runnable thread runs. A
 * collective completes when the last lane of its mask arrives: that lane computes every lane's
 * result (a shuffle's value, a vote, the mma's products, ldmatrix's words) and the waiting lanes
 * become runnable. No runnable thread while some wait is a deadlock: the emulator says which
 * kernel and which threads wait where, and aborts. Any misuse it can see (a collective whose
 * mask holds an exited lane, lanes of one warp at different collectives, a misaligned ldmatrix
 * or cp.async) aborts the same way: a test that fails loudly rather than a value. */
#include "simt-device.h"
#include "fiber-switch.h"

#include <execinfo.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <vector>

uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

/* The emulator's own bookkeeping needs no checking under AddressSanitizer (the kernels' accesses,
 * and the memory ldmatrix and cp.async read and write for them, stay checked): unchecked, the
 * sanitized build runs the suites several times faster. */
#if defined(__SANITIZE_ADDRESS__)
#define SAM2_SIMT_UNCHECKED __attribute__ ((no_sanitize ("address")))
#else
#define SAM2_SIMT_UNCHECKED
#endif

namespace sam2_simt {
namespace {

/* a fiber's stack: the kernels' frames are small (their arrays are a few hundred bytes); a
 * smaller stack keeps the fibers' working set in the TLB (256 KiB here ran 11% slower) */
constexpr size_t STACK_BYTES = 64 * 1024;
constexpr int MAX_THREADS = 1024;
constexpr size_t DEFAULT_DYNAMIC_SHARED = 48 * 1024;
constexpr size_t MAX_DYNAMIC_SHARED = 227 * 1024;   /* sm_90's opt-in limit per block */

enum ThreadState { NOT_STARTED, RUNNABLE, WAITING, DONE };

enum CollectiveKind { NONE, BLOCK_SYNC, WARP_SYNC, SHUFFLE, VOTE, MMA, MMA_F16, LDMATRIX };

const char *const kind_names[] = { "none", "__syncthreads", "__syncwarp", "a shuffle", "a vote",
                                   "mma.sync (s8)", "mma.sync (f16 / bf16)", "ldmatrix" };

struct Pending {
  void *dst;
  const void *src;
  int bytes;
  int group;           /* commit group; -1 until committed */
};

struct Thread {
  uint3 idx;
  ThreadState state;
  CollectiveKind waiting_at;
  Fiber *fiber;
  std::vector<Pending> copies;   /* cp.async copies not yet landed, oldest first */
  int groups_committed;
};

/* A lane's operands of a collective and its result. */
struct Lane {
  uint64_t in[10];
  uint64_t out[4];
};

struct Warp {
  CollectiveKind kind;   /* the collective under way, NONE when no lane waits */
  unsigned mask, arrived;
  int width, sub;        /* the shuffle's width; the shuffle's, vote's or ldmatrix's kind */
  Lane lane[32];         /* a shuffle's per-lane source argument is its in[1] */
};

struct Block {
  int n_threads;
  std::vector<Thread> threads;
  std::vector<Warp> warps;
  int arrived, done;   /* at __syncthreads; exited */
  bool reverse;        /* threads taken in reverse order (odd blocks) */
  unsigned long number;  /* in launch order, for the garbage's pattern */
  std::vector<unsigned char> dynamic_shared;
  std::vector<const void *> fresh;   /* static shared arrays already refilled for this block */
};

struct Scheduler {
  Fiber main;
  std::vector<Fiber *> free_fibers;
  Block block;
  Thread *current;
  const std::function<void ()> *body;
  const void *kernel;
};

Scheduler sched;
cudaError_t last_error = cudaSuccess;

/* Stream capture: one stream's work at a time is recorded (the emulator runs everything in call
 * order, so the streams are one); a call that cannot be captured invalidates the capture, as
 * on the GPU. */
struct Capture {
  bool active, invalidated;
  std::vector<std::function<void ()>> work;
};
Capture capture;

/* cudaMalloc's live blocks and their sizes, for cudaMemGetInfo */
std::vector<std::pair<void *, size_t>> device_blocks;
size_t device_bytes_in_use;
constexpr size_t DEVICE_BYTES = (size_t) 80 << 30;

/* The fibers are kept from launch to launch (their stacks are the bulk of the emulator's
 * memory) and freed at exit, before LeakSanitizer looks. */
struct FiberPoolCleanup {
  ~FiberPoolCleanup ()
  {
    for (Fiber *f : sched.free_fibers)
      fiber_free (f);
    sched.free_fibers.clear ();
  }
} fiber_pool_cleanup;

struct Attribute {
  const void *kernel;
  int max_dynamic_shared;
};
std::vector<Attribute> attributes;

[[noreturn]] void
die (const char *fmt, const char *what)
{
  const Thread *t = sched.current;
  fprintf (stderr, "simt: kernel %p, block (%u, %u, %u)", sched.kernel, blockIdx.x, blockIdx.y,
           blockIdx.z);
  if (t != nullptr)
    fprintf (stderr, ", thread (%u, %u, %u)", t->idx.x, t->idx.y, t->idx.z);
  fprintf (stderr, ": ");
  fprintf (stderr, fmt, what);
  fprintf (stderr, "\n");
  abort ();
}

int
linear_id (const Thread *t)
{
  return (int) (t->idx.x + blockDim.x * (t->idx.y + blockDim.y * t->idx.z));
}

void fiber_main ();

/* The thread to run after `t` in the block's order (wrapping): the first that is runnable or not
 * yet started, or NULL when every other one waits or is done. Fibers switch to it directly
 * (one switch per wait instead of two through the scheduler). */
Thread *
next_thread (const Thread *t)
{
  Block &b = sched.block;
  const int n = b.n_threads, id = linear_id (t);
  const int pos = b.reverse ? n - 1 - id : id;
  for (int k = 1; k < n; k++) {
    const int p = (pos + k) % n;
    Thread &u = b.threads[b.reverse ? n - 1 - p : p];
    if (u.state == NOT_STARTED || u.state == RUNNABLE)
      return &u;
  }
  return nullptr;
}

/* Makes `t` the running thread, with a fiber if it has not started (taken from the free ones:
 * the caller's own fiber is not among them yet). */
void
make_current (Thread *t)
{
  if (t->state == NOT_STARTED) {
    if (sched.free_fibers.empty ())
      sched.free_fibers.push_back (fiber_new (STACK_BYTES, fiber_main));
    t->fiber = sched.free_fibers.back ();
    sched.free_fibers.pop_back ();
    t->state = RUNNABLE;
  }
  sched.current = t;
  threadIdx = t->idx;
}

/* Leaves this thread waiting until a collective or barrier releases it: the next runnable
 * thread runs, or the scheduler when there is none. */
void
wait_here (CollectiveKind kind)
{
  Thread *t = sched.current;
  t->state = WAITING;
  t->waiting_at = kind;
  Thread *next = next_thread (t);
  if (next != nullptr) {
    make_current (next);
    fiber_switch (t->fiber, next->fiber);
  } else {
    fiber_switch (t->fiber, &sched.main);
  }
  /* resumed by whoever made this thread current again: runnable */
}

void
release (Thread *t)
{
  t->state = RUNNABLE;
  t->waiting_at = NONE;
}

void
block_barrier_check ()
{
  Block &b = sched.block;
  if (b.arrived > 0 && b.arrived + b.done == b.n_threads) {
    for (Thread &t : b.threads)
      if (t.state == WAITING && t.waiting_at == BLOCK_SYNC)
        release (&t);
    b.arrived = 0;
  }
}

SAM2_SIMT_UNCHECKED void
complete_shuffle (Warp &w)
{
  for (int l = 0; l < 32; l++) {
    if (!(w.mask >> l & 1))
      continue;
    const int seg = l / w.width * w.width;
    const int arg = (int) (int64_t) w.lane[l].in[1];   /* each lane's own source argument */
    int src = l;
    switch (w.sub) {
    case SHFL_IDX:
      src = seg + (arg % w.width + w.width) % w.width;
      break;
    case SHFL_XOR:
      src = l ^ arg;
      if (src >= seg + w.width || src < seg)
        src = l;
      break;
    case SHFL_DOWN:
      src = l + arg < seg + w.width ? l + arg : l;
      break;
    case SHFL_UP:
      src = l - arg >= seg ? l - arg : l;
      break;
    }
    if (!(w.mask >> src & 1))
      die ("%s reads a lane outside its mask (undefined on the GPU)", kind_names[SHUFFLE]);
    w.lane[l].out[0] = w.lane[src].in[0];
  }
}

SAM2_SIMT_UNCHECKED void
complete_vote (Warp &w)
{
  unsigned ballot = 0;
  for (int l = 0; l < 32; l++)
    if ((w.mask >> l & 1) && w.lane[l].in[0])
      ballot |= 1u << l;
  unsigned r = ballot;
  if (w.sub == VOTE_ANY)
    r = ballot != 0;
  else if (w.sub == VOTE_ALL)
    r = ballot == w.mask;
  for (int l = 0; l < 32; l++)
    w.lane[l].out[0] = r;
}

/* mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32, fragments as the PTX ISA lays them out
 * (groupID = lane / 4, threadID_in_group = lane % 4):
 *   A (16 x 32): a0 row g, cols 4t..4t+3; a1 row g+8, same cols; a2, a3 as a0, a1 at cols +16;
 *   B (32 x 8):  b0 rows 4t..4t+3 of col g; b1 rows 16+4t..16+4t+3 of col g;
 *   C, D (16 x 8): c0, c1 row g, cols 2t, 2t+1; c2, c3 row g+8, same cols.
 * Bytes within a register: the lowest-addressed element in the low byte. */
SAM2_SIMT_UNCHECKED void
complete_mma (Warp &w)
{
  /* int16 so that the dot products vectorise as pairwise multiply-adds; B stored transposed, a
   * column's 32 k contiguous */
  int16_t A[16][32], Bt[8][32];
  uint32_t C[16][8];
  for (int l = 0; l < 32; l++) {
    const int g = l / 4, t = l % 4;
    const uint64_t *in = w.lane[l].in;
    for (int i = 0; i < 4; i++) {
      const int row = g + (i % 2) * 8, col = t * 4 + (i / 2) * 16;
      const uint32_t a = (uint32_t) in[i];
      for (int b = 0; b < 4; b++)
        A[row][col + b] = (int8_t) (a >> (8 * b));
    }
    for (int j = 0; j < 2; j++) {
      const uint32_t v = (uint32_t) in[4 + j];
      for (int b = 0; b < 4; b++)
        Bt[g][j * 16 + t * 4 + b] = (int8_t) (v >> (8 * b));
    }
    for (int i = 0; i < 4; i++)
      C[g + (i / 2) * 8][t * 2 + i % 2] = (uint32_t) in[6 + i];
  }
  for (int l = 0; l < 32; l++) {
    const int g = l / 4, t = l % 4;
    for (int i = 0; i < 4; i++) {
      const int row = g + (i / 2) * 8, col = t * 2 + i % 2;
      /* each product fits in int32 and so does the sum of 32 (< 2^19); the accumulation wraps
       * modulo 2^32, as the tensor core's does */
      int32_t dot = 0;
      for (int k = 0; k < 32; k++)
        dot += A[row][k] * Bt[col][k];
      w.lane[l].out[i] = C[row][col] + (uint32_t) dot;
    }
  }
}

/* A 16-bit operand element as float: IEEE half, or (bf16) bfloat16, whose bits are the upper
 * half of the float's. */
float
operand16 (uint32_t bits, bool bf16)
{
  return bf16 ? from_bits<float> ((uint64_t) (bits << 16))
              : __half2float (__ushort_as_half ((unsigned short) bits));
}

/* mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}.{f16,bf16}.f32 (w.sub: 1 for bf16): the s8
 * form's fragments with two 16-bit elements per register (the lower-indexed element in the low
 * 16 bits): a0 row g, cols 2t, 2t+1; a1 row g+8; a2, a3 as a0, a1 at cols +8; b0 rows 2t, 2t+1
 * of col g, b1 rows +8; C and D as the s8 form's. The products of halves (and of bfloat16s) are
 * exact in float; the tensor core adds them in an order and with roundings the PTX ISA leaves
 * open: here in double, rounded once with c to float, which differs from the hardware by a few
 * float ulp at most (what the half-precision suites' bounds allow). */
SAM2_SIMT_UNCHECKED void
complete_mma_f16 (Warp &w)
{
  const bool bf16 = w.sub != 0;
  float A[16][16], Bt[8][16], C[16][8];
  for (int l = 0; l < 32; l++) {
    const int g = l / 4, t = l % 4;
    const uint64_t *in = w.lane[l].in;
    for (int i = 0; i < 4; i++) {
      const int row = g + (i % 2) * 8, col = t * 2 + (i / 2) * 8;
      const uint32_t a = (uint32_t) in[i];
      A[row][col] = operand16 (a & 0xffff, bf16);
      A[row][col + 1] = operand16 (a >> 16, bf16);
    }
    for (int j = 0; j < 2; j++) {
      const uint32_t v = (uint32_t) in[4 + j];
      Bt[g][j * 8 + t * 2] = operand16 (v & 0xffff, bf16);
      Bt[g][j * 8 + t * 2 + 1] = operand16 (v >> 16, bf16);
    }
    for (int i = 0; i < 4; i++)
      C[g + (i / 2) * 8][t * 2 + i % 2] = from_bits<float> (in[6 + i]);
  }
  for (int l = 0; l < 32; l++) {
    const int g = l / 4, t = l % 4;
    for (int i = 0; i < 4; i++) {
      const int row = g + (i / 2) * 8, col = t * 2 + i % 2;
      double sum = C[row][col];
      for (int k = 0; k < 16; k++)
        sum += (double) A[row][k] * Bt[col][k];
      w.lane[l].out[i] = to_bits ((float) sum);
    }
  }
}

/* ldmatrix.sync.aligned.m8n8.x4.shared.b16: lanes 8j..8j+7 give the row addresses of matrix j
 * (8 b16 elements each); register j of lane l holds elements 2t, 2t+1 of row g of matrix j
 * (the 32-bit word t of that row), or with .trans elements (2t, g) and (2t+1, g): rows 2t and
 * 2t+1 of column g (g = l / 4, t = l % 4, the lower-indexed element in the low 16 bits). */
void
complete_ldmatrix (Warp &w)
{
  const bool trans = w.sub != 0;
  for (int l = 0; l < 32; l++) {
    const int g = l / 4, t = l % 4;
    for (int j = 0; j < 4; j++) {
      uint16_t e[2];
      for (int h = 0; h < 2; h++) {
        const int row = trans ? 2 * t + h : g, col = trans ? g : 2 * t + h;
        const unsigned char *p = (const unsigned char *) (uintptr_t) w.lane[j * 8 + row].in[0];
        memcpy (&e[h], p + 2 * col, 2);
      }
      w.lane[l].out[j] = (uint32_t) e[0] | (uint32_t) e[1] << 16;
    }
  }
}

/* Joins the warp's collective `kind` with operands `in`; returns this lane's result row. */
SAM2_SIMT_UNCHECKED const uint64_t *
warp_collective (CollectiveKind kind, unsigned mask, int sub, int width, const uint64_t *in,
                 int n_in)
{
  Thread *t = sched.current;
  const int id = linear_id (t), lane = id % 32;
  Warp &w = sched.block.warps[id / 32];
  if (!(mask >> lane & 1))
    die ("%s with a mask that leaves out the calling lane", kind_names[kind]);
  if (w.kind == NONE) {
    w.kind = kind;
    w.mask = mask;
    w.arrived = 0;
    w.sub = sub;
    w.width = width;
    /* every lane of the mask must be able to arrive (a lane that exits later while the warp
     * waits for it is caught at its exit) */
    const int base = id / 32 * 32;
    for (int l = 0; l < 32; l++)
      if ((mask >> l & 1)
          && (base + l >= sched.block.n_threads || sched.block.threads[base + l].state == DONE))
        die ("%s whose mask holds a lane that has exited or does not exist", kind_names[kind]);
  } else if (w.kind != kind || w.mask != mask || w.sub != sub || w.width != width) {
    die ("lanes of one warp at different collectives (this one: %s)", kind_names[kind]);
  }
  for (int i = 0; i < n_in; i++)
    w.lane[lane].in[i] = in[i];
  w.arrived |= 1u << lane;
  if (w.arrived == w.mask) {
    switch (kind) {
    case SHUFFLE:
      complete_shuffle (w);
      break;
    case VOTE:
      complete_vote (w);
      break;
    case MMA:
      complete_mma (w);
      break;
    case MMA_F16:
      complete_mma_f16 (w);
      break;
    case LDMATRIX:
      complete_ldmatrix (w);
      break;
    default:
      break;
    }
    const int base = id / 32 * 32;
    for (int l = 0; l < 32; l++)
      if ((w.mask >> l & 1) && l != lane)
        release (&sched.block.threads[base + l]);
    w.kind = NONE;
  } else {
    wait_here (kind);
  }
  return w.lane[lane].out;
}

void
land_copies (Thread *t, int keep_groups)
{
  /* every copy of a committed group older than the newest keep_groups lands */
  const int limit = t->groups_committed - keep_groups;
  size_t kept = 0;
  for (size_t i = 0; i < t->copies.size (); i++) {
    Pending &p = t->copies[i];
    if (p.group >= 0 && p.group < limit)
      memcpy (p.dst, p.src, (size_t) p.bytes);
    else
      t->copies[kept++] = p;
  }
  t->copies.resize (kept);
}

void
thread_exit_checks ()
{
  Block &b = sched.block;
  b.done++;
  block_barrier_check ();
  /* a warp collective still waiting for this lane can never complete */
  Thread *t = sched.current;
  const int id = linear_id (t);
  const Warp &w = b.warps[id / 32];
  if (w.kind != NONE && (w.mask >> (id % 32) & 1))
    die ("exits while its warp waits for it at %s", kind_names[w.kind]);
}

void
fiber_main ()
{
  for (;;) {
    Thread *t = sched.current;
    (*sched.body) ();
    /* copies never waited for land at exit (oldest first), as the hardware completes them */
    for (const Pending &p : t->copies)
      memcpy (p.dst, p.src, (size_t) p.bytes);
    t->copies.clear ();
    thread_exit_checks ();
    t->state = DONE;
    Fiber *f = t->fiber;
    t->fiber = nullptr;
    Thread *next = next_thread (t);
    if (next != nullptr)
      make_current (next);   /* before this fiber is free: it runs until the switch */
    sched.free_fibers.push_back (f);
    fiber_switch (f, next != nullptr ? next->fiber : &sched.main);
  }
}

SAM2_SIMT_UNCHECKED void
run_block (bool reverse)
{
  Block &b = sched.block;
  b.arrived = b.done = 0;
  for (int i = 0; i < b.n_threads; i++) {
    Thread &t = b.threads[i];
    t.idx = { (unsigned) (i % blockDim.x), (unsigned) (i / blockDim.x % blockDim.y),
              (unsigned) (i / (blockDim.x * blockDim.y)) };
    t.state = NOT_STARTED;
    t.waiting_at = NONE;
    t.fiber = nullptr;
    t.copies.clear ();
    t.groups_committed = 0;
  }
  for (Warp &w : b.warps)
    w.kind = NONE;
  b.reverse = reverse;
  /* The first thread in the block's order starts; from then on the fibers pass control among
   * themselves, and come back here only when none is runnable: every thread done, or a
   * deadlock. */
  Thread &first = b.threads[reverse ? b.n_threads - 1 : 0];
  make_current (&first);
  fiber_switch (&sched.main, first.fiber);
  sched.current = nullptr;
  if (b.done == b.n_threads)
    return;
  for (const Thread &t : b.threads)
    if (t.state == WAITING)
      fprintf (stderr, "simt: thread (%u, %u, %u) waits at %s\n", t.idx.x, t.idx.y, t.idx.z,
               kind_names[t.waiting_at]);
  die ("%s", "deadlock: every thread left waits, none can arrive");
}

}  // namespace

void
sync_block ()
{
  Block &b = sched.block;
  b.arrived++;
  if (b.arrived + b.done == b.n_threads) {
    block_barrier_check ();
    return;
  }
  wait_here (BLOCK_SYNC);
}

void
sync_warp (unsigned mask)
{
  warp_collective (WARP_SYNC, mask, 0, 32, nullptr, 0);
}

uint64_t
shuffle (unsigned mask, uint64_t value, ShuffleKind kind, int arg, int width)
{
  if (width < 1 || width > 32 || (width & (width - 1)) != 0)
    die ("%s with a width that is not a power of two up to 32", kind_names[SHUFFLE]);
  const uint64_t in[2] = { value, (uint64_t) (int64_t) arg };
  return warp_collective (SHUFFLE, mask, kind, width, in, 2)[0];
}

unsigned
vote (unsigned mask, VoteKind kind, bool predicate)
{
  const uint64_t p = predicate;
  return (unsigned) warp_collective (VOTE, mask, kind, 32, &p, 1)[0];
}

void
mma_m16n8k32_s8 (int32_t d[4], const uint32_t a[4], uint32_t b0, uint32_t b1, const int32_t c[4])
{
  const uint64_t in[10] = { a[0], a[1], a[2], a[3], b0, b1, (uint32_t) c[0], (uint32_t) c[1],
                            (uint32_t) c[2], (uint32_t) c[3] };
  const uint64_t *out = warp_collective (MMA, 0xffffffffu, 0, 32, in, 10);
  for (int i = 0; i < 4; i++)
    d[i] = (int32_t) (uint32_t) out[i];
}

namespace {

void
mma_m16n8k16 (float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1, const float c[4],
              bool bf16)
{
  const uint64_t in[10] = { a[0], a[1], a[2], a[3], b0, b1, to_bits (c[0]), to_bits (c[1]),
                            to_bits (c[2]), to_bits (c[3]) };
  const uint64_t *out = warp_collective (MMA_F16, 0xffffffffu, bf16, 32, in, 10);
  for (int i = 0; i < 4; i++)
    d[i] = from_bits<float> (out[i]);
}

}  // namespace

void
mma_m16n8k16_f16 (float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1, const float c[4])
{
  mma_m16n8k16 (d, a, b0, b1, c, false);
}

void
mma_m16n8k16_bf16 (float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1, const float c[4])
{
  mma_m16n8k16 (d, a, b0, b1, c, true);
}

namespace {

void
ldmatrix (uint32_t r[4], const void *shared_row, bool trans)
{
  if (((uintptr_t) shared_row & 15) != 0)
    die ("%s row address not 16-byte aligned", kind_names[LDMATRIX]);
  const uint64_t in = (uintptr_t) shared_row;
  const uint64_t *out = warp_collective (LDMATRIX, 0xffffffffu, trans, 32, &in, 1);
  for (int j = 0; j < 4; j++)
    r[j] = (uint32_t) out[j];
}

}  // namespace

void
ldmatrix_x4 (uint32_t r[4], const void *shared_row)
{
  ldmatrix (r, shared_row, false);
}

void
ldmatrix_x4_trans (uint32_t r[4], const void *shared_row)
{
  ldmatrix (r, shared_row, true);
}

void
cp_async (void *shared_dst, const void *global_src, int bytes)
{
  if (((uintptr_t) shared_dst | (uintptr_t) global_src) % (uintptr_t) bytes != 0)
    die ("%s", "cp.async with an address not aligned to its size");
  sched.current->copies.push_back ({ shared_dst, global_src, bytes, -1 });
}

void
cp_async_commit ()
{
  Thread *t = sched.current;
  for (Pending &p : t->copies)
    if (p.group < 0)
      p.group = t->groups_committed;
  t->groups_committed++;
}

void
cp_async_wait (int newest_pending)
{
  land_copies (sched.current, newest_pending);
}

void
enqueue (std::function<void ()> work)
{
  if (capture.active)
    capture.work.push_back (std::move (work));
  else
    work ();
}

void *
dynamic_shared ()
{
  return sched.block.dynamic_shared.data ();
}

void
fresh_static_shared (void *p, size_t bytes)
{
  Block &b = sched.block;
  for (const void *q : b.fresh)
    if (q == p)
      return;
  b.fresh.push_back (p);
  memset (p, (unsigned char) (0x5a ^ b.number), bytes);
}

void
run (const void *kernel, dim3 grid, dim3 block, size_t shared_bytes,
     const std::function<void ()> &body)
{
  const long threads = (long) block.x * block.y * block.z;
  size_t limit = DEFAULT_DYNAMIC_SHARED;
  for (const Attribute &a : attributes)
    if (a.kernel == kernel)
      limit = (size_t) a.max_dynamic_shared;
  if (threads < 1 || threads > MAX_THREADS || block.z > 64 || grid.x < 1 || grid.y < 1
      || grid.z < 1 || grid.y > 65535 || grid.z > 65535) {
    last_error = cudaErrorInvalidConfiguration;
    return;
  }
  if (shared_bytes > limit) {
    last_error = cudaErrorInvalidValue;
    return;
  }
  if (sched.body != nullptr)
    die ("%s", "a launch from inside a kernel");
  if (capture.active) {
    const std::function<void ()> replay = body;
    capture.work.push_back ([=] { run (kernel, grid, block, shared_bytes, replay); });
    return;
  }
  Block &b = sched.block;
  b.n_threads = (int) threads;
  b.threads.resize ((size_t) threads);
  b.warps.resize ((size_t) (threads + 31) / 32);
  sched.body = &body;
  sched.kernel = kernel;
  gridDim = grid;
  blockDim = block;
  unsigned long n = 0;
  for (unsigned z = 0; z < grid.z; z++)
    for (unsigned y = 0; y < grid.y; y++)
      for (unsigned x = 0; x < grid.x; x++, n++) {
        blockIdx = { x, y, z };
        /* dynamic shared memory starts as garbage, not zeros, as on the GPU (static shared
         * memory too, at its declaration: fresh_static_shared) */
        b.dynamic_shared.assign (shared_bytes + 16, (unsigned char) (0xa5 ^ n));
        b.number = n;
        b.fresh.clear ();
        run_block (n % 2 == 1);
      }
  sched.body = nullptr;
  sched.kernel = nullptr;
}

}  // namespace sam2_simt

/* ---- the CUDA runtime over host memory ------------------------------------------------------ */

using sam2_simt::last_error;

extern "C" {

cudaError_t
cudaGetDeviceCount (int *count)
{
  *count = 1;
  return cudaSuccess;
}

/* A device as the kernels' launchers and the suites see it: sm_90's limits, named for what it is */
cudaError_t
cudaGetDeviceProperties (struct cudaDeviceProp *prop, int device)
{
  if (device != 0)
    return cudaErrorInvalidDevice;
  memset (prop, 0, sizeof *prop);
  snprintf (prop->name, sizeof prop->name, "SIMT emulator on the host (sm_90 limits)");
  prop->major = 9;
  prop->minor = 0;
  /* 132 SMs, an H100 SXM's, unless SAM2_SIMT_SM_COUNT says otherwise: the suites run the
   * persistent kernels (whose grid is what the device holds at once) on a small device too, so
   * that each block walks many tiles */
  const char *sms = getenv ("SAM2_SIMT_SM_COUNT");
  prop->multiProcessorCount = sms != nullptr && atoi (sms) > 0 ? atoi (sms) : 132;
  prop->totalGlobalMem = sam2_simt::DEVICE_BYTES;
  prop->warpSize = 32;
  prop->maxThreadsPerBlock = sam2_simt::MAX_THREADS;
  prop->sharedMemPerBlock = sam2_simt::DEFAULT_DYNAMIC_SHARED;
  prop->sharedMemPerBlockOptin = sam2_simt::MAX_DYNAMIC_SHARED;
  prop->sharedMemPerMultiprocessor = 228 * 1024;
  prop->maxGridSize[0] = 0x7fffffff;
  prop->maxGridSize[1] = prop->maxGridSize[2] = 65535;
  return cudaSuccess;
}

cudaError_t
cudaStreamCreateWithFlags (cudaStream_t *stream, unsigned int)
{
  /* everything runs at its call, in order: one stream is all streams */
  static int token;
  *stream = reinterpret_cast<cudaStream_t> (&token);
  return cudaSuccess;
}

cudaError_t
cudaStreamDestroy (cudaStream_t)
{
  return cudaSuccess;
}

/* Events hold the host's monotonic clock at their record (the emulator's time, nothing like a
 * GPU's: the suites print it, nothing checks it). */
cudaError_t
cudaEventCreate (cudaEvent_t *event)
{
  *event = reinterpret_cast<cudaEvent_t> (new double (0.0));
  return cudaSuccess;
}

cudaError_t
cudaEventDestroy (cudaEvent_t event)
{
  delete reinterpret_cast<double *> (event);
  return cudaSuccess;
}

cudaError_t
cudaEventRecord (cudaEvent_t event, cudaStream_t)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  *reinterpret_cast<double *> (event) = ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
  return cudaSuccess;
}

cudaError_t
cudaEventSynchronize (cudaEvent_t)
{
  return cudaSuccess;
}

cudaError_t
cudaEventElapsedTime (float *ms, cudaEvent_t start, cudaEvent_t end)
{
  *ms = (float) (*reinterpret_cast<double *> (end) - *reinterpret_cast<double *> (start));
  return cudaSuccess;
}

cudaError_t
cudaGetDevice (int *device)
{
  *device = 0;
  return cudaSuccess;
}

cudaError_t
cudaGetLastError (void)
{
  const cudaError_t e = last_error;
  last_error = cudaSuccess;
  return e;
}

cudaError_t
cudaPeekAtLastError (void)
{
  return last_error;
}

const char *
cudaGetErrorString (cudaError_t e)
{
  switch (e) {
  case cudaSuccess:
    return "no error (simt)";
  case cudaErrorInvalidConfiguration:
    return "invalid configuration argument (simt)";
  case cudaErrorInvalidValue:
    return "invalid argument (simt)";
  case cudaErrorMemoryAllocation:
    return "out of memory (simt)";
  case cudaErrorStreamCaptureUnsupported:
    return "operation not permitted when stream is capturing (simt)";
  case cudaErrorStreamCaptureInvalidated:
    return "operation failed due to a previous error during capture (simt)";
  default: {
    static char text[64];
    snprintf (text, sizeof text, "CUDA error %d (simt)", (int) e);
    return text;
  }
  }
}

cudaError_t
cudaMalloc (void **p, size_t bytes)
{
  using namespace sam2_simt;
  /* 256-byte aligned, as cudaMalloc's are; bytes rounded up so aligned_alloc accepts them */
  if (capture.active) {
    capture.invalidated = true;
    return cudaErrorStreamCaptureUnsupported;
  }
  if (bytes > DEVICE_BYTES - device_bytes_in_use)
    return cudaErrorMemoryAllocation;
  *p = aligned_alloc (256, (bytes + 255) / 256 * 256 + 256);
  if (*p == nullptr)
    return cudaErrorMemoryAllocation;
  device_blocks.push_back ({ *p, bytes });
  device_bytes_in_use += bytes;
  /* SAM2_SIMT_ALLOC_LOG=N: each allocation of N bytes or more, the bytes then in use and its
   * callers (addresses in the program, for addr2line), on stderr: where a session's device
   * memory goes, counted without a GPU */
  static const char *const log_from = getenv ("SAM2_SIMT_ALLOC_LOG");
  if (log_from != nullptr && bytes >= strtoull (log_from, nullptr, 10)) {
    void *frames[4];
    const int n = backtrace (frames, 4);
    fprintf (stderr, "cudaMalloc %zu bytes, %zu in use; from:\n", bytes, device_bytes_in_use);
    backtrace_symbols_fd (frames, n, 2);
  }
  return cudaSuccess;
}

cudaError_t
cudaFree (void *p)
{
  using namespace sam2_simt;
  if (p == nullptr)
    return cudaSuccess;
  for (size_t i = 0; i < device_blocks.size (); i++)
    if (device_blocks[i].first == p) {
      device_bytes_in_use -= device_blocks[i].second;
      device_blocks[i] = device_blocks.back ();
      device_blocks.pop_back ();
      free (p);
      return cudaSuccess;
    }
  return cudaErrorInvalidValue;
}

cudaError_t
cudaMemGetInfo (size_t *free_bytes, size_t *total_bytes)
{
  *total_bytes = sam2_simt::DEVICE_BYTES;
  *free_bytes = sam2_simt::DEVICE_BYTES - sam2_simt::device_bytes_in_use;
  return cudaSuccess;
}

cudaError_t
cudaMallocHost (void **p, size_t bytes)
{
  *p = aligned_alloc (256, (bytes + 255) / 256 * 256 + 256);
  return *p != nullptr ? cudaSuccess : cudaErrorMemoryAllocation;
}

cudaError_t
cudaFreeHost (void *p)
{
  free (p);
  return cudaSuccess;
}

/* synchronous calls cannot be captured */
static cudaError_t
not_during_capture ()
{
  if (!sam2_simt::capture.active)
    return cudaSuccess;
  sam2_simt::capture.invalidated = true;
  return cudaErrorStreamCaptureUnsupported;
}

cudaError_t
cudaMemcpy (void *dst, const void *src, size_t bytes, enum cudaMemcpyKind)
{
  if (not_during_capture () != cudaSuccess)
    return cudaErrorStreamCaptureUnsupported;
  memmove (dst, src, bytes);
  return cudaSuccess;
}

cudaError_t
cudaMemcpyAsync (void *dst, const void *src, size_t bytes, enum cudaMemcpyKind, cudaStream_t)
{
  sam2_simt::enqueue ([=] { memmove (dst, src, bytes); });
  return cudaSuccess;
}

cudaError_t
cudaMemcpy2DAsync (void *dst, size_t dpitch, const void *src, size_t spitch, size_t width,
                   size_t height, enum cudaMemcpyKind, cudaStream_t)
{
  if (width > dpitch || width > spitch)
    return cudaErrorInvalidPitchValue;
  sam2_simt::enqueue ([=] {
    for (size_t r = 0; r < height; r++)
      memmove ((char *) dst + r * dpitch, (const char *) src + r * spitch, width);
  });
  return cudaSuccess;
}

cudaError_t
cudaMemset (void *p, int value, size_t bytes)
{
  if (not_during_capture () != cudaSuccess)
    return cudaErrorStreamCaptureUnsupported;
  memset (p, value, bytes);
  return cudaSuccess;
}

cudaError_t
cudaMemsetAsync (void *p, int value, size_t bytes, cudaStream_t)
{
  sam2_simt::enqueue ([=] { memset (p, value, bytes); });
  return cudaSuccess;
}

cudaError_t
cudaStreamBeginCapture (cudaStream_t, enum cudaStreamCaptureMode)
{
  if (sam2_simt::capture.active)
    return cudaErrorIllegalState;
  sam2_simt::capture = { true, false, {} };
  return cudaSuccess;
}

/* A graph and its executable form: the recorded work, replayed in order. */
struct CUgraph_st {
  std::vector<std::function<void ()>> work;
};
struct CUgraphExec_st {
  std::vector<std::function<void ()>> work;
};

cudaError_t
cudaStreamEndCapture (cudaStream_t, cudaGraph_t *graph)
{
  sam2_simt::Capture &c = sam2_simt::capture;
  if (!c.active)
    return cudaErrorIllegalState;
  c.active = false;
  if (c.invalidated) {
    *graph = nullptr;
    return cudaErrorStreamCaptureInvalidated;
  }
  *graph = new CUgraph_st { std::move (c.work) };
  c.work.clear ();
  return cudaSuccess;
}

/* The node count only (nodes NULL), one node per recorded launch, copy or library call; the
 * CUDA runtime's count differs where a library call launches several kernels. */
cudaError_t
cudaGraphGetNodes (cudaGraph_t graph, cudaGraphNode_t *nodes, size_t *numNodes)
{
  if (graph == nullptr || numNodes == nullptr || nodes != nullptr)
    return cudaErrorInvalidValue;
  *numNodes = graph->work.size ();
  return cudaSuccess;
}

cudaError_t
cudaGraphInstantiate (cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long)
{
  if (graph == nullptr)
    return cudaErrorInvalidValue;
  *exec = new CUgraphExec_st { graph->work };
  return cudaSuccess;
}

cudaError_t
cudaGraphLaunch (cudaGraphExec_t exec, cudaStream_t)
{
  if (sam2_simt::capture.active)
    return not_during_capture ();
  for (const std::function<void ()> &w : exec->work)
    w ();
  return cudaSuccess;
}

cudaError_t
cudaGraphExecDestroy (cudaGraphExec_t exec)
{
  delete exec;
  return cudaSuccess;
}

cudaError_t
cudaGraphDestroy (cudaGraph_t graph)
{
  delete graph;
  return cudaSuccess;
}

cudaError_t
cudaSetDevice (int device)
{
  return device == 0 ? cudaSuccess : cudaErrorInvalidDevice;
}

cudaError_t
cudaStreamCreate (cudaStream_t *stream)
{
  return cudaStreamCreateWithFlags (stream, 0);
}

const char *
cudaGetErrorName (cudaError_t e)
{
  return cudaGetErrorString (e);
}

cudaError_t
cudaDeviceSynchronize (void)
{
  return not_during_capture ();
}

cudaError_t
cudaStreamSynchronize (cudaStream_t)
{
  return not_during_capture ();
}

cudaError_t
cudaFuncSetAttribute (const void *kernel, enum cudaFuncAttribute attr, int value)
{
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize)
    return cudaSuccess;
  if (value < 0 || (size_t) value > sam2_simt::MAX_DYNAMIC_SHARED)
    return cudaErrorInvalidValue;
  for (sam2_simt::Attribute &a : sam2_simt::attributes)
    if (a.kernel == kernel) {
      a.max_dynamic_shared = value;
      return cudaSuccess;
    }
  sam2_simt::attributes.push_back ({ kernel, value });
  return cudaSuccess;
}

}  // extern "C"
