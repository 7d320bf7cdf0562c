// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors

// AdamW, Adam, SGD and clip_grad_norm against PyTorch's own torch.optim and clip_grad_norm_ (20 steps on
// five tensors, float64 and float32; tests/data/training/optim.json from
// tests/reference/make_optim_fixtures.py), the clipping invariants, the independence of the result from how
// the work is cut, and the preconditions.                             [docs/training.md, Eqs. (O1)-(O4)]

#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "ddpm/lr_schedule.hpp"
#include "ddpm/optim.hpp"
#include "optim_fixture.hpp"

using ddpm_test::json;
using ddpm_test::number;
using ddpm_test::optim_fixture;
using ddpm_test::rel_tol;
using ddpm_test::TensorList;

namespace {

template <class S>
const char* dtype_name() {
  return std::is_same_v<S, float> ? "float32" : "float64";
}

ddpm::AdamWOptions adamw_options(const json& o) {
  ddpm::AdamWOptions r;
  if (o.contains("lr")) r.lr = o["lr"].get<double>();
  if (o.contains("betas")) r.beta1 = o["betas"][0].get<double>(), r.beta2 = o["betas"][1].get<double>();
  if (o.contains("eps")) r.eps = o["eps"].get<double>();
  if (o.contains("weight_decay")) r.weight_decay = o["weight_decay"].get<double>();
  if (o.contains("amsgrad")) r.amsgrad = o["amsgrad"].get<bool>();
  return r;
}

ddpm::AdamOptions adam_options(const json& o) {
  ddpm::AdamOptions r;
  if (o.contains("lr")) r.lr = o["lr"].get<double>();
  if (o.contains("betas")) r.beta1 = o["betas"][0].get<double>(), r.beta2 = o["betas"][1].get<double>();
  if (o.contains("eps")) r.eps = o["eps"].get<double>();
  if (o.contains("weight_decay")) r.weight_decay = o["weight_decay"].get<double>();
  if (o.contains("amsgrad")) r.amsgrad = o["amsgrad"].get<bool>();
  return r;
}

ddpm::SGDOptions sgd_options(const json& o) {
  ddpm::SGDOptions r;
  r.lr = o["lr"].get<double>();
  if (o.contains("momentum")) r.momentum = o["momentum"].get<double>();
  if (o.contains("dampening")) r.dampening = o["dampening"].get<double>();
  if (o.contains("weight_decay")) r.weight_decay = o["weight_decay"].get<double>();
  if (o.contains("nesterov")) r.nesterov = o["nesterov"].get<bool>();
  return r;
}

// Runs the case's 20 steps with our optimiser and compares the recorded parameters and the final state.
template <class S, class Opt>
void run_case(Opt& opt, const json& c) {
  const json& fx = optim_fixture();
  TensorList<S> params(fx["params0"]);
  const bool scheduled = c["options"].contains("scheduled");
  for (int k = 0; k < 20; ++k) {
    TensorList<S> grads(fx["grads"][static_cast<std::size_t>(k)]);
    if (scheduled) opt.set_lr(number(fx["scheduled_lr"][static_cast<std::size_t>(k)]));
    opt.step(params.spans(), grads.const_spans());
    const std::string key = std::to_string(k + 1);
    if (c["params"].contains(key)) ddpm_test::check_tensors(params.data, c["params"][key], rel_tol<S>, "step " + key);
  }
  CHECK(opt.step_count() == 20);
  const auto names = opt.state_names();
  CHECK(names.size() == c["state"].size());
  for (auto name : names) {
    INFO("state " << name);
    REQUIRE(c["state"].contains(std::string(name)));
    ddpm_test::check_tensors(opt.state(name), c["state"][std::string(name)], rel_tol<S>, std::string(name));
  }
}

template <class S>
void check_all_optimizer_cases() {
  int ran = 0;
  for (const json& c : optim_fixture()["optimizers"]) {
    if (c["dtype"] != dtype_name<S>()) continue;
    const std::string name = c["optimizer"];
    INFO(name << " " << c["options"].dump() << " " << c["dtype"]);
    if (name == "AdamW") {
      ddpm::AdamW<S> opt(adamw_options(c["options"]));
      run_case<S>(opt, c);
    } else if (name == "Adam") {
      ddpm::Adam<S> opt(adam_options(c["options"]));
      run_case<S>(opt, c);
    } else {
      ddpm::SGD<S> opt(sgd_options(c["options"]));
      run_case<S>(opt, c);
    }
    ++ran;
  }
  CHECK(ran == 12);
}

}  // namespace

