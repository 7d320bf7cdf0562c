// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors

// Saving and restoring optimiser and EMA state (io/training_state.hpp): a run of k steps, saved, restored
// into fresh objects and continued, is bit-identical to the uninterrupted run; every kind of malformed
// file throws ddpm::format_error naming what is wrong.                      [docs/training.md, "Resuming"]

#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "../core/optim_fixture.hpp"
#include "ddpm/ema.hpp"
#include "ddpm/io/safetensors.hpp"
#include "ddpm/io/training_state.hpp"
#include "ddpm/lr_schedule.hpp"
#include "ddpm/optim.hpp"

using ddpm_test::TensorList;

namespace {

const std::vector<std::size_t> kSizes{1, 7, 16, 37, 40000};

// The gradient of step `step`: a deterministic pseudo-random function of (step, tensor, element) that also
// depends on the parameters, as a real gradient does.
template <class S>
TensorList<S> gradient(int step, const TensorList<S>& params) {
  TensorList<S> g(kSizes, [&](std::size_t k, std::size_t i) {
    return std::sin(0.37 * double(i) + 1.3 * double(k) + 0.71 * double(step)) * (1.0 + double(k)) +
           0.1 * double(params.data[k][i]);
  });
  return g;
}

// One training step: clip, schedule, optimiser, EMA.
template <class S, class Opt>
void train_step(int step, TensorList<S>& params, Opt& opt, ddpm::EMA<S>& ema, const ddpm::LRSchedule& schedule) {
  TensorList<S> g = gradient<S>(step, params);
  ddpm::clip_grad_norm<S>(g.spans(), 5.0);
  schedule.apply(opt);
  opt.step(params.spans(), g.const_spans());
  ema.step(params.const_spans());
}

// A checkpoint: the model's weights (as a trainer stores them), the optimiser and the EMA, in one file.
template <class S, class Opt>
std::vector<std::uint8_t> checkpoint(const TensorList<S>& params, const Opt& opt, const ddpm::EMA<S>& ema) {
  ddpm::io::SafetensorsWriter w;
  for (std::size_t k = 0; k < params.data.size(); ++k) {
    w.add("model." + std::to_string(k),
          ddpm::ConstTensorMap<S, 1>(params.data[k].data(), static_cast<Eigen::Index>(params.data[k].size())));
  }
  ddpm::io::add_state(w, opt);
  ddpm::io::add_state(w, ema);
  return w.to_bytes();
}

template <class S, class Opt, class MakeOpt, class MakeEma>
void check_resume(MakeOpt&& make_opt, MakeEma&& make_ema) {
  const auto schedule = ddpm::LRSchedule::cosine_with_warmup(1e-2, 3, 12);
  const TensorList<S> start(kSizes, [](std::size_t k, std::size_t i) { return std::cos(0.1 * double(i) - double(k)); });
  const int k_steps = 5, total = 12;

  // The uninterrupted run.
  TensorList<S> p1 = start;
  Opt opt1 = make_opt();
  ddpm::EMA<S> ema1 = make_ema(p1);
  for (int s = 0; s < total; ++s) train_step<S>(s, p1, opt1, ema1, schedule);

  // k steps, a checkpoint, fresh objects from the file, the remaining steps.
  TensorList<S> p2 = start;
  Opt opt2 = make_opt();
  ddpm::EMA<S> ema2 = make_ema(p2);
  for (int s = 0; s < k_steps; ++s) train_step<S>(s, p2, opt2, ema2, schedule);
  const auto bytes = checkpoint(p2, opt2, ema2);
  const auto st = ddpm::io::Safetensors::parse(bytes, "checkpoint");
  TensorList<S> p3;
  for (std::size_t k = 0; k < kSizes.size(); ++k) p3.data.push_back(st.template to_vector<S>("model." + std::to_string(k)));
  Opt opt3 = ddpm::io::read_optimizer<Opt>(st);
  ddpm::EMA<S> ema3 = ddpm::io::read_ema<S>(st);
  CHECK(opt3.step_count() == k_steps);
  CHECK(ema3.optimization_step() == k_steps);
  CHECK(ema3.current_decay() == ema2.current_decay());
  for (int s = k_steps; s < total; ++s) train_step<S>(s, p3, opt3, ema3, schedule);

  CHECK(p3.data == p1.data);  // bit for bit
  for (auto name : opt1.state_names()) CHECK(opt3.state(name) == opt1.state(name));
  CHECK(opt3.step_count() == opt1.step_count());
  CHECK(opt3.lr() == opt1.lr());
  CHECK(ema3.shadow() == ema1.shadow());
  CHECK(ema3.current_decay() == ema1.current_decay());
}

}  // namespace

