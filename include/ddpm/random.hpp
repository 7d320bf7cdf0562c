// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// Reproducible standard-normal noise from a counter-based generator.          [docs/math.md, Eq. (19)]
//
// The stream (seed, stream, n) -> z_n is a pure function: normal n of a seed comes from Philox4x32-10 block
// n / 4 (counter = the 64-bit block index in its two low words and the 64-bit stream index in its two high
// words, key = the seed's low and high 32-bit halves). NoiseSource draws stream 0; PerImageNoiseSource gives
// image i of a batch stream i (docs/reproducibility.md).
// Each block's four words w0..w3 become four uniforms and, by Box-Muller, four normals:
//   u_k = (w_k + 1/2) * 2^-32, in (0, 1), never 0 or 1
//   z_{4b+0} = r0 cos(2 pi u1),  z_{4b+1} = r0 sin(2 pi u1),  r0 = sqrt(-2 ln u0)
//   z_{4b+2} = r1 cos(2 pi u3),  z_{4b+3} = r1 sin(2 pi u3),  r1 = sqrt(-2 ln u2)
// The uniforms are exact in double. Float rounds them to 24 bits, except that ln u for u near 1 is taken
// from 1 - u = (~w + 1/2) * 2^-32, so that small radii keep float precision too. The logarithm and the
// sine and cosine are this header's own polynomials, within about 2 ulp (2.4 for the float logarithm,
// counting the rounding of u). Hence float and double streams come from the same uniforms and differ only
// by rounding, and, as every number is a function of its index alone, a fill gives the same values however
// a tensor is split, chunked or threaded. The radius is bounded by sqrt(-2 ln 2^-33) = 6.76, the largest
// a 32-bit uniform allows; |z| > 6.76 has probability 1.3e-11, invisible at any realistic sample size.
//
// Speed: numbers are made 256 at a time (one out-of-line function, so a number cannot depend on how a
// caller was compiled around it). The Philox rounds use the 32x32->64-bit multiply instructions of
// AVX-512 or AVX2 when the compiler targets them (a portable path gives the same words), and the
// logarithm and sine/cosine run in loops that GCC and clang vectorise: about 1.2 G floats/s per core
// with AVX-512.

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <type_traits>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include "ddpm/error.hpp"
#include "ddpm/tensor.hpp"

namespace ddpm {

/// Philox4x32-10, the counter-based generator of Salmon et al. (2011), "Parallel random numbers: as easy
/// as 1, 2, 3": a keyed bijection of 128-bit counters, bit-compatible with Random123's philox4x32_10.
/// Each of its 10 rounds multiplies two counter words by fixed odd constants and mixes the 64-bit
/// products' halves with the other two words and the round key; the key advances by a Weyl sequence.
struct Philox4x32 {
  using Counter = std::array<std::uint32_t, 4>;
  using Key = std::array<std::uint32_t, 2>;

  static constexpr int kRounds = 10;
  static constexpr std::uint32_t kMultiplier0 = 0xD2511F53u;
  static constexpr std::uint32_t kMultiplier1 = 0xCD9E8D57u;
  static constexpr std::uint32_t kWeyl0 = 0x9E3779B9u;  // golden ratio
  static constexpr std::uint32_t kWeyl1 = 0xBB67AE85u;  // sqrt(3) - 1

