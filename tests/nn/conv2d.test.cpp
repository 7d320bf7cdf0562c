// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
//
// Conv2d [docs/unet.md, Eq. (U1)] against a hand-computed case and the naive loops of nn_reference.hpp,
// over kernel sizes, strides, symmetric and asymmetric padding, batches, thread counts (which change how
// the columns are cut into GEMM blocks), and the fused epilogue.

#include <catch2/catch.hpp>

#include "ddpm/nn/conv2d.hpp"
#include "nn_reference.hpp"

using ddpm::nn::Conv2d;
using ddpm::nn::ConvAlgorithm;
using ddpm::nn::Padding2d;
using nn_test::Index;

TEMPLATE_TEST_CASE("Conv2d: a 2x2 kernel on a 3x3 image, by hand", "[nn][conv2d]", float, double) {
  using S = TestType;
  Conv2d<S> conv(1, 1, 2, 1, 0);
  conv.weight() << 1, 2, 3, 4;  // [[1, 2], [3, 4]]
  conv.bias() << S(0.5);
  ddpm::Tensor<S, 4> x(1, 1, 3, 3);
  x.setValues({{{{1, 2, 3}, {4, 5, 6}, {7, 8, 9}}}});
  const ddpm::Tensor<S, 4> y = conv(x);
  REQUIRE(y.dimension(2) == 2);
  REQUIRE(y.dimension(3) == 2);
  // y[0,0] = 1*1 + 2*2 + 3*4 + 4*5 + 0.5 = 37.5; y[0,1] = 2 + 6 + 15 + 24 + 0.5 = 47.5;
  // y[1,0] = 4 + 10 + 21 + 32 + 0.5 = 67.5;     y[1,1] = 5 + 12 + 24 + 36 + 0.5 = 77.5
  CHECK(y(0, 0, 0, 0) == S(37.5));
  CHECK(y(0, 0, 0, 1) == S(47.5));
  CHECK(y(0, 0, 1, 0) == S(67.5));
  CHECK(y(0, 0, 1, 1) == S(77.5));
}

TEMPLATE_TEST_CASE("Conv2d: asymmetric padding (0, 0, 1, 1) with stride 2, by hand", "[nn][conv2d]", float, double) {
  using S = TestType;
  // diffusers' downsample_padding = 0: pad one zero row/column at the bottom/right, then stride 2.
  Conv2d<S> conv(1, 1, 3, 3, 2, Padding2d{0, 0, 1, 1}, false);
  conv.weight().setOnes();
  ddpm::Tensor<S, 4> x(1, 1, 4, 4);
  for (Index i = 0; i < 16; ++i) x.data()[i] = S(i + 1);  // rows 1..4, 5..8, 9..12, 13..16
  const ddpm::Tensor<S, 4> y = conv(x);
  REQUIRE(y.dimension(2) == 2);
  REQUIRE(y.dimension(3) == 2);
  CHECK(y(0, 0, 0, 0) == S(1 + 2 + 3 + 5 + 6 + 7 + 9 + 10 + 11));       // 54
  CHECK(y(0, 0, 0, 1) == S(3 + 4 + 7 + 8 + 11 + 12));                   // 45 (right column is padding)
  CHECK(y(0, 0, 1, 0) == S(9 + 10 + 11 + 13 + 14 + 15));                // 72 (bottom row is padding)
  CHECK(y(0, 0, 1, 1) == S(11 + 12 + 15 + 16));                         // 54
}

