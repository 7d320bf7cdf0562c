// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
//
// load_weights / save_weights: names (current and older attention names), dtypes, and the errors that
// name every missing, unexpected and misshapen tensor.

#include <cstdio>
#include <filesystem>
#include <string>

#include <catch2/catch.hpp>

#include "ddpm/io/safetensors.hpp"
#include "ddpm/nn/attention.hpp"
#include "ddpm/nn/conv2d.hpp"
#include "ddpm/nn/weights.hpp"
#include "nn_reference.hpp"

namespace {
// An attention block whose parameter names look like a model's.
struct PrefixedAttention {
  ddpm::nn::AttentionBlock<float> block{4, 2, 2, 1e-6};
  template <class F>
  void for_each_parameter(const std::string& prefix, F&& f) {
    block.for_each_parameter(prefix + "mid_block.attentions.0.", f);
  }
};

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("ddpm_nn_weights_" + name)).string();
}
}  // namespace

TEST_CASE("legacy_attention_name maps the names of diffusers < 0.15", "[nn][weights]") {
  using ddpm::nn::legacy_attention_name;
  CHECK(legacy_attention_name("down_blocks.1.attentions.0.to_q.weight") == "down_blocks.1.attentions.0.query.weight");
  CHECK(legacy_attention_name("down_blocks.1.attentions.0.to_k.bias") == "down_blocks.1.attentions.0.key.bias");
  CHECK(legacy_attention_name("mid_block.attentions.0.to_v.weight") == "mid_block.attentions.0.value.weight");
  CHECK(legacy_attention_name("up_blocks.2.attentions.1.to_out.0.bias") == "up_blocks.2.attentions.1.proj_attn.bias");
  CHECK(legacy_attention_name("mid_block.attentions.0.group_norm.weight") == "mid_block.attentions.0.group_norm.weight");
  CHECK(legacy_attention_name("down_blocks.0.resnets.0.conv1.weight") == "down_blocks.0.resnets.0.conv1.weight");
}

TEST_CASE("load_weights reads F16, BF16, F32 and F64 files, under current or older names", "[nn][weights]") {
  ddpm::nn::AttentionBlock<float> source(4, 2, 2, 1e-6);
  nn_test::randomize<float>(source, 90);
  // values that bf16 holds exactly (8 significant bits), so every dtype stores them without rounding
  source.for_each_parameter("", [](const ddpm::nn::Parameter<float>& p) {
    for (std::int64_t i = 0; i < p.numel(); ++i) p.data[i] = std::round(p.data[i] * 64.0f) / 64.0f;
  });
  const auto expected = ddpm::nn::parameters_of<float>(source);
  for (ddpm::io::DType dtype : {ddpm::io::DType::F16, ddpm::io::DType::BF16, ddpm::io::DType::F32,
                                ddpm::io::DType::F64}) {
    const std::string path = temp_path("attn.safetensors");
    ddpm::nn::save_weights<float>(source, path, dtype);
    const ddpm::io::Safetensors file = ddpm::io::Safetensors::load(path);
    CHECK(file.info("to_q.weight").dtype == dtype);
    CHECK(file.metadata().at("format") == "pt");
    ddpm::nn::AttentionBlock<double> loaded(4, 2, 2, 1e-6);
    ddpm::nn::load_weights<double>(loaded, file);
    const auto got = ddpm::nn::parameters_of<double>(loaded);
    REQUIRE(got.size() == expected.size());
    for (std::size_t i = 0; i < got.size(); ++i) {
      for (std::int64_t k = 0; k < got[i].numel(); ++k) REQUIRE(got[i].data[k] == double(expected[i].data[k]));
    }
    std::remove(path.c_str());
  }
  // the same values under query / key / value / proj_attn, in a block whose names look like a model's
  PrefixedAttention loaded;
  ddpm::io::SafetensorsWriter w;
  for (const auto& p : expected) {
    const std::string old = ddpm::nn::legacy_attention_name("mid_block.attentions.0." + p.name);
    if (p.shape.size() == 2) {
      w.add(old, ddpm::ConstTensorMap<float, 2>(p.data, p.shape[0], p.shape[1]));
    } else {
      w.add(old, ddpm::ConstTensorMap<float, 1>(p.data, p.shape[0]));
    }
  }
  const std::string path = temp_path("legacy.safetensors");
  w.save(path);
  const ddpm::io::Safetensors file = ddpm::io::Safetensors::load(path);
  CHECK(file.contains("mid_block.attentions.0.query.weight"));
  CHECK(file.contains("mid_block.attentions.0.proj_attn.bias"));
  CHECK_FALSE(file.contains("mid_block.attentions.0.to_q.weight"));
  ddpm::nn::load_weights<float>(loaded, file);
  const auto got = ddpm::nn::parameters_of<float>(loaded.block);
  for (std::size_t i = 0; i < got.size(); ++i) {
    for (std::int64_t k = 0; k < got[i].numel(); ++k) REQUIRE(got[i].data[k] == expected[i].data[k]);
  }
  std::remove(path.c_str());
}

