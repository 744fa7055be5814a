// Fused element-wise CPU kernels for Llama-style decoder layers (loaded by fused_ops.py).
//
// Each kernel reads its inputs once and writes its output once, where eager PyTorch makes one pass over memory
// per operation (RMSNorm: to(float32), pow, mean, add, rsqrt, mul, to(dtype), mul; rotary embedding: mul, slice,
// neg, cat, mul, add). The arithmetic is the eager one, in the same order and with the same roundings: in
// bfloat16, every intermediate that eager PyTorch stores as a bfloat16 tensor is rounded to bfloat16 here too
// (round to nearest even). The one difference: the order in which RMSNorm's float32 sum of squares is added up
// (16 partial sums), which can move a result by one unit in its last place.
//
// Loops are written with GCC/Clang vector extensions (16 floats), which the compiler maps to AVX-512, AVX2 or
// SSE as the target allows; rows are spread over torch's threads with at::parallel_for (OpenMP).
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <cstdint>
#include <cstring>

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
  v16u u = bits_of(f);
  v16u rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  return (u & 0x7fffffffu) > 0x7f800000u ? (v16u{} + 0x7fc0u) : rounded;
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
};

struct BF16 {
  using T = uint16_t;
  static inline v16f load(const T* p) {
    v16h h;
    std::memcpy(&h, p, sizeof h);
    return float_of(__builtin_convertvector(h, v16u) << 16);
  }
  static inline void store(T* p, v16f f) {
    v16h h = __builtin_convertvector(bf16_bits(f), v16h);
    std::memcpy(p, &h, sizeof h);
  }
  static inline v16f round(v16f f) { return float_of(bf16_bits(f) << 16); }
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

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("rms_norm", &rms_norm, "LlamaRMSNorm over the last dimension");
  m.def("rope", &rope, "rotary position embedding of [B, T, H, D]");
}
