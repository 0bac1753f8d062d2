"""The helpers every translation unit starts with: the scalar rules too long for one expression.

Each mirrors the numpy kernel (primitives.py) and the LLVM backend (llvm/scalar.py). The status
words are shared with the runtime: [code, bad index, dim, size], code 1 = an index out of bounds.
"""

from __future__ import annotations

STATUS_SLOTS = 4
ERROR_CODE, ERROR_INDEX, ERROR_DIM, ERROR_SIZE = 0, 1, 2, 3
INDEX_ERROR = 1
INT32_INDEX_LIMIT = 1 << 30  # tensors below this many elements index with int (fast) and never overflow it

PRELUDE = r"""
// NaN propagates as in numpy's maximum/minimum (fmax/fmin drop it).
template <typename T> __device__ __forceinline__ T gt_max(T a, T b) { return a != a ? a : (b != b ? b : (a > b ? a : b)); }
template <typename T> __device__ __forceinline__ T gt_min(T a, T b) { return a != a ? a : (b != b ? b : (a < b ? a : b)); }

// exp of -|x| only: no overflow for large |x|
template <typename T> __device__ __forceinline__ T gt_sigmoid(T x) {
  T e = exp(-fabs(x));
  return x >= 0 ? (T)1 / ((T)1 + e) : e / ((T)1 + e);
}

// numpy's npy_divmod for floats: the floor quotient and the remainder with the sign of b.
template <typename T> __device__ __forceinline__ T gt_fdivmod(T a, T b, T* rem) {
  if (b == 0) { *rem = fmod(a, b); return a / b; }
  T mod = fmod(a, b);
  T div = (a - mod) / b;
  if (mod != 0) {
    if ((b < 0) != (mod < 0)) { mod += b; div -= (T)1; }
  } else {
    mod = copysign((T)0, b);
  }
  T q;
  if (div != 0) {
    q = floor(div);
    if (div - q > (T)0.5) q += (T)1;
  } else {
    q = copysign((T)0, a / b);
  }
  *rem = mod;
  return q;
}
__device__ __forceinline__ float gt_floor_divide(float a, float b) { float r; return gt_fdivmod(a, b, &r); }
__device__ __forceinline__ double gt_floor_divide(double a, double b) { double r; return gt_fdivmod(a, b, &r); }
__device__ __forceinline__ float gt_remainder(float a, float b) { float r; gt_fdivmod(a, b, &r); return r; }
__device__ __forceinline__ double gt_remainder(double a, double b) { double r; gt_fdivmod(a, b, &r); return r; }

// Integers: floor division and remainder; by zero gives 0 (numpy); MIN // -1 wraps to MIN.
template <typename T> __device__ __forceinline__ bool gt_div_overflows(T x, T y) {
  return (T)-1 < 0 && y == (T)-1 && x == (T)((unsigned long long)1 << (8 * sizeof(T) - 1));
}
template <typename T> __device__ __forceinline__ T gt_floor_divide(T x, T y) {
  if (y == 0) return 0;
  if (gt_div_overflows(x, y)) return x;
  T q = x / y, r = x % y;
  return (r != 0 && ((r < 0) != (y < 0))) ? (T)(q - 1) : q;
}
template <typename T> __device__ __forceinline__ T gt_remainder(T x, T y) {
  if (y == 0 || gt_div_overflows(x, y)) return 0;
  T r = x % y;
  return (r != 0 && ((r < 0) != (y < 0))) ? (T)(r + y) : r;
}

// Integer power by squaring (wrapping); a negative exponent gives 0 unless |x| == 1.
template <typename T> __device__ __forceinline__ T gt_ipow(T x, T e) {
  if ((T)-1 < 0 && e < 0) return x == 1 ? (T)1 : (x == (T)-1 ? ((e & 1) ? (T)-1 : (T)1) : (T)0);
  unsigned long long acc = 1, base = (unsigned long long)x;
  for (; e > 0; e >>= 1) {
    if (e & 1) acc *= base;
    base *= base;
  }
  return (T)acc;
}

// The first out-of-bounds index wins; the runtime raises IndexError after the launch.
__device__ __forceinline__ void gt_index_error(long long* status, long long bad, long long dim, long long size) {
  if (atomicCAS((unsigned long long*)status, 0ULL, 1ULL) == 0ULL) {
    status[1] = bad;
    status[2] = dim;
    status[3] = size;
  }
}

// splitmix64 (primitives.splitmix64): the same bits as numpy and the LLVM backend.
__device__ __forceinline__ unsigned long long gt_splitmix64(unsigned long long x) {
  unsigned long long z = x + 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}
"""