  /// The 10-round bijection: the generator's output block for one counter under one key.
  static constexpr Counter generate(Counter counter, Key key) noexcept {
    for (int round = 0; round < kRounds; ++round) {
      const std::uint64_t p0 = std::uint64_t{kMultiplier0} * counter[0];
      const std::uint64_t p1 = std::uint64_t{kMultiplier1} * counter[2];
      counter = {static_cast<std::uint32_t>(p1 >> 32) ^ counter[1] ^ key[0], static_cast<std::uint32_t>(p1),
                 static_cast<std::uint32_t>(p0 >> 32) ^ counter[3] ^ key[1], static_cast<std::uint32_t>(p0)};
      key = {key[0] + kWeyl0, key[1] + kWeyl1};
    }
    return counter;
  }
};

namespace detail {

inline constexpr std::size_t kNormalChunk = 256;                       // normals made together (64 Philox blocks)
inline constexpr std::size_t kChunkBlocks = kNormalChunk / 4;          // Philox blocks per chunk
inline constexpr std::size_t kChunkPairs = kNormalChunk / 2;           // Box-Muller pairs per chunk
inline constexpr std::size_t kParallelNormals = std::size_t{1} << 16;  // OpenMP pays off from here

inline constexpr Philox4x32::Key philox_key(std::uint64_t seed) noexcept {
  return {static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32)};
}

/// The Philox words of one chunk in Box-Muller pair order: pair 2j + h of the chunk takes its radius word
/// from word 2h of the chunk's block j and its angle word from word 2h + 1.
struct alignas(64) ChunkWords {
  std::uint32_t radius[kChunkPairs];
  std::uint32_t angle[kChunkPairs];
};

/// The words of chunk `chunk` (blocks 64 * chunk .. 64 * chunk + 63) of stream `stream`, one block at a time:
/// block k has the counter (k mod 2^32, k / 2^32, stream mod 2^32, stream / 2^32).
inline void philox_chunk_portable(std::uint64_t chunk, Philox4x32::Key key, ChunkWords& words,
                                  std::uint64_t stream = 0) noexcept {
  const std::uint64_t first = chunk * kChunkBlocks;
  const auto s0 = static_cast<std::uint32_t>(stream), s1 = static_cast<std::uint32_t>(stream >> 32);
  for (std::size_t j = 0; j < kChunkBlocks; ++j) {
    const std::uint64_t block = first + j;
    const Philox4x32::Counter x =
        Philox4x32::generate({static_cast<std::uint32_t>(block), static_cast<std::uint32_t>(block >> 32), s0, s1}, key);
    words.radius[2 * j] = x[0];
    words.angle[2 * j] = x[1];
    words.radius[2 * j + 1] = x[2];
    words.angle[2 * j + 1] = x[3];
  }
}

// The vector paths keep each counter word zero-extended in a 64-bit lane, one block per lane, so that
// one vpmuludq gives the full 64-bit products (GCC 12 turns a portable 64-bit multiply into the slower
// vpmullq). The high halves of the lanes may carry garbage between rounds: vpmuludq reads only the low
// 32 bits, and only the low 32 bits are stored. The block index of lane l is first + base + l with no
// carry out of the low word, because `first` is a multiple of 64.
#if defined(__AVX512F__)
inline void philox_chunk_avx512(std::uint64_t chunk, Philox4x32::Key key, ChunkWords& words,
                                std::uint64_t stream) noexcept {
  constexpr int kGroups = 4;  // independent groups of 8 blocks in flight, to hide the multiply latency
  // The zero-masking forms with every lane selected compile to the plain instructions; the plain
  // intrinsics' "undefined" pass-through trips GCC 12's -Wuninitialized (GCC PR 105593).
  constexpr __mmask8 kAll = 0xFF;
  const std::uint64_t first = chunk * kChunkBlocks;
  const __m512i m0 = _mm512_set1_epi64(Philox4x32::kMultiplier0);
  const __m512i m1 = _mm512_set1_epi64(Philox4x32::kMultiplier1);
  const __m512i high = _mm512_set1_epi64(static_cast<long long>(first >> 32));
  const __m512i stream_low = _mm512_set1_epi64(static_cast<long long>(stream & 0xFFFFFFFFu));
  const __m512i stream_high = _mm512_set1_epi64(static_cast<long long>(stream >> 32));
  const __m512i lanes = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0);
  for (std::size_t base = 0; base < kChunkBlocks; base += 8 * kGroups) {
    __m512i c0[kGroups], c1[kGroups], c2[kGroups], c3[kGroups];
    for (int g = 0; g < kGroups; ++g) {
      const auto low = static_cast<std::uint32_t>(first) + static_cast<std::uint32_t>(base + 8 * g);
      c0[g] = _mm512_add_epi64(_mm512_set1_epi64(low), lanes);
      c1[g] = high;
      c2[g] = stream_low;
      c3[g] = stream_high;
    }
    std::uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < Philox4x32::kRounds; ++round) {
      const __m512i key0 = _mm512_set1_epi64(k0), key1 = _mm512_set1_epi64(k1);
      for (int g = 0; g < kGroups; ++g) {
        const __m512i p0 = _mm512_maskz_mul_epu32(kAll, c0[g], m0);
        const __m512i p1 = _mm512_maskz_mul_epu32(kAll, c2[g], m1);
        c0[g] = _mm512_ternarylogic_epi64(_mm512_maskz_srli_epi64(kAll, p1, 32), c1[g], key0, 0x96);  // a ^ b ^ c
        c2[g] = _mm512_ternarylogic_epi64(_mm512_maskz_srli_epi64(kAll, p0, 32), c3[g], key1, 0x96);
        c1[g] = p1;
        c3[g] = p0;
      }
      k0 += Philox4x32::kWeyl0;
      k1 += Philox4x32::kWeyl1;
    }
    for (int g = 0; g < kGroups; ++g) {
      const std::size_t pair = 2 * (base + 8 * g);
      // Even 32-bit lanes from words 0/1, odd lanes from words 2/3: the pair order of ChunkWords.
      _mm512_store_si512(words.radius + pair,
                         _mm512_mask_blend_epi32(0xAAAA, c0[g], _mm512_maskz_slli_epi64(kAll, c2[g], 32)));
      _mm512_store_si512(words.angle + pair,
                         _mm512_mask_blend_epi32(0xAAAA, c1[g], _mm512_maskz_slli_epi64(kAll, c3[g], 32)));
    }
  }
}
#endif

