// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
//
// UNet2D against PyTorch: tests/data/unet/{tiny,tiny_legacy} were written by
// tests/reference/make_unet_fixture.py (a UNet2DModel written from scratch in PyTorch, with diffusers'
// parameter names, config keys and arithmetic), with the outputs of its forward pass in float32 and
// float64. Also: the DDPM-CIFAR10 configuration's parameter count, the file formats, and the errors.
//
// Tolerances. float: 1e-4 relative to max |output| (the issue's bound; the rounding of float32 arithmetic in
// two different orders is about 1e-6). double: 1e-9, the issue's bound for the training pass: both sides
// compute the same float32 timestep embedding bit for bit (float32 operands and products as diffusers,
// exp/sin/cos correctly rounded; docs/unet.md, "Timestep embedding"), so the float64 outputs differ by double
// rounding only (the PyTorch reference matches diffusers' UNet2DModel to 2e-15 on these inputs).

#include <cmath>
#include <cstdio>
#include <limits>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "ddpm/ddpm.hpp"
#include "ddpm/io/safetensors.hpp"
#include "ddpm/nn/unet2d.hpp"
#include "nn_reference.hpp"

using ddpm::nn::UNet2D;
using ddpm::nn::UNet2DConfig;

namespace {

std::string fixture(const std::string& name) { return std::string(DDPM_TEST_DATA_DIR) + "/unet/" + name; }

struct Reference {
  ddpm::io::Safetensors io;
  std::vector<double> timesteps;
  explicit Reference(const std::string& dir)
      : io(ddpm::io::Safetensors::load(dir + "/reference_io.safetensors")),
        timesteps(io.to_vector<double>("timesteps")) {}
  template <class S>
  ddpm::Tensor<S, 4> sample() const {
    return io.to_tensor<S, 4>("sample");
  }
  template <class S>
  ddpm::Tensor<double, 4> output() const {
    return io.to_tensor<double, 4>(std::is_same_v<S, float> ? "output_f32" : "output_f64");
  }
};

template <class S>
constexpr double parity_tolerance() {
  return std::is_same_v<S, float> ? 1e-4 : 1e-9;
}

/// A fresh directory under the system's temporary directory, removed at the end of the scope.
struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& name) : path(std::filesystem::temp_directory_path() / ("ddpm_unet_" + name)) {
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string str() const { return path.string(); }
};

}  // namespace

TEMPLATE_TEST_CASE("UNet2D matches PyTorch: a batch with a different timestep per image", "[nn][unet2d]", float,
                   double) {
  using S = TestType;
  const std::string dir = fixture("tiny");
  const Reference ref(dir);
  REQUIRE(ref.timesteps == std::vector<double>{0, 417, 999});
  UNet2D<S> model = UNet2D<S>::from_pretrained(dir);  // F16 weights, current attention names
  CHECK(model.num_parameters() == 177427);
  const ddpm::Tensor<S, 4> x = ref.sample<S>();
  const ddpm::Tensor<double, 4> expected = ref.output<S>();

  const std::vector<int> t = {0, 417, 999};
  const ddpm::Tensor<S, 4> y = model(x, std::span<const int>(t));
  REQUIRE(y.dimensions() == x.dimensions());
  CHECK(nn_test::max_rel_error(y, expected) < parity_tolerance<S>());
  WARN("tiny " << (std::is_same_v<S, float> ? "float" : "double") << ": max error / max output "
               << nn_test::max_rel_error(y, expected));

  // the general form, the same timesteps as doubles, into a map
  ddpm::Tensor<S, 4> out(x.dimensions());
  ddpm::TensorMap<S, 4> out_map(out.data(), out.dimensions());
  model.forward(x, std::span<const double>(ref.timesteps), out_map);
  CHECK(nn_test::max_rel_error(out, expected) < parity_tolerance<S>());

  // on two threads (the GEMMs are cut differently: equal up to rounding)
  model.set_num_threads(2);
  CHECK(nn_test::max_rel_error(model(x, std::span<const int>(t)), expected) < parity_tolerance<S>());
}

