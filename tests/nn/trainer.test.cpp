// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#include "ddpm/nn/trainer.hpp"

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "ddpm/error.hpp"

namespace {

using ddpm::nn::DataBatch;
using ddpm::nn::TrainOptions;
using ddpm::nn::TrainState;
using ddpm::nn::UNet2D;
using ddpm::nn::UNet2DConfig;

// A tiny class-conditional UNet: 1 channel, 8x8, (8, 16) channels, attention at 4x4, 4 classes (3 = null).
UNet2DConfig tiny_config() {
  UNet2DConfig c;
  c.sample_size = std::array<int, 2>{8, 8};
  c.in_channels = 1;
  c.out_channels = 1;
  c.block_out_channels = {8, 16};
  c.layers_per_block = 1;
  c.down_block_types = {"DownBlock2D", "AttnDownBlock2D"};
  c.up_block_types = {"AttnUpBlock2D", "UpBlock2D"};
  c.norm_num_groups = 4;
  c.attention_head_dim = 4;
  c.num_class_embeds = 4;
  return c;
}

// Random initial weights (N(0, 0.2^2) from a fixed stream; norms stay at weight 1 + noise).
template <class S>
UNet2D<S> tiny_model(std::uint64_t seed = 7) {
  UNet2D<S> m(tiny_config());
  ddpm::NoiseSource noise(seed);
  for (const auto& p : m.parameters()) {
    std::vector<S> v(static_cast<std::size_t>(p.numel()));
    noise.fill(std::span<S>(v));
    for (std::size_t i = 0; i < v.size(); ++i) p.data[i] = S(0.2) * v[i];
  }
  m.prepare();
  return m;
}

// A data source that depends on the step only: images from a fixed stream, labels step-dependent.
template <class S>
struct ToyData {
  Eigen::Index batch = 4;
  void operator()(std::int64_t step, DataBatch<S>& b) const {
    b.x0.resize(batch, 1, 8, 8);
    ddpm::NoiseSource noise(1234, static_cast<std::uint64_t>(step) * 1000);
    noise(b.x0);
    b.x0 = b.x0.tanh();
    b.labels.resize(static_cast<std::size_t>(batch));
    for (Eigen::Index i = 0; i < batch; ++i) b.labels[static_cast<std::size_t>(i)] = int((step + i) % 3);
  }
};

TrainOptions toy_options() {
  TrainOptions o;
  o.optimizer = {.lr = 2e-3, .beta1 = 0.95, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 1e-6};
  o.lr_schedule = ddpm::LRSchedule::constant_with_warmup(2e-3, 3);
  o.lr_step_offset = 1;
  o.max_grad_norm = 1.0;
  o.label_dropout = 0.3;
  o.ema = {.decay = 0.999, .use_ema_warmup = true, .inv_gamma = 1.0, .power = 0.75};
  return o;
}

template <class S>
std::vector<std::vector<S>> weights_of(UNet2D<S>& m) {
  std::vector<std::vector<S>> out;
  for (const auto& p : m.parameters()) out.emplace_back(p.data, p.data + p.numel());
  return out;
}

std::string temp_dir(const std::string& name) {
  const auto d = std::filesystem::temp_directory_path() / ("ddpm_trainer_test_" + name);
  std::filesystem::remove_all(d);
  return d.string();
}

}  // namespace

TEMPLATE_TEST_CASE("train_step: the step is AdamW on the clipped gradient of the simple loss", "[nn][trainer]", float,
                   double) {
  using S = TestType;
  TrainOptions o = toy_options();
  o.label_dropout = 0.0;
  o.use_ema = false;
  TrainState<S> state(tiny_model<S>(), ddpm::NoiseSchedule<S>::linear(), o, 5);
  // The reference: the same batch drawn from a copy of the noise stream, forward_train, loss gradient,
  // backward, clip and AdamW by hand.
  UNet2D<S> ref = state.model;
  ddpm::NoiseSource noise(5);
  ToyData<S> data;
  DataBatch<S> db;
  data(0, db);
  ddpm::UniformTimestepSampler sampler(1000);
  const auto batch = ddpm::make_training_batch(state.schedule, db.x0, sampler, noise);
  const std::vector<double> td(batch.t.begin(), batch.t.end());
  ddpm::Tensor<S, 4> out, d_out;
  ddpm::nn::Workspace<S> ws;
  typename UNet2D<S>::Activations acts;
  ref.forward_train(ws, batch.x_t, std::span<const double>(td), std::span<const int>(db.labels), out, acts);
  const auto loss = ddpm::simple_loss_and_gradient(out, batch.target, std::span<const S>{}, d_out);
  UNet2D<S> g = ref.zeros_like();
  ref.backward(ws, acts, d_out, g);
  std::vector<std::span<S>> ps, gs;
  for (const auto& p : ref.parameters()) ps.emplace_back(p.data, std::size_t(p.numel()));
  for (const auto& p : g.parameters()) gs.emplace_back(p.data, std::size_t(p.numel()));
  const double norm = ddpm::clip_grad_norm(std::span<const std::span<S>>(gs), 1.0);
  ddpm::AdamW<S> opt(o.optimizer);
  opt.set_lr(o.lr_schedule.lr(1));
  opt.step(std::span<const std::span<S>>(ps), std::span<const std::span<S>>(gs));

  const ddpm::nn::StepResult r = ddpm::nn::train_step(state, data);
  CHECK(r.loss == Approx(double(loss.loss)).epsilon(0));
  CHECK(r.grad_norm == norm);
  CHECK(r.lr == Approx(2e-3 / 3));
  CHECK(state.step == 1);
  CHECK(weights_of(state.model) == weights_of(ref));  // same operations in the same order: bit-identical
}

