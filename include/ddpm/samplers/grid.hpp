// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// The grid of a sampling run: the training timesteps the model is called with and, for the sigma-space
// samplers, the noise levels the solver steps through. Every sampler builds its grid with make_grid from
// one GridOptions (the `grid` member of its options) and its GridDefaults, so the spacings, offsets,
// explicit lists and sigma ramps are implemented once.
//                                                 [docs/samplers.md, Eqs. (S4)-(S6), (S12), (S18), (S19)]

#include <cmath>
#include <concepts>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "ddpm/error.hpp"
#include "ddpm/samplers/sampler.hpp"
#include "ddpm/schedule.hpp"
#include "ddpm/timesteps.hpp"

namespace ddpm {

/// The noise levels of a sigma-space sampler (diffusers' use_karras_sigmas / use_exponential_sigmas,
/// k-diffusion's get_sigmas_karras / _exponential / _polyexponential):
///   timesteps:       sigma[t] (Eq. (12) of docs/math.md) at the spaced timesteps
///   karras:          Eq. (S5), rho = 7 unless GridOptions::rho says otherwise
///   exponential:     Eq. (S18), evenly spaced in log sigma
///   polyexponential: Eq. (S19), rho = 1 unless GridOptions::rho says otherwise
/// For every ramp the model sees the nearest training timestep of each sigma (Eq. (S6), rounded).
enum class SigmaSpacing { timesteps, karras, exponential, polyexponential };

/// "timesteps", "karras", "exponential" or "polyexponential".
inline const char* sigma_spacing_name(SigmaSpacing spacing) {
  switch (spacing) {
    case SigmaSpacing::timesteps: return "timesteps";
    case SigmaSpacing::karras: return "karras";
    case SigmaSpacing::exponential: return "exponential";
    case SigmaSpacing::polyexponential: return "polyexponential";
  }
  return "unknown";
}

/// Where a ramp (karras, exponential, polyexponential) takes its ends sigma_max and sigma_min:
///   training: sigma[T-1] and sigma[0], the whole training range (diffusers' DPMSolverMultistepScheduler;
///             the spacing options are then unused)
///   spaced:   the sigmas of the first and the last spaced timestep (diffusers' EulerDiscreteScheduler)
enum class SigmaEnds { training, spaced };

/// How a sampler chooses its timesteps and noise levels: the one grid options struct of every sampler,
/// the first member `grid` of each sampler's options, e.g.
///   EulerSampler<float> s(schedule, {.grid = {.num_inference_steps = 30, .use_karras_sigmas = true}});
/// A field left unset (std::nullopt) takes the sampler's default, its GridDefaults (the default of the
/// diffusers scheduler class it follows); make_grid resolves them and rejects the options a sampler does
/// not support (a timestep-only sampler rejects every sigma option set away from its default).
struct GridOptions {
  /// N, the number of steps, in [1, T]. Unset: the sampler's default (DDPM: T; DPM-Solver, UniPC: 20;
  /// the others: 50).
  std::optional<int> num_inference_steps = {};
  /// (S4); diffusers' `timestep_spacing`. Unset: the sampler's default (leading: DDPM, DDIM, PNDM;
  /// linspace: the others).
  std::optional<TimestepSpacing> timestep_spacing = {};
  /// Added to every timestep of leading spacing (Stable Diffusion uses 1); diffusers' `steps_offset`.
  int steps_offset = 0;
  /// linspace and leading: place N + 1 points and drop the smallest, so that the last step starts above
  /// timestep 0 (diffusers' DPMSolverMultistepScheduler); every timestep when N + 1 > T. Trailing: no
  /// effect. Unset: the sampler's default (true: DPM-Solver, UniPC; false: the others).
  std::optional<bool> drop_final_timestep = {};
  /// If not empty: the timesteps to visit, strictly decreasing, replacing the four options above
  /// (diffusers' `set_timesteps(timesteps=...)`).
  std::vector<int> timesteps = {};
  /// diffusers' use_karras_sigmas: the same as sigma_spacing = SigmaSpacing::karras (which sigma_spacing
  /// must then leave at timesteps or say too).
  bool use_karras_sigmas = false;
  /// The noise levels (sigma-space samplers).
  SigmaSpacing sigma_spacing = SigmaSpacing::timesteps;
  /// The ends of a ramp. Unset: the sampler's default (training: DPM-Solver, UniPC; spaced: the others).
  std::optional<SigmaEnds> sigma_ends = {};
  /// rho of the karras (default 7) and polyexponential (default 1) ramps.
  std::optional<double> rho = {};
  /// If not empty: the noise levels of the steps, strictly decreasing and positive, replacing every option
  /// above (diffusers' `set_timesteps(sigmas=...)`, k-diffusion's sigmas argument without its final 0);
  /// the model sees the nearest training timestep of each.
  std::vector<double> sigmas = {};
  /// The noise level after the last step (appended to the sigmas).
  FinalSigma final_sigma = FinalSigma::zero;
};

/// A sampler's grid defaults and what its steps support: each sampler class has its own as
/// `static constexpr GridDefaults grid_defaults`, which make_grid uses for the GridOptions fields left
/// unset. The members' defaults are the generic ones of make_grid(schedule, options, fn).
struct GridDefaults {
  /// N when GridOptions::num_inference_steps is unset; 0 means T, every training timestep (DDPM).
  int num_inference_steps = 50;
  TimestepSpacing timestep_spacing = TimestepSpacing::leading;
  bool drop_final_timestep = false;
  SigmaEnds sigma_ends = SigmaEnds::spaced;
  /// true: the sampler steps through noise levels and takes every sigma option; false: it steps through
  /// timesteps only (DDPM, DDIM, PNDM), and make_grid rejects use_karras_sigmas, sigma_spacing, sigma_ends,
  /// rho, sigmas and final_sigma set away from their defaults.
  bool sigma_grid = true;
  /// true: an explicit timestep list and drop_final_timestep are accepted; false: the sampler steps
  /// through the N spaced timesteps of Eq. (S4) only (PNDM, whose steps go from t to t - T / N), and
  /// make_grid rejects both.
  bool explicit_timesteps = true;

