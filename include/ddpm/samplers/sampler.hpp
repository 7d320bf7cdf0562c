// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// What a sampler is, for the user who calls one: the Sampler concept with the contract of its members
// (timesteps, reset, step), and the vocabulary of their arguments and options: what a step takes as noise
// (a tensor, a noise source or no_noise), how the predicted x0 is bounded (Clipping), and where the
// sigma-space samplers end (FinalSigma). The sampler classes are in ddpm/samplers/<name>.hpp; the fused
// kernel they share is an internal (ddpm/samplers/detail/).                  [docs/samplers.md, Sec. 1]

#include <concepts>
#include <type_traits>
#include <vector>

#include "ddpm/predictor.hpp"
#include "ddpm/random.hpp"
#include "ddpm/tensor.hpp"

namespace ddpm {

/// The noise argument of a step that must not add noise (a deterministic sampler, or the last DDPM step).
/// A step that needs noise and gets no_noise throws ddpm::invalid_argument.
struct NoNoise {};
inline constexpr NoNoise no_noise{};

/// What a step accepts as noise for an x of scalar S and rank R: a tensor of x's shape (used as is), a
/// noise source (NoiseSourceFor<S, R> of random.hpp: callable as `source(Tensor<S, R>&)`, filling it with
/// independent N(0, 1) values and advancing, e.g. ddpm::NoiseSource), or no_noise. A step calls a source
/// exactly once when it adds noise and never otherwise.
template <class N, class S, int R>
concept NoiseArgument = std::same_as<std::remove_cvref_t<N>, NoNoise> ||
                        (!DenseTensor<std::remove_cvref_t<N>> && NoiseSourceFor<std::remove_reference_t<N>, S, R>) ||
                        (DenseTensor<std::remove_cvref_t<N>> && std::same_as<scalar_t<std::remove_cvref_t<N>>, S> &&
                         rank_v<std::remove_cvref_t<N>> == R);

/// How a predicted x0 is bounded before a sampler uses it (diffusers' `clip_sample`, `clip_sample_range`,
/// `thresholding`, `dynamic_thresholding_ratio`, `sample_max_value`).          [docs/samplers.md, Eq. (S3)]
///   clip:              x0 = clamp(x0, -range, range)
///   dynamic_threshold: per batch element, s = clamp(quantile(|x0|, ratio), 1, max_value),
///                      x0 = clamp(x0, -s, s) / s        (Saharia et al. 2022, "Imagen", Sec. 2.3)
/// The quantile interpolates linearly between order statistics, as torch.quantile does.
struct Clipping {
  enum class Mode { none, clip, dynamic_threshold };
  Mode mode = Mode::none;
  double range = 1.0;
  double ratio = 0.995;
  double max_value = 1.0;

  static Clipping none() { return {}; }
  static Clipping clip(double range = 1.0) { return {Mode::clip, range, 0.995, 1.0}; }
  static Clipping dynamic_threshold(double ratio = 0.995, double max_value = 1.0) {
    return {Mode::dynamic_threshold, 1.0, ratio, max_value};
  }
};

/// Where the sigma-space samplers (DPM-Solver++, Euler) end: at sigma = 0 (x0 itself; diffusers' default
/// "zero") or at sigma[0], the noise level of training timestep 0 ("sigma_min").
enum class FinalSigma { zero, sigma_min };

/// A sampler of scalar S for tensors of rank R: what sample() runs, and what every sampler class of this
/// library (DDPMSampler, DDIMSampler, DPMSolverMultistepSampler, EulerSampler, EulerAncestralSampler) is.
/// The contract of its members:                                           [docs/samplers.md, Sec. 1, (S15)]
///
///   const std::vector<int>& timesteps() const
///     The training timesteps of the run (0-based, in [0, T)), in the order they are visited: the model is
///     called with timesteps()[i] before step i. Its size is N, the number of steps.
///
///   void reset()
///     Forgets what a previous run left (a multistep sampler's history); a no-op for the others.
///     sample() calls it before a run.
///
///   void step(int i, const M& model_output, X&& x, N&& noise, X0&& x0_out, Prediction kind = epsilon)
///     Step i in place: x (a Tensor or a TensorMap) holds x at timesteps()[i] and becomes the sample at the
///     next timestep (after the last step, the final sample); x0_out receives the predicted, bounded x0.
///     model_output is what the model returned for (x, timesteps()[i]), of the given kind, shaped like x
///     (or, for a learned variance, with twice x's channels in dimension 1); noise is a NoiseArgument.
///     x0_out may be a Tensor (resized) or a map of x's shape; it must not alias x or the output.
///     Throws ddpm::invalid_argument if i is outside [0, N), the output or noise does not match x, or the
///     step needs noise and gets no_noise (and as the sampler documents).
///
///   void step(int i, const M& model_output, X&& x, N&& noise, Prediction kind = epsilon)
///     The same step without the predicted x0 (diffusers' `scheduler.step(...)` used for its prev_sample
///     only): one pass over x, the output and the noise, x0 never stored. The fastest form.
///
/// The library's samplers also have `prev_sample(i, model_output, x, noise, kind)` (a new tensor, x left
/// unchanged), `schedule()`, `options()`, and the number of steps N (see docs/samplers.md, Sec. 1).
/// Any class with these members works with sample().
template <class Sm, class S, int R>
concept Sampler = requires(Sm& sampler, const Tensor<S, R>& output, Tensor<S, R>& x, Tensor<S, R>& x0,
                           Prediction kind) {
  { sampler.timesteps() } -> std::convertible_to<const std::vector<int>&>;
  sampler.reset();
  sampler.step(0, output, x, no_noise, x0, kind);
  sampler.step(0, output, x, no_noise, kind);
};

}  // namespace ddpm
