// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// PyTorch's CPU random numbers, bit for bit: torch.manual_seed(s) / torch.Generator().manual_seed(s)
// followed by torch.randn(shape, dtype=float32 or float64) on the CPU, and diffusers' draw orders over a
// batch (randn_tensor with one generator, or with a list of generators, one per image).
//                                                                 [docs/reproducibility.md]
//
// The stream, as PyTorch 1.13 (aten/src/ATen) defines it:
//   engine    at::mt19937: Matsumoto-Nishimura MT19937 seeded by init_genrand with the seed's low 32 bits
//             (torch.manual_seed(2^32 + 5) draws what manual_seed(5) draws; initial_seed() keeps all 64).
//   words     random() is one engine output w; random64() is (w1 << 32) | w2 of two consecutive outputs.
//   uniforms  float:  u = (w & (2^24 - 1)) * 2^-24           in [0, 1), one word each
//             double: u = (random64() & (2^53 - 1)) * 2^-53  in [0, 1), two words each
//   randn of n elements, contiguous (what randn always makes):
//     n < 16   the scalar path, in double whatever the dtype: each pair draws two double uniforms u1, u2,
//              r = sqrt(-2 ln(1 - u2)), theta = 2 pi u1; it returns r cos(theta) and keeps r sin(theta) in
//              the generator for the next normal drawn on this path (in this call or a later one, until
//              the next manual_seed); each value is rounded to the dtype.
//     n >= 16  the vectorised path, in the dtype: n uniforms u[0..n) are drawn first; each block of 16,
//              for j < 8, becomes u1 = 1 - u[j], u2 = u[j + 8],
//                out[j] = r cos(theta), out[j + 8] = r sin(theta), r = sqrt(-2 ln u1), theta = 2 pi u2;
//              if 16 does not divide n, 16 fresh uniforms then overwrite the last 16 elements and are
//              transformed as one more block (so such a call draws n + 16 uniforms). The cached normal of
//              the scalar path is neither used nor changed.
//   float32 on this path is computed, on x86 CPUs with AVX2, by PyTorch's AVX2 kernel: Cephes-style
//   polynomials for ln, sin and cos (avx_mathfun.h) as GCC compiles them for Debian's build, i.e. with
//   its multiply-add pairs fused (TorchNormalKernel::avx2, the default). Elsewhere (no AVX2, aarch64,
//   ATEN_CPU_CAPABILITY=default) it calls the C library's logf, cosf and sinf (TorchNormalKernel::libm).
//   float64 always uses the C library's log, cos and sin, as does the scalar path.
//
// This header emulates each step with the same operations in the same order (the multiply-adds that
// GCC fuses as explicit std::fma), so the results do not depend on how ddpm itself is compiled. Where
// PyTorch calls the C library, so does this header: the values are PyTorch's when both link the same
// libm (the same glibc, as on one Debian system); another C library may differ in the last bit.

#include <array>
#include <bit>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "ddpm/error.hpp"
#include "ddpm/tensor.hpp"

namespace ddpm {

/// PyTorch's at::mt19937: MT19937 (Matsumoto and Nishimura, 1998) seeded by init_genrand with the low
/// 32 bits of the seed:
///   state[0] = seed mod 2^32,  state[j] = 1812433253 (state[j-1] xor (state[j-1] >> 30)) + j  (mod 2^32)
/// and the standard twist and tempering, so its outputs are std::mt19937's for the same 32-bit seed.
class TorchMT19937 {
 public:
  static constexpr int kStateSize = 624;
  static constexpr int kShift = 397;
  static constexpr std::uint64_t kDefaultSeed = 5489;

  explicit TorchMT19937(std::uint64_t seed = kDefaultSeed) noexcept : seed_(seed) {
    state_[0] = static_cast<std::uint32_t>(seed);
    for (int j = 1; j < kStateSize; ++j) {
      const std::uint32_t prev = state_[static_cast<std::size_t>(j - 1)];
      state_[static_cast<std::size_t>(j)] = 1812433253u * (prev ^ (prev >> 30)) + static_cast<std::uint32_t>(j);
    }
  }

  /// The next 32-bit output.
  std::uint32_t operator()() noexcept {
    if (--left_ == 0) next_state();
    std::uint32_t y = state_[static_cast<std::size_t>(next_++)];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
  }

  /// The seed as given (all 64 bits), as torch.Generator.initial_seed() reports it.
  std::uint64_t seed() const noexcept { return seed_; }

