// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
//
// The Conv2d backward kernel (nn/detail/conv_backward.hpp) [docs/unet.md, Eq. (U1)]: every gradient (d_x,
// d_weight, d_bias, d_batch_bias, and the residual / accumulated-output branch) against central finite
// differences in double of the loss L = sum(w * out) computed by Conv2d<double>::forward itself (im2col and
// Winograd: one function), on odd shapes with every epilogue option; large shapes (several column blocks and
// channel groups) bit-identical on 1, 2 and 3 threads and spot-checked by finite differences; float against
// double within the bound of the float arithmetic; accumulation; bad input.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <type_traits>
#include <vector>

#include "ddpm/nn/conv2d.hpp"
#include "ddpm/nn/detail/conv_backward.hpp"
#include "nn_reference.hpp"

using ddpm::nn::Context;
using ddpm::nn::Conv2d;
using ddpm::nn::ConvAlgorithm;
using ddpm::nn::ConvEpilogue;
using ddpm::nn::FeatureMap;
using ddpm::nn::Padding2d;
using ddpm::nn::detail::ConvGrads;
using nn_test::Index;

namespace {

// gradcheck's tolerances (torch.autograd.gradcheck defaults) and step
constexpr double kEps = 1e-6, kAtol = 1e-5, kRtol = 1e-3;

template <class S>
std::vector<S> random_vector(Index n, std::uint64_t seed, double lo = -1.0, double hi = 1.0) {
  nn_test::Uniform u(seed);
  std::vector<S> v(static_cast<std::size_t>(n));
  for (S& e : v) e = static_cast<S>(u(lo, hi));
  return v;
}

template <class S>
FeatureMap<S> map_of(std::vector<S>& v, Index c, Index n, Index h, Index w) {
  REQUIRE(static_cast<Index>(v.size()) == c * n * h * w);
  return {v.data(), c, n, h, w};
}
template <class S>
FeatureMap<const S> cmap_of(const std::vector<S>& v, Index c, Index n, Index h, Index w) {
  REQUIRE(static_cast<Index>(v.size()) == c * n * h * w);
  return {v.data(), c, n, h, w};
}

struct Shape {
  Index in, out, kh, kw, stride;
  Padding2d pad;
  Index n, h, w;
};

enum class Epilogue { bias_only, all_pointers, accumulate };

/// A convolution, its input, an epilogue and the weights w of L = sum(w * out).
template <class S>
struct Problem {
  Shape s;
  Conv2d<S> conv;
  Index oh = 0, ow = 0;
  std::vector<S> x, w, residual, prior, batch_bias;
  bool use_residual = false, use_prior = false, use_batch_bias = false;
  S scale = S(1);

  Problem(const Shape& shape, Epilogue e, bool bias, std::uint64_t seed)
      : s(shape), conv(shape.in, shape.out, shape.kh, shape.kw, shape.stride, shape.pad, bias) {
    nn_test::randomize<S>(conv, seed);
    oh = conv.output_height(s.h);
    ow = conv.output_width(s.w);
    x = random_vector<S>(s.in * s.n * s.h * s.w, seed + 1);
    w = random_vector<S>(s.out * s.n * oh * ow, seed + 2);
    residual = random_vector<S>(s.out * s.n * oh * ow, seed + 3);
    prior = random_vector<S>(s.out * s.n * oh * ow, seed + 4);
    batch_bias = random_vector<S>(s.n * s.out, seed + 5);
    use_residual = e == Epilogue::all_pointers;
    use_prior = e == Epilogue::accumulate;
    use_batch_bias = e != Epilogue::bias_only;
    scale = e == Epilogue::bias_only ? S(1) : e == Epilogue::all_pointers ? S(0.7) : S(1.3);
  }

  FeatureMap<const S> xmap() const { return cmap_of(x, s.in, s.n, s.h, s.w); }
  FeatureMap<const S> dout() const { return cmap_of(w, s.out, s.n, oh, ow); }

