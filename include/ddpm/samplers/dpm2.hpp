// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// DPM2 and DPM2 ancestral (k-diffusion's sample_dpm_2 and sample_dpm_2_ancestral; diffusers'
// KDPM2DiscreteScheduler and KDPM2AncestralDiscreteScheduler): a second-order step of the probability-flow
// ODE through the midpoint in log sigma, "inspired by DPM-Solver-2 and Karras et al.'s Algorithm 2", two
// model calls per noise interval, each its own step() as in diffusers.
//                                                                  [docs/samplers.md, Eqs. (S20), (S23)]

#include "ddpm/samplers/detail/midpoint_sampler.hpp"

namespace ddpm {

/// DPM2 (deterministic without churn).                                    [docs/samplers.md, Eq. (S23)]
/// With the grid sigma_k (make_grid, as EulerSampler; sigmas()), x_ve = sqrt(1 + s^2) x at the level s the
/// model sees, d = (x_ve - x0) / s, sigma_hat_k = sigma_k (1 + gamma_k) (churn as in HeunSampler) and
/// sigma_mid = exp((log sigma_hat_k + log sigma_{k+1}) / 2), interval k is
///   stage 1, model at (x_ve, sigma_hat_k):   x_ve' = x_ve + (sigma_mid - sigma_hat_k) d1
///   stage 2, model at (x_ve', sigma_mid):    x_ve <- x_ve + (sigma_{k+1} - sigma_hat_k) d2
/// computed as x_ve <- (sigma_{k+1} x_ve' + (sigma_mid - sigma_hat_k) x0_1 + (sigma_hat_k - sigma_{k+1}) x0_2)
/// / sigma_mid; an interval ending at sigma = 0 is stage 1 alone to sigma = 0 (x <- x0). timesteps() lists
/// every model call (t_0, t_mid_0, t_1, ..., t_{N-1}: 2N - 1 for final sigma zero, as diffusers), the model
/// seeing the nearest timestep of sigma_mid. Options: DPM2Options (eta must stay 1). A run steps in order.
template <std::floating_point S>
using DPM2Sampler = detail::MidpointSampler<S, detail::Midpoint::dpm2>;

/// DPM2 ancestral.                                                  [docs/samplers.md, Eqs. (S20), (S23a)]
/// With (sigma_down, sigma_up) of Eq. (S20) for sigma_k -> sigma_{k+1} and eta, interval k is DPM2's with
/// sigma_hat_k = sigma_k and sigma_{k+1} replaced by sigma_down, then x_ve += s_noise sigma_up z (stage 2;
/// drawn when sigma_up > 0); when sigma_down = 0 it is one Euler step to x0 without noise (k-diffusion's
/// branch). Options: DPM2Options (s_churn must stay 0).
template <std::floating_point S>
using DPM2AncestralSampler = detail::MidpointSampler<S, detail::Midpoint::dpm2_ancestral>;

}  // namespace ddpm
