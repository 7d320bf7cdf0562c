// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
//
// The backward kernels of nn/detail/resample_backward.hpp: Downsample2D (stride-2 conv with symmetric and
// diffusers' asymmetric padding, and 2x2 average pooling; [docs/unet.md, Eq. (U7)]), Upsample2D (nearest x2
// with and without its 3x3 conv, Eq. (U8)) and the skip concatenation, against central finite differences
// in double of L = sum(w * out) through the layers' own forward, on odd shapes; bit-identical on 1, 2 and
// 3 threads; float against double; accumulation; bad input.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include "ddpm/nn/detail/resample_backward.hpp"
#include "ddpm/nn/downsample.hpp"
#include "ddpm/nn/unet_blocks.hpp"
#include "ddpm/nn/upsample.hpp"
#include "nn_reference.hpp"

using ddpm::nn::Context;
using ddpm::nn::ConvAlgorithm;
using ddpm::nn::FeatureMap;
using ddpm::nn::detail::ConvGrads;
using nn_test::Index;

namespace {

constexpr double kEps = 1e-6, kAtol = 1e-5, kRtol = 1e-3;  // torch.autograd.gradcheck's

template <class S>
std::vector<S> random_vector(Index n, std::uint64_t seed) {
  nn_test::Uniform u(seed);
  std::vector<S> v(static_cast<std::size_t>(n));
  for (S& e : v) e = static_cast<S>(u());
  return v;
}

/// gradcheck's criterion over all entries; the gradient must not be trivially zero.
void check_gradient(const char* name, const std::vector<double>& a, const std::vector<double>& n) {
  REQUIRE(a.size() == n.size());
  double worst = -1.0, largest = 0.0;
  std::size_t at = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double excess = std::abs(a[i] - n[i]) - (kAtol + kRtol * std::abs(n[i]));
    largest = std::max(largest, std::abs(n[i]));
    if (excess > worst) {
      worst = excess;
      at = i;
    }
  }
  INFO(name << ": worst entry " << at << ", analytic " << a[at] << ", numeric " << n[at]);
  CHECK(worst <= 0.0);
  CHECK(largest > 0.05);
}

/// Central differences of loss() in every entry of v.
std::vector<double> numeric(std::vector<double>& v, const std::function<double()>& loss) {
  std::vector<double> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) {
    const double v0 = v[i];
    v[i] = v0 + kEps;
    const double lp = loss();
    v[i] = v0 - kEps;
    const double lm = loss();
    v[i] = v0;
    out[i] = (lp - lm) / (2 * kEps);
  }
  return out;
}

/// The same for the parameters of a layer with a conv (re-prepared after each change).
template <class Layer>
std::vector<double> numeric_param(Layer& layer, const std::string& name, const std::function<double()>& loss) {
  std::vector<double> out;
  for (const auto& p : ddpm::nn::parameters_of<double>(layer)) {
    if (p.name != name) continue;
    for (std::int64_t i = 0; i < p.numel(); ++i) {
      const double v0 = p.data[i];
      p.data[i] = v0 + kEps;
      layer.mark_weights_changed();
      const double lp = loss();
      p.data[i] = v0 - kEps;
      layer.mark_weights_changed();
      const double lm = loss();
      p.data[i] = v0;
      layer.mark_weights_changed();
      out.push_back((lp - lm) / (2 * kEps));
    }
  }
  return out;
}

template <class S>
double dot(const std::vector<S>& w, const std::vector<S>& out) {
  double l = 0.0;
  for (std::size_t i = 0; i < out.size(); ++i) l += double(w[i]) * double(out[i]);
  return l;
}

template <class S>
std::vector<double> as_double(const std::vector<S>& v) {
  return std::vector<double>(v.begin(), v.end());
}

struct Grads {
  std::vector<double> dx, dw, db;
};

