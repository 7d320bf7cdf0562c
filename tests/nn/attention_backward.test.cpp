// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
//
// The attention block's training kernels [docs/unet.md, Eq. (U5)]: attention_forward is bit-identical to
// AttentionBlock::forward and keeps the right log-sum-exp; attention_backward's gradients (the block input
// through a GroupNorm backward composed here, the normed input, every projection's weight and bias) against
// central finite differences of AttentionBlock<double>::forward (PyTorch gradcheck's eps 1e-6, atol 1e-5,
// rtol 1e-3); float against double; bit-identical results on 1, 2 and 3 threads; bad input.

#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "ddpm/nn/attention.hpp"
#include "ddpm/nn/detail/attention_backward.hpp"
#include "ddpm/nn/detail/norm_backward.hpp"
#include "nn_reference.hpp"

using nn_test::Index;

namespace {

template <class S>
std::map<std::string, ddpm::nn::Parameter<S>> params_by_name(ddpm::nn::AttentionBlock<S>& block) {
  std::map<std::string, ddpm::nn::Parameter<S>> out;
  for (auto& p : ddpm::nn::parameters_of<S>(block)) out[p.name] = p;
  return out;
}

// The kernel's view of a block's storage: to_q, to_k, to_v are one stacked [3 inner, C] matrix.
template <class S>
ddpm::nn::detail::AttentionWeights<S> weights_of(ddpm::nn::AttentionBlock<S>& block) {
  auto p = params_by_name(block);
  const Index inner = block.inner_dim(), C = block.channels();
  REQUIRE(p["to_k.weight"].data == p["to_q.weight"].data + inner * C);
  REQUIRE(p["to_v.weight"].data == p["to_q.weight"].data + 2 * inner * C);
  REQUIRE(p["to_k.bias"].data == p["to_q.bias"].data + inner);
  REQUIRE(p["to_v.bias"].data == p["to_q.bias"].data + 2 * inner);
  return {p["to_q.weight"].data, p["to_q.bias"].data, p["to_out.0.weight"].data, p["to_out.0.bias"].data,
          C, block.heads(), block.head_dim(), block.rescale_output_factor()};
}

template <class S>
ddpm::nn::detail::AttentionGradients<S> gradients_of(ddpm::nn::AttentionBlock<S>& grad_block) {
  auto w = weights_of(grad_block);
  return {const_cast<S*>(w.qkv_weight), const_cast<S*>(w.qkv_bias), const_cast<S*>(w.out_weight),
          const_cast<S*>(w.out_bias)};
}

struct Shape {
  Index channels, head_dim;
  std::optional<Index> groups;
  double rescale;
  Index n, h, w;
};

// Everything one training pass of the kernels produces, on channel-major buffers.
template <class S>
struct Pass {
  std::vector<S> xn, out, qkv, heads_out, lse, d_normed;
  ddpm::nn::AttentionBlock<S> grads;  // gradients stored as a second block (zero-initialised)
};

template <class S>
ddpm::nn::GroupNorm<S> group_norm_of(ddpm::nn::AttentionBlock<S>& block, const Shape& s) {
  ddpm::nn::GroupNorm<S> gn(*s.groups, s.channels, 1e-5);
  auto p = params_by_name(block);
  for (Index c = 0; c < s.channels; ++c) {
    gn.weight()[c] = p["group_norm.weight"].data[c];
    gn.bias()[c] = p["group_norm.bias"].data[c];
  }
  return gn;
}

// Forward with saved activations and backward of d_out, through the kernels.
template <class S>
Pass<S> run_pass(ddpm::nn::AttentionBlock<S>& block, const Shape& s, const std::vector<S>& x,
                 const std::vector<S>& d_out, int threads) {
  ddpm::nn::Context<S> ctx(threads);
  const Index C = s.channels, N = s.n * s.h * s.w;
  Pass<S> r{{}, {}, {}, {}, {}, {}, ddpm::nn::AttentionBlock<S>(s.channels, s.head_dim, s.groups, 1e-5, s.rescale)};
  const ddpm::nn::FeatureMap<const S> in{x.data(), C, s.n, s.h, s.w};
  r.xn = x;
  if (s.groups) group_norm_of(block, s).forward(ctx, in, ddpm::nn::FeatureMap<S>{r.xn.data(), C, s.n, s.h, s.w});
  const auto w = weights_of(block);
  const auto sizes = ddpm::nn::detail::attention_saved_sizes(w, N);
  r.qkv.resize(sizes.qkv);
  r.heads_out.resize(sizes.heads_out);
  r.lse.resize(sizes.lse);
  r.out.resize(C * N);
  const ddpm::nn::detail::AttentionSaved<S> saved{r.qkv.data(), r.heads_out.data(), r.lse.data()};
  const ddpm::nn::FeatureMap<const S> xn{r.xn.data(), C, s.n, s.h, s.w};
  ddpm::nn::detail::attention_forward(ctx, w, in, xn, ddpm::nn::FeatureMap<S>{r.out.data(), C, s.n, s.h, s.w}, saved);
  r.d_normed.assign(C * N, S(0));
  ddpm::nn::detail::attention_backward<S>(ctx, w, xn, saved, {d_out.data(), C, s.n, s.h, s.w},
                                          {r.d_normed.data(), C, s.n, s.h, s.w}, gradients_of(r.grads));
  return r;
}

// The block's own forward on a channel-major input.
template <class S>
std::vector<S> block_forward(const ddpm::nn::AttentionBlock<S>& block, const Shape& s, const std::vector<S>& x,
                             int threads = 1) {
  ddpm::nn::Context<S> ctx(threads);
  std::vector<S> out(x.size());
  block.forward(ctx, {x.data(), s.channels, s.n, s.h, s.w}, {out.data(), s.channels, s.n, s.h, s.w});
  return out;
}

template <class S>
std::vector<S> random_vector(Index n, std::uint64_t seed) {
  nn_test::Uniform u(seed);
  std::vector<S> v(static_cast<std::size_t>(n));
  for (auto& e : v) e = static_cast<S>(u());
  return v;
}

// GroupNorm's input gradient (and its own weight and bias gradients), written from its definition:
// xhat = (x - mu) rstd, y = gamma xhat + beta per image and group of n = channels/groups * H * W values;
//   dx = rstd (gamma dy - mean(gamma dy) - xhat mean(gamma dy xhat)), dgamma = sum dy xhat, dbeta = sum dy.
std::vector<double> group_norm_backward(const std::vector<double>& x, const std::vector<double>& dy,
                                        const std::vector<double>& gamma, const Shape& s, double eps,
                                        std::vector<double>& d_gamma, std::vector<double>& d_beta) {
  const Index C = s.channels, HW = s.h * s.w, N = s.n * HW, per = C / *s.groups;
  std::vector<double> dx(x.size());
  d_gamma.assign(C, 0.0);
  d_beta.assign(C, 0.0);
  for (Index b = 0; b < s.n; ++b) {
    for (Index g = 0; g < *s.groups; ++g) {
      const double n = double(per * HW);
      double mu = 0, var = 0;
      for (Index c = g * per; c < (g + 1) * per; ++c)
        for (Index i = 0; i < HW; ++i) mu += x[c * N + b * HW + i];
      mu /= n;
      for (Index c = g * per; c < (g + 1) * per; ++c)
        for (Index i = 0; i < HW; ++i) var += std::pow(x[c * N + b * HW + i] - mu, 2);
      const double rstd = 1.0 / std::sqrt(var / n + eps);
      double m1 = 0, m2 = 0;
      for (Index c = g * per; c < (g + 1) * per; ++c)
        for (Index i = 0; i < HW; ++i) {
          const Index at = c * N + b * HW + i;
          const double xhat = (x[at] - mu) * rstd;
          m1 += gamma[c] * dy[at] / n;
          m2 += gamma[c] * dy[at] * xhat / n;
          d_gamma[c] += dy[at] * xhat;
          d_beta[c] += dy[at];
        }
      for (Index c = g * per; c < (g + 1) * per; ++c)
        for (Index i = 0; i < HW; ++i) {
          const Index at = c * N + b * HW + i;
          const double xhat = (x[at] - mu) * rstd;
          dx[at] = rstd * (gamma[c] * dy[at] - m1 - xhat * m2);
        }
    }
  }
  return dx;
}

// max |a - e| / max |e| (relative to the largest magnitude, as nn_test::max_rel_error)
template <class A>
double max_rel_diff(const std::vector<A>& a, const std::vector<double>& e) {
  REQUIRE(a.size() == e.size());
  double err = 0.0, mag = 0.0;
  for (std::size_t i = 0; i < e.size(); ++i) {
    err = std::max(err, std::abs(double(a[i]) - e[i]));
    mag = std::max(mag, std::abs(e[i]));
  }
  return mag == 0.0 ? err : err / mag;
}

// gradcheck's criterion: |analytic - numeric| <= atol + rtol |numeric|.
void check_gradient(const std::string& what, const double* analytic, const std::vector<double>& numeric) {
  INFO(what);
  int bad = 0;
  for (std::size_t i = 0; i < numeric.size(); ++i) {
    if (!(std::abs(analytic[i] - numeric[i]) <= 1e-5 + 1e-3 * std::abs(numeric[i]))) {
      if (++bad <= 5) UNSCOPED_INFO(what << "[" << i << "]: analytic " << analytic[i] << ", numeric " << numeric[i]);
    }
  }
  CHECK(bad == 0);
}

const Shape kOddShapes[] = {
    {6, 3, 3, 1.0, 2, 3, 5},            // two heads of 3, GroupNorm of 3 groups
    {6, 6, 2, 1.5, 2, 3, 5},            // one head, rescaled
    {6, 4, 3, 1.0, 2, 3, 5},            // one head of 4: inner 4 != channels 6
    {6, 3, std::nullopt, 2.0, 2, 3, 5}  // no GroupNorm (xn = x), two heads, rescaled
};

}  // namespace

