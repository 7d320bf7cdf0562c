// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// What every sampler shares: the noise argument of a step (a tensor, a noise source, or no_noise), the
// bounds applied to a predicted x0 (clipping, dynamic thresholding), the conversion of any model output to
// x0 and eps, the fused kernel a step reduces to, and the step overloads (CRTP, no virtual calls).
//                                                                [docs/samplers.md, Eqs. (S1), (S3)]

#include <algorithm>
#include <any>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include "ddpm/error.hpp"
#include "ddpm/predictor.hpp"
#include "ddpm/random.hpp"
#include "ddpm/schedule.hpp"
#include "ddpm/tensor.hpp"
#include "ddpm/timesteps.hpp"

namespace ddpm {

/// The noise argument of a step that must not add noise (a deterministic sampler, or the last DDPM step).
/// A step that needs noise and gets no_noise throws ddpm::invalid_argument.
struct NoNoise {};
inline constexpr NoNoise no_noise{};

/// What a step accepts as noise for an x of scalar S and rank R: a tensor of x's shape (used as is), a
/// noise source (NoiseSourceFor<S, R> of random.hpp: callable as `source(Tensor<S, R>&)`, filling it with
/// independent N(0, 1) values and advancing, e.g. ddpm::NoiseSource), or no_noise. A step calls a source
/// exactly once when it adds noise and never otherwise.
template <class N, class S, int R>
concept NoiseArgument = std::same_as<std::remove_cvref_t<N>, NoNoise> ||
                        (!DenseTensor<std::remove_cvref_t<N>> && NoiseSourceFor<std::remove_reference_t<N>, S, R>) ||
                        (DenseTensor<std::remove_cvref_t<N>> && std::same_as<scalar_t<std::remove_cvref_t<N>>, S> &&
                         rank_v<std::remove_cvref_t<N>> == R);

/// How a predicted x0 is bounded before a sampler uses it (diffusers' `clip_sample`, `clip_sample_range`,
/// `thresholding`, `dynamic_thresholding_ratio`, `sample_max_value`).          [docs/samplers.md, Eq. (S3)]
///   clip:              x0 = clamp(x0, -range, range)
///   dynamic_threshold: per batch element, s = clamp(quantile(|x0|, ratio), 1, max_value),
///                      x0 = clamp(x0, -s, s) / s        (Saharia et al. 2022, "Imagen", Sec. 2.3)
/// The quantile interpolates linearly between order statistics, as torch.quantile does.
struct Clipping {
  enum class Mode { none, clip, dynamic_threshold };
  Mode mode = Mode::none;
  double range = 1.0;
  double ratio = 0.995;
  double max_value = 1.0;

