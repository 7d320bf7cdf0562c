// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
//
// GroupNorm's backward kernel [docs/unet.md, Eq. (U2)]: every gradient against central finite differences
// of L = sum(w * out) through nn::GroupNorm<double>::forward (PyTorch gradcheck's eps 1e-6, atol 1e-5,
// rtol 1e-3), with and without the per-image scale / shift, for every activation; the saving forward
// against GroupNorm::forward bit for bit; float against double; thread counts bit for bit.

#include <catch2/catch.hpp>

#include <cstring>
#include <limits>
#include <functional>
#include <vector>

#include "ddpm/nn/detail/norm_backward.hpp"
#include "nn_reference.hpp"

namespace {

using nn_test::Index;
using ddpm::nn::Activation;

constexpr Activation kActivations[] = {Activation::identity, Activation::silu, Activation::mish, Activation::gelu,
                                       Activation::relu};

const char* name_of(Activation a) {
  switch (a) {
    case Activation::identity: return "identity";
    case Activation::silu: return "silu";
    case Activation::mish: return "mish";
    case Activation::gelu: return "gelu";
    case Activation::relu: return "relu";
  }
  return "?";
}

template <class S>
std::vector<S> uniform_vector(Index n, std::uint64_t seed, double lo = -1.0, double hi = 1.0) {
  nn_test::Uniform u(seed);
  std::vector<S> v(static_cast<std::size_t>(n));
  for (S& e : v) e = static_cast<S>(u(lo, hi));
  return v;
}

template <class S>
ddpm::nn::FeatureMap<S> map_of(std::vector<S>& v, Index C, Index N, Index H, Index W) {
  return {v.data(), C, N, H, W};
}
template <class S>
ddpm::nn::FeatureMap<const S> cmap_of(const std::vector<S>& v, Index C, Index N, Index H, Index W) {
  return {v.data(), C, N, H, W};
}

/// gradcheck's criterion: |analytic - numeric| <= atol + rtol |numeric| for every element, where numeric is
/// the central difference (L(p + eps) - L(p - eps)) / (2 eps) of the loss in p[i].
void check_against_finite_differences(const std::string& what, const std::vector<double>& analytic, double* p,
                                      Index n, const std::function<double()>& loss) {
  constexpr double eps = 1e-6, atol = 1e-5, rtol = 1e-3;
  REQUIRE(static_cast<Index>(analytic.size()) == n);
  int failures = 0;
  for (Index i = 0; i < n; ++i) {
    const double saved = p[i];
    p[i] = saved + eps;
    const double plus = loss();
    p[i] = saved - eps;
    const double minus = loss();
    p[i] = saved;
    const double numeric = (plus - minus) / (2 * eps);
    const double a = analytic[static_cast<std::size_t>(i)];
    if (!(std::abs(a - numeric) <= atol + rtol * std::abs(numeric))) {
      if (++failures <= 5) UNSCOPED_INFO(what << "[" << i << "]: analytic " << a << ", numeric " << numeric);
    }
  }
  CHECK(failures == 0);
}

/// The test problem: N = 2, C = 6 in 3 groups, H = 5, W = 3 (odd), random weights, modulation and loss weights.
struct Problem {
  static constexpr Index N = 2, C = 6, G = 3, H = 5, W = 3, size = C * N * H * W;
  ddpm::nn::GroupNorm<double> gn{G, C, 1e-5};
  std::vector<double> x = uniform_vector<double>(size, 1), w = uniform_vector<double>(size, 2);
  std::vector<double> scale = uniform_vector<double>(N * C, 3, -0.5, 0.5);
  std::vector<double> shift = uniform_vector<double>(N * C, 4, -0.5, 0.5);
  Problem(double x_offset = 0.0) {
    nn_test::randomize<double>(gn, 5);
    for (double& v : x) v = 2 * v + x_offset;
  }
};

}  // namespace