TEMPLATE_TEST_CASE("A restored run continues bit-identically", "[training_state]", float, double) {
  using S = TestType;
  auto warm_ema = [](TensorList<S>& p) {
    return ddpm::EMA<S>(p.const_spans(), {.decay = 0.999, .use_ema_warmup = true, .power = 0.75});
  };
  auto fixed_ema = [](TensorList<S>& p) { return ddpm::EMA<S>::fixed_rate(p.const_spans(), 0.9); };
  SECTION("AdamW with amsgrad, diffusers' EMA") {
    check_resume<S, ddpm::AdamW<S>>([] { return ddpm::AdamW<S>({.beta1 = 0.95, .weight_decay = 1e-6, .amsgrad = true}); },
                                    warm_ema);
  }
  SECTION("Adam, fixed-rate EMA") {
    check_resume<S, ddpm::Adam<S>>([] { return ddpm::Adam<S>({.weight_decay = 1e-2}); }, fixed_ema);
  }
  SECTION("SGD with Nesterov momentum") {
    check_resume<S, ddpm::SGD<S>>([] { return ddpm::SGD<S>({.lr = 0.1, .momentum = 0.9, .nesterov = true}); },
                                  warm_ema);
  }
  SECTION("SGD without momentum") {
    check_resume<S, ddpm::SGD<S>>([] { return ddpm::SGD<S>({.lr = 0.1}); }, fixed_ema);
  }
}

TEST_CASE("An optimiser before its first step saves and restores", "[training_state]") {
  ddpm::AdamW<float> opt({.lr = 3e-4});
  ddpm::io::SafetensorsWriter w;
  ddpm::io::add_state(w, opt);
  const auto st = ddpm::io::Safetensors::parse(w.to_bytes());
  const auto back = ddpm::io::read_optimizer<ddpm::AdamW<float>>(st);
  CHECK(back.step_count() == 0);
  CHECK(back.lr() == 3e-4);
  CHECK(back.state("exp_avg").empty());
}

namespace {

// A valid file with an AdamW state of two tensors (sizes 3, 4) after one step, then edited.
struct Edit {
  std::map<std::string, std::string> metadata = {};               // replaced or added keys ("" removes)
  std::vector<std::string> drop = {};                             // tensors left out
  std::map<std::string, std::vector<std::int64_t>> reshape = {};  // tensors written with another shape (F32)
  std::map<std::string, bool> as_double = {};                     // tensors written as F64
  std::vector<std::string> extra = {};                            // extra F32 tensors of size 3
};

ddpm::io::Safetensors edited(const Edit& e) {
  TensorList<float> p({3, 4}, [](std::size_t k, std::size_t i) { return double(k + i); });
  ddpm::AdamW<float> opt;
  opt.step(p.spans(), p.const_spans());
  ddpm::io::SafetensorsWriter good;
  ddpm::io::add_state(good, opt);
  const auto st = ddpm::io::Safetensors::parse(good.to_bytes());
  ddpm::io::SafetensorsWriter w;
  for (const auto& [key, value] : st.metadata()) {
    const auto it = e.metadata.find(key);
    if (it == e.metadata.end()) {
      w.set_metadata(key, value);
    } else if (!it->second.empty()) {
      w.set_metadata(key, it->second);
    }
  }
  for (const auto& [key, value] : e.metadata) {
    if (!st.metadata().count(key) && !value.empty()) w.set_metadata(key, value);
  }
  for (const std::string& name : st.names()) {
    if (std::find(e.drop.begin(), e.drop.end(), name) != e.drop.end()) continue;
    std::vector<float> v = st.to_vector<float>(name);
    if (e.as_double.count(name)) {
      std::vector<double> d(v.begin(), v.end());
      w.add(name, ddpm::ConstTensorMap<double, 1>(d.data(), static_cast<Eigen::Index>(d.size())));
    } else if (const auto it = e.reshape.find(name); it != e.reshape.end()) {
      std::int64_t n = 1;
      for (auto d : it->second) n *= d;
      std::vector<float> r(static_cast<std::size_t>(n), 0.0f);
      w.add_raw(name, ddpm::io::DType::F32, it->second,
                std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(r.data()), r.size() * 4));
    } else {
      w.add(name, ddpm::ConstTensorMap<float, 1>(v.data(), static_cast<Eigen::Index>(v.size())));
    }
  }
  for (const std::string& name : e.extra) {
    const float z[3] = {0, 0, 0};
    w.add(name, ddpm::ConstTensorMap<float, 1>(z, 3));
  }
  return ddpm::io::Safetensors::parse(w.to_bytes(), "edited");
}

void check_rejected(const Edit& e, const std::string& message) {
  const auto st = edited(e);
  CHECK_THROWS_AS(ddpm::io::read_optimizer<ddpm::AdamW<float>>(st), ddpm::format_error);
  CHECK_THROWS_WITH(ddpm::io::read_optimizer<ddpm::AdamW<float>>(st), Catch::Contains(message));
}

}  // namespace