  static Clipping none() { return {}; }
  static Clipping clip(double range = 1.0) { return {Mode::clip, range, 0.995, 1.0}; }
  static Clipping dynamic_threshold(double ratio = 0.995, double max_value = 1.0) {
    return {Mode::dynamic_threshold, 1.0, ratio, max_value};
  }
};

/// Where the sigma-space samplers (DPM-Solver++, Euler) end: at sigma = 0 (x0 itself; diffusers' default
/// "zero") or at sigma[0], the noise level of training timestep 0 ("sigma_min").
enum class FinalSigma { zero, sigma_min };

namespace detail {

/// The coefficients of a linear map of (x_t, model output):  value = from_x * x_t + from_output * output.
struct Linear {
  double from_x;
  double from_output;
};

/// x0 from a model output of the given kind at noise level alpha_bar (Eqs. (8), (15) of docs/math.md):
///   epsilon:  x0 = sqrt(1 / alpha_bar) x_t - sqrt(1 / alpha_bar - 1) eps
///   sample:   x0 = output
///   velocity: x0 = sqrt(alpha_bar) x_t - sqrt(1 - alpha_bar) v                  [docs/samplers.md, Eq. (S1)]
inline Linear x0_from_output(Prediction kind, double alpha_bar) {
  switch (kind) {
    case Prediction::epsilon: return {std::sqrt(1.0 / alpha_bar), -std::sqrt(1.0 / alpha_bar - 1.0)};
    case Prediction::sample: return {0.0, 1.0};
    case Prediction::velocity: return {std::sqrt(alpha_bar), -std::sqrt(1.0 - alpha_bar)};
  }
  return {0.0, 0.0};
}

/// eps from a model output of the given kind at noise level alpha_bar (Eqs. (8), (15) of docs/math.md):
///   epsilon:  eps = output
///   sample:   eps = x_t / sqrt(1 - alpha_bar) - x0 / sqrt(1 / alpha_bar - 1)
///   velocity: eps = sqrt(1 - alpha_bar) x_t + sqrt(alpha_bar) v                 [docs/samplers.md, Eq. (S1)]
inline Linear eps_from_output(Prediction kind, double alpha_bar) {
  switch (kind) {
    case Prediction::epsilon: return {0.0, 1.0};
    case Prediction::sample: return {1.0 / std::sqrt(1.0 - alpha_bar), -1.0 / std::sqrt(1.0 / alpha_bar - 1.0)};
    case Prediction::velocity: return {std::sqrt(1.0 - alpha_bar), std::sqrt(alpha_bar)};
  }
  return {0.0, 0.0};
}

inline void check_prediction(const char* fn, Prediction kind) {
  if (kind != Prediction::epsilon && kind != Prediction::sample && kind != Prediction::velocity) {
    throw_invalid_argument(std::string(fn) + ": kind is " + std::to_string(static_cast<int>(kind)) +
                           ", but must be Prediction::epsilon, sample or velocity");
  }
}

/// Throws unless eps determines x0 at this noise level (alpha_bar > 0); under a zero-terminal-SNR
/// schedule the first DDPM / DDIM step has alpha_bar = 0 and needs a sample or velocity prediction.
inline void check_x0_defined(const char* fn, Prediction kind, double alpha_bar, int t) {
  if (kind == Prediction::epsilon && !(alpha_bar > 0.0)) {
    throw_invalid_argument(std::string(fn) + ": alpha_bar[" + std::to_string(t) +
                           "] is 0 (zero terminal SNR), but an epsilon prediction determines x0 only where "
                           "alpha_bar > 0; use a velocity (or sample) prediction, or a sigma-space sampler");
  }
}

inline void check_clipping(const char* fn, const Clipping& c) {
  switch (c.mode) {
    case Clipping::Mode::none: return;
    case Clipping::Mode::clip:
      if (!(std::isfinite(c.range) && c.range > 0.0)) {
        throw_invalid_argument(std::string(fn) + ": clipping.range is " + std::to_string(c.range) +
                               ", but must be finite and > 0");
      }
      return;
    case Clipping::Mode::dynamic_threshold:
      if (!(c.ratio >= 0.0 && c.ratio <= 1.0)) {
        throw_invalid_argument(std::string(fn) + ": clipping.ratio is " + std::to_string(c.ratio) +
                               ", but must be in [0, 1]");
      }
      if (!(std::isfinite(c.max_value) && c.max_value >= 1.0)) {
        throw_invalid_argument(std::string(fn) + ": clipping.max_value is " + std::to_string(c.max_value) +
                               ", but must be finite and >= 1");
      }
      return;
  }
  throw_invalid_argument(std::string(fn) + ": clipping.mode is " + std::to_string(static_cast<int>(c.mode)) +
                         ", but must be Clipping::Mode::none, clip or dynamic_threshold");
}

/// Applies Eq. (S3) in place to x0 (batch elements of per_sample values). `scratch` is reused for the
/// quantile's order statistics.
template <class S>
void apply_clipping(const Clipping& c, S* x0, Eigen::Index batch, Eigen::Index per_sample, std::vector<S>& scratch) {
  using Vec = Eigen::Array<S, Eigen::Dynamic, 1>;
  if (c.mode == Clipping::Mode::none || batch * per_sample == 0) return;
  if (c.mode == Clipping::Mode::clip) {
    const S r = static_cast<S>(c.range);
    Eigen::Map<Vec> all(x0, batch * per_sample);
    all = all.min(r).max(-r);
    return;
  }
  scratch.resize(static_cast<std::size_t>(per_sample));
  const double pos = c.ratio * static_cast<double>(per_sample - 1);
  const auto lo_rank = static_cast<std::size_t>(std::floor(pos));
  const auto hi_rank = std::min(lo_rank + 1, static_cast<std::size_t>(per_sample - 1));
  const double frac = pos - static_cast<double>(lo_rank);
  for (Eigen::Index b = 0; b < batch; ++b) {
    Eigen::Map<Vec> v(x0 + b * per_sample, per_sample);
    Eigen::Map<Vec>(scratch.data(), per_sample) = v.abs();
    std::nth_element(scratch.begin(), scratch.begin() + static_cast<std::ptrdiff_t>(lo_rank), scratch.end());
    const double lo = static_cast<double>(scratch[lo_rank]);
    // The next order statistic is the smallest value above position lo_rank.
    const double hi = hi_rank == lo_rank ? lo
                                         : static_cast<double>(*std::min_element(
                                               scratch.begin() + static_cast<std::ptrdiff_t>(lo_rank) + 1, scratch.end()));
    const double q = lo + (hi - lo) * frac;
    const S s = static_cast<S>(std::clamp(q, 1.0, c.max_value));
    v = v.min(s).max(-s) / s;
  }
}

/// Validates a model output against x and returns the distance between its batch elements: per_sample for
/// an output shaped like x, 2 * per_sample for a learned-variance output with twice x's channels in
/// dimension 1 (whose first half is the prediction and second half the variance values).
template <DenseTensor M, DenseTensor X>
Eigen::Index output_stride(const char* fn, const M& output, const X& x, bool* has_variance = nullptr) {
  static_assert(rank_v<M> == rank_v<X>, "ddpm: the model output must have the rank of x_t");
  static_assert(std::is_same_v<scalar_t<M>, scalar_t<X>>, "ddpm: the model output must have the scalar type of x_t");
  bool doubled = false;
  bool ok = true;
  for (int d = 0; d < rank_v<X>; ++d) {
    if (output.dimension(d) == x.dimension(d)) continue;
    if (d == 1 && output.dimension(1) == 2 * x.dimension(1)) {
      doubled = true;
      continue;
    }
    ok = false;
  }
  if (!ok) {
    throw_invalid_argument(std::string(fn) + ": model_output has shape " + shape_string(output) +
                           ", but must have the shape of x " + shape_string(x) +
                           (rank_v<X> >= 2 ? " (or, for a learned variance, twice its channels in dimension 1)" : ""));
  }
  if (has_variance != nullptr) *has_variance = doubled;
  const Eigen::Index ps = per_sample_size(x);
  return doubled ? 2 * ps : ps;
}

/// A step in the form every sampler of this library reduces to, with coefficients in double (cast to S once):
///   x0 = bound(x0.from_x * x + x0.from_output * output + x0_from_noise * z)    (bound: Eq. (S3))
///   x <- x0_coef x0 + x_coef x + output_coef output + history_coef history + noise_coef z
/// `history` is a multistep sampler's x0 of the previous step (read, then overwritten with this x0); z is
/// drawn only when `noise` is true (x0_from_noise is nonzero only for Euler's churn, which adds noise to x
/// before x0 is predicted from it).
struct StepPlan {
  Linear x0;
  double x0_from_noise = 0.0;
  double x0_coef = 0.0, x_coef = 0.0, output_coef = 0.0, history_coef = 0.0, noise_coef = 0.0;
  bool noise = false;
};

/// How the step kernel gets x0: computed from x and the output, computed and clipped to [-range, range], or
/// read from a buffer that already holds it (dynamic thresholding needs all of x0 before it can bound it).
enum class X0Source { compute, compute_clip, given };

/// The operands of one step kernel run, as the scalar type's values; pointers are to element 0.
template <class S>
struct StepOperands {
  S* x;
  const S* output;
  Eigen::Index output_stride, per_sample;
  S* x0;       // where x0 is stored (compute*) or read (given); may be null when neither
  S* history;  // previous x0 in, this x0 out; may be null
  S from_x, from_output, from_noise, range, x0_coef, x_coef, output_coef, history_coef, noise_coef;
};

/// The step of StepPlan on elements [first, last) of x, one pass: each element of x, the output, the
/// history and the noise is read once and x (and x0, the history) written once; z points to the noise of
/// element `first`. The output may have a larger batch stride (a learned-variance output): the range is
/// cut at batch elements. Every element goes through the same expression however the range is chunked.
template <class S, X0Source kX0, bool kStoreX0, bool kReadHistory, bool kWriteHistory, bool kNoise>
void step_range(const StepOperands<S>& a, Eigen::Index first, Eigen::Index last, const S* z) {
  auto body = [&a](Eigen::Index i, Eigen::Index n, const S* __restrict out, const S* __restrict zs) {
    S* __restrict xs = a.x + i;
    S* __restrict x0s = kX0 == X0Source::given || kStoreX0 ? a.x0 + i : nullptr;
    S* __restrict hs = kReadHistory || kWriteHistory ? a.history + i : nullptr;
    for (Eigen::Index k = 0; k < n; ++k) {
      const S xv = xs[k], ov = out[k];
      S x0;
      if constexpr (kX0 == X0Source::given) {
        x0 = x0s[k];
      } else {
        x0 = a.from_x * xv + a.from_output * ov;
        if constexpr (kNoise) x0 += a.from_noise * zs[k];
        if constexpr (kX0 == X0Source::compute_clip) x0 = std::min(std::max(x0, -a.range), a.range);
        if constexpr (kStoreX0) x0s[k] = x0;
      }
      S v = a.x0_coef * x0 + a.x_coef * xv + a.output_coef * ov;
      if constexpr (kReadHistory) v += a.history_coef * hs[k];
      if constexpr (kWriteHistory) hs[k] = x0;
      if constexpr (kNoise) v += a.noise_coef * zs[k];
      xs[k] = v;
    }
  };
  const Eigen::Index ps = a.per_sample;
  if (a.output_stride == ps) {
    body(first, last - first, a.output + first, z);
    return;
  }
  for (Eigen::Index i = first; i < last;) {  // one segment per batch element
    const Eigen::Index b = i / ps;
    const Eigen::Index stop = std::min(last, (b + 1) * ps);
    body(i, stop - i, a.output + b * a.output_stride + (i - b * ps), kNoise ? z + (i - first) : nullptr);
    i = stop;
  }
}

/// Calls kernel(first, last, z + first) over [0, total) in chunks (on OpenMP threads for large totals);
/// z may be null (no noise).
template <class S, class K>
void run_ranges(Eigen::Index total, K& kernel, const S* z) {
  const Eigen::Index chunks = (total + kParallelGrain - 1) / kParallelGrain;
  for_each_chunk(chunks, total, [&](Eigen::Index k) {
    const Eigen::Index first = k * kParallelGrain, last = std::min(total, first + kParallelGrain);
    kernel(first, last, z != nullptr ? z + first : nullptr);
  });
}

/// Calls f(std::bool_constant<b>{}).
template <class F>
decltype(auto) with_bool(bool b, F&& f) {
  return b ? f(std::true_type{}) : f(std::false_type{});
}

/// Reusable buffers of a sampler for the caller's shape: they are allocated once and reused by every later
/// step of that shape.
template <class S>
class Workspace {
 public:
  /// A buffer of n values for a predicted x0 that the caller does not keep (dynamic thresholding and
  /// learned_range need x0 whole).
  S* x0(Eigen::Index n) {
    if (static_cast<Eigen::Index>(x0_.size()) != n) x0_.resize(static_cast<std::size_t>(n));
    return x0_.data();
  }
  /// A Tensor (not a map), so that a source typed `void(Tensor<S, R>&)` can fill it.
  template <int R>
  Tensor<S, R>& noise(const Eigen::DSizes<Eigen::Index, R>& dims) {
    auto* t = std::any_cast<Tensor<S, R>>(&noise_);
    if (t == nullptr) {
      noise_ = Tensor<S, R>(dims);
      t = std::any_cast<Tensor<S, R>>(&noise_);
    } else {
      bool same = true;
      for (int d = 0; d < R; ++d) same = same && t->dimension(d) == dims[d];
      if (!same) t->resize(dims);
    }
    return *t;
  }
  std::vector<S>& scratch() { return scratch_; }