TEMPLATE_TEST_CASE("group_norm_forward_saved equals GroupNorm::forward bit for bit and saves mean and rstd",
                   "[nn][group_norm][backward]", float, double) {
  using S = TestType;
  const Index N = 2, C = 6, G = 3, H = 5, W = 3, size = C * N * H * W;
  ddpm::nn::GroupNorm<S> gn(G, C, 1e-5);
  nn_test::randomize<S>(gn, 7);
  std::vector<S> x = uniform_vector<S>(size, 8), scale = uniform_vector<S>(N * C, 9), shift = uniform_vector<S>(N * C, 10);
  for (S& v : x) v = S(3) * v + S(20);  // an offset: the variance is not E[x^2] - E[x]^2
  for (const bool modulated : {false, true}) {
    for (const Activation act : kActivations) {
      for (const int threads : {1, 2}) {
        INFO("activation " << name_of(act) << ", modulated " << modulated << ", threads " << threads);
        ddpm::nn::Context<S> ctx(threads);
        const S* sc = modulated ? scale.data() : nullptr;
        const S* sh = modulated ? shift.data() : nullptr;
        std::vector<S> expected(size), actual(size), mean(N * G), rstd(N * G);
        gn.forward(ctx, cmap_of(x, C, N, H, W), map_of(expected, C, N, H, W), act, sc, sh);
        ddpm::nn::detail::group_norm_forward_saved(ctx, ddpm::nn::detail::group_norm_args(gn, act, sc, sh),
                                                   cmap_of(x, C, N, H, W), map_of(actual, C, N, H, W), mean.data(), rstd.data());
        // The two forwards run the same expressions, but the compiler may contract x * a + d into an FMA in
        // one inlining context and not the other (-O3 -march=native): one rounding of terms of size up to
        // |x| |a| ~ 30 here, so allow 1000 ulp of max(1, |y|) (about 30x that).
        for (Index i = 0; i < size; ++i) {
          const double e = expected[i], a = actual[i];
          CHECK(std::abs(e - a) <= 1e3 * double(std::numeric_limits<S>::epsilon()) * std::max(1.0, std::abs(e)));
        }
        // statistics against a double computation by definition
        const Index per = C / G * H * W;
        for (Index b = 0; b < N; ++b) {
          for (Index g = 0; g < G; ++g) {
            double sum = 0.0, sq = 0.0;
            for (Index c = g * C / G; c < (g + 1) * C / G; ++c)
              for (Index i = 0; i < H * W; ++i) sum += double(x[(c * N + b) * H * W + i]);
            const double mu = sum / double(per);
            for (Index c = g * C / G; c < (g + 1) * C / G; ++c)
              for (Index i = 0; i < H * W; ++i) sq += std::pow(double(x[(c * N + b) * H * W + i]) - mu, 2);
            const double rs = 1.0 / std::sqrt(sq / double(per) + 1e-5);
            CHECK(double(mean[b * G + g]) == Approx(mu).epsilon(nn_test::tolerance<S>()));
            CHECK(double(rstd[b * G + g]) == Approx(rs).epsilon(nn_test::tolerance<S>()));
          }
        }
      }
    }
  }
}

