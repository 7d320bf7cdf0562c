// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// Learning-rate schedules as diffusers defines them (diffusers/optimization.py), applied as PyTorch's
// LambdaLR applies them: lr(step) = base_lr * factor(step), where `step` counts the scheduler steps taken so
// far. A training loop that calls optimizer.step() and then lr_scheduler.step(), as diffusers' scripts do,
// uses lr(k) for its (k+1)-th optimiser step: set the optimiser's lr to schedule.lr(opt.step_count()) before
// each step.                                                     [docs/training.md, "Learning-rate schedules"]

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <string>

#include "ddpm/error.hpp"
#include "ddpm/optim.hpp"

namespace ddpm {

/// The schedules of diffusers' get_scheduler that ddpm implements.
enum class LRScheduleKind { constant, constant_with_warmup, linear, cosine };

/// A learning-rate schedule: a base learning rate and diffusers' multiplier lambda(step).
class LRSchedule {
 public:
  /// lambda = 1 (get_constant_schedule).
  /// Throws ddpm::invalid_argument if base_lr is negative or not finite.
  static LRSchedule constant(double base_lr) {
    return LRSchedule(LRScheduleKind::constant, base_lr, 0, 0, 0.0, 0.0, 1.0, "ddpm::LRSchedule::constant");
  }

  /// Linear warm-up, then constant (get_constant_schedule_with_warmup):
  ///   lambda = step / max(1, num_warmup_steps) for step < num_warmup_steps, else 1.
  /// Throws ddpm::invalid_argument if base_lr is negative or not finite, or num_warmup_steps < 0.
  static LRSchedule constant_with_warmup(double base_lr, std::int64_t num_warmup_steps) {
    return LRSchedule(LRScheduleKind::constant_with_warmup, base_lr, num_warmup_steps, 0, 0.0, 0.0, 1.0,
                      "ddpm::LRSchedule::constant_with_warmup");
  }

  /// Linear warm-up to f_max, then linear decay to f_min at num_training_steps
  /// (get_linear_schedule_with_warmup):
  ///   step < w:  lambda = f_max * step / max(1, w)
  ///   else:      lambda = f_min + (f_max - f_min) * max(0, (N - step) / max(1, N - w))
  /// Throws ddpm::invalid_argument if base_lr is negative or not finite, num_warmup_steps < 0,
  /// num_training_steps < 0, or f_min, f_max are not finite.
  static LRSchedule linear_with_warmup(double base_lr, std::int64_t num_warmup_steps, std::int64_t num_training_steps,
                                       double f_min = 0.0, double f_max = 1.0) {
    return LRSchedule(LRScheduleKind::linear, base_lr, num_warmup_steps, num_training_steps, 0.0, f_min, f_max,
                      "ddpm::LRSchedule::linear_with_warmup");
  }

  /// Linear warm-up, then a cosine decay (get_cosine_schedule_with_warmup):
  ///   step < w:  lambda = step / max(1, w)
  ///   else:      progress = (step - w) / max(1, N - w);
  ///              lambda = max(0, 0.5 * (1 + cos(pi * num_cycles * 2 * progress)))
  /// num_cycles = 0.5 is a half cosine from 1 down to 0 at step N.
  /// Throws ddpm::invalid_argument if base_lr is negative or not finite, num_warmup_steps < 0,
  /// num_training_steps < 0 or num_cycles is not finite.
  static LRSchedule cosine_with_warmup(double base_lr, std::int64_t num_warmup_steps, std::int64_t num_training_steps,
                                       double num_cycles = 0.5) {
    return LRSchedule(LRScheduleKind::cosine, base_lr, num_warmup_steps, num_training_steps, num_cycles, 0.0, 1.0,
                      "ddpm::LRSchedule::cosine_with_warmup");
  }

  /// The multiplier lambda(step), in double with diffusers' operations in diffusers' order.
  /// Throws ddpm::invalid_argument if step < 0.
  double factor(std::int64_t step) const {
    if (step < 0) {
      detail::throw_invalid_argument("ddpm::LRSchedule::factor: step is " + ddpm::detail::number_string(step) +
                                     ", but must be >= 0");
    }
    const auto s = static_cast<double>(step);
    const auto warmup = static_cast<double>(std::max<std::int64_t>(1, warmup_));
    switch (kind_) {
      case LRScheduleKind::constant:
        return 1.0;
      case LRScheduleKind::constant_with_warmup:
        return step < warmup_ ? s / warmup : 1.0;
      case LRScheduleKind::linear: {
        if (step < warmup_) return f_max_ * s / warmup;
        const double progress = static_cast<double>(training_ - step) /
                                static_cast<double>(std::max<std::int64_t>(1, training_ - warmup_));
        return f_min_ + (f_max_ - f_min_) * std::max(0.0, progress);
      }
      case LRScheduleKind::cosine: {
        if (step < warmup_) return s / warmup;
        const double progress = static_cast<double>(step - warmup_) /
                                static_cast<double>(std::max<std::int64_t>(1, training_ - warmup_));
        return std::max(0.0, 0.5 * (1.0 + std::cos(std::numbers::pi * num_cycles_ * 2.0 * progress)));
      }
    }
    return 1.0;
  }

  /// The learning rate after `step` scheduler steps: base_lr * factor(step), as LambdaLR computes it.
  /// Throws ddpm::invalid_argument if step < 0.
  double lr(std::int64_t step) const { return base_lr_ * factor(step); }
  double operator()(std::int64_t step) const { return lr(step); }

  /// Sets the optimiser's learning rate for its next step: lr(optimizer.step_count()).
  template <class Optimizer>
  void apply(Optimizer& optimizer) const {
    optimizer.set_lr(lr(optimizer.step_count()));
  }

  LRScheduleKind kind() const noexcept { return kind_; }
  double base_lr() const noexcept { return base_lr_; }
  std::int64_t num_warmup_steps() const noexcept { return warmup_; }
  std::int64_t num_training_steps() const noexcept { return training_; }
  double num_cycles() const noexcept { return num_cycles_; }
  double f_min() const noexcept { return f_min_; }
  double f_max() const noexcept { return f_max_; }

 private:
  LRSchedule(LRScheduleKind kind, double base_lr, std::int64_t warmup, std::int64_t training, double num_cycles,
             double f_min, double f_max, const char* fn)
      : kind_(kind),
        base_lr_(base_lr),
        warmup_(warmup),
        training_(training),
        num_cycles_(num_cycles),
        f_min_(f_min),
        f_max_(f_max) {
    detail::require_nonnegative(fn, "base_lr", base_lr);
    if (warmup < 0) {
      detail::throw_invalid_argument(std::string(fn) + ": num_warmup_steps is " + ddpm::detail::number_string(warmup) +
                                     ", but must be >= 0");
    }
    if (training < 0) {
      detail::throw_invalid_argument(std::string(fn) + ": num_training_steps is " + ddpm::detail::number_string(training) +
                                     ", but must be >= 0");
    }
    if (!std::isfinite(num_cycles)) detail::throw_optim_argument(fn, "num_cycles", num_cycles, "finite");
    if (!std::isfinite(f_min)) detail::throw_optim_argument(fn, "f_min", f_min, "finite");
    if (!std::isfinite(f_max)) detail::throw_optim_argument(fn, "f_max", f_max, "finite");
  }

  LRScheduleKind kind_;
  double base_lr_;
  std::int64_t warmup_, training_;
  double num_cycles_, f_min_, f_max_;
};

}  // namespace ddpm
