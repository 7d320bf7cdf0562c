// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// The activation functions of diffusers' get_activation (the config key act_fn), applied in place to a
// contiguous run of values with Eigen's vectorised exp / tanh / erf; their derivatives; and
// ActivationLayer, the activation as a layer of the training protocol (forward keeps its input, backward
// multiplies by the derivative).

#include <cmath>
#include <numbers>
#include <algorithm>
#include <concepts>
#include <span>
#include <string>

#include <Eigen/Core>

#include "ddpm/error.hpp"
#include "ddpm/nn/context.hpp"
#include "ddpm/nn/parameter.hpp"

namespace ddpm::nn {

enum class Activation {
  identity,
  silu,  ///< x * sigmoid(x) = x / (1 + exp(-x))  (act_fn "silu" or "swish")
  mish,  ///< x * tanh(log(1 + exp(x)))
  gelu,  ///< x * Phi(x) = 0.5 x (1 + erf(x / sqrt(2)))   (exact, PyTorch's default)
  relu,  ///< max(x, 0)
};

/// The activation named by a diffusers act_fn string: "silu", "swish", "mish", "gelu" or "relu".
/// Throws ddpm::invalid_argument for any other name, listing the supported ones.
inline Activation parse_activation(const std::string& name) {
  if (name == "silu" || name == "swish") return Activation::silu;
  if (name == "mish") return Activation::mish;
  if (name == "gelu") return Activation::gelu;
  if (name == "relu") return Activation::relu;
  ddpm::detail::throw_invalid_argument("ddpm::nn::parse_activation: act_fn is \"" + name +
                                       "\", but must be one of silu, swish, mish, gelu, relu");
}

/// y = act(y) elementwise over n contiguous values.
template <class S>
void apply_activation(Activation act, S* y, Eigen::Index n) {
  Eigen::Map<Eigen::Array<S, Eigen::Dynamic, 1>> a(y, n);
  switch (act) {
    case Activation::identity:
      break;
    case Activation::silu:
      a = a / (S(1) + (-a).exp());
      break;
    case Activation::mish: {
      // softplus(x) = max(x, 0) + log1p(exp(-|x|)) never overflows
      a = a * (a.max(S(0)) + (-a.abs()).exp().log1p()).tanh();
      break;
    }
    case Activation::gelu:
      a = S(0.5) * a * (S(1) + (a * S(1.0 / std::numbers::sqrt2)).erf());
      break;
    case Activation::relu:
      a = a.max(S(0));
      break;
  }
}

/// dx = act'(x) * dy elementwise over n contiguous values (dx may be dy):        [docs/unet.md, Eq. (U10)]
///   silu: s (1 + x (1 - s)), s = sigmoid(x);   mish: tanh(sp) + x (1 - tanh(sp)^2) sigmoid(x), sp = softplus(x)
///   gelu: Phi(x) + x phi(x);   relu: 1 if x > 0 else 0;   identity: 1
template <class S>
void activation_backward(Activation act, const S* x, const S* dy, S* dx, Eigen::Index n) {
  using Array = Eigen::Array<S, Eigen::Dynamic, 1>;
  const Eigen::Map<const Array> a(x, n), g(dy, n);
  Eigen::Map<Array> d(dx, n);
  switch (act) {
    case Activation::identity:
      if (dx != dy) d = g;
      break;
    case Activation::silu: {
      // written so that every coefficient is computed before d (which may alias dy) is written
      for (Eigen::Index i = 0; i < n; ++i) {
        const S s = S(1) / (S(1) + std::exp(-x[i]));
        dx[i] = dy[i] * (s * (S(1) + x[i] * (S(1) - s)));
      }
      break;
    }
    case Activation::mish:
      for (Eigen::Index i = 0; i < n; ++i) {
        const S v = x[i];
        const S sp = std::max(v, S(0)) + std::log1p(std::exp(-std::abs(v)));
        const S tn = std::tanh(sp), s = S(1) / (S(1) + std::exp(-v));
        dx[i] = dy[i] * (tn + v * (S(1) - tn * tn) * s);
      }
      break;
    case Activation::gelu:
      for (Eigen::Index i = 0; i < n; ++i) {
        const S v = x[i];
        const S cdf = S(0.5) * (S(1) + std::erf(v * S(1.0 / std::numbers::sqrt2)));
        const S pdf = std::exp(S(-0.5) * v * v) * S(0.5 * std::numbers::inv_sqrtpi * std::numbers::sqrt2);
        dx[i] = dy[i] * (cdf + v * pdf);
      }
      break;
    case Activation::relu:
      d = (a > S(0)).select(g, Array::Zero(n));
      break;
  }
}

/// An activation as a layer of the training protocol (docs/unet.md, "Forward and backward"): it has no
/// parameters, so its gradients (gradient_like()) hold nothing, and backward only computes dx.
///   forward(ws, x, y, saved)            y = act(x) elementwise (y may be x); saved keeps a copy of x
///   backward(ws, saved, dy, dx, grads)  dx = act'(x) * dy (dx may be dy)
template <std::floating_point S>
class ActivationLayer {
 public:
  struct Saved {
    typename Workspace<S>::Buffer input;  ///< x, the pre-activation values
    Eigen::Index size = 0;
  };

  explicit ActivationLayer(Activation act = Activation::silu) : act_(act) {}
  Activation activation() const { return act_; }

  void prepare() {}
  void mark_weights_changed() {}
  ActivationLayer gradient_like() const { return *this; }

  /// y = act(x). Throws ddpm::invalid_argument if the sizes differ.
  void forward(Workspace<S>& ws, std::span<const S> x, std::span<S> y, Saved* saved = nullptr) const {
    if (x.size() != y.size()) {
      ddpm::detail::throw_invalid_argument("ddpm::nn::ActivationLayer::forward: x has " + ddpm::detail::number_string(x.size()) +
                                           " values and y " + ddpm::detail::number_string(y.size()) + ", but they must match");
    }
    const auto n = static_cast<Eigen::Index>(x.size());
    if (saved != nullptr) {
      saved->input = ws.acquire(n);
      saved->size = n;
      std::copy_n(x.data(), n, saved->input.data());
    }
    if (y.data() != x.data()) std::copy_n(x.data(), n, y.data());
    apply_activation(act_, y.data(), n);
  }

  /// dx = act'(x) * dy. Throws ddpm::invalid_argument if the sizes differ from the forward pass's.
  void backward(Workspace<S>& /*ws*/, const Saved& saved, std::span<const S> dy, std::span<S> dx,
                ActivationLayer& /*grads*/) const {
    if (saved.input.data() == nullptr || static_cast<Eigen::Index>(dy.size()) != saved.size ||
        dx.size() != dy.size()) {
      ddpm::detail::throw_invalid_argument("ddpm::nn::ActivationLayer::backward: dy has " +
                                           ddpm::detail::number_string(dy.size()) + " values and dx " + ddpm::detail::number_string(dx.size()) +
                                           ", but both must have the forward input's " + ddpm::detail::number_string(saved.size));
    }
    activation_backward(act_, saved.input.data(), dy.data(), dx.data(), saved.size);
  }

  /// No parameters.
  template <class F>
  void for_each_parameter(const std::string& /*prefix*/, F&& /*f*/) const {}

 private:
  Activation act_ = Activation::silu;
};

}  // namespace ddpm::nn
