// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
//
// UNet2D's training pass (forward_train, backward) and class conditioning against PyTorch autograd:
// tests/reference/make_unet_grad_fixture.py wrote, for the committed small models, the simple loss, dL/dx and
// every parameter gradient (float64 and float32) and ten AdamW steps (float64); its docstring gives the
// tolerances (1e-9 of the largest value of a tensor kind in double, 1e-4 of the largest gradient in float).

#include <algorithm>
#include <cmath>
#include <span>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "ddpm/io/safetensors.hpp"
#include "ddpm/nn/unet2d.hpp"
#include "ddpm/optim.hpp"

namespace {

using ddpm::nn::UNet2D;
using ddpm::nn::Workspace;

// Tolerances from the arithmetic. Both sides compute the same float32 timestep embedding bit for bit (float32
// operands and products as diffusers, exp/sin/cos correctly rounded: docs/unet.md, "Timestep embedding"), so
// the float64 passes differ only by double rounding in different summation orders: the PyTorch reference
// agrees with diffusers' own UNet2DModel to 6e-15 of the largest value (make_unet_grad_fixture.py
// --check-diffusers), and a few hundred roundings of 1.1e-16 each stay far below 1e-9, the bound.
constexpr double kDoubleTolerance = 1e-9;
// Ten AdamW steps: each step is lr * m_hat / (sqrt(v_hat) + 1e-8), so a gradient that is zero but for rounding
// (to_k.bias: a key bias shifts every score of a query alike; |g| ~ 1e-17 to 1e-16) takes steps of up to
// lr * |g| / 1e-8 ~ 1e-12 to 1e-11 from noise alone, different noise in each implementation: ten of them move a
// to_k.bias by up to ~1e-10 (measured 3.1e-11, 1.0e-10 of that tensor's largest |value|, tiny_class; every other
// tensor within 7.5e-13; diffusers' model repeats the fixture's steps to 2.1e-11). So 1e-9 relative to each
// tensor's largest value (at least 1e-3), the bound.
constexpr double kAdamTolerance = 1e-9;

std::string fixture(const std::string& name) { return std::string(DDPM_TEST_DATA_DIR) + "/unet/" + name; }

std::vector<int> labels_of(const ddpm::io::Safetensors& f, const std::string& name) {
  std::vector<int> out;
  if (!f.contains(name)) return out;
  for (double v : f.to_vector<double>(name)) out.push_back(static_cast<int>(v));
  return out;
}

/// The fixture's name of a parameter's gradient (tiny_legacy keeps the older attention names).
std::string grad_name(const ddpm::io::Safetensors& f, const std::string& name) {
  const std::string g = "grad." + name;
  return f.contains(g) ? g : "grad." + ddpm::nn::legacy_attention_name(name);
}

template <class S>
double max_abs(const ddpm::Tensor<S, 4>& t) {
  double m = 0;
  for (Eigen::Index i = 0; i < t.size(); ++i) m = std::max(m, std::abs(static_cast<double>(t.data()[i])));
  return m;
}

/// d_out of L = mean((out - eps)^2): 2 (out - eps) / out.size(); returns L.
template <class S>
double simple_loss(const ddpm::Tensor<S, 4>& out, const ddpm::Tensor<S, 4>& eps, ddpm::Tensor<S, 4>& d_out) {
  d_out.resize(out.dimensions());
  double loss = 0;
  const double n = static_cast<double>(out.size());
  for (Eigen::Index i = 0; i < out.size(); ++i) {
    const S d = out.data()[i] - eps.data()[i];
    loss += static_cast<double>(d) * static_cast<double>(d);
    d_out.data()[i] = static_cast<S>(2.0 * static_cast<double>(d) / n);
  }
  return loss / n;
}

template <class S>
void check_gradients(const std::string& model_name, const std::string& file, double tol) {
  INFO(model_name << " " << file);
  UNet2D<S> model = UNet2D<S>::from_pretrained(fixture(model_name));
  const auto ref = ddpm::io::Safetensors::load(fixture(model_name + "/" + file));
  const ddpm::Tensor<S, 4> x = ref.to_tensor<S, 4>("sample");
  const ddpm::Tensor<S, 4> eps = ref.to_tensor<S, 4>("eps");
  const std::vector<double> t = ref.to_vector<double>("timesteps");
  const std::vector<int> labels = labels_of(ref, "class_labels");
  Workspace<S> ws(1);
  typename UNet2D<S>::Activations acts;
  ddpm::Tensor<S, 4> out, d_out, d_x;
  model.forward_train(ws, x, std::span<const double>(t), std::span<const int>(labels), out, acts);
  const ddpm::Tensor<double, 4> out_ref = ref.to_tensor<double, 4>("output");
  const double out_scale = max_abs(out_ref);
  double out_err = 0;
  for (Eigen::Index i = 0; i < out.size(); ++i) {
    out_err = std::max(out_err, std::abs(static_cast<double>(out.data()[i]) - out_ref.data()[i]));
  }
  {  // the training pass computes what the inference pass computes (im2col instead of Winograd)
    ddpm::Tensor<S, 4> inference;
    model.forward(ws, x, std::span<const double>(t), inference, std::span<const int>(labels));
    double diff = 0;
    for (Eigen::Index i = 0; i < out.size(); ++i) {
      diff = std::max(diff, std::abs(static_cast<double>(out.data()[i]) - static_cast<double>(inference.data()[i])));
    }
    INFO("training vs inference pass " << diff / out_scale);
    CHECK(diff <= (std::is_same_v<S, float> ? 1e-5 : 1e-12) * out_scale);
    WARN(model_name << " training vs inference pass: " << diff / out_scale);
  }
  INFO("output error " << out_err / out_scale << " relative");
  CHECK(out_err <= tol * out_scale);
  const double loss = simple_loss(out, eps, d_out);
  const double loss_ref = ref.to_vector<double>("loss")[0];
  CHECK(std::abs(loss - loss_ref) <= tol * std::abs(loss_ref));
  UNet2D<S> grads = model.zeros_like();
  model.backward(ws, acts, d_out, grads, &d_x);
  CHECK(acts.empty());
  const ddpm::Tensor<double, 4> dx_ref = ref.to_tensor<double, 4>("grad.sample");
  const double dx_scale = max_abs(dx_ref);
  double dx_err = 0;
  for (Eigen::Index i = 0; i < d_x.size(); ++i) {
    dx_err = std::max(dx_err, std::abs(static_cast<double>(d_x.data()[i]) - dx_ref.data()[i]));
  }
  CHECK(dx_err <= tol * dx_scale);
  // the largest parameter gradient sets the scale
  double scale = 0;
  std::size_t count = 0;
  for (const auto& p : grads.parameters()) {
    for (double v : ref.to_vector<double>(grad_name(ref, p.name))) scale = std::max(scale, std::abs(v));
    ++count;
  }
  REQUIRE(scale > 0);
  std::size_t checked = 0;
  double worst = 0;
  for (const auto& p : grads.parameters()) {
    const std::vector<double> r = ref.to_vector<double>(grad_name(ref, p.name));
    REQUIRE(static_cast<std::int64_t>(r.size()) == p.numel());
    double err = 0;
    for (std::size_t i = 0; i < r.size(); ++i) err = std::max(err, std::abs(static_cast<double>(p.data[i]) - r[i]));
    INFO(p.name << " max error " << err << " of scale " << scale);
    CHECK(err <= tol * scale);
    worst = std::max(worst, err / scale);
    ++checked;
  }
  CHECK(checked == count);
  WARN(model_name << " " << file << ": output " << out_err / out_scale << ", d_x " << dx_err / dx_scale
                  << ", parameters " << worst << " (relative to the largest)");
}

}  // namespace

