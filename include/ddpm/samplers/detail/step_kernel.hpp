// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// Internal: the one fused kernel every sampler step reduces to. A sampler turns its equations into a
// StepPlan (coefficients in double); step_range runs the plan over a range of elements in one pass, with
// the variant (how x0 is obtained, whether it is stored, whether a history is read, whether noise is
// added) chosen at compile time so that the inner loop has no branches.     [docs/samplers.md, Sec. 1]

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <type_traits>
#include <vector>

#include <Eigen/Core>

#include "ddpm/posterior.hpp"
#include "ddpm/samplers/sampler.hpp"
#include "ddpm/tensor.hpp"

namespace ddpm::detail {

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

/// A step in the form every sampler of this library reduces to, with coefficients in double (cast to S once):
///   x0 = bound(x0.from_x * x + x0.from_output * output + x0_from_noise * z)    (bound: Eq. (S3))
///   x <- x0_coef x0 + x_coef x + output_coef output + history_coef history + noise_coef z
/// `history` is a multistep sampler's x0 of the previous step (read, then overwritten with this x0); z is
/// drawn only when `noise` is true (x0_from_noise is nonzero only for Euler's churn, which adds noise to x
/// before x0 is predicted from it).
struct StepPlan {
  Conversion x0;  // x0_conversion of the step's noise level
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

/// A flag of a kernel variant: the runtime value where the variant can occur, else false at compile time
/// (so that the kernels a sampler cannot reach are never compiled).
template <bool kPossible>
auto possible_flag(bool value) {
  if constexpr (kPossible) {
    return value;
  } else {
    (void)value;
    return std::false_type{};
  }
}

/// Calls f with each flag as a compile-time constant: a bool becomes std::bool_constant<value> (both
/// branches compiled), a std::bool_constant is passed on as it is (one branch compiled).
template <class F>
void with_flags(F&& f) {
  f();
}
template <class F, class Flag, class... Flags>
void with_flags(F&& f, Flag flag, Flags... flags) {
  auto rest = [&](auto constant) { with_flags([&](auto... constants) { f(constant, constants...); }, flags...); };
  if constexpr (std::is_same_v<Flag, bool>) {
    if (flag) {
      rest(std::true_type{});
    } else {
      rest(std::false_type{});
    }
  } else {
    rest(flag);
  }
}

/// Calls f(std::integral_constant<X0Source, source>{}).
template <class F>
void with_x0_source(X0Source source, F&& f) {
  switch (source) {
    case X0Source::compute: f(std::integral_constant<X0Source, X0Source::compute>{}); return;
    case X0Source::compute_clip: f(std::integral_constant<X0Source, X0Source::compute_clip>{}); return;
    case X0Source::given: f(std::integral_constant<X0Source, X0Source::given>{}); return;
  }
}

}  // namespace ddpm::detail