  /// L = sum(w * out), out from Conv2d::forward with the epilogue.
  double loss(Context<S>& ctx) {
    std::vector<S> out = use_prior ? prior : std::vector<S>(w.size(), S(0));
    ConvEpilogue<S> epi;
    epi.accumulate = use_prior;
    epi.residual = use_residual ? residual.data() : nullptr;
    epi.batch_bias = use_batch_bias ? batch_bias.data() : nullptr;
    epi.scale = scale;
    conv.prepare();  // the Winograd path needs the transform of the current weights
    conv.forward(ctx, xmap(), map_of(out, s.out, s.n, oh, ow), epi);
    double l = 0.0;
    for (std::size_t i = 0; i < out.size(); ++i) l += double(w[i]) * double(out[i]);
    return l;
  }
};

struct Grads {
  std::vector<double> dx, dw, db, dbb;
};

/// The kernel's gradients of a problem (d_x written, parameters accumulated into zeros).
template <class S>
Grads analytic(Problem<S>& p, int threads) {
  Context<S> ctx(threads);
  std::vector<S> dx(p.x.size(), S(-7)), dw(static_cast<std::size_t>(p.conv.weight().size()), S(0));
  std::vector<S> db(static_cast<std::size_t>(p.s.out), S(0)), dbb(p.batch_bias.size(), S(0));
  ConvGrads<S> g{dw.data(), p.conv.has_bias() ? db.data() : nullptr, p.use_batch_bias ? dbb.data() : nullptr};
  const Conv2d<S>& conv = p.conv;
  ddpm::nn::detail::conv2d_backward(ctx, conv, p.xmap(), p.dout(), p.scale, map_of(dx, p.s.in, p.s.n, p.s.h, p.s.w),
                                    false, g);
  auto d = [](const std::vector<S>& v) { return std::vector<double>(v.begin(), v.end()); };
  return {d(dx), d(dw), d(db), d(dbb)};
}

/// Central difference of L in the value that `set(v)` sets (value at rest `v0`).
template <class S>
double central(Problem<S>& p, Context<S>& ctx, double v0, const std::function<void(double)>& set) {
  set(v0 + kEps);
  const double lp = p.loss(ctx);
  set(v0 - kEps);
  const double lm = p.loss(ctx);
  set(v0);
  return (lp - lm) / (2 * kEps);
}

/// Central differences of L in the given entries of v (all when `only` is empty).
template <class S>
std::vector<double> numeric_of(Problem<S>& p, Context<S>& ctx, std::vector<S>& v, const std::vector<Index>& only) {
  std::vector<double> out(v.size(), 0.0);
  auto one = [&](Index i) {
    S& e = v[static_cast<std::size_t>(i)];
    out[static_cast<std::size_t>(i)] = central(p, ctx, double(e), [&](double t) { e = static_cast<S>(t); });
  };
  if (only.empty()) {
    for (Index i = 0; i < static_cast<Index>(v.size()); ++i) one(i);
  } else {
    for (Index i : only) one(i);
  }
  return out;
}

/// The same for the weights (through Conv2d::weight(), so that forward re-derives its Winograd weights).
template <class S>
std::vector<double> numeric_weight(Problem<S>& p, Context<S>& ctx, const std::vector<Index>& only) {
  std::vector<double> out(static_cast<std::size_t>(p.conv.weight().size()), 0.0);
  auto one = [&](Index i) {
    const double w0 = p.conv.weight().data()[i];
    out[static_cast<std::size_t>(i)] =
        central(p, ctx, w0, [&](double t) { p.conv.weight().data()[i] = static_cast<S>(t); });
  };
  if (only.empty()) {
    for (Index i = 0; i < p.conv.weight().size(); ++i) one(i);
  } else {
    for (Index i : only) one(i);
  }
  return out;
}

template <class S>
std::vector<double> numeric_bias(Problem<S>& p, Context<S>& ctx) {
  std::vector<double> out(static_cast<std::size_t>(p.s.out), 0.0);
  for (Index i = 0; i < p.s.out; ++i) {
    const double b0 = p.conv.bias()[i];
    out[static_cast<std::size_t>(i)] = central(p, ctx, b0, [&](double t) { p.conv.bias()[i] = static_cast<S>(t); });
  }
  return out;
}

/// gradcheck's criterion |a - n| <= atol + rtol |n| on the entries listed (all when empty); the gradient
/// must not be trivially zero.
void check_gradient(const char* name, const std::vector<double>& a, const std::vector<double>& n,
                    const std::vector<Index>& only = {}) {
  REQUIRE(a.size() == n.size());
  double worst = -1.0, largest = 0.0;
  Index at = -1;
  auto one = [&](Index i) {
    const double ai = a[static_cast<std::size_t>(i)], ni = n[static_cast<std::size_t>(i)];
    const double excess = std::abs(ai - ni) - (kAtol + kRtol * std::abs(ni));
    largest = std::max(largest, std::abs(ni));
    if (excess > worst) {
      worst = excess;
      at = i;
    }
  };
  if (only.empty()) {
    for (Index i = 0; i < static_cast<Index>(a.size()); ++i) one(i);
  } else {
    for (Index i : only) one(i);
  }
  INFO(name << ": worst entry " << at << ", analytic " << a[static_cast<std::size_t>(at)] << ", numeric "
            << n[static_cast<std::size_t>(at)] << " (largest |numeric| " << largest << ")");
  CHECK(worst <= 0.0);
  CHECK(largest > 0.05);
}

const Shape kOddShapes[] = {
    {3, 5, 3, 3, 1, Padding2d::same(1), 2, 7, 5},     // the UNet's 3x3 (Winograd applies)
    {3, 5, 1, 1, 1, Padding2d{}, 2, 7, 5},            // pointwise: the plain-GEMM path
    {3, 5, 3, 1, 1, Padding2d{1, 0, 1, 0}, 2, 7, 5},  // 3x1, padding along y only
    {3, 5, 3, 3, 2, Padding2d{0, 0, 1, 1}, 2, 7, 5},  // downsample_padding = 0 (asymmetric)
    {3, 5, 3, 3, 2, Padding2d::same(1), 2, 7, 5},     // downsample_padding = 1
    {3, 5, 1, 1, 2, Padding2d{}, 2, 7, 5},            // 1x1 of stride 2: im2col path
    {4, 3, 5, 3, 1, Padding2d{2, 1, 0, 3}, 2, 6, 5},  // rectangular kernel, uneven padding
    {2, 3, 2, 2, 3, Padding2d{1, 0, 0, 1}, 3, 7, 8},  // stride larger than the kernel (unused pixels)
};

}  // namespace

