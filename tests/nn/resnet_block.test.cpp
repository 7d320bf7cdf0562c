// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
//
// ResnetBlock2D [docs/unet.md, Eq. (U6)] against the naive composition of its layers: with and without the
// 1x1 shortcut, additive and scale_shift time conditioning, and an output scale factor.

#include <catch2/catch.hpp>

#include "ddpm/nn/conv2d.hpp"
#include "ddpm/nn/downsample.hpp"
#include "ddpm/nn/resnet_block.hpp"
#include "ddpm/nn/unet_blocks.hpp"
#include "ddpm/nn/upsample.hpp"
#include "nn_reference.hpp"

using nn_test::Index;

TEMPLATE_TEST_CASE("ResnetBlock2D matches the naive composition", "[nn][resnet_block]", float, double) {
  using S = TestType;
  struct Case {
    Index in, out;
    double scale;
    ddpm::nn::TimeEmbeddingNorm norm;
  };
  const Case cases[] = {{8, 8, 1.0, ddpm::nn::TimeEmbeddingNorm::additive},
                        {4, 8, 1.0, ddpm::nn::TimeEmbeddingNorm::additive},
                        {8, 4, 1.5, ddpm::nn::TimeEmbeddingNorm::additive},
                        {4, 8, 2.0, ddpm::nn::TimeEmbeddingNorm::scale_shift}};
  const Index N = 2, T = 6, H = 5, W = 4, G = 2;
  int seed = 60;
  for (const Case& c : cases) {
    ddpm::nn::ResnetBlock2D<S> block(c.in, c.out, T, G, 1e-6, ddpm::nn::Activation::silu, c.scale, c.norm);
    CHECK(block.has_conv_shortcut() == (c.in != c.out));
    nn_test::randomize<S>(block, seed++);
    const ddpm::Tensor<S, 4> x = nn_test::random_images<S>(N, c.in, H, W, seed++);
    typename ddpm::nn::ResnetBlock2D<S>::Matrix temb(N, T);
    nn_test::Uniform u(seed++);
    for (Index i = 0; i < temb.size(); ++i) temb.data()[i] = static_cast<S>(2 * u());
    const std::vector<double> temb_d(temb.data(), temb.data() + temb.size());
    const nn_test::T4 expected = nn_test::resnet_block<S>(block, nn_test::to_double(x), temb_d, T, c.out, G, 1e-6,
                                                          c.scale, c.norm == ddpm::nn::TimeEmbeddingNorm::scale_shift);
    typename ddpm::nn::ResnetBlock2D<S>::Matrix temb_act = temb;
    ddpm::nn::apply_activation(ddpm::nn::Activation::silu, temb_act.data(), temb_act.size());
    for (int threads : {1, 2}) {
      INFO("in " << c.in << ", out " << c.out << ", threads " << threads);
      ddpm::nn::Context<S> ctx(threads);
      ddpm::nn::Feature<S> in = ddpm::nn::to_feature(ctx, x);
      ddpm::nn::Feature<S> out = ddpm::nn::make_feature(ctx, c.out, N, H, W);
      block.forward(ctx, in.cview(), temb_act, out.view());
      CHECK(nn_test::max_rel_error(ddpm::nn::to_nchw(out.cview()), expected) < 5 * nn_test::tolerance<S>());
    }
  }
}

TEST_CASE("ResnetBlock2D names its parameters as diffusers", "[nn][resnet_block]") {
  ddpm::nn::ResnetBlock2D<float> block(4, 8, 16, 2, 1e-6);
  std::vector<std::string> names;
  for (const auto& p : ddpm::nn::parameters_of<float>(block)) names.push_back(p.name);
  const std::vector<std::string> expected = {
      "norm1.weight", "norm1.bias", "conv1.weight", "conv1.bias", "time_emb_proj.weight", "time_emb_proj.bias",
      "norm2.weight", "norm2.bias", "conv2.weight", "conv2.bias", "conv_shortcut.weight", "conv_shortcut.bias"};
  CHECK(names == expected);
  ddpm::nn::ResnetBlock2D<float> same(8, 8, 16, 2, 1e-6, ddpm::nn::Activation::silu, 1.0,
                                      ddpm::nn::TimeEmbeddingNorm::scale_shift);
  const auto params = ddpm::nn::parameters_of<float>(same);
  CHECK(params.size() == 10);
  CHECK(params[4].shape == std::vector<std::int64_t>{16, 16});  // time_emb_proj: 2 * out for scale_shift
}