TEMPLATE_TEST_CASE("Conv2d matches the naive loops", "[nn][conv2d]", float, double) {
  using S = TestType;
  struct Case {
    Index in, out, kh, kw, stride;
    Padding2d pad;
    Index n, h, w;
  };
  const Case cases[] = {
      {3, 8, 3, 3, 1, Padding2d::same(1), 2, 7, 5},    // the UNet's 3x3 convolution, odd sizes
      {5, 4, 1, 1, 1, Padding2d{}, 3, 4, 6},           // pointwise (a shortcut)
      {4, 6, 3, 3, 2, Padding2d::same(1), 2, 8, 8},    // downsample_padding = 1
      {4, 6, 3, 3, 2, Padding2d{0, 0, 1, 1}, 2, 8, 6}, // downsample_padding = 0
      {2, 3, 5, 3, 1, Padding2d{2, 1, 0, 3}, 1, 6, 5}, // rectangular kernel, uneven padding
      {3, 2, 3, 3, 3, Padding2d::same(0), 2, 10, 11},  // stride 3, no padding
      {16, 16, 3, 3, 1, Padding2d::same(1), 3, 32, 32}, // enough columns for several GEMM blocks
      {5, 7, 3, 3, 1, Padding2d::same(1), 2, 9, 7},    // Winograd with odd sizes: partial tiles
      {24, 8, 3, 3, 1, Padding2d::same(1), 1, 2, 2},   // a single tile
      {8, 24, 3, 3, 1, Padding2d::same(1), 2, 1, 5}    // one pixel high
  };
  int seed = 0;
  for (const Case& c : cases) {
    Conv2d<S> conv(c.in, c.out, c.kh, c.kw, c.stride, c.pad);
    nn_test::randomize<S>(conv, 100 + seed);
    const ddpm::Tensor<S, 4> x = nn_test::random_images<S>(c.n, c.in, c.h, c.w, 200 + seed++);
    const nn_test::T4 expected =
        nn_test::conv2d(nn_test::to_double(x), nn_test::param<S>(conv, "weight"), nn_test::param<S>(conv, "bias"),
                        c.out, c.kh, c.kw, c.stride, c.pad.top, c.pad.left, c.pad.bottom, c.pad.right);
    for (auto algorithm : {ConvAlgorithm::automatic, ConvAlgorithm::im2col, ConvAlgorithm::winograd}) {
      conv.set_algorithm(algorithm);
      for (int threads : {1, 2, 3}) {
        INFO("case " << seed << ", algorithm " << int(algorithm) << " (Winograd: " << conv.uses_winograd(c.n, c.h, c.w)
                     << "), threads " << threads);
        ddpm::nn::Context<S> ctx(threads);
        ddpm::nn::Feature<S> in = ddpm::nn::to_feature(ctx, x);
        ddpm::nn::Feature<S> out =
            ddpm::nn::make_feature(ctx, c.out, c.n, conv.output_height(c.h), conv.output_width(c.w));
        conv.forward(ctx, in.cview(), out.view());
        const ddpm::Tensor<S, 4> y = ddpm::nn::to_nchw(out.cview());
        REQUIRE(y.dimension(2) == expected.dimension(2));
        REQUIRE(y.dimension(3) == expected.dimension(3));
        CHECK(nn_test::max_rel_error(y, expected) < nn_test::tolerance<S>());
      }
    }
  }
}

TEMPLATE_TEST_CASE("Conv2d epilogue: residual, per-image bias and scale", "[nn][conv2d]", float, double) {
  using S = TestType;
  const Index N = 2, C = 3, O = 4, H = 5, W = 6;
  Conv2d<S> conv(C, O, 3, 1, 1);
  nn_test::randomize<S>(conv, 7);
  const ddpm::Tensor<S, 4> x = nn_test::random_images<S>(N, C, H, W, 8);
  const ddpm::Tensor<S, 4> residual = nn_test::random_images<S>(N, O, H, W, 9);
  const ddpm::Tensor<S, 4> other = nn_test::random_images<S>(N, O, H, W, 11);
  std::vector<S> batch_bias(N * O);
  nn_test::Uniform u(10);
  for (S& v : batch_bias) v = static_cast<S>(u());
  const S scale = S(1) / S(1.5);
  const nn_test::T4 plain = nn_test::conv2d(nn_test::to_double(x), nn_test::param<S>(conv, "weight"),
                                            nn_test::param<S>(conv, "bias"), O, 3, 3, 1, 1, 1, 1, 1);
  // out = scale * ([out] + conv + per-image bias + [residual]) for each way of adding
  enum Mode { accumulate, residual_pointer, both };
  for (Mode mode : {accumulate, residual_pointer, both}) {
    nn_test::T4 expected(N, O, H, W);
    for (Index n = 0; n < N; ++n)
      for (Index o = 0; o < O; ++o)
        for (Index i = 0; i < H; ++i)
          for (Index j = 0; j < W; ++j) {
            double added = mode == both ? double(residual(n, o, i, j)) + double(other(n, o, i, j))
                                        : double(residual(n, o, i, j));
            expected(n, o, i, j) = (added + plain(n, o, i, j) + double(batch_bias[n * O + o])) * double(scale);
          }
    for (auto algorithm : {ConvAlgorithm::im2col, ConvAlgorithm::winograd}) {
      conv.set_algorithm(algorithm);
      REQUIRE(conv.uses_winograd(N, H, W) == (algorithm == ConvAlgorithm::winograd));
      for (int threads : {1, 2}) {
        INFO("mode " << int(mode) << ", algorithm " << int(algorithm) << ", threads " << threads);
        ddpm::nn::Context<S> ctx(threads);
        ddpm::nn::Feature<S> in = ddpm::nn::to_feature(ctx, x);
        ddpm::nn::Feature<S> res = ddpm::nn::to_feature(ctx, mode == both ? other : residual);
        ddpm::nn::Feature<S> out = mode == residual_pointer ? ddpm::nn::make_feature(ctx, O, N, H, W)
                                                            : ddpm::nn::to_feature(ctx, residual);
        ddpm::nn::ConvEpilogue<S> e;
        e.accumulate = mode != residual_pointer;
        e.residual = mode != accumulate ? res.map.data : nullptr;
        e.batch_bias = batch_bias.data();
        e.scale = scale;
        conv.forward(ctx, in.cview(), out.view(), e);
        CHECK(nn_test::max_rel_error(ddpm::nn::to_nchw(out.cview()), expected) < nn_test::tolerance<S>());
      }
    }
  }
}