/// The kernels' gradients of a Downsample2D (use_conv or not) for L = sum(w * out).
template <class S>
Grads downsample_grads(ddpm::nn::Downsample2D<S>& layer, const std::vector<S>& x, const std::vector<S>& w, Index C,
                       Index N, Index H, Index W, int threads) {
  Context<S> ctx(threads);
  const Index OH = layer.output_height(H), OW = layer.output_width(W);
  std::vector<S> dx(x.size(), S(5)), dw, db;
  ConvGrads<S> g;
  const ddpm::nn::Conv2d<S>* conv = nullptr;
  if (layer.use_conv()) {
    conv = &layer.conv();
    dw.assign(static_cast<std::size_t>(conv->weight().size()), S(0));
    db.assign(static_cast<std::size_t>(C), S(0));
    g = {dw.data(), db.data(), nullptr};
  }
  ddpm::nn::detail::downsample2d_backward<S>(ctx, conv, {x.data(), C, N, H, W}, {w.data(), C, N, OH, OW},
                                             {dx.data(), C, N, H, W}, false, g);
  return {as_double(dx), as_double(dw), as_double(db)};
}

template <class S>
Grads upsample_grads(ddpm::nn::Upsample2D<S>& layer, const std::vector<S>& x, const std::vector<S>& w, Index C, Index N,
                     Index H, Index W, int threads, bool give_up = false) {
  Context<S> ctx(threads);
  std::vector<S> dx(x.size(), S(5)), dw, db, up;
  ConvGrads<S> g;
  const ddpm::nn::Conv2d<S>* conv = nullptr;
  if (layer.use_conv()) {
    conv = &layer.conv();
    dw.assign(static_cast<std::size_t>(conv->weight().size()), S(0));
    db.assign(static_cast<std::size_t>(C), S(0));
    g = {dw.data(), db.data(), nullptr};
  }
  if (give_up) {
    up.resize(4 * x.size());
    ddpm::nn::detail::upsample_nearest2x<S>(ctx, {x.data(), C, N, H, W}, {up.data(), C, N, 2 * H, 2 * W});
  }
  ddpm::nn::detail::upsample2d_backward<S>(ctx, conv, {x.data(), C, N, H, W}, give_up ? up.data() : nullptr,
                                           {w.data(), C, N, 2 * H, 2 * W}, {dx.data(), C, N, H, W}, false, g);
  return {as_double(dx), as_double(dw), as_double(db)};
}

}  // namespace

TEST_CASE("downsample2d_backward: gradients against central differences of Downsample2D::forward",
          "[nn][resample_backward]") {
  const Index C = 3, N = 2;
  struct Case {
    bool use_conv;
    Index padding, h, w;
  };
  const Case cases[] = {{true, 0, 7, 5},  {true, 1, 7, 5},  {true, 0, 8, 6},
                        {false, 1, 7, 5}, {false, 1, 8, 6}, {false, 1, 1, 3}};
  std::uint64_t seed = 40;
  for (const Case& c : cases) {
    INFO("use_conv " << c.use_conv << ", padding " << c.padding << ", " << c.h << "x" << c.w);
    ddpm::nn::Downsample2D<double> layer(C, c.use_conv, c.padding);
    nn_test::randomize<double>(layer, seed += 10);
    layer.prepare();
    const Index OH = layer.output_height(c.h), OW = layer.output_width(c.w);
    std::vector<double> x = random_vector<double>(C * N * c.h * c.w, seed + 1);
    const std::vector<double> w = random_vector<double>(C * N * OH * OW, seed + 2);
    auto loss = [&] {
      Context<double> ctx;
      std::vector<double> out(w.size());
      layer.forward(ctx, {x.data(), C, N, c.h, c.w}, {out.data(), C, N, OH, OW});
      return dot(w, out);
    };
    const Grads a = downsample_grads(layer, x, w, C, N, c.h, c.w, 1);
    if (OH * OW > 0) check_gradient("d_x", a.dx, numeric(x, loss));
    if (OH * OW == 0) {
      for (double v : a.dx) CHECK(v == 0.0);  // nothing pooled: every input gradient is 0
    }
    if (c.use_conv) {
      check_gradient("d_weight", a.dw, numeric_param(layer, "conv.weight", loss));
      check_gradient("d_bias", a.db, numeric_param(layer, "conv.bias", loss));
    }
    const Grads two = downsample_grads(layer, x, w, C, N, c.h, c.w, 2);
    CHECK(two.dx == a.dx);
    CHECK(two.dw == a.dw);
    CHECK(two.db == a.db);
  }
}

