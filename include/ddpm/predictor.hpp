// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// What a sampler calls: a model `model(x_t, t)` that predicts the noise (eps), the clean sample (x0) or
// the velocity (v) at training timestep t, the concepts that describe it, adapters that declare its kind or
// combine two predictions (classifier-free guidance), and GaussianMixturePredictor, the exact E[eps | x_t]
// of a Gaussian-mixture data distribution: the oracle of the sampler tests and the engine of the demo.
//                                                          [docs/samplers.md, Eqs. (S1)-(S3), (S16)-(S17)]

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include "ddpm/error.hpp"
#include "ddpm/posterior.hpp"
#include "ddpm/schedule.hpp"
#include "ddpm/tensor.hpp"

namespace ddpm {

/// A model: callable as `model(x_t, t)` on a `const Tensor<S, R>&` batch and an int training timestep
/// (0-based, in [0, T)), returning something convertible to `Tensor<S, R>` of the same shape (or, for a
/// learned-variance model, with twice the channels in dimension 1). A plain lambda is a Predictor.
template <class M, class S, int R>
concept Predictor = std::floating_point<S> && requires(M& model, const Tensor<S, R>& x, int t) {
  { model(x, t) } -> std::convertible_to<Tensor<S, R>>;
};

namespace detail {
template <class M>
concept has_prediction_function = requires(const std::remove_cvref_t<M>& m) {
  { m.prediction() } -> std::convertible_to<Prediction>;
};
template <class M>
concept has_prediction_constant = !has_prediction_function<M> && requires {
  { std::remove_cvref_t<M>::prediction } -> std::convertible_to<Prediction>;
};
}  // namespace detail

/// The kind a model declares: its `prediction()` member function, else its static `prediction` constant,
/// else Prediction::epsilon (a plain lambda predicts the noise, as in DDPM).
template <class M>
Prediction prediction_of(const M& model) {
  if constexpr (detail::has_prediction_function<M>) {
    return model.prediction();
  } else if constexpr (detail::has_prediction_constant<M>) {
    (void)model;
    return std::remove_cvref_t<M>::prediction;
  } else {
    (void)model;
    return Prediction::epsilon;
  }
}

/// A Predictor known at compile time to predict eps: one that declares nothing (a plain lambda) or
/// declares `static constexpr Prediction prediction = Prediction::epsilon`.
template <class M, class S, int R>
concept EpsilonPredictor = Predictor<M, S, R> && !detail::has_prediction_function<M> &&
                           (!detail::has_prediction_constant<M> || std::remove_cvref_t<M>::prediction ==
                                                                       Prediction::epsilon);

/// A model with a declared kind: what `with_prediction` returns. Holds a reference to an lvalue model and
/// a copy of an rvalue one (a lambda, say).
template <class M>
class PredictionAdapter {
 public:
  PredictionAdapter(M model, Prediction kind) : model_(std::forward<M>(model)), kind_(kind) {}
  Prediction prediction() const { return kind_; }
  template <class X>
  decltype(auto) operator()(const X& x_t, int t) {
    return model_(x_t, t);
  }
  template <class X>
  decltype(auto) operator()(const X& x_t, int t) const
    requires std::invocable<const std::remove_reference_t<M>&, const X&, int>
  {
    return model_(x_t, t);
  }