TEST_CASE("UNet2D: class-conditional model matches its reference output", "[nn][unet2d][class]") {
  const auto io = ddpm::io::Safetensors::load(fixture("tiny_class/reference_io.safetensors"));
  const std::vector<int> labels = labels_of(io, "class_labels");
  const std::vector<double> t = io.to_vector<double>("timesteps");
  REQUIRE(labels.size() == 3);
  SECTION("double") {
    const UNet2D<double> model = UNet2D<double>::from_pretrained(fixture("tiny_class"));
    const ddpm::Tensor<double, 4> x = io.to_tensor<double, 4>("sample");
    ddpm::Tensor<double, 4> out;
    model.forward(x, std::span<const double>(t), out, std::span<const int>(labels));
    const ddpm::Tensor<double, 4> ref = io.to_tensor<double, 4>("output_f64");
    const double scale = max_abs(ref);
    for (Eigen::Index i = 0; i < out.size(); ++i) REQUIRE(std::abs(out.data()[i] - ref.data()[i]) <= kDoubleTolerance * scale);
    // the convenience form with one timestep: a different label changes the output
    const ddpm::Tensor<double, 4> a = model(x, 10, std::span<const int>(labels));
    std::vector<int> other = labels;
    other[0] = (other[0] + 1) % 10;
    const ddpm::Tensor<double, 4> b = model(x, 10, std::span<const int>(other));
    double diff = 0;
    for (Eigen::Index i = 0; i < a.size() / 3; ++i) diff = std::max(diff, std::abs(a.data()[i] - b.data()[i]));
    CHECK(diff > 1e-6);
  }
  SECTION("float") {
    const UNet2D<float> model = UNet2D<float>::from_pretrained(fixture("tiny_class"));
    const ddpm::Tensor<float, 4> x = io.to_tensor<float, 4>("sample");
    ddpm::Tensor<float, 4> out;
    model.forward(x, std::span<const double>(t), out, std::span<const int>(labels));
    const ddpm::Tensor<double, 4> ref = io.to_tensor<double, 4>("output_f32");
    const double scale = max_abs(ref);
    for (Eigen::Index i = 0; i < out.size(); ++i) REQUIRE(std::abs(out.data()[i] - ref.data()[i]) <= 1e-5 * scale);
  }
  SECTION("bad labels") {
    const UNet2D<double> model = UNet2D<double>::from_pretrained(fixture("tiny_class"));
    const ddpm::Tensor<double, 4> x = io.to_tensor<double, 4>("sample");
    ddpm::Tensor<double, 4> out;
    CHECK_THROWS_AS(model.forward(x, std::span<const double>(t), out), ddpm::invalid_argument);
    std::vector<int> bad = labels;
    bad[1] = 10;
    CHECK_THROWS_WITH(model.forward(x, std::span<const double>(t), out, std::span<const int>(bad)),
                      Catch::Contains("labels[1] is 10"));
    bad[1] = -1;
    CHECK_THROWS_AS(model.forward(x, std::span<const double>(t), out, std::span<const int>(bad)),
                    ddpm::invalid_argument);
    const UNet2D<double> plain = UNet2D<double>::from_pretrained(fixture("tiny"));
    ddpm::Tensor<double, 4> x3(3, 3, 16, 16);
    x3.setZero();
    CHECK_THROWS_WITH(plain(x3, 5, std::span<const int>(labels)),
                      Catch::Contains("no class embedding"));
  }
}

