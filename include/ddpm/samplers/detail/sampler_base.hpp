// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// Internal: what the sampler classes share behind the Sampler concept (ddpm/samplers/sampler.hpp): the
// validation of a step's arguments, the reusable buffers, the noise plumbing, and SamplerBase, the CRTP
// base that implements the public step overloads once over a sampler's step_impl and runs a StepPlan.

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
#include "ddpm/samplers/detail/step_kernel.hpp"
#include "ddpm/samplers/sampler.hpp"
#include "ddpm/schedule.hpp"
#include "ddpm/tensor.hpp"

namespace ddpm::detail {

inline void check_prediction(const char* fn, Prediction kind) {
  if (kind != Prediction::epsilon && kind != Prediction::sample && kind != Prediction::velocity) {
    throw_invalid_argument(std::string(fn) + ": kind is " + ddpm::detail::number_string(static_cast<int>(kind)) +
                           ", but must be Prediction::epsilon, sample or velocity");
  }
}

/// Throws unless eps determines x0 at this noise level (alpha_bar > 0); under a zero-terminal-SNR
/// schedule the first DDPM / DDIM step has alpha_bar = 0 and needs a sample or velocity prediction.
inline void check_x0_defined(const char* fn, Prediction kind, double alpha_bar, int t) {
  if (kind == Prediction::epsilon && !(alpha_bar > 0.0)) {
    throw_invalid_argument(std::string(fn) + ": alpha_bar[" + ddpm::detail::number_string(t) +
                           "] is 0 (zero terminal SNR), but an epsilon prediction determines x0 only where "
                           "alpha_bar > 0; use a velocity (or sample) prediction, or a sigma-space sampler");
  }
}

inline void check_clipping(const char* fn, const Clipping& c) {
  switch (c.mode) {
    case Clipping::Mode::none: return;
    case Clipping::Mode::clip:
      if (!(std::isfinite(c.range) && c.range > 0.0)) {
        throw_invalid_argument(std::string(fn) + ": clipping.range is " + ddpm::detail::number_string(c.range) +
                               ", but must be finite and > 0");
      }
      return;
    case Clipping::Mode::dynamic_threshold:
      if (!(c.ratio >= 0.0 && c.ratio <= 1.0)) {
        throw_invalid_argument(std::string(fn) + ": clipping.ratio is " + ddpm::detail::number_string(c.ratio) +
                               ", but must be in [0, 1]");
      }
      if (!(std::isfinite(c.max_value) && c.max_value >= 1.0)) {
        throw_invalid_argument(std::string(fn) + ": clipping.max_value is " + ddpm::detail::number_string(c.max_value) +
                               ", but must be finite and >= 1");
      }
      return;
  }
  throw_invalid_argument(std::string(fn) + ": clipping.mode is " + ddpm::detail::number_string(static_cast<int>(c.mode)) +
                         ", but must be Clipping::Mode::none, clip or dynamic_threshold");
}

inline void check_step_index(const char* fn, int i, int num_steps) {
  if (i < 0 || i >= num_steps) {
    throw_invalid_argument(std::string(fn) + ": step index i is " + ddpm::detail::number_string(i) + ", but must be in [0, " +
                           ddpm::detail::number_string(num_steps) + ") (num_inference_steps)");
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
  /// A Tensor (not a map), so that a source typed `void(Tensor<S, R>&)` can fill it. The rank is the
  /// caller's, known only at the call: the tensor is kept type-erased.
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

/// The dimensions as "[d0, d1, ...]".
template <int R>
std::string dims_string(const Eigen::DSizes<Eigen::Index, R>& dims) {
  std::string s = "[";
  for (int d = 0; d < R; ++d) s += (d > 0 ? ", " : "") + number_string(dims[d]);
  return s + "]";
}

/// The noise for this step: a tensor's data, or a fresh draw from a source into the workspace.
/// Throws ddpm::invalid_argument for no_noise (the step needs noise), and if a source left the workspace
/// tensor with another shape than it was handed (a source must fill, not resize: the step reads x.size()
/// values from it).
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
    bool same = true;
    for (int d = 0; d < R; ++d) same = same && out.dimension(d) == dims[d];
    if (!same) {
      const Eigen::DSizes<Eigen::Index, R> got = out.dimensions();
      out.resize(dims);  // the workspace keeps the step's shape for the next call
      throw_invalid_argument(std::string(fn) + ": the noise source resized the noise tensor from " + dims_string(dims) +
                             " to " + dims_string(got) + ", but must fill it in its shape (that of x)");
    }
    return out.data();
  }
}

/// The members of the Sampler concept (ddpm/samplers/sampler.hpp, where their contract is documented),
/// implemented once over the sampler's `step_impl(i, model_output, x, noise, x0_out, kind)`, with the
/// helpers a step_impl uses: begin_step (validation), predict_x0 and run_step (the fused kernel).
template <class Derived, std::floating_point S>
class SamplerBase {
 public:
  using Scalar = S;