#if defined(__AVX2__)
inline void philox_chunk_avx2(std::uint64_t chunk, Philox4x32::Key key, ChunkWords& words,
                              std::uint64_t stream) noexcept {
  constexpr int kGroups = 2;  // groups of 4 blocks in flight (16 ymm registers)
  const std::uint64_t first = chunk * kChunkBlocks;
  const __m256i m0 = _mm256_set1_epi64x(Philox4x32::kMultiplier0);
  const __m256i m1 = _mm256_set1_epi64x(Philox4x32::kMultiplier1);
  const __m256i high = _mm256_set1_epi64x(static_cast<long long>(first >> 32));
  const __m256i stream_low = _mm256_set1_epi64x(static_cast<long long>(stream & 0xFFFFFFFFu));
  const __m256i stream_high = _mm256_set1_epi64x(static_cast<long long>(stream >> 32));
  const __m256i lanes = _mm256_set_epi64x(3, 2, 1, 0);
  for (std::size_t base = 0; base < kChunkBlocks; base += 4 * kGroups) {
    __m256i c0[kGroups], c1[kGroups], c2[kGroups], c3[kGroups];
    for (int g = 0; g < kGroups; ++g) {
      const auto low = static_cast<std::uint32_t>(first) + static_cast<std::uint32_t>(base + 4 * g);
      c0[g] = _mm256_add_epi64(_mm256_set1_epi64x(low), lanes);
      c1[g] = high;
      c2[g] = stream_low;
      c3[g] = stream_high;
    }
    std::uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < Philox4x32::kRounds; ++round) {
      const __m256i key0 = _mm256_set1_epi64x(k0), key1 = _mm256_set1_epi64x(k1);
      for (int g = 0; g < kGroups; ++g) {
        const __m256i p0 = _mm256_mul_epu32(c0[g], m0);
        const __m256i p1 = _mm256_mul_epu32(c2[g], m1);
        c0[g] = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p1, 32), c1[g]), key0);
        c2[g] = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p0, 32), c3[g]), key1);
        c1[g] = p1;
        c3[g] = p0;
      }
      k0 += Philox4x32::kWeyl0;
      k1 += Philox4x32::kWeyl1;
    }
    for (int g = 0; g < kGroups; ++g) {
      const std::size_t pair = 2 * (base + 4 * g);
      _mm256_store_si256(reinterpret_cast<__m256i*>(words.radius + pair),
                         _mm256_blend_epi32(c0[g], _mm256_slli_epi64(c2[g], 32), 0xAA));
      _mm256_store_si256(reinterpret_cast<__m256i*>(words.angle + pair),
                         _mm256_blend_epi32(c1[g], _mm256_slli_epi64(c3[g], 32), 0xAA));
    }
  }
}
#endif

/// The words of one chunk, by the fastest path the compiler targets (all paths give the same words).
[[gnu::noinline]] inline void philox_chunk(std::uint64_t chunk, Philox4x32::Key key, ChunkWords& words,
                                           std::uint64_t stream = 0) noexcept {
#if defined(__AVX512F__)
  philox_chunk_avx512(chunk, key, words, stream);
#elif defined(__AVX2__)
  philox_chunk_avx2(chunk, key, words, stream);
#else
  philox_chunk_portable(chunk, key, words, stream);
#endif
}

/// Bit-level facts and polynomial coefficients of the working precision.
template <class S>
struct NormalMath;

template <>
struct NormalMath<float> {
  using Bits = std::uint32_t;
  using SignedBits = std::int32_t;
  static constexpr int kMantissaBits = 23;
  static constexpr float kRoundMagic = 0x1.8p23f;  // x + 1.5 * 2^23 - 1.5 * 2^23 rounds |x| < 2^22 to an integer
  // ln 2 = kLn2Hi + kLn2Lo, kLn2Hi with 8 trailing zero bits, so e * kLn2Hi is exact for |e| < 256.
  static constexpr float kLn2Hi = 0x1.62e400p-1f;
  static constexpr float kLn2Lo = 0x1.7f7d1cp-20f;
  // ln(1 + f) = f - f^2 / 2 + f^3 p(f) on f in [sqrt(1/2) - 1, sqrt(2) - 1], p of degree 7 fitted to the
  // relative error (iteratively reweighted least squares in float64, then rounded to float): 0.1 ulp from
  // the fit, 1.3 ulp at most evaluated in float. No division (the atanh form needs f / (2 + f), and a
  // vector division costs as much as the rest of the logarithm).
  static constexpr std::array<float, 8> kLog1p{0.3333333134651184f,  -0.2500081956386566f, 0.2000129073858261f,
                                               -0.16623421013355255f, 0.14200645685195923f, -0.13158607482910156f,
                                               0.12767592072486877f,  -0.07645288854837418f};
  // sin(2 pi f) / f and cos(2 pi f) as polynomials in f^2 on |f| <= 1/8 (Taylor; the first omitted terms
  // are below 2e-9 and 1.2e-10 of the result).
  static constexpr std::array<float, 5> kSin{6.28318530717958647693f, -41.341702240399760234f, 81.6052492760750542034f,
                                             -76.7058597530613858416f, 42.058693944897653145f};
  static constexpr std::array<float, 6> kCos{1.0f,
                                             -19.7392088021787172377f,
                                             64.939394022668291491f,
                                             -85.456817206693727736f,
                                             60.2446413718766603627f,
                                             -26.4262567833743974529f};
};