TEMPLATE_TEST_CASE("attention_forward is AttentionBlock::forward bit for bit, and keeps the log-sum-exp",
                   "[nn][attention][backward]", float, double) {
  using S = TestType;
  const Shape shapes[] = {kOddShapes[0], kOddShapes[1], kOddShapes[2], kOddShapes[3],
                          {8, 8, 2, 1.0, 1, 5, 3},   // one image, one head: queries split over threads
                          {32, 16, 8, 1.0, 3, 16, 16}};
  int seed = 100;
  for (const Shape& s : shapes) {
    ddpm::nn::AttentionBlock<S> block(s.channels, s.head_dim, s.groups, 1e-5, s.rescale);
    nn_test::randomize<S>(block, seed, 2.0);
    const Index C = s.channels, N = s.n * s.h * s.w, L = s.h * s.w, d = s.head_dim, inner = block.inner_dim();
    const std::vector<S> x = random_vector<S>(C * N, seed + 1), d_out = random_vector<S>(C * N, seed + 2);
    seed += 3;
    for (int threads : {1, 2, 3}) {
      INFO("channels " << C << ", head_dim " << d << ", " << s.h << "x" << s.w << ", threads " << threads);
      const std::vector<S> expected = block_forward(block, s, x, threads);
      const Pass<S> pass = run_pass(block, s, x, d_out, threads);
      CHECK(std::memcmp(pass.out.data(), expected.data(), expected.size() * sizeof(S)) == 0);
      // without saving (the inference form) too
      {
        ddpm::nn::Context<S> ctx(threads);
        std::vector<S> out(C * N);
        ddpm::nn::detail::attention_forward(ctx, weights_of(block), {x.data(), C, s.n, s.h, s.w},
                                            {pass.xn.data(), C, s.n, s.h, s.w}, {out.data(), C, s.n, s.h, s.w});
        CHECK(std::memcmp(out.data(), expected.data(), expected.size() * sizeof(S)) == 0);
      }
      // lse[h, b L + i] = log sum_j exp(q_i . k_j / sqrt(d)), from the saved q, k in double
      double err = 0.0;
      for (Index h = 0; h < block.heads(); ++h) {
        for (Index b = 0; b < s.n; ++b) {
          for (Index i = 0; i < L; ++i) {
            std::vector<double> sc(L);
            double m = -1e300;
            for (Index j = 0; j < L; ++j) {
              double dot = 0;
              for (Index c = 0; c < d; ++c) {
                dot += double(pass.qkv[(h * d + c) * N + b * L + i]) *
                       double(pass.qkv[(inner + h * d + c) * N + b * L + j]);
              }
              sc[j] = dot / std::sqrt(double(d));
              m = std::max(m, sc[j]);
            }
            double sum = 0;
            for (double v : sc) sum += std::exp(v - m);
            err = std::max(err, std::abs(double(pass.lse[h * N + b * L + i]) - (m + std::log(sum))) /
                                    std::max(1.0, std::abs(m)));
          }
        }
      }
      CHECK(err < 2 * nn_test::tolerance<S>());
    }
  }
}

