// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// DPM++ SDE (k-diffusion's sample_dpmpp_sde; diffusers' DPMSolverSDEScheduler; the WebUI's "DPM++ SDE" and
// "DPM++ SDE Karras"): per noise interval a stochastic DPM-Solver++ step to an intermediate level and one from
// the interval's start to its end, each with ancestral noise that is an increment of one Brownian path, two
// model calls per interval, each its own step().                     [docs/samplers.md, Eqs. (S20), (S29)]

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include "ddpm/brownian_tree.hpp"
#include "ddpm/predictor.hpp"
#include "ddpm/random.hpp"
#include "ddpm/samplers/detail/sampler_base.hpp"
#include "ddpm/samplers/detail/two_stage.hpp"
#include "ddpm/samplers/grid.hpp"
#include "ddpm/samplers/sampler.hpp"
#include "ddpm/schedule.hpp"
#include "ddpm/tensor.hpp"
#include "ddpm/timesteps.hpp"

namespace ddpm {

/// Options of DPMPPSDESampler (diffusers' DPMSolverSDEScheduler; k-diffusion's sample_dpmpp_sde arguments).
struct DPMPPSDEOptions {
  /// The grid (GridOptions; DPMPPSDESampler::grid_defaults: as EulerSampler's). N is the number of
  /// noise intervals; use_karras_sigmas is "DPM++ SDE Karras".
  GridOptions grid = {};
  /// Bounds on the predicted x0 (not in the references). Default: none.
  Clipping clipping = {};
  /// Eq. (S20)'s eta (1: diffusers and k-diffusion's default; 0: deterministic DPM-Solver++(2S)).
  double eta = 1.0;
  /// Scales the noise (k-diffusion's s_noise, diffusers' step(s_noise=...)).
  double s_noise = 1.0;
  /// The intermediate level's place in log sigma, in (0, 1] (k-diffusion's r; diffusers uses 1/2).
  double r = 0.5;
  /// The Brownian tree's tolerance (torchsde's tol) when the step builds the tree from a noise source.
  double tolerance = 1e-6;
};

/// What a DPM++ SDE step accepts as noise for an x of scalar S and rank R: what every sampler accepts
/// (NoiseArgument: a tensor, a NoiseSource / PerImageNoiseSource, no_noise) or a source of normalized
/// Brownian increments (BrownianNoiseFor, e.g. BrownianTreeNoise). See DPMPPSDESampler for what each means.
template <class N, class S, int R>
concept SDENoiseArgument = NoiseArgument<N, S, R> || BrownianNoiseFor<N, S, R>;

/// DPM++ SDE.                                                          [docs/samplers.md, Eqs. (S20), (S29)]
/// Interval k from sigma_k to sigma_{k+1} > 0, in lambda = -log sigma with h = log(sigma_k / sigma_{k+1}),
/// sigma_s = sigma_k e^{-r h}, and (sd_1, su_1), (sd_2, su_2) the Eq. (S20) pairs of sigma_k -> sigma_s and
/// sigma_k -> sigma_{k+1} (x_ve = sqrt(1 + sigma^2) x, the variance-exploding sample):
///   stage 1, model at (x_ve, sigma_k) -> x0_1:
///     x_ve' = (sd_1 / sigma_k) x_ve - expm1(log(sd_1 / sigma_k)) x0_1 + s_noise su_1 z(sigma_k, sigma_s)
///   stage 2, model at (x_ve', sigma_s) -> x0_2, with D = (1 - 1/(2r)) x0_1 + 1/(2r) x0_2:
///     x_ve <- (sd_2 / sigma_k) x_ve - expm1(log(sd_2 / sigma_k)) D + s_noise su_2 z(sigma_k, sigma_{k+1})
/// (stage 2 starts again from the interval's x_ve, kept from stage 1); sigma_{k+1} = 0 is one Euler step,
/// x <- x0. z(a, b) = (W(b) - W(a)) / sqrt|b - a| is the normalized increment of a Brownian path W over the
/// noise levels, so the two stages' noises are correlated as one path makes them.
/// The noise argument of step():
///   - a tensor of x's shape: z itself, used as is (for replaying noise; the caller keeps the path);
///   - a BrownianNoiseFor source: called as noise(sigma_k, sigma_to, z) (sigma_to = sigma_s or sigma_{k+1});
///   - a NoiseSource or PerImageNoiseSource (what sample() passes): the step draws z from
///     BrownianTreeNoise(sigma_min, sigma_max, seed, {first_index, per_image, path = offset, tolerance}) (as
///     (W(to) - W(from)) / sqrt|to - from| from W at each level, queried once and kept for the next stage) of
///     the source's seed, first image index (per image for PerImageNoiseSource; stream 0 over the whole
///     tensor for NoiseSource) and current offset, over the grid's smallest positive and largest sigma, as
///     k-diffusion's default noise sampler; the source is read, never advanced (x_T drawn from it moves its
///     offset, and so gives the next batch another path);
///   - no_noise: only where the step adds none (eta = 0 or s_noise = 0, or the last Euler step).
/// Other noise sources are refused at compile time (independent draws are not one Brownian path).
/// timesteps() lists every model call (2N - 1 with a final sigma 0); a run steps in order.
template <std::floating_point S>
class DPMPPSDESampler : public detail::SamplerBase<DPMPPSDESampler<S>, S> {
  using Base = detail::SamplerBase<DPMPPSDESampler<S>, S>;
  friend Base;