TEST_CASE("conv2d_backward: every gradient against central differences of Conv2d::forward", "[nn][conv_backward]") {
  using S = double;
  std::uint64_t seed = 1000;
  for (const Shape& shape : kOddShapes) {
    for (Epilogue e : {Epilogue::bias_only, Epilogue::all_pointers, Epilogue::accumulate}) {
      for (bool bias : {true, false}) {
        if (e == Epilogue::bias_only && !bias) continue;
        Problem<S> p(shape, e, bias, seed += 10);
        const bool winograd_possible =
            shape.kh == 3 && shape.kw == 3 && shape.stride == 1 && shape.pad == Padding2d::same(1);
        for (ConvAlgorithm algorithm : {ConvAlgorithm::im2col, ConvAlgorithm::winograd}) {
          if (algorithm == ConvAlgorithm::winograd && !winograd_possible) continue;
          p.conv.set_algorithm(algorithm);
          REQUIRE(p.conv.uses_winograd(shape.n, shape.h, shape.w) == (algorithm == ConvAlgorithm::winograd));
          INFO("shape " << shape.in << "->" << shape.out << " kernel " << shape.kh << "x" << shape.kw << " stride "
                        << shape.stride << ", epilogue " << int(e) << ", bias " << bias << ", algorithm "
                        << int(algorithm));
          Context<S> ctx(1);
          const std::vector<double> nx = numeric_of(p, ctx, p.x, {});
          const std::vector<double> nw = numeric_weight(p, ctx, {});
          const std::vector<double> nb = bias ? numeric_bias(p, ctx) : std::vector<double>(shape.out, 0.0);
          const std::vector<double> nbb =
              p.use_batch_bias ? numeric_of(p, ctx, p.batch_bias, {}) : std::vector<double>(p.batch_bias.size(), 0.0);
          for (int threads : {1, 2}) {
            INFO("threads " << threads);
            const Grads a = analytic(p, threads);
            check_gradient("d_x", a.dx, nx);
            check_gradient("d_weight", a.dw, nw);
            if (bias) check_gradient("d_bias", a.db, nb);
            if (p.use_batch_bias) check_gradient("d_batch_bias", a.dbb, nbb);
          }
          // The residual branch: the gradient of the residual and of the accumulated output is scale * d_out.
          if (e != Epilogue::bias_only) {
            std::vector<S>& branch = e == Epilogue::all_pointers ? p.residual : p.prior;
            const std::vector<double> nr = numeric_of(p, ctx, branch, {});
            std::vector<S> dr(branch.size(), S(0));
            ddpm::nn::detail::conv2d_backward_residual(ctx, p.w.data(), static_cast<Index>(dr.size()), p.scale,
                                                       dr.data(), false);
            check_gradient("d_residual", std::vector<double>(dr.begin(), dr.end()), nr);
          }
        }
      }
    }
  }
}

