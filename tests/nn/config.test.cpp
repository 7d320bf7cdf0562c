// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
//
// UNet2DConfig: reading diffusers' config.json (google/ddpm-cifar10-32's, verbatim), the defaults, and the
// errors for keys and values that UNet2D does not support.

#include <catch2/catch.hpp>

#include "ddpm/nn/config.hpp"

using ddpm::nn::UNet2DConfig;
using json = nlohmann::json;

namespace {
// The config.json of google/ddpm-cifar10-32 on the Hugging Face hub (diffusers 0.1.x era).
const char* kCifar10 = R"({
  "_class_name": "UNet2DModel",
  "_diffusers_version": "0.1.1",
  "act_fn": "silu",
  "attention_head_dim": null,
  "block_out_channels": [128, 256, 256, 256],
  "center_input_sample": false,
  "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
  "downsample_padding": 0,
  "flip_sin_to_cos": false,
  "freq_shift": 1,
  "in_channels": 3,
  "layers_per_block": 2,
  "mid_block_scale_factor": 1,
  "norm_eps": 1e-06,
  "norm_num_groups": 32,
  "out_channels": 3,
  "sample_size": 32,
  "time_embedding_type": "positional",
  "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"]
})";
}  // namespace

TEST_CASE("UNet2DConfig reads google/ddpm-cifar10-32's config.json", "[nn][config]") {
  const UNet2DConfig c = UNet2DConfig::from_json(json::parse(kCifar10));
  CHECK(c.block_out_channels == std::vector<int>{128, 256, 256, 256});
  CHECK(c.down_block_types[1] == "AttnDownBlock2D");
  CHECK(c.up_block_types[2] == "AttnUpBlock2D");
  CHECK_FALSE(c.attention_head_dim.has_value());
  CHECK(c.downsample_padding == 0);
  CHECK(c.freq_shift == 1.0);
  CHECK_FALSE(c.flip_sin_to_cos);
  CHECK(c.norm_eps == 1e-6);
  CHECK(c.sample_size == std::array<int, 2>{32, 32});
  CHECK(c.temb_channels() == 512);
  // keys the file leaves out take diffusers' defaults
  CHECK(c.mid_block_type == std::optional<std::string>("UNetMidBlock2D"));
  CHECK(c.resnet_time_scale_shift == "default");
  CHECK(c.add_attention);
  // and it is the preset
  CHECK(UNet2DConfig::ddpm_cifar10().to_json() == c.to_json());
}

TEST_CASE("UNet2DConfig defaults are diffusers' UNet2DModel defaults", "[nn][config]") {
  const UNet2DConfig c = UNet2DConfig::from_json(json::object());
  CHECK(c.block_out_channels == std::vector<int>{224, 448, 672, 896});
  CHECK(c.attention_head_dim == std::optional<int>(8));
  CHECK(c.norm_eps == 1e-5);
  CHECK(c.freq_shift == 0.0);
  CHECK(c.flip_sin_to_cos);
  CHECK(c.downsample_padding == 1);
  CHECK(c.layers_per_block == 2);
  CHECK(c.down_block_types.front() == "DownBlock2D");
  CHECK(c.up_block_types.front() == "AttnUpBlock2D");
}

TEST_CASE("UNet2DConfig round-trips through JSON", "[nn][config]") {
  UNet2DConfig c = UNet2DConfig::ddpm_cifar10();
  c.sample_size = std::array<int, 2>{32, 64};
  c.resnet_time_scale_shift = "scale_shift";
  c.attn_norm_num_groups = 8;
  c.freq_shift = 0.5;
  const UNet2DConfig d = UNet2DConfig::from_json(c.to_json());
  CHECK(d.to_json() == c.to_json());
  CHECK(d.sample_size == std::array<int, 2>{32, 64});
}