 private:
  static constexpr std::uint32_t twist(std::uint32_t u, std::uint32_t v) noexcept {
    const std::uint32_t mixed = (u & 0x80000000u) | (v & 0x7fffffffu);
    return (mixed >> 1) ^ ((v & 1u) != 0 ? 0x9908b0dfu : 0u);
  }

  void next_state() noexcept {
    constexpr auto n = static_cast<std::size_t>(kStateSize);
    constexpr auto m = static_cast<std::size_t>(kShift);
    for (std::size_t k = 0; k < n; ++k) state_[k] = state_[(k + m) % n] ^ twist(state_[k], state_[(k + 1) % n]);
    left_ = kStateSize;
    next_ = 0;
  }

  std::array<std::uint32_t, kStateSize> state_{};
  std::uint64_t seed_;
  int left_ = 1;
  int next_ = 0;
};

/// Which computation PyTorch's float32 randn uses for 16 or more elements (docs/reproducibility.md).
enum class TorchNormalKernel {
  avx2,  ///< x86 CPUs with AVX2 (PyTorch 1.13 picks it on AVX-512 CPUs too): avx_mathfun polynomials
  libm,  ///< no AVX2 (aarch64, old x86, ATEN_CPU_CAPABILITY=default): the C library's logf, cosf, sinf
};

namespace detail {

inline constexpr int kTorchBlock = 16;  // PyTorch's normal_fill block: 8 radii, 8 angles

/// float uniform of PyTorch (uniform_real_distribution<float>): the low 24 bits of a word times 2^-24.
inline float torch_uniform_float(std::uint32_t w) noexcept { return static_cast<float>(w & 0xFFFFFFu) * 0x1p-24f; }

/// double uniform of PyTorch (uniform_real_distribution<double>): the low 53 bits of random64() times 2^-53.
inline double torch_uniform_double(std::uint64_t w) noexcept {
  return static_cast<double>(w & ((std::uint64_t{1} << 53) - 1)) * 0x1p-53;
}

/// ln x for x in (0, 1] as PyTorch's AVX2 kernel computes it (log256_ps of avx_mathfun.h, the Cephes
/// logf polynomial, with the multiply-adds GCC fuses under -mfma written as std::fma):
///   x = 2^e m, m in [1/2, 1); if m < sqrt(1/2) then e -= 1, f = 2m - 1 else f = m - 1;
///   ln x = f + (f^3 P(f) + e q1 - f^2 / 2) + e q2,  q1 + q2 = ln 2.
/// Precondition: x is a positive normal float (1 - u for a PyTorch float uniform u always is).
inline float torch_avx2_log(float x) noexcept {
  constexpr std::array<float, 9> kP{7.0376836292E-2f,  -1.1514610310E-1f, 1.1676998740E-1f,
                                    -1.2420140846E-1f, 1.4249322787E-1f,  -1.6668057665E-1f,
                                    2.0000714765E-1f,  -2.4999993993E-1f, 3.3333331174E-1f};
  constexpr float kQ1 = -2.12194440e-4f;
  constexpr float kQ2 = 0.693359375f;
  constexpr auto kSqrtHalf = static_cast<float>(0.707106781186547524);
  const auto bits = std::bit_cast<std::uint32_t>(x);
  const auto exponent = static_cast<std::int32_t>(bits >> 23);
  const float m = std::bit_cast<float>((bits & ~0x7f800000u) | std::bit_cast<std::uint32_t>(0.5f));
  float e = static_cast<float>(exponent - 0x7f) + 1.0f;
  const bool below = m < kSqrtHalf;
  float f = m - 1.0f;
  if (below) e = e - 1.0f;
  f = f + (below ? m : 0.0f);
  const float z = f * f;
  float y = kP[0];
  for (std::size_t k = 1; k < kP.size(); ++k) y = std::fma(y, f, kP[k]);
  y = y * f;
  y = std::fma(y, z, e * kQ1);
  y = std::fma(-z, 0.5f, y);
  f = f + y;
  return std::fma(e, kQ2, f);
}

/// sin x and cos x for x in [0, 2 pi) as PyTorch's AVX2 kernel computes them (sincos256_ps of
/// avx_mathfun.h, Cephes sinf/cosf): j = the even integer nearest above trunc(4x / pi), x -= j pi/4 in
/// three parts (fused), then the Cephes sine and cosine polynomials on [-pi/4, pi/4] chosen and signed by j.
inline void torch_avx2_sincos(float x, float& sin_out, float& cos_out) noexcept {
  constexpr float kFourOverPi = 1.27323954473516f;
  constexpr float kDP1 = -0.78515625f, kDP2 = -2.4187564849853515625e-4f, kDP3 = -3.77489497744594108e-8f;
  constexpr float kS0 = -1.9515295891E-4f, kS1 = 8.3321608736E-3f, kS2 = -1.6666654611E-1f;
  constexpr float kC0 = 2.443315711809948E-005f, kC1 = -1.388731625493765E-003f, kC2 = 4.166664568298827E-002f;
  const std::uint32_t sign_in = std::bit_cast<std::uint32_t>(x) & 0x80000000u;
  x = std::fabs(x);
  auto j = static_cast<std::int32_t>(x * kFourOverPi);  // truncation, as cvttps2dq
  j = (j + 1) & ~1;
  const auto y = static_cast<float>(j);
  const std::uint32_t sin_sign = sign_in ^ (static_cast<std::uint32_t>(j & 4) << 29);
  const std::uint32_t cos_sign = static_cast<std::uint32_t>(~(j - 2) & 4) << 29;
  const bool sine_polynomial_for_sin = (j & 2) == 0;
  x = std::fma(y, kDP1, x);
  x = std::fma(y, kDP2, x);
  x = std::fma(y, kDP3, x);
  const float z = x * x;
  float c = std::fma(kC0, z, kC1);
  c = std::fma(c, z, kC2);
  c = c * z;
  c = std::fma(c, z, -(z * 0.5f));
  c = c + 1.0f;
  float s = std::fma(kS0, z, kS1);
  s = std::fma(s, z, kS2);
  s = s * z;
  s = std::fma(s, x, x);
  const float sin_value = sine_polynomial_for_sin ? s : c;
  const float cos_value = sine_polynomial_for_sin ? c : s;
  sin_out = std::bit_cast<float>(std::bit_cast<std::uint32_t>(sin_value) ^ sin_sign);
  cos_out = std::bit_cast<float>(std::bit_cast<std::uint32_t>(cos_value) ^ cos_sign);
}

/// One block of PyTorch's normal_fill: 16 uniforms in place become 16 normals (mean 0, std 1, whose
/// `* 1 + 0` PyTorch still applies: it turns a -0 into +0).
template <class S>
inline void torch_normal_block(S* data, TorchNormalKernel kernel) noexcept {
  constexpr double kPi = 3.141592653589793238462643383279502884;
  for (int j = 0; j < kTorchBlock / 2; ++j) {
    const S u1 = S(1) - data[j];  // [0, 1) -> (0, 1] for the logarithm
    const S u2 = data[j + kTorchBlock / 2];
    S radius, sin_theta, cos_theta;
    if constexpr (std::is_same_v<S, float>) {
      if (kernel == TorchNormalKernel::avx2) {
        radius = std::sqrt(-2.0f * torch_avx2_log(u1));
        torch_avx2_sincos(static_cast<float>(2.0 * kPi) * u2, sin_theta, cos_theta);
      } else {
        radius = std::sqrt(-2.0f * std::log(u1));
        const auto theta = static_cast<float>(2.0 * kPi * static_cast<double>(u2));
        sin_theta = std::sin(theta);
        cos_theta = std::cos(theta);
      }
    } else {
      radius = std::sqrt(-2.0 * std::log(u1));
      const double theta = 2.0 * kPi * u2;
      sin_theta = std::sin(theta);
      cos_theta = std::cos(theta);
    }
    data[j] = radius * cos_theta + S(0);
    data[j + kTorchBlock / 2] = radius * sin_theta + S(0);
  }
}

}  // namespace detail

/// A PyTorch CPU generator (at::CPUGeneratorImpl): the same numbers as torch.Generator() /
/// torch.manual_seed for torch.randn (both paths, float and double; see the top of this header and
/// docs/reproducibility.md), torch.rand and the raw words. A noise source: noise(x) fills x as
/// torch.randn(x.shape, generator=g, dtype=x's) would, so a sampler's x_T and per-step noise follow
/// one PyTorch generator. Consecutive calls continue the stream as PyTorch does, including the normal
/// that the scalar path (fewer than 16 elements) keeps for the next call.
///   TorchGenerator g(42);  g(x_T);   // torch.randn(x_T.shape, generator=torch.Generator().manual_seed(42))
/// Not thread-safe (PyTorch locks its generator; give each thread its own).
class TorchGenerator {
 public:
  /// The seed of a torch.Generator() that was never seeded (default_rng_seed_val).
  static constexpr std::uint64_t kDefaultSeed = 67280421310721ull;

