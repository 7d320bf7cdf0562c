// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// The sinusoidal timestep embedding of DDPM / diffusers (Timesteps) and the MLP on top of it
// (TimestepEmbedding: linear_1, SiLU, linear_2).

#include <cmath>
#include <concepts>
#include <limits>
#include <span>
#include <string>
#include <type_traits>

#include <Eigen/Core>

#include "ddpm/error.hpp"
#include "ddpm/nn/activation.hpp"
#include "ddpm/nn/linear.hpp"
#include "ddpm/nn/parameter.hpp"

namespace ddpm::nn {

/// sinusoidal_embedding() into rows x dim row-major values at `out`: row b embeds t[b], or t[0] for every
/// row when t holds one timestep (a batch at one timestep).
template <class S>
void sinusoidal_embedding_into(std::span<const double> t, Eigen::Index rows, Eigen::Index dim, bool flip_sin_to_cos,
                               double freq_shift, S* out, double max_period = 10000.0) {
  const Eigen::Index half = dim / 2;
  if (dim < 2 || static_cast<float>(half) - static_cast<float>(freq_shift) == 0.0f) {
    ddpm::detail::throw_invalid_argument("ddpm::nn::sinusoidal_embedding: dim is " + ddpm::detail::number_string(dim) +
                                         " and freq_shift " + ddpm::detail::number_string(freq_shift) +
                                         ", but dim must be >= 2 and dim / 2 - freq_shift nonzero");
  }
  if (t.size() != 1 && static_cast<Eigen::Index>(t.size()) != rows) {
    ddpm::detail::throw_invalid_argument("ddpm::nn::sinusoidal_embedding: t holds " + ddpm::detail::number_string(t.size()) +
                                         " timesteps, but must hold 1 or rows (" + ddpm::detail::number_string(rows) + ")");
  }
  const float log_period = -static_cast<float>(std::log(max_period));
  const float denominator = static_cast<float>(half) - static_cast<float>(freq_shift);
  for (Eigen::Index row = 0; row < rows; ++row) {
    const std::size_t b = t.size() == 1 ? 0 : static_cast<std::size_t>(row);
    if (!(std::abs(t[b]) <= static_cast<double>(std::numeric_limits<float>::max()))) {  // inf in float32: NaN rows
      ddpm::detail::throw_invalid_argument("ddpm::nn::sinusoidal_embedding: t[" + ddpm::detail::number_string(b) + "] is " +
                                           ddpm::detail::number_string(t[b]) + ", but must be finite as a float32");
    }
    const float tb = static_cast<float>(t[b]);
    S* r = out + row * dim;
    for (Eigen::Index k = 0; k < half; ++k) {
      // float32 operands and float32 products, as diffusers; exp, sin and cos of those float32 values are
      // evaluated in double and rounded once, i.e. correctly rounded (libm's and PyTorch's float32 versions
      // are faithful but differ from each other and from this by an ulp in a few percent of cases)
      const float exponent = log_period * static_cast<float>(k) / denominator;
      const float freq = static_cast<float>(std::exp(static_cast<double>(exponent)));
      const float arg = tb * freq;
      const float s = static_cast<float>(std::sin(static_cast<double>(arg)));
      const float c = static_cast<float>(std::cos(static_cast<double>(arg)));
      r[flip_sin_to_cos ? half + k : k] = static_cast<S>(s);
      r[flip_sin_to_cos ? k : half + k] = static_cast<S>(c);
    }
    if (dim % 2 == 1) r[dim - 1] = S(0);
  }
}

/// sinusoidal_embedding() into `out` (resized to [t.size(), dim]; no allocation when it has that size).
template <class Matrix>
void sinusoidal_embedding_into(std::span<const double> t, Eigen::Index dim, bool flip_sin_to_cos, double freq_shift,
                               Matrix& out, double max_period = 10000.0) {
  if (dim >= 2) out.resize(static_cast<Eigen::Index>(t.size()), dim);
  sinusoidal_embedding_into(t, static_cast<Eigen::Index>(t.size()), dim, flip_sin_to_cos, freq_shift, out.data(),
                            max_period);
}

/// The sinusoidal embedding of each timestep, one row per timestep [t.size(), dim].  [docs/unet.md, Eq. (U3)]
///   half = dim / 2,  freq_k = exp(-ln(max_period) * k / (half - freq_shift)),  k = 0 .. half - 1
///   row = [sin(t * freq), cos(t * freq)], or [cos, sin] when flip_sin_to_cos; a zero column pads an odd dim.
/// A float32 embedding whatever S is, as diffusers computes it (the original DDPM code is freq_shift = 1,
/// flip_sin_to_cos = false), then cast to S: the exponent, t (rounded to float32) and the product t * freq
/// are float32 operations as in diffusers; exp, sin and cos are correctly rounded to float32 (evaluated in
/// double, rounded once), so the embedding is a function of t alone, the same bits in every build and in
/// the PyTorch reference (tests/reference/make_unet_fixture.py), and within one float32 ulp of diffusers'
/// own float32 embedding (docs/unet.md, "Timestep embedding"). Timesteps may be fractional.
/// Throws ddpm::invalid_argument if dim < 2, half - freq_shift is 0, or a timestep is not finite as a float32.
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
  const Linear<S>& linear_1() const { return linear_1_; }
  const Linear<S>& linear_2() const { return linear_2_; }
  Eigen::Index in_features() const { return linear_1_.in_features(); }
  Eigen::Index dim() const { return linear_2_.out_features(); }

  void prepare() {}
  void mark_weights_changed() {}
  TimestepEmbedding gradient_like() const { return zeros_like<S>(*this); }

  /// y = W2 silu(W1 x + b1) + b2 for each row of x [batch, in] into y [batch, dim]; the hidden layer is a
  /// buffer of the workspace. Throws ddpm::invalid_argument if the shapes do not fit.
  void forward(Workspace<S>& ws, typename Linear<S>::ConstRows x, typename Linear<S>::Rows y) const {
    typename Workspace<S>::Buffer hidden = ws.acquire(x.rows() * dim());
    typename Linear<S>::Rows h(hidden.data(), x.rows(), dim());
    linear_1_.forward(ws, x, h);
    apply_activation(Activation::silu, h.data(), h.size());
    linear_2_.forward(ws, typename Linear<S>::ConstRows(h.data(), h.rows(), h.cols()), y);
  }

  /// y = W2 silu(W1 x + b1) + b2 for each row of x; `hidden` is scratch (a convenience that allocates).
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

  /// Visits every parameter (name, PyTorch shape, writable pointer); a change of the weights.
  template <class F>
  void for_each_parameter(const std::string& prefix, F&& f) {
    visit_parameters(*this, prefix, f);
  }
  /// The same list with read-only pointers (Parameter<const S>): not a change of the weights.
  template <class F>
  void for_each_parameter(const std::string& prefix, F&& f) const {
    visit_parameters(*this, prefix, f);
  }

 private:
  // The body of both (Self is this class, const or not).
  template <class Self, class F>
  static void visit_parameters(Self& self, const std::string& prefix, F& f) {
    self.linear_1_.for_each_parameter(prefix + "linear_1.", f);
    self.linear_2_.for_each_parameter(prefix + "linear_2.", f);
  }

 private:
  Linear<S> linear_1_, linear_2_;
};

}  // namespace ddpm::nn