TEST_CASE("load_weights names every missing, unexpected and misshapen tensor", "[nn][weights]") {
  ddpm::nn::AttentionBlock<float> block(4, 4, 2, 1e-6);
  const std::string path = temp_path("bad.safetensors");
  ddpm::Tensor<float, 2> w44(4, 4), w45(4, 5);
  ddpm::Tensor<float, 1> b4(4), b3(3);
  w44.setZero();
  w45.setZero();
  b4.setZero();
  b3.setZero();
  ddpm::io::SafetensorsWriter w;
  w.add("group_norm.weight", b4);
  w.add("group_norm.bias", b4);
  w.add("to_q.weight", w44);
  w.add("to_q.bias", b3);             // wrong shape
  w.add("to_k.weight", w45);          // wrong shape
  w.add("to_k.bias", b4);
  // to_v.weight, to_v.bias missing
  w.add("to_out.0.weight", w44);
  w.add("to_out.0.bias", b4);
  w.add("to_out.1.weight", w44);      // unexpected
  w.save(path);
  const ddpm::io::Safetensors file = ddpm::io::Safetensors::load(path);
  block.for_each_parameter("", [](const ddpm::nn::Parameter<float>& p) { p.data[0] = 7.0f; });
  REQUIRE_THROWS_AS(ddpm::nn::load_weights<float>(block, file), ddpm::format_error);
  REQUIRE_THROWS_WITH(ddpm::nn::load_weights<float>(block, file),
                      Catch::Contains("2 missing: to_v.weight, to_v.bias") &&
                          Catch::Contains("1 unexpected: to_out.1.weight") && Catch::Contains("2 mismatched") &&
                          Catch::Contains("to_q.bias has shape (3) in the file, but the model needs (4)") &&
                          Catch::Contains("to_k.weight has shape (4, 5)"));
  // nothing was loaded
  block.for_each_parameter("", [](const ddpm::nn::Parameter<float>& p) { CHECK(p.data[0] == 7.0f); });
  // an integer tensor cannot be a weight
  ddpm::io::SafetensorsWriter wi;
  const std::vector<std::uint8_t> bytes(4 * 8, 0);
  wi.add_raw("bias", ddpm::io::DType::I64, {4}, bytes);
  ddpm::Tensor<float, 4> w4(4, 2, 1, 1);
  w4.setZero();
  wi.add("weight", w4);
  wi.save(path);
  ddpm::nn::Conv2d<float> conv(2, 4, 1);
  REQUIRE_THROWS_WITH(ddpm::nn::load_weights<float>(conv, ddpm::io::Safetensors::load(path)),
                      Catch::Contains("bias has dtype I64"));
  std::remove(path.c_str());
}