TEST_CASE("group_norm_backward against finite differences of GroupNorm<double>::forward",
          "[nn][group_norm][backward]") {
  using ddpm::nn::detail::GroupNormGrads;
  constexpr Index N = Problem::N, C = Problem::C, G = Problem::G, H = Problem::H, W = Problem::W, size = Problem::size;
  for (const double x_offset : {0.0, 5.0}) {
    for (const int modulation : {0, 1, 2}) {  // none, scale and shift, shift only
      for (const Activation act : kActivations) {
        INFO("activation " << name_of(act) << ", modulation " << modulation << ", x offset " << x_offset);
        Problem pb(x_offset);
        double* sc = modulation == 1 ? pb.scale.data() : nullptr;
        double* sh = modulation >= 1 ? pb.shift.data() : nullptr;
        ddpm::nn::Context<double> ctx(1);
        std::vector<double> out(size);
        auto loss = [&] {
          pb.gn.forward(ctx, cmap_of(pb.x, C, N, H, W), map_of(out, C, N, H, W), act, sc, sh);
          double l = 0.0;
          for (Index i = 0; i < size; ++i) l += pb.w[i] * out[i];
          return l;
        };
        std::vector<double> mean(N * G), rstd(N * G), y(size), d_x(size);
        std::vector<double> d_weight(C, 0.0), d_bias(C, 0.0), d_scale(N * C, 0.0), d_shift(N * C, 0.0);
        const auto args = ddpm::nn::detail::group_norm_args(pb.gn, act, sc, sh);
        ddpm::nn::detail::group_norm_forward_saved(ctx, args, cmap_of(pb.x, C, N, H, W), map_of(y, C, N, H, W),
                                                   mean.data(), rstd.data());
        ddpm::nn::detail::group_norm_backward(ctx, args, cmap_of(pb.x, C, N, H, W), mean.data(), rstd.data(),
                                              cmap_of(pb.w, C, N, H, W), map_of(d_x, C, N, H, W),
                                              GroupNormGrads<double>{d_weight.data(), d_bias.data(), d_scale.data(),
                                                                     d_shift.data()});
        check_against_finite_differences("d_x", d_x, pb.x.data(), size, loss);
        check_against_finite_differences("d_weight", d_weight, pb.gn.weight().data(), C, loss);
        check_against_finite_differences("d_bias", d_bias, pb.gn.bias().data(), C, loss);
        if (modulation >= 1) check_against_finite_differences("d_shift", d_shift, pb.shift.data(), N * C, loss);
        if (modulation == 1) {
          check_against_finite_differences("d_scale", d_scale, pb.scale.data(), N * C, loss);
        } else {
          // without a scale input, d_scale is the gradient at scale = 0: check it through a zero scale
          std::vector<double> zero(N * C, 0.0);
          sc = zero.data();
          check_against_finite_differences("d_scale at 0", d_scale, zero.data(), N * C, loss);
          sc = nullptr;
        }
      }
    }
  }
}

TEST_CASE("group_norm_backward accumulates into the parameter gradients and may run in place",
          "[nn][group_norm][backward]") {
  using ddpm::nn::detail::GroupNormGrads;
  constexpr Index N = Problem::N, C = Problem::C, G = Problem::G, H = Problem::H, W = Problem::W, size = Problem::size;
  Problem pb;
  ddpm::nn::Context<double> ctx(1);
  const auto args = ddpm::nn::detail::group_norm_args(pb.gn, Activation::silu, pb.scale.data(), pb.shift.data());
  std::vector<double> mean(N * G), rstd(N * G), y(size), d_x(size);
  ddpm::nn::detail::group_norm_forward_saved(ctx, args, cmap_of(pb.x, C, N, H, W), map_of(y, C, N, H, W), mean.data(), rstd.data());
  std::vector<double> gw(C, 0.0), gb(C, 0.0), gs(N * C, 0.0), gt(N * C, 0.0);
  const GroupNormGrads<double> grads{gw.data(), gb.data(), gs.data(), gt.data()};
  ddpm::nn::detail::group_norm_backward(ctx, args, cmap_of(pb.x, C, N, H, W), mean.data(), rstd.data(), cmap_of(pb.w, C, N, H, W),
                                        map_of(d_x, C, N, H, W), grads);
  const std::vector<double> gw1 = gw, gb1 = gb, gs1 = gs, gt1 = gt;
  std::vector<double> in_place = pb.w;  // d_x written over d_out
  ddpm::nn::detail::group_norm_backward(ctx, args, cmap_of(pb.x, C, N, H, W), mean.data(), rstd.data(),
                                        cmap_of(in_place, C, N, H, W), map_of(in_place, C, N, H, W), grads);
  CHECK(in_place == d_x);
  for (Index c = 0; c < C; ++c) {
    CHECK(gw[c] == 2 * gw1[c]);  // x + x is exact
    CHECK(gb[c] == 2 * gb1[c]);
  }
  for (Index i = 0; i < N * C; ++i) {
    CHECK(gs[i] == 2 * gs1[i]);
    CHECK(gt[i] == 2 * gt1[i]);
  }
  // null gradient pointers skip those gradients and leave d_x unchanged
  std::vector<double> d_x2(size);
  ddpm::nn::detail::group_norm_backward(ctx, args, cmap_of(pb.x, C, N, H, W), mean.data(), rstd.data(), cmap_of(pb.w, C, N, H, W),
                                        map_of(d_x2, C, N, H, W), GroupNormGrads<double>{});
  CHECK(d_x2 == d_x);
}