  explicit TorchGenerator(std::uint64_t seed = kDefaultSeed,
                          TorchNormalKernel kernel = TorchNormalKernel::avx2) noexcept
      : engine_(seed), kernel_(kernel) {}

  /// torch.Generator.manual_seed(seed): restarts the engine and forgets the kept normal.
  TorchGenerator& manual_seed(std::uint64_t seed) noexcept {
    engine_ = TorchMT19937(seed);
    next_normal_.reset();
    return *this;
  }

  /// torch.Generator.initial_seed(): the last seed, all 64 bits (the engine uses the low 32).
  std::uint64_t initial_seed() const noexcept { return engine_.seed(); }

  TorchNormalKernel kernel() const noexcept { return kernel_; }
  void set_kernel(TorchNormalKernel kernel) noexcept { kernel_ = kernel; }

  /// The normal the scalar path keeps for its next draw (r sin(theta) of its last pair), if any.
  std::optional<double> next_normal() const noexcept { return next_normal_; }

  /// CPUGeneratorImpl::random(): one engine output.
  std::uint32_t random() noexcept { return engine_(); }
  /// CPUGeneratorImpl::random64(): (first << 32) | second of two engine outputs.
  std::uint64_t random64() noexcept {
    const std::uint64_t hi = engine_();
    const std::uint64_t lo = engine_();
    return (hi << 32) | lo;
  }

