// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// The forward (noising) process q: one step, the closed-form marginal, and its mean and variance.
//                                                                      [docs/math.md, Eqs. (1)-(4)]
// Every function takes the timestep as one `int t` for the whole batch or a `std::span<const int>` with one
// timestep per batch element (dimension 0), accepts Tensor, TensorMap and ConstTensorMap arguments, and
// has a form that writes into the caller's `out` (resized if it is a Tensor, checked if it is a map).

#include <cmath>
#include <span>

#include "ddpm/detail/per_timestep.hpp"
#include "ddpm/random.hpp"
#include "ddpm/schedule.hpp"
#include "ddpm/tensor.hpp"

namespace ddpm {

/// A diagonal Gaussian with one variance shared by all elements (per batch element when timesteps differ).
template <class S, int R>
struct Gaussian {
  Tensor<S, R> mean;
  S variance;
  S log_variance;
};

/// One forward step q(x_t | x_{t-1}) driven by the given standard-normal noise.   [docs/math.md, Eq. (2)]
///   x_t = sqrt(alpha[t]) * x_prev + sqrt(beta[t]) * noise
/// Throws ddpm::invalid_argument if t is outside [0, T), x_prev is empty, or noise (or a map out) differs
/// in shape from x_prev.
template <std::floating_point S, DenseTensor X, DenseTensor N, MutableDenseTensor Out>
void q_step(const NoiseSchedule<S>& schedule, const X& x_prev, int t, const N& noise, Out&& out) {
  detail::check_timesteps("ddpm::q_step", schedule, t, x_prev.dimension(0));
  const std::vector<double>& beta = schedule.betas_double();
  const detail::Coefficient<S> a(beta, t, [](double b) { return std::sqrt(1.0 - b); });
  const detail::Coefficient<S> c(beta, t, [](double b) { return std::sqrt(b); });
  detail::combine("ddpm::q_step", "x_prev", x_prev, a, "noise", noise, c, out);
}

/// One forward step with a timestep per batch element (t[b] for x_prev[b]).
template <std::floating_point S, DenseTensor X, DenseTensor N, MutableDenseTensor Out>
void q_step(const NoiseSchedule<S>& schedule, const X& x_prev, std::span<const int> t, const N& noise, Out&& out) {
  detail::check_timesteps("ddpm::q_step", schedule, t, x_prev.dimension(0));
  const std::vector<double>& beta = schedule.betas_double();
  const detail::Coefficient<S> a(beta, t, [](double b) { return std::sqrt(1.0 - b); });
  const detail::Coefficient<S> c(beta, t, [](double b) { return std::sqrt(b); });
  detail::combine("ddpm::q_step", "x_prev", x_prev, a, "noise", noise, c, out);
}

template <std::floating_point S, DenseTensor X, DenseTensor N>
plain_tensor_t<X> q_step(const NoiseSchedule<S>& schedule, const X& x_prev, int t, const N& noise) {
  plain_tensor_t<X> out;
  q_step(schedule, x_prev, t, noise, out);
  return out;
}

template <std::floating_point S, DenseTensor X, DenseTensor N>
plain_tensor_t<X> q_step(const NoiseSchedule<S>& schedule, const X& x_prev, std::span<const int> t, const N& noise) {
  plain_tensor_t<X> out;
  q_step(schedule, x_prev, t, noise, out);
  return out;
}

/// Closed-form forward marginal q(x_t | x_0).                                     [docs/math.md, Eq. (4)]
///   x_t = sqrt(alpha_bar[t]) * x0 + sqrt(1 - alpha_bar[t]) * noise
/// Throws ddpm::invalid_argument if t is outside [0, T), x0 is empty, or noise (or a map out) differs in
/// shape from x0.
template <std::floating_point S, DenseTensor X, DenseTensor N, MutableDenseTensor Out>
void q_sample(const NoiseSchedule<S>& schedule, const X& x0, int t, const N& noise, Out&& out) {
  detail::check_timesteps("ddpm::q_sample", schedule, t, x0.dimension(0));
  detail::combine("ddpm::q_sample", "x0", x0, detail::Coefficient<S>(schedule.sqrt_alphas_cumprod(), t), "noise",
                  noise, detail::Coefficient<S>(schedule.sqrt_one_minus_alphas_cumprod(), t), out);
}

/// q_sample with a timestep per batch element (t[b] for x0[b]).
template <std::floating_point S, DenseTensor X, DenseTensor N, MutableDenseTensor Out>
void q_sample(const NoiseSchedule<S>& schedule, const X& x0, std::span<const int> t, const N& noise, Out&& out) {
  detail::check_timesteps("ddpm::q_sample", schedule, t, x0.dimension(0));
  detail::combine("ddpm::q_sample", "x0", x0, detail::Coefficient<S>(schedule.sqrt_alphas_cumprod(), t), "noise",
                  noise, detail::Coefficient<S>(schedule.sqrt_one_minus_alphas_cumprod(), t), out);
}

template <std::floating_point S, DenseTensor X, DenseTensor N>
plain_tensor_t<X> q_sample(const NoiseSchedule<S>& schedule, const X& x0, int t, const N& noise) {
  plain_tensor_t<X> out;
  q_sample(schedule, x0, t, noise, out);
  return out;
}

template <std::floating_point S, DenseTensor X, DenseTensor N>
plain_tensor_t<X> q_sample(const NoiseSchedule<S>& schedule, const X& x0, std::span<const int> t, const N& noise) {
  plain_tensor_t<X> out;
  q_sample(schedule, x0, t, noise, out);
  return out;
}

/// Mean and variance of q(x_t | x_0).                                              [docs/math.md, Eq. (4)]
///   mean = sqrt(alpha_bar[t]) * x0,  variance = 1 - alpha_bar[t],  log_variance = log(1 - alpha_bar[t])
/// Throws ddpm::invalid_argument if t is outside [0, T) or x0 is empty.
template <std::floating_point S, DenseTensor X>
Gaussian<S, rank_v<X>> q_mean_variance(const NoiseSchedule<S>& schedule, const X& x0, int t) {
  detail::check_timesteps("ddpm::q_mean_variance", schedule, t, x0.dimension(0));
  const detail::Coefficient<S> a(schedule.sqrt_alphas_cumprod(), t);
  Gaussian<S, rank_v<X>> g;
  detail::combine("ddpm::q_mean_variance", "x0", x0, a, "x0", x0, detail::Coefficient<S>(S(0)),
                  g.mean);
  g.variance = schedule.one_minus_alphas_cumprod()[t];
  g.log_variance = schedule.log_one_minus_alphas_cumprod()[t];
  return g;
}

}  // namespace ddpm