 private:
  std::vector<S> x0_, scratch_;
  std::any noise_;
};

template <class N>
inline constexpr bool is_no_noise_v = std::is_same_v<std::remove_cvref_t<N>, NoNoise>;

/// Checks a noise tensor's shape once per call (a source or no_noise has nothing to check).
template <class N, DenseTensor X>
void check_noise(const char* fn, const N& noise, const X& x) {
  if constexpr (DenseTensor<std::remove_cvref_t<N>>) {
    require_same_shape(fn, "x", x, "noise", noise);
  } else {
    (void)fn, (void)noise, (void)x;
  }
}

/// The noise for this step: a tensor's data, or a fresh draw from a source into the workspace.
/// Throws ddpm::invalid_argument for no_noise (the step needs noise).
template <class S, int R, class N>
const S* draw_noise(const char* fn, N& noise, const Eigen::DSizes<Eigen::Index, R>& dims, Workspace<S>& ws) {
  if constexpr (is_no_noise_v<N>) {
    (void)noise, (void)dims, (void)ws;
    throw_invalid_argument(std::string(fn) +
                           ": noise is ddpm::no_noise, but this step adds noise; pass a noise tensor or a noise source");
  } else if constexpr (DenseTensor<std::remove_cvref_t<N>>) {
    (void)dims, (void)ws;
    return noise.data();
  } else {
    Tensor<S, R>& out = ws.template noise<R>(dims);
    noise(out);
    return out.data();
  }
}

inline void check_step_index(const char* fn, int i, int num_steps) {
  if (i < 0 || i >= num_steps) {
    throw_invalid_argument(std::string(fn) + ": step index i is " + std::to_string(i) + ", but must be in [0, " +
                           std::to_string(num_steps) + ") (num_steps)");
  }
}

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

/// The step overloads every sampler offers, implemented once over the sampler's
/// `step_impl(i, model_output, x, noise, x0_out, kind)`.
template <class Derived, std::floating_point S>
class SamplerBase {
 public:
  using Scalar = S;

