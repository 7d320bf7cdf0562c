// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors

// Tests of include/ddpm/random.hpp (Philox4x32-10, the standard-normal stream, NoiseSource) and of the
// forward-process overloads that draw their noise from a NoiseSource (include/ddpm/forward.hpp).

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <span>
#include <vector>

#include <catch2/catch.hpp>

#include "ddpm/forward.hpp"
#include "ddpm/random.hpp"
#include "ddpm/schedule.hpp"

namespace {

using ddpm::NoiseSource;
using ddpm::Philox4x32;

template <class S>
std::vector<S> draw(std::size_t n, std::uint64_t seed, std::uint64_t offset = 0) {
  std::vector<S> v(n);
  ddpm::fill_normal(std::span<S>(v), seed, offset);
  return v;
}

// Bitwise equality (so that -0.0 != 0.0 and NaN == NaN would both be caught as written).
template <class S>
bool same_bits(const S* a, const S* b, std::size_t n) {
  return std::memcmp(a, b, n * sizeof(S)) == 0;
}
template <class S>
bool same_bits(const std::vector<S>& a, const std::vector<S>& b) {
  return a.size() == b.size() && same_bits(a.data(), b.data(), a.size());
}

// The standard normal CDF.
double normal_cdf(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }

struct Moments {
  double mean, variance;
};
template <class S>
Moments moments(const std::vector<S>& v) {
  double sum = 0, sum2 = 0;
  for (S x : v) sum += x;
  const double mean = sum / double(v.size());
  for (S x : v) sum2 += (x - mean) * (x - mean);
  return {mean, sum2 / double(v.size() - 1)};
}

// Pearson correlation of a[i] and b[i].
template <class S>
double correlation(std::span<const S> a, std::span<const S> b) {
  const std::size_t n = a.size();
  double ma = 0, mb = 0;
  for (std::size_t i = 0; i < n; ++i) ma += a[i], mb += b[i];
  ma /= double(n), mb /= double(n);
  double sab = 0, saa = 0, sbb = 0;
  for (std::size_t i = 0; i < n; ++i) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) * (a[i] - ma);
    sbb += (b[i] - mb) * (b[i] - mb);
  }
  return sab / std::sqrt(saa * sbb);
}

// Distance in units of the last place of `got`'s precision between got and an exact reference.
template <class S>
double ulps(S got, long double want) {
  const S w = static_cast<S>(want);
  const long double ulp =
      static_cast<long double>(std::nextafter(std::abs(w), std::numeric_limits<S>::infinity())) - std::abs(w);
  return static_cast<double>(std::fabs(static_cast<long double>(got) - want) / ulp);
}

}  // namespace

// ------------------------------------------------------------------------------------------------
// Philox4x32-10