TEST_CASE("upsample2d_backward: gradients against central differences of Upsample2D::forward",
          "[nn][resample_backward]") {
  const Index C = 3, N = 2, H = 7, W = 5;
  std::uint64_t seed = 70;
  for (bool use_conv : {true, false}) {
    for (ConvAlgorithm algorithm : {ConvAlgorithm::im2col, ConvAlgorithm::winograd}) {
      if (!use_conv && algorithm == ConvAlgorithm::winograd) continue;
      INFO("use_conv " << use_conv << ", algorithm " << int(algorithm));
      ddpm::nn::Upsample2D<double> layer(C, use_conv);
      nn_test::randomize<double>(layer, seed += 10);
      if (use_conv) layer.conv().set_algorithm(algorithm);
      layer.prepare();
      std::vector<double> x = random_vector<double>(C * N * H * W, seed + 1);
      const std::vector<double> w = random_vector<double>(C * N * 4 * H * W, seed + 2);
      auto loss = [&] {
        Context<double> ctx;
        std::vector<double> out(w.size());
        layer.prepare();
        layer.forward(ctx, {x.data(), C, N, H, W}, {out.data(), C, N, 2 * H, 2 * W});
        return dot(w, out);
      };
      const Grads a = upsample_grads(layer, x, w, C, N, H, W, 1);
      check_gradient("d_x", a.dx, numeric(x, loss));
      if (use_conv) {
        check_gradient("d_weight", a.dw, numeric_param(layer, "conv.weight", loss));
        check_gradient("d_bias", a.db, numeric_param(layer, "conv.bias", loss));
      }
      for (int threads : {1, 2}) {
        const Grads b = upsample_grads(layer, x, w, C, N, H, W, threads, true);  // with the saved `up`
        CHECK(b.dx == a.dx);
        CHECK(b.dw == a.dw);
        CHECK(b.db == a.db);
      }
    }
  }
}

TEMPLATE_TEST_CASE("resample backward: large shapes bit-identical on 1, 2 and 3 threads", "[nn][resample_backward]",
                   float, double) {
  using S = TestType;
  const Index C = 40, N = 3, H = 17, W = 19;
  const std::vector<S> x = random_vector<S>(C * N * H * W, 1);
  for (bool use_conv : {true, false}) {
    INFO("use_conv " << use_conv);
    ddpm::nn::Downsample2D<S> down(C, use_conv, 0);
    ddpm::nn::Upsample2D<S> up(C, use_conv);
    nn_test::randomize<S>(down, 2);
    nn_test::randomize<S>(up, 3);
    const std::vector<S> wd = random_vector<S>(C * N * down.output_height(H) * down.output_width(W), 4);
    const std::vector<S> wu = random_vector<S>(C * N * 4 * H * W, 5);
    const Grads d1 = downsample_grads(down, x, wd, C, N, H, W, 1);
    const Grads u1 = upsample_grads(up, x, wu, C, N, H, W, 1);
    for (int threads : {2, 3}) {
      const Grads d = downsample_grads(down, x, wd, C, N, H, W, threads);
      const Grads u = upsample_grads(up, x, wu, C, N, H, W, threads);
      CHECK(d.dx == d1.dx);
      CHECK(d.dw == d1.dw);
      CHECK(d.db == d1.db);
      CHECK(u.dx == u1.dx);
      CHECK(u.dw == u1.dw);
      CHECK(u.db == u1.db);
    }
  }
}