template <>
struct NormalMath<double> {
  using Bits = std::uint64_t;
  using SignedBits = std::int64_t;
  static constexpr int kMantissaBits = 52;
  static constexpr double kRoundMagic = 0x1.8p52;
  static constexpr double kLn2Hi = 0x1.62e42fefa0000p-1;  // 16 trailing zero bits
  static constexpr double kLn2Lo = 0x1.cf79abc9e3b3ap-40;
  // Through s^20/21: the first omitted term is below 7e-19 relative.
  static constexpr std::array<double, 10> kAtanh{1.0 / 3,  1.0 / 5,  1.0 / 7,  1.0 / 9,  1.0 / 11,
                                                 1.0 / 13, 1.0 / 15, 1.0 / 17, 1.0 / 19, 1.0 / 21};
  // Through f^17 and f^16: the first omitted terms are below 1.2e-19 and 3e-18 of the result.
  static constexpr std::array<double, 9> kSin{
      6.28318530717958647693,  -41.341702240399760234,   81.6052492760750542034,
      -76.7058597530613858416, 42.058693944897653145,    -15.0946425768229903918,
      3.81995258484828212773,  -0.718122301778500512232, 0.104229162208139841173};
  static constexpr std::array<double, 9> kCos{1.0,
                                              -19.7392088021787172377,
                                              64.939394022668291491,
                                              -85.456817206693727736,
                                              60.2446413718766603627,
                                              -26.4262567833743974529,
                                              7.90353637131846880421,
                                              -1.71439071108867206542,
                                              0.28200596845579121507};
};

/// c[I] + x (c[I+1] + x (...)), unrolled at compile time (an inner loop would stop clang vectorising).
template <std::size_t I = 0, class S, std::size_t N>
inline S horner(S x, const std::array<S, N>& c) noexcept {
  if constexpr (I + 1 == N) {
    return c[I];
  } else {
    return horner<I + 1>(x, c) * x + c[I];
  }
}

/// u = (w + 1/2) * 2^-32 in the working precision: in (0, 1) in double, in (0, 1] in float.
template <class S>
inline S unit_uniform(std::uint32_t w) noexcept {
  return static_cast<S>(w) * S(0x1p-32) + S(0x1p-33);  // a fused multiply-add rounds the same: w * 2^-32 is exact
}

/// -2 ln u for the uniform u = (w + 1/2) 2^-32 of word w, within a few ulp of the exact value.
template <class S>
inline S minus_two_log_uniform(std::uint32_t w) noexcept {
  using M = NormalMath<S>;
  using Bits = typename M::Bits;
  // u = 2^e * m with m in [sqrt(1/2), sqrt(2)): subtracting sqrt(1/2)'s bits moves that interval's start
  // onto an exponent boundary, so the shifted exponent field is e and the rest rebuilds m exactly.
  constexpr Bits kSqrtHalf = std::bit_cast<Bits>(S(0.707106781186547524400844362104849039L));
  constexpr Bits kMantissaMask = (Bits{1} << M::kMantissaBits) - 1;
  const Bits shifted = std::bit_cast<Bits>(unit_uniform<S>(w)) - kSqrtHalf;
  const auto e = static_cast<std::int32_t>(static_cast<typename M::SignedBits>(shifted) >> M::kMantissaBits);
  const S m = std::bit_cast<S>((shifted & kMantissaMask) + kSqrtHalf);
  // f = m - 1. When e = 0 it is u - 1 = -(~w + 1/2) 2^-32, taken from the word: a float u near 1 has lost
  // the low bits that f (and so a small radius) needs. In double both forms are exact and equal.
  const S f_word = -unit_uniform<S>(~w);
  const S f_mantissa = m - S(1);                 // exact (Sterbenz)
  const Bits use_word = Bits{0} - Bits{e == 0};  // a bit mask: GCC does not if-convert a select of floats here
  const S f =
      std::bit_cast<S>((std::bit_cast<Bits>(f_word) & use_word) | (std::bit_cast<Bits>(f_mantissa) & ~use_word));
  S log_m;
  if constexpr (std::is_same_v<S, float>) {
    log_m = f + (f * f) * (S(-0.5) + f * horner(f, M::kLog1p));
  } else {
    const S s = f / (f + S(2));
    const S z = s * s;
    const S two_s = s + s;
    log_m = two_s + two_s * z * horner(z, M::kAtanh);
  }
  const S ef = static_cast<S>(e);
  return S(-2) * (ef * M::kLn2Hi + (ef * M::kLn2Lo + log_m));
}

/// sin(2 pi u) and cos(2 pi u) for u in [0, 1], within a few ulp.
template <class S>
inline void sincos_two_pi(S u, S& sin_out, S& cos_out) noexcept {
  using M = NormalMath<S>;
  using Bits = typename M::Bits;
  // Reduce to f = u - q/4 with q the integer nearest 4u (|f| <= 1/8, computed exactly), then rotate by
  // q quarter turns: swap sine and cosine for odd q, and flip their signs by q's second bit.
  const S shifted = u * S(4) + M::kRoundMagic;
  const S q = shifted - M::kRoundMagic;
  const Bits quadrant = std::bit_cast<Bits>(shifted);  // the low bits of the mantissa hold q
  const S f = u - q * S(0.25);
  const S z = f * f;
  const S s = f * horner(z, M::kSin);
  const S c = horner(z, M::kCos);
  const bool odd = (quadrant & 1) != 0;
  constexpr int kSignShift = int(sizeof(Bits)) * 8 - 2;
  const Bits sin_sign = (quadrant & 2) << kSignShift;
  const Bits cos_sign = ((quadrant + 1) & 2) << kSignShift;
  sin_out = std::bit_cast<S>(std::bit_cast<Bits>(odd ? c : s) ^ sin_sign);
  cos_out = std::bit_cast<S>(std::bit_cast<Bits>(odd ? s : c) ^ cos_sign);
}