 private:
  M model_;
  Prediction kind_;
};

/// Declares what a model predicts: `with_prediction(Prediction::velocity, net)` runs a v-prediction
/// network under any sampler (diffusers' `prediction_type = "v_prediction"`).
/// An lvalue model is held by reference (it must outlive the adapter), an rvalue one is moved in.
template <class M>
PredictionAdapter<M> with_prediction(Prediction kind, M&& model) {
  return PredictionAdapter<M>(std::forward<M>(model), kind);
}

namespace detail {

[[noreturn]] inline void throw_guidance(const std::string& what) {
  throw_invalid_argument("ddpm::ClassifierFreeGuidance: " + what);
}

inline void check_guidance_options(double scale, double rescale) {
  if (!std::isfinite(scale)) throw_guidance("scale is " + ddpm::detail::number_string(scale) + ", but must be finite");
  if (!(rescale >= 0.0 && rescale <= 1.0)) {
    throw_guidance("rescale is " + ddpm::detail::number_string(rescale) + ", but must be in [0, 1]");
  }
}

/// Unbiased standard deviation of n values (torch.std's default, as diffusers' rescale_noise_cfg uses).
template <class S>
double unbiased_std(const S* v, Eigen::Index n) {
  double mean = 0.0;
  for (Eigen::Index i = 0; i < n; ++i) mean += static_cast<double>(v[i]);
  mean /= static_cast<double>(n);
  double ss = 0.0;
  for (Eigen::Index i = 0; i < n; ++i) {
    const double d = static_cast<double>(v[i]) - mean;
    ss += d * d;
  }
  return std::sqrt(ss / static_cast<double>(n - 1));
}

/// In place over `cond` (batch elements of `per_sample` values):
///   guided = uncond + scale * (cond - uncond)                              [docs/samplers.md, Eq. (S16)]
///   if rescale > 0:  guided = rescale * guided * std(cond) / std(guided) + (1 - rescale) * guided  (S17)
template <class S>
void guide_in_place(S* cond, const S* uncond, Eigen::Index batch, Eigen::Index per_sample, double scale,
                    double rescale) {
  using Vec = Eigen::Array<S, Eigen::Dynamic, 1>;
  const S w = static_cast<S>(scale);
  for (Eigen::Index b = 0; b < batch; ++b) {
    Eigen::Map<Vec> c(cond + b * per_sample, per_sample);
    Eigen::Map<const Vec> u(uncond + b * per_sample, per_sample);
    const double std_cond = rescale > 0.0 ? unbiased_std(c.data(), per_sample) : 0.0;
    c = u + w * (c - u);
    if (rescale > 0.0) {
      const double std_guided = unbiased_std(c.data(), per_sample);
      const double factor = rescale * std_cond / std_guided + (1.0 - rescale);
      c *= static_cast<S>(factor);
    }
  }
}

template <class S, int R>
void check_guidance_outputs(const Tensor<S, R>& cond, const Tensor<S, R>& uncond, Eigen::Index batch,
                            double rescale) {
  require_same_shape("ddpm::ClassifierFreeGuidance", "the conditional prediction", cond,
                     "the unconditional prediction", uncond);
  if (cond.dimension(0) != batch) {
    throw_guidance("the model returned " + ddpm::detail::number_string(cond.dimension(0)) + " batch elements, but x_t has " +
                   ddpm::detail::number_string(batch));
  }
  if (rescale > 0.0 && per_sample_size(cond) < 2) {
    throw_guidance("rescale is " + ddpm::detail::number_string(rescale) +
                   ", but rescaling needs at least 2 values per batch element for a standard deviation");
  }
}

}  // namespace detail

/// Classifier-free guidance with two models (Ho & Salimans 2022), optionally with the guidance rescale of
/// Lin et al. (2024, Sec. 3.4; diffusers' `guidance_rescale`):         [docs/samplers.md, Eqs. (S16), (S17)]
///   out = uncond(x_t, t) + scale * (cond(x_t, t) - uncond(x_t, t))
///   out = phi * out * std(cond) / std(out) + (1 - phi) * out      (std per batch element, unbiased)
/// It predicts what the conditional model predicts (both must declare the same kind). Each call runs both
/// models and guides in place in the conditional output, allocating nothing else. scale = 1 gives the
/// conditional model; scale = 0 the unconditional one.
/// Throws ddpm::invalid_argument (on construction) if scale is not finite, rescale is outside [0, 1] or the
/// two models declare different kinds; (on a call) if the two outputs differ in shape.
template <class Cond, class Uncond>
class ClassifierFreeGuidance {
 public:
  ClassifierFreeGuidance(Cond cond, Uncond uncond, double scale, double rescale = 0.0)
      : cond_(std::forward<Cond>(cond)), uncond_(std::forward<Uncond>(uncond)), scale_(scale), rescale_(rescale) {
    detail::check_guidance_options(scale, rescale);
    if (prediction_of(cond_) != prediction_of(uncond_)) {
      detail::throw_guidance(std::string("the unconditional model predicts ") +
                             prediction_name(prediction_of(uncond_)) + ", but must predict what the conditional "
                             "model predicts (" + prediction_name(prediction_of(cond_)) + ")");
    }
  }

  Prediction prediction() const { return prediction_of(cond_); }
  double scale() const { return scale_; }
  double rescale() const { return rescale_; }