  /// The training timesteps of the run, in the order they are visited: the model is called with
  /// timesteps()[i] before step i.
  const std::vector<int>& timesteps() const { return timesteps_; }
  /// The number of steps N (the size of timesteps()).
  int num_steps() const { return static_cast<int>(timesteps_.size()); }
  const NoiseSchedule<S>& schedule() const { return schedule_; }

  /// Step i in place: x holds x at timesteps()[i] and becomes the sample at the next timestep (after the
  /// last step, the final sample); x0_out receives the predicted (bounded) x0. model_output is what the model
  /// returned for (x, timesteps()[i]), of the given kind; noise is a tensor shaped like x, a noise source
  /// or no_noise. x0_out may be a Tensor (resized) or a map of x's shape; it must not alias x or the output.
  /// Throws ddpm::invalid_argument if i is outside [0, num_steps()), the output or noise does not match x,
  /// or the step needs noise and gets no_noise (and as the sampler documents).
  template <DenseTensor M, MutableDenseTensor X, class N, MutableDenseTensor X0>
    requires NoiseArgument<N, S, rank_v<X>>
  void step(int i, const M& model_output, X&& x, N&& noise, X0&& x0_out, Prediction kind = Prediction::epsilon) {
    static_assert(std::is_same_v<scalar_t<X>, S>, "ddpm: x must have the sampler's scalar type");
    derived().step_impl(i, model_output, x, noise, x0_out, kind);
  }