/// x[i] = sqrt(x[i]) for a 64-byte aligned block of kChunkPairs values. Square roots are correctly
/// rounded on every path; intrinsics stand in for std::sqrt, whose errno handling (-fmath-errno, the
/// default) keeps GCC and clang from vectorising it.
template <class S>
inline void sqrt_in_place(S* x) noexcept {
  static_assert(kChunkPairs % 16 == 0);
#if defined(__AVX512F__)
  constexpr __mmask16 kAll16 = 0xFFFF;  // zero-masking forms: see philox_chunk_avx512
  constexpr __mmask8 kAll8 = 0xFF;
  if constexpr (std::is_same_v<S, float>) {
    for (std::size_t i = 0; i < kChunkPairs; i += 16) {
      _mm512_store_ps(x + i, _mm512_maskz_sqrt_ps(kAll16, _mm512_load_ps(x + i)));
    }
  } else {
    for (std::size_t i = 0; i < kChunkPairs; i += 8) {
      _mm512_store_pd(x + i, _mm512_maskz_sqrt_pd(kAll8, _mm512_load_pd(x + i)));
    }
  }
#elif defined(__AVX__)
  if constexpr (std::is_same_v<S, float>) {
    for (std::size_t i = 0; i < kChunkPairs; i += 8) _mm256_store_ps(x + i, _mm256_sqrt_ps(_mm256_load_ps(x + i)));
  } else {
    for (std::size_t i = 0; i < kChunkPairs; i += 4) _mm256_store_pd(x + i, _mm256_sqrt_pd(_mm256_load_pd(x + i)));
  }
#elif defined(__SSE2__)
  if constexpr (std::is_same_v<S, float>) {
    for (std::size_t i = 0; i < kChunkPairs; i += 4) _mm_store_ps(x + i, _mm_sqrt_ps(_mm_load_ps(x + i)));
  } else {
    for (std::size_t i = 0; i < kChunkPairs; i += 2) _mm_store_pd(x + i, _mm_sqrt_pd(_mm_load_pd(x + i)));
  }
#else
  for (std::size_t i = 0; i < kChunkPairs; ++i) x[i] = std::sqrt(x[i]);
#endif
}

/// Normals 256 * chunk .. 256 * chunk + 255 of stream `stream` with this key, into a 64-byte aligned buffer:
/// normal 2p is r cos(2 pi u_angle), normal 2p + 1 is r sin(2 pi u_angle), r = sqrt(-2 ln u_radius),
/// from the words of pair p (Box-Muller). Every number is always computed at the same place of this one
/// out-of-line function, so its value cannot depend on how a caller's loop was vectorised, inlined or split.
template <class S>
[[gnu::noinline]] void normal_chunk(std::uint64_t chunk, Philox4x32::Key key, S* out, std::uint64_t stream = 0) noexcept {
  ChunkWords words;
  philox_chunk(chunk, key, words, stream);
  alignas(64) S radius[kChunkPairs];
  for (std::size_t p = 0; p < kChunkPairs; ++p) radius[p] = minus_two_log_uniform<S>(words.radius[p]);
  sqrt_in_place(radius);
  S* const o = std::assume_aligned<64>(out);
  for (std::size_t p = 0; p < kChunkPairs; ++p) {
    S s, c;
    sincos_two_pi(unit_uniform<S>(words.angle[p]), s, c);
    o[2 * p] = radius[p] * c;
    o[2 * p + 1] = radius[p] * s;
  }
}

/// Normals 4 * first_block .. 4 * (first_block + count) - 1 of stream `stream`, block by block with the
/// portable Philox rounds and the same per-number functions as normal_chunk, into out[0 .. 4 count): the
/// same values as the corresponding part of normal_chunk's output (IEEE operations on single values: a
/// vector lane and a scalar give the same result; tests/samplers/per_image_noise.test.cpp compares them).
/// For draws that need a few numbers of a chunk (2-D points), where a whole chunk would make 256.
template <class S>
[[gnu::noinline]] void normal_blocks(std::uint64_t first_block, std::size_t count, Philox4x32::Key key, S* out,
                                     std::uint64_t stream = 0) noexcept {
  const auto s0 = static_cast<std::uint32_t>(stream), s1 = static_cast<std::uint32_t>(stream >> 32);
  for (std::size_t j = 0; j < count; ++j) {
    const std::uint64_t block = first_block + j;
    const Philox4x32::Counter w =
        Philox4x32::generate({static_cast<std::uint32_t>(block), static_cast<std::uint32_t>(block >> 32), s0, s1}, key);
    for (std::size_t h = 0; h < 2; ++h) {
      const S r = std::sqrt(minus_two_log_uniform<S>(w[2 * h]));
      S sin_value, cos_value;
      sincos_two_pi(unit_uniform<S>(w[2 * h + 1]), sin_value, cos_value);
      out[4 * j + 2 * h] = r * cos_value;
      out[4 * j + 2 * h + 1] = r * sin_value;
    }
  }
}

/// Draws of at most this many numbers of a chunk are made block by block (normal_blocks), not as a chunk.
inline constexpr std::uint64_t kSmallDraw = 16;

template <class S>
inline constexpr bool is_generated_scalar_v = std::is_same_v<S, float> || std::is_same_v<S, double>;

