// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// The sinusoidal timestep embedding of DDPM / diffusers (Timesteps) and the MLP on top of it
// (TimestepEmbedding: linear_1, SiLU, linear_2).

#include <cmath>
#include <concepts>
#include <span>
#include <string>

#include <Eigen/Core>

#include "ddpm/error.hpp"
#include "ddpm/nn/activation.hpp"
#include "ddpm/nn/linear.hpp"
#include "ddpm/nn/parameter.hpp"

namespace ddpm::nn {

/// sinusoidal_embedding() into `out` (resized to [t.size(), dim]; no allocation when it has that size).
template <class Matrix>
void sinusoidal_embedding_into(std::span<const double> t, Eigen::Index dim, bool flip_sin_to_cos, double freq_shift,
                               Matrix& out, double max_period = 10000.0) {
  using S = typename Matrix::Scalar;
  const Eigen::Index half = dim / 2;
  if (dim < 2 || static_cast<float>(half) - static_cast<float>(freq_shift) == 0.0f) {
    ddpm::detail::throw_invalid_argument("ddpm::nn::sinusoidal_embedding: dim is " + std::to_string(dim) +
                                         " and freq_shift " + std::to_string(freq_shift) +
                                         ", but dim must be >= 2 and dim / 2 - freq_shift nonzero");
  }
  out.resize(static_cast<Eigen::Index>(t.size()), dim);
  const float log_period = -static_cast<float>(std::log(max_period));
  const float denominator = static_cast<float>(half) - static_cast<float>(freq_shift);
  for (std::size_t b = 0; b < t.size(); ++b) {
    if (!std::isfinite(t[b])) {
      ddpm::detail::throw_invalid_argument("ddpm::nn::sinusoidal_embedding: t[" + std::to_string(b) + "] is " +
                                           std::to_string(t[b]) + ", but must be finite");
    }
    const float tb = static_cast<float>(t[b]);
    const Eigen::Index row = static_cast<Eigen::Index>(b);
    for (Eigen::Index k = 0; k < half; ++k) {
      const float exponent = log_period * static_cast<float>(k) / denominator;
      const float arg = tb * std::exp(exponent);
      const float s = std::sin(arg), c = std::cos(arg);
      out(row, flip_sin_to_cos ? half + k : k) = static_cast<S>(s);
      out(row, flip_sin_to_cos ? k : half + k) = static_cast<S>(c);
    }
    if (dim % 2 == 1) out(row, dim - 1) = S(0);
  }
}

/// The sinusoidal embedding of each timestep, one row per timestep [t.size(), dim].  [docs/unet.md, Eq. (U3)]
///   half = dim / 2,  freq_k = exp(-ln(max_period) * k / (half - freq_shift)),  k = 0 .. half - 1
///   row = [sin(t * freq), cos(t * freq)], or [cos, sin] when flip_sin_to_cos; a zero column pads an odd dim.
/// Computed in float32 whatever S is, operation for operation as diffusers does (the original DDPM code is
/// freq_shift = 1, flip_sin_to_cos = false), then cast to S. Timesteps may be fractional.
/// Throws ddpm::invalid_argument if dim < 2, half - freq_shift is 0, or a timestep is not finite.
template <std::floating_point S>
Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> sinusoidal_embedding(
    std::span<const double> t, Eigen::Index dim, bool flip_sin_to_cos, double freq_shift, double max_period = 10000.0) {
  Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> out;
  sinusoidal_embedding_into(t, dim, flip_sin_to_cos, freq_shift, out, max_period);
  return out;
}

/// diffusers' TimestepEmbedding: linear_2(silu(linear_1(x))).                 [docs/unet.md, Eq. (U4)]
template <std::floating_point S>
class TimestepEmbedding {
 public:
  using Matrix = typename Linear<S>::Matrix;

  TimestepEmbedding() = default;
  TimestepEmbedding(Eigen::Index in_features, Eigen::Index dim) : linear_1_(in_features, dim), linear_2_(dim, dim) {}

  Linear<S>& linear_1() { return linear_1_; }
  Linear<S>& linear_2() { return linear_2_; }
  Eigen::Index in_features() const { return linear_1_.in_features(); }
  Eigen::Index dim() const { return linear_2_.out_features(); }

  /// y = W2 silu(W1 x + b1) + b2 for each row of x; `hidden` is scratch.
  void forward(const Matrix& x, Matrix& y, Matrix& hidden) const {
    linear_1_.forward(x, hidden);
    apply_activation(Activation::silu, hidden.data(), hidden.size());
    linear_2_.forward(hidden, y);
  }

  Matrix operator()(const Matrix& x) const {
    Matrix y, hidden;
    forward(x, y, hidden);
    return y;
  }

  template <class F>
  void for_each_parameter(const std::string& prefix, F&& f) {
    linear_1_.for_each_parameter(prefix + "linear_1.", f);
    linear_2_.for_each_parameter(prefix + "linear_2.", f);
  }

 private:
  Linear<S> linear_1_, linear_2_;
};

}  // namespace ddpm::nn