  struct Interval {
    double from, to, mid;  // sigma_k, sigma_{k+1}, sigma_s
    bool two_stage;
  };

 public:
  /// The grid defaults (DPMSolverSDEScheduler's, EulerDiscreteScheduler's): N = 50, linspace spacing,
  /// ramps between the spaced ends.
  static constexpr GridDefaults grid_defaults = GridDefaults::euler_discrete();

  /// Throws ddpm::invalid_argument if the grid (see make_grid), clipping, eta, s_noise, r or tolerance is bad.
  explicit DPMPPSDESampler(NoiseSchedule<S> schedule, DPMPPSDEOptions options = {})
      : Base(std::move(schedule)), options_(std::move(options)) {
    const char* fn = "ddpm::DPMPPSDESampler";
    detail::check_clipping(fn, options_.clipping);
    detail::check_ancestral(fn, options_.eta, options_.s_noise);
    if (!(options_.r > 0.0 && options_.r <= 1.0)) {
      detail::throw_invalid_argument(std::string(fn) + ": r is " + detail::number_string(options_.r) +
                                     ", but must be in (0, 1]");
    }
    if (!(std::isfinite(options_.tolerance) && options_.tolerance > 0.0)) {
      detail::throw_invalid_argument(std::string(fn) + ": tolerance is " + detail::number_string(options_.tolerance) +
                                     ", but must be finite and > 0");
    }
    Grid grid = make_grid(this->schedule_, options_.grid, grid_defaults, fn);
    sigmas_ = std::move(grid.sigmas);
    const std::vector<double> table = detail::sigma_table(this->schedule_);
    const int n = static_cast<int>(grid.timesteps.size());
    for (int k = 0; k < n; ++k) {
      const auto u = static_cast<std::size_t>(k);
      Interval iv{sigmas_[u], sigmas_[u + 1], 0.0, sigmas_[u + 1] > 0.0};
      // sigma_fn(t + r h) with t = -log sigma_k, h = log(sigma_k / sigma_{k+1}), as k-diffusion computes it
      if (iv.two_stage) {
        const double t = -std::log(iv.from), h = -std::log(iv.to) - t;
        iv.mid = std::exp(-(t + h * options_.r));
      }
      intervals_.push_back(iv);
      stages_.push_back({k, false, iv.from});
      this->timesteps_.push_back(grid.timesteps[u]);
      if (iv.two_stage) {
        stages_.push_back({k, true, iv.mid});
        this->timesteps_.push_back(detail::nearest_timestep(table, iv.mid, 0, false));
      }
    }
    sigma_max_ = *std::max_element(sigmas_.begin(), sigmas_.end());
    sigma_min_ = sigma_max_;
    for (double s : sigmas_) {
      if (s > 0.0) sigma_min_ = std::min(sigma_min_, s);
    }
  }