TEST_CASE("attention_backward against central finite differences of AttentionBlock<double>::forward",
          "[nn][attention][backward]") {
  int seed = 200;
  for (const Shape& s : kOddShapes) {
    INFO("channels " << s.channels << ", head_dim " << s.head_dim << ", groups " << s.groups.value_or(0)
                     << ", rescale " << s.rescale);
    ddpm::nn::AttentionBlock<double> block(s.channels, s.head_dim, s.groups, 1e-5, s.rescale);
    nn_test::randomize<double>(block, seed, 1.5);
    const Index C = s.channels, N = s.n * s.h * s.w;
    std::vector<double> x = random_vector<double>(C * N, seed + 1);
    const std::vector<double> wl = random_vector<double>(C * N, seed + 2);  // L = sum(wl * out): d_out = wl
    seed += 3;
    const auto loss = [&] {
      const std::vector<double> out = block_forward(block, s, x);
      double l = 0;
      for (std::size_t i = 0; i < out.size(); ++i) l += wl[i] * out[i];
      return l;
    };
    const auto numeric = [&](double* v, Index n) {
      std::vector<double> g(static_cast<std::size_t>(n));
      for (Index i = 0; i < n; ++i) {
        const double keep = v[i];
        v[i] = keep + 1e-6;
        const double plus = loss();
        v[i] = keep - 1e-6;
        const double minus = loss();
        v[i] = keep;
        g[i] = (plus - minus) / 2e-6;
      }
      return g;
    };
    Pass<double> pass = run_pass(block, s, x, wl, 1);
    // d_x = GroupNorm backward(d_normed) + d_out / rescale (the residual)
    std::vector<double> d_x = pass.d_normed, d_gamma, d_beta;
    auto p = params_by_name(block);
    if (s.groups) {
      const std::vector<double> gamma(p["group_norm.weight"].data, p["group_norm.weight"].data + C);
      d_x = group_norm_backward(x, pass.d_normed, gamma, s, 1e-5, d_gamma, d_beta);
    }
    ddpm::nn::Context<double> ctx;
    ddpm::nn::detail::attention_residual_backward<double>(ctx, s.rescale, {wl.data(), C, s.n, s.h, s.w},
                                                          {d_x.data(), C, s.n, s.h, s.w});
    check_gradient("d_x", d_x.data(), numeric(x.data(), C * N));
    auto gp = params_by_name(pass.grads);
    for (const char* name : {"to_q.weight", "to_q.bias", "to_k.weight", "to_k.bias", "to_v.weight", "to_v.bias",
                             "to_out.0.weight", "to_out.0.bias"}) {
      check_gradient(name, gp[name].data, numeric(p[name].data, p[name].numel()));
    }
    if (s.groups) {  // the composed GroupNorm backward's own gradients: a check of the test's chain rule
      check_gradient("group_norm.weight", d_gamma.data(), numeric(p["group_norm.weight"].data, C));
      check_gradient("group_norm.bias", d_beta.data(), numeric(p["group_norm.bias"].data, C));
    }
  }
}