TEST_CASE("group_norm_backward gives the same bits on 1, 2 and 3 threads", "[nn][group_norm][backward]") {
  using ddpm::nn::detail::GroupNormGrads;
  // more (b, g) jobs than threads, with a prime number of them per thread count
  constexpr Index N = 3, C = 10, G = 5, H = 7, W = 9, size = C * N * H * W;
  ddpm::nn::GroupNorm<float> gn(G, C, 1e-6);
  nn_test::randomize<float>(gn, 31);
  const std::vector<float> x = uniform_vector<float>(size, 32), d_out = uniform_vector<float>(size, 33);
  const std::vector<float> scale = uniform_vector<float>(N * C, 34), shift = uniform_vector<float>(N * C, 35);
  const auto args = ddpm::nn::detail::group_norm_args(gn, Activation::silu, scale.data(), shift.data());
  std::vector<float> ref_dx, ref_params;
  for (const int threads : {1, 2, 3}) {
    ddpm::nn::Context<float> ctx(threads);
    std::vector<float> mean(N * G), rstd(N * G), y(size), d_x(size);
    std::vector<float> params(2 * C + 2 * N * C, 0.0f);
    ddpm::nn::detail::group_norm_forward_saved(ctx, args, cmap_of(x, C, N, H, W), map_of(y, C, N, H, W), mean.data(), rstd.data());
    ddpm::nn::detail::group_norm_backward(
        ctx, args, cmap_of(x, C, N, H, W), mean.data(), rstd.data(), cmap_of(d_out, C, N, H, W), map_of(d_x, C, N, H, W),
        GroupNormGrads<float>{params.data(), params.data() + C, params.data() + 2 * C, params.data() + 2 * C + N * C});
    if (threads == 1) {
      ref_dx = d_x;
      ref_params = params;
    } else {
      INFO("threads " << threads);
      CHECK(std::memcmp(d_x.data(), ref_dx.data(), size * sizeof(float)) == 0);
      CHECK(std::memcmp(params.data(), ref_params.data(), params.size() * sizeof(float)) == 0);
    }
  }
}

