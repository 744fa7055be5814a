// Fused element-wise CPU kernels for Llama-style decoder layers (loaded by fused_ops.py).
//
// Each kernel reads its inputs once and writes its output once, where eager PyTorch makes one pass over memory
// per operation (RMSNorm: to(float32), pow, mean, add, rsqrt, mul, to(dtype), mul; rotary embedding: mul, slice,
// neg, cat, mul, add). The arithmetic is the eager one, in the same order and with the same roundings: in
// bfloat16, every intermediate that eager PyTorch stores as a bfloat16 tensor is rounded to bfloat16 here too
// (round to nearest even). The one difference: the order in which RMSNorm's float32 sum of squares is added up
// (16 partial sums), which can move a result by one unit in its last place. The SiLU x product (silu_mul) keeps
// torch's formula and roundings but not its exp (Sleef's): float32 results can differ in their last bits.
//
// The attention kernel is not element-wise: its dot products use fused multiply-adds, and in bfloat16 on CPUs with
// AVX512-BF16 the pair dot-product instructions (see `attention` at the end).
//
// Loops are written with GCC/Clang vector extensions (16 floats), which the compiler maps to AVX-512, AVX2 or
// SSE as the target allows, with AVX-512 intrinsics where the compiler's own mapping was slow (bfloat16 loads and
// stores, exp); rows are spread over torch's threads with at::parallel_for (OpenMP).
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <vector>
#include <type_traits>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace {

constexpr int64_t kLanes = 16;
typedef float v16f __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));
typedef uint32_t v16u __attribute__((vector_size(64)));
typedef uint16_t v16h __attribute__((vector_size(32)));