TEMPLATE_TEST_CASE("Optimisers match torch.optim over 20 steps (O1-O3)", "[optim]", float, double) {
  check_all_optimizer_cases<TestType>();
}

TEST_CASE("AdamW's defaults are PyTorch's", "[optim]") {
  const ddpm::AdamW<float> opt;
  CHECK(opt.lr() == 1e-3);
  CHECK(opt.beta1() == 0.9);
  CHECK(opt.beta2() == 0.999);
  CHECK(opt.eps() == 1e-8);
  CHECK(opt.weight_decay() == 1e-2);
  CHECK_FALSE(opt.amsgrad());
  const ddpm::Adam<float> adam;
  CHECK(adam.weight_decay() == 0.0);
}

TEST_CASE("The scheduled case's lr is diffusers' cosine schedule", "[optim]") {
  // The fixture's per-step lr and LRSchedule agree, so a loop can drive set_lr from an LRSchedule.
  const auto schedule = ddpm::LRSchedule::cosine_with_warmup(1e-3, 3, 20);
  for (int k = 0; k < 20; ++k) CHECK(schedule.lr(k) == number(optim_fixture()["scheduled_lr"][k]));
}

TEMPLATE_TEST_CASE("clip_grad_norm matches torch.nn.utils.clip_grad_norm_ (O4)", "[optim]", float, double) {
  using S = TestType;
  int ran = 0;
  for (const json& c : optim_fixture()["clip"]) {
    if (c["dtype"] != dtype_name<S>()) continue;
    INFO("max_norm " << number(c["max_norm"]));
    TensorList<S> grads(optim_fixture()["grads"][0]);
    const double norm = ddpm::clip_grad_norm<S>(grads.spans(), number(c["max_norm"]));
    CHECK(ddpm_test::close(norm, number(c["total_norm"]), rel_tol<S>, 0.0));
    ddpm_test::check_tensors(grads.data, c["grads"], rel_tol<S>, "clipped gradients");
    ++ran;
  }
  CHECK(ran == 4);
}

TEMPLATE_TEST_CASE("clip_grad_norm: the clipped norm is max_norm * n / (n + 1e-6); below max_norm nothing changes",
                   "[optim]", float, double) {
  using S = TestType;
  const std::vector<std::size_t> sizes{3, 100, 70001};  // the last spans several work pieces
  const TensorList<S> original(sizes, [](std::size_t k, std::size_t i) {
    return std::sin(0.37 * static_cast<double>(i) + static_cast<double>(k)) * 0.01;
  });
  // The norm in long double from the stored values.
  long double ss = 0;
  for (const auto& v : original.data) {
    for (S x : v) ss += static_cast<long double>(x) * x;
  }
  const double n = static_cast<double>(std::sqrt(ss));
  SECTION("clipped") {
    TensorList<S> g = original;
    const double max_norm = 0.25 * n;
    const double returned = ddpm::clip_grad_norm<S>(g.spans(), max_norm);
    CHECK(std::abs(returned - n) <= 1e-14 * n);  // a double sum of 70104 squares: far below 1e-14
    const double after = ddpm::grad_norm<S>(g.const_spans());
    // Each element is rounded once to S after the multiply: relative error <= eps(S) per element.
    const double expected = max_norm * n / (n + 1e-6);
    CHECK(std::abs(after - expected) <= 2.0 * std::numeric_limits<S>::epsilon() * expected);
    CHECK(after <= max_norm * (1.0 + 2.0 * std::numeric_limits<S>::epsilon()));
  }
  SECTION("not clipped") {
    TensorList<S> g = original;
    const double returned = ddpm::clip_grad_norm<S>(g.spans(), 2.0 * n);
    CHECK(std::abs(returned - n) <= 1e-14 * n);
    CHECK(g.data == original.data);  // bit for bit
  }
}

