// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// DPM++ 2M SDE and DPM++ 3M SDE as k-diffusion runs them (sample_dpmpp_2m_sde, sample_dpmpp_3m_sde): the
// multistep DPM-Solver++ of the reverse SDE in the data-prediction form, with k-diffusion's eta (0: the
// probability-flow ODE, 1: the SDE) and s_noise, over the k-diffusion sampler grid (EulerSampler's).
//                                                                  [docs/samplers.md, Eqs. (S34), (S35)]

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "ddpm/predictor.hpp"
#include "ddpm/samplers/dpm_solver.hpp"
#include "ddpm/samplers/grid.hpp"
#include "ddpm/samplers/sampler.hpp"
#include "ddpm/schedule.hpp"
#include "ddpm/tensor.hpp"
#include "ddpm/timesteps.hpp"

namespace ddpm {

/// Options of DPMPP2MSDESampler and DPMPP3MSDESampler (k-diffusion's sample_dpmpp_2m_sde /
/// sample_dpmpp_3m_sde arguments, over the grid of EulerDiscreteScheduler as the other k-diffusion samplers).
struct DPMPPMultistepSDEOptions {
  /// The grid (GridOptions; the samplers' grid_defaults: as EulerSampler's). use_karras_sigmas is
  /// the WebUI's "Karras" names, sigma_spacing exponential its "Exponential" names.
  GridOptions grid = {};
  /// k-diffusion's eta: the fraction of the step's noise that is fresh (0: the ODE, deterministic; 1: the
  /// reverse SDE, the default). Finite, >= 0.
  double eta = 1.0;
  /// Scales the fresh noise. Finite, >= 0.
  double s_noise = 1.0;
  /// The second-order update of DPM++ 2M SDE (k-diffusion's solver_type; DPM++ 3M SDE ignores it).
  SolverType solver_type = SolverType::midpoint;
  /// Bounds on the predicted x0 (not in k-diffusion). Default: none.
  Clipping clipping = {};
};

namespace detail {

/// See DPMPP2MSDESampler and DPMPP3MSDESampler.
template <std::floating_point S, int kOrder>
class KMultistepSDESampler : public MultistepBase<KMultistepSDESampler<S, kOrder>, S> {
  using Base = MultistepBase<KMultistepSDESampler<S, kOrder>, S>;
  friend SamplerBase<KMultistepSDESampler<S, kOrder>, S>;
  static const char* name() { return kOrder == 2 ? "ddpm::DPMPP2MSDESampler" : "ddpm::DPMPP3MSDESampler"; }
  static const char* step_name() {
    return kOrder == 2 ? "ddpm::DPMPP2MSDESampler::step" : "ddpm::DPMPP3MSDESampler::step";
  }

 public:
  /// The grid defaults (EulerDiscreteScheduler's, as the other k-diffusion samplers): N = 50, linspace
  /// spacing, ramps between the spaced ends.
  static constexpr GridDefaults grid_defaults = GridDefaults::euler_discrete();

  /// Throws ddpm::invalid_argument if eta or s_noise is negative or not finite, solver_type is not an
  /// enumerator, or the grid (see make_grid) or clipping options are bad.
  explicit KMultistepSDESampler(NoiseSchedule<S> schedule, DPMPPMultistepSDEOptions options = {})
      : Base(std::move(schedule)), options_(std::move(options)) {
    const char* fn = name();
    check_ancestral(fn, options_.eta, options_.s_noise);
    if (options_.solver_type != SolverType::midpoint && options_.solver_type != SolverType::heun) {
      throw_invalid_argument(std::string(fn) + ": solver_type is " +
                             number_string(static_cast<int>(options_.solver_type)) +
                             ", but must be SolverType::midpoint or heun");
    }
    check_clipping(fn, options_.clipping);
    Grid grid = make_grid(this->schedule_, options_.grid, grid_defaults, fn);
    this->timesteps_ = std::move(grid.timesteps);
    this->sigmas_ = std::move(grid.sigmas);
    method_.eta = options_.eta;
    method_.s_noise = options_.s_noise;
  }

  const DPMPPMultistepSDEOptions& options() const { return options_; }

  /// The order of step i: min(i + 1, 2) or min(i + 1, 3) (a step to sigma 0 returns x0).
  /// Throws ddpm::invalid_argument if i is outside [0, num_inference_steps()).
  int step_order(int i) const {
    check_step_index(name(), i, this->num_inference_steps());
    return std::min(i + 1, kOrder);
  }

 private:
  template <DenseTensor M, MutableDenseTensor X, class N, class X0>
  void step_impl(int i, const M& output, X& x, N& noise, X0& x0_out, Prediction kind) {
    const char* fn = step_name();
    check_step_index(fn, i, this->num_inference_steps());
    // 3M's second step is k-diffusion's phi_2 form, the heun update.
    const SolverType type = kOrder == 3 ? SolverType::heun : options_.solver_type;
    this->multistep_step(fn, i, std::min(i + 1, kOrder), type, method_, output, x, noise, x0_out, kind,
                         options_.clipping);
  }

  DPMPPMultistepSDEOptions options_;
  MultistepMethod method_;
};

}  // namespace detail

/// DPM++ 2M SDE (k-diffusion's sample_dpmpp_2m_sde).                  [docs/samplers.md, Eqs. (S34), (S35)]
/// With the sigma grid of EulerSampler (sigmas()), h = log(sigma_i / sigma_{i+1}), step i is Eq. (S35)'s
/// x0-form update with k-diffusion's eta: first order at step 0, second order (solver_type midpoint or
/// heun, D1 = (x0_i - x0_{i-1}) / r, r = h_{i-1} / h) after, x <- x0_i on a step to sigma 0, and
/// s_noise sigma_vp_{i+1} sqrt(1 - e^{-2 eta h}) z added at every other step (eta > 0). k-diffusion
/// draws z from a Brownian tree by default (BrownianTreeNoiseSampler); here it is the noise argument's
/// N(0, I), independent from step to step, which has the same distribution (the tree's increments over the
/// disjoint intervals are independent Gaussians, normalised to variance 1). Differs from
/// DPMSolverMultistepSampler with sde_dpmsolver_pp by its grid, eta and s_noise, and no lower-order final
/// steps. A run steps in order; step 0 (or reset()) starts a new run.
template <std::floating_point S>
using DPMPP2MSDESampler = detail::KMultistepSDESampler<S, 2>;

/// DPM++ 3M SDE (k-diffusion's sample_dpmpp_3m_sde).                  [docs/samplers.md, Eqs. (S34), (S35)]
/// As DPMPP2MSDESampler with the third-order update of Eqs. (S34)-(S35) (H = (1 + eta) h, phi2 = expm1(-H) / H + 1,
/// phi3 = phi2 / H - 1/2): step 0 first order, step 1 second order (phi2 D1), third order after.
template <std::floating_point S>
using DPMPP3MSDESampler = detail::KMultistepSDESampler<S, 3>;

}  // namespace ddpm
