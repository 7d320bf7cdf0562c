// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// NoiseSchedule<S>: the betas of a diffusion process and every per-timestep coefficient derived from
// them, computed once in double precision and cast to S once (as improved-diffusion does), plus the
// improved-DDPM respacing and the zero-terminal-SNR rescale.            [docs/math.md, Eqs. (1)-(3), (9)]

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdio>
#include <numbers>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "ddpm/error.hpp"

namespace ddpm {

template <std::floating_point S>
class NoiseSchedule {
 public:
  using Array = Eigen::Array<S, Eigen::Dynamic, 1>;
  using Scalar = S;

  /// Betas evenly spaced from beta_start to beta_end (diffusers' "linear"; the DDPM paper's schedule).
  ///   beta[i] = beta_start + (beta_end - beta_start) * i / (T - 1)
  /// improved-diffusion scales both ends by 1000 / T; pass them scaled to get its schedule at other T.
  /// Throws ddpm::invalid_argument if T < 1 or an end is outside (0, 1).
  static NoiseSchedule linear(int T = 1000, double beta_start = 1e-4, double beta_end = 0.02) {
    check_steps("NoiseSchedule::linear", T);
    check_beta("NoiseSchedule::linear", "beta_start", beta_start);
    check_beta("NoiseSchedule::linear", "beta_end", beta_end);
    std::vector<double> betas(static_cast<std::size_t>(T));
    for (int i = 0; i < T; ++i) betas[i] = lerp_grid(beta_start, beta_end, i, T);
    return NoiseSchedule(std::move(betas), "NoiseSchedule::linear");
  }

  /// Linear in sqrt(beta) (Stable Diffusion; diffusers' "scaled_linear").
  ///   beta[i] = (sqrt(beta_start) + (sqrt(beta_end) - sqrt(beta_start)) * i / (T - 1))^2
  /// Throws ddpm::invalid_argument if T < 1 or an end is outside (0, 1).
  static NoiseSchedule scaled_linear(int T = 1000, double beta_start = 0.00085, double beta_end = 0.012) {
    check_steps("NoiseSchedule::scaled_linear", T);
    check_beta("NoiseSchedule::scaled_linear", "beta_start", beta_start);
    check_beta("NoiseSchedule::scaled_linear", "beta_end", beta_end);
    std::vector<double> betas(static_cast<std::size_t>(T));
    for (int i = 0; i < T; ++i) {
      const double r = lerp_grid(std::sqrt(beta_start), std::sqrt(beta_end), i, T);
      betas[i] = r * r;
    }
    return NoiseSchedule(std::move(betas), "NoiseSchedule::scaled_linear");
  }

  /// The cosine schedule of improved DDPM (diffusers' "squaredcos_cap_v2").      [docs/math.md, Eq. (10)]
  ///   f(u) = cos^2(((u + s) / (1 + s)) * pi / 2),  beta[i] = min(1 - f((i + 1) / T) / f(i / T), max_beta)
  /// Throws ddpm::invalid_argument if T < 1, s < 0 or max_beta is outside (0, 1).
  static NoiseSchedule cosine(int T = 1000, double s = 0.008, double max_beta = 0.999) {
    check_steps("NoiseSchedule::cosine", T);
    if (!(std::isfinite(s) && s >= 0.0)) {
      detail::throw_invalid_argument("NoiseSchedule::cosine: s is " + ddpm::detail::number_string(s) +
                                     ", but must be finite and >= 0");
    }
    check_beta("NoiseSchedule::cosine", "max_beta", max_beta);
    auto f = [s](double u) {
      const double c = std::cos((u + s) / (1.0 + s) * std::numbers::pi / 2.0);
      return c * c;
    };
    std::vector<double> betas(static_cast<std::size_t>(T));
    for (int i = 0; i < T; ++i) {
      const double u0 = static_cast<double>(i) / T;
      const double u1 = static_cast<double>(i + 1) / T;
      betas[i] = std::min(1.0 - f(u1) / f(u0), max_beta);
    }
    return NoiseSchedule(std::move(betas), "NoiseSchedule::cosine");
  }