  const DPMPPSDEOptions& options() const { return options_; }
  /// The grid: sigma_0, ..., sigma_{N-1} of the intervals followed by the final sigma.
  const std::vector<double>& sigmas() const { return sigmas_; }
  /// The noise level each step's model call sees (timesteps().size() values).
  std::vector<double> step_sigmas() const {
    std::vector<double> r;
    for (const detail::Stage& s : stages_) r.push_back(s.sigma);
    return r;
  }
  /// The number of noise intervals N (num_inference_steps() counts model calls).
  int num_intervals() const { return static_cast<int>(intervals_.size()); }
  /// The range of the Brownian path the step builds from a noise source: the grid's smallest positive and
  /// its largest sigma (k-diffusion's sigma_min, sigma_max). If they are equal (one interval to sigma 0) no
  /// noise is ever drawn.
  double brownian_sigma_min() const { return sigma_min_; }
  double brownian_sigma_max() const { return sigma_max_; }
  /// The levels (sigma_k, sigma_to) of the noise step i adds (z(sigma_k, sigma_to)), or (0, 0) if it adds none.
  std::pair<double, double> noise_interval(int i) const {
    detail::check_step_index("ddpm::DPMPPSDESampler::noise_interval", i, this->num_inference_steps());
    const Plan p = plan(i);
    return p.noise ? std::pair<double, double>{p.sigma_from, p.sigma_to} : std::pair<double, double>{0.0, 0.0};
  }
  /// Forgets the interval's start and the Brownian tree of the last run; the next step must be step 0.
  void reset() {
    next_step_ = 0;
    tree_.reset();
  }

  /// Step i in place, storing the predicted x0 into x0_out (see the Sampler concept and the class comment
  /// for the noise argument).
  template <DenseTensor M, MutableDenseTensor X, class N, MutableDenseTensor X0>
    requires SDENoiseArgument<N, S, rank_v<X>>
  void step(int i, const M& model_output, X&& x, N&& noise, X0&& x0_out, Prediction kind = Prediction::epsilon) {
    static_assert(std::is_same_v<scalar_t<X>, S>, "ddpm: x must have the sampler's scalar type");
    step_impl(i, model_output, x, noise, x0_out, kind);
  }

  /// Step i in place, without the predicted x0.
  template <DenseTensor M, MutableDenseTensor X, class N>
    requires SDENoiseArgument<N, S, rank_v<X>>
  void step(int i, const M& model_output, X&& x, N&& noise, Prediction kind = Prediction::epsilon) {
    static_assert(std::is_same_v<scalar_t<X>, S>, "ddpm: x must have the sampler's scalar type");
    std::nullptr_t no_x0 = nullptr;
    step_impl(i, model_output, x, noise, no_x0, kind);
  }

  /// Step i into a new tensor (x left unchanged).
  template <DenseTensor M, DenseTensor X, class N>
    requires SDENoiseArgument<N, S, rank_v<X>>
  plain_tensor_t<X> prev_sample(int i, const M& model_output, const X& x, N&& noise,
                                Prediction kind = Prediction::epsilon) {
    plain_tensor_t<X> out = x;
    step(i, model_output, out, noise, kind);
    return out;
  }

 private:
  /// Step i's arithmetic in the variance-preserving x: x <- c_x x_start + c_0 x0 + c_1 x0_1 + c_z z, with
  /// x_start the interval's start (stage 2) or x itself (stage 1).
  struct Plan {
    double c_x = 0.0, c_0 = 0.0, c_1 = 0.0, c_z = 0.0;
    double sigma_from = 0.0, sigma_to = 0.0;
    bool noise = false, first = false, second = false;
  };