inline v16u bits_of(v16f f) {
  v16u u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

inline v16f float_of(v16u u) {
  v16f f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// float32 -> bfloat16 bits, round to nearest even, NaN kept quiet (as c10::BFloat16).
inline v16u bf16_bits(v16f f) {
#if defined(__AVX512F__)
  const __m512i u = _mm512_castps_si512((__m512)f);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
  const __mmask16 nan = _mm512_cmp_ps_mask((__m512)f, (__m512)f, _CMP_UNORD_Q);
  return (v16u)_mm512_mask_mov_epi32(rounded, nan, _mm512_set1_epi32(0x7fc0));
#else
  v16u u = bits_of(f);
  v16u rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  return (u & 0x7fffffffu) > 0x7f800000u ? (v16u{} + 0x7fc0u) : rounded;
#endif
}

// Storage types. load/store move 16 values between memory and floats; round() rounds floats to the storage
// precision, as storing an intermediate tensor of that dtype would.
struct F32 {
  using T = float;
  static inline v16f load(const T* p) {
    v16f f;
    std::memcpy(&f, p, sizeof f);
    return f;
  }
  static inline void store(T* p, v16f f) { std::memcpy(p, &f, sizeof f); }
  static inline v16f round(v16f f) { return f; }
  static inline float load_one(const T* p) { return *p; }
};

struct BF16 {
  using T = uint16_t;
  static inline v16f load(const T* p) {
#if defined(__AVX512F__)
    return (v16f)_mm512_castsi512_ps(
        _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
#else
    v16h h;
    std::memcpy(&h, p, sizeof h);
    return float_of(__builtin_convertvector(h, v16u) << 16);
#endif
  }
  static inline void store(T* p, v16f f) {
#if defined(__AVX512F__)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16((__m512i)bf16_bits(f)));
#else
    v16h h = __builtin_convertvector(bf16_bits(f), v16h);
    std::memcpy(p, &h, sizeof h);
#endif
  }
  static inline v16f round(v16f f) { return float_of(bf16_bits(f) << 16); }
  static inline float load_one(const T* p) {
    const uint32_t u = static_cast<uint32_t>(*p) << 16;
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
  }
};

// n <= 16 values: a whole vector, or a row's tail through a zero-padded block.
template <typename S>
inline v16f load_n(const typename S::T* p, int64_t n) {
  if (n == kLanes) return S::load(p);
  typename S::T buf[kLanes] = {};
  std::memcpy(buf, p, n * sizeof(typename S::T));
  return S::load(buf);
}

template <typename S>
inline void store_n(typename S::T* p, v16f f, int64_t n) {
  if (n == kLanes) return S::store(p, f);
  typename S::T buf[kLanes];
  S::store(buf, f);
  std::memcpy(p, buf, n * sizeof(typename S::T));
}

// LlamaRMSNorm on one row: w * to_dtype(x * rsqrt(mean(x^2) + eps)), in float32.
template <typename S>
void rms_norm_row(const typename S::T* __restrict x, const typename S::T* __restrict w, typename S::T* __restrict out,
                  int64_t dim, float eps) {
  v16f acc = v16f{};
  int64_t j = 0;
  for (; j + kLanes <= dim; j += kLanes) {
    v16f v = S::load(x + j);
    acc += v * v;
  }
  if (j < dim) {
    v16f v = load_n<S>(x + j, dim - j);
    acc += v * v;
  }
  float sum = 0.0f;
  for (int64_t l = 0; l < kLanes; ++l) sum += acc[l];
  const float inv = 1.0f / std::sqrt(sum / static_cast<float>(dim) + eps);
  for (j = 0; j + kLanes <= dim; j += kLanes) S::store(out + j, S::load(w + j) * S::round(S::load(x + j) * inv));
  if (j < dim)
    store_n<S>(out + j, load_n<S>(w + j, dim - j) * S::round(load_n<S>(x + j, dim - j) * inv), dim - j);
}

template <typename S>
void rms_norm_impl(const typename S::T* x, const typename S::T* w, typename S::T* out, int64_t rows, int64_t dim,
                   float eps) {
  at::parallel_for(0, rows, 16, [=](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) rms_norm_row<S>(x + i * dim, w, out + i * dim, dim, eps);
  });
}

// Rotary embedding of one head's vector, as transformers' apply_rotary_pos_emb: x * cos + rotate_half(x) * sin,
// with rotate_half(x) = [-x2, x1]; each product and the sum rounded to the storage dtype.
template <typename S>
void rope_head(const typename S::T* __restrict x, const typename S::T* __restrict c, const typename S::T* __restrict s,
               typename S::T* __restrict o, int64_t half) {
  for (int64_t k = 0; k < half; k += kLanes) {
    const int64_t n = half - k < kLanes ? half - k : kLanes;
    const v16f x1 = load_n<S>(x + k, n), x2 = load_n<S>(x + half + k, n);
    const v16f lo = S::round(S::round(x1 * load_n<S>(c + k, n)) + S::round(-x2 * load_n<S>(s + k, n)));
    const v16f hi = S::round(S::round(x2 * load_n<S>(c + half + k, n)) + S::round(x1 * load_n<S>(s + half + k, n)));
    store_n<S>(o + k, lo, n);
    store_n<S>(o + half + k, hi, n);
  }
}

template <typename S>
void rope_impl(const typename S::T* x, const typename S::T* cos, const typename S::T* sin, typename S::T* out,
               int64_t batch, int64_t length, int64_t heads, int64_t dim, bool shared) {
  at::parallel_for(0, batch * length, 8, [=](int64_t begin, int64_t end) {
    for (int64_t bt = begin; bt < end; ++bt) {
      const int64_t b = bt / length, t = bt % length;
      const int64_t cs = ((shared ? 0 : b) * length + t) * dim;
      for (int64_t h = 0; h < heads; ++h)
        rope_head<S>(x + (bt * heads + h) * dim, cos + cs, sin + cs, out + (bt * heads + h) * dim, dim / 2);
    }
  });
}

// ---- attention -------------------------------------------------------------------------------------------------
// exp(x) for x <= 0 (scores minus their row maximum; the same arithmetic holds up to x = 88), in float32:
// x = n ln2 + r with n = floor(x / ln2 + 1/2), |r| <= ln2 / 2, exp(r) by its degree-7 Taylor polynomial (relative
// error under 1e-8 before rounding), times 2^n.
// With AVX-512: the floor by one rounding instruction, the polynomial by fused multiply-adds and 2^n by vscalefps
// (13 vector instructions per 16 values instead of about 30); else 2^n is built from its bits.
inline v16f exp_nonpositive(v16f x) {
  // exp(-87) ~ 1.6e-38, the smallest normal floats; masked scores are zeroed by the caller
#if defined(__AVX512F__)
  const __m512 xv = _mm512_max_ps(_mm512_set1_ps(-87.0f), (__m512)x);  // NaN stays NaN (second operand)
  const __m512 n = _mm512_roundscale_ps(_mm512_fmadd_ps(xv, _mm512_set1_ps(1.44269504088896341f), _mm512_set1_ps(0.5f)),
                                        _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), xv);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return (v16f)_mm512_scalef_ps(p, n);
#else
  const v16f lo = v16f{} - 87.0f;
  x = x < lo ? lo : x;
  const v16f y = x * 1.44269504088896341f + 0.5f;
  v16f n = __builtin_convertvector(__builtin_convertvector(y, v16i), v16f);  // truncation toward zero
  n = n > y ? n - 1.0f : n;                                                 // floor
  const v16f r = x - n * 0.693359375f - n * -2.12194440e-4f;                // ln2 in two parts
  v16f p = v16f{} + 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const v16i e = (__builtin_convertvector(n, v16i) + 127) << 23;
  v16f two_n;
  std::memcpy(&two_n, &e, sizeof two_n);
  return p * two_n;
#endif
}

// exp(x) for any x: x clamped to [-87, 88] (beyond, the results under- or overflow float32 anyway: 0 or a huge
// finite value, where torch gives 0 or inf; a SiLU is the same either way).
inline v16f exp_full(v16f x) {
#if defined(__AVX512F__)
  return exp_nonpositive((v16f)_mm512_min_ps(_mm512_set1_ps(88.0f), (__m512)x));  // NaN stays NaN (second operand)
#else
  const v16f hi = v16f{} + 88.0f;
  return exp_nonpositive(x > hi ? hi : x);
#endif
}

// 16 copies of x
inline v16f splat(float x) {
#if defined(__AVX512F__)
  return (v16f)_mm512_set1_ps(x);
#else
  return v16f{x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x};
#endif
}

// a * b + c with one rounding where the target has FMA (the attention kernel's dot products; the other kernels
// keep eager PyTorch's separate roundings, -ffp-contract=off)
inline v16f fma16(v16f a, v16f b, v16f c) {
#if defined(__AVX512F__)
  return (v16f)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
#else
  return a * b + c;
#endif
}

constexpr int64_t kRows = 4;  // query rows per register block
constexpr int64_t kCols = 4;  // vectors of 16 keys (scores) or 16 value channels (output) per register block

// scores[r][j0 .. j0 + 16 C) = scale * q_r . k_j for kRows query rows (float32, D values each; rows past the
// block's real ones are zeros) and keys transposed kt[D][ld].
template <int64_t C>
inline void score_block(const float* __restrict q, const float* __restrict kt, int64_t ld, int64_t D, int64_t j0,
                        float scale, float* __restrict scores, int64_t lds) {
  v16f acc[kRows][C] = {};
  for (int64_t d = 0; d < D; ++d) {
    v16f kv[C];
    for (int64_t c = 0; c < C; ++c) std::memcpy(&kv[c], kt + d * ld + j0 + c * kLanes, sizeof(v16f));
    for (int64_t r = 0; r < kRows; ++r) {
      const v16f qb = splat(q[r * D + d]);
      for (int64_t c = 0; c < C; ++c) acc[r][c] = fma16(qb, kv[c], acc[r][c]);
    }
  }
  for (int64_t r = 0; r < kRows; ++r)
    for (int64_t c = 0; c < C; ++c) {
      const v16f s = acc[r][c] * scale;
      std::memcpy(scores + r * lds + j0 + c * kLanes, &s, sizeof s);
    }
}

#if defined(__AVX512BF16__)
// The same from bfloat16 operands with AVX512-BF16 pair dot products: q2[r][e] holds q_r's values 2e, 2e + 1 and
// kp[e][j] key j's, as bfloat16 pairs. Each product of two bfloat16 values is exact in float32, so this differs
// from score_block only in the order the products are added.
template <int64_t C>
inline void score_block_bf16(const uint32_t* __restrict q2, const uint32_t* __restrict kp, int64_t ld, int64_t D2,
                             int64_t j0, float scale, float* __restrict scores, int64_t lds) {
  __m512 acc[kRows][C];
  for (int64_t r = 0; r < kRows; ++r)
    for (int64_t c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
  for (int64_t e = 0; e < D2; ++e) {
    __m512bh kv[C];
    for (int64_t c = 0; c < C; ++c) kv[c] = (__m512bh)_mm512_loadu_si512(kp + e * ld + j0 + c * kLanes);
    for (int64_t r = 0; r < kRows; ++r) {
      const __m512bh qb = (__m512bh)_mm512_set1_epi32(static_cast<int>(q2[r * D2 + e]));
      for (int64_t c = 0; c < C; ++c) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], qb, kv[c]);
    }
  }
  const __m512 sc = _mm512_set1_ps(scale);
  for (int64_t r = 0; r < kRows; ++r)
    for (int64_t c = 0; c < C; ++c) _mm512_storeu_ps(scores + r * lds + j0 + c * kLanes, _mm512_mul_ps(acc[r][c], sc));
}

