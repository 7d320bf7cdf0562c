// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
//
// UNet2DConfig: reading diffusers' config.json (google/ddpm-cifar10-32's, verbatim), the defaults, and the
// errors for keys and values that UNet2D does not support.

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

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

TEST_CASE("UNet2DConfig refuses deeply nested values without formatting them", "[nn][config][hostile]") {
  // 100,000 nested lists under an unknown key: nlohmann's dump() recurses once per level and overflowed the
  // stack while formatting the error message (issue 13). The text is refused from its bracket depth before
  // nlohmann parses it (so no recursive destructor or copy ever sees it).
  const std::string deep = "{\"x\": " + std::string(100000, '[') + std::string(100000, ']') + "}";
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("ddpm_deep_config_" + std::to_string(std::random_device{}()) + ".json"))
                               .string();
  {
    std::ofstream(path) << deep;
  }
  REQUIRE_THROWS_AS(UNet2DConfig::from_file(path), ddpm::format_error);
  REQUIRE_THROWS_WITH(UNet2DConfig::from_file(path), Catch::Contains(path) && Catch::Contains("nest"));
  std::filesystem::remove(path);
  // Brackets inside strings do not count; 20 levels are within the limit (the key is then refused as
  // unknown).
  json j = json::parse(kCifar10);
  j["_note"] = std::string(1000, '[');
  CHECK_NOTHROW(UNet2DConfig::from_json(j));
  json nested = json::array();
  for (int i = 0; i < 20; ++i) nested = json::array({nested, std::string(100, 'a')});
  j["x"] = nested;
  std::string message;
  try {
    (void)UNet2DConfig::from_json(j);
  } catch (const ddpm::format_error& e) {
    message = e.what();
  }
  CHECK_THAT(message, Catch::Contains("unsupported key \"x\""));
  // A parsed value nested deeper than the limit is described without dump() (a value built in code).
  json deeper = json::array();
  for (int i = 0; i < 1000; ++i) deeper = json::array({std::move(deeper)});
  j["x"] = std::move(deeper);
  REQUIRE_THROWS_WITH(UNet2DConfig::from_json(j), Catch::Contains("\"x\"") && Catch::Contains("nest"));
  // 100,000 levels under a known key, in a value built without the text reader: formatting the wrong-typed
  // value for the message recursed once per level (a stack overflow).
  json hostile = json::array();
  for (int i = 0; i < 100000; ++i) hostile = json::array({std::move(hostile)});
  json h = json::parse(kCifar10);
  h["in_channels"] = std::move(hostile);
  REQUIRE_THROWS_WITH(UNet2DConfig::from_json(h), Catch::Contains("in_channels") && Catch::Contains("nest"));
  // A wrong-typed value is shown truncated, not whole.
  json k = json::parse(kCifar10);
  k["in_channels"] = std::string(100000, 'z');
  try {
    (void)UNet2DConfig::from_json(k);
  } catch (const ddpm::format_error& e) {
    message = e.what();
  }
  CHECK_THAT(message, Catch::Contains("in_channels") && Catch::Contains("..."));
  CHECK(message.size() < 2000);
}