TEMPLATE_TEST_CASE("UNet2D matches PyTorch: older attention names, DDPM-style config, one timestep", "[nn][unet2d]",
                   float, double) {
  using S = TestType;
  const std::string dir = fixture("tiny_legacy");
  const Reference ref(dir);
  REQUIRE(ref.timesteps == std::vector<double>{250});
  const ddpm::io::Safetensors weights = ddpm::io::Safetensors::load(dir + "/diffusion_pytorch_model.safetensors");
  REQUIRE(weights.contains("down_blocks.1.attentions.0.query.weight"));
  REQUIRE(weights.contains("mid_block.attentions.0.proj_attn.bias"));
  REQUIRE_FALSE(weights.contains("mid_block.attentions.0.to_q.weight"));
  UNet2D<S> model = UNet2D<S>::from_pretrained(dir);
  CHECK_FALSE(model.config().attention_head_dim.has_value());
  CHECK(model.config().downsample_padding == 0);
  CHECK(model.config().mid_block_scale_factor == 1.5);
  const ddpm::Tensor<S, 4> x = ref.sample<S>();
  CHECK(nn_test::max_rel_error(model(x, 250), ref.output<S>()) < parity_tolerance<S>());
  WARN("tiny_legacy " << (std::is_same_v<S, float> ? "float" : "double") << ": max error / max output "
                      << nn_test::max_rel_error(model(x, 250), ref.output<S>()));
  // one timestep for the batch is that timestep for every image
  const std::vector<int> t = {250, 250};
  CHECK(nn_test::max_rel_error(model(x, std::span<const int>(t)), ref.output<S>()) < parity_tolerance<S>());
}

TEST_CASE("UNet2D loads the same weights from F16, BF16, F32 and F64 files", "[nn][unet2d]") {
  // The fixture's weights are values that bfloat16 holds exactly, so every dtype stores them unrounded.
  const std::string dir = fixture("tiny");
  UNet2D<float> reference = UNet2D<float>::from_pretrained(dir);
  const Reference ref(dir);
  const ddpm::Tensor<float, 4> x = ref.sample<float>();
  const std::vector<int> t = {0, 417, 999};
  const ddpm::Tensor<float, 4> expected = reference(x, std::span<const int>(t));
  for (ddpm::io::DType dtype :
       {ddpm::io::DType::BF16, ddpm::io::DType::F16, ddpm::io::DType::F32, ddpm::io::DType::F64}) {
    TempDir tmp("dtypes");
    std::filesystem::copy_file(dir + "/config.json", tmp.path / "config.json");
    reference.save_weights(tmp.str() + "/diffusion_pytorch_model.safetensors", dtype);
    UNet2D<float> model = UNet2D<float>::from_pretrained(tmp.str());
    const ddpm::Tensor<float, 4> y = model(x, std::span<const int>(t));
    INFO("dtype " << ddpm::io::dtype_name(dtype));
    for (Eigen::Index i = 0; i < y.size(); ++i) REQUIRE(y.data()[i] == expected.data()[i]);
  }
}