TEMPLATE_TEST_CASE("The block's backward as the layer wires it: group_norm_backward after attention_backward",
                   "[nn][attention][backward]", float, double) {
  // forward: group_norm_forward_saved (mean, rstd), attention_forward (saved); backward: attention_backward
  // (d_normed), group_norm_backward (d_x, group_norm.weight/bias), attention_residual_backward (d_x += g).
  // The forward is the block's bit for bit; in double every gradient matches central finite differences of
  // AttentionBlock<double>::forward, in float the double result within float rounding.
  using S = TestType;
  int seed = 700;
  for (const Shape& s : {kOddShapes[0], kOddShapes[1], kOddShapes[2]}) {
    INFO("channels " << s.channels << ", head_dim " << s.head_dim << ", rescale " << s.rescale);
    ddpm::nn::AttentionBlock<double> block(s.channels, s.head_dim, s.groups, 1e-5, s.rescale);
    nn_test::randomize<double>(block, seed, 1.5);
    const Index C = s.channels, N = s.n * s.h * s.w;
    std::vector<double> x = random_vector<double>(C * N, seed + 1);
    const std::vector<double> wl = random_vector<double>(C * N, seed + 2);
    seed += 3;
    // the same values in S
    ddpm::nn::AttentionBlock<S> bs(s.channels, s.head_dim, s.groups, 1e-5, s.rescale);
    auto pd = params_by_name(block);
    auto ps = params_by_name(bs);
    for (auto& [name, p] : pd) {
      for (std::int64_t i = 0; i < p.numel(); ++i) ps[name].data[i] = static_cast<S>(p.data[i]);
    }
    const std::vector<S> xs(x.begin(), x.end()), gs(wl.begin(), wl.end());
    ddpm::nn::Context<S> ctx(2);
    const ddpm::nn::FeatureMap<const S> in{xs.data(), C, s.n, s.h, s.w};
    const ddpm::nn::GroupNorm<S> gn = group_norm_of(bs, s);
    const auto gn_args = ddpm::nn::detail::group_norm_args(gn);
    std::vector<S> xn(C * N), mean(s.n * *s.groups), rstd(s.n * *s.groups), out(C * N);
    ddpm::nn::detail::group_norm_forward_saved(ctx, gn_args, in, ddpm::nn::FeatureMap<S>{xn.data(), C, s.n, s.h, s.w},
                                               mean.data(), rstd.data());
    const auto w = weights_of(bs);
    const auto sizes = ddpm::nn::detail::attention_saved_sizes(w, N);
    std::vector<S> qkv(sizes.qkv), o(sizes.heads_out), lse(sizes.lse);
    const ddpm::nn::detail::AttentionSaved<S> saved{qkv.data(), o.data(), lse.data()};
    ddpm::nn::detail::attention_forward(ctx, w, in, {xn.data(), C, s.n, s.h, s.w}, {out.data(), C, s.n, s.h, s.w}, saved);
    const std::vector<S> expected = block_forward(bs, s, xs, 2);
    CHECK(std::memcmp(out.data(), expected.data(), out.size() * sizeof(S)) == 0);
    ddpm::nn::AttentionBlock<S> grads = bs.gradient_like();
    auto gp = params_by_name(grads);
    std::vector<S> d_normed(C * N), d_x(C * N);
    ddpm::nn::detail::attention_backward<S>(ctx, w, {xn.data(), C, s.n, s.h, s.w}, saved, {gs.data(), C, s.n, s.h, s.w},
                                            {d_normed.data(), C, s.n, s.h, s.w}, gradients_of(grads));
    ddpm::nn::detail::group_norm_backward<S>(ctx, gn_args, in, mean.data(), rstd.data(),
                                             {d_normed.data(), C, s.n, s.h, s.w}, {d_x.data(), C, s.n, s.h, s.w},
                                             {gp["group_norm.weight"].data, gp["group_norm.bias"].data});
    ddpm::nn::detail::attention_residual_backward<S>(ctx, s.rescale, {gs.data(), C, s.n, s.h, s.w},
                                                     {d_x.data(), C, s.n, s.h, s.w});
    // the reference: finite differences of the double block
    const auto loss = [&] {
      const std::vector<double> y = block_forward(block, s, x);
      double l = 0;
      for (std::size_t i = 0; i < y.size(); ++i) l += wl[i] * y[i];
      return l;
    };
    const auto numeric = [&](double* v, Index n) {
      std::vector<double> g(static_cast<std::size_t>(n));
      for (Index i = 0; i < n; ++i) {
        const double keep = v[i];
        v[i] = keep + 1e-6;
        const double plus = loss();
        v[i] = keep - 1e-6;
        const double minus = loss();
        v[i] = keep;
        g[i] = (plus - minus) / 2e-6;
      }
      return g;
    };
    const auto compare = [&](const std::string& what, const S* analytic, const std::vector<double>& fd) {
      if constexpr (std::is_same_v<S, double>) {
        check_gradient(what, analytic, fd);
      } else {
        // float: within float rounding of the (finite-difference-checked) exact gradient, relative to the
        // largest entry; to_k.bias (zero in exact arithmetic) absolutely, the gradients here being O(1).
        INFO(what);
        const std::vector<float> a(analytic, analytic + fd.size());
        if (what == "to_k.bias") {
          for (float v : a) CHECK(std::abs(v) < nn_test::tolerance<float>());
        } else {
          CHECK(max_rel_diff(a, fd) < nn_test::tolerance<float>() + 1e-6);
        }
      }
    };
    compare("d_x", d_x.data(), numeric(x.data(), C * N));
    for (const char* name : {"group_norm.weight", "group_norm.bias", "to_q.weight", "to_q.bias", "to_k.weight",
                             "to_k.bias", "to_v.weight", "to_v.bias", "to_out.0.weight", "to_out.0.bias"}) {
      compare(name, gp[name].data, numeric(pd[name].data, pd[name].numel()));
    }
  }
}