  /// torch.randn(out.size(), generator=this, dtype=S) into out: the scalar path below 16 elements, the
  /// vectorised one from 16 (see the top of this header).
  template <std::floating_point S>
  void randn(std::span<S> out) {
    static_assert(std::is_same_v<S, float> || std::is_same_v<S, double>,
                  "ddpm::TorchGenerator::randn: float and double only");
    const std::size_t n = out.size();
    if (n < static_cast<std::size_t>(detail::kTorchBlock)) {
      for (S& v : out) v = static_cast<S>(scalar_normal());
      return;
    }
    S* const data = out.data();
    for (S& v : out) v = uniform_of<S>();
    constexpr auto kBlock = static_cast<std::size_t>(detail::kTorchBlock);
    for (std::size_t i = 0; i + kBlock <= n; i += kBlock) detail::torch_normal_block(data + i, kernel_);
    if (n % kBlock != 0) {
      S* const tail = data + (n - kBlock);
      for (std::size_t i = 0; i < kBlock; ++i) tail[i] = uniform_of<S>();
      detail::torch_normal_block(tail, kernel_);
    }
  }

  /// The same as randn (the fill member of a noise source).
  template <std::floating_point S>
  void fill(std::span<S> out) {
    randn(out);
  }

  /// A noise source: fills a Tensor, TensorMap or any MutableDenseTensor in memory order as one
  /// torch.randn of its shape (row-major, as a contiguous PyTorch tensor).
  template <MutableDenseTensor T>
  void operator()(T&& out) {
    randn(std::span<scalar_t<T>>(out.data(), static_cast<std::size_t>(out.size())));
  }

  /// torch.rand(out.size(), generator=this, dtype=S): uniforms in [0, 1) (0 included, as in PyTorch),
  /// 24 bits from one word for float, 53 bits from two for double.
  template <std::floating_point S>
  void rand(std::span<S> out) {
    static_assert(std::is_same_v<S, float> || std::is_same_v<S, double>,
                  "ddpm::TorchGenerator::rand: float and double only");
    for (S& v : out) v = uniform_of<S>();
  }

  /// The uniform member of a noise source: torch.rand(n, dtype=torch.float64). Unlike
  /// NoiseSource::uniform its values lie in [0, 1): 0 comes with probability 2^-53 per value.
  void uniform(std::span<double> out) { rand(out); }

 private:
  template <class S>
  S uniform_of() noexcept {
    if constexpr (std::is_same_v<S, float>) {
      return detail::torch_uniform_float(random());
    } else {
      return detail::torch_uniform_double(random64());
    }
  }