namespace {

const Shape kLargeShapes[] = {
    {40, 36, 3, 3, 1, Padding2d::same(1), 2, 33, 33},     // 2 column blocks, 2 + 2 channel groups
    {64, 48, 3, 3, 2, Padding2d{0, 0, 1, 1}, 3, 35, 37},  // stride 2, 4 + 3 channel groups over 3 threads
    {48, 33, 1, 1, 1, Padding2d{}, 2, 19, 23},            // pointwise, a group with a remainder
    {17, 70, 3, 1, 1, Padding2d{1, 0, 1, 0}, 2, 40, 30},  // one input group of 17
};

/// Entries spread over a vector for finite-difference spot checks.
std::vector<Index> spread(Index n, Index count, std::uint64_t seed) {
  nn_test::Uniform u(seed);
  std::vector<Index> out;
  for (Index i = 0; i < count; ++i) out.push_back(std::min(n - 1, static_cast<Index>(u(0.0, 1.0) * double(n))));
  return out;
}

}  // namespace

TEMPLATE_TEST_CASE("conv2d_backward: large shapes give bit-identical results on 1, 2 and 3 threads",
                   "[nn][conv_backward]", float, double) {
  using S = TestType;
  std::uint64_t seed = 5000;
  for (const Shape& shape : kLargeShapes) {
    Problem<S> p(shape, Epilogue::all_pointers, true, seed += 10);
    const Grads one = analytic(p, 1);
    for (int threads : {2, 3}) {
      INFO("shape " << shape.in << "->" << shape.out << " kernel " << shape.kh << "x" << shape.kw << ", threads "
                    << threads);
      const Grads many = analytic(p, threads);
      CHECK(many.dx == one.dx);
      CHECK(many.dw == one.dw);
      CHECK(many.db == one.db);
      CHECK(many.dbb == one.dbb);
    }
  }
}

TEST_CASE("conv2d_backward: large shapes spot-checked against central differences", "[nn][conv_backward]") {
  using S = double;
  std::uint64_t seed = 7000;
  for (const Shape& shape : kLargeShapes) {
    Problem<S> p(shape, Epilogue::accumulate, true, seed += 10);
    p.conv.set_algorithm(ConvAlgorithm::automatic);
    INFO("shape " << shape.in << "->" << shape.out << " kernel " << shape.kh << "x" << shape.kw);
    const Grads a = analytic(p, 2);
    Context<S> ctx(2);
    const std::vector<Index> ix = spread(static_cast<Index>(p.x.size()), 12, seed + 1);
    const std::vector<Index> iw = spread(p.conv.weight().size(), 12, seed + 2);
    const std::vector<Index> ib = spread(static_cast<Index>(p.batch_bias.size()), 4, seed + 3);
    check_gradient("d_x", a.dx, numeric_of(p, ctx, p.x, ix), ix);
    check_gradient("d_weight", a.dw, numeric_weight(p, ctx, iw), iw);
    check_gradient("d_batch_bias", a.dbb, numeric_of(p, ctx, p.batch_bias, ib), ib);
    const Index o = shape.out / 2;
    const double nb = central(p, ctx, p.conv.bias()[o], [&](double t) { p.conv.bias()[o] = t; });
    CHECK(std::abs(a.db[static_cast<std::size_t>(o)] - nb) <= kAtol + kRtol * std::abs(nb));
  }
}

TEST_CASE("conv2d_backward: float agrees with double within the float arithmetic's error bound",
          "[nn][conv_backward]") {
  // The float kernel run on float data is compared with the double kernel run on the same values. Each
  // gradient entry is a sum of at most n products (n = the largest depth: the columns P for d_weight and
  // the biases, out_channels * kh * kw for d_x), so |float - exact| <= gamma_n * B with
  // gamma_n = n u / (1 - n u), u = 2^-24 and B the same sum over absolute values, which the double kernel
  // gives when run on |x|, |W| and |d_out| (the double result's own error is far below).
  std::uint64_t seed = 9000;
  const Shape shapes[] = {kOddShapes[0], kOddShapes[3], kLargeShapes[0], kLargeShapes[2]};
  for (const Shape& shape : shapes) {
    INFO("shape " << shape.in << "->" << shape.out << " kernel " << shape.kh << "x" << shape.kw);
    Problem<float> pf(shape, Epilogue::all_pointers, true, seed += 10);
    Problem<double> pd(shape, Epilogue::all_pointers, true, seed);
    // the same values in both precisions
    for (std::size_t i = 0; i < pf.x.size(); ++i) pd.x[i] = pf.x[i];
    for (std::size_t i = 0; i < pf.w.size(); ++i) pd.w[i] = pf.w[i];
    for (Index i = 0; i < pf.conv.weight().size(); ++i) pd.conv.weight().data()[i] = pf.conv.weight().data()[i];
    pd.scale = pf.scale;
    const Grads gf = analytic(pf, 2), gd = analytic(pd, 1);
    for (double& v : pd.x) v = std::abs(v);
    for (double& v : pd.w) v = std::abs(v);
    for (Index i = 0; i < pd.conv.weight().size(); ++i)
      pd.conv.weight().data()[i] = std::abs(pd.conv.weight().data()[i]);
    const Grads bound = analytic(pd, 1);
    const Index P = shape.n * pf.oh * pf.ow;
    const double n = double(std::max(P, shape.out * shape.kh * shape.kw) + 4), u = 0x1.0p-24;
    const double gamma = n * u / (1 - n * u);
    auto check = [&](const char* name, const std::vector<double>& f, const std::vector<double>& d,
                     const std::vector<double>& b) {
      double worst = 0.0;
      for (std::size_t i = 0; i < f.size(); ++i) worst = std::max(worst, std::abs(f[i] - d[i]) - gamma * b[i]);
      INFO(name);
      CHECK(worst <= 0.0);
    };
    check("d_x", gf.dx, gd.dx, bound.dx);
    check("d_weight", gf.dw, gd.dw, bound.dw);
    check("d_bias", gf.db, gd.db, bound.db);
    check("d_batch_bias", gf.dbb, gd.dbb, bound.dbb);
  }
}