TEST_CASE("UNet2DConfig parses integers as checked 64-bit values within documented ranges", "[nn][config][hostile]") {
  auto with = [](const char* key, json value) {
    json j = json::parse(kCifar10);
    j[key] = std::move(value);
    return j;
  };
  auto refused = [&](const char* key, json value, const std::string& shown, const std::string& range) {
    INFO(key << " = " << value.dump());
    REQUIRE_THROWS_AS(UNet2DConfig::from_json(with(key, value)), ddpm::format_error);
    REQUIRE_THROWS_WITH(UNet2DConfig::from_json(with(key, value)),
                        Catch::Contains(key) && Catch::Contains(shown) && Catch::Contains(range));
  };
  const std::string channels = "[1, " + std::to_string(UNet2DConfig::kMaxChannels) + "]";
  // 4294967299 = 2^32 + 3 used to wrap to 3; 1e10 was a float-to-int conversion with undefined behaviour.
  refused("in_channels", json(4294967299LL), "4294967299", channels);
  refused("in_channels", json(1e10), "10000000000", channels);
  refused("out_channels", json(-4294967296LL), "-4294967296", channels);
  refused("in_channels", json(18446744073709551615ULL), "18446744073709551615", channels);
  refused("in_channels", json(1e300), "1e+300", channels);
  refused("in_channels", json(0), "0", channels);
  // 1e9 channels: the product of channels overflowed a signed int before any allocation.
  refused("block_out_channels", json({128, 1000000000, 256, 256}), "1000000000", channels);
  refused("block_out_channels", json({128, 4294967552LL, 256, 256}), "4294967552", channels);
  refused("downsample_padding", json(2147483647), "2147483647",
          "[0, " + std::to_string(UNet2DConfig::kMaxPadding) + "]");
  refused("layers_per_block", json(1 << 20), "1048576", "[1, " + std::to_string(UNet2DConfig::kMaxLayers) + "]");
  refused("time_embedding_dim", json(1LL << 40), "1099511627776", "[1, ");
  refused("attention_head_dim", json(-1), "-1", "[1, ");
  refused("norm_num_groups", json(1LL << 33), "8589934592", "[1, ");
  refused("sample_size", json(1LL << 32), "4294967296", "[1, ");
  refused("sample_size", json({32, -32}), "-32", "[1, ");
  refused("num_class_embeds", json(1LL << 40), "1099511627776", "[1, ");
  refused("num_train_timesteps", json(1LL << 40), "1099511627776", "[1, ");
  // 65 blocks: the input size must be a multiple of 2^64, a shift by 64 (undefined behaviour).
  {
    json j = json::parse(kCifar10);
    j["block_out_channels"] = std::vector<int>(65, 32);
    j["down_block_types"] = std::vector<std::string>(65, "DownBlock2D");
    j["up_block_types"] = std::vector<std::string>(65, "UpBlock2D");
    REQUIRE_THROWS_WITH(UNet2DConfig::from_json(j), Catch::Contains("block_out_channels") && Catch::Contains("65") &&
                                                        Catch::Contains(std::to_string(UNet2DConfig::kMaxBlocks)));
  }
  // The same ranges hold for a config built in code.
  UNet2DConfig c = UNet2DConfig::ddpm_cifar10();
  c.downsample_padding = std::numeric_limits<int>::max();
  REQUIRE_THROWS_WITH(c.validate(), Catch::Contains("downsample_padding") && Catch::Contains("2147483647"));
  c = UNet2DConfig::ddpm_cifar10();
  c.in_channels = std::numeric_limits<int>::max();
  REQUIRE_THROWS_AS(c.validate(), ddpm::invalid_argument);
  // Integral floats inside the range are still read (diffusers' configs sometimes hold 3.0).
  CHECK(UNet2DConfig::from_json(with("in_channels", 4.0)).in_channels == 4);
  CHECK(UNet2DConfig::from_json(with("in_channels", UNet2DConfig::kMaxChannels)).in_channels ==
        UNet2DConfig::kMaxChannels);
}

TEST_CASE("UNet2DConfig ignores the keys EMAModel.save_pretrained adds, and says so", "[nn][config]") {
  // diffusers' EMAModel.save_pretrained registers its state (without the weights) in config.json; diffusers'
  // UNet2DModel.from_pretrained ignores these keys with a warning. They do not change the network.
  json j = json::parse(kCifar10);
  j["decay"] = 0.9999;
  j["inv_gamma"] = 1.0;
  j["min_decay"] = 0.0;
  j["optimization_step"] = 80000;
  j["power"] = 0.75;
  j["update_after_step"] = 0;
  j["use_ema_warmup"] = true;
  const UNet2DConfig c = UNet2DConfig::from_json(j);
  CHECK(c.ignored_keys == std::vector<std::string>{"decay", "inv_gamma", "min_decay", "optimization_step", "power",
                                                   "update_after_step", "use_ema_warmup"});
  CHECK(c.block_out_channels == std::vector<int>{128, 256, 256, 256});
  CHECK(UNet2DConfig::from_json(json::parse(kCifar10)).ignored_keys.empty());
  // The ignored keys are not written back (diffusers' save_pretrained of a UNet2DModel would not write them).
  CHECK_FALSE(c.to_json().contains("decay"));
  // Keys that would change the network are still refused.
  j["cross_attention_dim"] = 768;
  REQUIRE_THROWS_WITH(UNet2DConfig::from_json(j), Catch::Contains("cross_attention_dim"));
}
