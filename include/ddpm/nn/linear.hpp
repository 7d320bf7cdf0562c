// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// Linear: PyTorch's nn.Linear, y = x W^T + b, on a batch of row vectors, with its backward pass. An
// exemplar of the layer protocol (docs/unet.md, "Forward and backward (the training protocol)"):
//   forward(ws, x, y, saved)            y = x W^T + b; with saved != nullptr, keeps x for backward
//   backward(ws, saved, dy, dx, grads)  dx = dy W (written); grads.W += dy^T x, grads.b += sum_rows dy
//   gradient_like()                     the gradients' layout: a zero Linear of the same shape

#include <algorithm>
#include <concepts>
#include <string>
#include <type_traits>

#include <Eigen/Core>

#include "ddpm/error.hpp"
#include "ddpm/nn/context.hpp"
#include "ddpm/nn/detail/gemm.hpp"
#include "ddpm/nn/parameter.hpp"

namespace ddpm::nn {

template <std::floating_point S>
class Linear {
 public:
  using Matrix = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Vector = Eigen::Matrix<S, Eigen::Dynamic, 1>;
  /// A batch of rows [batch, features] in contiguous row-major storage (the protocol's input and output).
  using Rows = Eigen::Map<Matrix>;
  using ConstRows = Eigen::Map<const Matrix>;

  /// What backward needs from a forward pass: a copy of the input, in a buffer of the workspace's pool
  /// (returned to the pool when the Saved is destroyed).
  struct Saved {
    typename Workspace<S>::Buffer input;  ///< x [rows, in_features]
    Eigen::Index rows = 0;
  };

  Linear() = default;
  /// A layer from in_features to out_features with zero weights (and a zero bias when bias is true).
  /// Throws ddpm::invalid_argument if a size is < 1.
  Linear(Eigen::Index in_features, Eigen::Index out_features, bool bias = true) {
    if (in_features < 1 || out_features < 1) {
      ddpm::detail::throw_invalid_argument("ddpm::nn::Linear: in_features and out_features are " +
                                           ddpm::detail::number_string(in_features) + " and " + ddpm::detail::number_string(out_features) +
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

  /// Nothing is derived from the weights (the protocol's step after a change of the weights).
  void prepare() {}
  void mark_weights_changed() {}
  /// A zero layer of the same shape: the gradients, laid out as the parameters.
  Linear gradient_like() const { return Linear(in_features(), out_features(), has_bias()); }

  /// y = x W^T + b for a batch of rows x [batch, in] into y [batch, out].                 [docs/unet.md]
  /// With `saved`, also keeps a copy of x for backward (y may then alias nothing of x).
  /// Throws ddpm::invalid_argument if the shapes do not fit.
  void forward(Workspace<S>& ws, ConstRows x, Rows y, Saved* saved = nullptr) const {
    if (x.cols() != in_features() || y.cols() != out_features() || y.rows() != x.rows()) {
      ddpm::detail::throw_invalid_argument("ddpm::nn::Linear::forward: x is [" + ddpm::detail::number_string(x.rows()) + ", " +
                                           ddpm::detail::number_string(x.cols()) + "] and y [" + ddpm::detail::number_string(y.rows()) +
                                           ", " + ddpm::detail::number_string(y.cols()) + "], but must be [batch, " +
                                           ddpm::detail::number_string(in_features()) + "] and [batch, " +
                                           ddpm::detail::number_string(out_features()) + "]");
    }
    if (saved != nullptr) {
      saved->input = ws.acquire(x.size());
      saved->rows = x.rows();
      std::copy_n(x.data(), x.size(), saved->input.data());
    }
    detail::gemm<S, false, true>(ws.packing_buffer(0), x.rows(), out_features(), in_features(), x.data(),
                                 in_features(), weight_.data(), in_features(), y.data(), out_features(), false);
    if (has_bias()) y.rowwise() += bias_.transpose();
  }

  /// The backward pass of y = x W^T + b for dL/dy = dy [batch, out]:           [docs/unet.md, Eq. (U9)]
  ///   dx = dy W            (written to dx [batch, in]; skipped when dx.data() is null)
  ///   dW += dy^T x,  db += sum over the rows of dy   (accumulated into grads, a gradient_like() layer)
  /// Throws ddpm::invalid_argument if the shapes do not fit the forward pass that filled `saved`.
  void backward(Workspace<S>& ws, const Saved& saved, ConstRows dy, Rows dx, Linear& grads) const {
    const Eigen::Index B = saved.rows, I = in_features(), O = out_features();
    if (saved.input.data() == nullptr || dy.rows() != B || dy.cols() != O ||
        (dx.data() != nullptr && (dx.rows() != B || dx.cols() != I)) || grads.in_features() != I ||
        grads.out_features() != O || grads.has_bias() != has_bias()) {
      ddpm::detail::throw_invalid_argument(
          "ddpm::nn::Linear::backward: dy is [" + ddpm::detail::number_string(dy.rows()) + ", " + ddpm::detail::number_string(dy.cols()) +
          "], dx [" + ddpm::detail::number_string(dx.rows()) + ", " + ddpm::detail::number_string(dx.cols()) + "] and grads " +
          ddpm::detail::number_string(grads.out_features()) + " x " + ddpm::detail::number_string(grads.in_features()) + ", but must be [" +
          ddpm::detail::number_string(B) + ", " + ddpm::detail::number_string(O) + "], [" + ddpm::detail::number_string(B) + ", " + ddpm::detail::number_string(I) +
          "] (or null) and a gradient_like() of this layer after a forward pass with saved");
    }
    if (dx.data() != nullptr) {
      detail::gemm<S>(ws.packing_buffer(0), B, I, O, dy.data(), O, weight_.data(), I, dx.data(), I, false);
    }
    // dW [O, I] += dy^T [O, B] x [B, I]
    detail::gemm<S, true, false>(ws.packing_buffer(0), O, I, B, dy.data(), O, saved.input.data(), I,
                                 grads.weight_.data(), I, true);
    if (has_bias()) grads.bias_ += dy.colwise().sum().transpose();
  }

  /// y = x W^T + b into y, resized to [batch, out] (a convenience: Eigen's own product, which allocates).
  /// Throws ddpm::invalid_argument if x has the wrong number of columns.
  template <class Derived>
  void forward(const Eigen::MatrixBase<Derived>& x, Matrix& y) const {
    if (x.cols() != in_features()) {
      ddpm::detail::throw_invalid_argument("ddpm::nn::Linear: the input has " + ddpm::detail::number_string(x.cols()) +
                                           " features, but must have " + ddpm::detail::number_string(in_features()));
    }
    y.resize(x.rows(), out_features());
    y.noalias() = x * weight_.transpose();
    if (has_bias()) y.rowwise() += bias_.transpose();
  }

  template <class Derived>
  Matrix operator()(const Eigen::MatrixBase<Derived>& x) const {
    Matrix y;
    forward(x, y);
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
    using P = Parameter<std::conditional_t<std::is_const_v<Self>, const S, S>>;
    f(P{prefix + "weight", {self.weight_.rows(), self.weight_.cols()}, self.weight_.data()});
    if (self.has_bias()) f(P{prefix + "bias", {self.bias_.size()}, self.bias_.data()});
  }

 private:
  Matrix weight_;
  Vector bias_;
};

}  // namespace ddpm::nn
