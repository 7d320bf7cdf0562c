// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// The reverse loop: from x_T down to x0 with any sampler and any model, calling the model with the
// training timestep of each step and stepping x in place, so that the only tensor a step allocates is the
// one the model returns.                                                    [docs/samplers.md, Eq. (S15)]

#include <concepts>
#include <type_traits>
#include <utility>
#include <vector>

#include "ddpm/error.hpp"
#include "ddpm/predictor.hpp"
#include "ddpm/samplers/sampler.hpp"
#include "ddpm/tensor.hpp"

namespace ddpm {

/// What a sample() callback returns to go on or to stop the loop early (a callback may also return void).
enum class LoopControl { proceed, stop };

/// The former name of the Sampler concept (ddpm/samplers/sampler.hpp), kept for one release.
template <class Sm, class S, int R>
concept SamplerFor = Sampler<Sm, S, R>;

/// A sample() callback: called after each step as callback(i, t, x, x0) with the step index i, the
/// training timestep t the model saw, the sample x after the step, and the x0 predicted from x at t; it
/// returns void or LoopControl (LoopControl::stop ends the loop after this step).
template <class C, class S, int R>
concept SampleCallback = std::invocable<C&, int, int, const Tensor<S, R>&, const Tensor<S, R>&> &&
                         (std::is_void_v<std::invoke_result_t<C&, int, int, const Tensor<S, R>&, const Tensor<S, R>&>> ||
                          std::same_as<std::invoke_result_t<C&, int, int, const Tensor<S, R>&, const Tensor<S, R>&>,
                                       LoopControl>);

namespace detail {

/// The loop of sample(); without a callback (kCallback false) the steps do not store the predicted x0.
template <bool kCallback, class S, int R, class Sm, class Model, class Noise, class Callback>
Tensor<S, R> sample_loop(Sm& sampler, Model& model, Tensor<S, R> x_T, Noise& noise, Callback& callback) {
  static_assert(!DenseTensor<std::remove_cvref_t<Noise>>,
                "ddpm::sample: noise must be a noise source (drawn at each step) or ddpm::no_noise, not a tensor "
                "(one tensor would repeat the same noise at every step)");
  static_assert(NoiseArgument<Noise, S, R>, "ddpm::sample: noise must be a noise source or ddpm::no_noise");
  require_nonempty("ddpm::sample", "x_T", x_T);
  const Prediction kind = prediction_of(model);
  Tensor<S, R> x = std::move(x_T);
  Tensor<S, R> x0;
  if constexpr (kCallback) x0.resize(x.dimensions());
  sampler.reset();
  const std::vector<int>& timesteps = sampler.timesteps();
  const int n = static_cast<int>(timesteps.size());
  for (int i = 0; i < n; ++i) {
    const int t = timesteps[static_cast<std::size_t>(i)];
    const Tensor<S, R> out = model(std::as_const(x), t);
    if constexpr (!kCallback) {
      sampler.step(i, out, x, noise, kind);
    } else {
      sampler.step(i, out, x, noise, x0, kind);
      using Result = std::invoke_result_t<Callback&, int, int, const Tensor<S, R>&, const Tensor<S, R>&>;
      if constexpr (std::is_void_v<Result>) {
        callback(i, t, std::as_const(x), std::as_const(x0));
      } else {
        if (callback(i, t, std::as_const(x), std::as_const(x0)) == LoopControl::stop) break;
      }
    }
  }
  return x;
}

}  // namespace detail

/// Runs the reverse process:                                                 [docs/samplers.md, Eq. (S15)]
///   sampler.reset();  for i = 0..N-1:  out = model(x, timesteps[i]);  sampler.step(i, out, x, noise, x0)
/// starting from x = x_T (for every sampler of this library a standard-normal draw: samplers work on the
/// variance-preserving x_t, also the sigma-space ones) and returning x after the last step (the sample), or
/// after the step at which the callback returned LoopControl::stop.
/// The model's declared kind (prediction_of) tells the sampler what the output is. noise is a noise
/// source, drawn once per noisy step, or no_noise for a deterministic sampler. Besides what the model
/// returns, the loop allocates only once per run (the predicted-x0 buffer the callback sees; a sampler's
/// own noise and history buffers on first use).
/// Throws ddpm::invalid_argument if x_T is empty, or as the model or the sampler's step throws (a model
/// output whose shape does not match x, no_noise for a sampler that needs noise).
template <std::floating_point S, int R, class Sm, class Model, class Noise, class Callback>
  requires Sampler<Sm, S, R> && Predictor<std::remove_reference_t<Model>, S, R> &&
           SampleCallback<std::remove_reference_t<Callback>, S, R>
Tensor<S, R> sample(Sm& sampler, Model&& model, Tensor<S, R> x_T, Noise&& noise, Callback&& callback) {
  return detail::sample_loop<true>(sampler, model, std::move(x_T), noise, callback);
}

/// sample() without a callback: the same samples, and the steps never store a predicted x0.
template <std::floating_point S, int R, class Sm, class Model, class Noise>
  requires Sampler<Sm, S, R> && Predictor<std::remove_reference_t<Model>, S, R>
Tensor<S, R> sample(Sm& sampler, Model&& model, Tensor<S, R> x_T, Noise&& noise) {
  auto none = [](int, int, const Tensor<S, R>&, const Tensor<S, R>&) {};
  return detail::sample_loop<false>(sampler, model, std::move(x_T), noise, none);
}

}  // namespace ddpm