TEST_CASE("ResnetBlock2D rejects bad arguments", "[nn][resnet_block]") {
  REQUIRE_THROWS_AS(ddpm::nn::ResnetBlock2D<float>(4, 8, 16, 3, 1e-6), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(ddpm::nn::ResnetBlock2D<float>(4, 8, 16, 2, 1e-6, ddpm::nn::Activation::silu, 0.0),
                    ddpm::invalid_argument);
  ddpm::nn::ResnetBlock2D<float> block(4, 8, 16, 2, 1e-6);
  ddpm::nn::Context<float> ctx;
  ddpm::nn::Feature<float> in = ddpm::nn::make_feature(ctx, 4, 2, 3, 3);
  ddpm::nn::Feature<float> out = ddpm::nn::make_feature(ctx, 8, 2, 3, 3);
  ddpm::nn::ResnetBlock2D<float>::Matrix wrong_temb(2, 8), temb(2, 16);
  wrong_temb.setZero();
  temb.setZero();
  in.view().data[0] = 0;
  REQUIRE_THROWS_AS(block.forward(ctx, in.cview(), wrong_temb, out.view()), ddpm::invalid_argument);
  ddpm::nn::Feature<float> wrong_out = ddpm::nn::make_feature(ctx, 4, 2, 3, 3);
  REQUIRE_THROWS_AS(block.forward(ctx, in.cview(), temb, wrong_out.view()), ddpm::invalid_argument);
}

TEST_CASE("nn messages name the shapes they got and the shapes they need", "[nn][resnet_block][errors]") {
  // These used to say only "the shapes do not fit" / "out has the wrong shape" (issue 13).
  using Catch::Contains;
  ddpm::nn::Context<float> ctx;
  ddpm::nn::ResnetBlock2D<float> block(4, 8, 16, 2, 1e-6);
  ddpm::nn::Feature<float> in = ddpm::nn::make_feature(ctx, 4, 2, 3, 3);
  ddpm::nn::Feature<float> wrong_out = ddpm::nn::make_feature(ctx, 4, 2, 3, 3);
  ddpm::nn::ResnetBlock2D<float>::Matrix temb(2, 16);
  temb.setZero();
  CHECK_THROWS_WITH(block.forward(ctx, in.cview(), temb, wrong_out.view()),
                    Contains("ResnetBlock2D::forward: out has shape [4, 2, 3, 3]") && Contains("must be [8, 2, 3, 3]"));
  ddpm::nn::ResnetBlock2D<float>::Saved saved;
  CHECK_THROWS_WITH(block.forward_train(ctx, in.cview(), temb, wrong_out.view(), saved),
                    Contains("forward_train: x is [4, 2, 3, 3], out [4, 2, 3, 3]") && Contains("temb [2, 16]") &&
                        Contains("[8, N, H, W]"));
  ddpm::nn::Feature<float> a = ddpm::nn::make_feature(ctx, 3, 2, 4, 4);
  ddpm::nn::Feature<float> b = ddpm::nn::make_feature(ctx, 5, 2, 4, 2);
  CHECK_THROWS_WITH(ddpm::nn::concat_channels(ctx, a.cview(), b.cview()),
                    Contains("concat_channels: a is [3, 2, 4, 4] and b [5, 2, 4, 2]"));
  ddpm::nn::Downsample2D<float> pool(3, false);
  ddpm::nn::Feature<float> pooled = ddpm::nn::make_feature(ctx, 3, 2, 4, 4);
  CHECK_THROWS_WITH(pool.forward(ctx, a.cview(), pooled.view()),
                    Contains("Downsample2D::forward: in is [3, 2, 4, 4] and out [3, 2, 4, 4]") &&
                        Contains("[3, N, H / 2, W / 2]"));
  ddpm::nn::Upsample2D<float> up(3, false);
  CHECK_THROWS_WITH(up.forward(ctx, a.cview(), pooled.view()),
                    Contains("Upsample2D::forward: in is [3, 2, 4, 4] and out [3, 2, 4, 4]") &&
                        Contains("[3, N, 2 H, 2 W]"));
  CHECK_THROWS_WITH(ddpm::nn::Conv2d<float>(3, 4, 3, 3, 1, ddpm::nn::Padding2d{1, -2, 1, 0}),
                    Contains("padding (top, left, bottom, right) is (1, -2, 1, 0)"));
}