TEMPLATE_TEST_CASE("A step's result does not depend on how the tensors are cut", "[optim]", float, double) {
  // One tensor of 100003 elements (several work pieces and a partial last packet) against the same values
  // as tensors of 1, 2, 3, ... elements: every element must come out bit-identical.
  using S = TestType;
  const std::size_t n = 100003;
  auto value = [](std::size_t i, double f) { return std::sin(f * static_cast<double>(i)); };
  std::vector<std::size_t> parts;
  for (std::size_t left = n, s = 1; left > 0; ++s) {
    parts.push_back(std::min(s, left));
    left -= parts.back();
  }
  auto run = [&](auto make_opt) {
    TensorList<S> whole({n}, [&](std::size_t, std::size_t i) { return value(i, 0.1); });
    TensorList<S> cut(parts, [&](std::size_t, std::size_t) { return 0.0; });
    for (std::size_t k = 0, i = 0; k < parts.size(); ++k) {
      for (auto& x : cut.data[k]) x = whole.data[0][i++];
    }
    auto a = make_opt(), b = make_opt();
    for (int step = 0; step < 3; ++step) {
      TensorList<S> g({n}, [&](std::size_t, std::size_t i) { return value(i, 0.013 * (step + 1)); });
      TensorList<S> gc(parts, [&](std::size_t, std::size_t) { return 0.0; });
      for (std::size_t k = 0, i = 0; k < parts.size(); ++k) {
        for (auto& x : gc.data[k]) x = g.data[0][i++];
      }
      a.step(whole.spans(), g.const_spans());
      b.step(cut.spans(), gc.const_spans());
    }
    std::vector<S> joined;
    for (const auto& v : cut.data) joined.insert(joined.end(), v.begin(), v.end());
    CHECK(joined == whole.data[0]);
  };
  run([] { return ddpm::AdamW<S>({.weight_decay = 0.1, .amsgrad = true}); });
  run([] { return ddpm::Adam<S>({.weight_decay = 0.1}); });
  run([] { return ddpm::SGD<S>({.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01, .nesterov = true}); });
}

TEST_CASE("Optimisers reject bad hyper-parameters, naming them", "[optim]") {
  using ddpm::invalid_argument;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH(ddpm::AdamW<float>({.lr = -1e-3}), Catch::Contains("lr is -0.001"));
  CHECK_THROWS_AS(ddpm::AdamW<float>({.lr = nan}), invalid_argument);
  CHECK_THROWS_WITH(ddpm::AdamW<float>({.beta1 = 1.0}), Catch::Contains("beta1 is 1, but must be in [0, 1)"));
  CHECK_THROWS_WITH(ddpm::AdamW<float>({.beta2 = -0.1}), Catch::Contains("beta2"));
  CHECK_THROWS_WITH(ddpm::AdamW<float>({.eps = -1e-8}), Catch::Contains("eps is -1e-08"));
  CHECK_THROWS_WITH(ddpm::AdamW<float>({.weight_decay = -1}), Catch::Contains("weight_decay"));
  CHECK_THROWS_WITH(ddpm::Adam<double>({.lr = -1}), Catch::Contains("ddpm::Adam: lr"));
  CHECK_THROWS_WITH(ddpm::SGD<float>(ddpm::SGDOptions{}), Catch::Contains("lr is nan"));
  CHECK_THROWS_WITH(ddpm::SGD<float>({.lr = 0.1, .momentum = -0.5}), Catch::Contains("momentum"));
  CHECK_THROWS_WITH(ddpm::SGD<float>({.lr = 0.1, .dampening = -1}), Catch::Contains("dampening"));
  CHECK_THROWS_WITH(ddpm::SGD<float>({.lr = 0.1, .weight_decay = -1}), Catch::Contains("weight_decay"));
  CHECK_THROWS_WITH(ddpm::SGD<float>({.lr = 0.1, .nesterov = true}), Catch::Contains("nesterov"));
  CHECK_THROWS_WITH(ddpm::SGD<float>({.lr = 0.1, .momentum = 0.9, .dampening = 0.1, .nesterov = true}),
                    Catch::Contains("nesterov"));
  ddpm::AdamW<float> opt;
  CHECK_THROWS_WITH(opt.set_lr(-1), Catch::Contains("lr is -1"));
  CHECK_THROWS_AS(opt.set_lr(std::numeric_limits<double>::infinity()), invalid_argument);
  opt.set_lr(0.0);  // a zero learning rate is allowed (warm-up starts there)
  CHECK(opt.lr() == 0.0);
}

