// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// Internal: what the samplers that call the model twice per noise interval share (Heun, DPM2, DPM2
// ancestral, DPM++ 2S ancestral): the list of stages, one per model call, so that each model call is one
// step() call as in diffusers' HeunDiscreteScheduler / KDPM2DiscreteScheduler; the nearest training timestep
// of a noise level between the grid's sigmas; and the in-order check of a run whose stages carry state.
//                                                                       [docs/samplers.md, Sec. 5]

#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include "ddpm/error.hpp"
#include "ddpm/samplers/grid.hpp"
#include "ddpm/schedule.hpp"
#include "ddpm/tensor.hpp"
#include "ddpm/timesteps.hpp"

namespace ddpm::detail {

/// One model call of a two-stage sampler: the noise interval k (from sigmas[k] to sigmas[k + 1]) and
/// whether it is the interval's second model call; sigma is the noise level the model sees.
struct Stage {
  int interval = 0;
  bool second = false;
  double sigma = 0.0;
};

/// The training timestep the model sees at noise level sigma: `fallback` where sigma is a grid sigma
/// (or T < 2), else round(sigma_to_timestep(...)), as make_grid does for a sigma ramp.
inline int nearest_timestep(const std::vector<double>& table, double sigma, int fallback, bool on_grid) {
  if (on_grid || table.size() < 2) return fallback;
  return static_cast<int>(std::nearbyint(sigma_to_timestep(table, sigma)));
}

/// Checks that step i of a stateful run follows the previous one (step 0 starts a new run) and that x has
/// the shape the run began with (`elements` values kept from the previous stage).
template <DenseTensor X>
void check_in_order(const char* fn, int i, int next_step, const X& x, std::size_t elements) {
  if (i != 0 && i != next_step) {
    throw_invalid_argument(std::string(fn) + ": step index i is " + ddpm::detail::number_string(i) + ", but must be " +
                           ddpm::detail::number_string(next_step) +
                           " (this sampler keeps state between its steps; step 0 or reset() starts a new run)");
  }
  if (i != 0 && static_cast<std::size_t>(x.size()) != elements) {
    throw_invalid_argument(std::string(fn) + ": x has shape " + shape_string(x) +
                           ", but the run began with another shape (" + ddpm::detail::number_string(elements) +
                           " elements); start a new run with step 0");
  }
}

/// Checks the churn options of Karras et al.'s Algorithm 2 (k-diffusion's s_churn, s_tmin, s_tmax, s_noise).
inline void check_churn(const char* fn, double s_churn, double s_tmin, double s_tmax, double s_noise) {
  const std::string f = fn;
  if (!(std::isfinite(s_churn) && s_churn >= 0.0)) {
    throw_invalid_argument(f + ": s_churn is " + ddpm::detail::number_string(s_churn) + ", but must be finite and >= 0");
  }
  if (!(std::isfinite(s_noise) && s_noise >= 0.0)) {
    throw_invalid_argument(f + ": s_noise is " + ddpm::detail::number_string(s_noise) + ", but must be finite and >= 0");
  }
  if (std::isnan(s_tmin) || std::isnan(s_tmax) || s_tmin > s_tmax) {
    throw_invalid_argument(f + ": s_tmin is " + ddpm::detail::number_string(s_tmin) + " and s_tmax " + ddpm::detail::number_string(s_tmax) +
                           ", but they must be numbers with s_tmin <= s_tmax");
  }
}

/// Checks k-diffusion's eta and s_noise of an ancestral sampler.
inline void check_ancestral(const char* fn, double eta, double s_noise) {
  const std::string f = fn;
  if (!(std::isfinite(eta) && eta >= 0.0)) {
    throw_invalid_argument(f + ": eta is " + ddpm::detail::number_string(eta) + ", but must be finite and >= 0");
  }
  if (!(std::isfinite(s_noise) && s_noise >= 0.0)) {
    throw_invalid_argument(f + ": s_noise is " + ddpm::detail::number_string(s_noise) + ", but must be finite and >= 0");
  }
}

/// k-diffusion's get_ancestral_step: the noise level sigma_down to step to deterministically and the
/// standard deviation sigma_up of the fresh noise, sigma_down^2 + sigma_up^2 = sigma_to^2:
///   sigma_up = min(sigma_to, eta sqrt(sigma_to^2 (sigma_from^2 - sigma_to^2) / sigma_from^2)),
///   sigma_down = sqrt(sigma_to^2 - sigma_up^2);  eta = 0 gives (sigma_to, 0).   [docs/samplers.md, (S20)]
struct AncestralStep {
  double down, up;
};
inline AncestralStep ancestral_step(double sigma_from, double sigma_to, double eta) {
  if (eta == 0.0) return {sigma_to, 0.0};
  const double up = std::min(sigma_to, eta * std::sqrt(sigma_to * sigma_to * (sigma_from * sigma_from - sigma_to * sigma_to) /
                                                       (sigma_from * sigma_from)));
  return {std::sqrt(sigma_to * sigma_to - up * up), up};
}

}  // namespace ddpm::detail