TEST_CASE("UNet2D::from_pretrained names every tensor that does not fit", "[nn][unet2d]") {
  const std::string dir = fixture("tiny");
  const ddpm::io::Safetensors file = ddpm::io::Safetensors::load(dir + "/diffusion_pytorch_model.safetensors");
  TempDir tmp("mismatch");
  std::filesystem::copy_file(dir + "/config.json", tmp.path / "config.json");
  ddpm::io::SafetensorsWriter w;
  for (const std::string& name : file.names()) {
    if (name == "down_blocks.0.resnets.0.conv1.weight" || name == "up_blocks.0.attentions.1.to_k.bias") continue;
    const std::vector<float> v = file.to_vector<float>(name);
    if (name == "conv_out.bias") {  // a 3-vector stored as 2
      w.add(name, ddpm::ConstTensorMap<float, 1>(v.data(), 2));
      continue;
    }
    w.add(name, ddpm::ConstTensorMap<float, 1>(v.data(), static_cast<Eigen::Index>(v.size())));
  }
  w.add("class_embedding.weight", ddpm::Tensor<float, 1>(ddpm::Tensor<float, 1>(4).setZero()));
  w.save(tmp.str() + "/diffusion_pytorch_model.safetensors");
  REQUIRE_THROWS_AS(UNet2D<float>::from_pretrained(tmp.str()), ddpm::format_error);
  // the flattened tensors are all misshapen; the message names the missing and unexpected ones in full
  REQUIRE_THROWS_WITH(UNet2D<float>::from_pretrained(tmp.str()),
                      Catch::Contains("2 missing: down_blocks.0.resnets.0.conv1.weight, "
                                      "up_blocks.0.attentions.1.to_k.bias") &&
                          Catch::Contains("1 unexpected: class_embedding.weight") &&
                          Catch::Contains("conv_in.weight has shape (432) in the file, but the model needs "
                                          "(16, 3, 3, 3)") &&
                          Catch::Contains("mismatched"));
  // an unsupported config is reported before the weights are read
  std::ofstream(tmp.path / "config.json") << R"({"_class_name": "UNet2DModel", "down_block_types":
      ["CrossAttnDownBlock2D", "DownBlock2D"], "up_block_types": ["UpBlock2D", "UpBlock2D"],
      "block_out_channels": [32, 64]})";
  REQUIRE_THROWS_WITH(UNet2D<float>::from_pretrained(tmp.str()),
                      Catch::Contains("CrossAttnDownBlock2D") && Catch::Contains("DownBlock2D, AttnDownBlock2D"));
  REQUIRE_THROWS_AS(UNet2D<float>::from_pretrained(tmp.str() + "/nonexistent"), ddpm::format_error);
}

TEST_CASE("UNet2D in the DDPM-CIFAR10 configuration has 35,746,307 parameters in 328 tensors", "[nn][unet2d]") {
  UNet2D<float> model(UNet2DConfig::ddpm_cifar10());
  CHECK(model.num_parameters() == 35746307);
  const auto params = model.parameters();
  CHECK(params.size() == 328);
  auto shape_of = [&](const std::string& name) {
    for (const auto& p : params) {
      if (p.name == name) return p.shape;
    }
    FAIL("no parameter " << name);
    return std::vector<std::int64_t>{};
  };
  CHECK(shape_of("conv_in.weight") == std::vector<std::int64_t>{128, 3, 3, 3});
  CHECK(shape_of("time_embedding.linear_1.weight") == std::vector<std::int64_t>{512, 128});
  CHECK(shape_of("down_blocks.0.downsamplers.0.conv.weight") == std::vector<std::int64_t>{128, 128, 3, 3});
  CHECK(shape_of("down_blocks.1.resnets.0.conv_shortcut.weight") == std::vector<std::int64_t>{256, 128, 1, 1});
  CHECK(shape_of("down_blocks.1.attentions.1.to_q.weight") == std::vector<std::int64_t>{256, 256});
  CHECK(shape_of("mid_block.attentions.0.group_norm.weight") == std::vector<std::int64_t>{256});
  CHECK(shape_of("up_blocks.0.resnets.0.conv1.weight") == std::vector<std::int64_t>{256, 512, 3, 3});
  CHECK(shape_of("up_blocks.2.attentions.2.to_out.0.weight") == std::vector<std::int64_t>{256, 256});
  CHECK(shape_of("up_blocks.3.resnets.0.conv_shortcut.weight") == std::vector<std::int64_t>{128, 384, 1, 1});
  CHECK(shape_of("up_blocks.2.upsamplers.0.conv.weight") == std::vector<std::int64_t>{256, 256, 3, 3});
  CHECK(shape_of("conv_out.weight") == std::vector<std::int64_t>{3, 128, 3, 3});
}