// out_r[d0 .. d0 + 16 C) = sum_j p_r[j] v[j][d0 ..] from bfloat16 pairs: p2[r][e] holds row r's weights for keys
// 2e, 2e + 1 (rounded to bfloat16, as torch's own CPU attention kernel rounds them for bfloat16 inputs) and
// vp[e][d] the values of channel d at those keys; float32 sums.
template <int64_t C>
inline void weighted_sum_block_bf16(const uint32_t* __restrict p2, int64_t ldp2, const uint32_t* __restrict vp,
                                    int64_t D, int64_t n2, int64_t d0, v16f (*out)[kCols]) {
  __m512 acc[kRows][C];
  for (int64_t r = 0; r < kRows; ++r)
    for (int64_t c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
  for (int64_t e = 0; e < n2; ++e) {
    __m512bh vv[C];
    for (int64_t c = 0; c < C; ++c) {
      __m512i w = _mm512_loadu_si512(vp + e * D + d0 + c * kLanes);
      asm("" : "+v"(w));  // keep the loaded values in a register for every row (GCC otherwise reloads them per row)
      vv[c] = (__m512bh)w;
    }
    for (int64_t r = 0; r < kRows; ++r) {
      const __m512bh pb = (__m512bh)_mm512_set1_epi32(static_cast<int>(p2[r * ldp2 + e]));
      for (int64_t c = 0; c < C; ++c) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], pb, vv[c]);
    }
  }
  for (int64_t r = 0; r < kRows; ++r)
    for (int64_t c = 0; c < C; ++c) out[r][c] = (v16f)acc[r][c];
}
#endif

// out_r[d0 .. d0 + 16 C) = sum_j p_r[j] v[j][d0 ..] for kRows rows of weights p (ldp apart) over keys [0, n).
template <int64_t C>
inline void weighted_sum_block(const float* __restrict p, int64_t ldp, const float* __restrict v, int64_t D,
                               int64_t n, int64_t d0, v16f (*out)[kCols]) {
  v16f acc[kRows][C] = {};
  for (int64_t j = 0; j < n; ++j) {
    v16f vv[C];
    for (int64_t c = 0; c < C; ++c) std::memcpy(&vv[c], v + j * D + d0 + c * kLanes, sizeof(v16f));
    for (int64_t r = 0; r < kRows; ++r) {
      const v16f pb = splat(p[r * ldp + j]);
      for (int64_t c = 0; c < C; ++c) acc[r][c] = fma16(pb, vv[c], acc[r][c]);
    }
  }
  for (int64_t r = 0; r < kRows; ++r)
    for (int64_t c = 0; c < C; ++c) out[r][c] = acc[r][c];
}