TEST_CASE("attention_backward's d_normed against finite differences in the normed input",
          "[nn][attention][backward]") {
  // The block without its GroupNorm is the attention core plus the residual: d/dxn of sum(w * out) with the
  // residual held fixed is d_normed alone.
  for (const Shape& s0 : {kOddShapes[0], kOddShapes[2]}) {
    Shape s = s0;
    s.groups = std::nullopt;
    ddpm::nn::AttentionBlock<double> block(s.channels, s.head_dim, s.groups, 1e-5, s.rescale);
    nn_test::randomize<double>(block, 300 + s.head_dim, 1.5);
    const Index C = s.channels, N = s.n * s.h * s.w;
    std::vector<double> xn = random_vector<double>(C * N, 301), x = random_vector<double>(C * N, 302);
    const std::vector<double> wl = random_vector<double>(C * N, 303);
    const auto w = weights_of(block);
    const auto loss = [&] {  // attention(xn) + residual x, through the kernel's forward
      ddpm::nn::Context<double> ctx;
      std::vector<double> out(C * N);
      ddpm::nn::detail::attention_forward(ctx, w, {x.data(), C, s.n, s.h, s.w}, {xn.data(), C, s.n, s.h, s.w},
                                          {out.data(), C, s.n, s.h, s.w});
      double l = 0;
      for (std::size_t i = 0; i < out.size(); ++i) l += wl[i] * out[i];
      return l;
    };
    std::vector<double> numeric(C * N);
    for (Index i = 0; i < C * N; ++i) {
      const double keep = xn[i];
      xn[i] = keep + 1e-6;
      const double plus = loss();
      xn[i] = keep - 1e-6;
      const double minus = loss();
      xn[i] = keep;
      numeric[i] = (plus - minus) / 2e-6;
    }
    // run_pass with no GroupNorm uses xn = its input: pass xn as the input
    const Pass<double> pass = run_pass(block, s, xn, wl, 1);
    INFO("head_dim " << s.head_dim);
    check_gradient("d_normed", pass.d_normed.data(), numeric);
  }
}

