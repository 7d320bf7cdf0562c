// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// The activation functions of diffusers' get_activation (the config key act_fn), applied in place to a
// contiguous run of values with Eigen's vectorised exp / tanh / erf.

#include <cmath>
#include <numbers>
#include <string>

#include <Eigen/Core>

#include "ddpm/error.hpp"

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

}  // namespace ddpm::nn