TEST_CASE("group_norm_backward in float agrees with double", "[nn][group_norm][backward]") {
  using ddpm::nn::detail::GroupNormGrads;
  constexpr Index N = 2, C = 6, G = 3, H = 5, W = 3, size = C * N * H * W;
  for (const Activation act : kActivations) {
    INFO("activation " << name_of(act));
    std::vector<std::vector<double>> results;  // per precision: d_x, then d_weight, d_bias, d_scale, d_shift
    auto run = [&]<class S>(S) {
      ddpm::nn::GroupNorm<S> gn(G, C, 1e-5);
      nn_test::randomize<S>(gn, 41);
      const std::vector<S> x = uniform_vector<S>(size, 42, -2, 2), d_out = uniform_vector<S>(size, 43);
      const std::vector<S> scale = uniform_vector<S>(N * C, 44, -0.5, 0.5), shift = uniform_vector<S>(N * C, 45);
      const auto args = ddpm::nn::detail::group_norm_args(gn, act, scale.data(), shift.data());
      ddpm::nn::Context<S> ctx(1);
      std::vector<S> mean(N * G), rstd(N * G), y(size), d_x(size), gw(C), gb(C),
          gs(N * C), gt(N * C);
      ddpm::nn::detail::group_norm_forward_saved(ctx, args, cmap_of(x, C, N, H, W), map_of(y, C, N, H, W),
                                                 mean.data(), rstd.data());
      ddpm::nn::detail::group_norm_backward(ctx, args, cmap_of(x, C, N, H, W), mean.data(), rstd.data(), cmap_of(d_out, C, N, H, W),
                                            map_of(d_x, C, N, H, W),
                                            GroupNormGrads<S>{gw.data(), gb.data(), gs.data(), gt.data()});
      for (const auto* v : {&d_x, &gw, &gb, &gs, &gt}) results.emplace_back(v->begin(), v->end());
    };
    run(float{});
    run(double{});
    for (std::size_t k = 0; k < 5; ++k) {
      const std::vector<double>& f = results[k];
      const std::vector<double>& d = results[k + 5];
      double err = 0.0, mag = 0.0;
      for (std::size_t i = 0; i < d.size(); ++i) {
        err = std::max(err, std::abs(f[i] - d[i]));
        mag = std::max(mag, std::abs(d[i]));
      }
      // inputs differ by float rounding (2^-24 = 6e-8 relative); the gradients are sums of ~45 products of
      // O(1) factors with cancellation in d_x: about 30 float roundings of the largest gradient at most
      // (measured: 3e-7 at worst over the activations)
      INFO("gradient " << k << ": max error " << err << " of max " << mag);
      CHECK(err <= 2e-6 * mag);
    }
  }
}

TEST_CASE("group_norm kernels reject bad arguments", "[nn][group_norm][backward]") {
  using ddpm::nn::detail::GroupNormArgs;
  ddpm::nn::Context<float> ctx(1);
  std::vector<float> a(6 * 2 * 4), b(6 * 2 * 4), mean(6), rstd(6), weight(6, 1.0f), bias(6, 0.0f);
  const GroupNormArgs<float> ok{3, 1e-5, weight.data(), bias.data()};
  GroupNormArgs<float> bad_groups = ok;
  bad_groups.groups = 4;
  GroupNormArgs<float> no_weight = ok;
  no_weight.weight = nullptr;
  auto m = [](std::vector<float>& v, Index c) { return ddpm::nn::FeatureMap<float>{v.data(), c, 2, 2, 2}; };
  using ddpm::nn::detail::group_norm_backward;
  using ddpm::nn::detail::group_norm_forward_saved;
  CHECK_NOTHROW(group_norm_forward_saved<float>(ctx, ok, m(a, 6), m(b, 6), mean.data(), rstd.data()));
  REQUIRE_THROWS_AS(group_norm_forward_saved<float>(ctx, bad_groups, m(a, 6), m(b, 6), mean.data(), rstd.data()),
                    ddpm::invalid_argument);
  REQUIRE_THROWS_WITH(group_norm_forward_saved<float>(ctx, bad_groups, m(a, 6), m(b, 6), mean.data(), rstd.data()),
                      Catch::Contains("groups is 4"));
  REQUIRE_THROWS_AS(group_norm_forward_saved<float>(ctx, no_weight, m(a, 6), m(b, 6), mean.data(), rstd.data()),
                    ddpm::invalid_argument);
  REQUIRE_THROWS_AS(group_norm_forward_saved<float>(ctx, ok, m(a, 6), m(b, 3), mean.data(), rstd.data()), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(group_norm_backward<float>(ctx, ok, m(a, 6), mean.data(), rstd.data(), m(b, 6), m(b, 3), {}),
                    ddpm::invalid_argument);
  REQUIRE_THROWS_AS(group_norm_backward<float>(ctx, ok, m(a, 6), nullptr, rstd.data(), m(b, 6), m(b, 6), {}),
                    ddpm::invalid_argument);
}