TEST_CASE("UNet2D backward matches PyTorch autograd (double)", "[nn][unet2d][backward]") {
  for (const char* name : {"tiny", "tiny_legacy", "tiny_class"}) check_gradients<double>(name, "reference_grads.safetensors", kDoubleTolerance);
}

TEST_CASE("UNet2D backward matches PyTorch autograd (float)", "[nn][unet2d][backward]") {
  for (const char* name : {"tiny", "tiny_legacy", "tiny_class"}) {
    check_gradients<float>(name, "reference_grads_f32.safetensors", 1e-4);
  }
}

namespace {

/// n AdamW steps of the fixture's batches; returns the losses.
std::vector<double> adamw_steps(UNet2D<double>& model, const ddpm::io::Safetensors& ref, int steps, int threads) {
  ddpm::AdamW<double> opt(ddpm::AdamWOptions{});
  Workspace<double> ws(threads);
  typename UNet2D<double>::Activations acts;
  std::vector<double> losses;
  for (int k = 0; k < steps; ++k) {
    const std::string pre = "step_" + std::to_string(k) + ".";
    const ddpm::Tensor<double, 4> x = ref.to_tensor<double, 4>(pre + "sample");
    const ddpm::Tensor<double, 4> eps = ref.to_tensor<double, 4>(pre + "eps");
    const std::vector<double> t = ref.to_vector<double>(pre + "timesteps");
    const std::vector<int> labels = labels_of(ref, pre + "class_labels");
    ddpm::Tensor<double, 4> out, d_out;
    model.forward_train(ws, x, std::span<const double>(t), std::span<const int>(labels), out, acts);
    losses.push_back(simple_loss(out, eps, d_out));
    UNet2D<double> grads = model.zeros_like();
    model.backward(ws, acts, d_out, grads);
    std::vector<std::span<double>> p, g;
    for (const auto& q : model.parameters()) p.emplace_back(q.data, static_cast<std::size_t>(q.numel()));
    for (const auto& q : grads.parameters()) g.emplace_back(q.data, static_cast<std::size_t>(q.numel()));
    opt.step(std::span<const std::span<double>>(p), std::span<const std::span<double>>(g));
    model.mark_weights_changed();
    model.prepare();
  }
  return losses;
}

}  // namespace

