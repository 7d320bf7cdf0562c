// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// Linear: PyTorch's nn.Linear, y = x W^T + b, on a batch of row vectors.

#include <concepts>
#include <string>
#include <type_traits>

#include <Eigen/Core>

#include "ddpm/error.hpp"
#include "ddpm/nn/detail/gemm.hpp"
#include "ddpm/nn/parameter.hpp"

namespace ddpm::nn {

template <std::floating_point S>
class Linear {
 public:
  using Matrix = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Vector = Eigen::Matrix<S, Eigen::Dynamic, 1>;

  Linear() = default;
  /// A layer from in_features to out_features with zero weights (and a zero bias when bias is true).
  /// Throws ddpm::invalid_argument if a size is < 1.
  Linear(Eigen::Index in_features, Eigen::Index out_features, bool bias = true) {
    if (in_features < 1 || out_features < 1) {
      ddpm::detail::throw_invalid_argument("ddpm::nn::Linear: in_features and out_features are " +
                                           std::to_string(in_features) + " and " + std::to_string(out_features) +
                                           ", but must be >= 1");
    }
    weight_ = Matrix::Zero(out_features, in_features);
    if (bias) bias_ = Vector::Zero(out_features);
  }

  Eigen::Index in_features() const { return weight_.cols(); }
  Eigen::Index out_features() const { return weight_.rows(); }
  bool has_bias() const { return bias_.size() > 0; }
  Matrix& weight() { return weight_; }  ///< [out, in], PyTorch's layout
  const Matrix& weight() const { return weight_; }
  Vector& bias() { return bias_; }
  const Vector& bias() const { return bias_; }

  /// y = x W^T + b for a batch of rows x [batch, in] (y is resized to [batch, out]).   [docs/unet.md]
  /// Throws ddpm::invalid_argument if x has the wrong number of columns.
  template <class Derived>
  void forward(const Eigen::MatrixBase<Derived>& x, Matrix& y) const {
    if (x.cols() != in_features()) {
      ddpm::detail::throw_invalid_argument("ddpm::nn::Linear: the input has " + std::to_string(x.cols()) +
                                           " features, but must have " + std::to_string(in_features()));
    }
    y.resize(x.rows(), out_features());
    if constexpr (std::is_same_v<typename Derived::Scalar, S> && int(Derived::Flags & Eigen::RowMajorBit) &&
                  bool(Derived::Flags & Eigen::DirectAccessBit)) {
      // Eigen's GEMM with its packing buffers supplied: nothing allocated in the steady state
      detail::gemm<S, false, true>(x.rows(), out_features(), in_features(), x.derived().data(),
                                   x.derived().outerStride(), weight_.data(), in_features(), y.data(),
                                   out_features(), false);
    } else {
      y.noalias() = x * weight_.transpose();
    }
    if (has_bias()) y.rowwise() += bias_.transpose();
  }

  template <class Derived>
  Matrix operator()(const Eigen::MatrixBase<Derived>& x) const {
    Matrix y;
    forward(x, y);
    return y;
  }

  template <class F>
  void for_each_parameter(const std::string& prefix, F&& f) {
    f(Parameter<S>{prefix + "weight", {weight_.rows(), weight_.cols()}, weight_.data()});
    if (has_bias()) f(Parameter<S>{prefix + "bias", {bias_.size()}, bias_.data()});
  }

 private:
  Matrix weight_;
  Vector bias_;
};

}  // namespace ddpm::nn