struct AttentionArgs {
  const void *q, *k, *v;
  const uint8_t* mask;  // allowed[b][i][j] or nullptr (causal, aligned to the last key)
  void* out;            // [B, Tq, H, D], contiguous
  int64_t B, H, KV, Tq, Tk, D;
  int64_t qs[3], ks[3], vs[3];  // strides of dims 0..2 ([B, heads, T]); the last dimension is contiguous
  int64_t ms[3];                // mask strides of dims 0, 2, 3 (dim 0 stride 0 when the mask is shared)
  float scale;
};

// Softmax numerators of one row of scores in place over keys [0, n_pad) (n_pad a multiple of 16): keys at or past
// `hi`, and keys the mask row `m` (stride `ms`, or nullptr) forbids, get 0. Returns 1 / their sum (0 if none).
inline float softmax_row(float* __restrict pr, int64_t hi, int64_t n_pad, const uint8_t* m, int64_t ms) {
  const v16f ninf = v16f{} - INFINITY;
  const v16i lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  v16f mx = ninf;
  for (int64_t j = 0; j < n_pad; j += kLanes) {
    v16f x;
    std::memcpy(&x, pr + j, sizeof x);
    v16i ok = lane + static_cast<int32_t>(j) < static_cast<int32_t>(hi);
    if (m != nullptr) {
      v16i allowed = {};
      const int64_t n = std::min<int64_t>(kLanes, std::max<int64_t>(0, hi - j));
#if defined(__AVX512BW__) && defined(__AVX512VL__)
      if (ms == 1) {  // 16 mask bytes at once
        const __mmask16 live = n >= kLanes ? 0xffff : static_cast<__mmask16>((1u << n) - 1u);
        const __m128i bytes = _mm_maskz_loadu_epi8(live, m + j);
        allowed = (v16i)_mm512_cvtepu8_epi32(bytes);
      } else
#endif
      if (ms == 1) {
        uint8_t buf[kLanes] = {};
        std::memcpy(buf, m + j, n);
        for (int64_t l = 0; l < kLanes; ++l) allowed[l] = buf[l];
      } else {
        for (int64_t l = 0; l < n; ++l) allowed[l] = m[(j + l) * ms];
      }
      ok = ok & (allowed != 0);
    }
    x = ok ? x : ninf;
    std::memcpy(pr + j, &x, sizeof x);
    mx = mx > x ? mx : x;
  }
#if defined(__AVX512F__)
  const float top = _mm512_reduce_max_ps((__m512)mx);
#else
  float top = -INFINITY;
  for (int64_t l = 0; l < kLanes; ++l) top = std::max(top, mx[l]);
#endif
  if (top == -INFINITY) {  // the row may attend nothing: zeros
    std::memset(pr, 0, n_pad * sizeof(float));
    return 0.0f;
  }
  v16f sum = v16f{};
  for (int64_t j = 0; j < n_pad; j += kLanes) {
    v16f x;
    std::memcpy(&x, pr + j, sizeof x);
    const v16f z = x == -INFINITY ? v16f{} : exp_nonpositive(x - top);
    sum += z;
    std::memcpy(pr + j, &z, sizeof z);
  }
#if defined(__AVX512F__)
  const float total = _mm512_reduce_add_ps((__m512)sum);
#else
  float total = 0.0f;
  for (int64_t l = 0; l < kLanes; ++l) total += sum[l];
#endif
  return 1.0f / total;
}

// block(std::integral_constant<int64_t, C>, j0) for the score blocks over keys [0, n_pad) (n_pad a multiple of 16):
// kCols vectors of keys at a time, then one block of the 1-3 vectors left.
template <typename Block>
__attribute__((always_inline)) inline void for_score_blocks(int64_t n_pad, Block&& block) {
  int64_t j0 = 0;
  for (; j0 + kCols * kLanes <= n_pad; j0 += kCols * kLanes) block(std::integral_constant<int64_t, kCols>{}, j0);
  switch ((n_pad - j0) / kLanes) {
    case 3: block(std::integral_constant<int64_t, 3>{}, j0); break;
    case 2: block(std::integral_constant<int64_t, 2>{}, j0); break;
    case 1: block(std::integral_constant<int64_t, 1>{}, j0); break;
    default: break;
  }
}

// One past the last key the mask row m (stride ms) allows among [0, n), or 0 if none.
inline int64_t allowed_end(const uint8_t* m, int64_t n, int64_t ms) {
#if defined(__AVX512BW__)
  if (ms == 1) {  // 64 mask bytes at a time, from the end
    int64_t end = n;
    for (; end >= 64; end -= 64) {
      const uint64_t nonzero = _mm512_test_epi8_mask(_mm512_loadu_si512(m + end - 64), _mm512_set1_epi8(-1));
      if (nonzero) return end - 64 + (64 - __builtin_clzll(nonzero));
    }
    while (end > 0 && !m[end - 1]) --end;
    return end;
  }
#endif
  int64_t end = n;
  while (end > 0 && !m[(end - 1) * ms]) --end;
  return end;
}