  /// at::normal_distribution<double>(0, 1): the kept normal if there is one, else a new pair.
  double scalar_normal() noexcept {
    if (next_normal_) {
      const double kept = *next_normal_;
      next_normal_.reset();
      return kept * 1.0 + 0.0;
    }
    constexpr double kPi = 3.141592653589793238462643383279502884;
    const double u1 = uniform_of<double>();
    const double u2 = uniform_of<double>();
    const double r = std::sqrt(-2.0 * std::log(1.0 - u2));
    const double theta = 2.0 * kPi * u1;
    next_normal_ = r * std::sin(theta);
    return r * std::cos(theta) * 1.0 + 0.0;
  }

  TorchMT19937 engine_;
  std::optional<double> next_normal_;
  TorchNormalKernel kernel_;
};

/// diffusers' randn_tensor(shape, generator=[g_0, ..., g_{B-1}]) as a noise source: slice b of
/// dimension 0 (image b) is torch.randn((1,) + shape[1:], generator=g_b), so an image's noise depends
/// only on its own generator (its seed), not on the batch it is drawn in. Which path PyTorch takes (fewer
/// or at least 16 elements) is decided per image. With one generator this is the same as using it alone.
///   TorchGenerators gens = TorchGenerators::from_seeds({0, 1, 2});  sample(sampler, model, x_T, gens);
class TorchGenerators {
 public:
  /// Throws ddpm::invalid_argument if there are no generators.
  explicit TorchGenerators(std::vector<TorchGenerator> generators) : generators_(std::move(generators)) {
    if (generators_.empty()) {
      detail::throw_invalid_argument(
          "ddpm::TorchGenerators: generators is empty, but must hold one generator per image");
    }
  }

  /// One generator per seed, as [torch.Generator().manual_seed(s) for s in seeds].
  /// Throws ddpm::invalid_argument if seeds is empty.
  static TorchGenerators from_seeds(std::span<const std::uint64_t> seeds,
                                    TorchNormalKernel kernel = TorchNormalKernel::avx2) {
    std::vector<TorchGenerator> generators;
    generators.reserve(seeds.size());
    for (const std::uint64_t seed : seeds) generators.emplace_back(seed, kernel);
    return TorchGenerators(std::move(generators));
  }
  static TorchGenerators from_seeds(std::initializer_list<std::uint64_t> seeds,
                                    TorchNormalKernel kernel = TorchNormalKernel::avx2) {
    return from_seeds(std::span<const std::uint64_t>(seeds.begin(), seeds.size()), kernel);
  }

  std::size_t size() const noexcept { return generators_.size(); }
  TorchGenerator& operator[](std::size_t b) noexcept { return generators_[b]; }
  const TorchGenerator& operator[](std::size_t b) const noexcept { return generators_[b]; }

  /// Fills out (batch-first, row-major) image by image, slice b from generator b.
  /// Throws ddpm::invalid_argument if out is of rank 0 or its dimension 0 is not size().
  template <MutableDenseTensor T>
  void operator()(T&& out) {
    constexpr int kRank = rank_v<T>;
    if constexpr (kRank == 0) {
      detail::throw_invalid_argument("ddpm::TorchGenerators: the tensor has rank 0, but needs a batch dimension");
    } else {
      const auto batch = static_cast<std::size_t>(out.dimension(0));
      if (batch != generators_.size()) {
        detail::throw_invalid_argument("ddpm::TorchGenerators: the tensor's batch dimension is " +
                                       ddpm::detail::number_string(batch) + ", but must equal the number of generators, " +
                                       ddpm::detail::number_string(generators_.size()));
      }
      using S = scalar_t<T>;
      const std::size_t per_image = batch == 0 ? 0 : static_cast<std::size_t>(out.size()) / batch;
      for (std::size_t b = 0; b < batch; ++b) {
        generators_[b].randn(std::span<S>(out.data() + b * per_image, per_image));
      }
    }
  }

 private:
  std::vector<TorchGenerator> generators_;
};

/// diffusers' randn_tensor(shape, generator=g, dtype=S) on the CPU: torch.randn(shape, generator=g).
template <std::floating_point S, int R>
Tensor<S, R> randn_tensor(const std::array<Eigen::Index, R>& shape, TorchGenerator& generator) {
  Tensor<S, R> out(shape);
  generator(out);
  return out;
}

/// diffusers' randn_tensor(shape, generator=[g_0, ...], dtype=S) on the CPU: one image per generator.
/// Throws ddpm::invalid_argument if shape[0] differs from generators.size().
template <std::floating_point S, int R>
Tensor<S, R> randn_tensor(const std::array<Eigen::Index, R>& shape, TorchGenerators& generators) {
  Tensor<S, R> out(shape);
  generators(out);
  return out;
}

}  // namespace ddpm