  template <std::floating_point S, int R>
    requires Predictor<std::remove_reference_t<Cond>, S, R> && Predictor<std::remove_reference_t<Uncond>, S, R>
  Tensor<S, R> operator()(const Tensor<S, R>& x_t, int t) {
    Tensor<S, R> out = cond_(x_t, t);
    const Tensor<S, R> uncond = uncond_(x_t, t);
    detail::check_guidance_outputs(out, uncond, x_t.dimension(0), rescale_);
    detail::guide_in_place(out.data(), uncond.data(), out.dimension(0), detail::per_sample_size(out), scale_,
                           rescale_);
    return out;
  }

 private:
  Cond cond_;
  Uncond uncond_;
  double scale_;
  double rescale_;
};

template <class C, class U>
ClassifierFreeGuidance(C&&, U&&, double, double = 0.0) -> ClassifierFreeGuidance<C, U>;

/// Classifier-free guidance with one model called once on a doubled batch, as diffusers' pipelines do:
/// the model sees [x_t; x_t] (2B batch elements) and must return [unconditional; conditional] in that
/// order (its conditioning lives inside it). Otherwise as ClassifierFreeGuidance. Each call allocates the
/// doubled input and the guided result, besides what the model returns.
/// Throws ddpm::invalid_argument (on construction) if scale is not finite or rescale is outside [0, 1];
/// (on a call) if the model does not return 2B batch elements.
template <class M>
class BatchedClassifierFreeGuidance {
 public:
  BatchedClassifierFreeGuidance(M model, double scale, double rescale = 0.0)
      : model_(std::forward<M>(model)), scale_(scale), rescale_(rescale) {
    detail::check_guidance_options(scale, rescale);
  }

  Prediction prediction() const { return prediction_of(model_); }
  double scale() const { return scale_; }
  double rescale() const { return rescale_; }

  template <std::floating_point S, int R>
    requires Predictor<std::remove_reference_t<M>, S, R>
  Tensor<S, R> operator()(const Tensor<S, R>& x_t, int t) {
    const Eigen::Index batch = x_t.dimension(0);
    auto doubled_dims = x_t.dimensions();
    doubled_dims[0] = 2 * batch;
    Tensor<S, R> doubled(doubled_dims);
    std::copy(x_t.data(), x_t.data() + x_t.size(), doubled.data());
    std::copy(x_t.data(), x_t.data() + x_t.size(), doubled.data() + x_t.size());
    const Tensor<S, R> both = model_(std::as_const(doubled), t);
    if (both.dimension(0) != 2 * batch) {
      detail::throw_guidance("the batched model returned " + ddpm::detail::number_string(both.dimension(0)) +
                             " batch elements, but must return 2 x " + ddpm::detail::number_string(batch) +
                             " ([unconditional; conditional])");
    }
    if (rescale_ > 0.0 && detail::per_sample_size(both) < 2) {
      detail::throw_guidance("rescale is " + ddpm::detail::number_string(rescale_) +
                             ", but rescaling needs at least 2 values per batch element");
    }
    auto out_dims = both.dimensions();
    out_dims[0] = batch;
    Tensor<S, R> out(out_dims);
    const Eigen::Index half = both.size() / 2;
    std::copy(both.data() + half, both.data() + both.size(), out.data());  // the conditional half
    detail::guide_in_place(out.data(), both.data(), batch, detail::per_sample_size(out), scale_, rescale_);
    return out;
  }

 private:
  M model_;
  double scale_;
  double rescale_;
};

template <class M>
BatchedClassifierFreeGuidance(M&&, double, double = 0.0) -> BatchedClassifierFreeGuidance<M>;

/// The exact noise prediction for data drawn from a mixture of isotropic Gaussians in D dimensions:
///   x0 ~ sum_k w_k N(mu_k, s_k^2 I),   x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps
/// so x_t ~ sum_k w_k N(sqrt(alpha_bar) mu_k, v_k I) with v_k = alpha_bar s_k^2 + 1 - alpha_bar, and by
/// Tweedie's formula eps_hat = -sqrt(1 - alpha_bar) grad log p(x_t):       [docs/samplers.md, Eq. (S2)]
///   E[eps | x_t] = sqrt(1 - alpha_bar) * sum_k r_k(x_t) (x_t - sqrt(alpha_bar) mu_k) / v_k
///   r_k(x_t) = w_k N(x_t; sqrt(alpha_bar) mu_k, v_k I) / sum_j w_j N(x_t; sqrt(alpha_bar) mu_j, v_j I)
/// This is the minimiser of the DDPM training loss, i.e. a perfectly trained network: a sampler driven by
/// it turns N(0, I) into the mixture up to its discretisation error.
/// Each batch element of x_t (dimension 0) is one point; its other dimensions, flattened, are the D
/// coordinates. Arithmetic is in double (responsibilities by log-sum-exp), vectorised over the batch.
template <std::floating_point S>
class GaussianMixturePredictor {
 public:
  static constexpr Prediction prediction = Prediction::epsilon;