TEST_CASE("Conv2d recomputes its Winograd weights after they change", "[nn][conv2d]") {
  Conv2d<double> conv(2, 2, 3, 1, 1);
  conv.set_algorithm(ConvAlgorithm::winograd);
  const ddpm::Tensor<double, 4> x = nn_test::random_images<double>(1, 2, 4, 4, 3);
  nn_test::randomize<double>(conv, 1);
  (void)conv(x);  // derives the transformed weights
  conv.weight() *= 2.0;  // a change through the accessor
  conv.bias().setZero();
  const nn_test::T4 expected = nn_test::conv2d(x, nn_test::param<double>(conv, "weight"), {}, 2, 3, 3, 1, 1, 1, 1, 1);
  CHECK(nn_test::max_rel_error(conv(x), expected) < 1e-12);
  conv.for_each_parameter("", [](const ddpm::nn::Parameter<double>& p) {  // a change through the pointers
    for (std::int64_t i = 0; i < p.numel(); ++i) p.data[i] = 0.0;
  });
  const ddpm::Tensor<double, 4> zero = conv(x);
  for (Index i = 0; i < zero.size(); ++i) CHECK(zero.data()[i] == 0.0);
}

TEST_CASE("Conv2d parameters have PyTorch's names and shapes", "[nn][conv2d]") {
  Conv2d<float> conv(3, 8, 3, 1, 1);
  const auto params = ddpm::nn::parameters_of<float>(conv, "conv_in.");
  REQUIRE(params.size() == 2);
  CHECK(params[0].name == "conv_in.weight");
  CHECK(params[0].shape == std::vector<std::int64_t>{8, 3, 3, 3});
  CHECK(params[1].name == "conv_in.bias");
  CHECK(params[1].shape == std::vector<std::int64_t>{8});
  CHECK(ddpm::nn::parameter_count<float>(conv) == 8 * 3 * 9 + 8);
  Conv2d<float> no_bias(3, 8, 1, 1, 0, false);
  CHECK(ddpm::nn::parameters_of<float>(no_bias).size() == 1);
}