  /// Step i in place, without the predicted x0 (diffusers' `scheduler.step(...)` used for its prev_sample
  /// only): the step is then one pass over x, the output and the noise, and x0 is never stored.
  template <DenseTensor M, MutableDenseTensor X, class N>
    requires NoiseArgument<N, S, rank_v<X>>
  void step(int i, const M& model_output, X&& x, N&& noise, Prediction kind = Prediction::epsilon) {
    static_assert(std::is_same_v<scalar_t<X>, S>, "ddpm: x must have the sampler's scalar type");
    std::nullptr_t no_x0 = nullptr;
    derived().step_impl(i, model_output, x, noise, no_x0, kind);
  }

  /// Step i into a new tensor: returns the sample at the next timestep and leaves x unchanged
  /// (diffusers' `scheduler.step(...).prev_sample`).
  template <DenseTensor M, DenseTensor X, class N>
    requires NoiseArgument<N, S, rank_v<X>>
  plain_tensor_t<X> prev_sample(int i, const M& model_output, const X& x, N&& noise,
                                Prediction kind = Prediction::epsilon) {
    plain_tensor_t<X> out = x;
    step(i, model_output, out, noise, kind);
    return out;
  }

 protected:
  SamplerBase(NoiseSchedule<S> schedule) : schedule_(std::move(schedule)) {}