  /// Betas on a sigmoid over [-6, 6] (diffusers' "sigmoid", from GeoDiff).
  ///   beta[i] = sigmoid(-6 + 12 * i / (T - 1)) * (beta_end - beta_start) + beta_start
  /// Throws ddpm::invalid_argument if T < 1 or an end is outside (0, 1).
  static NoiseSchedule sigmoid(int T = 1000, double beta_start = 1e-4, double beta_end = 0.02) {
    check_steps("NoiseSchedule::sigmoid", T);
    check_beta("NoiseSchedule::sigmoid", "beta_start", beta_start);
    check_beta("NoiseSchedule::sigmoid", "beta_end", beta_end);
    std::vector<double> betas(static_cast<std::size_t>(T));
    for (int i = 0; i < T; ++i) {
      const double u = lerp_grid(-6.0, 6.0, i, T);
      betas[i] = 1.0 / (1.0 + std::exp(-u)) * (beta_end - beta_start) + beta_start;
    }
    return NoiseSchedule(std::move(betas), "NoiseSchedule::sigmoid");
  }

  /// A schedule from explicit betas (index 0 is the first forward step).
  /// Throws ddpm::invalid_argument if betas is empty or any beta is not finite or outside (0, 1).
  static NoiseSchedule from_betas(const std::vector<double>& betas) {
    if (betas.empty()) {
      detail::throw_invalid_argument("NoiseSchedule::from_betas: betas is empty, but must hold at least one value");
    }
    return NoiseSchedule(betas, "NoiseSchedule::from_betas");
  }

  /// The same process rescaled to zero terminal SNR (Lin et al. 2024, Algorithm 1).  [docs/math.md, Eq. (11)]
  ///   r = sqrt(alpha_bar);  r' = (r - r[T-1]) * r[0] / (r[0] - r[T-1]);  alpha_bar' = r'^2
  /// so sqrt(alpha_bar'[0]) = sqrt(alpha_bar[0]) and alpha_bar'[T-1] = 0 exactly (beta'[T-1] = 1).
  /// Throws ddpm::invalid_argument if T < 2 (the first and last step must differ).
  NoiseSchedule rescaled_zero_terminal_snr() const {
    const int T = num_train_timesteps();
    if (T < 2) {
      detail::throw_invalid_argument("NoiseSchedule::rescaled_zero_terminal_snr: the schedule has T = " +
                                     ddpm::detail::number_string(T) + " steps, but needs T >= 2");
    }
    std::vector<double> r(static_cast<std::size_t>(T));
    double alpha_bar = 1.0;
    for (int i = 0; i < T; ++i) {
      alpha_bar *= 1.0 - betas64_[i];
      r[i] = std::sqrt(alpha_bar);
    }
    const double first = r.front();
    const double last = r.back();
    for (double& v : r) v = (v - last) * first / (first - last);
    std::vector<double> betas(static_cast<std::size_t>(T));
    betas[0] = 1.0 - r[0] * r[0];
    for (int i = 1; i < T; ++i) betas[i] = 1.0 - (r[i] * r[i]) / (r[i - 1] * r[i - 1]);
    betas[T - 1] = 1.0;  // r[T-1] is 0 exactly; keep it exact.
    NoiseSchedule result(std::move(betas), "NoiseSchedule::rescaled_zero_terminal_snr", /*allow_terminal_one=*/true);
    result.timestep_map_ = timestep_map_;
    return result;
  }

  /// The number of training timesteps T (diffusers' `num_train_timesteps`); valid indices are 0..T-1.
  int num_train_timesteps() const { return static_cast<int>(betas_.size()); }
  /// The former name of num_train_timesteps(), kept for one release (a sampler's N is its
  /// num_inference_steps()).
  [[deprecated("use num_train_timesteps() (T); num_steps() was ambiguous with a sampler's N")]] int num_steps() const {
    return num_train_timesteps();
  }