TEST_CASE("train_step: label dropout replaces about p of the labels by the null class", "[nn][trainer]") {
  std::vector<int> labels(20000, 1);
  std::vector<double> u(labels.size());
  ddpm::NoiseSource noise(3);
  noise.uniform(std::span<double>(u));
  ddpm::nn::drop_labels(std::span<int>(labels), std::span<const double>(u), 0.1, 10);
  double dropped = 0;
  for (int l : labels) {
    REQUIRE((l == 1 || l == 10));
    dropped += l == 10;
  }
  // binomial: sd = sqrt(p (1 - p) / n) = 0.0021; 5 sd
  CHECK(dropped / double(labels.size()) == Approx(0.1).margin(5 * 0.0021));
  CHECK_THROWS_AS(ddpm::nn::drop_labels(std::span<int>(labels), std::span<const double>(u.data(), 3), 0.1, 10),
                  ddpm::invalid_argument);
}

TEST_CASE("TrainState: bad options throw", "[nn][trainer]") {
  TrainOptions o = toy_options();
  o.label_dropout = 1.5;
  CHECK_THROWS_AS(TrainState<float>(tiny_model<float>(), ddpm::NoiseSchedule<float>::linear(), o, 0),
                  ddpm::invalid_argument);
  o = toy_options();
  o.max_grad_norm = -1;
  CHECK_THROWS_AS(TrainState<float>(tiny_model<float>(), ddpm::NoiseSchedule<float>::linear(), o, 0),
                  ddpm::invalid_argument);
  TrainState<float> s(tiny_model<float>(), ddpm::NoiseSchedule<float>::linear(), toy_options(), 0);
  CHECK_THROWS_AS(ddpm::nn::train(s, ToyData<float>{}, -1), ddpm::invalid_argument);
}

TEMPLATE_TEST_CASE("train: the same seed gives bit-identical weights; a checkpoint resumes bit for bit",
                   "[nn][trainer]", float, double) {
  using S = TestType;
  constexpr int kSteps = 6, kFirst = 2;
  const ToyData<S> data;
  TrainState<S> straight(tiny_model<S>(), ddpm::NoiseSchedule<S>::linear(), toy_options(), 11);
  ddpm::nn::train(straight, data, kSteps);
  TrainState<S> again(tiny_model<S>(), ddpm::NoiseSchedule<S>::linear(), toy_options(), 11);
  ddpm::nn::train(again, data, kSteps);
  CHECK(weights_of(again.model) == weights_of(straight.model));

  TrainState<S> first(tiny_model<S>(), ddpm::NoiseSchedule<S>::linear(), toy_options(), 11);
  ddpm::nn::train(first, data, kFirst);
  const std::string dir = temp_dir(sizeof(S) == 4 ? "float" : "double");
  ddpm::nn::save_checkpoint(first, dir);
  // a fresh state with other initial weights and another seed: everything must come from the checkpoint
  TrainState<S> resumed(tiny_model<S>(99), ddpm::NoiseSchedule<S>::linear(), toy_options(), 12345);
  ddpm::nn::load_checkpoint(resumed, dir);
  CHECK(resumed.step == kFirst);
  std::int64_t calls = 0;
  const std::int64_t taken = ddpm::nn::train(resumed, data, kSteps - kFirst, [&](const ddpm::nn::TrainProgress& p) {
    ++calls;
    CHECK(p.step == kFirst + calls);
    CHECK(p.total == kSteps);
    return true;
  });
  CHECK(taken == kSteps - kFirst);
  CHECK(weights_of(resumed.model) == weights_of(straight.model));
  CHECK(resumed.ema->shadow() == straight.ema->shadow());
  CHECK(resumed.noise.offset() == straight.noise.offset());
  std::filesystem::remove_all(dir);
}

TEST_CASE("train: the callback stops the loop early; the loss of a tiny model falls", "[nn][trainer]") {
  TrainState<float> s(tiny_model<float>(), ddpm::NoiseSchedule<float>::linear(), toy_options(), 1);
  const std::int64_t taken = ddpm::nn::train(s, ToyData<float>{}, 100, [](const ddpm::nn::TrainProgress& p) {
    return p.step < 3;
  });
  CHECK(taken == 3);
  CHECK(s.step == 3);
}

TEST_CASE("save_pretrained: config.json with every key diffusers writes; from_pretrained reads it back",
          "[nn][trainer]") {
  UNet2D<float> m = tiny_model<float>();
  const std::string dir = temp_dir("pretrained");
  ddpm::nn::save_pretrained(m, dir);
  std::ifstream in(dir + "/config.json");
  const nlohmann::json j = nlohmann::json::parse(in);
  std::ifstream tiny(std::string(DDPM_TEST_DATA_DIR) + "/unet/tiny/config.json");
  const nlohmann::json ref = nlohmann::json::parse(tiny);
  for (const auto& [key, value] : ref.items()) CHECK(j.contains(key));
  for (const auto& [key, value] : j.items()) CHECK(ref.contains(key));
  CHECK(j["_class_name"] == "UNet2DModel");
  CHECK(j["num_class_embeds"] == 4);
  CHECK(j["class_embed_type"].is_null());
  UNet2D<float> back = UNet2D<float>::from_pretrained(dir);
  CHECK(weights_of(back) == weights_of(m));

  ddpm::nn::save_scheduler_config({}, dir);
  std::ifstream sin(dir + "/scheduler_config.json");
  const nlohmann::json s = nlohmann::json::parse(sin);
  CHECK(s["_class_name"] == "DDPMScheduler");
  CHECK(s["beta_schedule"] == "linear");
  CHECK(s["num_train_timesteps"] == 1000);
  CHECK(s["beta_start"] == 1e-4);
  CHECK(s["beta_end"] == 0.02);
  std::filesystem::remove_all(dir);
}