TEST_CASE("resample backward: float agrees with double", "[nn][resample_backward]") {
  // The pool's adjoint is exact in float (a product by 1/4); nearest's sums 4 values: |err| <= 3 u sum |.|,
  // at most 3 u * 4 max |d_up| with u = 2^-24.
  const Index C = 5, N = 2, H = 9, W = 7;
  const std::vector<float> xf = random_vector<float>(C * N * H * W, 11);
  const std::vector<float> wd = random_vector<float>(C * N * (H / 2) * (W / 2), 12);
  const std::vector<float> wu = random_vector<float>(C * N * 4 * H * W, 13);
  ddpm::nn::Downsample2D<float> df(C, false);
  ddpm::nn::Downsample2D<double> dd(C, false);
  ddpm::nn::Upsample2D<float> uf(C, false);
  ddpm::nn::Upsample2D<double> ud(C, false);
  const std::vector<double> xd(xf.begin(), xf.end()), wdd(wd.begin(), wd.end()), wud(wu.begin(), wu.end());
  CHECK(downsample_grads(df, xf, wd, C, N, H, W, 2).dx == downsample_grads(dd, xd, wdd, C, N, H, W, 1).dx);
  const std::vector<double> a = upsample_grads(uf, xf, wu, C, N, H, W, 2).dx;
  const std::vector<double> b = upsample_grads(ud, xd, wud, C, N, H, W, 1).dx;
  double worst = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]));
  CHECK(worst <= 3 * 0x1.0p-24 * 4 * 1.0);  // |d_up| <= 1
}