/// Throws unless n numbers starting at `offset` fit in the stream: offset + n <= 2^64 - 1, so that the
/// offset after the fill is still representable.
inline void check_stream_range(const char* fn, std::uint64_t offset, std::uint64_t n) {
  if (n > std::numeric_limits<std::uint64_t>::max() - offset) {
    throw_invalid_argument(std::string(fn) + ": " + ddpm::detail::number_string(n) + " numbers from offset " +
                           ddpm::detail::number_string(offset) + " run past the end of the stream (2^64 - 1 numbers)");
  }
}

/// Calls visit(buffer, first, last) for every chunk overlapping positions [offset, offset + n) of stream
/// `stream` of the seed: buffer holds the part of the chunk's 256 normals inside the range, [first, last)
/// its positions relative to `offset`. Chunks are visited on OpenMP threads for large ranges (when compiled
/// with OpenMP); visit must then only write the elements of its own range. Precondition: n > 0 and the range
/// fits in the stream (check_stream_range).
// GCC 12 at -O3, with a constant offset near 2^64 propagated from a caller, warns that some iteration of
// the chunk loop would overflow the caller's pointer (-Waggressive-loop-optimizations); the loop runs only
// after check_stream_range has bounded offset + n, so no such iteration exists.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Waggressive-loop-optimizations"
#endif
template <class S, class Visit>
void for_each_normal_chunk(std::uint64_t seed, std::uint64_t offset, std::uint64_t n, Visit&& visit,
                           std::uint64_t stream = 0) {
  const Philox4x32::Key key = philox_key(seed);
  const std::uint64_t last = offset + (n - 1);  // inclusive, so that the stream's last index does not overflow
  const std::uint64_t chunk_begin = offset / kNormalChunk;
  const std::uint64_t chunks = last / kNormalChunk - chunk_begin + 1;
  auto run = [&](std::uint64_t k) {
    alignas(64) S buffer[kNormalChunk];
    const std::uint64_t chunk = chunk_begin + k;
    normal_chunk<S>(chunk, key, buffer, stream);
    const std::uint64_t start = chunk * kNormalChunk;
    const std::uint64_t lo = std::max(start, offset) - offset;
    const std::uint64_t hi = std::min(start + (kNormalChunk - 1), last) - offset + 1;
    visit(static_cast<const S*>(buffer) + (offset + lo - start), static_cast<std::size_t>(lo),
          static_cast<std::size_t>(hi));
  };
#ifdef _OPENMP
  if (n >= kParallelNormals) {
    const auto count = static_cast<std::int64_t>(chunks);
#pragma omp parallel for schedule(static)
    for (std::int64_t k = 0; k < count; ++k) run(static_cast<std::uint64_t>(k));
    return;
  }
#endif
  for (std::uint64_t k = 0; k < chunks; ++k) run(k);
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

/// The per-image form of for_each_normal_chunk: for a batch-first buffer of `batch` images of per_sample
/// values each, element b * per_sample + k is number offset + k of stream first_index + b. Calls
/// visit(buffer, first, last) for every (image, chunk) pair, with [first, last) the positions in the whole
/// buffer (never crossing an image). Pairs are visited on OpenMP threads for large batches (when compiled
/// with OpenMP); visit must then only write the elements of its own range. Preconditions: batch > 0,
/// per_sample > 0, the range fits in each stream and first_index + batch - 1 <= 2^64 - 1.
template <class S, class Visit>
void for_each_image_normal_chunk(std::uint64_t seed, std::uint64_t first_index, std::uint64_t offset,
                                 std::uint64_t batch, std::uint64_t per_sample, Visit&& visit) {
  const Philox4x32::Key key = philox_key(seed);
  const std::uint64_t last = offset + (per_sample - 1);
  const std::uint64_t chunk_begin = offset / kNormalChunk;
  const std::uint64_t chunks = last / kNormalChunk - chunk_begin + 1;  // per image
  auto run = [&](std::uint64_t k) {
    const std::uint64_t b = k / chunks, chunk = chunk_begin + k % chunks;
    alignas(64) S buffer[kNormalChunk];
    const std::uint64_t start = chunk * kNormalChunk;
    const std::uint64_t lo = std::max(start, offset) - offset;
    const std::uint64_t hi = std::min(start + (kNormalChunk - 1), last) - offset + 1;
    const S* z;
    if (hi - lo <= kSmallDraw) {  // a few numbers (e.g. a 2-D point): only the blocks holding them
      const std::uint64_t first_block = (offset + lo) / 4, end_block = (offset + hi - 1) / 4 + 1;
      normal_blocks<S>(first_block, static_cast<std::size_t>(end_block - first_block), key, buffer, first_index + b);
      z = buffer + (offset + lo - 4 * first_block);
    } else {
      normal_chunk<S>(chunk, key, buffer, first_index + b);
      z = buffer + (offset + lo - start);
    }
    visit(z, static_cast<std::size_t>(b * per_sample + lo), static_cast<std::size_t>(b * per_sample + hi));
  };
  const std::uint64_t pairs = batch * chunks;
#ifdef _OPENMP
  if (batch * per_sample >= kParallelNormals) {
    const auto count = static_cast<std::int64_t>(pairs);
#pragma omp parallel for schedule(static)
    for (std::int64_t k = 0; k < count; ++k) run(static_cast<std::uint64_t>(k));
    return;
  }
#endif
  for (std::uint64_t k = 0; k < pairs; ++k) run(k);
}

/// out[i] = a[b] * x[i] + c[b] * z[offset + i] for i in [0, batch * per_sample), b = i / per_sample, where z is
/// the standard-normal stream of `seed`: one pass that makes the noise a chunk at a time in a stack buffer
/// and never stores it. Each element goes through the same expression as in lincomb2_per_sample, so the
/// result equals filling a noise tensor and calling lincomb2_per_sample, bit for bit. `out` may alias `x`.
/// Precondition: the stream range fits (check_stream_range).
template <class S>
void lincomb2_normal_per_sample(S* out, PerSample<S> a, const S* x, PerSample<S> c, std::uint64_t seed,
                                std::uint64_t offset, Eigen::Index batch, Eigen::Index per_sample) {
  using Vec = Eigen::Array<S, Eigen::Dynamic, 1>;
  using In = Eigen::Map<const Vec, Eigen::Unaligned>;
  using Out = Eigen::Map<Vec, Eigen::Unaligned>;
  const Eigen::Index total = batch * per_sample;
  if (total == 0) return;
  auto combine = [&](const S* z, std::size_t first, std::size_t last) {
    const auto begin = static_cast<Eigen::Index>(first), end = static_cast<Eigen::Index>(last);
    for (Eigen::Index i = begin; i < end;) {  // one segment per batch element
      const Eigen::Index b = i / per_sample;
      const Eigen::Index stop = std::min(end, (b + 1) * per_sample);
      const S* const y = z + (i - begin);
      if (per_sample < 16) {
        const S ab = a[b], cb = c[b];
        for (Eigen::Index k = 0; k < stop - i; ++k) out[i + k] = ab * x[i + k] + cb * y[k];
      } else {
        const Eigen::Index n = stop - i;
        Out(out + i, n) = a[b] * In(x + i, n) + c[b] * In(y, n);
      }
      i = stop;
    }
  };
  for_each_normal_chunk<S>(seed, offset, static_cast<std::uint64_t>(total), combine);
}

}  // namespace detail