  const Array& betas() const { return betas_; }
  const Array& alphas() const { return alphas_; }
  const Array& alphas_cumprod() const { return alphas_cumprod_; }
  /// [1, alpha_bar[0], ..., alpha_bar[T-2]]
  const Array& alphas_cumprod_prev() const { return alphas_cumprod_prev_; }
  const Array& sqrt_alphas_cumprod() const { return sqrt_alphas_cumprod_; }
  const Array& sqrt_one_minus_alphas_cumprod() const { return sqrt_one_minus_alphas_cumprod_; }
  /// 1 - alpha_bar, the variance of q(x_t | x_0), and its log (both computed before the cast).
  const Array& one_minus_alphas_cumprod() const { return one_minus_alphas_cumprod_; }
  const Array& log_one_minus_alphas_cumprod() const { return log_one_minus_alphas_cumprod_; }
  /// 1 / sqrt(alpha_bar) (infinite where alpha_bar is 0, under zero terminal SNR).
  const Array& sqrt_recip_alphas_cumprod() const { return sqrt_recip_alphas_cumprod_; }
  /// sqrt(1 / alpha_bar - 1).
  const Array& sqrt_recipm1_alphas_cumprod() const { return sqrt_recipm1_alphas_cumprod_; }
  /// beta[t] (1 - alpha_bar_prev[t]) / (1 - alpha_bar[t]) (0 at t = 0).         [docs/math.md, Eq. (7)]
  const Array& posterior_variance() const { return posterior_variance_; }
  /// log of posterior_variance with index 0 replaced by index 1 (the variance at t = 0 is 0).
  const Array& posterior_log_variance_clipped() const { return posterior_log_variance_clipped_; }
  /// beta[t] sqrt(alpha_bar_prev[t]) / (1 - alpha_bar[t]), the weight of x0 in the posterior mean.
  const Array& posterior_mean_coef1() const { return posterior_mean_coef1_; }
  /// (1 - alpha_bar_prev[t]) sqrt(alpha[t]) / (1 - alpha_bar[t]), the weight of x_t in the posterior mean.
  const Array& posterior_mean_coef2() const { return posterior_mean_coef2_; }
  /// Signal-to-noise ratio alpha_bar / (1 - alpha_bar).                           [docs/math.md, Eq. (12)]
  const Array& snr() const { return snr_; }
  /// Karras / k-diffusion noise level sigma = sqrt((1 - alpha_bar) / alpha_bar) = 1 / sqrt(snr).
  const Array& sigmas() const { return sigmas_; }
  /// The betas in double precision, as the schedule was built (the cast arrays above derive from these).
  const std::vector<double>& betas_double() const { return betas64_; }
  /// alpha_bar in double precision, for coefficients that are derived at call time and cast once.
  const std::vector<double>& alphas_cumprod_double() const { return alphas_cumprod64_; }

  /// The training timestep of each index: the identity, except for a respaced schedule, whose index i
  /// stands for training timestep timestep_map()[i]. Models are always called with the training timestep.
  const std::vector<int>& timestep_map() const { return timestep_map_; }

  /// Throws ddpm::invalid_argument unless 0 <= t < T. `fn` names the calling function.
  void check_timestep(const char* fn, int t) const {
    if (t < 0 || t >= num_train_timesteps()) {
      detail::throw_invalid_argument(std::string(fn) + ": t is " + ddpm::detail::number_string(t) + ", but must be in [0, " +
                                     ddpm::detail::number_string(num_train_timesteps()) + ")");
    }
  }

 private:
  template <std::floating_point>
  friend class NoiseSchedule;
  template <std::floating_point U>
  friend NoiseSchedule<U> respace(const NoiseSchedule<U>&, const std::vector<int>&);

  NoiseSchedule(std::vector<double> betas, const char* fn, bool allow_terminal_one = false)
      : betas64_(std::move(betas)) {
    const int T = static_cast<int>(betas64_.size());
    for (int i = 0; i < T; ++i) {
      const double b = betas64_[i];
      const bool terminal_one = allow_terminal_one && i == T - 1 && b == 1.0;
      if (!(std::isfinite(b) && b > 0.0 && (b < 1.0 || terminal_one))) {
        detail::throw_invalid_argument(std::string(fn) + ": beta[" + ddpm::detail::number_string(i) + "] is " + to_text(b) +
                                       ", but every beta must be finite and in (0, 1)");
      }
    }
    timestep_map_.resize(static_cast<std::size_t>(T));
    for (int i = 0; i < T; ++i) timestep_map_[i] = i;
    derive(fn);
  }