TEST_CASE("attention_backward in float agrees with double", "[nn][attention][backward]") {
  const Shape shapes[] = {kOddShapes[0], kOddShapes[1], kOddShapes[2], {32, 16, 8, 1.0, 3, 16, 16}};
  int seed = 400;
  for (const Shape& s : shapes) {
    INFO("channels " << s.channels << ", head_dim " << s.head_dim << ", " << s.h << "x" << s.w);
    ddpm::nn::AttentionBlock<float> bf(s.channels, s.head_dim, s.groups, 1e-5, s.rescale);
    ddpm::nn::AttentionBlock<double> bd(s.channels, s.head_dim, s.groups, 1e-5, s.rescale);
    nn_test::randomize<float>(bf, seed, 1.5);
    nn_test::randomize<double>(bd, seed, 1.5);
    const Index C = s.channels, N = s.n * s.h * s.w;
    const std::vector<double> xd = random_vector<double>(C * N, seed + 1), gd = random_vector<double>(C * N, seed + 2);
    seed += 3;
    // the double block gets the float block's exact values
    auto pf = params_by_name(bf);
    auto pd = params_by_name(bd);
    for (auto& [name, p] : pf) {
      for (std::int64_t i = 0; i < p.numel(); ++i) pd[name].data[i] = double(p.data[i]);
    }
    const std::vector<float> xf(xd.begin(), xd.end()), gf(gd.begin(), gd.end());
    const std::vector<double> xd2(xf.begin(), xf.end()), gd2(gf.begin(), gf.end());
    Pass<float> rf = run_pass(bf, s, xf, gf, 2);
    Pass<double> rd = run_pass(bd, s, xd2, gd2, 2);
    CHECK(max_rel_diff(rf.d_normed, rd.d_normed) < nn_test::tolerance<float>());
    auto gpf = params_by_name(rf.grads);
    auto gpd = params_by_name(rd.grads);
    for (const char* name : {"to_q.weight", "to_q.bias", "to_k.weight", "to_k.bias", "to_v.weight", "to_v.bias",
                             "to_out.0.weight", "to_out.0.bias"}) {
      INFO(name);
      const Index n = gpd[name].numel();
      const std::vector<float> a(gpf[name].data, gpf[name].data + n);
      const std::vector<double> e(gpd[name].data, gpd[name].data + n);
      if (std::string(name) == "to_k.bias") {
        // Zero in exact arithmetic (a key bias adds q_i . bk to every score of row i, which the softmax
        // ignores): both are rounding noise, small against the key weights' gradient.
        const Index nk = gpd["to_k.weight"].numel();
        const std::vector<double> wk(gpd["to_k.weight"].data, gpd["to_k.weight"].data + nk);
        double scale = 0.0;
        for (double v : wk) scale = std::max(scale, std::abs(v));
        for (Index i = 0; i < n; ++i) {
          CHECK(std::abs(a[i]) < 5 * nn_test::tolerance<float>() * scale);
          CHECK(std::abs(e[i]) < 5 * nn_test::tolerance<double>() * scale);
        }
        continue;
      }
      CHECK(max_rel_diff(a, e) < nn_test::tolerance<float>());
    }
  }
}