TEMPLATE_TEST_CASE("conv2d_backward: accumulates into d_x and the gradients, and skips null outputs",
                   "[nn][conv_backward]", float, double) {
  using S = TestType;
  for (const Shape& shape : {kOddShapes[0], kOddShapes[1], kLargeShapes[0]}) {
    Problem<S> p(shape, Epilogue::all_pointers, true, 333);
    const Grads fresh = analytic(p, 2);
    Context<S> ctx(2);
    std::vector<S> dx = random_vector<S>(static_cast<Index>(p.x.size()), 1);
    std::vector<S> dw = random_vector<S>(p.conv.weight().size(), 2), db = random_vector<S>(shape.out, 3);
    std::vector<S> dbb = random_vector<S>(static_cast<Index>(p.batch_bias.size()), 4);
    const std::vector<S> dx0 = dx, dw0 = dw, db0 = db, dbb0 = dbb;
    const Conv2d<S>& conv = p.conv;
    ddpm::nn::detail::conv2d_backward(ctx, conv, p.xmap(), p.dout(), p.scale,
                                      map_of(dx, shape.in, shape.n, shape.h, shape.w), true,
                                      ConvGrads<S>{dw.data(), db.data(), dbb.data()});
    // old + fresh, one rounding apart (fresh itself was rounded once more on its own)
    auto check = [](const char* name, const std::vector<S>& got, const std::vector<S>& old,
                    const std::vector<double>& add) {
      double worst = 0.0, mag = 0.0;
      for (std::size_t i = 0; i < got.size(); ++i) {
        worst = std::max(worst, std::abs(double(got[i]) - (double(old[i]) + add[i])));
        mag = std::max(mag, std::abs(double(old[i]) + add[i]));
      }
      INFO(name);
      CHECK(worst <= mag * 64 * std::numeric_limits<S>::epsilon());
    };
    check("d_x", dx, dx0, fresh.dx);
    check("d_weight", dw, dw0, fresh.dw);
    check("d_bias", db, db0, fresh.db);
    check("d_batch_bias", dbb, dbb0, fresh.dbb);
    // Nothing asked for, nothing written; d_x alone leaves the parameters' buffers untouched.
    std::vector<S> dx2(p.x.size(), S(0));
    ddpm::nn::detail::conv2d_backward(ctx, conv, p.xmap(), p.dout(), p.scale, FeatureMap<S>{}, false, ConvGrads<S>{});
    ddpm::nn::detail::conv2d_backward(ctx, conv, p.xmap(), p.dout(), p.scale,
                                      map_of(dx2, shape.in, shape.n, shape.h, shape.w), false, ConvGrads<S>{});
    CHECK(std::vector<double>(dx2.begin(), dx2.end()) == fresh.dx);
    std::vector<S> dw2(dw.size(), S(0));
    ddpm::nn::detail::conv2d_backward(ctx, conv, p.xmap(), p.dout(), p.scale, FeatureMap<S>{}, false,
                                      ConvGrads<S>{dw2.data(), nullptr, nullptr});
    CHECK(std::vector<double>(dw2.begin(), dw2.end()) == fresh.dw);
  }
}