TEST_CASE("A malformed training state is rejected, naming what is wrong", "[training_state]") {
  CHECK_NOTHROW(ddpm::io::read_optimizer<ddpm::AdamW<float>>(edited({})));
  check_rejected({.metadata = {{"optimizer.type", "SGD"}}}, "'optimizer.type' is 'SGD', but a AdamW state");
  check_rejected({.metadata = {{"optimizer.scalar", "float64"}}}, "read as float32");
  check_rejected({.metadata = {{"optimizer.lr", ""}}}, "metadata has no key 'optimizer.lr'");
  check_rejected({.metadata = {{"optimizer.beta1", "0.9x"}}}, "'optimizer.beta1' is '0.9x', which is not a number");
  check_rejected({.metadata = {{"optimizer.beta1", "1.5"}}}, "beta1 is 1.5");
  check_rejected({.metadata = {{"optimizer.amsgrad", "yes"}}}, "must be 'true' or 'false'");
  check_rejected({.metadata = {{"optimizer.step", "-1"}}}, "'optimizer.step' is -1, but must be >= 0");
  check_rejected({.metadata = {{"optimizer.step", "1.5"}}}, "not an integer");
  check_rejected({.metadata = {{"optimizer.step", "0"}}}, "exactly when step > 0");
  check_rejected({.metadata = {{"optimizer.num_tensors", "3"}}}, "has no tensor 'optimizer.exp_avg.2'");
  check_rejected({.metadata = {{"optimizer.num_tensors", "1"}}}, "unexpected tensor 'optimizer.exp_avg.1'");
  check_rejected({.drop = {"optimizer.exp_avg_sq.1"}}, "has no tensor 'optimizer.exp_avg_sq.1'");
  check_rejected({.reshape = {{"optimizer.exp_avg_sq.1", {2, 2}}}}, "has shape (2, 2), but must have rank 1");
  check_rejected({.reshape = {{"optimizer.exp_avg_sq.1", {5}}}},
                 "'optimizer.exp_avg_sq.1' has 5 elements, but 'optimizer.exp_avg.1' has 4");
  check_rejected({.as_double = {{"optimizer.exp_avg.0", true}}}, "has dtype F64, but the state is F32");
  check_rejected({.extra = {"optimizer.exp_avg.01"}}, "unexpected tensor 'optimizer.exp_avg.01'");
  check_rejected({.extra = {"optimizer.momentum_buffer.0"}}, "unexpected tensor 'optimizer.momentum_buffer.0'");
  // A tensor outside the prefix (the model's weights) is none of the reader's business.
  CHECK_NOTHROW(ddpm::io::read_optimizer<ddpm::AdamW<float>>(edited({.extra = {"model.conv_in.weight"}})));
  // The wrong reader for the file.
  CHECK_THROWS_WITH(ddpm::io::read_ema<float>(edited({})), Catch::Contains("metadata has no key 'ema.type'"));
  CHECK_THROWS_WITH(ddpm::io::read_optimizer<ddpm::SGD<float>>(edited({})), Catch::Contains("but a SGD state"));
  CHECK_THROWS_WITH(ddpm::io::read_optimizer<ddpm::AdamW<double>>(edited({})), Catch::Contains("read as float64"));
}

TEST_CASE("A malformed EMA state is rejected", "[training_state]") {
  TensorList<float> p({3, 4}, [](std::size_t k, std::size_t i) { return double(k + i); });
  ddpm::EMA<float> ema(p.const_spans(), {.decay = 0.99});
  ema.step(p.const_spans());
  auto write = [&](const std::string& key, const std::string& value) {
    ddpm::io::SafetensorsWriter w;
    ddpm::io::add_state(w, ema);
    if (!key.empty()) w.set_metadata(key, value);
    return ddpm::io::Safetensors::parse(w.to_bytes(), "ema-file");
  };
  CHECK(ddpm::io::read_ema<float>(write("", "")).shadow() == ema.shadow());
  CHECK_THROWS_WITH(ddpm::io::read_ema<float>(write("ema.type", "Adam")), Catch::Contains("but an EMA state"));
  CHECK_THROWS_WITH(ddpm::io::read_ema<float>(write("ema.decay", "2")), Catch::Contains("decay is 2"));
  CHECK_THROWS_WITH(ddpm::io::read_ema<float>(write("ema.num_tensors", "3")),
                    Catch::Contains("has no tensor 'ema.shadow.2'"));
  CHECK_THROWS_WITH(ddpm::io::read_ema<float>(write("ema.update_after_step", "x")), Catch::Contains("not an integer"));
  CHECK_THROWS_AS(ddpm::io::read_ema<double>(write("", "")), ddpm::format_error);
}