// One (batch row, key/value head): every query head of its group, every query row.
template <typename S>
void attention_task(const AttentionArgs& a, int64_t b, int64_t kvh) {
  using T = typename S::T;
  const int64_t D = a.D, Tk = a.Tk, Tq = a.Tq, group = a.H / a.KV;
  const int64_t ld = (Tk + 2 * kLanes - 1) / (2 * kLanes) * (2 * kLanes);  // keys per row of scores, padded
  const T* k = static_cast<const T*>(a.k) + b * a.ks[0] + kvh * a.ks[1];
  const T* v = static_cast<const T*>(a.v) + b * a.vs[0] + kvh * a.vs[1];
#if defined(__AVX512BF16__)
  constexpr bool pairs = std::is_same<T, uint16_t>::value;  // bfloat16 scores by pair dot products
#else
  constexpr bool pairs = false;
#endif
  const int64_t D2 = D / 2;
  std::vector<float> kt(pairs ? 0 : D * ld, 0.0f), vf(pairs ? 0 : Tk * D), q(kRows * D, 0.0f), p(kRows * ld);
  const int64_t ld2 = ld / 2;  // key pairs per row of weights
  std::vector<uint32_t> kp(pairs ? D2 * ld : 0, 0u), q2(pairs ? kRows * D2 : 0, 0u), vp(pairs ? ld2 * D : 0, 0u),
      p2(pairs ? kRows * ld2 : 0, 0u);
  for (int64_t j = 0; j < Tk; ++j) {
    if constexpr (pairs) {
      const uint32_t* row = reinterpret_cast<const uint32_t*>(k + j * a.ks[2]);
      for (int64_t e = 0; e < D2; ++e) kp[e * ld + j] = row[e];
      const uint16_t* vrow = reinterpret_cast<const uint16_t*>(v + j * a.vs[2]);
      uint32_t* dst = vp.data() + (j / 2) * D;
      const int shift = (j % 2) * 16;
      for (int64_t d = 0; d < D; ++d) dst[d] |= static_cast<uint32_t>(vrow[d]) << shift;
      continue;
    }
    for (int64_t d = 0; d < D; d += kLanes) {
      if constexpr (!pairs) {
        const v16f kv = S::load(k + j * a.ks[2] + d);
        for (int64_t l = 0; l < kLanes; ++l) kt[(d + l) * ld + j] = kv[l];
      }
      const v16f vv = S::load(v + j * a.vs[2] + d);
      std::memcpy(&vf[j * D + d], &vv, sizeof vv);
    }
  }
  v16f o[kRows][kCols];
  for (int64_t h = kvh * group; h < (kvh + 1) * group; ++h) {
    const T* qh = static_cast<const T*>(a.q) + b * a.qs[0] + h * a.qs[1];
    for (int64_t i0 = 0; i0 < Tq; i0 += kRows) {
      const int64_t R = std::min(kRows, Tq - i0);
      int64_t hi[kRows] = {}, top = 0;  // keys [0, hi[r]) may be attended by row r
      for (int64_t r = 0; r < R; ++r) {
        const int64_t i = i0 + r;
        if (a.mask == nullptr) {
          hi[r] = std::min(Tk, i + (Tk - Tq) + 1);
        } else {
          hi[r] = allowed_end(a.mask + b * a.ms[0] + i * a.ms[1], Tk, a.ms[2]);
        }
        top = std::max(top, hi[r]);
        if constexpr (pairs) {
          std::memcpy(&q2[r * D2], qh + i * a.qs[2], D * sizeof(T));
        } else {
          for (int64_t d = 0; d < D; d += kLanes) {
            const v16f qv = S::load(qh + i * a.qs[2] + d);
            std::memcpy(&q[r * D + d], &qv, sizeof qv);
          }
        }
      }
      if (R < kRows) {  // the block's missing rows: zero queries, never stored
        if constexpr (pairs) std::fill(q2.begin() + R * D2, q2.end(), 0u);
        else std::fill(q.begin() + R * D, q.end(), 0.0f);
      }
      const int64_t top_pad = (top + kLanes - 1) / kLanes * kLanes;
      for_score_blocks(top_pad, [&](auto cols, int64_t j0) __attribute__((always_inline)) {
        constexpr int64_t C = decltype(cols)::value;
#if defined(__AVX512BF16__)
        if constexpr (pairs) score_block_bf16<C>(q2.data(), kp.data(), ld, D2, j0, a.scale, p.data(), ld);
#endif
        if constexpr (!pairs) score_block<C>(q.data(), kt.data(), ld, D, j0, a.scale, p.data(), ld);
      });
      float inv[kRows] = {};
      for (int64_t r = 0; r < kRows; ++r) {
        if (r < R) {
          const uint8_t* m = a.mask ? a.mask + b * a.ms[0] + (i0 + r) * a.ms[1] : nullptr;
          inv[r] = softmax_row(p.data() + r * ld, hi[r], top_pad, m, a.ms[2]);
        } else {
          std::memset(p.data() + r * ld, 0, top_pad * sizeof(float));
        }
      }
#if defined(__AVX512BF16__)
      if constexpr (pairs) {  // the weights as bfloat16 pairs: in memory, keys 2e, 2e + 1 in order (little-endian)
        for (int64_t r = 0; r < kRows; ++r) {
          const float* pr = p.data() + r * ld;
          uint16_t* dst = reinterpret_cast<uint16_t*>(p2.data() + r * ld2);
          for (int64_t j = 0; j < top_pad; j += kLanes) {
            v16f x;
            std::memcpy(&x, pr + j, sizeof x);
            BF16::store(dst + j, x);
          }
        }
      }
#endif
      for (int64_t d0 = 0; d0 < D; d0 += kCols * kLanes) {
        const int64_t C = std::min(kCols, (D - d0) / kLanes);
#if defined(__AVX512BF16__)
        if constexpr (pairs) {
          const int64_t n2 = (top + 1) / 2;
          switch (C) {
            case 4: weighted_sum_block_bf16<4>(p2.data(), ld2, vp.data(), D, n2, d0, o); break;
            case 3: weighted_sum_block_bf16<3>(p2.data(), ld2, vp.data(), D, n2, d0, o); break;
            case 2: weighted_sum_block_bf16<2>(p2.data(), ld2, vp.data(), D, n2, d0, o); break;
            default: weighted_sum_block_bf16<1>(p2.data(), ld2, vp.data(), D, n2, d0, o); break;
          }
        }
#endif
        if constexpr (!pairs) switch (C) {
          case 4: weighted_sum_block<4>(p.data(), ld, vf.data(), D, top, d0, o); break;
          case 3: weighted_sum_block<3>(p.data(), ld, vf.data(), D, top, d0, o); break;
          case 2: weighted_sum_block<2>(p.data(), ld, vf.data(), D, top, d0, o); break;
          default: weighted_sum_block<1>(p.data(), ld, vf.data(), D, top, d0, o); break;
        }
        for (int64_t r = 0; r < R; ++r) {
          T* dst = static_cast<T*>(a.out) + (((b * Tq) + i0 + r) * a.H + h) * D + d0;
          for (int64_t c = 0; c < C; ++c) S::store(dst + c * kLanes, o[r][c] * inv[r]);
        }
      }
    }
  }
}