  /// weights: K positive values (normalised to sum 1); means: K points of equal dimension D >= 1;
  /// stddevs: K positive standard deviations. The schedule gives alpha_bar[t] for the training timesteps.
  /// Throws ddpm::invalid_argument if K = 0, the three lists differ in length, a mean differs in dimension,
  /// or a weight, coordinate or standard deviation is not finite (and positive, for weights and stddevs).
  GaussianMixturePredictor(const NoiseSchedule<S>& schedule, std::vector<double> weights,
                           std::vector<std::vector<double>> means, std::vector<double> stddevs)
      : alpha_bar_(schedule.alphas_cumprod_double()),
        weights_(std::move(weights)),
        means_(std::move(means)),
        stddevs_(std::move(stddevs)) {
    const std::string fn = "ddpm::GaussianMixturePredictor";
    const std::size_t K = weights_.size();
    if (K == 0) detail::throw_invalid_argument(fn + ": weights is empty, but must hold at least one component");
    if (means_.size() != K || stddevs_.size() != K) {
      detail::throw_invalid_argument(fn + ": means has " + ddpm::detail::number_string(means_.size()) + " and stddevs " +
                                     ddpm::detail::number_string(stddevs_.size()) + " entries, but both must have one per weight (" +
                                     ddpm::detail::number_string(K) + ")");
    }
    dim_ = static_cast<Eigen::Index>(means_[0].size());
    if (dim_ < 1) detail::throw_invalid_argument(fn + ": means[0] is empty, but must have dimension D >= 1");
    double total = 0.0;
    for (std::size_t k = 0; k < K; ++k) {
      if (!(std::isfinite(weights_[k]) && weights_[k] > 0.0)) {
        detail::throw_invalid_argument(fn + ": weights[" + ddpm::detail::number_string(k) + "] is " + ddpm::detail::number_string(weights_[k]) +
                                       ", but must be finite and > 0");
      }
      if (!(std::isfinite(stddevs_[k]) && stddevs_[k] > 0.0)) {
        detail::throw_invalid_argument(fn + ": stddevs[" + ddpm::detail::number_string(k) + "] is " + ddpm::detail::number_string(stddevs_[k]) +
                                       ", but must be finite and > 0");
      }
      if (static_cast<Eigen::Index>(means_[k].size()) != dim_) {
        detail::throw_invalid_argument(fn + ": means[" + ddpm::detail::number_string(k) + "] has dimension " +
                                       ddpm::detail::number_string(means_[k].size()) + ", but must have the dimension of means[0] (" +
                                       ddpm::detail::number_string(dim_) + ")");
      }
      for (double m : means_[k]) {
        if (!std::isfinite(m)) {
          detail::throw_invalid_argument(fn + ": means[" + ddpm::detail::number_string(k) + "] has a non-finite coordinate");
        }
      }
      total += weights_[k];
    }
    for (double& w : weights_) w /= total;
    mu_.resize(static_cast<Eigen::Index>(K), dim_);
    for (std::size_t k = 0; k < K; ++k) {
      for (Eigen::Index d = 0; d < dim_; ++d) mu_(static_cast<Eigen::Index>(k), d) = means_[k][static_cast<std::size_t>(d)];
    }
  }

  int num_components() const { return static_cast<int>(weights_.size()); }
  /// D, the number of coordinates of one point.
  Eigen::Index dimension() const { return dim_; }
  /// Normalised to sum 1.
  const std::vector<double>& weights() const { return weights_; }
  const std::vector<std::vector<double>>& means() const { return means_; }
  const std::vector<double>& stddevs() const { return stddevs_; }
  /// The number of training timesteps T of the schedule it was built with.
  int num_train_timesteps() const { return static_cast<int>(alpha_bar_.size()); }
  /// The former name of num_train_timesteps(), kept for one release.
  [[deprecated("use num_train_timesteps()")]] int num_steps() const { return num_train_timesteps(); }

