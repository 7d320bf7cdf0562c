// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// DPM++ 2S ancestral (k-diffusion's sample_dpmpp_2s_ancestral; diffusers has no scheduler for it): the
// single-step second-order DPM-Solver++ (Lu et al. 2022, "DPM-Solver++(2S)") to sigma_down through the
// midpoint in log sigma, then ancestral noise, two model calls per noise interval, each its own step().
//                                                                  [docs/samplers.md, Eqs. (S20), (S24)]

#include "ddpm/samplers/detail/midpoint_sampler.hpp"

namespace ddpm {

/// The options of DPMPP2SAncestralSampler: DPM2Options (eta, s_noise, the grid and clipping; s_churn must
/// stay 0).
using DPMPP2SAncestralOptions = DPM2Options;

/// DPM++ 2S ancestral.                                                 [docs/samplers.md, Eqs. (S20), (S24)]
/// With (sigma_down, sigma_up) of Eq. (S20) for sigma_k -> sigma_{k+1}, h = log(sigma_k / sigma_down) and
/// sigma_mid = sqrt(sigma_k sigma_down), interval k is
///   stage 1, model at (x_ve, sigma_k):     x_ve' = e^{-h/2} x_ve - expm1(-h/2) x0_1
///   stage 2, model at (x_ve', sigma_mid):  x_ve <- e^{-h} x_ve - expm1(-h) x0_2,  then + s_noise sigma_up z
/// (the second computed from x_ve' and x0_1: x_ve <- e^{-h/2} (x_ve' + expm1(-h/2) x0_1) - expm1(-h) x0_2);
/// when sigma_down = 0 it is one step x_ve <- x0 (+ s_noise sigma_up z if sigma_{k+1} > 0). Noise is drawn
/// when sigma_up > 0. timesteps() lists every model call; a run steps in order.
template <std::floating_point S>
using DPMPP2SAncestralSampler = detail::MidpointSampler<S, detail::Midpoint::dpmpp_2s_ancestral>;

}  // namespace ddpm