/// Fills `out` with standard-normal numbers: out[i] is number offset + i of stream `stream` of `seed`
/// (Philox4x32-10 and Box-Muller, see the top of this header), so any split of a fill, any chunking and
/// any thread count give the same values. Float and double streams share their uniforms and differ only
/// by rounding. NoiseSource draws stream 0; PerImageNoiseSource draws stream i for image i.
///                                                                           [docs/math.md, Eq. (19)]
/// Throws ddpm::invalid_argument if offset + out.size() exceeds 2^64 - 1 (the stream's length).
template <std::floating_point S>
void fill_normal(std::span<S> out, std::uint64_t seed, std::uint64_t offset = 0, std::uint64_t stream = 0) {
  static_assert(detail::is_generated_scalar_v<S>, "ddpm::fill_normal: float and double only");
  detail::check_stream_range("ddpm::fill_normal", offset, out.size());
  if (out.empty()) return;
  S* const data = out.data();
  detail::for_each_normal_chunk<S>(
      seed, offset, out.size(),
      [data](const S* z, std::size_t first, std::size_t last) { std::memcpy(data + first, z, (last - first) * sizeof(S)); },
      stream);
}

/// Fills a Tensor, TensorMap or any MutableDenseTensor in memory order (see the span overload).
template <MutableDenseTensor T>
void fill_normal(T&& out, std::uint64_t seed, std::uint64_t offset = 0, std::uint64_t stream = 0) {
  fill_normal(std::span<scalar_t<T>>(out.data(), static_cast<std::size_t>(out.size())), seed, offset, stream);
}

/// A seeded standard-normal stream that remembers where it is: each call continues where the last
/// ended, so the numbers drawn do not depend on how the calls split them. Samplers, the reverse loop and
/// q_sample / q_step take one to draw their noise.
///   NoiseSource noise(42);  noise(x_T);  // x_T = numbers 0 .. n-1 of seed 42
class NoiseSource {
 public:
  explicit NoiseSource(std::uint64_t seed, std::uint64_t offset = 0) noexcept : seed_(seed), offset_(offset) {}

  /// Fills out with the next out.size() numbers. Throws ddpm::invalid_argument (and draws nothing) if
  /// they run past the stream's 2^64 - 1 numbers.
  template <MutableDenseTensor T>
  void operator()(T&& out) {
    fill(std::span<scalar_t<T>>(out.data(), static_cast<std::size_t>(out.size())));
  }

  /// Fills a raw span with the next out.size() numbers.
  template <std::floating_point S>
  void fill(std::span<S> out) {
    fill_normal(out, seed_, offset_);
    offset_ += out.size();
  }

  /// Fills out with the next out.size() numbers of the stream as uniforms in (0, 1): u_i = Phi(z_i), the
  /// standard-normal CDF of normal z_i, evaluated in double (0.5 erfc(-z / sqrt 2)). Phi(Z) is uniform
  /// for a standard normal Z, so u_i is uniform up to the stream's own approximation of the normal; as
  /// |z| <= 6.76, every u lies in [7e-12, 1 - 7e-12], never 0 or 1. Advances the stream by out.size()
  /// numbers exactly as a fill would, so normals and uniforms can be interleaved reproducibly (the
  /// timestep samplers of timestep_sampler.hpp draw their timesteps this way).  [docs/training.md]
  /// Throws ddpm::invalid_argument (and draws nothing) if the numbers run past the stream's end.
  void uniform(std::span<double> out) {
    fill(out);
    for (double& u : out) u = 0.5 * std::erfc(u * -0.70710678118654752440);
  }

