"""The C++ that stands in for CUDA's built-ins when hostcheck compiles an emitted module with g++.

A launch runs its blocks one after another. Inside a block every CUDA thread is a fiber (ucontext)
with its own stack, run by a scheduler on one host thread: a fiber runs until it reaches
`__syncthreads` or a warp collective (`__shfl_*_sync`, `__syncwarp`, `__ballot_sync`, ...), where
it waits until every thread the operation names has arrived, as on the GPU. The schedule between
two barriers is one legal interleaving (the last thread to arrive runs on, then the others in index
order); the race detector covers the others: its report does not depend on the order.

Shared memory is a `gt_shared<T, dims...>` per `__shared__` array (emulation.py rewrites the
declarations and every access, keeping line numbers), poisoned with 0xff bytes when a block starts.
Each element remembers who wrote and read it in the current barrier interval, so a read of a value
another thread wrote since the last barrier (or a write over one another thread read or wrote) is a
race; a read of an element no thread of the block wrote is an uninitialized read; an index outside
the array is a fault. The first such error stops the launch and is reported with its line.

Warp collectives follow the CUDA semantics: lanes of a warp are threads 32w..32w+31 of the block
(linear index), every lane in `mask` must execute the same collective with the same mask, a lane
outside the mask or one that has exited is an error, a source lane outside the width segment gives
the caller's own value. Atomics are real atomics (`__atomic` builtins), so the header stays right if
blocks ever run on several host threads.

Kernels with none of these (elementwise, thread-per-output) run without fibers: a plain call per
thread with the launch's real geometry.
"""

