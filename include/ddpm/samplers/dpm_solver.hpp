// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// DPM-Solver++ (Lu et al. 2022), multistep, first to third order ("2M", "3M"): an exponential integrator of
// the probability-flow ODE in the data-prediction form, in the log-SNR time lambda = -log sigma, reusing the
// previous steps' x0 predictions for the higher-order terms; with diffusers' other algorithm types, the
// noise-prediction form (DPM-Solver) and the SDE variants of both. The multistep core here also runs the
// k-diffusion DPM++ 2M SDE / 3M SDE samplers (dpmpp_sde_multistep.hpp).
//                                                          [docs/samplers.md, Eqs. (S11)-(S12), (S34)-(S36)]

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

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

/// The second-order update of DPM-Solver++(2M) (diffusers' `solver_type`): "midpoint" (the paper's
/// Algorithm 2, diffusers' default) or "heun".
enum class SolverType { midpoint, heun };

/// diffusers' `algorithm_type` of DPMSolverMultistepScheduler:          [docs/samplers.md, Eqs. (S34)-(S36)]
///   dpmsolver_pp      "dpmsolver++": the probability-flow ODE in the data-prediction (x0) form (the default);
///   dpmsolver         "dpmsolver": the same ODE in the noise-prediction (eps) form (Lu et al. 2022a);
///   sde_dpmsolver_pp  "sde-dpmsolver++": the reverse SDE in the x0 form (DPM++ 2M SDE), draws noise;
///   sde_dpmsolver     "sde-dpmsolver": the reverse SDE in the eps form (orders 1 and 2), draws noise.
enum class DPMSolverAlgorithm { dpmsolver_pp, dpmsolver, sde_dpmsolver_pp, sde_dpmsolver };

/// Options of DPMSolverMultistepSampler (diffusers' DPMSolverMultistepScheduler).
struct DPMSolverOptions {
  /// The grid (GridOptions; DPMSolverMultistepSampler::grid_defaults: N = 20, linspace spacing with
  /// N + 1 points and the smallest dropped, as the solver ends at sigma = 0 instead; ramps from sigma[T-1]
  /// down to sigma[0], as DPMSolverMultistepScheduler).
  GridOptions grid = {};
  /// 1 (DPM-Solver++ 1, i.e. DDIM), 2 (2M) or 3 (3M; not with sde_dpmsolver).
  int solver_order = 2;
  /// The second-order update (also the second step of a third-order run).
  SolverType solver_type = SolverType::midpoint;
  /// diffusers' algorithm_type. dpmsolver and sde_dpmsolver need grid.final_sigma = FinalSigma::sigma_min (as
  /// diffusers); the sde ones draw noise (a noise source or tensor at every step but a last one to sigma 0).
  DPMSolverAlgorithm algorithm_type = DPMSolverAlgorithm::dpmsolver_pp;
  /// Use first order for the last step when N < 15 (always when the last sigma is 0), and at most second
  /// order for the step before it when N < 15.
  bool lower_order_final = true;
  /// Use first order for the last step whatever N (diffusers' euler_at_final).
  bool euler_at_final = false;
  /// Bounds on the predicted x0 (diffusers has thresholding here). Default: none.
  Clipping clipping = {};
};

