// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
//
// AttentionBlock [docs/unet.md, Eq. (U5)] against a closed form (one pixel: the softmax is 1) and the naive
// loops, with one and several heads, with and without GroupNorm, with a rescale, on 1 and 2 threads.

#include <catch2/catch.hpp>

#include "ddpm/nn/attention.hpp"
#include "nn_reference.hpp"

using nn_test::Index;

TEMPLATE_TEST_CASE("AttentionBlock on one pixel: out = (Wo (Wv x + bv) + bo + x) / rescale", "[nn][attention]", float,
                   double) {
  using S = TestType;
  const Index C = 4;
  ddpm::nn::AttentionBlock<S> attn(C, 2, std::nullopt, 1e-5, 2.0);  // two heads, no norm
  nn_test::randomize<S>(attn, 41);
  const ddpm::Tensor<S, 4> x = nn_test::random_images<S>(3, C, 1, 1, 42);
  const ddpm::Tensor<S, 4> y = attn(x);
  const auto wv = nn_test::param<S>(attn, "to_v.weight"), bv = nn_test::param<S>(attn, "to_v.bias");
  const auto wo = nn_test::param<S>(attn, "to_out.0.weight"), bo = nn_test::param<S>(attn, "to_out.0.bias");
  for (Index n = 0; n < 3; ++n) {
    std::vector<double> xs(C);
    for (Index c = 0; c < C; ++c) xs[c] = x(n, c, 0, 0);
    const auto v = nn_test::linear(xs, 1, wv, bv, C, C);
    const auto o = nn_test::linear(v, 1, wo, bo, C, C);
    for (Index c = 0; c < C; ++c) CHECK(double(y(n, c, 0, 0)) == Approx((o[c] + xs[c]) / 2.0).margin(nn_test::tolerance<S>()));
  }
}

TEMPLATE_TEST_CASE("AttentionBlock matches the naive loops", "[nn][attention]", float, double) {
  using S = TestType;
  struct Case {
    Index channels, head_dim;
    std::optional<Index> groups;
    double rescale;
    Index n, h, w;
  };
  const Case cases[] = {
      {8, 8, 4, 1.0, 2, 4, 4},           // one head (DDPM: attention_head_dim = null)
      {8, 2, 2, 1.0, 3, 3, 5},           // four heads
      {6, 4, 3, 1.5, 2, 2, 3},           // head_dim does not divide the channels: one head of 4, inner 4 != 6
      {4, 2, std::nullopt, 2.0, 2, 4, 2}, // no GroupNorm (mid block under scale_shift), rescaled
      {8, 8, 2, 1.0, 1, 5, 3}             // one image, one head: the threads share out the 15 queries
  };
  int seed = 50;
  for (const Case& c : cases) {
    ddpm::nn::AttentionBlock<S> attn(c.channels, c.head_dim, c.groups, 1e-5, c.rescale);
    nn_test::randomize<S>(attn, seed, 2.0);  // weights of scale 2: a peaked softmax
    const ddpm::Tensor<S, 4> x = nn_test::random_images<S>(c.n, c.channels, c.h, c.w, seed + 1);
    seed += 2;
    const nn_test::T4 expected =
        nn_test::attention<S>(attn, nn_test::to_double(x), c.groups.has_value(), c.groups.value_or(1), 1e-5,
                              c.channels / c.head_dim, c.head_dim, c.rescale);
    for (int threads : {1, 2, 3}) {
      INFO("channels " << c.channels << ", head_dim " << c.head_dim << ", threads " << threads);
      ddpm::nn::Context<S> ctx(threads);
      ddpm::nn::Feature<S> in = ddpm::nn::to_feature(ctx, x);
      ddpm::nn::Feature<S> out = ddpm::nn::make_feature(ctx, c.channels, c.n, c.h, c.w);
      attn.forward(ctx, in.cview(), out.view());
      CHECK(nn_test::max_rel_error(ddpm::nn::to_nchw(out.cview()), expected) < 5 * nn_test::tolerance<S>());
    }
  }
}

TEST_CASE("AttentionBlock names its parameters as diffusers", "[nn][attention]") {
  ddpm::nn::AttentionBlock<float> attn(8, 4, 2, 1e-6);
  const auto params = ddpm::nn::parameters_of<float>(attn, "mid_block.attentions.0.");
  std::vector<std::string> names;
  for (const auto& p : params) names.push_back(p.name);
  const std::vector<std::string> expected = {
      "mid_block.attentions.0.group_norm.weight", "mid_block.attentions.0.group_norm.bias",
      "mid_block.attentions.0.to_q.weight",       "mid_block.attentions.0.to_q.bias",
      "mid_block.attentions.0.to_k.weight",       "mid_block.attentions.0.to_k.bias",
      "mid_block.attentions.0.to_v.weight",       "mid_block.attentions.0.to_v.bias",
      "mid_block.attentions.0.to_out.0.weight",   "mid_block.attentions.0.to_out.0.bias"};
  CHECK(names == expected);
  CHECK(attn.heads() == 2);
  CHECK(params[2].shape == std::vector<std::int64_t>{8, 8});
  ddpm::nn::AttentionBlock<float> narrow(6, 4, std::nullopt, 1e-6);
  CHECK(narrow.heads() == 1);
  CHECK(ddpm::nn::parameters_of<float>(narrow)[0].shape == std::vector<std::int64_t>{4, 6});  // to_q: inner 4
}

TEST_CASE("AttentionBlock rejects bad arguments", "[nn][attention]") {
  REQUIRE_THROWS_AS(ddpm::nn::AttentionBlock<float>(8, 0, 4, 1e-6), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(ddpm::nn::AttentionBlock<float>(8, 16, 4, 1e-6), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(ddpm::nn::AttentionBlock<float>(8, 8, 3, 1e-6), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(ddpm::nn::AttentionBlock<float>(8, 8, 4, 1e-6, 0.0), ddpm::invalid_argument);
  ddpm::nn::AttentionBlock<float> attn(8, 8, 4, 1e-6);
  REQUIRE_THROWS_AS(attn(ddpm::Tensor<float, 4>(1, 4, 2, 2)), ddpm::invalid_argument);
}