  Plan plan(int i) const {
    const detail::Stage st = stages_[static_cast<std::size_t>(i)];
    const Interval& iv = intervals_[static_cast<std::size_t>(st.interval)];
    Plan p;
    if (!iv.two_stage) {
      p.c_0 = 1.0;  // the Euler step to sigma = 0: x + (0 - sigma) (x - x0) / sigma = x0
      return p;
    }
    const double to = st.second ? iv.to : iv.mid;
    const detail::AncestralStep a = detail::ancestral_step(iv.from, to, options_.eta);
    const double in_scale = std::sqrt(1.0 + iv.from * iv.from), out_scale = 1.0 / std::sqrt(1.0 + to * to);
    const double c_d = -std::expm1(std::log(a.down) - std::log(iv.from));  // 1 when sigma_down = 0
    p.c_x = a.down / iv.from * in_scale * out_scale;
    if (st.second) {
      const double fac = 1.0 / (2.0 * options_.r);
      p.c_0 = fac * c_d * out_scale;
      p.c_1 = (1.0 - fac) * c_d * out_scale;
    } else {
      p.c_0 = c_d * out_scale;
    }
    p.c_z = options_.s_noise * a.up * out_scale;
    p.noise = p.c_z != 0.0;
    p.sigma_from = iv.from;
    p.sigma_to = to;
    p.first = !st.second;
    p.second = st.second;
    return p;
  }

  template <DenseTensor M, MutableDenseTensor X, class N, class X0>
  void step_impl(int i, const M& output, X& x, N& noise, X0& x0_out, Prediction kind) {
    constexpr int R = rank_v<X>;
    using Noise = std::remove_cvref_t<N>;
    static_assert(detail::is_no_noise_v<N> || DenseTensor<Noise> || BrownianNoiseFor<N, S, R> ||
                      std::is_same_v<Noise, NoiseSource> || std::is_same_v<Noise, PerImageNoiseSource>,
                  "ddpm::DPMPPSDESampler: noise must be a tensor of normalized increments, a Brownian noise source "
                  "(noise(sigma, sigma_next, out)), a NoiseSource or PerImageNoiseSource (a Brownian tree over its "
                  "seed), or no_noise; independent draws are not one Brownian path");
    const char* fn = "ddpm::DPMPPSDESampler::step";
    const auto target = this->begin_step(fn, i, output, x, noise, x0_out, kind);
    detail::check_in_order(fn, i, next_step_, x, x_start_.size());
    if (i == 0) tree_.reset();
    const detail::Stage st = stages_[static_cast<std::size_t>(i)];
    const Plan p = plan(i);
    const Eigen::Index total = x.size();
    const Conversion conv = x0_conversion(kind, 1.0 / (1.0 + st.sigma * st.sigma));
    S* const x0 = target.x0 != nullptr ? target.x0 : this->workspace_.x0(total);
    this->predict_x0(output, target.stride, x, conv, options_.clipping, x0);
    const S* z = nullptr;
    if (p.noise) z = draw(fn, noise, x, p);
    using Vec = Eigen::Array<S, Eigen::Dynamic, 1>;
    Eigen::Map<Vec> xs(x.data(), total);
    const Eigen::Map<const Vec> x0s(x0, total);
    const S c_x = static_cast<S>(p.c_x), c_0 = static_cast<S>(p.c_0), c_1 = static_cast<S>(p.c_1),
            c_z = static_cast<S>(p.c_z);
    if (p.first) {
      x_start_.resize(static_cast<std::size_t>(total));
      Eigen::Map<Vec> start(x_start_.data(), total);
      start = xs;
      if (options_.r != 0.5) {
        x0_first_.resize(static_cast<std::size_t>(total));
        Eigen::Map<Vec>(x0_first_.data(), total) = x0s;
      }
    }
    if (p.second) {
      const Eigen::Map<const Vec> start(x_start_.data(), total);
      if (options_.r != 0.5) {
        const Eigen::Map<const Vec> x0_1(x0_first_.data(), total);
        if (z != nullptr) {
          xs = c_x * start + c_0 * x0s + c_1 * x0_1 + c_z * Eigen::Map<const Vec>(z, total);
        } else {
          xs = c_x * start + c_0 * x0s + c_1 * x0_1;
        }
      } else if (z != nullptr) {
        xs = c_x * start + c_0 * x0s + c_z * Eigen::Map<const Vec>(z, total);
      } else {
        xs = c_x * start + c_0 * x0s;
      }
    } else if (z != nullptr) {
      xs = c_x * xs + c_0 * x0s + c_z * Eigen::Map<const Vec>(z, total);
    } else {
      xs = c_x * xs + c_0 * x0s;
    }
    next_step_ = i + 1;
  }

