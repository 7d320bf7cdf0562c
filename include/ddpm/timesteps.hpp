// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// Which training timesteps a sampler visits: diffusers' three spacings (leading, trailing, linspace) with
// NumPy's arithmetic reproduced exactly, a validated user list, and the noise-level (sigma) grids of the
// sigma-space samplers: Karras et al.'s rho-ramp, the exponential and polyexponential ramps, and the
// log-sigma interpolation back to a timestep. samplers/grid.hpp combines them as a sampler's options ask.
//                                                          [docs/samplers.md, Eqs. (S4)-(S6), (S18), (S19)]

#include <cmath>
#include <string>
#include <vector>

#include "ddpm/error.hpp"

namespace ddpm {

/// How N inference timesteps are chosen among T training timesteps (diffusers' `timestep_spacing`;
/// Lin et al. 2024, Table 2).                                                   [docs/samplers.md, Eq. (S4)]
///   leading:  k * (T / N) + steps_offset for k = N-1, ..., 0 (integer stride; never reaches T - 1
///             unless N = T)
///   trailing: round(T - k * T / N) - 1 for k = 0, ..., N-1 (starts at T - 1; best for few steps)
///   linspace: round(linspace(0, T - 1, N)) reversed (NumPy's linspace, rounded half to even)
enum class TimestepSpacing { leading, trailing, linspace };

/// "leading", "trailing" or "linspace".
inline const char* spacing_name(TimestepSpacing spacing) {
  switch (spacing) {
    case TimestepSpacing::leading: return "leading";
    case TimestepSpacing::trailing: return "trailing";
    case TimestepSpacing::linspace: return "linspace";
  }
  return "unknown";
}

/// The N inference timesteps a sampler visits, in decreasing order, with the semantics of diffusers' DDPMScheduler /
/// DDIMScheduler `set_timesteps` and NumPy's arithmetic:                          [docs/samplers.md, Eq. (S4)]
///   leading:  (arange(N) * (T // N)).round()[::-1] + steps_offset
///   trailing: round(arange(T, 0, -T / N)) - 1, always exactly N values (NumPy's arange yields a spurious
///             (N+1)-th value, -1, for some N such as N = 61 at T = 1000; diffusers keeps it, we do not)
///   linspace: round(linspace(0, T - 1, N))[::-1], rounded half to even like NumPy (N = 7, T = 1000 gives
///             999, 832, 666, 500, 333, 166, 0; std::round would give 833 and 167)
/// steps_offset applies to leading only (diffusers ignores it for the other two).
/// Throws ddpm::invalid_argument if T < 1, N is outside [1, T], steps_offset < 0, spacing is not one of the
/// three enumerators, or (leading) the largest timestep (N - 1) * (T / N) + steps_offset is not below T.
inline std::vector<int> inference_timesteps(int T, int N, TimestepSpacing spacing, int steps_offset = 0) {
  const std::string fn = "ddpm::inference_timesteps";
  if (T < 1) detail::throw_invalid_argument(fn + ": T is " + ddpm::detail::number_string(T) + ", but must be >= 1");
  if (N < 1 || N > T) {
    detail::throw_invalid_argument(fn + ": N (num_inference_steps) is " + ddpm::detail::number_string(N) + ", but must be in [1, " +
                                   ddpm::detail::number_string(T) + "] (T)");
  }
  if (steps_offset < 0) {
    detail::throw_invalid_argument(fn + ": steps_offset is " + ddpm::detail::number_string(steps_offset) + ", but must be >= 0");
  }
  if (spacing != TimestepSpacing::leading && spacing != TimestepSpacing::trailing &&
      spacing != TimestepSpacing::linspace) {  // a value cast from an integer would leave every timestep 0
    detail::throw_invalid_argument(fn + ": spacing is TimestepSpacing(" +
                                   ddpm::detail::number_string(static_cast<int>(spacing)) +
                                   "), but must be leading, trailing or linspace");
  }
  std::vector<int> ts(static_cast<std::size_t>(N));
  switch (spacing) {
    case TimestepSpacing::leading: {
      const int ratio = T / N;
      const long long largest = static_cast<long long>(N - 1) * ratio + steps_offset;
      if (largest >= T) {
        detail::throw_invalid_argument(fn + ": steps_offset is " + ddpm::detail::number_string(steps_offset) +
                                       ", but leading spacing with N = " + ddpm::detail::number_string(N) +
                                       " would then start at timestep " + ddpm::detail::number_string(largest) +
                                       ", outside [0, " + ddpm::detail::number_string(T) + ")");
      }
      for (int k = 0; k < N; ++k) ts[static_cast<std::size_t>(k)] = (N - 1 - k) * ratio + steps_offset;
      break;
    }
    case TimestepSpacing::trailing: {
      // NumPy's arange fills start + i * delta with delta = (start + step) - start, which is not always
      // exactly step; the rounding of half-integers depends on it, so reproduce it.
      const double start = static_cast<double>(T);
      const double step = -(start / static_cast<double>(N));
      const double next = start + step;  // two roundings, as NumPy performs them
      const double delta = next - start;
      for (int k = 0; k < N; ++k) {
        ts[static_cast<std::size_t>(k)] = static_cast<int>(std::nearbyint(start + k * delta)) - 1;
      }
      break;
    }
    case TimestepSpacing::linspace: {
      // NumPy's linspace: i * ((stop - start) / (N - 1)) + start, the last value exactly stop.
      const double stop = static_cast<double>(T - 1);
      const double step = N > 1 ? stop / static_cast<double>(N - 1) : 0.0;
      for (int i = 0; i < N; ++i) {
        const double v = (N > 1 && i == N - 1) ? stop : i * step;
        ts[static_cast<std::size_t>(N - 1 - i)] = static_cast<int>(std::nearbyint(v));  // half to even
      }
      break;
    }
  }
  return ts;
}

/// The former name of inference_timesteps, kept for one release.
[[deprecated("use inference_timesteps (diffusers' spacing); respacing_timesteps is improved-diffusion's respacing")]]
inline std::vector<int> spaced_timesteps(int T, int N, TimestepSpacing spacing, int steps_offset = 0) {
  return inference_timesteps(T, N, spacing, steps_offset);
}

/// A user-given list of inference timesteps (diffusers' `timesteps=` argument), validated.
/// Throws ddpm::invalid_argument if the list is empty, not strictly decreasing, or has a value outside [0, T).
inline std::vector<int> checked_timesteps(int T, std::vector<int> timesteps) {
  const std::string fn = "ddpm::checked_timesteps";
  if (timesteps.empty()) detail::throw_invalid_argument(fn + ": timesteps is empty, but must hold at least one");
  for (std::size_t i = 0; i < timesteps.size(); ++i) {
    const int t = timesteps[i];
    if (t < 0 || t >= T) {
      detail::throw_invalid_argument(fn + ": timesteps[" + ddpm::detail::number_string(i) + "] is " + ddpm::detail::number_string(t) +
                                     ", but must be in [0, " + ddpm::detail::number_string(T) + ")");
    }
    if (i > 0 && t >= timesteps[i - 1]) {
      detail::throw_invalid_argument(fn + ": timesteps[" + ddpm::detail::number_string(i) + "] is " + ddpm::detail::number_string(t) +
                                     ", but the list must be strictly decreasing (timesteps[" + ddpm::detail::number_string(i - 1) +
                                     "] is " + ddpm::detail::number_string(timesteps[i - 1]) + ")");
    }
  }
  return timesteps;
}

/// The noise levels of Karras et al. (2022), Eq. (5), with rho = 7 by default:  [docs/samplers.md, Eq. (S5)]
///   sigma_i = (sigma_max^(1/rho) + i / (N - 1) * (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho,  i = 0..N-1
/// decreasing from sigma_max to sigma_min (N = 1 gives sigma_max).
/// Throws ddpm::invalid_argument if N < 1, rho <= 0, or not 0 < sigma_min <= sigma_max < inf.
inline std::vector<double> karras_sigmas(double sigma_min, double sigma_max, int N, double rho = 7.0) {
  const std::string fn = "ddpm::karras_sigmas";
  if (N < 1) detail::throw_invalid_argument(fn + ": N is " + ddpm::detail::number_string(N) + ", but must be >= 1");
  if (!(std::isfinite(rho) && rho > 0.0)) {
    detail::throw_invalid_argument(fn + ": rho is " + ddpm::detail::number_string(rho) + ", but must be finite and > 0");
  }
  if (!(sigma_min > 0.0 && sigma_min <= sigma_max && std::isfinite(sigma_max))) {
    detail::throw_invalid_argument(fn + ": sigma_min is " + ddpm::detail::number_string(sigma_min) + " and sigma_max " +
                                   ddpm::detail::number_string(sigma_max) + ", but must satisfy 0 < sigma_min <= sigma_max < inf");
  }
  const double lo = std::pow(sigma_min, 1.0 / rho);
  const double hi = std::pow(sigma_max, 1.0 / rho);
  std::vector<double> sigmas(static_cast<std::size_t>(N));
  for (int i = 0; i < N; ++i) {
    // NumPy's linspace(0, 1, N) for the ramp, as diffusers and k-diffusion use.
    const double ramp = N > 1 ? (i == N - 1 ? 1.0 : i * (1.0 / (N - 1))) : 0.0;
    sigmas[static_cast<std::size_t>(i)] = std::pow(hi + ramp * (lo - hi), rho);
  }
  return sigmas;
}

namespace detail {

inline void check_sigma_ramp(const char* fn, double sigma_min, double sigma_max, int N, double rho) {
  const std::string f = fn;
  if (N < 1) throw_invalid_argument(f + ": N is " + ddpm::detail::number_string(N) + ", but must be >= 1");
  if (!(std::isfinite(rho) && rho > 0.0)) {
    throw_invalid_argument(f + ": rho is " + ddpm::detail::number_string(rho) + ", but must be finite and > 0");
  }
  if (!(sigma_min > 0.0 && sigma_min <= sigma_max && std::isfinite(sigma_max))) {
    throw_invalid_argument(f + ": sigma_min is " + ddpm::detail::number_string(sigma_min) + " and sigma_max " +
                           ddpm::detail::number_string(sigma_max) + ", but must satisfy 0 < sigma_min <= sigma_max < inf");
  }
}

/// NumPy's linspace(start, stop, N)[i]: start + i * ((stop - start) / (N - 1)), the last value exactly stop.
inline double linspace_at(double start, double stop, int N, int i) {
  if (N == 1) return start;
  if (i == N - 1) return stop;
  return start + i * ((stop - start) / (N - 1));
}

}  // namespace detail

/// Noise levels evenly spaced in log sigma (diffusers' `use_exponential_sigmas`, k-diffusion's
/// get_sigmas_exponential without its appended 0):                                [docs/samplers.md, Eq. (S18)]
///   sigma_i = exp(log sigma_max + i / (N - 1) (log sigma_min - log sigma_max)),  i = 0..N-1
/// with NumPy's linspace arithmetic (N = 1 gives sigma_max).
/// Throws ddpm::invalid_argument if N < 1 or not 0 < sigma_min <= sigma_max < inf.
inline std::vector<double> exponential_sigmas(double sigma_min, double sigma_max, int N) {
  detail::check_sigma_ramp("ddpm::exponential_sigmas", sigma_min, sigma_max, N, 1.0);
  const double lo = std::log(sigma_min), hi = std::log(sigma_max);
  std::vector<double> sigmas(static_cast<std::size_t>(N));
  for (int i = 0; i < N; ++i) sigmas[static_cast<std::size_t>(i)] = std::exp(detail::linspace_at(hi, lo, N, i));
  return sigmas;
}

/// k-diffusion's polyexponential noise levels (get_sigmas_polyexponential without its appended 0), rho = 1
/// by default (which is exponential_sigmas):                                    [docs/samplers.md, Eq. (S19)]
///   r_i = (1 - i / (N - 1))^rho,   sigma_i = exp(r_i (log sigma_max - log sigma_min) + log sigma_min)
/// with NumPy's linspace arithmetic for 1 - i / (N - 1) (N = 1 gives sigma_max); k-diffusion's
/// torch.linspace may differ in the last bit.
/// Throws ddpm::invalid_argument if N < 1, rho <= 0, or not 0 < sigma_min <= sigma_max < inf.
inline std::vector<double> polyexponential_sigmas(double sigma_min, double sigma_max, int N, double rho = 1.0) {
  detail::check_sigma_ramp("ddpm::polyexponential_sigmas", sigma_min, sigma_max, N, rho);
  const double lo = std::log(sigma_min), hi = std::log(sigma_max);
  std::vector<double> sigmas(static_cast<std::size_t>(N));
  for (int i = 0; i < N; ++i) {
    const double r = std::pow(detail::linspace_at(1.0, 0.0, N, i), rho);
    sigmas[static_cast<std::size_t>(i)] = std::exp(r * (hi - lo) + lo);
  }
  return sigmas;
}

/// The fractional training timestep of a noise level, by linear interpolation in log sigma between the
/// two neighbouring training timesteps (k-diffusion's and diffusers' `_sigma_to_t`):  [docs/samplers.md, (S6)]
///   log sigma_table[i] <= log sigma < log sigma_table[i + 1],   t = i + (log sigma - log sigma_table[i]) /
///   (log sigma_table[i + 1] - log sigma_table[i]),  clamped to [0, T - 1]
/// `sigma_table` holds sigma[t] for t = 0..T-1 (non-decreasing; equal neighbours give the upper index).
/// Throws ddpm::invalid_argument if the table has fewer than 2 entries, an entry is not finite and > 0 or
/// is below its predecessor, or sigma is not positive (NaN included).
inline double sigma_to_timestep(const std::vector<double>& sigma_table, double sigma) {
  const std::string fn = "ddpm::sigma_to_timestep";
  const int T = static_cast<int>(sigma_table.size());
  if (T < 2) detail::throw_invalid_argument(fn + ": the sigma table has " + ddpm::detail::number_string(T) + " entries, but needs >= 2");
  if (!(sigma > 0.0)) detail::throw_invalid_argument(fn + ": sigma is " + ddpm::detail::number_string(sigma) + ", but must be > 0");
  // A 0 (log -inf) or NaN entry would make the interpolation weight NaN, and so the timestep.
  for (int i = 0; i < T; ++i) {
    const double v = sigma_table[static_cast<std::size_t>(i)];
    if (!(std::isfinite(v) && v > 0.0)) {
      detail::throw_invalid_argument(fn + ": sigma_table[" + ddpm::detail::number_string(i) + "] is " +
                                     ddpm::detail::number_string(v) + ", but every entry must be finite and > 0");
    }
    if (i > 0 && v < sigma_table[static_cast<std::size_t>(i - 1)]) {
      detail::throw_invalid_argument(fn + ": sigma_table[" + ddpm::detail::number_string(i) + "] is " +
                                     ddpm::detail::number_string(v) + ", below sigma_table[" +
                                     ddpm::detail::number_string(i - 1) + "] = " +
                                     ddpm::detail::number_string(sigma_table[static_cast<std::size_t>(i - 1)]) +
                                     ", but the table must be non-decreasing");
    }
  }
  const double log_sigma = std::log(sigma);
  // low = the last index whose log sigma is <= log_sigma, clamped to [0, T - 2] (diffusers' cumsum/argmax).
  int low = 0;
  for (int i = 0; i < T; ++i) {
    if (log_sigma - std::log(sigma_table[static_cast<std::size_t>(i)]) >= 0.0) low = i;
  }
  if (low > T - 2) low = T - 2;
  const double lo = std::log(sigma_table[static_cast<std::size_t>(low)]);
  const double hi = std::log(sigma_table[static_cast<std::size_t>(low + 1)]);
  // Equal neighbours (lo == hi): low is T - 2 and sigma is at or above both, so take the upper one.
  double w = lo == hi ? 1.0 : (lo - log_sigma) / (lo - hi);
  w = w < 0.0 ? 0.0 : (w > 1.0 ? 1.0 : w);
  return (1.0 - w) * low + w * (low + 1);
}

}  // namespace ddpm