TEST_CASE("UNet2DConfig names what it does not support", "[nn][config]") {
  auto with = [](const char* key, json value) {
    json j = json::parse(kCifar10);
    j[key] = std::move(value);
    return j;
  };
  REQUIRE_THROWS_AS(UNet2DConfig::from_json(with("cross_attention_dim", 768)), ddpm::format_error);
  REQUIRE_THROWS_WITH(UNet2DConfig::from_json(with("cross_attention_dim", 768)),
                      Catch::Contains("cross_attention_dim") && Catch::Contains("norm_num_groups") &&
                          Catch::Contains("resnet_time_scale_shift"));
  REQUIRE_THROWS_WITH(
      UNet2DConfig::from_json(with("down_block_types", {"DownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D",
                                                        "DownBlock2D"})),
      Catch::Contains("CrossAttnDownBlock2D") && Catch::Contains("DownBlock2D, AttnDownBlock2D"));
  REQUIRE_THROWS_WITH(
      UNet2DConfig::from_json(with("up_block_types", {"UpBlock2D", "UpBlock2D", "SkipUpBlock2D", "UpBlock2D"})),
      Catch::Contains("UpBlock2D, AttnUpBlock2D"));
  REQUIRE_THROWS_WITH(UNet2DConfig::from_json(with("mid_block_type", "UNetMidBlock2DCrossAttn")),
                      Catch::Contains("UNetMidBlock2D, null"));
  REQUIRE_THROWS_WITH(UNet2DConfig::from_json(with("time_embedding_type", "fourier")), Catch::Contains("positional"));
  REQUIRE_THROWS_WITH(UNet2DConfig::from_json(with("downsample_type", "resnet")), Catch::Contains("conv"));
  REQUIRE_THROWS_WITH(UNet2DConfig::from_json(with("upsample_type", "resnet")), Catch::Contains("conv"));
  REQUIRE_THROWS_WITH(UNet2DConfig::from_json(with("act_fn", "tanh")), Catch::Contains("silu, swish, mish, gelu, relu"));
  REQUIRE_THROWS_WITH(UNet2DConfig::from_json(with("resnet_time_scale_shift", "ada_group")),
                      Catch::Contains("default, scale_shift"));
  REQUIRE_THROWS_WITH(UNet2DConfig::from_json(with("class_embed_type", "projection")),
                      Catch::Contains("class_embed_type is \"projection\"") && Catch::Contains("\"identity\""));
  CHECK(UNet2DConfig::from_json(with("class_embed_type", "identity")).class_embed_type == "identity");
  CHECK(UNet2DConfig::from_json(with("class_embed_type", "timestep")).class_embed_type == "timestep");
  REQUIRE_THROWS_WITH(UNet2DConfig::from_json(with("num_class_embeds", 0)), Catch::Contains("class"));
  REQUIRE_THROWS_WITH(UNet2DConfig::from_json(with("norm_num_groups", 24)), Catch::Contains("multiple of norm_num_groups"));
  REQUIRE_THROWS_WITH(UNet2DConfig::from_json(with("block_out_channels", {128, 256})), Catch::Contains("same number"));
  REQUIRE_THROWS_WITH(UNet2DConfig::from_json(with("layers_per_block", 0)), Catch::Contains("layers_per_block"));
  REQUIRE_THROWS_WITH(UNet2DConfig::from_json(with("attention_head_dim", 512)), Catch::Contains("attention_head_dim"));
  REQUIRE_THROWS_WITH(UNet2DConfig::from_json(with("norm_eps", 0)), Catch::Contains("norm_eps"));
  REQUIRE_THROWS_WITH(UNet2DConfig::from_json(with("downsample_padding", -1)), Catch::Contains("downsample_padding"));
  REQUIRE_THROWS_WITH(UNet2DConfig::from_json(with("mid_block_scale_factor", 0)),
                      Catch::Contains("mid_block_scale_factor"));
  REQUIRE_THROWS_WITH(UNet2DConfig::from_json(with("freq_shift", 64)), Catch::Contains("freq_shift"));
  // values of the wrong JSON type
  REQUIRE_THROWS_WITH(UNet2DConfig::from_json(with("in_channels", "three")), Catch::Contains("in_channels"));
  REQUIRE_THROWS_WITH(UNet2DConfig::from_json(with("in_channels", 2.5)), Catch::Contains("integer"));
  REQUIRE_THROWS_WITH(UNet2DConfig::from_json(with("flip_sin_to_cos", 1)), Catch::Contains("true or false"));
  REQUIRE_THROWS_AS(UNet2DConfig::from_json(with("down_block_types", "DownBlock2D")), ddpm::format_error);
  REQUIRE_THROWS_AS(UNet2DConfig::from_json(json::array()), ddpm::format_error);
  // keys that start with '_' are bookkeeping
  CHECK_NOTHROW(UNet2DConfig::from_json(with("_name_or_path", "google/ddpm-cifar10-32")));
  // validate() on a config built in code throws invalid_argument
  UNet2DConfig c;
  c.layers_per_block = -1;
  REQUIRE_THROWS_AS(c.validate(), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(UNet2DConfig::from_file("/nonexistent/config.json"), ddpm::format_error);
}