TEST_CASE("UNet2D is an epsilon predictor and drops into sample()", "[nn][unet2d]") {
  static_assert(ddpm::EpsilonPredictor<UNet2D<float>, float, 4>);
  static_assert(ddpm::EpsilonPredictor<UNet2D<double>, double, 4>);
  UNet2D<double> model = UNet2D<double>::from_pretrained(fixture("tiny_legacy"));
  const auto schedule = ddpm::NoiseSchedule<double>::linear(1000);
  ddpm::DDIMOptions options;
  options.grid.num_inference_steps = 3;
  ddpm::DDIMSampler<double> sampler(schedule, options);
  const ddpm::Tensor<double, 4> x_T = nn_test::random_images<double>(2, 3, 16, 16, 11);
  std::vector<int> seen;
  const ddpm::Tensor<double, 4> x0 = ddpm::sample(sampler, model, x_T, ddpm::no_noise,
                                                  [&](int, int t, const auto&, const auto&) { seen.push_back(t); });
  CHECK(seen == sampler.timesteps());
  // the same three deterministic DDIM steps written out:                        [docs/samplers.md, Eq. (S9)]
  //   x0_hat = (x - sqrt(1 - ab) eps) / sqrt(ab),  x <- sqrt(ab_prev) x0_hat + sqrt(1 - ab_prev) eps
  ddpm::Tensor<double, 4> x = x_T;
  const auto& ts = sampler.timesteps();
  for (std::size_t i = 0; i < ts.size(); ++i) {
    const double ab = schedule.alphas_cumprod()[ts[i]];
    const double ab_prev = i + 1 < ts.size() ? schedule.alphas_cumprod()[ts[i + 1]] : 1.0;
    const ddpm::Tensor<double, 4> eps = model(x, ts[i]);
    const ddpm::Tensor<double, 4> x0_hat = (x - eps * std::sqrt(1 - ab)) / std::sqrt(ab);
    x = x0_hat * std::sqrt(ab_prev) + eps * std::sqrt(1 - ab_prev);
  }
  CHECK(nn_test::max_rel_error(x0, x) < 1e-12);
  // a model with zero weights predicts zero noise
  UNet2DConfig c;
  c.block_out_channels = {8, 16};
  c.down_block_types = {"DownBlock2D", "AttnDownBlock2D"};
  c.up_block_types = {"AttnUpBlock2D", "UpBlock2D"};
  c.norm_num_groups = 4;
  c.layers_per_block = 1;
  UNet2D<float> zero(c);
  const ddpm::Tensor<float, 4> y = zero(nn_test::random_images<float>(2, 3, 8, 8, 5), 10);
  for (Eigen::Index i = 0; i < y.size(); ++i) REQUIRE(y.data()[i] == 0.0f);
}

TEST_CASE("UNet2D allocates no scratch memory once it has run at a batch size", "[nn][unet2d]") {
  UNet2D<float> model = UNet2D<float>::from_pretrained(fixture("tiny_legacy"));
  for (int threads : {1, 2}) {
    model.set_num_threads(threads);
    const ddpm::Tensor<float, 4> x = nn_test::random_images<float>(4, 3, 16, 16, 6);
    ddpm::Tensor<float, 4> out;
    const double t = 3;
    model.forward(x, std::span<const double>(&t, 1), out);
    model.forward(x, std::span<const double>(&t, 1), out);
    const std::size_t allocations = model.scratch_allocations();
    const float* data = out.data();
    for (int i = 0; i < 3; ++i) model.forward(x, std::span<const double>(&t, 1), out);
    CHECK(model.scratch_allocations() == allocations);
    CHECK(out.data() == data);  // out kept its storage
  }
}

TEST_CASE("UNet2D center_input_sample feeds 2 x - 1", "[nn][unet2d]") {
  const std::string dir = fixture("tiny");
  UNet2D<double> plain = UNet2D<double>::from_pretrained(dir);
  UNet2DConfig c = plain.config();
  c.center_input_sample = true;
  UNet2D<double> centred(c);
  centred.load_weights(dir + "/diffusion_pytorch_model.safetensors");
  const ddpm::Tensor<double, 4> x = nn_test::random_images<double>(1, 3, 16, 16, 7);
  const ddpm::Tensor<double, 4> x2 = x * 2.0 - 1.0;
  CHECK(nn_test::max_rel_error(centred(x, 5), plain(x2, 5)) < 1e-14);
}