  /// E[eps | x_t] at training timestep t, as a new tensor shaped like x_t.
  /// Throws ddpm::invalid_argument if t is outside [0, T), x_t is empty, or its per-element size is not D.
  template <DenseTensor X>
  plain_tensor_t<X> operator()(const X& x_t, int t) const {
    plain_tensor_t<X> out;
    predict(x_t, t, out);
    return out;
  }

  /// E[eps | x_t] at training timestep t, written into `out` (resized if a Tensor; a map must have the shape).
  template <DenseTensor X, MutableDenseTensor Out>
  void predict(const X& x_t, int t, Out&& out) const {
    const char* fn = "ddpm::GaussianMixturePredictor";
    if (t < 0 || t >= num_train_timesteps()) {
      detail::throw_invalid_argument(std::string(fn) + ": t is " + ddpm::detail::number_string(t) + ", but must be in [0, " +
                                     ddpm::detail::number_string(num_train_timesteps()) + ")");
    }
    predict_at(alpha_bar_[static_cast<std::size_t>(t)], x_t, out);
  }

  /// E[eps | x_t] at any noise level alpha_bar in [0, 1) (continuous time; Eq. (S2)).
  /// Throws ddpm::invalid_argument if alpha_bar is outside [0, 1), x_t is empty or its per-element size is not D.
  template <DenseTensor X, MutableDenseTensor Out>
  void predict_at(double alpha_bar, const X& x_t, Out&& out) const {
    static_assert(std::is_same_v<scalar_t<X>, S> && std::is_same_v<scalar_t<Out>, S>,
                  "ddpm::GaussianMixturePredictor: tensors must have the predictor's scalar type");
    const char* fn = "ddpm::GaussianMixturePredictor";
    if (!(alpha_bar >= 0.0 && alpha_bar < 1.0)) {
      detail::throw_invalid_argument(std::string(fn) + ": alpha_bar is " + ddpm::detail::number_string(alpha_bar) +
                                     ", but must be in [0, 1)");
    }
    check_points(fn, x_t);
    detail::prepare_output(fn, out, x_t);
    const Eigen::Index B = x_t.dimension(0);
    const int K = num_components();
    const double c = std::sqrt(alpha_bar), scale = std::sqrt(1.0 - alpha_bar);
    std::vector<double> inv_v(static_cast<std::size_t>(K)), log_prior(static_cast<std::size_t>(K));
    for (int k = 0; k < K; ++k) {
      const double s2 = stddevs_[static_cast<std::size_t>(k)] * stddevs_[static_cast<std::size_t>(k)];
      inv_v[static_cast<std::size_t>(k)] = 1.0 / (alpha_bar * s2 + (1.0 - alpha_bar));
      log_prior[static_cast<std::size_t>(k)] = std::log(weights_[static_cast<std::size_t>(k)]) +
                                               0.5 * static_cast<double>(dim_) * std::log(inv_v[static_cast<std::size_t>(k)]);
    }
    // Vectorised over chunks of points, one coordinate at a time: the work is B K D, small next to any
    // network, and the temporaries are a few cache-sized arrays reused across chunks.
    using RowMat = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    const Eigen::Map<const RowMat> xs(x_t.data(), B, dim_);
    Eigen::Map<RowMat> es(out.data(), B, dim_);
    constexpr Eigen::Index kChunk = 512;
    const Eigen::Index rows = std::min(B, kChunk);
    Eigen::ArrayXXd r(rows, K);
    Eigen::ArrayXd diff(rows), top(rows), total(rows), a(rows);
    for (Eigen::Index b0 = 0; b0 < B; b0 += kChunk) {
      const Eigen::Index n = std::min(kChunk, B - b0);
      auto rc = r.topRows(n);
      auto dc = diff.head(n);
      for (int k = 0; k < K; ++k) {
        rc.col(k).setConstant(log_prior[static_cast<std::size_t>(k)]);
        for (Eigen::Index d = 0; d < dim_; ++d) {
          dc = xs.col(d).segment(b0, n).template cast<double>().array() - c * mu_(k, d);
          rc.col(k) -= (0.5 * inv_v[static_cast<std::size_t>(k)]) * dc.square();
        }
      }
      top.head(n) = rc.rowwise().maxCoeff();
      rc = (rc.colwise() - top.head(n)).exp();
      total.head(n) = rc.rowwise().sum();
      // r_k / v_k with normalised r_k, so that eps = sqrt(1 - ab) (a x - c sum_k (r_k / v_k) mu_k)
      for (int k = 0; k < K; ++k) rc.col(k) *= inv_v[static_cast<std::size_t>(k)] / total.head(n);
      a.head(n) = rc.rowwise().sum();
      for (Eigen::Index d = 0; d < dim_; ++d) {
        // x_d is read before its output column is written, so out may be x_t itself
        dc = a.head(n) * xs.col(d).segment(b0, n).template cast<double>().array() -
             c * (rc.matrix() * mu_.col(d)).array();
        es.col(d).segment(b0, n) = (scale * dc).template cast<S>().matrix();
      }
    }
  }