  /// diffusers' EulerDiscreteScheduler grid, which its sigma-space relatives share (Euler ancestral, Heun,
  /// LMS, KDPM2, DPMSolverSDE, and k-diffusion's samplers on it): N = 50, linspace spacing, ramps between
  /// the sigmas of the first and the last spaced timestep.
  static constexpr GridDefaults euler_discrete() {
    return {.num_inference_steps = 50,
            .timestep_spacing = TimestepSpacing::linspace,
            .drop_final_timestep = false,
            .sigma_ends = SigmaEnds::spaced,
            .sigma_grid = true,
            .explicit_timesteps = true};
  }
  /// diffusers' DPMSolverMultistepScheduler grid (also UniPCMultistepScheduler's): N = 20, linspace spacing
  /// with N + 1 points and the smallest dropped, ramps from sigma[T-1] down to sigma[0].
  static constexpr GridDefaults dpm_solver_multistep() {
    return {.num_inference_steps = 20,
            .timestep_spacing = TimestepSpacing::linspace,
            .drop_final_timestep = true,
            .sigma_ends = SigmaEnds::training,
            .sigma_grid = true,
            .explicit_timesteps = true};
  }
};

/// The grid of a run of N steps.
struct Grid {
  /// The training timestep the model is called with before each step (N values, in [0, T)).
  std::vector<int> timesteps;
  /// The noise level of each step followed by the final one (N + 1 values; used by sigma-space samplers).
  std::vector<double> sigmas;
};

namespace detail {

/// sigma[t] = sqrt((1 - alpha_bar[t]) / alpha_bar[t]) in double, with a zero alpha_bar (zero terminal SNR)
/// replaced by 2^-24 as diffusers does, so that sigma_max is finite (about 4096).  [docs/samplers.md, (S12)]
template <class S>
std::vector<double> sigma_table(const NoiseSchedule<S>& schedule) {
  const std::vector<double>& ab = schedule.alphas_cumprod_double();
  std::vector<double> sigma(ab.size());
  for (std::size_t t = 0; t < ab.size(); ++t) {
    const double a = ab[t] > 0.0 ? ab[t] : 0x1p-24;
    sigma[t] = std::sqrt((1.0 - a) / a);
  }
  return sigma;
}

/// The spaced timesteps of N steps, optionally from N + 1 points with the smallest dropped.
inline std::vector<int> grid_timesteps(int T, int N, TimestepSpacing spacing, int steps_offset, bool drop_final) {
  if (!drop_final || spacing == TimestepSpacing::trailing) return inference_timesteps(T, N, spacing, steps_offset);
  if (N >= 1 && N + 1 > T) return inference_timesteps(T, N, TimestepSpacing::trailing);
  std::vector<int> ts = inference_timesteps(T, N + 1, spacing, steps_offset);
  ts.pop_back();
  return ts;
}

/// diffusers' use_karras_sigmas flag beside a sampler's sigma_spacing option: the flag asks for karras,
/// which the option must then leave at its default (or say too).
inline void check_karras_flag(const char* fn, bool use_karras_sigmas, SigmaSpacing spacing) {
  if (use_karras_sigmas && spacing != SigmaSpacing::timesteps && spacing != SigmaSpacing::karras) {
    throw_invalid_argument(std::string(fn) + ": use_karras_sigmas is true and sigma_spacing is " +
                           sigma_spacing_name(spacing) + ", but only one sigma ramp can be used");
  }
}

inline std::vector<double> sigma_ramp(SigmaSpacing spacing, double sigma_min, double sigma_max, int N,
                                      const std::optional<double>& rho) {
  switch (spacing) {
    case SigmaSpacing::karras: return karras_sigmas(sigma_min, sigma_max, N, rho.value_or(7.0));
    case SigmaSpacing::exponential: return exponential_sigmas(sigma_min, sigma_max, N);
    case SigmaSpacing::polyexponential: return polyexponential_sigmas(sigma_min, sigma_max, N, rho.value_or(1.0));
    case SigmaSpacing::timesteps: break;
  }
  return {};
}

/// make_grid on options whose optional fields are all set (resolved by make_grid).
template <std::floating_point S>
Grid build_grid(const NoiseSchedule<S>& schedule, const GridOptions& o, const char* fn) {
  const int T = schedule.num_train_timesteps();
  const std::string f = fn;
  const bool ramp = o.sigma_spacing != SigmaSpacing::timesteps;
  if (ramp && o.sigma_spacing != SigmaSpacing::karras && o.sigma_spacing != SigmaSpacing::exponential &&
      o.sigma_spacing != SigmaSpacing::polyexponential) {
    throw_invalid_argument(f + ": sigma_spacing is " + ddpm::detail::number_string(static_cast<int>(o.sigma_spacing)) +
                           ", but must be a SigmaSpacing");
  }
  if (*o.sigma_ends != SigmaEnds::training && *o.sigma_ends != SigmaEnds::spaced) {
    throw_invalid_argument(f + ": sigma_ends is SigmaEnds(" +
                           ddpm::detail::number_string(static_cast<int>(*o.sigma_ends)) +
                           "), but must be training or spaced");
  }
  if (o.final_sigma != FinalSigma::zero && o.final_sigma != FinalSigma::sigma_min) {
    // A value cast from an integer used to mean sigma_min silently.
    throw_invalid_argument(f + ": final_sigma is FinalSigma(" +
                           ddpm::detail::number_string(static_cast<int>(o.final_sigma)) +
                           "), but must be zero or sigma_min");
  }
  const std::vector<double> table = sigma_table(schedule);
  Grid g;
  if (!o.sigmas.empty()) {
    if (!o.timesteps.empty() || ramp) {
      throw_invalid_argument(
          f + ": sigmas is given together with " +
          (ramp ? std::string("sigma_spacing ") + sigma_spacing_name(o.sigma_spacing) : std::string("timesteps")) +
          ", but a sigma list replaces both; leave them at their defaults");
    }
    for (std::size_t k = 0; k < o.sigmas.size(); ++k) {
      const double s = o.sigmas[k];
      if (!(std::isfinite(s) && s > 0.0) || (k > 0 && !(s < o.sigmas[k - 1]))) {
        throw_invalid_argument(f + ": sigmas[" + ddpm::detail::number_string(k) + "] is " +
                               ddpm::detail::number_string(s) +
                               ", but the sigmas must be finite, > 0 and strictly decreasing");
      }
    }
    g.sigmas = o.sigmas;
  } else if (!o.timesteps.empty()) {
    if (ramp) {
      throw_invalid_argument(f + ": sigma_spacing is " + sigma_spacing_name(o.sigma_spacing) +
                             ", but a sigma ramp chooses its own timesteps; leave timesteps empty");
    }
    g.timesteps = checked_timesteps(T, o.timesteps);
  } else {
    const int N = *o.num_inference_steps;
    if (N < 1 || N > T) {
      throw_invalid_argument(f + ": num_inference_steps is " + ddpm::detail::number_string(N) +
                             ", but must be in [1, " + ddpm::detail::number_string(T) + "] (T)");
    }
    if (!(ramp && *o.sigma_ends == SigmaEnds::training)) {
      g.timesteps = grid_timesteps(T, N, *o.timestep_spacing, o.steps_offset, *o.drop_final_timestep);
    }
  }
  if (ramp || !o.sigmas.empty()) {
    if (T < 2) {
      throw_invalid_argument(f + ": sigma_spacing " + sigma_spacing_name(o.sigma_spacing) +
                             " and sigma lists need T >= 2, but T is " + ddpm::detail::number_string(T));
    }
    if (ramp) {
      const bool training = *o.sigma_ends == SigmaEnds::training;
      const double sigma_min = training ? table.front() : table[static_cast<std::size_t>(g.timesteps.back())];
      const double sigma_max = training ? table.back() : table[static_cast<std::size_t>(g.timesteps.front())];
      const int n = training ? *o.num_inference_steps : static_cast<int>(g.timesteps.size());
      g.sigmas = sigma_ramp(o.sigma_spacing, sigma_min, sigma_max, n, o.rho);
    }
    g.timesteps.resize(g.sigmas.size());
    for (std::size_t k = 0; k < g.sigmas.size(); ++k) {
      g.timesteps[k] = static_cast<int>(std::nearbyint(sigma_to_timestep(table, g.sigmas[k])));
    }
  } else {
    for (int t : g.timesteps) g.sigmas.push_back(table[static_cast<std::size_t>(t)]);
  }
  g.sigmas.push_back(o.final_sigma == FinalSigma::zero ? 0.0 : table.front());
  return g;
}

}  // namespace detail

/// The grid of a run: its timesteps and sigmas as GridOptions say, the fields left unset taken from the
/// sampler's GridDefaults `d`.                                            [docs/samplers.md, Eqs. (S4)-(S6)]
///   - sigmas given: they are the steps' noise levels;
///   - else timesteps given: those (checked_timesteps);
///   - else N spaced timesteps (inference_timesteps, or N + 1 with the smallest dropped);
/// then the sigmas are sigma[t] at the timesteps (sigma_spacing timesteps) or the ramp between the ends
/// that sigma_ends names; wherever sigmas are not those of the timesteps, each timestep is the nearest one
/// of its sigma, round(sigma_to_timestep(...)). The final sigma (0 or sigma[0]) is appended. sigma[t] is
/// Eq. (12) of docs/math.md in double, with alpha_bar = 0 (zero terminal SNR) replaced by 2^-24.
/// use_karras_sigmas is sigma_spacing karras. `fn` names the caller in error messages.
/// Throws ddpm::invalid_argument if a sampler that steps through timesteps only (d.sigma_grid false) is
/// given use_karras_sigmas, sigma_spacing, sigma_ends, rho, sigmas or final_sigma away from its default, a
/// sampler without explicit timesteps (d.explicit_timesteps false) is given a timestep list or
/// drop_final_timestep true, use_karras_sigmas is combined with another ramp, sigma_spacing, sigma_ends or final_sigma
/// is not one of its enumerators (a value cast from an integer), N is outside [1, T] (when used), the spacing/offset or
/// timestep list is bad (see inference_timesteps, checked_timesteps), a ramp is combined with a timestep list, a ramp
/// or a sigma list needs T >= 2 and T is 1, rho is not finite and positive, the sigma list is combined with a timestep
/// list or a ramp, or the sigmas are not positive, finite and strictly decreasing.
template <std::floating_point S>
Grid make_grid(const NoiseSchedule<S>& schedule, const GridOptions& o, const GridDefaults& d,
               const char* fn = "ddpm::make_grid") {
  const std::string f = fn;
  detail::check_karras_flag(fn, o.use_karras_sigmas, o.sigma_spacing);
  if (!d.sigma_grid) {
    const std::string only = ", but " + f + " steps through timesteps only (no sigma options)";
    if (o.use_karras_sigmas)
      detail::throw_invalid_argument(f + ": use_karras_sigmas is true" + only + "; leave it false");
    if (o.sigma_spacing != SigmaSpacing::timesteps) {
      const std::string name = o.sigma_spacing == SigmaSpacing::karras ||
                                       o.sigma_spacing == SigmaSpacing::exponential ||
                                       o.sigma_spacing == SigmaSpacing::polyexponential
                                   ? std::string(sigma_spacing_name(o.sigma_spacing))
                                   : "SigmaSpacing(" + detail::number_string(static_cast<int>(o.sigma_spacing)) + ")";
      detail::throw_invalid_argument(f + ": sigma_spacing is " + name + only + "; leave it at timesteps");
    }
    if (o.sigma_ends) {
      const std::string name = *o.sigma_ends == SigmaEnds::training ? "training"
                               : *o.sigma_ends == SigmaEnds::spaced
                                   ? "spaced"
                                   : "SigmaEnds(" + detail::number_string(static_cast<int>(*o.sigma_ends)) + ")";
      detail::throw_invalid_argument(f + ": sigma_ends is " + name + only + "; leave it unset");
    }
    if (o.rho)
      detail::throw_invalid_argument(f + ": rho is " + detail::number_string(*o.rho) + only + "; leave it unset");
    if (!o.sigmas.empty()) {
      detail::throw_invalid_argument(f + ": sigmas has " + detail::number_string(o.sigmas.size()) + " entries" + only +
                                     "; leave it empty (a timestep list goes in timesteps)");
    }
    if (o.final_sigma != FinalSigma::zero) {
      const std::string name = o.final_sigma == FinalSigma::sigma_min
                                   ? "sigma_min"
                                   : "FinalSigma(" + detail::number_string(static_cast<int>(o.final_sigma)) + ")";
      detail::throw_invalid_argument(f + ": final_sigma is " + name + only + "; leave it at zero");
    }
  }
  if (!d.explicit_timesteps) {
    const std::string spaced = ", but " + f + " steps through the N spaced timesteps only (from t to t - T / N)";
    if (!o.timesteps.empty()) {
      detail::throw_invalid_argument(f + ": timesteps has " + detail::number_string(o.timesteps.size()) + " entries" +
                                     spaced + "; leave it empty");
    }
    if (o.drop_final_timestep.value_or(false)) {
      detail::throw_invalid_argument(f + ": drop_final_timestep is true" + spaced + "; leave it unset or false");
    }
  }
  const int T = schedule.num_train_timesteps();
  GridOptions r = o;
  // A sampler whose default is every training timestep (N = 0 in its defaults) also reads an explicit 0 so.
  const int default_n = d.num_inference_steps == 0 ? T : d.num_inference_steps;
  r.num_inference_steps = o.num_inference_steps.value_or(default_n);
  if (d.num_inference_steps == 0 && *r.num_inference_steps == 0) r.num_inference_steps = T;
  r.timestep_spacing = o.timestep_spacing.value_or(d.timestep_spacing);
  r.drop_final_timestep = o.drop_final_timestep.value_or(d.drop_final_timestep);
  r.sigma_ends = o.sigma_ends.value_or(d.sigma_ends);
  if (o.use_karras_sigmas) r.sigma_spacing = SigmaSpacing::karras;
  return detail::build_grid(schedule, r, fn);
}

/// make_grid with the generic defaults GridDefaults{} (N = 50, leading spacing, no dropped timestep, ramps
/// between the spaced ends; every option supported), for a grid built outside a sampler.
template <std::floating_point S>
Grid make_grid(const NoiseSchedule<S>& schedule, const GridOptions& o, const char* fn = "ddpm::make_grid") {
  return make_grid(schedule, o, GridDefaults{}, fn);
}

}  // namespace ddpm