TEST_CASE("UNet2D rejects inputs it cannot take", "[nn][unet2d]") {
  UNet2D<float> model = UNet2D<float>::from_pretrained(fixture("tiny"));
  REQUIRE_THROWS_AS(model(ddpm::Tensor<float, 4>(1, 4, 16, 16), 1), ddpm::invalid_argument);  // channels
  REQUIRE_THROWS_AS(model(ddpm::Tensor<float, 4>(1, 3, 15, 16), 1), ddpm::invalid_argument);  // odd size
  REQUIRE_THROWS_AS(model(ddpm::Tensor<float, 4>(0, 3, 16, 16), 1), ddpm::invalid_argument);  // empty
  ddpm::Tensor<float, 4> x(3, 3, 16, 16);
  x.setZero();
  const std::vector<int> two = {1, 2};
  REQUIRE_THROWS_AS(model(x, std::span<const int>(two)), ddpm::invalid_argument);
  ddpm::Tensor<float, 4> wrong(3, 3, 8, 8);
  ddpm::TensorMap<float, 4> wrong_map(wrong.data(), wrong.dimensions());
  const double t = 1;
  REQUIRE_THROWS_AS(model.forward(x, std::span<const double>(&t, 1), wrong_map), ddpm::invalid_argument);
  const double nan = std::nan("");
  REQUIRE_THROWS_AS(model.forward(x, std::span<const double>(&nan, 1), wrong), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(model.set_num_threads(0), ddpm::invalid_argument);
  UNet2DConfig bad;
  bad.norm_num_groups = 5;  // does not divide 224
  REQUIRE_THROWS_AS(UNet2D<float>{bad}, ddpm::invalid_argument);
}

TEST_CASE("UNet2D::forward in the caller's workspace: the same result, const, shared by threads",
          "[nn][unet2d][protocol]") {
  const UNet2D<float> model = UNet2D<float>::from_pretrained(fixture("tiny"));
  const ddpm::Tensor<float, 4> x = nn_test::random_images<float>(3, 3, 16, 16, 31);
  const std::vector<double> t = {5, 400, 990};
  ddpm::Tensor<float, 4> pooled;
  model.forward(x, std::span<const double>(t), pooled);  // a workspace of the model's pool
  for (int threads : {1, 2, 3}) {
    ddpm::nn::Workspace<float> ws(threads);
    ddpm::Tensor<float, 4> out;
    model.forward(ws, x, std::span<const double>(t), out);
    model.forward(ws, x, std::span<const double>(t), out);
    const std::size_t allocations = ws.allocations();
    model.forward(ws, x, std::span<const double>(t), out);
    CHECK(ws.allocations() == allocations);  // the caller's workspace reaches its steady state
    // one thread: the same operations as the pooled pass; more threads split the GEMMs differently
    if (threads == 1) {
      for (Eigen::Index i = 0; i < out.size(); ++i) REQUIRE(out.data()[i] == pooled.data()[i]);
    } else {
      CHECK(nn_test::max_rel_error(out, nn_test::to_double(pooled)) < 1e-5);
    }
  }
  // two threads run the one const model at once, each in its own (pooled or own) workspace
  std::vector<ddpm::Tensor<float, 4>> results(4);
  {
    std::vector<std::thread> workers;
    for (std::size_t k = 0; k < results.size(); ++k) {
      workers.emplace_back([&, k] {
        for (int rep = 0; rep < 3; ++rep) {
          if (k % 2 == 0) {
            model.forward(x, std::span<const double>(t), results[k]);
          } else {
            ddpm::nn::Workspace<float> ws;
            model.forward(ws, x, std::span<const double>(t), results[k]);
          }
        }
      });
    }
    for (std::thread& w : workers) w.join();
  }
  for (const auto& r : results) {
    REQUIRE(r.size() == pooled.size());
    for (Eigen::Index i = 0; i < r.size(); ++i) REQUIRE(r.data()[i] == pooled.data()[i]);
  }
}

TEST_CASE("UNet2D weights changed without prepare() are refused; prepare() and copies", "[nn][unet2d][protocol]") {
  UNet2D<double> model = UNet2D<double>::from_pretrained(fixture("tiny_legacy"));
  const ddpm::Tensor<double, 4> x = nn_test::random_images<double>(2, 3, 16, 16, 32);
  const ddpm::Tensor<double, 4> before = model(x, 100);
  CHECK(model.num_parameters() > 0);  // read-only: no change
  REQUIRE_NOTHROW(model(x, 100));
  // an optimiser step through the raw pointers, declared by mark_weights_changed()
  const std::vector<ddpm::nn::Parameter<double>> params = model.parameters();
  model.prepare();  // (so that the change below is only declared by mark_weights_changed)
  for (const auto& p : params) {
    for (std::int64_t i = 0; i < p.numel(); ++i) p.data[i] *= 1.01;
  }
  model.mark_weights_changed();
  REQUIRE_THROWS_AS(model(x, 100), ddpm::invalid_argument);
  model.prepare();
  const ddpm::Tensor<double, 4> after = model(x, 100);
  CHECK(nn_test::max_rel_error(after, nn_test::to_double(before)) > 1e-4);  // the new weights are used
  // a copy has the same weights (and its own workspaces)
  const UNet2D<double> copy = model;
  const ddpm::Tensor<double, 4> again = copy(x, 100);
  for (Eigen::Index i = 0; i < again.size(); ++i) REQUIRE(again.data()[i] == after.data()[i]);
}

TEST_CASE("UNet2D::zeros_like lists the model's names and shapes in order, all zero", "[nn][unet2d][protocol]") {
  const UNet2D<float> model = UNet2D<float>::from_pretrained(fixture("tiny"));
  UNet2D<float> grads = model.zeros_like();
  const auto p = ddpm::nn::parameters_of<const float>(model);
  const auto g = ddpm::nn::parameters_of<const float>(static_cast<const UNet2D<float>&>(grads));
  REQUIRE(g.size() == p.size());
  for (std::size_t i = 0; i < p.size(); ++i) {
    CHECK(g[i].name == p[i].name);
    CHECK(g[i].shape == p[i].shape);
    CHECK(g[i].data != p[i].data);
    for (std::int64_t k = 0; k < g[i].numel(); ++k) REQUIRE(g[i].data[k] == 0.0f);
  }
  // zero_parameters resets an accumulated gradient
  grads.parameters().front().data[0] = 3.0f;
  ddpm::nn::zero_parameters<float>(grads);
  CHECK(grads.parameters().front().data[0] == 0.0f);
}

TEST_CASE("UNet2D refuses non-finite and absurd timesteps, and keeps fractional ones", "[nn][unet2d][hostile]") {
  const UNet2D<float> model = UNet2D<float>::from_pretrained(fixture("tiny"));
  const ddpm::Tensor<float, 4> x = nn_test::random_images<float>(2, 3, 16, 16, 5);
  ddpm::Tensor<float, 4> out;
  auto pass = [&](std::vector<double> t) { model.forward(x, std::span<const double>(t), out); };
  // t = 1e300 is finite, but inf in float32: the embedding, and so every output, was NaN (issue 13).
  REQUIRE_THROWS_AS(pass({1e300}), ddpm::invalid_argument);
  REQUIRE_THROWS_WITH(pass({1e300}), Catch::Contains("t[0]") && Catch::Contains("e+300") &&
                                         Catch::Contains("[-2^24, 2^24]"));
  REQUIRE_THROWS_WITH(pass({5, -std::numeric_limits<double>::infinity()}), Catch::Contains("t[1] is -inf"));
  REQUIRE_THROWS_AS(pass({std::nan("")}), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(pass({16777217.0}), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(ddpm::nn::sinusoidal_embedding<float>(std::vector<double>{1e300}, 8, true, 0),
                    ddpm::invalid_argument);
  // diffusers' range, Euler's fractional timesteps, and the limit itself pass and give finite outputs.
  for (double t : {0.0, 999.0, 999.5, 0.0316, 16777216.0}) {
    INFO("t = " << t);
    pass({t, t});
    for (Eigen::Index i = 0; i < out.size(); ++i) REQUIRE(std::isfinite(out.data()[i]));
  }
  REQUIRE_THROWS_AS(UNet2D<float>(model.config()).set_num_threads(1 << 20), ddpm::invalid_argument);
}

TEST_CASE("UNet2DConfig::parameter_count matches the built networks, and size limits refuse before allocating",
          "[nn][unet2d][hostile]") {
  // The closed form against the count of the tensors UNet2D builds (and diffusers' 35,746,307 for CIFAR10).
  CHECK(UNet2DConfig::ddpm_cifar10().parameter_count() == 35746307);
  std::vector<UNet2DConfig> configs;
  for (const char* name : {"tiny", "tiny_class", "tiny_identity", "tiny_legacy"}) {
    configs.push_back(UNet2DConfig::from_file(fixture(name) + "/config.json"));
  }
  UNet2DConfig v = configs[0];
  v.resnet_time_scale_shift = "scale_shift";  // doubled time_emb_proj, no mid attention norm
  configs.push_back(v);
  v.attn_norm_num_groups = 4;
  v.layers_per_block = 2;
  v.time_embedding_dim = 24;
  v.block_out_channels = {8, 16, 24};
  v.down_block_types = {"AttnDownBlock2D", "DownBlock2D", "AttnDownBlock2D"};
  v.up_block_types = {"AttnUpBlock2D", "UpBlock2D", "AttnUpBlock2D"};
  v.attention_head_dim = std::nullopt;
  v.in_channels = 1;
  v.out_channels = 2;
  v.class_embed_type = "timestep";
  configs.push_back(v);
  v.class_embed_type = std::nullopt;
  v.num_class_embeds = 7;
  v.mid_block_type = std::nullopt;
  v.resnet_time_scale_shift = "default";
  v.attention_head_dim = 3;  // 8 / 3 = 2 heads of 3: inner width 6
  configs.push_back(v);
  for (std::size_t i = 0; i < configs.size(); ++i) {
    INFO("config " << i);
    CHECK(configs[i].parameter_count() == UNet2D<float>(configs[i]).num_parameters());
  }
  // [4096, 4096] passes every key's range, but would allocate gigabytes: refused at once.
  UNet2DConfig big = configs[0];
  big.block_out_channels = {4096, 4096};
  big.norm_num_groups = 32;
  REQUIRE(big.parameter_count() > (std::int64_t{1} << 30));
  REQUIRE_THROWS_AS(UNet2D<float>{big}, ddpm::invalid_argument);
  REQUIRE_THROWS_WITH(UNet2D<float>{big}, Catch::Contains(std::to_string(big.parameter_count())) &&
                                              Catch::Contains("max_parameters"));
  // The caller's limits: exactly the count passes, one fewer does not; the activation limit likewise.
  const UNet2DConfig& tiny = configs[0];
  const std::int64_t n = tiny.parameter_count();
  CHECK(UNet2D<float>(tiny, {n, std::int64_t{1} << 30}).num_parameters() == n);
  REQUIRE_THROWS_AS(UNet2D<float>(tiny, {n - 1, std::int64_t{1} << 30}), ddpm::invalid_argument);
  CHECK(tiny.largest_activation() == 3 * 32 * 16 * 16);
  REQUIRE_THROWS_WITH(UNet2D<float>(tiny, {n, 3 * 32 * 16 * 16 - 1}), Catch::Contains("max_activation"));
  REQUIRE_THROWS_AS(UNet2D<float>::from_pretrained(fixture("tiny"), {n - 1, std::int64_t{1} << 30}),
                    ddpm::format_error);
  CHECK(UNet2D<float>::from_pretrained(fixture("tiny"), {n, std::int64_t{1} << 30}).num_parameters() == n);
}