TEST_CASE("Optimisers reject mismatched parameter and gradient lists, naming the tensor", "[optim]") {
  TensorList<float> params({3, 4}, [](std::size_t, std::size_t) { return 1.0; });
  TensorList<float> short_list({3}, [](std::size_t, std::size_t) { return 1.0; });
  TensorList<float> wrong_size({3, 5}, [](std::size_t, std::size_t) { return 1.0; });
  ddpm::AdamW<float> adamw;
  CHECK_THROWS_WITH(adamw.step(params.spans(), short_list.const_spans()),
                    Catch::Contains("grads has 1 tensors, but must have as many as params (2)"));
  CHECK_THROWS_WITH(adamw.step(params.spans(), wrong_size.const_spans()),
                    Catch::Contains("grads[1] has 5 elements, but must have as many as params[1] (4)"));
  CHECK(adamw.step_count() == 0);  // nothing happened
  adamw.step(params.spans(), params.const_spans());
  // Later steps must keep the list the state was made for.
  CHECK_THROWS_WITH(adamw.step(wrong_size.spans(), wrong_size.const_spans()),
                    Catch::Contains("params[1] has 5 elements"));
  CHECK_THROWS_WITH(adamw.step(short_list.spans(), short_list.const_spans()),
                    Catch::Contains("params has 1 tensors"));
  ddpm::SGD<float> sgd({.lr = 0.1, .momentum = 0.9});
  CHECK_THROWS_AS(sgd.step(params.spans(), wrong_size.const_spans()), ddpm::invalid_argument);
  CHECK_THROWS_WITH(ddpm::clip_grad_norm<float>(params.spans(), 0.0), Catch::Contains("max_norm is 0"));
  CHECK_THROWS_WITH(ddpm::clip_grad_norm<float>(params.spans(), -1.0), Catch::Contains("max_norm is -1"));
  CHECK_THROWS_WITH(ddpm::clip_grad_norm<float>(params.spans(), std::numeric_limits<double>::infinity()),
                    Catch::Contains("max_norm is inf"));
  CHECK_THROWS_WITH(adamw.state("momentum_buffer"), Catch::Contains("state_names"));
}

TEST_CASE("Optimiser state accessors and load_state", "[optim]") {
  TensorList<double> params({2, 17}, [](std::size_t k, std::size_t i) { return 0.1 * static_cast<double>(k + i); });
  ddpm::AdamW<double> opt({.amsgrad = true});
  CHECK(opt.state("exp_avg").empty());
  opt.step(params.spans(), params.const_spans());
  CHECK(opt.state("exp_avg").size() == 2);
  CHECK(opt.state("max_exp_avg_sq")[1].size() == 17);
  ddpm::AdamW<double> other({.amsgrad = true});
  CHECK_THROWS_WITH(other.load_state(1, {opt.state("exp_avg"), opt.state("exp_avg_sq")}),
                    Catch::Contains("buffers has 2 entries, but must have 3"));
  CHECK_THROWS_WITH(other.load_state(0, {opt.state("exp_avg"), opt.state("exp_avg_sq"), opt.state("max_exp_avg_sq")}),
                    Catch::Contains("exactly when step > 0"));
  auto bad = opt.state("exp_avg_sq");
  bad[1].pop_back();
  CHECK_THROWS_WITH(other.load_state(1, {opt.state("exp_avg"), bad, opt.state("max_exp_avg_sq")}),
                    Catch::Contains("buffers[1][1] has 16 elements"));
  other.load_state(1, {opt.state("exp_avg"), opt.state("exp_avg_sq"), opt.state("max_exp_avg_sq")});
  CHECK(other.step_count() == 1);
  ddpm::SGD<double> plain({.lr = 0.1});
  CHECK(plain.state_names().empty());
  TensorList<double> g = params;
  plain.step(params.spans(), g.spans());  // gradients as mutable spans (as clip_grad_norm takes them) work too
  CHECK(params.data[1][16] == Approx(0.9 * g.data[1][16]).epsilon(1e-15));  // p - lr g with g = p
  CHECK_THROWS_AS(plain.state("momentum_buffer"), ddpm::invalid_argument);
}
