// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// The plumbing shared by every "coefficient[t] * x + coefficient[t] * y" formula: validating timesteps
// (one for the batch, or one per batch element), gathering schedule coefficients, validating shapes and
// running the fused kernel.

#include <span>
#include <string>
#include <vector>

#include "ddpm/schedule.hpp"
#include "ddpm/tensor.hpp"

namespace ddpm::detail {

/// Schedule coefficients for a batch: one value shared by the batch, or one per batch element.
template <class S>
class Coefficient {
 public:
  explicit Coefficient(S shared) : shared_(shared) {}
  Coefficient(const typename NoiseSchedule<S>::Array& values, int t) : shared_(values[t]) {}
  Coefficient(const typename NoiseSchedule<S>::Array& values, std::span<const int> t) : per_sample_(t.size()) {
    for (std::size_t b = 0; b < t.size(); ++b) per_sample_[b] = values[t[b]];
  }
  /// f applied to each value (f(values[t]) from the double-precision source when given one).
  template <class F>
  Coefficient(const std::vector<double>& values, std::span<const int> t, F&& f) : per_sample_(t.size()) {
    for (std::size_t b = 0; b < t.size(); ++b) per_sample_[b] = static_cast<S>(f(values[t[b]]));
  }
  template <class F>
  Coefficient(const std::vector<double>& values, int t, F&& f) : shared_(static_cast<S>(f(values[t]))) {}
  PerSample<S> view() const {
    return per_sample_.empty() ? PerSample<S>{&shared_, 0} : PerSample<S>{per_sample_.data(), 1};
  }
  S at(std::size_t b) const { return per_sample_.empty() ? shared_ : per_sample_[b]; }

 private:
  S shared_{};
  std::vector<S> per_sample_;
};

template <class S>
void check_timesteps(const char* fn, const NoiseSchedule<S>& schedule, int t, Eigen::Index /*batch*/) {
  schedule.check_timestep(fn, t);
}

template <class S>
void check_timesteps(const char* fn, const NoiseSchedule<S>& schedule, std::span<const int> t, Eigen::Index batch) {
  if (static_cast<Eigen::Index>(t.size()) != batch) {
    throw_invalid_argument(std::string(fn) + ": t holds " + ddpm::detail::number_string(t.size()) +
                           " timesteps, but must hold one per batch element (" + ddpm::detail::number_string(batch) + ")");
  }
  for (std::size_t b = 0; b < t.size(); ++b) {
    if (t[b] < 0 || t[b] >= schedule.num_train_timesteps()) {
      throw_invalid_argument(std::string(fn) + ": t[" + ddpm::detail::number_string(b) + "] is " + ddpm::detail::number_string(t[b]) +
                             ", but must be in [0, " + ddpm::detail::number_string(schedule.num_train_timesteps()) + ")");
    }
  }
}

/// Validates x, y and out, then writes out = a * x + c * y per batch element.
template <class S, DenseTensor X, DenseTensor Y, MutableDenseTensor Out>
void combine(const char* fn, const char* x_name, const X& x, const Coefficient<S>& a, const char* y_name, const Y& y,
             const Coefficient<S>& c, Out& out) {
  static_assert(std::is_same_v<scalar_t<X>, S> && std::is_same_v<scalar_t<Y>, S> && std::is_same_v<scalar_t<Out>, S>,
                "ddpm: tensors must have the schedule's scalar type");
  require_nonempty(fn, x_name, x);
  require_same_shape(fn, x_name, x, y_name, y);
  prepare_output(fn, out, x);
  lincomb2_per_sample<S>(out.data(), a.view(), x.data(), c.view(), y.data(), x.dimension(0), per_sample_size(x));
}

}  // namespace ddpm::detail