  /// z for plan p: the tensor given, or a draw into the workspace.
  template <class N, MutableDenseTensor X>
  const S* draw(const char* fn, N& noise, const X& x, const Plan& p) {
    constexpr int R = rank_v<X>;
    using Noise = std::remove_cvref_t<N>;
    if constexpr (detail::is_no_noise_v<N>) {
      (void)noise, (void)x, (void)p;
      detail::throw_invalid_argument(std::string(fn) +
                                     ": noise is ddpm::no_noise, but this step adds noise (eta and s_noise > 0); pass a "
                                     "noise source, a Brownian noise source or a tensor of normalized increments");
    } else if constexpr (DenseTensor<Noise>) {
      (void)x, (void)p;
      return noise.data();
    } else {
      Tensor<S, R>& z = this->workspace_.template noise<R>(x.dimensions());
      if constexpr (BrownianNoiseFor<N, S, R>) {
        noise(p.sigma_from, p.sigma_to, z);
        bool same = true;
        for (int d = 0; d < R; ++d) same = same && z.dimension(d) == x.dimension(d);
        if (!same) {
          const std::string got = detail::shape_string(z);
          z.resize(x.dimensions());
          detail::throw_invalid_argument(std::string(fn) + ": the Brownian noise source resized the noise tensor to " +
                                         got + ", but must fill it in the shape of x " + detail::shape_string(x));
        }
      } else {
        if (!tree_) {
          BrownianTreeOptions o{.first_index = 0, .per_image = false, .path = noise.offset(), .tolerance = options_.tolerance};
          if constexpr (std::is_same_v<Noise, PerImageNoiseSource>) {
            o.first_index = noise.first_index();
            o.per_image = true;
          }
          tree_.emplace(sigma_min_, sigma_max_, noise.seed(), o);
          for (Cached& c : cache_) c.sigma = -1.0;
        }
        // z = (W(to) - W(from)) / sqrt|to - from| from W at the two levels, each a query of at most D + 1 tree
        // nodes, kept for the next stage (which shares sigma_k, or starts at this sigma_{k+1}): about half the
        // node normals of one increment query (up to 2D + 1 nodes), equal to it up to the rounding of W.
        // sigma_s = e^{-(t + r h)} may round just outside the grid's range (r = 1): clamped.
        const double to = std::clamp(p.sigma_to, sigma_min_, sigma_max_);
        const std::vector<double>& w_from = brownian_value(p.sigma_from, to, x.dimensions());
        const std::vector<double>& w_to = brownian_value(to, p.sigma_from, x.dimensions());
        const double scale = 1.0 / std::sqrt(std::abs(to - p.sigma_from));
        S* const out = z.data();
        for (std::size_t k = 0; k < w_to.size(); ++k) out[k] = static_cast<S>((w_to[k] - w_from[k]) * scale);
      }
      return z.data();
    }
  }

  /// W(sigma) of the tree for every element (double), from the cache when there; `keep` is the other level
  /// the caller needs, whose entry is not evicted.
  template <int R>
  const std::vector<double>& brownian_value(double sigma, double keep, const Eigen::DSizes<Eigen::Index, R>& dims) {
    for (Cached& c : cache_) {
      if (c.sigma == sigma) return c.w;
    }
    Cached& c = cache_[0].sigma == keep ? cache_[1] : cache_[0];
    Eigen::Index n = 1;
    for (int d = 0; d < R; ++d) n *= dims[d];
    c.w.resize(static_cast<std::size_t>(n));
    tree_->tree().value(sigma, Eigen::TensorMap<Tensor<double, R>>(c.w.data(), dims));
    c.sigma = sigma;
    return c.w;
  }

  struct Cached {
    double sigma = -1.0;  // no noise level is negative
    std::vector<double> w;
  };

  DPMPPSDEOptions options_;
  std::vector<double> sigmas_;
  std::vector<Interval> intervals_;
  std::vector<detail::Stage> stages_;
  double sigma_min_ = 0.0, sigma_max_ = 0.0;
  std::vector<S> x_start_, x0_first_;
  std::optional<BrownianTreeNoise> tree_;
  Cached cache_[2];
  int next_step_ = 0;
};

}  // namespace ddpm