  // Every derived array is computed in double from the double betas and cast once.
  void derive(const char* fn) {
    const Eigen::Index T = static_cast<Eigen::Index>(betas64_.size());
    using A = Eigen::ArrayXd;
    const A beta = Eigen::Map<const A>(betas64_.data(), T);
    const A alpha = 1.0 - beta;
    A alpha_bar(T);
    double running = 1.0;
    for (Eigen::Index i = 0; i < T; ++i) alpha_bar[i] = running *= alpha[i];
    alphas_cumprod64_.assign(alpha_bar.data(), alpha_bar.data() + T);
    A alpha_bar_prev(T);
    alpha_bar_prev[0] = 1.0;
    alpha_bar_prev.tail(T - 1) = alpha_bar.head(T - 1);
    const A one_minus = 1.0 - alpha_bar;
    const A post_var = beta * (1.0 - alpha_bar_prev) / one_minus;
    // Scalar std::sqrt / std::log rather than Eigen's vectorised ones: under AVX-512, Eigen 3.4's fast-math
    // sqrt is off by up to 3 ulp and gives NaN for +inf (the zero-SNR sigma), and a schedule must not
    // depend on -march. It is computed once, so speed does not matter here.
    const auto sqrt_of = [](const A& a) -> A { return a.unaryExpr([](double v) { return std::sqrt(v); }); };
    const auto log_of = [](const A& a) -> A { return a.unaryExpr([](double v) { return std::log(v); }); };
    A post_log_var(T);
    // The true variance at t = 0 is 0; its log is replaced by the next one (improved-diffusion).
    // With a single step there is no next one, and beta[0] (the "fixed_large" choice) stands in.
    post_log_var[0] = T > 1 ? std::log(post_var[1]) : std::log(beta[0]);
    if (T > 1) post_log_var.tail(T - 1) = log_of(post_var.tail(T - 1));
    const A coef1 = beta * sqrt_of(alpha_bar_prev) / one_minus;
    const A coef2 = (1.0 - alpha_bar_prev) * sqrt_of(alpha) / one_minus;
    // A beta below 2^-53 rounds 1 - beta to 1, so 1 - alpha_bar is 0 at the first steps and the posterior
    // divides 0 by 0: every sample would be NaN. Refuse such a schedule here, naming the first bad index.
    for (Eigen::Index i = 0; i < T; ++i) {
      const double* bad_value = nullptr;
      const char* bad_name = nullptr;
      if (!std::isfinite(post_var[i])) {
        bad_value = &post_var[i], bad_name = "posterior_variance";
      } else if (!std::isfinite(post_log_var[i])) {
        bad_value = &post_log_var[i], bad_name = "posterior_log_variance_clipped";
      } else if (!std::isfinite(coef1[i])) {
        bad_value = &coef1[i], bad_name = "posterior_mean_coef1";
      } else if (!std::isfinite(coef2[i])) {
        bad_value = &coef2[i], bad_name = "posterior_mean_coef2";
      }
      if (bad_name != nullptr) {
        detail::throw_invalid_argument(
            std::string(fn) + ": " + bad_name + "[" + detail::number_string(i) + "] is " + to_text(*bad_value) +
            " (beta[" + detail::number_string(i) + "] = " + to_text(beta[i]) + ", 1 - alpha_bar[" +
            detail::number_string(i) + "] = " + to_text(one_minus[i]) +
            "), but every derived quantity must be finite: betas below 2^-53 round 1 - beta to 1 in double");
      }
    }

    betas_ = beta.cast<S>();
    alphas_ = alpha.cast<S>();
    alphas_cumprod_ = alpha_bar.cast<S>();
    alphas_cumprod_prev_ = alpha_bar_prev.cast<S>();
    sqrt_alphas_cumprod_ = sqrt_of(alpha_bar).template cast<S>();
    sqrt_one_minus_alphas_cumprod_ = sqrt_of(one_minus).template cast<S>();
    one_minus_alphas_cumprod_ = one_minus.cast<S>();
    log_one_minus_alphas_cumprod_ = log_of(one_minus).template cast<S>();
    sqrt_recip_alphas_cumprod_ = (1.0 / sqrt_of(alpha_bar)).template cast<S>();
    // sqrt((1 - alpha_bar) / alpha_bar), not sqrt(1 / alpha_bar - 1), whose subtraction loses
    // log10(1 / (1 - alpha_bar)) digits where alpha_bar is near 1 (1 - alpha_bar itself is exact there).
    sqrt_recipm1_alphas_cumprod_ = sqrt_of(one_minus / alpha_bar).template cast<S>();
    posterior_variance_ = post_var.cast<S>();
    posterior_log_variance_clipped_ = post_log_var.cast<S>();
    posterior_mean_coef1_ = coef1.cast<S>();
    posterior_mean_coef2_ = coef2.cast<S>();
    snr_ = (alpha_bar / one_minus).cast<S>();
    sigmas_ = sqrt_of(one_minus / alpha_bar).template cast<S>();
  }