  /// The posterior probability of each component given x_t, r_k(x_t) of Eq. (S2), as a B x K matrix;
  /// at alpha_bar = 1 (the default) for clean data. Throws as predict_at (alpha_bar must be in [0, 1]).
  template <DenseTensor X>
  Eigen::MatrixXd responsibilities(const X& x, double alpha_bar = 1.0) const {
    const char* fn = "ddpm::GaussianMixturePredictor::responsibilities";
    if (!(alpha_bar >= 0.0 && alpha_bar <= 1.0)) {
      detail::throw_invalid_argument(std::string(fn) + ": alpha_bar is " + ddpm::detail::number_string(alpha_bar) +
                                     ", but must be in [0, 1]");
    }
    check_points(fn, x);
    Eigen::ArrayXd inv_v(num_components());
    for (int k = 0; k < num_components(); ++k) {
      inv_v[k] = 1.0 / (alpha_bar * stddevs_[k] * stddevs_[k] + (1.0 - alpha_bar));
    }
    return responsibilities_of(points(x), std::sqrt(alpha_bar), inv_v);
  }

  /// The most probable component of each clean point (the argmax of responsibilities(x)).
  template <DenseTensor X>
  std::vector<int> classify(const X& x) const {
    const Eigen::MatrixXd r = responsibilities(x);
    std::vector<int> labels(static_cast<std::size_t>(r.rows()));
    for (Eigen::Index b = 0; b < r.rows(); ++b) {
      Eigen::Index k = 0;
      r.row(b).maxCoeff(&k);
      labels[static_cast<std::size_t>(b)] = static_cast<int>(k);
    }
    return labels;
  }

 private:
  template <DenseTensor X>
  void check_points(const char* fn, const X& x) const {
    detail::require_nonempty(fn, "x_t", x);
    if (detail::per_sample_size(x) != dim_) {
      detail::throw_invalid_argument(std::string(fn) + ": x_t has shape " + detail::shape_string(x) + ", i.e. " +
                                     ddpm::detail::number_string(detail::per_sample_size(x)) +
                                     " coordinates per batch element, but the mixture has dimension " +
                                     ddpm::detail::number_string(dim_));
    }
  }

  template <DenseTensor X>
  Eigen::MatrixXd points(const X& x) const {
    using RowMat = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    return Eigen::Map<const RowMat>(x.data(), x.dimension(0), dim_).template cast<double>();
  }

  // log r_k = log w_k - D/2 log v_k - |x - c mu_k|^2 / (2 v_k), normalised by log-sum-exp per row.
  Eigen::MatrixXd responsibilities_of(const Eigen::MatrixXd& pts, double c, const Eigen::ArrayXd& inv_v) const {
    const Eigen::Index B = pts.rows();
    const int K = num_components();
    Eigen::MatrixXd logits(B, K);
    for (int k = 0; k < K; ++k) {
      const Eigen::RowVectorXd center = c * mu_.row(k);
      logits.col(k) = ((pts.rowwise() - center).rowwise().squaredNorm().array() * (-0.5 * inv_v[k]) +
                       (std::log(weights_[static_cast<std::size_t>(k)]) + 0.5 * static_cast<double>(dim_) *
                                                                              std::log(inv_v[k])))
                          .matrix();
    }
    const Eigen::VectorXd top = logits.rowwise().maxCoeff();
    Eigen::MatrixXd r = (logits.colwise() - top).array().exp().matrix();
    const Eigen::VectorXd total = r.rowwise().sum();
    r.array().colwise() /= total.array();
    return r;
  }

  std::vector<double> alpha_bar_;
  std::vector<double> weights_;
  std::vector<std::vector<double>> means_;
  std::vector<double> stddevs_;
  Eigen::Index dim_ = 0;
  Eigen::MatrixXd mu_;  // K x D
};

}  // namespace ddpm