TEST_CASE("Conv2d rejects bad arguments", "[nn][conv2d]") {
  REQUIRE_THROWS_AS(Conv2d<float>(0, 4, 3), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(Conv2d<float>(4, 0, 3), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(Conv2d<float>(4, 4, 0), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(Conv2d<float>(4, 4, 3, 0), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(Conv2d<float>(4, 4, 3, 3, 1, Padding2d{-1, 0, 0, 0}), ddpm::invalid_argument);
  Conv2d<float> conv(2, 3, 3, 1, 1);
  ddpm::nn::Context<float> ctx;
  ddpm::nn::Feature<float> in = ddpm::nn::make_feature(ctx, 2, 1, 4, 4);
  ddpm::nn::Feature<float> wrong_channels = ddpm::nn::make_feature(ctx, 4, 1, 4, 4);
  ddpm::nn::Feature<float> wrong_size = ddpm::nn::make_feature(ctx, 3, 1, 3, 4);
  ddpm::nn::Feature<float> ok = ddpm::nn::make_feature(ctx, 3, 1, 4, 4);
  REQUIRE_THROWS_AS(conv.forward(ctx, in.cview(), wrong_channels.view()), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(conv.forward(ctx, in.cview(), wrong_size.view()), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(conv.forward(ctx, ok.cview(), ok.view()), ddpm::invalid_argument);  // 3 input channels
  // an image smaller than the kernel with no padding has no output
  Conv2d<float> big(1, 1, 5);
  REQUIRE_THROWS_AS(big(ddpm::Tensor<float, 4>(1, 1, 3, 3)), ddpm::invalid_argument);
}

TEST_CASE("Conv2d refuses stale Winograd weights: every mutable access is a change until prepare()",
          "[nn][conv2d][protocol]") {
  Conv2d<double> conv(3, 4, 3, 1, 1);
  nn_test::randomize<double>(conv, 5);  // randomize prepares
  REQUIRE(conv.is_prepared());
  const ddpm::Tensor<double, 4> x = nn_test::random_images<double>(2, 3, 6, 5, 6);
  ddpm::nn::Workspace<double> ws;
  ddpm::nn::Feature<double> in = ddpm::nn::to_feature(ws, x);
  ddpm::nn::Feature<double> out = ddpm::nn::make_feature(ws, 4, 2, 6, 5);
  auto run = [&](ConvAlgorithm a) {
    conv.set_algorithm(a);
    conv.forward(ws, in.cview(), out.view());
  };
  REQUIRE_NOTHROW(run(ConvAlgorithm::winograd));
  // read-only inspection is not a change
  const std::uint64_t v0 = conv.weights_version();
  (void)nn_test::param<double>(conv, "weight");
  (void)ddpm::nn::parameter_count<double>(conv);
  (void)static_cast<const Conv2d<double>&>(conv).weight();
  CHECK(conv.weights_version() == v0);
  CHECK(conv.is_prepared());
  // each mutable access bumps the version; the Winograd path then throws, im2col does not need the transform
  auto stale_after = [&](auto&& change) {
    conv.prepare();
    change();
    CHECK(conv.weights_version() > v0);
    CHECK_FALSE(conv.is_prepared());
    REQUIRE_THROWS_AS(run(ConvAlgorithm::winograd), ddpm::invalid_argument);
    REQUIRE_NOTHROW(run(ConvAlgorithm::im2col));
  };
  stale_after([&] { conv.weight()(0, 0) += 1.0; });
  stale_after([&] { conv.bias()[0] += 1.0; });
  stale_after([&] { (void)ddpm::nn::parameters_of<double>(conv); });
  stale_after([&] { conv.mark_weights_changed(); });
  try {
    run(ConvAlgorithm::winograd);
  } catch (const ddpm::invalid_argument& e) {
    CHECK_THAT(e.what(), Catch::Contains("call prepare()"));
  }
  // after prepare(), the Winograd result is that of the new weights
  conv.weight()(1, 2) = 0.75;
  conv.prepare();
  run(ConvAlgorithm::winograd);
  const nn_test::T4 expected = nn_test::conv2d(x, nn_test::param<double>(conv, "weight"),
                                               nn_test::param<double>(conv, "bias"), 4, 3, 3, 1, 1, 1, 1, 1);
  CHECK(nn_test::max_rel_error(ddpm::nn::to_nchw(out.cview()), expected) < 1e-12);
}

TEST_CASE("Conv2d gradient_like has the parameters' names and shapes, all zero", "[nn][conv2d][protocol]") {
  Conv2d<float> conv(3, 5, 3, 3, 2, Padding2d{1, 0, 1, 0});
  nn_test::randomize<float>(conv, 9);
  const Conv2d<float> grads = conv.gradient_like();
  const auto p = ddpm::nn::parameters_of<const float>(static_cast<const Conv2d<float>&>(conv));
  const auto g = ddpm::nn::parameters_of<const float>(grads);
  REQUIRE(g.size() == p.size());
  for (std::size_t i = 0; i < p.size(); ++i) {
    CHECK(g[i].name == p[i].name);
    CHECK(g[i].shape == p[i].shape);
    for (std::int64_t k = 0; k < g[i].numel(); ++k) REQUIRE(g[i].data[k] == 0.0f);
  }
  CHECK(grads.stride() == 2);
  CHECK(grads.padding() == conv.padding());
}
