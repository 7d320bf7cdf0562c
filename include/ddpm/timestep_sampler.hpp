// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// Timestep samplers for training: which t each batch element is trained at, and the weight that keeps the
// loss estimate unbiased. Every draw comes from a ddpm::NoiseSource (NoiseSource::uniform), so a run is
// reproducible: one uniform per batch element, t = the inverse CDF of p at it.      [docs/training.md]
//   UniformTimestepSampler:      p_t = 1 / T, weights 1
//   LossSecondMomentSampler:     improved-diffusion's "loss-second-moment" importance sampler
// Bring your own: any type with sample(NoiseSource&, std::span<int> t, std::span<double> weights) and
// num_steps() is a TimestepSampler.

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "ddpm/error.hpp"
#include "ddpm/random.hpp"

namespace ddpm {

/// A timestep sampler: `sample(noise, t, weights)` writes one timestep in [0, num_steps()) and one weight
/// per element of t (t.size() == weights.size()), drawing only from `noise`.
template <class T>
concept TimestepSampler = requires(T& s, NoiseSource& noise, std::span<int> t, std::span<double> w) {
  s.sample(noise, t, w);
  { s.num_steps() } -> std::convertible_to<int>;
};

/// Timesteps and weights of one batch (the returning form of a sampler's draw).
struct TimestepDraw {
  std::vector<int> t;
  std::vector<double> weights;
};

namespace detail {

inline void check_draw_spans(const char* fn, std::span<int> t, std::span<double> weights) {
  if (t.size() != weights.size()) {
    throw_invalid_argument(std::string(fn) + ": weights holds " + ddpm::detail::number_string(weights.size()) +
                           " values, but must hold one per timestep (" + ddpm::detail::number_string(t.size()) + ")");
  }
}

inline void check_num_steps(const char* fn, int T) {
  if (T < 1) throw_invalid_argument(std::string(fn) + ": T is " + ddpm::detail::number_string(T) + ", but must be >= 1");
}

}  // namespace detail

/// The uniform sampler: t = min(floor(u T), T - 1) for u = noise.uniform(), weight 1 (improved-diffusion's
/// UniformSampler, whose importance weights 1 / (T p_t) are all 1).
class UniformTimestepSampler {
 public:
  /// Throws ddpm::invalid_argument if T < 1.
  explicit UniformTimestepSampler(int T) : T_(T) { detail::check_num_steps("ddpm::UniformTimestepSampler", T); }

  int num_steps() const noexcept { return T_; }

  /// Writes t.size() timesteps (one uniform each, advancing `noise` by t.size()) and weights of 1.
  /// Throws ddpm::invalid_argument if weights.size() != t.size().
  void sample(NoiseSource& noise, std::span<int> t, std::span<double> weights) const {
    detail::check_draw_spans("ddpm::UniformTimestepSampler::sample", t, weights);
    noise.uniform(weights);  // the uniforms pass through weights, then weights become 1
    for (std::size_t i = 0; i < t.size(); ++i) {
      t[i] = std::min(static_cast<int>(weights[i] * T_), T_ - 1);
      weights[i] = 1.0;
    }
  }

  TimestepDraw sample(NoiseSource& noise, int batch) const {
    if (batch < 0) detail::throw_invalid_argument("ddpm::UniformTimestepSampler::sample: batch is " + ddpm::detail::number_string(batch) + ", but must be >= 0");
    TimestepDraw d{std::vector<int>(static_cast<std::size_t>(batch)), std::vector<double>(static_cast<std::size_t>(batch))};
    sample(noise, d.t, d.weights);
    return d;
  }

 private:
  int T_;
};

/// improved-diffusion's LossSecondMomentResampler: the last `history` losses of each t are kept; until
/// every t has `history` of them p is uniform, afterwards                           [docs/training.md]
///   p_t = (1 - uniform_prob) sqrt(mean(L_t^2)) / sum_s sqrt(mean(L_s^2)) + uniform_prob / T
/// and each drawn t carries the weight 1 / (T p_t), so that E[weight * L_t] = mean_t L_t (unbiased).
/// t is the inverse CDF of p at u = noise.uniform(): the first index whose cumulative sum (normalised by
/// its last value, as numpy's choice does) exceeds u.
class LossSecondMomentSampler {
 public:
  /// Throws ddpm::invalid_argument if T < 1, history < 1 or uniform_prob is outside [0, 1].
  explicit LossSecondMomentSampler(int T, int history = 10, double uniform_prob = 0.001)
      : T_(T), history_(history), uniform_prob_(uniform_prob) {
    const char* fn = "ddpm::LossSecondMomentSampler";
    detail::check_num_steps(fn, T);
    if (history < 1) {
      detail::throw_invalid_argument(std::string(fn) + ": history is " + ddpm::detail::number_string(history) + ", but must be >= 1");
    }
    if (!(uniform_prob >= 0.0 && uniform_prob <= 1.0)) {
      detail::throw_invalid_argument(std::string(fn) + ": uniform_prob is " + ddpm::detail::number_string(uniform_prob) +
                                     ", but must be in [0, 1]");
    }
    losses_.assign(static_cast<std::size_t>(T) * static_cast<std::size_t>(history), 0.0);
    counts_.assign(static_cast<std::size_t>(T), 0);
    p_.assign(static_cast<std::size_t>(T), 1.0 / T);
    cdf_.resize(static_cast<std::size_t>(T));
    update_cdf();
  }