TEMPLATE_TEST_CASE("attention_backward is bit-identical on 1, 2 and 3 threads", "[nn][attention][backward]", float,
                   double) {
  // One forward pass (its saved activations), then the backward pass on 1, 2 and 3 threads.
  using S = TestType;
  const Shape shapes[] = {kOddShapes[0], {32, 16, 8, 1.5, 3, 16, 16}, {24, 24, 4, 1.0, 1, 7, 9}};
  int seed = 500;
  for (const Shape& s : shapes) {
    INFO("channels " << s.channels << ", head_dim " << s.head_dim << ", " << s.h << "x" << s.w);
    ddpm::nn::AttentionBlock<S> block(s.channels, s.head_dim, s.groups, 1e-5, s.rescale);
    nn_test::randomize<S>(block, seed, 1.5);
    const Index C = s.channels, N = s.n * s.h * s.w;
    const std::vector<S> x = random_vector<S>(C * N, seed + 1), g = random_vector<S>(C * N, seed + 2);
    seed += 3;
    Pass<S> one = run_pass(block, s, x, g, 1);
    const auto g1 = ddpm::nn::parameters_of<S>(one.grads);
    const auto w = weights_of(block);
    const ddpm::nn::detail::AttentionSaved<const S> saved{one.qkv.data(), one.heads_out.data(), one.lse.data()};
    for (int threads : {2, 3}) {
      INFO("threads " << threads);
      ddpm::nn::Context<S> ctx(threads);
      ddpm::nn::AttentionBlock<S> grads(s.channels, s.head_dim, s.groups, 1e-5, s.rescale);
      std::vector<S> d_normed(C * N);
      ddpm::nn::detail::attention_backward<S>(ctx, w, {one.xn.data(), C, s.n, s.h, s.w}, saved,
                                              {g.data(), C, s.n, s.h, s.w}, {d_normed.data(), C, s.n, s.h, s.w},
                                              gradients_of(grads));
      CHECK(std::memcmp(one.d_normed.data(), d_normed.data(), d_normed.size() * sizeof(S)) == 0);
      const auto gm = ddpm::nn::parameters_of<S>(grads);
      for (std::size_t i = 0; i < g1.size(); ++i) {
        INFO(g1[i].name);
        CHECK(std::memcmp(g1[i].data, gm[i].data, static_cast<std::size_t>(g1[i].numel()) * sizeof(S)) == 0);
      }
    }
  }
}

TEMPLATE_TEST_CASE("attention_backward does not depend on the addresses of its inputs", "[nn][attention][backward]",
                   float, double) {
  // The same values one element further on in memory (another alignment): bit-identical results.
  using S = TestType;
  const Shape s{32, 16, 8, 1.0, 3, 16, 16};
  ddpm::nn::AttentionBlock<S> block(s.channels, s.head_dim, s.groups, 1e-5, s.rescale);
  nn_test::randomize<S>(block, 550, 1.5);
  const Index C = s.channels, N = s.n * s.h * s.w;
  const std::vector<S> x = random_vector<S>(C * N, 551), g = random_vector<S>(C * N, 552);
  Pass<S> one = run_pass(block, s, x, g, 2);
  const auto shifted = [](const std::vector<S>& v) {
    std::vector<S> out(v.size() + 1);
    std::copy(v.begin(), v.end(), out.begin() + 1);
    return out;
  };
  const std::vector<S> xn = shifted(one.xn), gs = shifted(g), qkv = shifted(one.qkv), o = shifted(one.heads_out),
                       lse = shifted(one.lse);
  std::vector<S> d_normed(C * N + 1);
  ddpm::nn::AttentionBlock<S> grads(s.channels, s.head_dim, s.groups, 1e-5, s.rescale);
  ddpm::nn::Context<S> ctx(2);
  ddpm::nn::detail::attention_backward<S>(ctx, weights_of(block), {xn.data() + 1, C, s.n, s.h, s.w},
                                          {qkv.data() + 1, o.data() + 1, lse.data() + 1},
                                          {gs.data() + 1, C, s.n, s.h, s.w}, {d_normed.data() + 1, C, s.n, s.h, s.w},
                                          gradients_of(grads));
  CHECK(std::memcmp(one.d_normed.data(), d_normed.data() + 1, one.d_normed.size() * sizeof(S)) == 0);
  const auto g1 = ddpm::nn::parameters_of<S>(one.grads), g2 = ddpm::nn::parameters_of<S>(grads);
  for (std::size_t i = 0; i < g1.size(); ++i) {
    INFO(g1[i].name);
    CHECK(std::memcmp(g1[i].data, g2[i].data, static_cast<std::size_t>(g1[i].numel()) * sizeof(S)) == 0);
  }
}