template <typename S>
void attention_impl(const AttentionArgs& a) {
  at::parallel_for(0, a.B * a.KV, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) attention_task<S>(a, t / a.KV, t % a.KV);
  });
}

// ---- SiLU x product -------------------------------------------------------------------------------------------
// The MLP's act_fn(gate) * up: silu(g) = g / (1 + exp(-g)) in float32 (torch's formula), rounded to the storage
// dtype as the eager silu tensor is, times up, rounded again. exp is exp_full (FMA polynomial; torch uses
// Sleef), so a float32 result can differ from torch's in its last bits, a bfloat16 one rarely by one unit.
template <typename S>
void silu_mul_impl(const typename S::T* g, const typename S::T* u, typename S::T* out, int64_t rows, int64_t n) {
  at::parallel_for(0, rows, 16, [=](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const typename S::T* gr = g + r * n;
      const typename S::T* ur = u + r * n;
      typename S::T* o = out + r * n;
      int64_t j = 0;
#if defined(__AVX512BF16__)
      // bfloat16 with AVX512-BF16: the two roundings by vcvtneps2bf16 (nearest even like c10::BFloat16, but denormal
      // results flush to zero), half the instructions of the portable path below
      if constexpr (std::is_same<S, BF16>::value) {
        for (; j + kLanes <= n; j += kLanes) {
          const __m512 x = (__m512)S::load(gr + j);
          const __m512 e = (__m512)exp_full((v16f)_mm512_sub_ps(_mm512_setzero_ps(), x));
          const __m512 silu = _mm512_div_ps(x, _mm512_add_ps(e, _mm512_set1_ps(1.0f)));
          const __m512 rounded = _mm512_castsi512_ps(_mm512_slli_epi32(
              _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(silu)), 16));
          const __m512 prod = _mm512_mul_ps(rounded, (__m512)S::load(ur + j));
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + j), (__m256i)_mm512_cvtneps_pbh(prod));
        }
      }
#endif
      for (; j < n; j += kLanes) {
        const int64_t m = n - j < kLanes ? n - j : kLanes;
        const v16f x = load_n<S>(gr + j, m);
        const v16f silu = S::round(x / (exp_full(v16f{} - x) + 1.0f));
        store_n<S>(o + j, S::round(silu * load_n<S>(ur + j, m)), m);
      }
    }
  });
}

// ---- log-probs at read positions --------------------------------------------------------------------------------
// One row of logits: log_softmax(x)[target] in float32 (x - max - log(sum(exp(x - max)))), and whether the target
// is the first index of the row's maximum (torch.argmax's choice). Two passes over the row while it is in cache.
template <typename S>
void log_softmax_row(const typename S::T* __restrict x, int64_t n, int64_t target, float* lp, bool* greedy) {
  const v16f ninf = v16f{} - INFINITY;
  const v16i lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  v16f mx = ninf;
  v16i at = v16i{} + static_cast<int32_t>(n);  // per lane, the first index of its maximum (n: none yet)
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    const v16f v = S::load(x + j);
    // strictly greater, so a lane keeps the first index of a tie (and the first of a row of -inf)
    const v16i take = (v > mx) | ((at == static_cast<int32_t>(n)) & (v == mx));
    at = take ? lane + static_cast<int32_t>(j) : at;
    mx = take ? v : mx;
  }
  float top = -INFINITY;
  int64_t first = n;  // the first index holding the row's maximum
  for (int64_t l = 0; l < kLanes; ++l) top = std::max(top, mx[l]);
  for (int64_t l = 0; l < kLanes; ++l)
    if (mx[l] == top) first = std::min<int64_t>(first, at[l]);
  for (int64_t i = j; i < n; ++i) {  // the tail comes after every vector index
    const float v = S::load_one(x + i);
    if (v > top) {
      top = v;
      first = i;
    } else if (v == top && first == n) {
      first = i;
    }
  }
  v16f acc[4] = {};  // four partial sums per lane: shorter chains of additions (and of rounding errors)
  for (j = 0; j + 4 * kLanes <= n; j += 4 * kLanes)
    for (int64_t u = 0; u < 4; ++u) acc[u] += exp_nonpositive(S::load(x + j + u * kLanes) - top);
  for (; j + kLanes <= n; j += kLanes) acc[0] += exp_nonpositive(S::load(x + j) - top);
  const v16f sum = (acc[0] + acc[1]) + (acc[2] + acc[3]);
  float total = 0.0f;
  for (int64_t l = 0; l < kLanes; ++l) total += sum[l];
  for (int64_t i = j; i < n; ++i) total += exp_nonpositive(v16f{} + (S::load_one(x + i) - top))[0];
  *lp = S::load_one(x + target) - top - std::log(total);
  *greedy = first == target;
}