TEST_CASE("conv2d_backward: rejects shapes that do not fit", "[nn][conv_backward]") {
  using S = float;
  Problem<S> p(kOddShapes[0], Epilogue::bias_only, true, 1);
  Context<S> ctx;
  const Conv2d<S>& conv = p.conv;
  const auto g = ddpm::nn::detail::conv_geometry(conv);
  std::vector<S> dx(p.x.size()), big(4 * p.x.size());
  const auto x = p.xmap();
  const auto dout = p.dout();
  using ddpm::nn::detail::conv2d_backward;
  auto dxm = map_of(dx, 3, 2, 7, 5);
  CHECK_NOTHROW(conv2d_backward(ctx, conv, x, dout, S(1), dxm, false, ConvGrads<S>{}));
  // d_out of the wrong channels, batch or size
  REQUIRE_THROWS_AS(conv2d_backward(ctx, conv, x, FeatureMap<const S>{dout.data, 4, 2, 7, 5}, S(1), dxm, false, {}),
                    ddpm::invalid_argument);
  REQUIRE_THROWS_AS(conv2d_backward(ctx, conv, x, FeatureMap<const S>{dout.data, 5, 1, 7, 5}, S(1), dxm, false, {}),
                    ddpm::invalid_argument);
  REQUIRE_THROWS_AS(conv2d_backward(ctx, conv, x, FeatureMap<const S>{dout.data, 5, 2, 6, 5}, S(1), dxm, false, {}),
                    ddpm::invalid_argument);
  // x of the wrong channels; d_x of another shape than x
  REQUIRE_THROWS_AS(
      conv2d_backward(ctx, conv, FeatureMap<const S>{x.data, 2, 2, 7, 5}, dout, S(1), FeatureMap<S>{}, false, {}),
      ddpm::invalid_argument);
  REQUIRE_THROWS_AS(conv2d_backward(ctx, conv, x, dout, S(1), map_of(big, 3, 2, 14, 10), false, {}),
                    ddpm::invalid_argument);
  // no weights; a geometry with a zero stride
  REQUIRE_THROWS_AS(conv2d_backward<S>(ctx, g, nullptr, x, dout, S(1), dxm, false, {}), ddpm::invalid_argument);
  auto bad = g;
  bad.stride = 0;
  REQUIRE_THROWS_AS(conv2d_backward<S>(ctx, bad, conv.weight().data(), x, dout, S(1), dxm, false, {}),
                    ddpm::invalid_argument);
  try {
    conv2d_backward(ctx, conv, x, FeatureMap<const S>{dout.data, 5, 2, 6, 5}, S(1), dxm, false, {});
  } catch (const ddpm::invalid_argument& e) {
    CHECK_THAT(e.what(), Catch::Contains("d_out [C=5, N=2, H=6, W=5]") && Catch::Contains("[C=5, N=2, H=7, W=5]"));
  }
}

