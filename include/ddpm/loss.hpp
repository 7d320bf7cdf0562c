// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// The training objective of Step 1: training pairs (t, eps, x_t and the regression target), the simple
// loss with its exact gradient with respect to the model output, and per-sample loss weightings
// (Min-SNR-gamma, P2).                                              [docs/math.md, Eqs. (20)-(22)]
// The variational bound and the hybrid loss of improved DDPM are in vlb.hpp; timestep samplers in
// timestep_sampler.hpp.

#include <algorithm>
#include <cmath>
#include <concepts>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include <Eigen/Core>

#include "ddpm/detail/per_timestep.hpp"
#include "ddpm/forward.hpp"
#include "ddpm/predictor.hpp"
#include "ddpm/random.hpp"
#include "ddpm/schedule.hpp"
#include "ddpm/tensor.hpp"
#include "ddpm/timestep_sampler.hpp"

namespace ddpm {

/// One batch of training pairs: the timesteps and importance weights from a TimestepSampler, the noise
/// eps, the noised input x_t = sqrt(alpha_bar[t]) x0 + sqrt(1 - alpha_bar[t]) eps and the regression target
/// of the model's prediction kind (eps, x0 or v).
template <std::floating_point S, int R = 4>
struct TrainingBatch {
  std::vector<int> t;
  Eigen::Array<S, Eigen::Dynamic, 1> weights;
  Tensor<S, R> eps, x_t, target;
};

/// The regression target of a prediction kind, written into `out`.               [docs/math.md, Eq. (20)]
///   epsilon: eps;   sample: x0;   velocity: v = sqrt(alpha_bar[t]) eps - sqrt(1 - alpha_bar[t]) x0 (Eq. (14))
/// Throws ddpm::invalid_argument if x0 is empty, eps (or a map out) differs in shape from x0, or t does not
/// hold one timestep in [0, T) per batch element.
template <std::floating_point S, DenseTensor X0, DenseTensor E, MutableDenseTensor Out>
void training_target(const NoiseSchedule<S>& schedule, const X0& x0, std::span<const int> t, const E& eps,
                     Prediction kind, Out&& out) {
  constexpr const char* fn = "ddpm::training_target";
  detail::check_timesteps(fn, schedule, t, x0.dimension(0));
  switch (kind) {
    case Prediction::epsilon:
      detail::combine(fn, "x0", x0, detail::Coefficient<S>(S(0)), "eps", eps, detail::Coefficient<S>(S(1)), out);
      return;
    case Prediction::sample:
      detail::combine(fn, "x0", x0, detail::Coefficient<S>(S(1)), "eps", eps, detail::Coefficient<S>(S(0)), out);
      return;
    case Prediction::velocity: {
      const std::vector<double>& ab = schedule.alphas_cumprod_double();
      const detail::Coefficient<S> a(ab, t, [](double v) { return -std::sqrt(1.0 - v); });
      const detail::Coefficient<S> c(schedule.sqrt_alphas_cumprod(), t);
      detail::combine(fn, "x0", x0, a, "eps", eps, c, out);
      return;
    }
  }
  detail::throw_invalid_argument(std::string(fn) + ": kind is " + ddpm::detail::number_string(static_cast<int>(kind)) +
                                 ", but must be a Prediction");
}

template <std::floating_point S, DenseTensor X0, DenseTensor E>
plain_tensor_t<X0> training_target(const NoiseSchedule<S>& schedule, const X0& x0, std::span<const int> t,
                                   const E& eps, Prediction kind) {
  plain_tensor_t<X0> out;
  training_target(schedule, x0, t, eps, kind, out);
  return out;
}

/// Draws a batch of training pairs into `batch` (its buffers are reused: no allocation once they have the
/// shape of x0).                                                                  [docs/training.md]
/// Order of the draws, for reproducibility: first x0.dimension(0) uniforms from `noise` through the
/// sampler (one timestep each), then x0.size() normals for eps (in memory order). Then
///   x_t = q_sample(schedule, x0, t, eps),  target = training_target(schedule, x0, t, eps, kind)
/// and weights are the sampler's importance weights, cast to S.
/// Throws ddpm::invalid_argument if x0 is empty or the sampler's num_steps() differs from T.
template <std::floating_point S, DenseTensor X0, TimestepSampler TS>
void make_training_batch(const NoiseSchedule<S>& schedule, const X0& x0, TS& sampler, NoiseSource& noise,
                         Prediction kind, TrainingBatch<S, rank_v<X0>>& batch) {
  constexpr const char* fn = "ddpm::make_training_batch";
  static_assert(std::is_same_v<scalar_t<X0>, S>, "ddpm: x0 must have the schedule's scalar type");
  detail::require_nonempty(fn, "x0", x0);
  if (sampler.num_steps() != schedule.num_train_timesteps()) {
    detail::throw_invalid_argument(std::string(fn) + ": the sampler has num_steps() " +
                                   ddpm::detail::number_string(sampler.num_steps()) + ", but must have the schedule's T = " +
                                   ddpm::detail::number_string(schedule.num_train_timesteps()));
  }
  const auto n = static_cast<std::size_t>(x0.dimension(0));
  batch.t.resize(n);
  thread_local std::vector<double> weights;  // the sampler writes double weights; reused across calls
  weights.resize(n);
  sampler.sample(noise, std::span<int>(batch.t), std::span<double>(weights));
  batch.weights.resize(static_cast<Eigen::Index>(n));
  for (std::size_t b = 0; b < n; ++b) batch.weights[static_cast<Eigen::Index>(b)] = static_cast<S>(weights[b]);
  detail::prepare_output(fn, batch.eps, x0);
  noise(batch.eps);
  const std::span<const int> t(batch.t);
  q_sample(schedule, x0, t, batch.eps, batch.x_t);
  training_target(schedule, x0, t, batch.eps, kind, batch.target);
}

template <std::floating_point S, DenseTensor X0, TimestepSampler TS>
TrainingBatch<S, rank_v<X0>> make_training_batch(const NoiseSchedule<S>& schedule, const X0& x0, TS& sampler,
                                                 NoiseSource& noise, Prediction kind = Prediction::epsilon) {
  TrainingBatch<S, rank_v<X0>> batch;
  make_training_batch(schedule, x0, sampler, noise, kind, batch);
  return batch;
}

/// The simple loss of a batch: its scalar value and the per-sample terms it averages.
template <std::floating_point S>
struct LossValue {
  S loss = S(0);                                 ///< mean over the batch of weight[b] * per_sample[b]
  Eigen::Array<S, Eigen::Dynamic, 1> per_sample; ///< mean over C, H, W of (target - output)^2, unweighted
};

namespace detail {

inline constexpr Eigen::Index kLossChunk = 2048;  // elements per flush of the fused loss's float accumulators

template <class S, DenseTensor O, DenseTensor Tg>
void check_loss_arguments(const char* fn, const O& output, const Tg& target, std::span<const S> weights) {
  static_assert(std::is_same_v<scalar_t<O>, S> && std::is_same_v<scalar_t<Tg>, S>,
                "ddpm: output, target and weights must have the same scalar type");
  require_nonempty(fn, "output", output);
  require_same_shape(fn, "output", output, "target", target);
  if (!weights.empty() && static_cast<Eigen::Index>(weights.size()) != output.dimension(0)) {
    throw_invalid_argument(std::string(fn) + ": weights holds " + ddpm::detail::number_string(weights.size()) +
                           " values, but must be empty or hold one per batch element (" +
                           ddpm::detail::number_string(output.dimension(0)) + ")");
  }
}

/// Sum over [0, n) of (o - t)^2 and, when g is not null, g = scale * (o - t), in one pass: d = o - t is
/// formed once per element, squared into 4 independent packet accumulators (16 lanes each for float with
/// AVX-512) and scaled into g. The accumulators are flushed into a double every 2048 elements, so float
/// sums never run over more than 2048 / 64 terms per lane.
template <class S>
double squared_error_sum(const S* o, const S* t, S* g, S scale, Eigen::Index n) {
  constexpr int kLanes = 64 / static_cast<int>(sizeof(S));  // one 512-bit register of S
  using Block = Eigen::Array<S, kLanes, 1>;
  using In = Eigen::Map<const Block, Eigen::Unaligned>;
  using Out = Eigen::Map<Block, Eigen::Unaligned>;
  constexpr Eigen::Index kStep = 4 * kLanes;
  double sum = 0.0;
  Eigen::Index i = 0;
  for (Eigen::Index begin = 0; begin + kStep <= n; begin += kLossChunk) {
    const Eigen::Index end = std::min(begin + kLossChunk, n - n % kStep);
    Block a0 = Block::Zero(), a1 = Block::Zero(), a2 = Block::Zero(), a3 = Block::Zero();
    for (i = begin; i < end; i += kStep) {
      const Block d0 = In(o + i) - In(t + i);
      const Block d1 = In(o + i + kLanes) - In(t + i + kLanes);
      const Block d2 = In(o + i + 2 * kLanes) - In(t + i + 2 * kLanes);
      const Block d3 = In(o + i + 3 * kLanes) - In(t + i + 3 * kLanes);
      a0 += d0 * d0;
      a1 += d1 * d1;
      a2 += d2 * d2;
      a3 += d3 * d3;
      if (g != nullptr) {
        Out(g + i) = scale * d0;
        Out(g + i + kLanes) = scale * d1;
        Out(g + i + 2 * kLanes) = scale * d2;
        Out(g + i + 3 * kLanes) = scale * d3;
      }
    }
    sum += static_cast<double>(((a0 + a1) + (a2 + a3)).sum());
  }
  for (i = n - n % kStep; i < n; ++i) {  // the tail
    const S d = o[i] - t[i];
    sum += static_cast<double>(d * d);
    if (g != nullptr) g[i] = scale * d;
  }
  return sum;
}

/// The fused loss: per_sample[b] = mean_i (o - t)^2, loss = mean_b w[b] per_sample[b], and (when grad is
/// not null) grad = 2 w[b] (o - t) / (N * per_sample_size). Batch elements run on OpenMP threads when
/// built with it and large enough; each element's sum is computed the same way either way.
template <class S>
S fused_simple_loss(const S* o, const S* t, std::span<const S> w, S* grad, Eigen::Index batch,
                    Eigen::Index per_sample, Eigen::Array<S, Eigen::Dynamic, 1>& per) {
  per.resize(batch);
  const double inv_n = 1.0 / static_cast<double>(batch);
  const double inv_d = 1.0 / static_cast<double>(per_sample);
  const auto weight = [&](Eigen::Index b) { return w.empty() ? 1.0 : static_cast<double>(w[static_cast<std::size_t>(b)]); };
  const auto run = [&](Eigen::Index b) {
    const Eigen::Index off = b * per_sample;
    const S scale = static_cast<S>(2.0 * weight(b) * inv_n * inv_d);
    per[b] = static_cast<S>(squared_error_sum(o + off, t + off, grad == nullptr ? nullptr : grad + off, scale, per_sample) * inv_d);
  };
#ifdef _OPENMP
  if (batch > 1 && batch * per_sample >= 2 * kParallelGrain) {
#pragma omp parallel for schedule(static)
    for (Eigen::Index b = 0; b < batch; ++b) run(b);
  } else {
    for (Eigen::Index b = 0; b < batch; ++b) run(b);
  }
#else
  for (Eigen::Index b = 0; b < batch; ++b) run(b);
#endif
  double loss = 0.0;
  for (Eigen::Index b = 0; b < batch; ++b) loss += weight(b) * static_cast<double>(per[b]);
  return static_cast<S>(loss * inv_n);
}

}  // namespace detail

/// The simple loss (Ho et al. 2020, Eq. 14; improved-diffusion's MSE) with optional per-sample weights,
/// and its exact gradient with respect to the model output, in one fused pass.   [docs/math.md, Eq. (21)]
///   per_sample[b] = (1 / D) sum_i (target[b,i] - output[b,i])^2,   D = C * H * W (elements per sample)
///   loss = (1 / N) sum_b w[b] per_sample[b]          (w = 1 when weights is empty)
///   d loss / d output[b,i] = 2 w[b] (output[b,i] - target[b,i]) / (N D)   -> grad
/// Sums are accumulated in double from packet partial sums over at most 2048 elements. grad may alias output or
/// target (a Tensor is resized, a map must have output's shape). per_sample is resized to N.
/// Throws ddpm::invalid_argument if output is empty, target or a map grad differs in shape from output,
/// or weights is neither empty nor one value per batch element.
template <DenseTensor O, DenseTensor Tg, MutableDenseTensor G>
scalar_t<O> simple_loss_and_gradient(const O& output, const Tg& target, std::span<const scalar_t<O>> weights,
                                     G&& grad, Eigen::Array<scalar_t<O>, Eigen::Dynamic, 1>& per_sample) {
  using S = scalar_t<O>;
  constexpr const char* fn = "ddpm::simple_loss_and_gradient";
  static_assert(std::is_same_v<scalar_t<G>, S>, "ddpm: grad must have output's scalar type");
  detail::check_loss_arguments<S>(fn, output, target, weights);
  detail::prepare_output(fn, grad, output);
  return detail::fused_simple_loss<S>(output.data(), target.data(), weights, grad.data(), output.dimension(0),
                                      detail::per_sample_size(output), per_sample);
}

/// The same, returning the loss and per-sample terms.
template <DenseTensor O, DenseTensor Tg, MutableDenseTensor G>
LossValue<scalar_t<O>> simple_loss_and_gradient(const O& output, const Tg& target,
                                                std::span<const scalar_t<O>> weights, G&& grad) {
  LossValue<scalar_t<O>> r;
  r.loss = simple_loss_and_gradient(output, target, weights, grad, r.per_sample);
  return r;
}

/// The simple loss alone (no gradient), as above.                               [docs/math.md, Eq. (21)]
template <DenseTensor O, DenseTensor Tg>
LossValue<scalar_t<O>> simple_loss(const O& output, const Tg& target, std::span<const scalar_t<O>> weights = {}) {
  using S = scalar_t<O>;
  constexpr const char* fn = "ddpm::simple_loss";
  detail::check_loss_arguments<S>(fn, output, target, weights);
  LossValue<S> r;
  r.loss = detail::fused_simple_loss<S>(output.data(), target.data(), weights, nullptr, output.dimension(0),
                                        detail::per_sample_size(output), r.per_sample);
  return r;
}

/// A span over an Eigen array of per-sample weights (for the loss functions' `weights`).
template <class S>
std::span<const S> weights_span(const Eigen::Array<S, Eigen::Dynamic, 1>& w) {
  return std::span<const S>(w.data(), static_cast<std::size_t>(w.size()));
}

/// Min-SNR-gamma loss weights (Hang et al. 2023), one per timestep of t.           [docs/math.md, Eq. (22)]
///   epsilon: min(SNR, gamma) / SNR;   sample: min(SNR, gamma);   velocity: min(SNR, gamma) / (SNR + 1)
/// with SNR = alpha_bar[t] / (1 - alpha_bar[t]) in double. At a zero-terminal-SNR step (SNR = 0) the epsilon
/// weight is 0/0; it is 1 there, the limit as SNR -> 0 and the value the diffusers-derived training
/// scripts assign (`mse_loss_weights[snr == 0] = 1.0`); sample and velocity weights are 0 there, as the
/// formula gives.
/// Throws ddpm::invalid_argument if gamma is not finite and > 0, or a t is outside [0, T).
template <std::floating_point S>
Eigen::Array<S, Eigen::Dynamic, 1> min_snr_weights(const NoiseSchedule<S>& schedule, std::span<const int> t,
                                                   double gamma, Prediction kind = Prediction::epsilon) {
  constexpr const char* fn = "ddpm::min_snr_weights";
  if (!(std::isfinite(gamma) && gamma > 0.0)) {
    detail::throw_invalid_argument(std::string(fn) + ": gamma is " + ddpm::detail::number_string(gamma) + ", but must be finite and > 0");
  }
  detail::check_timesteps(fn, schedule, t, static_cast<Eigen::Index>(t.size()));
  const std::vector<double>& ab = schedule.alphas_cumprod_double();
  Eigen::Array<S, Eigen::Dynamic, 1> w(static_cast<Eigen::Index>(t.size()));
  for (std::size_t b = 0; b < t.size(); ++b) {
    const double a = ab[static_cast<std::size_t>(t[b])];
    const double snr = a / (1.0 - a);
    const double m = std::min(snr, gamma);
    double v = 0.0;
    switch (kind) {
      case Prediction::epsilon: v = snr > 0.0 ? m / snr : 1.0; break;
      case Prediction::sample: v = m; break;
      case Prediction::velocity: v = m / (snr + 1.0); break;
    }
    w[static_cast<Eigen::Index>(b)] = static_cast<S>(v);
  }
  return w;
}

/// P2 loss weights (Choi et al. 2022, "Perception Prioritized Training of Diffusion Models"), as the
/// official code computes them: w = 1 / (k + SNR)^gamma with SNR = alpha_bar / (1 - alpha_bar) in double
/// (gamma = 0 gives 1; the paper uses k = 1, gamma = 0.5 or 1).                   [docs/math.md, Eq. (22)]
/// Throws ddpm::invalid_argument if k is not finite and > 0, gamma is not finite and >= 0, or a t is
/// outside [0, T).
template <std::floating_point S>
Eigen::Array<S, Eigen::Dynamic, 1> p2_weights(const NoiseSchedule<S>& schedule, std::span<const int> t, double k = 1.0,
                                              double gamma = 1.0) {
  constexpr const char* fn = "ddpm::p2_weights";
  if (!(std::isfinite(k) && k > 0.0)) {
    detail::throw_invalid_argument(std::string(fn) + ": k is " + ddpm::detail::number_string(k) + ", but must be finite and > 0");
  }
  if (!(std::isfinite(gamma) && gamma >= 0.0)) {
    detail::throw_invalid_argument(std::string(fn) + ": gamma is " + ddpm::detail::number_string(gamma) + ", but must be finite and >= 0");
  }
  detail::check_timesteps(fn, schedule, t, static_cast<Eigen::Index>(t.size()));
  const std::vector<double>& ab = schedule.alphas_cumprod_double();
  Eigen::Array<S, Eigen::Dynamic, 1> w(static_cast<Eigen::Index>(t.size()));
  for (std::size_t b = 0; b < t.size(); ++b) {
    const double a = ab[static_cast<std::size_t>(t[b])];
    w[static_cast<Eigen::Index>(b)] = static_cast<S>(1.0 / std::pow(k + a / (1.0 - a), gamma));
  }
  return w;
}

}  // namespace ddpm