  /// The training timesteps of the run, in the order they are visited: the model is called with
  /// timesteps()[i] before step i.
  const std::vector<int>& timesteps() const { return timesteps_; }
  /// The number of steps N of a run (the size of timesteps()).
  int num_inference_steps() const { return static_cast<int>(timesteps_.size()); }
  /// The former name of num_inference_steps(), kept for one release.
  [[deprecated("use num_inference_steps() (N); num_steps() was ambiguous with a schedule's T")]] int num_steps() const {
    return num_inference_steps();
  }
  const NoiseSchedule<S>& schedule() const { return schedule_; }

  /// Step i in place, storing the predicted x0 into x0_out (see the Sampler concept).
  template <DenseTensor M, MutableDenseTensor X, class N, MutableDenseTensor X0>
    requires NoiseArgument<N, S, rank_v<X>>
  void step(int i, const M& model_output, X&& x, N&& noise, X0&& x0_out, Prediction kind = Prediction::epsilon) {
    static_assert(std::is_same_v<scalar_t<X>, S>, "ddpm: x must have the sampler's scalar type");
    derived().step_impl(i, model_output, x, noise, x0_out, kind);
  }

  /// Step i in place, without the predicted x0 (see the Sampler concept).
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
    check_step_index(fn, i, num_inference_steps());
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
  void predict_x0(const M& output, Eigen::Index stride, const X& x, const Conversion& c, const Clipping& clipping, S* x0) {
    const Eigen::Index batch = x.dimension(0), ps = per_sample_size(x);
    const S from_x = static_cast<S>(c.from_x), from_output = static_cast<S>(c.from_output);
    lincomb2_per_sample<S>(x0, {&from_x, 0}, x.data(), {&from_output, 0}, output.data(), batch, ps, stride);
    apply_clipping(clipping, x0, batch, ps, workspace_.scratch());
  }

  /// Runs the step of plan `p` on x in place (see StepPlan), in one pass unless dynamic thresholding needs
  /// x0 whole first; stores x0 into x0_out when it is not null. kHistory / kNoise say whether the sampler
  /// can use a history (then `history` holds x.size() values) and noise, so that only those kernels are
  /// compiled. Noise from a ddpm::NoiseSource or ddpm::PerImageNoiseSource is made a chunk at a time inside
  /// the pass and never stored: the result equals drawing it into a tensor first, bit for bit.
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
    // One kernel per variant; the flags a sampler cannot use are compile-time false.
    const bool store_x0 = x0_out != nullptr && source != X0Source::given;
    const auto read_history = possible_flag<kHistory>(p.history_coef != 0.0);
    const auto add_noise = possible_flag<kNoise>(p.noise);
    with_x0_source(source, [&](auto x0_source) {
      with_flags(
          [&](auto store, auto read, auto with_noise) {
            auto kernel = [&a](Eigen::Index first, Eigen::Index last, const S* z) {
              step_range<S, decltype(x0_source)::value, decltype(store)::value, decltype(read)::value, kHistory,
                         decltype(with_noise)::value>(a, first, last, z);
            };
            if constexpr (!decltype(with_noise)::value) {
              run_ranges(total, kernel, static_cast<const S*>(nullptr));
            } else if constexpr (std::is_same_v<std::remove_cvref_t<N>, NoiseSource>) {
              // A NoiseSource's normals are made a chunk at a time inside the pass.
              check_stream_range(fn, noise.offset(), static_cast<std::uint64_t>(total));
              for_each_normal_chunk<S>(noise.seed(), noise.offset(), static_cast<std::uint64_t>(total),
                                       [&kernel](const S* z, std::size_t first, std::size_t last) {
                                         kernel(static_cast<Eigen::Index>(first), static_cast<Eigen::Index>(last), z);
                                       });
              noise.set_offset(noise.offset() + static_cast<std::uint64_t>(total));
            } else if constexpr (std::is_same_v<std::remove_cvref_t<N>, PerImageNoiseSource>) {
              // Each image's normals, from its own stream, a chunk at a time inside the pass.
              const auto batch = static_cast<std::uint64_t>(x.dimension(0));
              const auto ps = static_cast<std::uint64_t>(per_sample_size(x));
              noise.check_draw(fn, batch, ps);
              for_each_image_normal_chunk<S>(noise.seed(), noise.first_index(), noise.offset(), batch, ps,
                                             [&kernel](const S* z, std::size_t first, std::size_t last) {
                                               kernel(static_cast<Eigen::Index>(first),
                                                      static_cast<Eigen::Index>(last), z);
                                             });
              noise.set_offset(noise.offset() + ps);
            } else {
              run_ranges(total, kernel, draw_noise<S, rank_v<X>>(fn, noise, x.dimensions(), workspace_));
            }
          },
          store_x0, read_history, add_noise);
    });
  }

  NoiseSchedule<S> schedule_;
  std::vector<int> timesteps_;
  Workspace<S> workspace_;
};

}  // namespace ddpm::detail