// The forward process with its noise drawn from a NoiseSource in the same pass: no noise tensor is stored.
// Each result equals filling a noise tensor from the same source state and calling the overload above,
// bit for bit, and leaves the source x.size() numbers further on.

namespace ddpm {
namespace detail {

/// Validates x (and a map out), then writes out = a * x + c * eps per batch element with eps the next
/// x.size() numbers of `noise`, and advances `noise` past them. On a throw, `noise` is unchanged.
template <class S, DenseTensor X, MutableDenseTensor Out>
void combine_with_noise(const char* fn, const char* x_name, const X& x, const Coefficient<S>& a,
                        const Coefficient<S>& c, NoiseSource& noise, Out& out) {
  static_assert(std::is_same_v<scalar_t<X>, S> && std::is_same_v<scalar_t<Out>, S>,
                "ddpm: tensors must have the schedule's scalar type");
  require_nonempty(fn, x_name, x);
  const auto n = static_cast<std::uint64_t>(x.size());
  check_stream_range(fn, noise.offset(), n);
  prepare_output(fn, out, x);
  lincomb2_normal_per_sample<S>(out.data(), a.view(), x.data(), c.view(), noise.seed(), noise.offset(),
                                x.dimension(0), per_sample_size(x));
  noise.set_offset(noise.offset() + n);
}

}  // namespace detail

/// One forward step q(x_t | x_{t-1}) with its noise drawn from `noise`.            [docs/math.md, Eq. (2)]
///   x_t = sqrt(alpha[t]) * x_prev + sqrt(beta[t]) * eps,  eps = the next x_prev.size() numbers of noise
/// Equal, bit for bit, to q_step(schedule, x_prev, t, eps, out) with eps filled by `noise`; advances
/// `noise` by x_prev.size(). Throws ddpm::invalid_argument (leaving `noise` unchanged) if t is outside
/// [0, T), x_prev is empty, a map out differs in shape from x_prev, or the stream would run out.
template <std::floating_point S, DenseTensor X, MutableDenseTensor Out>
void q_step(const NoiseSchedule<S>& schedule, const X& x_prev, int t, NoiseSource& noise, Out&& out) {
  detail::check_timesteps("ddpm::q_step", schedule, t, x_prev.dimension(0));
  const std::vector<double>& beta = schedule.betas_double();
  const detail::Coefficient<S> a(beta, t, [](double b) { return std::sqrt(1.0 - b); });
  const detail::Coefficient<S> c(beta, t, [](double b) { return std::sqrt(b); });
  detail::combine_with_noise("ddpm::q_step", "x_prev", x_prev, a, c, noise, out);
}

/// One forward step with a timestep per batch element and noise drawn from `noise`.
template <std::floating_point S, DenseTensor X, MutableDenseTensor Out>
void q_step(const NoiseSchedule<S>& schedule, const X& x_prev, std::span<const int> t, NoiseSource& noise,
            Out&& out) {
  detail::check_timesteps("ddpm::q_step", schedule, t, x_prev.dimension(0));
  const std::vector<double>& beta = schedule.betas_double();
  const detail::Coefficient<S> a(beta, t, [](double b) { return std::sqrt(1.0 - b); });
  const detail::Coefficient<S> c(beta, t, [](double b) { return std::sqrt(b); });
  detail::combine_with_noise("ddpm::q_step", "x_prev", x_prev, a, c, noise, out);
}

template <std::floating_point S, DenseTensor X>
plain_tensor_t<X> q_step(const NoiseSchedule<S>& schedule, const X& x_prev, int t, NoiseSource& noise) {
  plain_tensor_t<X> out;
  q_step(schedule, x_prev, t, noise, out);
  return out;
}

template <std::floating_point S, DenseTensor X>
plain_tensor_t<X> q_step(const NoiseSchedule<S>& schedule, const X& x_prev, std::span<const int> t,
                         NoiseSource& noise) {
  plain_tensor_t<X> out;
  q_step(schedule, x_prev, t, noise, out);
  return out;
}

/// Closed-form forward marginal q(x_t | x_0) with its noise drawn from `noise`.   [docs/math.md, Eq. (4)]
///   x_t = sqrt(alpha_bar[t]) * x0 + sqrt(1 - alpha_bar[t]) * eps,  eps = the next x0.size() numbers of noise
/// Equal, bit for bit, to q_sample(schedule, x0, t, eps, out) with eps filled by `noise`; advances `noise`
/// by x0.size(). Throws ddpm::invalid_argument (leaving `noise` unchanged) if t is outside [0, T), x0 is
/// empty, a map out differs in shape from x0, or the stream would run out.
template <std::floating_point S, DenseTensor X, MutableDenseTensor Out>
void q_sample(const NoiseSchedule<S>& schedule, const X& x0, int t, NoiseSource& noise, Out&& out) {
  detail::check_timesteps("ddpm::q_sample", schedule, t, x0.dimension(0));
  detail::combine_with_noise("ddpm::q_sample", "x0", x0, detail::Coefficient<S>(schedule.sqrt_alphas_cumprod(), t),
                             detail::Coefficient<S>(schedule.sqrt_one_minus_alphas_cumprod(), t), noise, out);
}

/// q_sample with a timestep per batch element (t[b] for x0[b]) and noise drawn from `noise`.
template <std::floating_point S, DenseTensor X, MutableDenseTensor Out>
void q_sample(const NoiseSchedule<S>& schedule, const X& x0, std::span<const int> t, NoiseSource& noise,
              Out&& out) {
  detail::check_timesteps("ddpm::q_sample", schedule, t, x0.dimension(0));
  detail::combine_with_noise("ddpm::q_sample", "x0", x0, detail::Coefficient<S>(schedule.sqrt_alphas_cumprod(), t),
                             detail::Coefficient<S>(schedule.sqrt_one_minus_alphas_cumprod(), t), noise, out);
}

template <std::floating_point S, DenseTensor X>
plain_tensor_t<X> q_sample(const NoiseSchedule<S>& schedule, const X& x0, int t, NoiseSource& noise) {
  plain_tensor_t<X> out;
  q_sample(schedule, x0, t, noise, out);
  return out;
}

template <std::floating_point S, DenseTensor X>
plain_tensor_t<X> q_sample(const NoiseSchedule<S>& schedule, const X& x0, std::span<const int> t,
                           NoiseSource& noise) {
  plain_tensor_t<X> out;
  q_sample(schedule, x0, t, noise, out);
  return out;
}

}  // namespace ddpm