  Derived& derived() { return static_cast<Derived&>(*this); }

  /// What begin_step found: the model output's batch stride and where x0 goes (null: nowhere).
  struct StepTarget {
    Eigen::Index stride;
    S* x0;
  };

  /// Validates the shapes of one call and readies x0_out (a tensor or map, or nullptr for none).
  template <DenseTensor M, DenseTensor X, class N, class X0>
  StepTarget begin_step(const char* fn, int i, const M& model_output, const X& x, const N& noise, X0& x0_out,
                        Prediction kind, bool* has_variance = nullptr) const {
    check_step_index(fn, i, num_steps());
    check_prediction(fn, kind);
    require_nonempty(fn, "x", x);
    const Eigen::Index stride = output_stride(fn, model_output, x, has_variance);
    check_noise(fn, noise, x);
    if constexpr (std::is_null_pointer_v<X0>) {
      return {stride, nullptr};
    } else {
      prepare_output(fn, x0_out, x);
      return {stride, x0_out.data()};
    }
  }

  /// x0 = from_x * x + from_output * output, then the clipping of Eq. (S3), into x0 (x's size).
  template <DenseTensor M, DenseTensor X>
  void predict_x0(const M& output, Eigen::Index stride, const X& x, const Linear& c, const Clipping& clipping, S* x0) {
    const Eigen::Index batch = x.dimension(0), ps = per_sample_size(x);
    const S from_x = static_cast<S>(c.from_x), from_output = static_cast<S>(c.from_output);
    lincomb2_per_sample<S>(x0, {&from_x, 0}, x.data(), {&from_output, 0}, output.data(), batch, ps, stride);
    apply_clipping(clipping, x0, batch, ps, workspace_.scratch());
  }