TEMPLATE_TEST_CASE("Winograd training path: forward_train and d_x equal the im2col path, threads give the same bits",
                   "[nn][conv_backward][winograd]", float, double) {
  using S = TestType;
  // 128 -> 128 channels, 3x3, padding 1, 2 images of 17 x 16: 2 x 9 x 8 = 144 tiles (odd height: a partial
  // tile row), so Conv2d::trains_winograd holds; the same layer with ConvAlgorithm::im2col is the reference.
  const Shape shape{128, 128, 3, 3, 1, Padding2d::same(1), 2, 17, 16};
  Problem<S> p(shape, Epilogue::all_pointers, true, 9100);
  REQUIRE(p.conv.trains_winograd(shape.n, shape.h, shape.w));
  Conv2d<S> reference = p.conv;
  reference.set_algorithm(ConvAlgorithm::im2col);
  REQUIRE_FALSE(reference.trains_winograd(shape.n, shape.h, shape.w));
  // Each value is a sum of 128 * 9 products of numbers in [-1, 1] with weights of 1/sqrt(fan_in): the two
  // summation orders (and Winograd's transforms, which add a few multiples of the unit roundoff per term) differ
  // by far less than 1e-3 of the largest value in float and 1e-11 in double.
  const double tol = std::is_same_v<S, float> ? 1e-3 : 1e-11;
  auto max_abs = [](const std::vector<S>& v) {
    double m = 0;
    for (S e : v) m = std::max(m, std::abs(double(e)));
    return m;
  };
  auto max_diff = [](const std::vector<S>& a, const std::vector<S>& b) {
    double m = 0;
    for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(double(a[i]) - double(b[i])));
    return m;
  };
  SECTION("forward_train, prepared or not") {
    ConvEpilogue<S> epi;
    epi.residual = p.residual.data();
    epi.batch_bias = p.batch_bias.data();
    epi.scale = p.scale;
    std::vector<S> want(p.w.size()), got(p.w.size());
    Context<S> ctx(1);
    reference.forward_train(ctx, p.xmap(), map_of(want, shape.out, shape.n, p.oh, p.ow), epi);
    p.conv.mark_weights_changed();  // stale transform: computed for the pass
    REQUIRE(p.conv.current_winograd_weights() == nullptr);
    std::vector<S> one;
    for (int threads : {1, 2, 3}) {
      Context<S> c(threads);
      p.conv.forward_train(c, p.xmap(), map_of(got, shape.out, shape.n, p.oh, p.ow), epi);
      CHECK(max_diff(got, want) <= tol * max_abs(want));
      if (threads == 1) one = got;
      CHECK(got == one);
    }
    p.conv.prepare();  // current transform: the layer's own, the same arithmetic
    REQUIRE(p.conv.current_winograd_weights() != nullptr);
    p.conv.forward_train(ctx, p.xmap(), map_of(got, shape.out, shape.n, p.oh, p.ow), epi);
    CHECK(got == one);
  }
  SECTION("conv2d_backward's d_x, written and accumulated") {
    auto run = [&](const Conv2d<S>& conv, int threads, bool accumulate, S scale) {
      Context<S> ctx(threads);
      std::vector<S> dx = random_vector<S>(static_cast<Index>(p.x.size()), 9200);
      std::vector<S> dw(static_cast<std::size_t>(conv.weight().size()), S(0)), db(static_cast<std::size_t>(shape.out), S(0));
      ddpm::nn::detail::conv2d_backward(ctx, conv, p.xmap(), p.dout(), scale,
                                        map_of(dx, shape.in, shape.n, shape.h, shape.w), accumulate,
                                        ConvGrads<S>{dw.data(), db.data(), nullptr});
      return std::vector<std::vector<S>>{dx, dw, db};
    };
    for (bool accumulate : {false, true}) {
      for (S scale : {S(1), S(0.7)}) {
        INFO("accumulate " << accumulate << ", scale " << double(scale));
        const auto want = run(reference, 1, accumulate, scale);
        const auto one = run(p.conv, 1, accumulate, scale);
        CHECK(max_diff(one[0], want[0]) <= tol * max_abs(want[0]));
        // d_W: the im2col path in the reference, the direct 3x3 kernel (float on AVX-512) or im2col in p.conv
        CHECK(max_diff(one[1], want[1]) <= tol * max_abs(want[1]));
        CHECK(one[2] == want[2]);
        for (int threads : {2, 3}) CHECK(run(p.conv, threads, accumulate, scale) == one);
      }
    }
  }
}