  std::uint64_t seed() const noexcept { return seed_; }
  /// The stream index of the next number drawn.
  std::uint64_t offset() const noexcept { return offset_; }
  void set_offset(std::uint64_t offset) noexcept { offset_ = offset; }

 private:
  std::uint64_t seed_;
  std::uint64_t offset_;
};

/// A seeded standard-normal source with one stream per image: image b of a batch-first tensor is image
/// first_index() + b, whose numbers are stream first_index() + b of the seed (fill_normal's `stream`), and
/// every draw continues each image's stream where the last ended. So whatever an image draws (x_T, each
/// step's noise) depends only on (seed, image index): an image is the same sampled alone, in any batch, at
/// any position, on any thread count or MPI rank, provided its model output does not depend on its batch
/// mates. A draw of a batch of B images of P values each takes numbers offset() .. offset() + P - 1 of
/// streams first_index() .. first_index() + B - 1, then advances offset() by P.  [docs/reproducibility.md]
///   PerImageNoiseSource noise(42, 100);  noise(x_T);  // x_T[b] = numbers 0 .. P-1 of stream 100 + b
/// A batch of one image with first_index 0 draws what NoiseSource(seed, offset) draws.
class PerImageNoiseSource {
 public:
  explicit PerImageNoiseSource(std::uint64_t seed, std::uint64_t first_index = 0, std::uint64_t offset = 0) noexcept
      : seed_(seed), first_index_(first_index), offset_(offset) {}

  /// Fills out (batch-first: dimension 0 is the batch) with each image's next numbers.
  /// Throws ddpm::invalid_argument (and draws nothing) as check_draw.
  template <MutableDenseTensor T>
  void operator()(T&& out) {
    const auto batch = static_cast<std::size_t>(out.dimension(0));
    fill(std::span<scalar_t<T>>(out.data(), static_cast<std::size_t>(out.size())), batch);
  }

  /// Fills a raw span of `batch` images of out.size() / batch values each (batch-first).
  /// Throws ddpm::invalid_argument (and draws nothing) as check_draw, or if batch does not divide out.size().
  template <std::floating_point S>
  void fill(std::span<S> out, std::size_t batch) {
    static_assert(detail::is_generated_scalar_v<S>, "ddpm::PerImageNoiseSource: float and double only");
    const char* fn = "ddpm::PerImageNoiseSource";
    if (batch == 0 ? !out.empty() : out.size() % batch != 0) {
      detail::throw_invalid_argument(std::string(fn) + ": " + detail::number_string(out.size()) + " values cannot be split into " +
                                     detail::number_string(batch) + " images of equal size");
    }
    if (out.empty()) return;
    const std::size_t per_sample = out.size() / batch;
    check_draw(fn, batch, per_sample);
    S* const data = out.data();
    detail::for_each_image_normal_chunk<S>(
        seed_, first_index_, offset_, batch, per_sample,
        [data](const S* z, std::size_t first, std::size_t last) { std::memcpy(data + first, z, (last - first) * sizeof(S)); });
    offset_ += per_sample;
  }

  /// Throws ddpm::invalid_argument unless a draw of `batch` images of per_sample numbers fits: the image
  /// indices first_index() .. first_index() + batch - 1 do not pass 2^64 - 1, and offset() + per_sample does
  /// not run past the end of a stream. fn names the caller in the message.
  void check_draw(const char* fn, std::uint64_t batch, std::uint64_t per_sample) const {
    if (batch > 0 && batch - 1 > std::numeric_limits<std::uint64_t>::max() - first_index_) {
      detail::throw_invalid_argument(std::string(fn) + ": a batch of " + detail::number_string(batch) +
                                     " images from first_index " + detail::number_string(first_index_) +
                                     " runs past the last image index (2^64 - 1)");
    }
    detail::check_stream_range(fn, offset_, per_sample);
  }

  std::uint64_t seed() const noexcept { return seed_; }
  /// The image index of batch element 0 (for sharding: a worker sampling images k .. k + B - 1 uses k).
  std::uint64_t first_index() const noexcept { return first_index_; }
  void set_first_index(std::uint64_t first_index) noexcept { first_index_ = first_index; }
  /// The position in each image's stream of the next number drawn.
  std::uint64_t offset() const noexcept { return offset_; }
  void set_offset(std::uint64_t offset) noexcept { offset_ = offset; }

 private:
  std::uint64_t seed_;
  std::uint64_t first_index_;
  std::uint64_t offset_;
};

/// A noise source for tensors of scalar S and rank R: callable as noise(Tensor<S, R>& out), filling out
/// with independent N(0, 1) numbers (NoiseSource, or any user callable, e.g. one replaying noise exported
/// from PyTorch). A tensor is not one, although Eigen lets a tensor be "called" with any argument.
template <class N, class S, int R>
concept NoiseSourceFor = std::floating_point<S> && !DenseTensor<std::remove_cvref_t<N>> &&
                         std::invocable<std::remove_reference_t<N>&, Tensor<S, R>&>;

}  // namespace ddpm