  static void check_steps(const char* fn, int T) {
    if (T < 1) detail::throw_invalid_argument(std::string(fn) + ": T is " + ddpm::detail::number_string(T) + ", but must be >= 1");
  }
  static void check_beta(const char* fn, const char* name, double v) {
    if (!(std::isfinite(v) && v > 0.0 && v < 1.0)) {
      detail::throw_invalid_argument(std::string(fn) + ": " + name + " is " + to_text(v) + ", but must be in (0, 1)");
    }
  }
  // NumPy's linspace: start + i * step with step = (stop - start) / (T - 1), the last value exactly stop.
  static double lerp_grid(double start, double stop, int i, int T) {
    if (T == 1) return start;
    if (i == T - 1) return stop;
    return start + i * ((stop - start) / (T - 1));
  }
  static std::string to_text(double v) { return detail::number_string(v); }

  std::vector<double> betas64_;
  std::vector<double> alphas_cumprod64_;
  std::vector<int> timestep_map_;
  Array betas_, alphas_, alphas_cumprod_, alphas_cumprod_prev_, sqrt_alphas_cumprod_,
      sqrt_one_minus_alphas_cumprod_, one_minus_alphas_cumprod_, log_one_minus_alphas_cumprod_, sqrt_recip_alphas_cumprod_, sqrt_recipm1_alphas_cumprod_,
      posterior_variance_, posterior_log_variance_clipped_, posterior_mean_coef1_, posterior_mean_coef2_, snr_,
      sigmas_;
};

/// Improved-DDPM respacing: a schedule over the kept timesteps only, with
///   beta'[i] = 1 - alpha_bar[kept[i]] / alpha_bar[kept[i-1]]   (alpha_bar[kept[-1]] = 1)
/// so that alpha_bar'[i] = alpha_bar[kept[i]]. timestep_map()[i] is kept[i] mapped through the parent's map,
/// the timestep the model is called with.                                      [docs/math.md, Eq. (13)]
/// Throws ddpm::invalid_argument if kept is empty, not strictly increasing, or has an index outside [0, T).
template <std::floating_point S>
NoiseSchedule<S> respace(const NoiseSchedule<S>& schedule, const std::vector<int>& kept) {
  const int T = schedule.num_train_timesteps();
  if (kept.empty()) detail::throw_invalid_argument("ddpm::respace: kept is empty, but must hold at least one timestep");
  for (std::size_t i = 0; i < kept.size(); ++i) {
    if (kept[i] < 0 || kept[i] >= T) {
      detail::throw_invalid_argument("ddpm::respace: kept[" + ddpm::detail::number_string(i) + "] is " + ddpm::detail::number_string(kept[i]) +
                                     ", but must be in [0, " + ddpm::detail::number_string(T) + ")");
    }
    if (i > 0 && kept[i] <= kept[i - 1]) {
      detail::throw_invalid_argument("ddpm::respace: kept[" + ddpm::detail::number_string(i) + "] is " + ddpm::detail::number_string(kept[i]) +
                                     ", but kept must be strictly increasing");
    }
  }
  const std::vector<double>& parent = schedule.betas_double();
  std::vector<double> betas;
  betas.reserve(kept.size());
  double alpha_bar = 1.0, last = 1.0;
  std::size_t next = 0;
  for (int i = 0; i < T && next < kept.size(); ++i) {
    alpha_bar *= 1.0 - parent[i];
    if (i == kept[next]) {
      betas.push_back(1.0 - alpha_bar / last);
      last = alpha_bar;
      ++next;
    }
  }
  // A respaced zero-terminal-SNR schedule keeps its exact terminal beta of 1.
  const bool terminal_one = !betas.empty() && betas.back() == 1.0;
  NoiseSchedule<S> result(std::move(betas), "ddpm::respace", terminal_one);
  for (std::size_t i = 0; i < kept.size(); ++i) result.timestep_map_[i] = schedule.timestep_map()[kept[i]];
  return result;
}

/// Which timesteps improved-diffusion keeps for a respacing spec (its `space_timesteps`), to pass to
/// respace(); not the inference timesteps of a sampler (inference_timesteps, timesteps.hpp). [Eq. (13)]
///  - "ddimN": the evenly strided set range(0, T, k) for the first integer stride k that gives exactly N;
///  - "N" or "N1,N2,...": T is cut into as many equal sections (the first T % sections one longer), and
///    section i keeps Ni timesteps at fractional stride (size - 1) / (Ni - 1), rounded half to even.
/// Returns the kept timesteps in increasing order.
/// Throws ddpm::invalid_argument if T < 1, the spec does not parse, a count is < 1 or larger than its
/// section, or no integer stride gives exactly N for "ddimN".
inline std::vector<int> respacing_timesteps(int T, const std::string& spec) {
  const std::string fn = "ddpm::respacing_timesteps";
  if (T < 1) detail::throw_invalid_argument(fn + ": T is " + ddpm::detail::number_string(T) + ", but must be >= 1");
  auto parse_count = [&](const std::string& text) {
    if (text.empty() || text.size() > 9 || !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      detail::throw_invalid_argument(fn + ": spec is \"" + spec +
                                     "\", but must be \"ddimN\" or comma-separated positive counts such as \"10,15,20\"");
    }
    return std::stoi(text);
  };
  if (spec.rfind("ddim", 0) == 0) {
    const int desired = parse_count(spec.substr(4));
    // improved-diffusion tries strides 1, 2, ..., T - 1 and takes the first giving ceil(T / stride) = N
    // steps. The count does not grow with the stride, so that first stride is ceil(T / N) or there is
    // none: computed directly in 64 bits (the loop's T + stride - 1 overflowed for T near INT_MAX).
    if (desired >= 1) {
      const long long T64 = T;
      const long long stride = (T64 + desired - 1) / desired;
      if (stride < T64 && (T64 + stride - 1) / stride == desired) {
        std::vector<int> kept;
        kept.reserve(static_cast<std::size_t>(desired));
        for (long long t = 0; t < T64; t += stride) kept.push_back(static_cast<int>(t));
        return kept;
      }
    }
    detail::throw_invalid_argument(fn + ": spec is \"" + spec + "\", but no integer stride gives exactly " +
                                   ddpm::detail::number_string(desired) + " of T = " + ddpm::detail::number_string(T) + " steps");
  }
  std::vector<int> counts;
  std::size_t start = 0;
  while (true) {
    const std::size_t comma = spec.find(',', start);
    counts.push_back(parse_count(spec.substr(start, comma == std::string::npos ? std::string::npos : comma - start)));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  const int sections = static_cast<int>(counts.size());
  const int size_per = T / sections;
  const int extra = T % sections;
  std::vector<int> kept;
  int start_idx = 0;
  for (int i = 0; i < sections; ++i) {
    const int size = size_per + (i < extra ? 1 : 0);
    const int count = counts[i];
    if (count < 1 || count > size) {
      detail::throw_invalid_argument(fn + ": section " + ddpm::detail::number_string(i) + " of spec \"" + spec + "\" asks for " +
                                     ddpm::detail::number_string(count) + " steps, but must ask for 1 to " + ddpm::detail::number_string(size) +
                                     " (its length)");
    }
    const double frac_stride = count <= 1 ? 1.0 : static_cast<double>(size - 1) / (count - 1);
    double cur = 0.0;  // accumulated like improved-diffusion, then rounded half to even like Python's round
    for (int k = 0; k < count; ++k) {
      kept.push_back(start_idx + static_cast<int>(std::nearbyint(cur)));
      cur += frac_stride;
    }
    start_idx += size;
  }
  std::sort(kept.begin(), kept.end());
  kept.erase(std::unique(kept.begin(), kept.end()), kept.end());
  return kept;
}

/// The former name of respacing_timesteps, kept for one release.
[[deprecated("use respacing_timesteps (improved-diffusion respacing); inference_timesteps is diffusers' spacing")]]
inline std::vector<int> space_timesteps(int T, const std::string& spec) {
  return respacing_timesteps(T, spec);
}

}  // namespace ddpm