TEST_CASE("Direct 3x3 kernel: forward, d_x and d_W within the float error bound of double, same bits on 1-3 threads",
          "[nn][conv_backward][direct3x3]") {
  // nn/detail/direct_conv3x3.hpp runs float 3x3 convolutions of stride 1 and padding 1 on AVX-512 builds for
  // image widths 4, 8, 16, 32 and 64. Each value is a sum of n products (n = in * 9 for the output, out * 9 for
  // d_x, batch * h * w for d_W), so whatever the summation order |float - exact| <= gamma_n * B, gamma_n =
  // n u / (1 - n u), u = 2^-24, B the same sum of absolute values (the double kernel run on |x|, |W|, |d_out|;
  // its own error is far below). The shapes cover every width, channel counts that leave remainders in the
  // kernel's 8-channel blocks (11 = 8 + 2 + 1, 5 = 4 + 1) and vector tiles (3 per tile), images whose rows a
  // vector splits (w = 32, 64) or several of which one vector holds (w = 4, 8), and batches of 1 and 3.
  const Shape shapes[] = {
      {5, 11, 3, 3, 1, Padding2d::same(1), 3, 4, 4},   {6, 5, 3, 3, 1, Padding2d::same(1), 3, 6, 8},
      {7, 13, 3, 3, 1, Padding2d::same(1), 2, 5, 16},  {3, 9, 3, 3, 1, Padding2d::same(1), 1, 3, 32},
      {4, 3, 3, 3, 1, Padding2d::same(1), 2, 2, 64},   {32, 24, 3, 3, 1, Padding2d::same(1), 3, 16, 16},
      {70, 60, 3, 3, 1, Padding2d::same(1), 1, 4, 8},   // d_W direct past 64 x 64 channels (bound 128 x 64)
      {100, 90, 3, 3, 1, Padding2d::same(1), 1, 4, 8},  // d_x direct, d_W beyond the direct kernel's bound: im2col
  };
  std::uint64_t seed = 9300;
  for (const Shape& shape : shapes) {
    INFO("shape " << shape.in << "->" << shape.out << ", " << shape.n << " images of " << shape.h << " x " << shape.w);
    Problem<float> pf(shape, Epilogue::all_pointers, true, seed += 10);
#ifdef DDPM_NN_DIRECT_CONV3X3
    REQUIRE(pf.conv.uses_direct3x3(shape.h, shape.w));  // the kernel under test runs
#endif
    Problem<double> pd(shape, Epilogue::all_pointers, true, seed);
    for (std::size_t i = 0; i < pf.x.size(); ++i) pd.x[i] = pf.x[i];
    for (std::size_t i = 0; i < pf.w.size(); ++i) pd.w[i] = pf.w[i];
    for (Index i = 0; i < pf.conv.weight().size(); ++i) pd.conv.weight().data()[i] = pf.conv.weight().data()[i];
    for (Index i = 0; i < shape.out; ++i) pd.conv.bias()[i] = pf.conv.bias()[i];
    pd.scale = pf.scale;
    const double u = 0x1.0p-24;
    auto gamma = [u](double n) { return n * u / (1 - n * u); };
    auto within = [](const std::vector<double>& f, const std::vector<double>& d, const std::vector<double>& b,
                     double g) {
      double worst = 0.0;
      for (std::size_t i = 0; i < f.size(); ++i) worst = std::max(worst, std::abs(f[i] - d[i]) - g * b[i]);
      return worst;
    };
    // forward_train: out = scale * (residual + conv + bias + batch_bias), the epilogue adding 3 more terms
    auto forward = [&](auto& p, int threads) {
      using S = typename std::remove_reference_t<decltype(p.x)>::value_type;
      ConvEpilogue<S> epi;
      epi.residual = p.residual.data();
      epi.batch_bias = p.batch_bias.data();
      epi.scale = p.scale;
      std::vector<S> out(p.w.size());
      Context<S> ctx(threads);
      p.conv.forward_train(ctx, p.xmap(), map_of(out, shape.out, shape.n, p.oh, p.ow), epi);
      return std::vector<double>(out.begin(), out.end());
    };
    const std::vector<double> yf = forward(pf, 1), yd = forward(pd, 1);
    for (int threads : {2, 3}) CHECK(forward(pf, threads) == yf);
    const Grads gf = analytic(pf, 1);
    for (int threads : {2, 3}) {
      const Grads many = analytic(pf, threads);
      CHECK(many.dx == gf.dx);
      CHECK(many.dw == gf.dw);
    }
    const Grads gd = analytic(pd, 1);
    for (double& v : pd.x) v = std::abs(v);
    for (double& v : pd.w) v = std::abs(v);
    for (double& v : pd.residual) v = std::abs(v);
    for (double& v : pd.batch_bias) v = std::abs(v);
    for (Index i = 0; i < pd.conv.weight().size(); ++i) pd.conv.weight().data()[i] = std::abs(pd.conv.weight().data()[i]);
    for (Index i = 0; i < shape.out; ++i) pd.conv.bias()[i] = std::abs(pd.conv.bias()[i]);
    const std::vector<double> yb = forward(pd, 1);
    const Grads bound = analytic(pd, 1);
    CHECK(within(yf, yd, yb, gamma(double(shape.in * 9 + 5))) <= 0.0);
    CHECK(within(gf.dx, gd.dx, bound.dx, gamma(double(shape.out * 9 + 2))) <= 0.0);
    CHECK(within(gf.dw, gd.dw, bound.dw, gamma(double(shape.n * shape.h * shape.w + 2))) <= 0.0);
  }
}

TEST_CASE("Direct 3x3 kernel: accumulating into d_x adds the scaled input gradient", "[nn][conv_backward][direct3x3]") {
  const Shape shape{6, 10, 3, 3, 1, Padding2d::same(1), 2, 8, 8};
  Problem<float> p(shape, Epilogue::all_pointers, true, 9400);
  const std::vector<float> prior = random_vector<float>(static_cast<Index>(p.x.size()), 9401);
  auto run = [&](bool accumulate) {
    Context<float> ctx(2);
    std::vector<float> dx = prior;
    ddpm::nn::detail::conv2d_backward(ctx, p.conv, p.xmap(), p.dout(), p.scale,
                                      map_of(dx, shape.in, shape.n, shape.h, shape.w), accumulate, ConvGrads<float>{});
    return dx;
  };
  const std::vector<float> written = run(false), added = run(true);
  // added = prior + written up to one rounding of the sum (|written| + |prior| bounds it)
  double worst = 0.0;
  for (std::size_t i = 0; i < prior.size(); ++i) {
    const double want = double(prior[i]) + double(written[i]);
    worst = std::max(worst, std::abs(double(added[i]) - want) - 0x1.0p-23 * (std::abs(double(prior[i])) + std::abs(double(written[i]))));
  }
  CHECK(worst <= 0.0);
}