  int num_steps() const noexcept { return T_; }
  int history() const noexcept { return history_; }
  double uniform_prob() const noexcept { return uniform_prob_; }

  /// True once every timestep holds `history` losses (p is uniform until then).
  bool warmed_up() const noexcept {
    return std::all_of(counts_.begin(), counts_.end(), [this](int c) { return c == history_; });
  }

  /// The current probabilities p_t (they sum to 1).
  const std::vector<double>& probabilities() const noexcept { return p_; }

  /// Records the losses of a batch (improved-diffusion's update_with_all_losses): for each (t[i],
  /// losses[i]) in order, append to t's history, dropping its oldest loss once it holds `history`.
  /// Throws ddpm::invalid_argument if the sizes differ, a t is outside [0, T) or a loss is not finite.
  void update(std::span<const int> t, std::span<const double> losses) {
    const char* fn = "ddpm::LossSecondMomentSampler::update";
    if (t.size() != losses.size()) {
      detail::throw_invalid_argument(std::string(fn) + ": losses holds " + ddpm::detail::number_string(losses.size()) +
                                     " values, but must hold one per timestep (" + ddpm::detail::number_string(t.size()) + ")");
    }
    for (std::size_t i = 0; i < t.size(); ++i) {
      if (t[i] < 0 || t[i] >= T_) {
        detail::throw_invalid_argument(std::string(fn) + ": t[" + ddpm::detail::number_string(i) + "] is " + ddpm::detail::number_string(t[i]) +
                                       ", but must be in [0, " + ddpm::detail::number_string(T_) + ")");
      }
      if (!std::isfinite(losses[i])) {
        detail::throw_invalid_argument(std::string(fn) + ": losses[" + ddpm::detail::number_string(i) + "] is " +
                                       ddpm::detail::number_string(losses[i]) + ", but must be finite");
      }
    }
    for (std::size_t i = 0; i < t.size(); ++i) {
      const auto ti = static_cast<std::size_t>(t[i]);
      double* h = losses_.data() + ti * static_cast<std::size_t>(history_);
      int& count = counts_[ti];
      if (count == history_) {
        std::copy(h + 1, h + history_, h);
        h[history_ - 1] = losses[i];
      } else {
        h[count++] = losses[i];
      }
    }
    update_probabilities();
  }

  /// Writes t.size() timesteps drawn from p (one uniform each, advancing `noise` by t.size()) and their
  /// weights 1 / (T p_t). Throws ddpm::invalid_argument if weights.size() != t.size().
  void sample(NoiseSource& noise, std::span<int> t, std::span<double> weights) const {
    detail::check_draw_spans("ddpm::LossSecondMomentSampler::sample", t, weights);
    noise.uniform(weights);
    for (std::size_t i = 0; i < t.size(); ++i) {
      const auto it = std::upper_bound(cdf_.begin(), cdf_.end(), weights[i]);
      const int ti = std::min(static_cast<int>(it - cdf_.begin()), T_ - 1);
      t[i] = ti;
      weights[i] = 1.0 / (T_ * p_[static_cast<std::size_t>(ti)]);
    }
  }

  TimestepDraw sample(NoiseSource& noise, int batch) const {
    if (batch < 0) detail::throw_invalid_argument("ddpm::LossSecondMomentSampler::sample: batch is " + ddpm::detail::number_string(batch) + ", but must be >= 0");
    TimestepDraw d{std::vector<int>(static_cast<std::size_t>(batch)), std::vector<double>(static_cast<std::size_t>(batch))};
    sample(noise, d.t, d.weights);
    return d;
  }

 private:
  void update_probabilities() {
    if (!warmed_up()) {
      std::fill(p_.begin(), p_.end(), 1.0 / T_);
    } else {
      double total = 0.0;
      for (int s = 0; s < T_; ++s) {
        const double* h = losses_.data() + static_cast<std::size_t>(s) * static_cast<std::size_t>(history_);
        double sq = 0.0;
        for (int k = 0; k < history_; ++k) sq += h[k] * h[k];
        p_[static_cast<std::size_t>(s)] = std::sqrt(sq / history_);
        total += p_[static_cast<std::size_t>(s)];
      }
      for (double& p : p_) {
        // All-zero losses leave the second moments 0: p is then uniform_prob / T alone, renormalised below.
        p = (total > 0.0 ? p / total : 1.0 / T_) * (1.0 - uniform_prob_) + uniform_prob_ / T_;
      }
    }
    update_cdf();
  }

  void update_cdf() {
    double running = 0.0;
    for (std::size_t s = 0; s < p_.size(); ++s) cdf_[s] = running += p_[s];
    for (double& c : cdf_) c /= running;
  }

  int T_;
  int history_;
  double uniform_prob_;
  std::vector<double> losses_;  // T x history, oldest first
  std::vector<int> counts_;
  std::vector<double> p_, cdf_;
};

}  // namespace ddpm