TEST_CASE("concat_channels_backward: the gradient of [a; b] is the two channel ranges", "[nn][resample_backward]") {
  const Index Ca = 3, Cb = 5, N = 2, H = 3, W = 5;
  std::vector<double> a = random_vector<double>(Ca * N * H * W, 1), b = random_vector<double>(Cb * N * H * W, 2);
  const std::vector<double> w = random_vector<double>((Ca + Cb) * N * H * W, 3);
  auto loss = [&] {
    Context<double> ctx;
    const ddpm::nn::Feature<double> cat =
        ddpm::nn::concat_channels<double>(ctx, {a.data(), Ca, N, H, W}, {b.data(), Cb, N, H, W});
    double l = 0.0;
    for (Index i = 0; i < cat.map.size(); ++i) l += w[static_cast<std::size_t>(i)] * cat.map.data[i];
    return l;
  };
  const std::vector<double> na = numeric(a, loss), nb = numeric(b, loss);
  Context<double> ctx(2);
  std::vector<double> da(a.size(), 0.0), db = random_vector<double>(static_cast<Index>(b.size()), 4);
  const std::vector<double> db0 = db;
  const FeatureMap<const double> d_cat{w.data(), Ca + Cb, N, H, W};
  ddpm::nn::detail::concat_channels_backward<double>(ctx, d_cat, {da.data(), Ca, N, H, W}, false,
                                                     {db.data(), Cb, N, H, W}, true);
  check_gradient("d_a", da, na);
  for (std::size_t i = 0; i < db.size(); ++i) db[i] -= db0[i];
  check_gradient("d_b (accumulated)", db, nb);
  // the views
  const FeatureMap<const double> va = ddpm::nn::detail::channel_slice(d_cat, 0, Ca);
  const FeatureMap<const double> vb = ddpm::nn::detail::channel_slice(d_cat, Ca, Ca + Cb);
  CHECK(va.channels == Ca);
  CHECK(vb.channels == Cb);
  CHECK(std::vector<double>(va.data, va.data + va.size()) == da);
  CHECK(std::vector<double>(vb.data, vb.data + vb.size()) == std::vector<double>(w.begin() + Ca * N * H * W, w.end()));
  REQUIRE_THROWS_AS(ddpm::nn::detail::channel_slice(d_cat, 2, 9), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(ddpm::nn::detail::channel_slice(d_cat, 3, 2), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(ddpm::nn::detail::concat_channels_backward<double>(ctx, d_cat, {da.data(), Ca, N, H, W}, false,
                                                                       {db.data(), Cb - 1, N, H, W}, false),
                    ddpm::invalid_argument);
}

TEST_CASE("resample backward: accumulation adds, and bad shapes throw", "[nn][resample_backward]") {
  const Index C = 3, N = 2, H = 7, W = 5;
  Context<double> ctx(2);
  const std::vector<double> d_pool = random_vector<double>(C * N * (H / 2) * (W / 2), 1);
  const std::vector<double> d_up = random_vector<double>(C * N * 4 * H * W, 2);
  std::vector<double> fresh(C * N * H * W), acc = random_vector<double>(C * N * H * W, 3);
  const FeatureMap<const double> pool_map{d_pool.data(), C, N, H / 2, W / 2}, up_map{d_up.data(), C, N, 2 * H, 2 * W};
  for (int which = 0; which < 2; ++which) {
    std::vector<double> a = acc;
    if (which == 0) {
      ddpm::nn::detail::avg_pool2x2_backward<double>(ctx, pool_map, {fresh.data(), C, N, H, W}, false);
      ddpm::nn::detail::avg_pool2x2_backward<double>(ctx, pool_map, {a.data(), C, N, H, W}, true);
    } else {
      ddpm::nn::detail::upsample_nearest2x_backward<double>(ctx, up_map, {fresh.data(), C, N, H, W}, false);
      ddpm::nn::detail::upsample_nearest2x_backward<double>(ctx, up_map, {a.data(), C, N, H, W}, true);
    }
    for (std::size_t i = 0; i < a.size(); ++i) CHECK(a[i] == acc[i] + fresh[i]);
  }
  std::vector<double> dx(C * N * H * W);
  using ddpm::nn::detail::avg_pool2x2_backward;
  using ddpm::nn::detail::upsample_nearest2x_backward;
  REQUIRE_THROWS_AS(avg_pool2x2_backward<double>(ctx, pool_map, {dx.data(), C, N, H + 2, W}, false),
                    ddpm::invalid_argument);
  REQUIRE_THROWS_AS(avg_pool2x2_backward<double>(ctx, pool_map, {dx.data(), C, 1, H, W}, false),
                    ddpm::invalid_argument);
  REQUIRE_THROWS_AS(upsample_nearest2x_backward<double>(ctx, up_map, {dx.data(), C, N, H, W - 1}, false),
                    ddpm::invalid_argument);
  REQUIRE_THROWS_AS(upsample_nearest2x_backward<double>(ctx, up_map, {dx.data(), C - 1, N, H, W}, false),
                    ddpm::invalid_argument);
  ddpm::nn::Downsample2D<double> pool(C, false);
  ddpm::nn::Upsample2D<double> up(C, false);
  std::vector<double> dw(10);
  const FeatureMap<const double> x{dx.data(), C, N, H, W};
  REQUIRE_THROWS_AS(
      ddpm::nn::detail::downsample2d_backward<double>(ctx, nullptr, x, pool_map, {dx.data(), C, N, H, W}, false,
                                                      ConvGrads<double>{dw.data(), nullptr, nullptr}),
      ddpm::invalid_argument);
  REQUIRE_THROWS_AS(ddpm::nn::detail::upsample2d_backward<double>(ctx, nullptr, x, nullptr, pool_map,
                                                                  {dx.data(), C, N, H, W}, false, {}),
                    ddpm::invalid_argument);
  try {
    avg_pool2x2_backward<double>(ctx, pool_map, {dx.data(), C, N, H + 2, W}, false);
  } catch (const ddpm::invalid_argument& e) {
    CHECK_THAT(e.what(), Catch::Contains("d_x [C=3, N=2, H=9, W=5]"));
  }
}