TEST_CASE("attention_backward accumulates into the gradients", "[nn][attention][backward]") {
  // Two backward passes into the same buffers give twice one pass (exactly: x + x is exact).
  const Shape s = kOddShapes[0];
  ddpm::nn::AttentionBlock<double> block(s.channels, s.head_dim, s.groups, 1e-5, s.rescale);
  nn_test::randomize<double>(block, 600, 1.5);
  const Index C = s.channels, N = s.n * s.h * s.w;
  const std::vector<double> x = random_vector<double>(C * N, 601), g = random_vector<double>(C * N, 602);
  Pass<double> pass = run_pass(block, s, x, g, 1);
  const auto once = ddpm::nn::parameters_of<double>(pass.grads);
  std::vector<std::vector<double>> first;
  for (const auto& p : once) first.emplace_back(p.data, p.data + p.numel());
  ddpm::nn::Context<double> ctx;
  const auto w = weights_of(block);
  const ddpm::nn::detail::AttentionSaved<const double> saved{pass.qkv.data(), pass.heads_out.data(), pass.lse.data()};
  ddpm::nn::detail::attention_backward<double>(ctx, w, {pass.xn.data(), C, s.n, s.h, s.w}, saved,
                                               {g.data(), C, s.n, s.h, s.w}, {pass.d_normed.data(), C, s.n, s.h, s.w},
                                               gradients_of(pass.grads));
  const auto twice = ddpm::nn::parameters_of<double>(pass.grads);
  for (std::size_t i = 0; i < twice.size(); ++i) {
    if (twice[i].name.find("group_norm") != std::string::npos) continue;
    INFO(twice[i].name);
    for (std::int64_t j = 0; j < twice[i].numel(); ++j) CHECK(twice[i].data[j] == 2 * first[i][j]);
  }
}

TEST_CASE("attention kernels reject bad shapes and missing saved buffers", "[nn][attention][backward]") {
  const Shape s = kOddShapes[0];
  ddpm::nn::AttentionBlock<float> block(s.channels, s.head_dim, s.groups, 1e-5, s.rescale);
  ddpm::nn::AttentionBlock<float> grad_block(s.channels, s.head_dim, s.groups, 1e-5, s.rescale);
  const auto w = weights_of(block);
  const auto grads = gradients_of(grad_block);
  const Index C = s.channels, N = s.n * s.h * s.w;
  std::vector<float> a(C * N), b(C * N), c(C * N), qkv(3 * C * N), o(C * N), lse(2 * N);
  ddpm::nn::Context<float> ctx;
  using FM = ddpm::nn::FeatureMap<float>;
  const FM good{a.data(), C, s.n, s.h, s.w}, wrong_channels{b.data(), C - 1, s.n, s.h, s.w},
      wrong_width{b.data(), C, s.n, s.h, s.w - 1};
  const ddpm::nn::detail::AttentionSaved<float> saved{qkv.data(), o.data(), lse.data()};
  REQUIRE_THROWS_AS(ddpm::nn::detail::attention_forward<float>(ctx, w, good, good, wrong_channels),
                    ddpm::invalid_argument);
  REQUIRE_THROWS_AS(ddpm::nn::detail::attention_forward<float>(ctx, w, good, wrong_width, FM{c.data(), C, s.n, s.h, s.w}),
                    ddpm::invalid_argument);
  REQUIRE_THROWS_AS(ddpm::nn::detail::attention_backward<float>(ctx, w, good, saved, wrong_width, FM{c.data(), C, s.n, s.h, s.w}, grads),
                    ddpm::invalid_argument);
  REQUIRE_THROWS_AS(ddpm::nn::detail::attention_backward<float>(ctx, w, good, saved, good, wrong_channels, grads),
                    ddpm::invalid_argument);
  REQUIRE_THROWS_AS(ddpm::nn::detail::attention_backward<float>(
                        ctx, w, good, ddpm::nn::detail::AttentionSaved<const float>{qkv.data(), nullptr, lse.data()},
                        good, FM{c.data(), C, s.n, s.h, s.w}, grads),
                    ddpm::invalid_argument);
  REQUIRE_THROWS_AS(ddpm::nn::detail::attention_residual_backward<float>(ctx, 1.0, good, wrong_width),
                    ddpm::invalid_argument);
}