void check_operand(const torch::Tensor& t, const char* name, at::ScalarType dtype) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be on the CPU");
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
  TORCH_CHECK(t.scalar_type() == dtype, name, " must have dtype ", dtype, ", not ", t.scalar_type());
}

bool is_bf16(const torch::Tensor& t) {
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16,
              "fused kernels take float32 or bfloat16, not ", t.scalar_type());
  return t.scalar_type() == at::kBFloat16;
}

template <typename T>
T* ptr(const torch::Tensor& t) {
  return reinterpret_cast<T*>(t.data_ptr());
}

}  // namespace

// LlamaRMSNorm(x) with weight w over the last dimension; a new tensor.
torch::Tensor rms_norm(torch::Tensor x, torch::Tensor weight, double eps) {
  const auto dtype = x.scalar_type();
  const bool bf16 = is_bf16(x);
  check_operand(x, "x", dtype);
  check_operand(weight, "weight", dtype);
  const int64_t dim = x.size(-1);
  TORCH_CHECK(dim > 0 && weight.numel() == dim, "weight must have x's last dimension");
  const int64_t rows = x.numel() / dim;
  auto out = torch::empty_like(x);
  if (bf16)
    rms_norm_impl<BF16>(ptr<uint16_t>(x), ptr<uint16_t>(weight), ptr<uint16_t>(out), rows, dim, static_cast<float>(eps));
  else
    rms_norm_impl<F32>(ptr<float>(x), ptr<float>(weight), ptr<float>(out), rows, dim, static_cast<float>(eps));
  return out;
}

// x [B, T, H, D] (the projection's layout) -> x * cos + rotate_half(x) * sin with cos/sin [B or 1, T, D] shared by
// the heads; a new [B, T, H, D] tensor.
torch::Tensor rope(torch::Tensor x, torch::Tensor cos, torch::Tensor sin) {
  const auto dtype = x.scalar_type();
  const bool bf16 = is_bf16(x);
  check_operand(x, "x", dtype);
  check_operand(cos, "cos", dtype);
  check_operand(sin, "sin", dtype);
  TORCH_CHECK(x.dim() == 4 && cos.dim() == 3 && sin.sizes() == cos.sizes(), "x must be [B, T, H, D], cos/sin [B or 1, T, D]");
  const int64_t batch = x.size(0), length = x.size(1), heads = x.size(2), dim = x.size(3);
  TORCH_CHECK(dim % 2 == 0 && cos.size(1) == length && cos.size(2) == dim && (cos.size(0) == 1 || cos.size(0) == batch),
              "cos/sin must be [B or 1, T, D] for x [B, T, H, D], D even");
  auto out = torch::empty_like(x);
  const bool shared = cos.size(0) == 1;
  if (bf16)
    rope_impl<BF16>(ptr<uint16_t>(x), ptr<uint16_t>(cos), ptr<uint16_t>(sin), ptr<uint16_t>(out), batch, length, heads,
                    dim, shared);
  else
    rope_impl<F32>(ptr<float>(x), ptr<float>(cos), ptr<float>(sin), ptr<float>(out), batch, length, heads, dim, shared);
  return out;
}