HEADER = r"""
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>
#include <utility>

struct gt_dim3 { unsigned int x, y, z; };
// Not static: a fiber switch is an external call, after which the compiler must reload these.
gt_dim3 threadIdx, blockIdx, blockDim, gridDim;
const int warpSize = 32;
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __syncthreads() gt_emu::syncthreads(__LINE__)
#define __syncwarp(...) gt_emu::syncwarp(__LINE__, ##__VA_ARGS__)
#define __shfl_sync(...) gt_emu::shuffle(gt_emu::SHFL_IDX, __LINE__, __VA_ARGS__)
#define __shfl_up_sync(...) gt_emu::shuffle(gt_emu::SHFL_UP, __LINE__, __VA_ARGS__)
#define __shfl_down_sync(...) gt_emu::shuffle(gt_emu::SHFL_DOWN, __LINE__, __VA_ARGS__)
#define __shfl_xor_sync(...) gt_emu::shuffle(gt_emu::SHFL_XOR, __LINE__, __VA_ARGS__)
#define __ballot_sync(mask, p) gt_emu::vote(gt_emu::BALLOT, __LINE__, mask, p)
#define __any_sync(mask, p) ((int)gt_emu::vote(gt_emu::ANY, __LINE__, mask, p))
#define __all_sync(mask, p) ((int)gt_emu::vote(gt_emu::ALL, __LINE__, mask, p))

static inline float __int_as_float(unsigned int x) { float f; memcpy(&f, &x, 4); return f; }
static inline double __longlong_as_double(unsigned long long x) { double f; memcpy(&f, &x, 8); return f; }

namespace gt_emu {

enum State { READY, AT_BARRIER, AT_WARP, DONE };
enum Kind { SHFL_IDX, SHFL_UP, SHFL_DOWN, SHFL_XOR, SYNCWARP, BALLOT, ANY, ALL };
const char* const KIND_NAMES[] = {"__shfl_sync", "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync",
                                  "__syncwarp", "__ballot_sync", "__any_sync", "__all_sync"};
const size_t STACK_BYTES = 64 * 1024;
const unsigned MAX_THREADS = 1024;

struct Thread {
  ucontext_t context;
  gt_dim3 index;
  State state;
  int line;                     // where it waits
  int kind, arg, width;         // the warp collective it waits in
  unsigned mask;
  unsigned long long value, result;
};

const int MAX_POINTERS = 256;

struct Launch {
  void (*body)(void**);
  void** args;
  unsigned long long extent[MAX_POINTERS];  // bytes from each pointer argument to the end of its buffer
  bool fibers;
  unsigned threads, arrived;    // block size; threads waiting at __syncthreads
  unsigned long long epoch;     // barrier intervals since the library was loaded (never reset)
  unsigned long long block_epoch;  // the epoch the current block started in
  int current;                  // the running thread (linear index in the block)
  ucontext_t scheduler;
  Thread thread[MAX_THREADS];
  char* stacks;
  bool failed;
  int error_line;
  char error[2048];
};
Launch L;

inline Thread& me() { return L.thread[L.current]; }

inline void describe_thread(char* out, size_t cap, int linear) {
  const gt_dim3 t = L.thread[linear].index;
  snprintf(out, cap, "thread (%u,%u,%u)", t.x, t.y, t.z);
}

// The first error of a launch wins.
inline void vreport(int line, const char* format, va_list ap) {
  if (L.failed) return;
  L.failed = true;
  L.error_line = line;
  const int n = snprintf(L.error, sizeof L.error, "block (%u,%u,%u): ", blockIdx.x, blockIdx.y, blockIdx.z);
  vsnprintf(L.error + n, sizeof L.error - n, format, ap);
}

// From the scheduler: the error is recorded and the launch stops after the current pass.
inline void report(int line, const char* format, ...) {
  va_list ap;
  va_start(ap, format);
  vreport(line, format, ap);
  va_end(ap);
}

// From a kernel's thread: a fiber that fails never runs again (a plain call returns and the launch stops).
inline void fail(int line, const char* format, ...) {
  va_list ap;
  va_start(ap, format);
  vreport(line, format, ap);
  va_end(ap);
  if (L.fibers) swapcontext(&me().context, &L.scheduler);
}

// A kernel's b_x[i] (instrument.py): the element, when it lies inside the bytes the launch gave b_x.
template <typename T> T& at(T* base, const char* name, int param, int line, long long i) {
  if (i < 0 || (unsigned long long)(i + 1) * sizeof(T) > L.extent[param]) {
    char who[64];
    describe_thread(who, sizeof who, L.current);
    fail(line, "global memory out of bounds: %s accesses %s[%lld], outside its %llu elements", who, name, i,
         L.extent[param] / sizeof(T));
    static T nowhere[1] = {};  // a plain call carries on to the end of its thread: let it touch this
    return nowhere[0];
  }
  return base[i];
}

inline void yield() {
  swapcontext(&me().context, &L.scheduler);
  asm volatile("" ::: "memory");
}

// False (and the launch fails) where a kernel hostcheck took for non-cooperative cooperates after all.
inline bool need_fibers(int line, const char* what) {
  if (!L.fibers) fail(line, "%s in a kernel launched without fibers (hostcheck did not see it cooperate)", what);
  return L.fibers;
}

inline void syncthreads(int line) {
  if (!need_fibers(line, "__syncthreads")) return;
  Thread& t = me();
  t.state = AT_BARRIER;
  t.line = line;
  if (++L.arrived < L.threads) {
    yield();
    return;
  }
  L.arrived = 0;  // the last thread to arrive opens the barrier: a new interval for the race detector
  ++L.epoch;
  for (unsigned i = 0; i < L.threads; ++i) L.thread[i].state = READY;
}

// ---- warp collectives: the last lane of the mask to arrive computes every lane's result
inline int source_lane(const Thread& t, int lane) {
  const int w = t.width, segment = lane & ~(w - 1);
  switch (t.kind) {
    case SHFL_IDX: return segment + (((t.arg % w) + w) % w);
    case SHFL_UP: return lane - t.arg >= segment ? lane - t.arg : lane;
    case SHFL_DOWN: return lane + t.arg < segment + w ? lane + t.arg : lane;
    case SHFL_XOR: return (lane ^ t.arg) < segment + w ? lane ^ t.arg : lane;
  }
  return lane;
}

inline void finish_collective(int first, const Thread& t) {
  unsigned long long ballot = 0;
  for (int lane = 0; lane < 32; ++lane)
    if (t.mask >> lane & 1) ballot |= (unsigned long long)(L.thread[first + lane].value != 0) << lane;
  for (int lane = 0; lane < 32; ++lane) {
    if (!(t.mask >> lane & 1)) continue;
    Thread& u = L.thread[first + lane];
    const int src = source_lane(u, lane);
    if (t.kind <= SHFL_XOR && !(t.mask >> src & 1)) {
      char who[128];
      describe_thread(who, sizeof who, first + lane);
      return fail(t.line, "%s: %s reads lane %d, which is not in the mask 0x%08x", KIND_NAMES[t.kind], who, src,
                  t.mask);
    }
    u.result = t.kind <= SHFL_XOR ? L.thread[first + src].value
             : t.kind == BALLOT ? ballot
             : t.kind == ANY ? ballot != 0
             : ballot == (unsigned long long)t.mask;
  }
  for (int lane = 0; lane < 32; ++lane)
    if (t.mask >> lane & 1) L.thread[first + lane].state = READY;
}

// True when every lane of t's mask waits in the same collective; an exited or mismatched lane is an error.
inline bool all_arrived(int first, const Thread& t) {
  for (int lane = 0; lane < 32; ++lane) {
    if (!(t.mask >> lane & 1)) continue;
    if (first + lane >= (int)L.threads) {
      fail(t.line, "%s names lane %d in mask 0x%08x, but the block has %u threads", KIND_NAMES[t.kind], lane, t.mask,
           L.threads);
      return false;
    }
    const Thread& u = L.thread[first + lane];
    if (u.state == DONE) {
      fail(t.line, "%s with mask 0x%08x: lane %d has exited", KIND_NAMES[t.kind], t.mask, lane);
      return false;
    }
    if (u.state != AT_WARP) return false;
    if (u.mask != t.mask || u.kind != t.kind) {
      fail(t.line, "%s with mask 0x%08x meets lane %d in %s with mask 0x%08x (line %d)", KIND_NAMES[t.kind], t.mask,
           lane, KIND_NAMES[u.kind], u.mask, u.line);
      return false;
    }
  }
  return true;
}

inline unsigned long long collective(int kind, int line, unsigned mask, unsigned long long value, int arg, int width) {
  if (!need_fibers(line, KIND_NAMES[kind])) return value;
  Thread& t = me();
  const int lane = L.current % 32, first = L.current - lane;
  if (!(mask >> lane & 1)) fail(line, "%s: lane %d calls it with mask 0x%08x, which leaves it out", KIND_NAMES[kind], lane, mask);
  if (width < 1 || width > 32 || (width & (width - 1))) fail(line, "%s: width %d is not a power of 2 up to 32", KIND_NAMES[kind], width);
  t.state = AT_WARP;
  t.line = line;
  t.kind = kind;
  t.mask = mask;
  t.value = value;
  t.arg = arg;
  t.width = width;
  if (all_arrived(first, t)) finish_collective(first, t);
  if (t.state == AT_WARP) yield();
  return t.result;
}

template <typename T> T shuffle(int kind, int line, unsigned mask, T value, int arg, int width = 32) {
  static_assert(sizeof(T) <= 8, "a shuffle moves at most 8 bytes");
  unsigned long long bits = 0;
  memcpy(&bits, &value, sizeof(T));
  bits = collective(kind, line, mask, bits, arg, width);
  T out;
  memcpy(&out, &bits, sizeof(T));
  return out;
}

inline unsigned vote(int kind, int line, unsigned mask, int predicate) {
  return (unsigned)collective(kind, line, mask, predicate != 0, 0, 32);
}

inline void syncwarp(int line, unsigned mask = 0xffffffffu) { collective(SYNCWARP, line, mask, 0, 0, 32); }

// ---- the scheduler
inline void run_fiber() {
  L.body(L.args);
  me().state = DONE;
}

inline void deadlock() {
  int waiting = 0, done = 0, line = 0, warp_line = 0;
  for (unsigned i = 0; i < L.threads; ++i) {
    const Thread& t = L.thread[i];
    if (t.state == DONE) ++done;
    if (t.state == AT_BARRIER) ++waiting, line = t.line;
    if (t.state == AT_WARP && !warp_line) warp_line = t.line;
  }
  if (warp_line)
    report(warp_line, "deadlock: a warp collective waits for lanes that never arrive "
         "(%d threads wait at __syncthreads, %d have exited)", waiting, done);
  else
    report(line, "barrier divergence: %d of %u threads wait at __syncthreads, %d have exited without reaching it",
         waiting, L.threads, done);
}

inline void run_block_with_fibers() {
  for (unsigned i = 0; i < L.threads; ++i) {
    Thread& t = L.thread[i];
    t.state = READY;
    getcontext(&t.context);
    t.context.uc_stack.ss_sp = L.stacks + i * STACK_BYTES;
    t.context.uc_stack.ss_size = STACK_BYTES;
    t.context.uc_link = &L.scheduler;
    makecontext(&t.context, run_fiber, 0);
  }
  L.arrived = 0;
  for (unsigned done = 0; done < L.threads && !L.failed;) {
    bool ran = false;
    done = 0;
    for (unsigned i = 0; i < L.threads && !L.failed; ++i) {
      if (L.thread[i].state == DONE) ++done;
      if (L.thread[i].state != READY) continue;
      L.current = (int)i;
      threadIdx = L.thread[i].index;
      swapcontext(&L.scheduler, &L.thread[i].context);
      ran = true;
    }
    if (!ran && done < L.threads && !L.failed) deadlock();
  }
}

inline void run_block_directly() {
  for (unsigned i = 0; i < L.threads && !L.failed; ++i) {
    L.current = (int)i;
    threadIdx = L.thread[i].index;
    L.body(L.args);
  }
}

inline void run_blocks() {
  for (unsigned z = 0; z < gridDim.z; ++z)
    for (unsigned y = 0; y < gridDim.y; ++y)
      for (unsigned x = 0; x < gridDim.x && !L.failed; ++x) {
        blockIdx = {x, y, z};
        L.block_epoch = ++L.epoch;
        L.fibers ? run_block_with_fibers() : run_block_directly();
      }
}

inline int launch(void (*body)(void**), void** args, const unsigned long long* extents, int count,
                  const unsigned* geometry, int fibers) {
  L.error_line = 0;
  if (count > MAX_POINTERS) {
    snprintf(L.error, sizeof L.error, "a kernel of %d pointer arguments (the emulator takes %d)", count, MAX_POINTERS);
    return 1;
  }
  const unsigned threads = geometry[3] * geometry[4] * geometry[5];
  if (threads == 0 || threads > MAX_THREADS) {
    snprintf(L.error, sizeof L.error, "a block of %u threads (CUDA allows 1 to %u)", threads, MAX_THREADS);
    return 1;
  }
  L.body = body;
  L.args = args;
  memcpy(L.extent, extents, count * sizeof *extents);
  L.fibers = fibers;
  L.failed = false;
  gridDim = {geometry[0], geometry[1], geometry[2]};
  blockDim = {geometry[3], geometry[4], geometry[5]};
  L.threads = threads;
  for (unsigned i = 0; i < L.threads; ++i)
    L.thread[i].index = {i % blockDim.x, i / blockDim.x % blockDim.y, i / (blockDim.x * blockDim.y)};
  // Each library loaded has its own emulator: stacks live only while one of its launches runs.
  L.stacks = fibers ? (char*)malloc(L.threads * STACK_BYTES) : nullptr;
  run_blocks();
  free(L.stacks);
  return L.failed ? 1 : 0;
}

template <typename... P, size_t... I> void apply(void (*kernel)(P...), void** args, std::index_sequence<I...>) {
  kernel((P)args[I]...);
}
template <typename... P> void apply(void (*kernel)(P...), void** args) {
  apply(kernel, args, std::index_sequence_for<P...>{});
}

}  // namespace gt_emu

// ---- shared memory with the race detector
template <typename T, int... D> struct gt_shared {
  static constexpr int dims[] = {D...};
  static constexpr int count = (D * ...);
  struct Access { int writer, reader, other_reader, write_line, read_line; unsigned long long write_epoch, read_epoch; };
  const char* name;
  unsigned long long block = 0;  // the block_epoch whose contents these are
  T data[count];
  Access access[count];

  explicit gt_shared(const char* n) : name(n) { memset(access, 0, sizeof access); }

  template <typename... I> int flat(int line, I... index) {
    const long long at[] = {(long long)index...};
    static_assert(sizeof...(I) == sizeof...(D), "index every dimension of a __shared__ array");
    long long f = 0;
    for (size_t d = 0; d < sizeof...(D); ++d) {
      if (at[d] < 0 || at[d] >= dims[d]) {
        gt_emu::fail(line, "shared-memory index out of bounds: %s dimension %d is %lld, size %d", name, (int)d, at[d], dims[d]);
        return 0;
      }
      f = f * dims[d] + at[d];
    }
    if (block != gt_emu::L.block_epoch) {  // a new block: CUDA's shared memory starts as garbage
      block = gt_emu::L.block_epoch;
      memset((void*)data, 0xff, sizeof data);
    }
    return (int)f;
  }

  void where(char* out, size_t cap, int f) {
    int n = snprintf(out, cap, "%s", name);
    int index[sizeof...(D)];
    for (int d = (int)sizeof...(D) - 1; d >= 0; --d) { index[d] = f % dims[d]; f /= dims[d]; }
    for (size_t d = 0; d < sizeof...(D); ++d) n += snprintf(out + n, cap - n, "[%d]", index[d]);
  }

  // "thread A reads As[1][2], which thread B wrote at line 40": the detector's report.
  void race(int line, int f, const char* mine_did, int other, const char* other_did, int other_line) {
    char element[128], mine[128], theirs[128];
    where(element, sizeof element, f);
    gt_emu::describe_thread(mine, sizeof mine, gt_emu::L.current);
    gt_emu::describe_thread(theirs, sizeof theirs, other);
    gt_emu::fail(line, "shared-memory race: %s %s %s, which %s %s at line %d with no __syncthreads between",
                 mine, mine_did, element, theirs, other_did, other_line);
  }

  void on_read(int line, int f) {
    Access& a = access[f];
    const int me = gt_emu::L.current;
    const unsigned long long now = gt_emu::L.epoch;
    if (a.write_epoch < gt_emu::L.block_epoch) {
      char element[128], mine[128];
      where(element, sizeof element, f);
      gt_emu::describe_thread(mine, sizeof mine, me);
      return gt_emu::fail(line, "uninitialized shared memory: %s reads %s, which no thread of the block has written",
                          mine, element);
    }
    if (a.write_epoch == now && a.writer != me) return race(line, f, "reads", a.writer, "wrote", a.write_line);
    if (a.read_epoch != now) a.reader = me, a.other_reader = -1;
    else if (a.reader != me) a.other_reader = me;  // two readers are enough to name one that is not the writer
    a.read_epoch = now;
    a.read_line = line;
  }

  void on_write(int line, int f) {
    Access& a = access[f];
    const int me = gt_emu::L.current;
    const unsigned long long now = gt_emu::L.epoch;
    if (a.write_epoch == now && a.writer != me) return race(line, f, "writes", a.writer, "wrote", a.write_line);
    if (a.read_epoch == now && (a.reader != me || a.other_reader >= 0)) {
      const int other = a.reader != me ? a.reader : a.other_reader;
      return race(line, f, "writes", other, "read", a.read_line);
    }
    a.writer = me;
    a.write_epoch = now;
    a.write_line = line;
  }

  template <typename... I> T read(int line, I... index) {
    const int f = flat(line, index...);
    on_read(line, f);
    return data[f];
  }
  template <typename... I> T& write(int line, I... index) {
    const int f = flat(line, index...);
    on_write(line, f);
    return data[f];
  }
  template <typename... I> T& update(int line, I... index) {
    const int f = flat(line, index...);
    on_read(line, f);
    on_write(line, f);
    return data[f];
  }
};

// ---- atomics: compare-and-swap loops on the builtins, so any T of 4 or 8 bytes works
template <typename T, typename F> T gt_atomic(T* p, F next) {
  T old, want;
  __atomic_load(p, &old, __ATOMIC_SEQ_CST);
  do { want = next(old); } while (!__atomic_compare_exchange(p, &old, &want, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
  return old;
}
template <typename T> T atomicAdd(T* p, T v) { return gt_atomic(p, [v](T o) { return (T)(o + v); }); }
template <typename T> T atomicSub(T* p, T v) { return gt_atomic(p, [v](T o) { return (T)(o - v); }); }
template <typename T> T atomicExch(T* p, T v) { return gt_atomic(p, [v](T) { return v; }); }
template <typename T> T atomicMax(T* p, T v) { return gt_atomic(p, [v](T o) { return o > v ? o : v; }); }
template <typename T> T atomicMin(T* p, T v) { return gt_atomic(p, [v](T o) { return o < v ? o : v; }); }
template <typename T> T atomicCAS(T* p, T compare, T v) {
  __atomic_compare_exchange(p, &compare, &v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  return compare;  // the old value either way
}

extern "C" int gt_emu_error(char* out, int cap) {
  snprintf(out, cap, "%s", gt_emu::L.error);
  return gt_emu::L.error_line;
}
"""