  /// Runs the step of plan `p` on x in place (see StepPlan), in one pass unless dynamic thresholding needs
  /// x0 whole first; stores x0 into x0_out when it is not null. kHistory / kNoise say whether the sampler
  /// can use a history (then `history` holds x.size() values) and noise, so that only those kernels are
  /// compiled. Noise from a ddpm::NoiseSource is made a chunk at a time inside the pass and never stored:
  /// the result equals drawing it into a tensor first, bit for bit.
  template <bool kHistory, bool kNoise, DenseTensor M, MutableDenseTensor X, class N>
  void run_step(const char* fn, const StepPlan& p, const M& output, Eigen::Index stride, X& x, N& noise, S* x0_out,
                const Clipping& clipping, S* history = nullptr) {
    DDPM_ASSERT(kNoise || !p.noise);
    DDPM_ASSERT(!kHistory || history != nullptr);
    const Eigen::Index total = x.size();
    StepOperands<S> a{x.data(),
                      output.data(),
                      stride,
                      per_sample_size(x),
                      x0_out,
                      history,
                      static_cast<S>(p.x0.from_x),
                      static_cast<S>(p.x0.from_output),
                      static_cast<S>(p.x0_from_noise),
                      static_cast<S>(clipping.range),
                      static_cast<S>(p.x0_coef),
                      static_cast<S>(p.x_coef),
                      static_cast<S>(p.output_coef),
                      static_cast<S>(p.history_coef),
                      static_cast<S>(p.noise_coef)};
    X0Source source = clipping.mode == Clipping::Mode::clip ? X0Source::compute_clip : X0Source::compute;
    if (clipping.mode == Clipping::Mode::dynamic_threshold) {
      DDPM_ASSERT(p.x0_from_noise == 0.0);  // the sampler rejects churn with dynamic thresholding
      a.x0 = x0_out != nullptr ? x0_out : workspace_.x0(total);
      predict_x0(output, stride, x, p.x0, clipping, a.x0);
      source = X0Source::given;
    }
    auto launch = [&](auto x0_source, auto store_x0, auto read_history, auto with_noise) {
      auto kernel = [&a](Eigen::Index first, Eigen::Index last, const S* z) {
        step_range<S, decltype(x0_source)::value, decltype(store_x0)::value, decltype(read_history)::value, kHistory,
                   decltype(with_noise)::value>(a, first, last, z);
      };
      if constexpr (!decltype(with_noise)::value) {
        run_ranges(total, kernel, static_cast<const S*>(nullptr));
      } else if constexpr (std::is_same_v<std::remove_cvref_t<N>, NoiseSource>) {
        check_stream_range(fn, noise.offset(), static_cast<std::uint64_t>(total));
        for_each_normal_chunk<S>(noise.seed(), noise.offset(), static_cast<std::uint64_t>(total),
                                 [&kernel](const S* z, std::size_t first, std::size_t last) {
                                   kernel(static_cast<Eigen::Index>(first), static_cast<Eigen::Index>(last), z);
                                 });
        noise.set_offset(noise.offset() + static_cast<std::uint64_t>(total));
      } else {
        run_ranges(total, kernel, draw_noise<S, rank_v<X>>(fn, noise, x.dimensions(), workspace_));
      }
    };
    auto with_x0_source = [&](auto&& f) {
      switch (source) {
        case X0Source::compute: return f(std::integral_constant<X0Source, X0Source::compute>{});
        case X0Source::compute_clip: return f(std::integral_constant<X0Source, X0Source::compute_clip>{});
        case X0Source::given: return f(std::integral_constant<X0Source, X0Source::given>{});
      }
    };
    const bool store = x0_out != nullptr && source != X0Source::given;
    const bool read_history = kHistory && p.history_coef != 0.0;
    with_x0_source([&](auto x0_source) {
      with_bool(store, [&](auto store_x0) {
        auto next = [&](auto read) {
          if constexpr (kNoise) {
            with_bool(p.noise, [&](auto with_noise) { launch(x0_source, store_x0, read, with_noise); });
          } else {
            launch(x0_source, store_x0, read, std::false_type{});
          }
        };
        if constexpr (kHistory) {
          with_bool(read_history, next);
        } else {
          next(std::false_type{});
        }
      });
    });
  }

  NoiseSchedule<S> schedule_;
  std::vector<int> timesteps_;
  Workspace<S> workspace_;
};

}  // namespace detail
}  // namespace ddpm
