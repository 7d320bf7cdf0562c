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
  if (!f.contains(name) || f.info(name).shape.size() != 1) return out;
  for (double v : f.to_vector<double>(name)) out.push_back(static_cast<int>(v));
  return out;
}

/// An identity model's class embedding [N, time_embed_dim] (a fixture's 2-d "class_labels", as diffusers
/// names the argument); empty when the fixture has labels or none.
template <class S>
typename UNet2D<S>::Matrix class_embedding_of(const ddpm::io::Safetensors& f, const std::string& name) {
  typename UNet2D<S>::Matrix out;
  if (!f.contains(name) || f.info(name).shape.size() != 2) return out;
  const std::vector<double> v = f.to_vector<double>(name);
  out.resize(f.info(name).shape[0], f.info(name).shape[1]);
  for (Eigen::Index i = 0; i < out.size(); ++i) out.data()[i] = static_cast<S>(v[static_cast<std::size_t>(i)]);
  return out;
}

/// forward_train / forward with labels, or with the class embedding for an identity model.
template <class S, class Out>
void train_pass(const UNet2D<S>& model, Workspace<S>& ws, const ddpm::Tensor<S, 4>& x, const std::vector<double>& t,
                const std::vector<int>& labels, const typename UNet2D<S>::Matrix& class_emb, Out& out,
                typename UNet2D<S>::Activations& acts) {
  if (class_emb.size() > 0) {
    model.forward_train(ws, x, std::span<const double>(t), class_emb, out, acts);
  } else {
    model.forward_train(ws, x, std::span<const double>(t), std::span<const int>(labels), out, acts);
  }
}
template <class S, class Out>
void inference_pass(const UNet2D<S>& model, Workspace<S>& ws, const ddpm::Tensor<S, 4>& x, const std::vector<double>& t,
                    const std::vector<int>& labels, const typename UNet2D<S>::Matrix& class_emb, Out& out) {
  if (class_emb.size() > 0) {
    model.forward(ws, x, std::span<const double>(t), out, class_emb);
  } else {
    model.forward(ws, x, std::span<const double>(t), out, std::span<const int>(labels));
  }
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
  const typename UNet2D<S>::Matrix class_emb = class_embedding_of<S>(ref, "class_labels");
  Workspace<S> ws(1);
  typename UNet2D<S>::Activations acts;
  ddpm::Tensor<S, 4> out, d_out, d_x;
  train_pass(model, ws, x, t, labels, class_emb, out, acts);
  const ddpm::Tensor<double, 4> out_ref = ref.to_tensor<double, 4>("output");
  const double out_scale = max_abs(out_ref);
  double out_err = 0;
  for (Eigen::Index i = 0; i < out.size(); ++i) {
    out_err = std::max(out_err, std::abs(static_cast<double>(out.data()[i]) - out_ref.data()[i]));
  }
  {  // the training pass computes what the inference pass computes (im2col instead of Winograd)
    ddpm::Tensor<S, 4> inference;
    inference_pass(model, ws, x, t, labels, class_emb, inference);
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
  typename UNet2D<S>::Matrix d_class;
  model.backward(ws, acts, d_out, grads, &d_x, class_emb.size() > 0 ? &d_class : nullptr);
  CHECK(acts.empty());
  if (class_emb.size() > 0) {  // dL/d class_emb: the identity class embedding's gradient
    const std::vector<double> r = ref.to_vector<double>("grad.class_labels");
    REQUIRE(d_class.rows() == class_emb.rows());
    REQUIRE(d_class.cols() == class_emb.cols());
    double err = 0, dc_scale = 0;
    for (Eigen::Index i = 0; i < d_class.size(); ++i) {
      err = std::max(err, std::abs(static_cast<double>(d_class.data()[i]) - r[static_cast<std::size_t>(i)]));
      dc_scale = std::max(dc_scale, std::abs(r[static_cast<std::size_t>(i)]));
    }
    REQUIRE(dc_scale > 0);
    CHECK(err <= tol * dc_scale);
    WARN(model_name << " " << file << ": d class_emb " << err / dc_scale << " (relative to the largest)");
  }
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

TEST_CASE("UNet2D: class_embed_type identity adds the caller's class embedding", "[nn][unet2d][class]") {
  // tiny_identity: make_unet_fixture.py's UNet2DModel (confirmed against diffusers' own with --check-diffusers
  // of make_unet_grad_fixture.py) with class_labels = a float [N, 32] class embedding
  const auto io = ddpm::io::Safetensors::load(fixture("tiny_identity/reference_io.safetensors"));
  const std::vector<double> t = io.to_vector<double>("timesteps");
  SECTION("forward against the reference, double and float") {
    const UNet2D<double> model = UNet2D<double>::from_pretrained(fixture("tiny_identity"));
    CHECK(model.config().class_embed_type == "identity");
    const auto c = class_embedding_of<double>(io, "class_labels");
    REQUIRE(c.rows() == 2);
    REQUIRE(c.cols() == 32);
    const ddpm::Tensor<double, 4> x = io.to_tensor<double, 4>("sample");
    ddpm::Tensor<double, 4> out;
    model.forward(x, std::span<const double>(t), out, c);
    const ddpm::Tensor<double, 4> ref = io.to_tensor<double, 4>("output_f64");
    const double scale = max_abs(ref);
    double err = 0;
    for (Eigen::Index i = 0; i < out.size(); ++i) err = std::max(err, std::abs(out.data()[i] - ref.data()[i]));
    CHECK(err <= kDoubleTolerance * scale);
    WARN("tiny_identity double forward: " << err / scale);
    // the class embedding matters, and a map over the caller's buffer is the same input as the matrix
    typename UNet2D<double>::Matrix c2 = c;
    c2.row(0) *= 2.0;
    const ddpm::Tensor<double, 4> a = model(x, 20, c);
    const Eigen::Map<const typename UNet2D<double>::Matrix> c2_map(c2.data(), c2.rows(), c2.cols());
    const ddpm::Tensor<double, 4> b = model(x, 20, c2_map);
    double diff0 = 0, diff1 = 0;
    const Eigen::Index per_image = a.size() / 2;
    for (Eigen::Index i = 0; i < per_image; ++i) {
      diff0 = std::max(diff0, std::abs(a.data()[i] - b.data()[i]));
      diff1 = std::max(diff1, std::abs(a.data()[per_image + i] - b.data()[per_image + i]));
    }
    CHECK(diff0 > 1e-6);
    CHECK(diff1 == 0.0);  // image 1's embedding did not change
    const UNet2D<float> model_f = UNet2D<float>::from_pretrained(fixture("tiny_identity"));
    ddpm::Tensor<float, 4> out_f;
    model_f.forward(io.to_tensor<float, 4>("sample"), std::span<const double>(t), out_f,
                    class_embedding_of<float>(io, "class_labels"));
    const ddpm::Tensor<double, 4> ref_f = io.to_tensor<double, 4>("output_f32");
    double err_f = 0;
    for (Eigen::Index i = 0; i < out_f.size(); ++i) err_f = std::max(err_f, std::abs(out_f.data()[i] - ref_f.data()[i]));
    CHECK(err_f <= 1e-5 * max_abs(ref_f));
  }
  SECTION("d class_emb against central finite differences (double)") {
    // L = mean((out - eps)^2); numeric dL/dc = (L(c + h) - L(c - h)) / 2h per entry, gradcheck's h 1e-6,
    // |analytic - numeric| <= 1e-5 + 1e-3 |numeric|
    const UNet2D<double> model = UNet2D<double>::from_pretrained(fixture("tiny_identity"));
    const auto ref = ddpm::io::Safetensors::load(fixture("tiny_identity/reference_grads.safetensors"));
    const ddpm::Tensor<double, 4> x = ref.to_tensor<double, 4>("sample");
    const ddpm::Tensor<double, 4> eps = ref.to_tensor<double, 4>("eps");
    const std::vector<double> tr = ref.to_vector<double>("timesteps");
    typename UNet2D<double>::Matrix c = class_embedding_of<double>(ref, "class_labels");
    Workspace<double> ws(1);
    typename UNet2D<double>::Activations acts;
    ddpm::Tensor<double, 4> out, d_out;
    model.forward_train(ws, x, std::span<const double>(tr), c, out, acts);
    simple_loss(out, eps, d_out);
    UNet2D<double> grads = model.zeros_like();
    typename UNet2D<double>::Matrix d_c;
    model.backward(ws, acts, d_out, grads, nullptr, &d_c);
    auto loss_at = [&](const typename UNet2D<double>::Matrix& cc) {
      ddpm::Tensor<double, 4> o, d;
      model.forward(ws, x, std::span<const double>(tr), o, cc);
      return simple_loss(o, eps, d);
    };
    const double h = 1e-6;
    int failures = 0;
    for (Eigen::Index i = 0; i < c.size(); ++i) {
      typename UNet2D<double>::Matrix cp = c, cm = c;
      cp.data()[i] += h;
      cm.data()[i] -= h;
      const double numeric = (loss_at(cp) - loss_at(cm)) / (2 * h);
      if (std::abs(d_c.data()[i] - numeric) > 1e-5 + 1e-3 * std::abs(numeric)) {
        ++failures;
        INFO("entry " << i << ": analytic " << d_c.data()[i] << ", numeric " << numeric);
        CHECK(false);
      }
    }
    CHECK(failures == 0);
    CHECK(d_c.cwiseAbs().maxCoeff() > 1e-4);  // not vacuous
  }
  SECTION("bad class inputs") {
    const UNet2D<double> model = UNet2D<double>::from_pretrained(fixture("tiny_identity"));
    const ddpm::Tensor<double, 4> x = io.to_tensor<double, 4>("sample");
    const auto c = class_embedding_of<double>(io, "class_labels");
    ddpm::Tensor<double, 4> out;
    const std::vector<int> labels = {1, 2};
    CHECK_THROWS_WITH(model.forward(x, std::span<const double>(t), out, std::span<const int>(labels)),
                      Catch::Contains("\"identity\"") && Catch::Contains("[N, 32]"));
    CHECK_THROWS_AS(model.forward(x, std::span<const double>(t), out), ddpm::invalid_argument);
    const typename UNet2D<double>::Matrix wrong = c.leftCols(31);
    CHECK_THROWS_WITH(model.forward(x, std::span<const double>(t), out, wrong),
                      Catch::Contains("class_emb has shape [2, 31], but must be [2, 32]"));
    const typename UNet2D<double>::Matrix one_row = c.topRows(1);
    CHECK_THROWS_AS(model.forward(x, std::span<const double>(t), out, one_row), ddpm::invalid_argument);
    Workspace<double> ws(1);
    typename UNet2D<double>::Activations acts;
    CHECK_THROWS_AS(model.forward_train(ws, x, std::span<const double>(t), wrong, out, acts), ddpm::invalid_argument);
    // a model that takes labels (or nothing) refuses a class embedding, and backward will not return one
    const UNet2D<double> table = UNet2D<double>::from_pretrained(fixture("tiny_class"));
    ddpm::Tensor<double, 4> x1z(2, 1, 8, 8);
    x1z.setZero();
    CHECK_THROWS_WITH(table.forward(x1z, std::span<const double>(t), out, c), Catch::Contains("takes labels"));
    const UNet2D<double> plain = UNet2D<double>::from_pretrained(fixture("tiny"));
    ddpm::Tensor<double, 4> x3(2, 3, 16, 16);
    x3.setZero();
    CHECK_THROWS_WITH(plain.forward(x3, std::span<const double>(t), out, c), Catch::Contains("no class embedding"));
    typename UNet2D<double>::Activations table_acts;
    table.forward_train(ws, x1z, std::span<const double>(t), std::span<const int>(labels), out, table_acts);
    UNet2D<double> table_grads = table.zeros_like();
    typename UNet2D<double>::Matrix d_c;
    ddpm::Tensor<double, 4> d_out(out.dimensions());
    d_out.setConstant(1.0);
    CHECK_THROWS_WITH(table.backward(ws, table_acts, d_out, table_grads, nullptr, &d_c),
                      Catch::Contains("d_class_emb"));
    // no weights of its own: the parameters are those of the same network without class conditioning
    std::vector<std::string> names;
    model.for_each_parameter("", [&](const auto& p) { names.push_back(p.name); });
    CHECK(names.front() == "conv_in.weight");
    for (const std::string& n : names) CHECK(n.rfind("class_embedding", 0) == std::string::npos);
    CHECK(model.num_parameters() == 44969);  // as the PyTorch reference counts them (make_unet_fixture.py)
  }
}

TEST_CASE("UNet2D backward matches PyTorch autograd (double)", "[nn][unet2d][backward]") {
  for (const char* name : {"tiny", "tiny_legacy", "tiny_class", "tiny_identity"}) {
    check_gradients<double>(name, "reference_grads.safetensors", kDoubleTolerance);
  }
}

TEST_CASE("UNet2D backward matches PyTorch autograd (float)", "[nn][unet2d][backward]") {
  for (const char* name : {"tiny", "tiny_legacy", "tiny_class", "tiny_identity"}) {
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