TEST_CASE("Philox4x32-10 reproduces the Random123 known-answer vectors", "[random][philox]") {
  // Random123's tests/kat_vectors, lines "philox4x32 10 <counter 0..3> <key 0..1> <expected 0..3>".
  struct Kat {
    Philox4x32::Counter counter;
    Philox4x32::Key key;
    Philox4x32::Counter expected;
  };
  const std::array<Kat, 3> kats{{
      {{0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u},
       {0x00000000u, 0x00000000u},
       {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
      {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
       {0xffffffffu, 0xffffffffu},
       {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
      {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
       {0xa4093822u, 0x299f31d0u},
       {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
  }};
  for (const Kat& kat : kats) CHECK(Philox4x32::generate(kat.counter, kat.key) == kat.expected);
  // The bijection is constexpr.
  static_assert(Philox4x32::generate({0, 0, 0, 0}, {0, 0})[3] == 0x9b00dbd8u);
}

TEST_CASE("A chunk's words are Philox blocks 64 c .. 64 c + 63 on every code path", "[random][philox]") {
  // The vectorised path (AVX-512 or AVX2, when the compiler targets them) must give the portable path's
  // words, and both the documented layout: block n = 64 c + j has counter (lo32(n), hi32(n), 0, 0) and
  // feeds pairs 2j (words 0, 1) and 2j + 1 (words 2, 3).
  const std::array<std::uint64_t, 6> chunks{0,
                                            1,
                                            7,
                                            123457,
                                            (std::uint64_t{1} << 26) + 3,
                                            (std::uint64_t{1} << 56) - 1};  // the last two: block index >= 2^32
  const std::array<Philox4x32::Key, 3> keys{{{0u, 0u}, {0xffffffffu, 0xffffffffu}, {0x12345678u, 0x9abcdef0u}}};
  for (std::uint64_t chunk : chunks) {
    for (const Philox4x32::Key& key : keys) {
      ddpm::detail::ChunkWords fast, portable;
      ddpm::detail::philox_chunk(chunk, key, fast);
      ddpm::detail::philox_chunk_portable(chunk, key, portable);
      REQUIRE(std::memcmp(&fast, &portable, sizeof(fast)) == 0);
      for (std::uint64_t j = 0; j < ddpm::detail::kChunkBlocks; ++j) {
        const std::uint64_t block = 64 * chunk + j;
        const auto x = Philox4x32::generate(
            {static_cast<std::uint32_t>(block), static_cast<std::uint32_t>(block >> 32), 0u, 0u}, key);
        REQUIRE(fast.radius[2 * j] == x[0]);
        REQUIRE(fast.angle[2 * j] == x[1]);
        REQUIRE(fast.radius[2 * j + 1] == x[2]);
        REQUIRE(fast.angle[2 * j + 1] == x[3]);
      }
    }
  }
}

// ------------------------------------------------------------------------------------------------
// The normal stream: values

TEST_CASE("The normal stream matches an independent Python implementation", "[random][normal]") {
  // Produced by this pure-Python reference (Python's own integers and math.log/cos/sin in double):
  //   M0, M1, W0, W1, MASK = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85, 0xFFFFFFFF
  //   def philox(ctr, key):
  //       c0, c1, c2, c3 = ctr; k0, k1 = key
  //       for _ in range(10):
  //           p0, p1 = M0 * c0, M1 * c2
  //           c0, c1, c2, c3 = (p1 >> 32) ^ c1 ^ k0, p1 & MASK, (p0 >> 32) ^ c3 ^ k1, p0 & MASK
  //           k0, k1 = (k0 + W0) & MASK, (k1 + W1) & MASK
  //       return c0, c1, c2, c3
  //   def normal(seed, n):
  //       b = n // 4; w = philox((b & MASK, b >> 32, 0, 0), (seed & MASK, seed >> 32)); h = (n % 4) // 2
  //       u_r, u_a = (w[2 * h] + 0.5) / 2**32, (w[2 * h + 1] + 0.5) / 2**32
  //       r = math.sqrt(-2 * math.log(u_r))
  //       return r * (math.cos if n % 2 == 0 else math.sin)(2 * math.pi * u_a)
  struct Value {
    std::uint64_t seed, index;
    double z;
  };
  const std::vector<Value> values{
      {0x0u, 0u, 0.9911376799303855},
      {0x0u, 1u, -0.9246625876655352},
      {0x0u, 2u, -0.6176089594591907},
      {0x0u, 3u, -0.48206858748717946},
      {0x0u, 4u, -0.15363823029788248},
      {0x0u, 5u, 0.1808258977794412},
      {0x0u, 6u, 0.8317351045307384},
      {0x0u, 7u, 0.1974397198257022},
      {0x0u, 255u, -1.9177765168310366},
      {0x0u, 256u, 1.8329708735345827},
      {0x0u, 1023u, -1.423215971773968},
      {0x0u, 4398046511109u, -1.2489223256488804},
      {0x123456789abcdefu, 0u, 0.1100691357169152},
      {0x123456789abcdefu, 1u, -0.8030993970529817},
      {0x123456789abcdefu, 2u, -2.2234925734575555},
      {0x123456789abcdefu, 3u, 0.3009010446130511},
      {0x123456789abcdefu, 4u, -0.38104008799642725},
      {0x123456789abcdefu, 5u, 0.7933947310933481},
      {0x123456789abcdefu, 6u, -0.4398932106792717},
      {0x123456789abcdefu, 7u, -1.2890528956866585},
      {0x123456789abcdefu, 255u, 1.7068292405085106},
      {0x123456789abcdefu, 256u, -0.5827368793012577},
      {0x123456789abcdefu, 1023u, -0.2948169488305596},
      {0x123456789abcdefu, 4398046511109u, 1.2953167379069688},
  };
  for (const Value& v : values) {
    INFO("seed " << v.seed << ", index " << v.index);
    // Both sides are accurate to a few ulp; a wrong word, pairing or uniform would be off by O(1).
    CHECK(std::abs(draw<double>(1, v.seed, v.index)[0] - v.z) <= 1e-13 * (1 + std::abs(v.z)));
    CHECK(std::abs(draw<float>(1, v.seed, v.index)[0] - v.z) <= 2e-6 * (1 + std::abs(v.z)));
  }
}

TEMPLATE_TEST_CASE("The normal stream is Box-Muller on the Philox words", "[random][normal]", float, double) {
  using S = TestType;
  // Recompute 4096 numbers from Philox4x32::generate with std::log, std::cos, std::sin in long double.
  const std::uint64_t seed = 0xfedcba9876543210u, offset = 4 * 1000003;
  const std::vector<S> z = draw<S>(4096, seed, offset);
  const long double two_pi = 6.283185307179586476925286766559005768L;
  for (std::size_t i = 0; i < z.size(); ++i) {
    const std::uint64_t n = offset + i, block = n / 4;
    const auto w =
        Philox4x32::generate({static_cast<std::uint32_t>(block), static_cast<std::uint32_t>(block >> 32), 0u, 0u},
                             {static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32)});
    const std::size_t h = (n % 4) / 2;
    const long double u_radius = (w[2 * h] + 0.5L) * 0x1p-32L, u_angle = (w[2 * h + 1] + 0.5L) * 0x1p-32L;
    const long double r = std::sqrt(-2 * std::log(u_radius));
    const long double want = r * (n % 2 == 0 ? std::cos(two_pi * u_angle) : std::sin(two_pi * u_angle));
    // Float rounds u to 24 bits: an angle error up to 2 pi 2^-25 u, so |error| <= 4e-7 r plus a few ulp.
    const double tolerance = std::is_same_v<S, float> ? 1e-6 * (1 + double(r)) : 1e-14 * (1 + double(r));
    INFO("index " << n);
    REQUIRE(std::abs(double(z[i] - want)) <= tolerance);
  }
}

TEMPLATE_TEST_CASE("The logarithm and sine/cosine of Box-Muller are accurate to a few ulp", "[random][normal]", float,
                   double) {
  using S = TestType;
  // Every 4099th word (about a million of the 2^32): -2 ln u against the exact uniform (w + 1/2) 2^-32,
  // and sin/cos(2 pi u) against long double on the exactly reduced argument. Measured maxima: 2.4 ulp
  // for the float logarithm (of which up to 2 come from rounding u to float), 1.7 ulp otherwise.
  const long double two_pi = 6.283185307179586476925286766559005768L;
  double worst_log = 0, worst_sin = 0, worst_cos = 0;
  for (std::uint64_t w = 17; w < (std::uint64_t{1} << 32); w += 4099) {
    const auto word = static_cast<std::uint32_t>(w);
    const long double u_exact = (w + 0.5L) * 0x1p-32L;
    worst_log = std::max(worst_log, ulps(ddpm::detail::minus_two_log_uniform<S>(word), -2 * std::log(u_exact)));
    const S u = ddpm::detail::unit_uniform<S>(word);
    S s, c;
    ddpm::detail::sincos_two_pi(u, s, c);
    const long double q = std::nearbyint(4 * static_cast<long double>(u));
    const long double f = static_cast<long double>(u) - q / 4;  // exact
    const long double sf = std::sin(two_pi * f), cf = std::cos(two_pi * f);
    const int k = static_cast<int>(q) & 3;
    const long double want_sin = k == 0 ? sf : k == 1 ? cf : k == 2 ? -sf : -cf;
    const long double want_cos = k == 0 ? cf : k == 1 ? -sf : k == 2 ? -cf : sf;
    if (want_sin != 0) worst_sin = std::max(worst_sin, ulps(s, want_sin));
    if (want_cos != 0) worst_cos = std::max(worst_cos, ulps(c, want_cos));
  }
  CHECK(worst_log <= (std::is_same_v<S, float> ? 4.0 : 2.5));
  CHECK(worst_sin <= 2.5);
  CHECK(worst_cos <= 2.5);
}

TEST_CASE("Float and double streams come from the same uniforms", "[random][normal]") {
  // They differ only by float rounding: of u (2^-25 relative), of the polynomials, of the products.
  const std::size_t n = 1 << 18;
  const std::vector<float> f = draw<float>(n, 99, 12345);
  const std::vector<double> d = draw<double>(n, 99, 12345);
  double worst = 0;
  for (std::size_t i = 0; i < n; ++i) worst = std::max(worst, std::abs(f[i] - d[i]) / std::max(1.0, std::abs(d[i])));
  CHECK(worst <= 2e-6);
}

// ------------------------------------------------------------------------------------------------
// The normal stream: split invariance

TEMPLATE_TEST_CASE("A fill equals the concatenation of fills over any split", "[random][normal]", float, double) {
  using S = TestType;
  const std::uint64_t seed = 2026;
  for (std::uint64_t start : {std::uint64_t{0}, std::uint64_t{3}, std::uint64_t{255}, std::uint64_t{1000001},
                              (std::uint64_t{1} << 42) + 253}) {
    INFO("start " << start);
    const std::size_t n = 3001;
    const std::vector<S> whole = draw<S>(n, seed, start);
    // Cut points that are and are not multiples of 2, 4 and 256.
    const std::vector<std::size_t> cuts{0, 1, 2, 3, 5, 8, 13, 250, 256, 257, 511, 512, 1030, 2047, 2999, n};
    std::vector<S> pieces(n);
    for (std::size_t k = 0; k + 1 < cuts.size(); ++k) {
      ddpm::fill_normal(std::span<S>(pieces).subspan(cuts[k], cuts[k + 1] - cuts[k]), seed, start + cuts[k]);
    }
    CHECK(same_bits(whole, pieces));
    // A NoiseSource drawing the same pieces one after another.
    NoiseSource source(seed, start);
    std::vector<S> drawn(n);
    for (std::size_t k = 0; k + 1 < cuts.size(); ++k) {
      source.fill(std::span<S>(drawn).subspan(cuts[k], cuts[k + 1] - cuts[k]));
    }
    CHECK(source.offset() == start + n);
    CHECK(same_bits(whole, drawn));
    // Every single element on its own.
    for (std::size_t i = 0; i < n; i += 97) CHECK(draw<S>(1, seed, start + i)[0] == whole[i]);
  }
}

TEMPLATE_TEST_CASE("A large fill (threaded under OpenMP) equals small fills", "[random][normal]", float, double) {
  using S = TestType;
  // 300001 numbers take the threaded path when the tests are built with OpenMP (DDPM_OPENMP).
  const std::size_t n = 300001;
  const std::uint64_t seed = 5, start = 77;
  const std::vector<S> whole = draw<S>(n, seed, start);
  std::vector<S> pieces(n);
  for (std::size_t i = 0; i < n; i += 1000) {
    const std::size_t len = std::min<std::size_t>(1000, n - i);
    ddpm::fill_normal(std::span<S>(pieces).subspan(i, len), seed, start + i);
  }
  CHECK(same_bits(whole, pieces));
}

TEMPLATE_TEST_CASE("Tensors, maps and NoiseSource fill in memory order", "[random][normal]", float, double) {
  using S = TestType;
  const std::uint64_t seed = 31337;
  const std::vector<S> flat = draw<S>(2 * 3 * 5 * 7, seed, 11);
  ddpm::Tensor<S, 4> t(2, 3, 5, 7);
  ddpm::fill_normal(t, seed, 11);
  CHECK(same_bits(t.data(), flat.data(), flat.size()));
  std::vector<S> buffer(flat.size());
  ddpm::fill_normal(ddpm::TensorMap<S, 2>(buffer.data(), 6, 35), seed, 11);
  CHECK(same_bits(buffer, flat));

  // operator() on a tensor and on a map continue one stream; accessors report it.
  NoiseSource noise(seed, 11);
  CHECK(noise.seed() == seed);
  CHECK(noise.offset() == 11);
  ddpm::Tensor<S, 2> a(4, 10);
  noise(a);
  CHECK(noise.offset() == 51);
  std::vector<S> rest(flat.size() - 40);
  noise(ddpm::TensorMap<S, 1>(rest.data(), static_cast<Eigen::Index>(rest.size())));
  CHECK(noise.offset() == 11 + flat.size());
  CHECK(same_bits(a.data(), flat.data(), 40));
  CHECK(same_bits(rest.data(), flat.data() + 40, rest.size()));
  // set_offset rewinds.
  noise.set_offset(11);
  ddpm::Tensor<S, 1> again(5);
  noise(again);
  CHECK(same_bits(again.data(), flat.data(), 5));
  // An empty fill draws nothing.
  noise.fill(std::span<S>());
  CHECK(noise.offset() == 16);

  // NoiseSource and a user's callable satisfy the noise-source concept; others, tensors included, do not.
  auto user_noise = [](ddpm::Tensor<S, 4>& out) { out.setZero(); };
  auto wrong_rank = [](ddpm::Tensor<S, 2>& out) { out.setZero(); };
  STATIC_REQUIRE(ddpm::NoiseSourceFor<NoiseSource, S, 4>);
  STATIC_REQUIRE(ddpm::NoiseSourceFor<decltype(user_noise), S, 4>);
  STATIC_REQUIRE_FALSE(ddpm::NoiseSourceFor<decltype(wrong_rank), S, 4>);
  STATIC_REQUIRE_FALSE(ddpm::NoiseSourceFor<int, S, 4>);
  STATIC_REQUIRE_FALSE(ddpm::NoiseSourceFor<ddpm::Tensor<S, 4>, S, 4>);
}

// ------------------------------------------------------------------------------------------------
// The normal stream: statistics. Fixed seeds, so each check is deterministic; every tolerance is k
// standard errors of the statistic under the hypothesis that the numbers are iid N(0, 1), with k = 5
// (a correct generator fails one such check with probability 6e-7).

TEMPLATE_TEST_CASE("The normal stream has the moments of N(0, 1)", "[random][statistics]", float, double) {
  using S = TestType;
  const std::size_t n = std::size_t{1} << 20;
  const std::vector<S> z = draw<S>(n, 123456789, 0);
  const double root_n = std::sqrt(double(n));
  const Moments m = moments(z);
  CHECK(std::abs(m.mean) <= 5 / root_n);                           // sd(mean) = 1 / sqrt(N)
  CHECK(std::abs(m.variance - 1) <= 5 * std::sqrt(2.0) / root_n);  // sd(s^2) = sqrt(2 / N)
  double third = 0, fourth = 0;
  for (S x : z) third += double(x) * x * x, fourth += double(x) * x * x * x;
  third /= double(n), fourth /= double(n);
  CHECK(std::abs(third) <= 5 * std::sqrt(15.0) / root_n);       // E z^3 = 0, Var z^3 = E z^6 = 15
  CHECK(std::abs(fourth - 3) <= 5 * std::sqrt(96.0) / root_n);  // E z^4 = 3, Var z^4 = 105 - 9 = 96
}

TEMPLATE_TEST_CASE("Neighbouring normals are uncorrelated, also in their squares", "[random][statistics]", float,
                   double) {
  using S = TestType;
  const std::size_t n = std::size_t{1} << 20;
  const std::vector<S> z = draw<S>(n + 4, 42, 7);
  std::vector<S> sq(z.size());
  std::transform(z.begin(), z.end(), sq.begin(), [](S x) { return x * x; });
  const double tolerance = 5 / std::sqrt(double(n));  // sd of a sample correlation of independent data: 1/sqrt(N)
  // Lags 1..4 cover the two numbers of a Box-Muller pair (which share a radius) and the next block; the
  // squares would be correlated if the pair's radius and angle were not independent.
  for (std::size_t lag = 1; lag <= 4; ++lag) {
    INFO("lag " << lag);
    const std::span<const S> all(z), all_sq(sq);
    CHECK(std::abs(correlation(all.subspan(0, n), all.subspan(lag, n))) <= tolerance);
    CHECK(std::abs(correlation(all_sq.subspan(0, n), all_sq.subspan(lag, n))) <= tolerance);
  }
}

TEMPLATE_TEST_CASE("The normal stream follows the normal CDF (Kolmogorov-Smirnov, tails)", "[random][statistics]",
                   float, double) {
  using S = TestType;
  const std::size_t n = std::size_t{1} << 20;
  std::vector<S> z = draw<S>(n, 8675309, 1);
  std::sort(z.begin(), z.end());
  double d = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double cdf = normal_cdf(z[i]);
    d = std::max({d, double(i + 1) / double(n) - cdf, cdf - double(i) / double(n)});
  }
  // sqrt(N) D converges to the Kolmogorov distribution: P(sqrt(N) D > 1.95) = 0.001. A logarithm or sine
  // off by 1e-3 anywhere would move the CDF by about that much, i.e. sqrt(N) D by about 1.
  CHECK(std::sqrt(double(n)) * d <= 1.95);

  // Tail probabilities, where a wrong log near u = 0 (large radii) would show: counts against N p with
  // binomial sd sqrt(N p (1 - p)).
  for (double x : {2.0, 3.0, 4.0}) {
    const double p = 2 * normal_cdf(-x);
    const auto count = std::count_if(z.begin(), z.end(), [x](S v) { return std::abs(v) > x; });
    INFO("P(|z| > " << x << ")");
    CHECK(std::abs(double(count) - double(n) * p) <= 5 * std::sqrt(double(n) * p * (1 - p)));
  }
  // The 32-bit uniforms bound the radius by sqrt(-2 ln 2^-33) = 6.77.
  CHECK(std::max(-z.front(), z.back()) < S(6.77));

  // Chi-square over 64 equiprobable bins: mean 63 and sd sqrt(126); 63 + 5 sqrt(126) = 119.
  std::array<double, 64> counts{};
  for (S v : z) counts[std::min<std::size_t>(63, static_cast<std::size_t>(normal_cdf(v) * 64))] += 1;
  double chi2 = 0;
  for (double c : counts) chi2 += (c - double(n) / 64) * (c - double(n) / 64) / (double(n) / 64);
  CHECK(chi2 <= 63 + 5 * std::sqrt(126.0));
}

TEST_CASE("Different seeds give uncorrelated streams", "[random][statistics]") {
  const std::size_t n = std::size_t{1} << 18;
  const double tolerance = 5 / std::sqrt(double(n));  // sd of the sample correlation: 1/sqrt(N)
  // Seeds differing in the low word, in the high word only, and by one bit.
  const std::vector<std::uint64_t> seeds{0, 1, std::uint64_t{1} << 32, 0x8000000000000000u, 12345};
  std::vector<std::vector<float>> streams;
  for (std::uint64_t s : seeds) streams.push_back(draw<float>(n, s));
  for (std::size_t a = 0; a < seeds.size(); ++a) {
    for (std::size_t b = a + 1; b < seeds.size(); ++b) {
      INFO("seeds " << seeds[a] << ", " << seeds[b]);
      CHECK(std::abs(correlation<float>(streams[a], streams[b])) <= tolerance);
    }
  }
  // The same seed at offsets 0 and n: disjoint parts of one stream, also uncorrelated.
  CHECK(std::abs(correlation<float>(streams[0], draw<float>(n, 0, n))) <= tolerance);
}

// ------------------------------------------------------------------------------------------------
// The forward process with noise from a NoiseSource

namespace {

// Draws the noise tensor from a copy of `source` then calls the noise-tensor overload: the two-step path.
template <class S, int R, class T>
ddpm::Tensor<S, R> q_sample_two_step(const ddpm::NoiseSchedule<S>& schedule, const ddpm::Tensor<S, R>& x0, T t,
                                     NoiseSource source) {
  ddpm::Tensor<S, R> eps(x0.dimensions());
  source(eps);
  return ddpm::q_sample(schedule, x0, t, eps);
}

template <class S, int R, class T>
ddpm::Tensor<S, R> q_step_two_step(const ddpm::NoiseSchedule<S>& schedule, const ddpm::Tensor<S, R>& x, T t,
                                   NoiseSource source) {
  ddpm::Tensor<S, R> eps(x.dimensions());
  source(eps);
  return ddpm::q_step(schedule, x, t, eps);
}

template <class S, int R>
bool same_bits(const ddpm::Tensor<S, R>& a, const ddpm::Tensor<S, R>& b) {
  return a.dimensions() == b.dimensions() && same_bits(a.data(), b.data(), static_cast<std::size_t>(a.size()));
}

template <class S, int R>
void check_fused_equals_two_step(const ddpm::NoiseSchedule<S>& schedule, std::array<Eigen::Index, R> shape,
                                 std::uint64_t offset) {
  ddpm::Tensor<S, R> x(shape);
  ddpm::fill_normal(x, 1, 0);
  std::vector<int> ts(static_cast<std::size_t>(shape[0]));
  for (std::size_t b = 0; b < ts.size(); ++b) ts[b] = static_cast<int>((b * 379 + 5) % 1000);
  const std::span<const int> t_span(ts);
  const int t = 417;
  const std::uint64_t n = static_cast<std::uint64_t>(x.size());

  NoiseSource noise(99, offset);
  CHECK(same_bits(ddpm::q_sample(schedule, x, t, noise), q_sample_two_step(schedule, x, t, NoiseSource(99, offset))));
  CHECK(noise.offset() == offset + n);
  CHECK(same_bits(ddpm::q_sample(schedule, x, t_span, noise),
                  q_sample_two_step(schedule, x, t_span, NoiseSource(99, offset + n))));
  CHECK(
      same_bits(ddpm::q_step(schedule, x, t, noise), q_step_two_step(schedule, x, t, NoiseSource(99, offset + 2 * n))));
  CHECK(same_bits(ddpm::q_step(schedule, x, t_span, noise),
                  q_step_two_step(schedule, x, t_span, NoiseSource(99, offset + 3 * n))));
  CHECK(noise.offset() == offset + 4 * n);

  // Into a caller's map (no allocation), and in place (out aliasing x0).
  std::vector<S> buffer(static_cast<std::size_t>(n));
  ddpm::TensorMap<S, R> out(buffer.data(), shape);
  ddpm::q_sample(schedule, x, t_span, noise, out);
  CHECK(same_bits(buffer.data(), q_sample_two_step(schedule, x, t_span, NoiseSource(99, offset + 4 * n)).data(), n));
  ddpm::Tensor<S, R> in_place = x;
  ddpm::q_step(schedule, in_place, t, noise, in_place);
  CHECK(same_bits(in_place, q_step_two_step(schedule, x, t, NoiseSource(99, offset + 5 * n))));
  // A read-only map as x0.
  const ddpm::ConstTensorMap<S, R> x_map(x.data(), shape);
  NoiseSource again(99, offset);
  CHECK(
      same_bits(ddpm::q_sample(schedule, x_map, t, again), q_sample_two_step(schedule, x, t, NoiseSource(99, offset))));
}

}  // namespace

TEMPLATE_TEST_CASE("q_sample and q_step with a NoiseSource equal drawing the noise tensor first, bit for bit",
                   "[random][forward]", float, double) {
  using S = TestType;
  const auto schedule = ddpm::NoiseSchedule<S>::linear(1000);
  // Samples smaller than 16 elements (the plain-loop path), larger ones (the vectorised path), samples that
  // straddle the generator's 256-number chunks, offsets inside a chunk, and a batch past the threading
  // threshold (65536 elements).
  for (std::uint64_t offset : {std::uint64_t{0}, std::uint64_t{37}, std::uint64_t{(1u << 20) + 255}}) {
    INFO("offset " << offset);
    check_fused_equals_two_step<S, 2>(schedule, {3, 5}, offset);
    check_fused_equals_two_step<S, 1>(schedule, {1}, offset);
    check_fused_equals_two_step<S, 2>(schedule, {40, 1}, offset);
    check_fused_equals_two_step<S, 4>(schedule, {4, 3, 7, 9}, offset);
    check_fused_equals_two_step<S, 2>(schedule, {2, 1000}, offset);
    check_fused_equals_two_step<S, 3>(schedule, {5, 17, 19}, offset);
  }
  check_fused_equals_two_step<S, 4>(schedule, {3, 3, 151, 151}, 3);
}

TEMPLATE_TEST_CASE("t composed forward steps match the closed-form marginal in distribution", "[random][forward]",
                   float, double) {
  using S = TestType;
  // The foundation's forward-process property [docs/math.md, Eqs. (2), (4)]: applying q_step for s = 0..t
  // to a fixed x0, each step with fresh noise, gives x_t ~ N(sqrt(alpha_bar[t]) x0, 1 - alpha_bar[t]),
  // the law q_sample draws from. With B = 20000 scalars per t, the residual x_t - sqrt(alpha_bar[t]) x0 has
  // sample mean with sd sqrt(v / B) and sample variance with sd v sqrt(2 / (B - 1)), v = 1 - alpha_bar[t];
  // both are checked to 5 sd. (Rounding over 1000 float steps adds about 1e-5 relative, far below that.)
  const auto schedule = ddpm::NoiseSchedule<S>::linear(1000);
  const Eigen::Index batch = 20000;
  ddpm::Tensor<S, 1> x0(batch);
  for (Eigen::Index i = 0; i < batch; ++i) x0(i) = S(-1) + S(2) * S(i % 101) / S(100);  // a grid on [-1, 1]
  NoiseSource noise(2718, 0);
  for (int t : {0, 9, 99, 499, 999}) {
    INFO("t = " << t);
    const double alpha_bar = double(schedule.alphas_cumprod()[t]);
    const double v = 1 - alpha_bar, scale = std::sqrt(alpha_bar);
    auto residual_moments = [&](const ddpm::Tensor<S, 1>& x_t) {
      std::vector<double> r(static_cast<std::size_t>(batch));
      for (Eigen::Index i = 0; i < batch; ++i) r[std::size_t(i)] = double(x_t(i)) - scale * double(x0(i));
      return moments(r);
    };
    ddpm::Tensor<S, 1> x = x0;
    for (int s = 0; s <= t; ++s) ddpm::q_step(schedule, x, s, noise, x);
    const Moments composed = residual_moments(x);
    CHECK(std::abs(composed.mean) <= 5 * std::sqrt(v / double(batch)));
    CHECK(std::abs(composed.variance - v) <= 5 * v * std::sqrt(2 / double(batch - 1)));
    const Moments marginal = residual_moments(ddpm::q_sample(schedule, x0, t, noise));
    CHECK(std::abs(marginal.mean) <= 5 * std::sqrt(v / double(batch)));
    CHECK(std::abs(marginal.variance - v) <= 5 * v * std::sqrt(2 / double(batch - 1)));
  }
}

// ------------------------------------------------------------------------------------------------
// Bad input

TEMPLATE_TEST_CASE("Invalid arguments throw ddpm::invalid_argument and draw nothing", "[random][errors]", float,
                   double) {
  using S = TestType;
  const auto schedule = ddpm::NoiseSchedule<S>::linear(1000);
  ddpm::Tensor<S, 2> x(4, 6);
  x.setConstant(S(0.5));
  NoiseSource noise(1, 100);

  // A map out whose shape differs from x0.
  std::vector<S> buffer(24);
  ddpm::TensorMap<S, 2> wrong(buffer.data(), 6, 4);
  REQUIRE_THROWS_AS(ddpm::q_sample(schedule, x, 3, noise, wrong), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(ddpm::q_step(schedule, x, 3, noise, wrong), ddpm::invalid_argument);
  // Timesteps outside [0, T), or a span of the wrong length or with a bad entry.
  REQUIRE_THROWS_AS(ddpm::q_sample(schedule, x, 1000, noise), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(ddpm::q_step(schedule, x, -1, noise), ddpm::invalid_argument);
  const std::vector<int> three{1, 2, 3}, bad{1, 2, 1000, 3};
  REQUIRE_THROWS_AS(ddpm::q_sample(schedule, x, std::span<const int>(three), noise), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(ddpm::q_step(schedule, x, std::span<const int>(bad), noise), ddpm::invalid_argument);
  // An empty x0.
  ddpm::Tensor<S, 2> empty(0, 6);
  REQUIRE_THROWS_AS(ddpm::q_sample(schedule, empty, 3, noise), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(ddpm::q_step(schedule, empty, 3, noise), ddpm::invalid_argument);
  CHECK(noise.offset() == 100);  // nothing was drawn
  CHECK(std::all_of(buffer.begin(), buffer.end(), [](S v) { return v == 0; }));

  // A fill running past the stream's 2^64 - 1 numbers (indices 0 .. 2^64 - 2).
  constexpr std::uint64_t kEnd = std::numeric_limits<std::uint64_t>::max();
  std::vector<S> v(8);
  REQUIRE_THROWS_AS(ddpm::fill_normal(std::span<S>(v), 0, kEnd - 7), ddpm::invalid_argument);
  REQUIRE_NOTHROW(ddpm::fill_normal(std::span<S>(v), 0, kEnd - 8));  // ends exactly at the last number
  CHECK(v[7] == draw<S>(1, 0, kEnd - 1)[0]);
  NoiseSource near_end(0, kEnd - 3);
  REQUIRE_THROWS_AS(near_end(x), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(ddpm::q_sample(schedule, x, 3, near_end), ddpm::invalid_argument);
  CHECK(near_end.offset() == kEnd - 3);
}