// softmax(scale q k^T + mask) v for q [B, H, Tq, D], k and v [B, KV, Tk, D] (H a multiple of KV: query head h uses
// key/value head h / (H / KV)); mask: a boolean [B or 1, 1, Tq, Tk] tensor of allowed keys, or None for causal
// attention (query i sees keys 0 .. i + Tk - Tq). Scores, softmax and the weighted sum in float32; with bfloat16
// operands on a CPU with AVX512-BF16, the scores and the weighted sum run as bfloat16 pair dot products (float32
// sums), the weights rounded to bfloat16 first, as torch's own CPU attention kernel rounds them. Returns
// [B, Tq, H, D] in q's dtype, the layout transformers' attention functions return.
torch::Tensor attention(torch::Tensor q, torch::Tensor k, torch::Tensor v, c10::optional<torch::Tensor> mask,
                        double scale) {
  const auto dtype = q.scalar_type();
  const bool bf16 = is_bf16(q);
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, "q, k, v must be [B, heads, T, D]");
  for (const auto* t : {&q, &k, &v}) {
    TORCH_CHECK(t->device().is_cpu() && t->scalar_type() == dtype, "q, k, v must be CPU tensors of one dtype");
    TORCH_CHECK(t->stride(3) == 1, "q, k, v must be contiguous in their last dimension");
  }
  AttentionArgs a{};
  a.B = q.size(0); a.H = q.size(1); a.Tq = q.size(2); a.D = q.size(3); a.KV = k.size(1); a.Tk = k.size(2);
  TORCH_CHECK(k.size(0) == a.B && v.sizes() == k.sizes() && k.size(3) == a.D, "k and v must be [B, KV, Tk, D] for q [B, H, Tq, D]");
  TORCH_CHECK(a.KV > 0 && a.H % a.KV == 0, "the query heads must be a multiple of the key/value heads");
  TORCH_CHECK(a.D % kLanes == 0, "the head dimension must be a multiple of 16");
  torch::Tensor m;
  if (mask.has_value()) {
    m = *mask;
    TORCH_CHECK(m.scalar_type() == at::kBool && m.device().is_cpu() && m.dim() == 4 && m.size(1) == 1 &&
                    (m.size(0) == 1 || m.size(0) == a.B) && m.size(2) == a.Tq && m.size(3) == a.Tk,
                "mask must be a boolean [B or 1, 1, Tq, Tk] tensor");
    a.mask = reinterpret_cast<const uint8_t*>(m.data_ptr());
    a.ms[0] = m.size(0) == 1 ? 0 : m.stride(0);
    a.ms[1] = m.stride(2);
    a.ms[2] = m.stride(3);
  } else {
    TORCH_CHECK(a.Tq <= a.Tk, "causal attention needs at least as many keys as queries");
  }
  for (int d = 0; d < 3; ++d) {
    a.qs[d] = q.stride(d);
    a.ks[d] = k.stride(d);
    a.vs[d] = v.stride(d);
  }
  a.q = q.data_ptr(); a.k = k.data_ptr(); a.v = v.data_ptr();
  a.scale = static_cast<float>(scale);
  auto out = torch::empty({a.B, a.Tq, a.H, a.D}, q.options());
  a.out = out.data_ptr();
  if (bf16)
    attention_impl<BF16>(a);
  else
    attention_impl<F32>(a);
  return out;
}

// silu(gate) * up for gate and up of one shape (the MLP's act_fn(gate_proj(x)) * up_proj(x)); a new tensor.
torch::Tensor silu_mul(torch::Tensor gate, torch::Tensor up) {
  const auto dtype = gate.scalar_type();
  const bool bf16 = is_bf16(gate);
  TORCH_CHECK(gate.device().is_cpu() && up.device().is_cpu() && up.scalar_type() == dtype && gate.sizes() == up.sizes(),
              "gate and up must be CPU tensors of one shape and dtype");
  gate = gate.contiguous();
  up = up.contiguous();
  auto out = torch::empty_like(gate);
  const int64_t n = gate.dim() == 0 ? 1 : gate.size(-1), rows = n == 0 ? 0 : gate.numel() / n;
  if (rows == 0) return out;
  if (bf16)
    silu_mul_impl<BF16>(ptr<uint16_t>(gate), ptr<uint16_t>(up), ptr<uint16_t>(out), rows, n);
  else
    silu_mul_impl<F32>(ptr<float>(gate), ptr<float>(up), ptr<float>(out), rows, n);
  return out;
}

// (log_softmax(logits.float())[i, targets[i]], whether targets[i] is row i's argmax) for logits [N, vocab]
// (contiguous float32 or bfloat16) and targets [N] (int64): float32 and bool tensors of N values.
std::vector<torch::Tensor> log_softmax_at(torch::Tensor logits, torch::Tensor targets) {
  const bool bf16 = is_bf16(logits);
  check_operand(logits, "logits", logits.scalar_type());
  check_operand(targets, "targets", at::kLong);
  TORCH_CHECK(logits.dim() == 2 && targets.dim() == 1 && targets.size(0) == logits.size(0),
              "logits must be [N, vocab] and targets [N]");
  const int64_t rows = logits.size(0), n = logits.size(1);
  const int64_t* t = targets.data_ptr<int64_t>();
  for (int64_t i = 0; i < rows; ++i) TORCH_CHECK(t[i] >= 0 && t[i] < n, "target ", t[i], " out of range");
  auto lp = torch::empty({rows}, logits.options().dtype(at::kFloat));
  auto greedy = torch::empty({rows}, logits.options().dtype(at::kBool));
  float* out = lp.data_ptr<float>();
  bool* best = greedy.data_ptr<bool>();
  const void* x = logits.data_ptr();
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      if (bf16)
        log_softmax_row<BF16>(static_cast<const uint16_t*>(x) + i * n, n, t[i], out + i, best + i);
      else
        log_softmax_row<F32>(static_cast<const float*>(x) + i * n, n, t[i], out + i, best + i);
    }
  });
  return {lp, greedy};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("rms_norm", &rms_norm, "LlamaRMSNorm over the last dimension");
  m.def("rope", &rope, "rotary position embedding of [B, T, H, D]");
  m.def("log_softmax_at", &log_softmax_at, "log-softmax of each row of logits at one target, and its argmax test");
  m.def("silu_mul", &silu_mul, "silu(gate) * up");
  m.def("attention", &attention, "softmax attention (float32 sums), causal or masked, grouped heads");
}