TEST_CASE("UNet2D: ten AdamW steps match torch.optim.AdamW", "[nn][unet2d][backward][adamw]") {
  for (const char* name : {"tiny", "tiny_class"}) {
    INFO(name);
    const auto ref = ddpm::io::Safetensors::load(fixture(std::string(name) + "/reference_adamw.safetensors"));
    UNet2D<double> model = UNet2D<double>::from_pretrained(fixture(name));
    const std::vector<double> losses = adamw_steps(model, ref, 10, 1);
    const std::vector<double> loss_ref = ref.to_vector<double>("loss");
    REQUIRE(losses.size() == loss_ref.size());
    for (std::size_t k = 0; k < losses.size(); ++k) CHECK(std::abs(losses[k] - loss_ref[k]) <= kDoubleTolerance * loss_ref[k]);
    double adam_worst = 0, adam_worst_abs = 0, adam_rest = 0;  // the rest: all but the to_k.bias tensors
    std::string adam_worst_name;
    for (const auto& p : model.parameters()) {
      const std::vector<double> r = ref.to_vector<double>("final." + p.name);
      double err = 0, scale = 0;
      for (std::size_t i = 0; i < r.size(); ++i) {
        err = std::max(err, std::abs(p.data[i] - r[i]));
        scale = std::max(scale, std::abs(r[i]));
      }
      INFO(p.name << " error " << err << " scale " << scale);
      CHECK(err <= kAdamTolerance * std::max(scale, 1e-3));
      if (err / std::max(scale, 1e-3) > adam_worst) {
        adam_worst = err / std::max(scale, 1e-3);
        adam_worst_abs = err;
        adam_worst_name = p.name;
      }
      if (p.name.find("to_k.bias") == std::string::npos) adam_rest = std::max(adam_rest, err / std::max(scale, 1e-3));
    }
    WARN(name << ": ten AdamW steps, worst weight error " << adam_worst << " of its tensor's largest ("
              << adam_worst_name << ", " << adam_worst_abs << " absolute); all but to_k.bias " << adam_rest);
    // same thread count: bit-identical weights; two threads reproduce themselves too
    for (int threads : {1, 2}) {
      UNet2D<double> a = UNet2D<double>::from_pretrained(fixture(name));
      UNet2D<double> b = UNet2D<double>::from_pretrained(fixture(name));
      adamw_steps(a, ref, 3, threads);
      adamw_steps(b, ref, 3, threads);
      const auto pa = a.parameters(), pb = b.parameters();
      for (std::size_t i = 0; i < pa.size(); ++i) {
        REQUIRE(std::equal(pa[i].data, pa[i].data + pa[i].numel(), pb[i].data));
      }
    }
  }
}