namespace detail {

/// The method of a multistep DPM-Solver step, shared by DPMSolverMultistepSampler and the k-diffusion
/// samplers DPMPP2MSDESampler / DPMPP3MSDESampler.                     [docs/samplers.md, Eqs. (S34)-(S36)]
struct MultistepMethod {
  bool data = true;        // the x0 form (DPM-Solver++) or the eps form (DPM-Solver)
  bool sde_eps = false;    // eps form: diffusers' sde-dpmsolver
  double eta = 0.0;        // x0 form: 0 the ODE, 1 diffusers' sde-dpmsolver++, else k-diffusion's eta
  double s_noise = 1.0;    // scales the fresh noise (k-diffusion)
};

/// One step of order q in the form  x <- c_x x + c_m m_i + c_1 m_{i-1} + c_2 m_{i-2} + c_z z,  m = x0 (x0
/// form) or eps (eps form) at the steps' noise levels; x variance-preserving.
struct MultistepCoefficients {
  double c_x = 0.0, c_m = 0.0, c_1 = 0.0, c_2 = 0.0, c_z = 0.0;
};

/// The coefficients of a step from sigma s0 to s_t of order q (1, 2, 3), with s1, s2 the sigmas of the
/// previous two steps (read for q >= 2, 3). With alpha = 1 / sqrt(1 + s^2), sigma_vp = s alpha,
/// h = log(s0 / s_t) (lambda_t - lambda_s0), r0 = log(s1 / s0) / h, r1 = log(s2 / s1) / h and
/// D1_0 = (m_i - m_{i-1}) / r0, D1_1 = (m_{i-1} - m_{i-2}) / r1, D1 = D1_0 + r0 / (r0 + r1) (D1_0 - D1_1),
/// D2 = (D1_0 - D1_1) / (r0 + r1):                                      [docs/samplers.md, Eqs. (S34)-(S36)]
///   x0 form, H = (1 + eta) h, E = expm1(-H), phi2 = E / H + 1, phi3 = phi2 / H - 1/2:
///     x <- (sigma_vp_t / sigma_vp_0) e^{-eta h} x - alpha_t E m_i
///          [q = 2: + alpha_t (-E / 2) D1_0 (midpoint) or alpha_t phi2 D1_0 (heun)]
///          [q = 3: + alpha_t phi2 D1 - alpha_t phi3 D2]
///          + s_noise sigma_vp_t sqrt(-expm1(-2 eta h)) z;   s_t = 0: x <- m_i.
///   eps form, E = expm1(h), k = 2 (sde-dpmsolver) or 1:
///     x <- (alpha_t / alpha_0) x - k sigma_vp_t E m_i
///          [q = 2: - k sigma_vp_t E / 2 D1_0 (midpoint) or - k sigma_vp_t (E / h - 1) D1_0 (heun)]
///          [q = 3 (k = 1): - sigma_vp_t (E / h - 1) D1 - sigma_vp_t ((E - h) / h^2 - 1/2) D2]
///          + sigma_vp_t sqrt(expm1(2 h)) z (sde-dpmsolver).
inline MultistepCoefficients multistep_coefficients(const MultistepMethod& m, int q, SolverType type, double s_t,
                                                    double s0, double s1, double s2) {
  MultistepCoefficients c;
  if (s_t == 0.0) {  // lambda_t = +inf: the x0-form update is exactly x0 (the eps form never gets here)
    c.c_m = 1.0;
    return c;
  }
  const double alpha_t = 1.0 / std::sqrt(1.0 + s_t * s_t), sigma_t = s_t * alpha_t;
  const double alpha_0 = 1.0 / std::sqrt(1.0 + s0 * s0), sigma_0 = s0 * alpha_0;
  const double h = std::log(s0) - std::log(s_t);
  // b1, b2: the weights of D1 (D1_0 when q = 2) and D2; expanded into m_i, m_{i-1}, m_{i-2} below.
  double b1 = 0.0, b2 = 0.0;
  if (m.data) {
    const double H = (1.0 + m.eta) * h, E = std::expm1(-H);
    c.c_x = sigma_t / sigma_0 * std::exp(-m.eta * h);
    c.c_m = -alpha_t * E;
    const double phi2 = E / H + 1.0;
    if (q == 2) b1 = type == SolverType::midpoint ? -0.5 * alpha_t * E : alpha_t * phi2;
    if (q == 3) {
      b1 = alpha_t * phi2;
      b2 = -alpha_t * (phi2 / H - 0.5);
    }
    if (m.eta > 0.0) c.c_z = m.s_noise * sigma_t * std::sqrt(-std::expm1(-2.0 * m.eta * h));
  } else {
    const double k = m.sde_eps ? 2.0 : 1.0, E = std::expm1(h);
    c.c_x = alpha_t / alpha_0;
    c.c_m = -k * sigma_t * E;
    if (q == 2) b1 = type == SolverType::midpoint ? -0.5 * k * sigma_t * E : -k * sigma_t * (E / h - 1.0);
    if (q == 3) {
      b1 = -sigma_t * (E / h - 1.0);
      b2 = -sigma_t * ((E - h) / (h * h) - 0.5);
    }
    if (m.sde_eps) c.c_z = sigma_t * std::sqrt(std::expm1(2.0 * h));
  }
  if (q >= 2) {
    const double r0 = (std::log(s1) - std::log(s0)) / h;
    if (q == 2) {
      c.c_m += b1 / r0;
      c.c_1 = -b1 / r0;
    } else {
      const double r1 = (std::log(s2) - std::log(s1)) / h;
      // b1 D1 + b2 D2 = A D1_0 - B D1_1
      const double A = b1 * (1.0 + r0 / (r0 + r1)) + b2 / (r0 + r1), B = b1 * r0 / (r0 + r1) + b2 / (r0 + r1);
      c.c_m += A / r0;
      c.c_1 = -A / r0 - B / r1;
      c.c_2 = B / r1;
    }
  }
  return c;
}

/// The operands of the multistep kernel (values of the scalar type; pointers to element 0):
///   x0 = bound(a_x x + a_o output)  (or read from x0 when given),  m = b_x x + b_o output + b_0 x0,
///   x <- c_x x + c_m m + c_1 h1 + c_2 hw + c_z z,  then hw <- m
/// h1 holds m_{i-1}, hw m_{i-2} on entry (read before it is overwritten with m_i).
template <class S>
struct MultistepOperands {
  S* x;
  const S* output;
  Eigen::Index output_stride, per_sample;
  S* x0;
  const S* h1;
  S* hw;
  S a_x, a_o, range, b_x, b_o, b_0, c_x, c_m, c_1, c_2, c_z;
};

/// The multistep step on elements [first, last), one pass (kQ: the number of m terms read, 1..3).
template <class S, X0Source kX0, bool kStoreX0, int kQ, bool kNoise>
void multistep_range(const MultistepOperands<S>& a, Eigen::Index first, Eigen::Index last, const S* z) {
  auto body = [&a](Eigen::Index i, Eigen::Index n, const S* __restrict out, const S* __restrict zs) {
    S* __restrict xs = a.x + i;
    S* __restrict x0s = kX0 == X0Source::given || kStoreX0 ? a.x0 + i : nullptr;
    const S* __restrict h1 = kQ >= 2 ? a.h1 + i : nullptr;
    S* __restrict hw = a.hw + i;
    for (Eigen::Index k = 0; k < n; ++k) {
      const S xv = xs[k], ov = out[k];
      S x0;
      if constexpr (kX0 == X0Source::given) {
        x0 = x0s[k];
      } else {
        x0 = a.a_x * xv + a.a_o * ov;
        if constexpr (kX0 == X0Source::compute_clip) x0 = std::min(std::max(x0, -a.range), a.range);
        if constexpr (kStoreX0) x0s[k] = x0;
      }
      const S m = a.b_x * xv + a.b_o * ov + a.b_0 * x0;
      S v = a.c_x * xv + a.c_m * m;
      if constexpr (kQ >= 2) v += a.c_1 * h1[k];
      if constexpr (kQ >= 3) v += a.c_2 * hw[k];
      if constexpr (kNoise) v += a.c_z * zs[k];
      hw[k] = m;
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

/// What the multistep samplers share: the sigmas, the two history buffers and the kernel run with its noise.
/// Derived implements step_impl and calls multistep_step.
template <class Derived, std::floating_point S>
class MultistepBase : public SamplerBase<Derived, S> {
  using Base = SamplerBase<Derived, S>;

 public:
  /// The noise levels sigma_0, ..., sigma_{N-1} of the steps followed by the final sigma (N + 1 values).
  const std::vector<double>& sigmas() const { return sigmas_; }
  /// Forgets the history; the next step must be step 0.
  void reset() { next_step_ = 0; }

 protected:
  explicit MultistepBase(NoiseSchedule<S> schedule) : Base(std::move(schedule)) {}

  /// Step i of order q with `method`; checks the order of the run. Noise is drawn only when c_z != 0.
  template <DenseTensor M, MutableDenseTensor X, class N, class X0>
  void multistep_step(const char* fn, int i, int q, SolverType type, const MultistepMethod& method, const M& output,
                      X& x, N& noise, X0& x0_out, Prediction kind, const Clipping& clipping) {
    const auto target = this->begin_step(fn, i, output, x, noise, x0_out, kind);
    const auto total = static_cast<std::size_t>(x.size());
    check_in_order(fn, i, next_step_, x, elements_);
    elements_ = total;
    if (i == 0) newest_ = 0;
    for (auto& h : history_) h.resize(total);  // step i reads only what steps i - 1 and i - 2 wrote
    const auto sig = [this](int k) { return sigmas_[static_cast<std::size_t>(std::max(k, 0))]; };
    const double s0 = sig(i), s_t = sig(i + 1);
    const MultistepCoefficients c = multistep_coefficients(method, q, type, s_t, s0, sig(i - 1), sig(i - 2));
    const double alpha_bar = 1.0 / (1.0 + s0 * s0);
    const Conversion to_x0 = x0_conversion(kind, alpha_bar);
    MultistepOperands<S> a{x.data(), output.data(), target.stride, per_sample_size(x), target.x0,
                           history_[static_cast<std::size_t>(newest_)].data(),
                           history_[static_cast<std::size_t>(1 - newest_)].data(),
                           static_cast<S>(to_x0.from_x), static_cast<S>(to_x0.from_output),
                           static_cast<S>(clipping.range), S(0), S(0), S(1),
                           static_cast<S>(c.c_x), static_cast<S>(c.c_m), static_cast<S>(c.c_1),
                           static_cast<S>(c.c_2), static_cast<S>(c.c_z)};
    if (!method.data) {
      if (clipping.mode == Clipping::Mode::none) {  // eps straight from the output
        const Conversion to_eps = eps_conversion(kind, alpha_bar);
        a.b_x = static_cast<S>(to_eps.from_x);
        a.b_o = static_cast<S>(to_eps.from_output);
        a.b_0 = S(0);
      } else {  // eps = (x - alpha x0) / sigma_vp of the bounded x0, as diffusers' thresholding does
        const double alpha = std::sqrt(alpha_bar), sigma_vp = s0 * alpha;
        a.b_x = static_cast<S>(1.0 / sigma_vp);
        a.b_0 = static_cast<S>(-alpha / sigma_vp);
      }
    }
    X0Source source = clipping.mode == Clipping::Mode::clip ? X0Source::compute_clip : X0Source::compute;
    if (clipping.mode == Clipping::Mode::dynamic_threshold) {
      a.x0 = target.x0 != nullptr ? target.x0 : this->workspace_.x0(x.size());
      this->predict_x0(output, target.stride, x, to_x0, clipping, a.x0);
      source = X0Source::given;
    }
    const bool store_x0 = target.x0 != nullptr && source != X0Source::given;
    const bool with_noise = c.c_z != 0.0;
    with_x0_source(source, [&](auto x0_source) {
      with_flags(
          [&](auto store, auto add_noise) {
            auto run = [&](auto q_constant) {
              auto kernel = [&a](Eigen::Index first, Eigen::Index last, const S* z) {
                multistep_range<S, decltype(x0_source)::value, decltype(store)::value, decltype(q_constant)::value,
                                decltype(add_noise)::value>(a, first, last, z);
              };
              run_with_noise<decltype(add_noise)::value>(fn, kernel, x, noise);
            };
            switch (q) {
              case 1: run(std::integral_constant<int, 1>{}); break;
              case 2: run(std::integral_constant<int, 2>{}); break;
              default: run(std::integral_constant<int, 3>{}); break;
            }
          },
          store_x0, with_noise);
    });
    newest_ = 1 - newest_;
    next_step_ = i + 1;
  }

  /// Runs kernel(first, last, z) over x, with the noise made chunk by chunk inside the pass for a
  /// NoiseSource / PerImageNoiseSource (as SamplerBase::run_step), else drawn whole first.
  template <bool kNoise, class K, MutableDenseTensor X, class N>
  void run_with_noise(const char* fn, K& kernel, X& x, N& noise) {
    const Eigen::Index total = x.size();
    if constexpr (!kNoise) {
      (void)fn, (void)noise;
      run_ranges(total, kernel, static_cast<const S*>(nullptr));
    } else if constexpr (std::is_same_v<std::remove_cvref_t<N>, NoiseSource>) {
      check_stream_range(fn, noise.offset(), static_cast<std::uint64_t>(total));
      for_each_normal_chunk<S>(noise.seed(), noise.offset(), static_cast<std::uint64_t>(total),
                               [&kernel](const S* z, std::size_t first, std::size_t last) {
                                 kernel(static_cast<Eigen::Index>(first), static_cast<Eigen::Index>(last), z);
                               });
      noise.set_offset(noise.offset() + static_cast<std::uint64_t>(total));
    } else if constexpr (std::is_same_v<std::remove_cvref_t<N>, PerImageNoiseSource>) {
      const auto batch = static_cast<std::uint64_t>(x.dimension(0));
      const auto ps = static_cast<std::uint64_t>(per_sample_size(x));
      noise.check_draw(fn, batch, ps);
      for_each_image_normal_chunk<S>(noise.seed(), noise.first_index(), noise.offset(), batch, ps,
                                     [&kernel](const S* z, std::size_t first, std::size_t last) {
                                       kernel(static_cast<Eigen::Index>(first), static_cast<Eigen::Index>(last), z);
                                     });
      noise.set_offset(noise.offset() + ps);
    } else {
      run_ranges(total, kernel, draw_noise<S, rank_v<X>>(fn, noise, x.dimensions(), this->workspace_));
    }
  }

  std::vector<double> sigmas_;
  std::vector<S> history_[2];  // m of the previous two steps: history_[newest_] the newer
  int newest_ = 0;
  std::size_t elements_ = 0;  // x.size() of the run
  int next_step_ = 0;
};

}  // namespace detail

/// DPM-Solver++(2M) and (3M), DPM-Solver, and their SDE variants.  [docs/samplers.md, Eqs. (S11)-(S12), (S34)-(S36)]
/// With sigma_i the noise levels (sigma[t] of Eq. (12) of docs/math.md at the visited timesteps, a sigma
/// ramp or a given list; see make_grid), followed by the final sigma, and for each noise level
///   alpha = 1 / sqrt(1 + sigma^2),  sigma_vp = sigma alpha,  lambda = log(alpha / sigma_vp) = -log sigma,
/// step i from sigma_i to sigma_{i+1} with h = lambda_{i+1} - lambda_i and D0 = x0_i (the prediction
/// converted to x0 at alpha_bar = alpha_i^2 and bounded), for the default algorithm_type dpmsolver_pp:
///   first order:  x <- (sigma_vp_{i+1} / sigma_vp_i) x - alpha_{i+1} (e^-h - 1) D0
///   second order: D1 = (x0_i - x0_{i-1}) / r,  r = (lambda_i - lambda_{i-1}) / h
///     midpoint:   x <- (sigma_vp_{i+1} / sigma_vp_i) x - alpha_{i+1} (e^-h - 1) (D0 + D1 / 2)
///     heun:       x <- (sigma_vp_{i+1} / sigma_vp_i) x - alpha_{i+1} (e^-h - 1) D0
///                      + alpha_{i+1} ((e^-h - 1) / h + 1) D1
///   third order and the other algorithm types: Eqs. (S34)-(S36) (detail::multistep_coefficients), as
///   diffusers' multistep_dpm_solver_third_order_update and algorithm_type; the exception is
///   sde_dpmsolver_pp at third order, where diffusers' D2 weight has -1/2 for +1/2 (an O(1) weight on a
///   term of size h^2): ours is the consistent one, k-diffusion's sample_dpmpp_3m_sde at eta = 1.
/// Orders (diffusers' step): step 0 is first order, step 1 at most second; the last step is first order
/// when the final sigma is 0, with euler_at_final, or with lower_order_final and N < 15, and the step
/// before it at most second order with lower_order_final and N < 15. When the final sigma is 0 the last
/// step returns D0. The SDE types add s z with z ~ N(0, I) from the noise argument at every step but a
/// last one to sigma 0. x is the variance-preserving x_t throughout, as in diffusers.
/// Timesteps (diffusers' semantics): linspace = round(linspace(0, T - 1, N + 1))[::-1][:-1]; leading = k
/// (T // (N + 1)) + steps_offset for k = N..1; trailing as inference_timesteps. When N + 1 > T (linspace,
/// leading) every timestep T-1..0 is used (diffusers would repeat timesteps). Under zero terminal SNR,
/// alpha_bar[T-1] = 0 is replaced by 2^-24 (sigma_max about 4096), as diffusers does.
/// The sampler keeps the previous predictions (its history): a run must step i = 0, 1, 2, ... in order;
/// step 0 (or reset()) starts a new run.
template <std::floating_point S>
class DPMSolverMultistepSampler : public detail::MultistepBase<DPMSolverMultistepSampler<S>, S> {
  using Base = detail::MultistepBase<DPMSolverMultistepSampler<S>, S>;
  friend detail::SamplerBase<DPMSolverMultistepSampler<S>, S>;

 public:
  /// The grid defaults (DPMSolverMultistepScheduler's): N = 20, linspace spacing with N + 1 points and the
  /// smallest dropped, ramps from sigma[T-1] down to sigma[0].
  static constexpr GridDefaults grid_defaults = GridDefaults::dpm_solver_multistep();

  /// Throws ddpm::invalid_argument if N is outside [1, T], solver_order is not 1, 2 or 3 (1 or 2 for
  /// sde_dpmsolver), algorithm_type or solver_type is not an enumerator, dpmsolver / sde_dpmsolver is
  /// asked for with final_sigma zero, or the grid options (see make_grid) or clipping options are bad.
  explicit DPMSolverMultistepSampler(NoiseSchedule<S> schedule, DPMSolverOptions options = {})
      : Base(std::move(schedule)), options_(std::move(options)) {
    const char* fn = "ddpm::DPMSolverMultistepSampler";
    const auto algorithm = options_.algorithm_type;
    if (algorithm != DPMSolverAlgorithm::dpmsolver_pp && algorithm != DPMSolverAlgorithm::dpmsolver &&
        algorithm != DPMSolverAlgorithm::sde_dpmsolver_pp && algorithm != DPMSolverAlgorithm::sde_dpmsolver) {
      detail::throw_invalid_argument(std::string(fn) + ": algorithm_type is " +
                                     ddpm::detail::number_string(static_cast<int>(algorithm)) +
                                     ", but must be DPMSolverAlgorithm::dpmsolver_pp, dpmsolver, sde_dpmsolver_pp "
                                     "or sde_dpmsolver");
    }
    const int max_order = algorithm == DPMSolverAlgorithm::sde_dpmsolver ? 2 : 3;
    if (options_.solver_order < 1 || options_.solver_order > max_order) {
      detail::throw_invalid_argument(std::string(fn) + ": solver_order is " + ddpm::detail::number_string(options_.solver_order) +
                                     (max_order == 3 ? ", but must be 1, 2 or 3"
                                                     : ", but must be 1 or 2 with algorithm_type sde_dpmsolver (diffusers "
                                                       "has no third-order update for it)"));
    }
    if (options_.solver_type != SolverType::midpoint && options_.solver_type != SolverType::heun) {
      detail::throw_invalid_argument(std::string(fn) + ": solver_type is " +
                                     ddpm::detail::number_string(static_cast<int>(options_.solver_type)) +
                                     ", but must be SolverType::midpoint or heun");
    }
    const bool eps_form = algorithm == DPMSolverAlgorithm::dpmsolver || algorithm == DPMSolverAlgorithm::sde_dpmsolver;
    if (eps_form && options_.grid.final_sigma == FinalSigma::zero) {
      detail::throw_invalid_argument(std::string(fn) +
                                     ": final_sigma is FinalSigma::zero, but algorithm_type dpmsolver and sde_dpmsolver "
                                     "need FinalSigma::sigma_min (as diffusers' final_sigmas_type)");
    }
    detail::check_clipping(fn, options_.clipping);
    Grid grid = make_grid(this->schedule_, options_.grid, grid_defaults, fn);
    this->timesteps_ = std::move(grid.timesteps);
    this->sigmas_ = std::move(grid.sigmas);
    method_.data = !eps_form;
    method_.sde_eps = algorithm == DPMSolverAlgorithm::sde_dpmsolver;
    method_.eta = algorithm == DPMSolverAlgorithm::sde_dpmsolver_pp ? 1.0 : 0.0;
  }

  const DPMSolverOptions& options() const { return options_; }

  /// The order of step i (1, 2 or 3) by diffusers' rules (see the class comment).
  /// Throws ddpm::invalid_argument if i is outside [0, num_inference_steps()).
  int step_order(int i) const {
    detail::check_step_index("ddpm::DPMSolverMultistepSampler::step_order", i, this->num_inference_steps());
    const int n = this->num_inference_steps();
    const bool last = i == n - 1;
    const bool small = options_.lower_order_final && n < 15;
    const bool lower_final =
        last && (options_.euler_at_final || small || this->sigmas_[static_cast<std::size_t>(i + 1)] == 0.0);
    const bool lower_second = i == n - 2 && small;
    if (options_.solver_order == 1 || i < 1 || lower_final) return 1;
    if (options_.solver_order == 2 || i < 2 || lower_second) return 2;
    return 3;
  }

  /// The timesteps of diffusers' DPMSolverMultistepScheduler for N steps (see the class comment).
  /// Throws ddpm::invalid_argument as inference_timesteps.
  static std::vector<int> dpm_timesteps(int T, int N, TimestepSpacing spacing, int steps_offset = 0) {
    return detail::grid_timesteps(T, N, spacing, steps_offset, /*drop_final=*/true);
  }

 private:
  template <DenseTensor M, MutableDenseTensor X, class N, class X0>
  void step_impl(int i, const M& output, X& x, N& noise, X0& x0_out, Prediction kind) {
    const char* fn = "ddpm::DPMSolverMultistepSampler::step";
    if (options_.algorithm_type != DPMSolverAlgorithm::dpmsolver_pp || options_.solver_order == 3) {
      this->check_step_index(fn, i);
      this->multistep_step(fn, i, step_order(i), options_.solver_type, method_, output, x, noise, x0_out, kind,
                           options_.clipping);
      return;
    }
    // DPM-Solver++ of order 1 or 2: the shared fused kernel, with the previous x0 as its history.
    const auto target = this->begin_step(fn, i, output, x, noise, x0_out, kind);
    if (i != 0 && i != this->next_step_) {
      detail::throw_invalid_argument(std::string(fn) + ": step index i is " + ddpm::detail::number_string(i) + ", but must be " +
                                     ddpm::detail::number_string(this->next_step_) +
                                     " (a multistep sampler steps in order; step 0 or reset() starts a new run)");
    }
    auto& history = this->history_[0];
    if (i > 0 && static_cast<Eigen::Index>(history.size()) != x.size()) {
      detail::throw_invalid_argument(std::string(fn) + ": x has shape " + detail::shape_string(x) +
                                     ", but the run began with another shape (" + ddpm::detail::number_string(history.size()) +
                                     " elements); start a new run with step 0");
    }

    const auto& sigmas = this->sigmas_;
    const double s0 = sigmas[static_cast<std::size_t>(i)], s1 = sigmas[static_cast<std::size_t>(i + 1)];
    const double alpha0 = 1.0 / std::sqrt(1.0 + s0 * s0), sigma_vp0 = s0 * alpha0;
    detail::StepPlan plan{x0_conversion(kind, alpha0 * alpha0)};
    if (s1 == 0.0) {
      plan.x0_coef = 1.0;  // lambda = +inf: the first-order update is exactly x0
    } else {
      const double alpha1 = 1.0 / std::sqrt(1.0 + s1 * s1), sigma_vp1 = s1 * alpha1;
      const double h = std::log(s0) - std::log(s1);  // lambda_{i+1} - lambda_i, lambda = -log sigma
      const double em1 = std::expm1(-h);             // e^-h - 1
      plan.x_coef = sigma_vp1 / sigma_vp0;
      plan.x0_coef = -alpha1 * em1;
      const int n = this->num_inference_steps();
      const bool lower_final = i == n - 1 && (options_.euler_at_final || (options_.lower_order_final && n < 15));
      if (options_.solver_order == 2 && i > 0 && !lower_final) {  // step_order(i) == 2
        const double s_prev = sigmas[static_cast<std::size_t>(i - 1)];
        const double r = (std::log(s_prev) - std::log(s0)) / h;
        // x <- c_x x + a D0 + b D1 with D1 = (x0_i - x0_{i-1}) / r
        const double b = options_.solver_type == SolverType::midpoint ? -0.5 * alpha1 * em1 : alpha1 * (em1 / h + 1.0);
        plan.x0_coef += b / r;
        plan.history_coef = -b / r;
      }
    }
    // The history is read as the previous x0 and overwritten with this one in the same pass.
    history.resize(static_cast<std::size_t>(x.size()));
    this->template run_step<true, false>(fn, plan, output, target.stride, x, noise, target.x0, options_.clipping,
                                         history.data());
    this->elements_ = history.size();
    this->next_step_ = i + 1;
  }

  void check_step_index(const char* fn, int i) const { detail::check_step_index(fn, i, this->num_inference_steps()); }

  DPMSolverOptions options_;
  detail::MultistepMethod method_;
};

}  // namespace ddpm
