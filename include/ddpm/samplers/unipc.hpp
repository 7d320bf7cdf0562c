// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of Diffusion
// Models"), multistep, as diffusers' UniPCMultistepScheduler: an exponential integrator of the
// probability-flow ODE in the log-SNR time lambda = -log sigma whose predictor UniP-p combines the last p
// model outputs, and whose corrector UniC-p, run when the next model output is known, raises the order of
// the sample the next step starts from by one.                        [docs/samplers.md, Eqs. (S37)-(S39)]

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "ddpm/posterior.hpp"
#include "ddpm/predictor.hpp"
#include "ddpm/samplers/detail/sampler_base.hpp"
#include "ddpm/samplers/detail/step_kernel.hpp"
#include "ddpm/samplers/detail/two_stage.hpp"
#include "ddpm/samplers/grid.hpp"
#include "ddpm/samplers/sampler.hpp"
#include "ddpm/schedule.hpp"
#include "ddpm/tensor.hpp"
#include "ddpm/timesteps.hpp"

namespace ddpm {

/// UniPC's B(h) (diffusers' `solver_type`): bh1, B(h) = h' (recommended by its authors for unconditional
/// sampling with fewer than 10 steps), or bh2, B(h) = e^h' - 1 (diffusers' default), where h' is -h for the
/// data-prediction form and h for the noise-prediction form.                 [docs/samplers.md, Eq. (S37)]
enum class UniPCSolverType { bh1, bh2 };

/// "bh1" or "bh2".
inline const char* unipc_solver_type_name(UniPCSolverType type) {
  switch (type) {
    case UniPCSolverType::bh1: return "bh1";
    case UniPCSolverType::bh2: return "bh2";
  }
  return "unknown";
}

/// Options of UniPCSampler (diffusers' UniPCMultistepScheduler; the defaults are diffusers').
struct UniPCOptions {
  /// The grid (GridOptions; UniPCSampler::grid_defaults: DPMSolverMultistepSampler's, as diffusers'
  /// UniPC spaces its timesteps as DPM-Solver does; sigma_spacing exponential is diffusers'
  /// use_exponential_sigmas, final_sigma its final_sigmas_type).
  GridOptions grid = {};
  /// p of UniP-p: 1, 2 or 3 (the corrector then makes the order p + 1).
  int solver_order = 2;
  UniPCSolverType solver_type = UniPCSolverType::bh2;
  /// true: the data-prediction form (the model output converted to x0, which `clipping` may bound);
  /// false: the noise-prediction form (converted to eps; no bounds).
  bool predict_x0 = true;
  /// Lower the order of the last steps: step i uses order min(solver_order, N - i) (diffusers' rule, for
  /// every N).
  bool lower_order_final = true;
  /// Step indices k whose result is not corrected (diffusers' `disable_corrector`): the corrector that
  /// would run in step k + 1 on the sample step k produced is skipped. Entries >= N have no effect.
  std::vector<int> disable_corrector = {};
  /// Bounds on the predicted x0 in the data-prediction form (diffusers has thresholding only). Default: none.
  Clipping clipping = {};
};

/// The coefficients of one UniPC step, the model outputs m converted to x0 (or eps) as the form says:
///   corrector (when corrector_order > 0), from the previous step's corrected sample x_prev:
///     x_c = last_coef * x_prev + sum_j corrector[j] * m_{i-j}     (j = 0..corrector_order)
///   (else x_c = x), then the predictor:
///     x <- x_coef * x_c + sum_j predictor[j] * m_{i-j}               (j = 0..predictor_order-1)
struct UniPCCoefficients {
  int predictor_order = 1;
  int corrector_order = 0;
  double x_coef = 0.0;
  std::vector<double> predictor;
  double last_coef = 0.0;
  std::vector<double> corrector;
};

namespace detail {

/// z phi_{k+1}(z) for k = 1..n, phi_m(z) = sum_{j>=0} z^j / (j + m)!: diffusers' h_phi_k of its k-th
/// iteration (h_phi_k = h_phi_1 / hh - 1, then h_phi_k / hh - 1 / k!). Its recursion divides by z and loses
/// digits where |z| < 1; there the series is summed instead (it converges fast), elsewhere the recursion
/// runs as diffusers runs it.
inline std::vector<double> unipc_h_phi(double z, int n) {
  std::vector<double> out(static_cast<std::size_t>(n));
  if (std::abs(z) >= 1.0) {
    double h_phi_k = std::expm1(z) / z - 1.0, factorial = 1.0;
    for (int k = 1; k <= n; ++k) {
      out[static_cast<std::size_t>(k - 1)] = h_phi_k;
      factorial *= k + 1;
      h_phi_k = h_phi_k / z - 1.0 / factorial;
    }
    return out;
  }
  for (int k = 1; k <= n; ++k) {
    // phi_{k+1}(z) = sum_j z^j / (j + k + 1)!
    double term = 1.0;
    for (int m = 2; m <= k + 1; ++m) term /= m;
    double sum = 0.0;
    for (int j = 0; j < 40 && term != 0.0; ++j) {
      sum += term;
      term *= z / (j + k + 2);
    }
    out[static_cast<std::size_t>(k - 1)] = z * sum;
  }
  return out;
}

/// Solves the n x n system a y = b (row-major a) by Gaussian elimination with partial pivoting (n <= 3).
inline std::vector<double> unipc_solve(std::vector<double> a, std::vector<double> b) {
  const auto n = static_cast<int>(b.size());
  auto at = [&a, n](int r, int c) -> double& { return a[static_cast<std::size_t>(r * n + c)]; };
  for (int c = 0; c < n; ++c) {
    int p = c;
    for (int r = c + 1; r < n; ++r) {
      if (std::abs(at(r, c)) > std::abs(at(p, c))) p = r;
    }
    if (p != c) {
      for (int k = 0; k < n; ++k) std::swap(at(c, k), at(p, k));
      std::swap(b[static_cast<std::size_t>(c)], b[static_cast<std::size_t>(p)]);
    }
    for (int r = c + 1; r < n; ++r) {
      const double f = at(r, c) / at(c, c);
      for (int k = c; k < n; ++k) at(r, k) -= f * at(c, k);
      b[static_cast<std::size_t>(r)] -= f * b[static_cast<std::size_t>(c)];
    }
  }
  std::vector<double> y(static_cast<std::size_t>(n));
  for (int r = n - 1; r >= 0; --r) {
    double s = b[static_cast<std::size_t>(r)];
    for (int k = r + 1; k < n; ++k) s -= at(r, k) * y[static_cast<std::size_t>(k)];
    y[static_cast<std::size_t>(r)] = s / at(r, r);
  }
  return y;
}

/// The UniP / UniC update from noise level sigma_s (index s of `sigmas`) to sigma_t over the outputs
/// m_s, m_{s-1}, ..., m_{s-order+1} (and, for the corrector, the new output m_t), in the form
///   x_t = x_coef * x_s + sum_j coef[j] * m_{s-j}   (predictor; order values)
///   x_t = x_coef * x_s + coef[0] * m_t + sum_j coef[j + 1] * m_{s-j}   (corrector; order + 1 values)
/// as diffusers' multistep_uni_p_bh_update / multistep_uni_c_bh_update compute it:
///   lambda = -log sigma, h = lambda_t - lambda_s, hh = -h (x0 form) or h (eps form),
///   r_k = (lambda_{s-k} - lambda_s) / h, D_k = (m_{s-k} - m_s) / r_k (k = 1..order-1),
///   B = hh (bh1) or e^hh - 1 (bh2), b_k = hh phi_{k+1}(hh) k! / B, R_{kj} = r_j^(k-1) with r_order = 1;
///   predictor rho: order 2: 1/2; order >= 3: R[:-1, :-1] rho = b[:-1]; corrector rho: order 1: 1/2, else R rho = b;
///   x0 form:  x_t = (sigma_vp_t / sigma_vp_s) x_s - alpha_t (e^hh - 1) m_s - alpha_t B (sum_k rho_k D_k [+ rho_last (m_t - m_s)])
///   eps form: x_t = (alpha_t / alpha_s) x_s - sigma_vp_t (e^hh - 1) m_s - sigma_vp_t B (...)
/// with alpha = 1 / sqrt(1 + sigma^2), sigma_vp = sigma alpha.               [docs/samplers.md, (S37)-(S38)]
inline void unipc_update(const std::vector<double>& sigmas, int s, double sigma_t, int order, bool corrector,
                         bool predict_x0, UniPCSolverType type, double& x_coef, std::vector<double>& coef) {
  const double s0 = sigmas[static_cast<std::size_t>(s)];
  const double alpha_s = 1.0 / std::sqrt(1.0 + s0 * s0), alpha_t = 1.0 / std::sqrt(1.0 + sigma_t * sigma_t);
  const double vp_s = s0 * alpha_s, vp_t = sigma_t * alpha_t;
  const double h = std::log(s0) - std::log(sigma_t);
  const double hh = predict_x0 ? -h : h;
  const double h_phi_1 = std::expm1(hh);
  const double B = type == UniPCSolverType::bh1 ? hh : h_phi_1;
  const double scale = predict_x0 ? alpha_t : vp_t;  // alpha_t (x0 form) or sigma_vp_t (eps form)
  x_coef = predict_x0 ? vp_t / vp_s : alpha_t / alpha_s;
  const int terms = corrector ? order + 1 : order;
  coef.assign(static_cast<std::size_t>(terms), 0.0);
  const int ms = corrector ? 1 : 0;  // where m_s is in coef
  coef[static_cast<std::size_t>(ms)] = -scale * h_phi_1;
  // rks: r_1..r_{order-1}, then 1
  std::vector<double> r(static_cast<std::size_t>(order));
  for (int k = 1; k < order; ++k) {
    r[static_cast<std::size_t>(k - 1)] = (-std::log(sigmas[static_cast<std::size_t>(s - k)]) + std::log(s0)) / h;
  }
  r[static_cast<std::size_t>(order - 1)] = 1.0;
  // rho: n unknowns; R_{kj} = r_j^k (k, j < n), b_k = h_phi_k k! / B (k = 1..n)
  const int n = corrector ? order : order - 1;
  std::vector<double> rho;
  if (n == 1) {
    rho = {0.5};  // diffusers' simplified UniP-2 / UniC-1
  } else if (n > 1) {
    const std::vector<double> h_phi = unipc_h_phi(hh, n);
    std::vector<double> R(static_cast<std::size_t>(n * n)), b(static_cast<std::size_t>(n));
    double factorial = 1.0;
    for (int k = 0; k < n; ++k) {
      b[static_cast<std::size_t>(k)] = h_phi[static_cast<std::size_t>(k)] * factorial / B;
      factorial *= k + 2;
      for (int j = 0; j < n; ++j) R[static_cast<std::size_t>(k * n + j)] = std::pow(r[static_cast<std::size_t>(j)], k);
    }
    rho = unipc_solve(std::move(R), std::move(b));
  }
  // - scale B sum_k rho_k (m_{s-k} - m_s) / r_k  [+ rho_last (m_t - m_s)]
  const double g = -scale * B;
  for (int k = 1; k < order && k <= static_cast<int>(rho.size()); ++k) {
    const double w = g * rho[static_cast<std::size_t>(k - 1)] / r[static_cast<std::size_t>(k - 1)];
    coef[static_cast<std::size_t>(ms + k)] += w;
    coef[static_cast<std::size_t>(ms)] -= w;
  }
  if (corrector) {
    const double w = g * rho.back();
    coef[0] += w;
    coef[static_cast<std::size_t>(ms)] -= w;
  }
}

/// The operands of the UniPC step kernel, as the scalar type's values.
template <class S>
struct UniPCOperands {
  S* x;
  const S* output;
  Eigen::Index output_stride, per_sample;
  const S* given;        // m_i precomputed (bounds, or x0 stored for the caller), or null
  S* slot;               // where m_i is kept (the history slot of m_{i-order})
  const S* history[3];   // m_{i-1}, m_{i-2}, m_{i-3}
  S* last;               // x_c of the previous step in, this x_c out
  S from_x, from_output;
  S cx, cl, c[4];        // x_c = cx x + cl last + sum_j c[j] m_{i-j}
  S px, p[3];            // x <- px x_c + sum_j p[j] m_{i-j}
};

/// One pass of a UniPC step over elements [first, last): kH history outputs read, kCorrect whether the
/// corrector runs, kGiven whether m_i is read from `given` (else converted from x and the output).
template <class S, int kH, bool kCorrect, bool kGiven>
void unipc_range(const UniPCOperands<S>& a, Eigen::Index first, Eigen::Index last) {
  // The coefficients as locals: the loop then loads nothing but the tensors, and vectorises.
  const S from_x = a.from_x, from_output = a.from_output, cl = a.cl, px = a.px;
  const S c0 = a.c[0], c1 = a.c[1], c2 = a.c[2], c3 = a.c[3], p0 = a.p[0], p1 = a.p[1], p2 = a.p[2];
  auto body = [&](Eigen::Index i, Eigen::Index n, const S* __restrict out) {
    S* __restrict xs = a.x + i;
    S* __restrict ls = a.last + i;
    S* __restrict slot = a.slot + i;
    const S* __restrict gs = kGiven ? a.given + i : nullptr;
    const S* __restrict h1 = kH >= 1 ? a.history[0] + i : nullptr;
    const S* __restrict h2 = kH >= 2 ? a.history[1] + i : nullptr;
    const S* __restrict h3 = kH >= 3 ? a.history[2] + i : nullptr;
    for (Eigen::Index k = 0; k < n; ++k) {
      const S xv = xs[k];
      S m;
      if constexpr (kGiven) {
        m = gs[k];
      } else {
        m = from_x * xv + from_output * out[k];
      }
      S xc = xv;
      S v = p0 * m;
      if constexpr (kCorrect) {
        xc = cl * ls[k] + c0 * m;
        if constexpr (kH >= 1) xc += c1 * h1[k];
        if constexpr (kH >= 2) xc += c2 * h2[k];
        if constexpr (kH >= 3) xc += c3 * h3[k];
      }
      if constexpr (kH >= 1) v += p1 * h1[k];
      if constexpr (kH >= 2) v += p2 * h2[k];
      ls[k] = xc;
      slot[k] = m;
      xs[k] = px * xc + v;
    }
  };
  const Eigen::Index ps = a.per_sample;
  if (a.output_stride == ps || kGiven) {
    body(first, last - first, kGiven ? nullptr : a.output + first);
    return;
  }
  for (Eigen::Index i = first; i < last;) {  // one segment per batch element
    const Eigen::Index b = i / ps;
    const Eigen::Index stop = std::min(last, (b + 1) * ps);
    body(i, stop - i, a.output + b * a.output_stride + (i - b * ps));
    i = stop;
  }
}

}  // namespace detail

/// UniPC (deterministic), diffusers' UniPCMultistepScheduler.        [docs/samplers.md, Eqs. (S37)-(S39)]
/// With sigma_i the noise levels (as DPMSolverMultistepSampler: sigma[t] at the visited timesteps, a ramp
/// or a list, then the final sigma; sigmas()), step i with the model output converted to
/// m_i = x0 (predict_x0; bounded by `clipping`) or eps at alpha_bar = 1 / (1 + sigma_i^2):
///   1. corrector UniC-p (i > 0, i - 1 not in disable_corrector; p = the predictor order of step i - 1):
///      x_c = the update from sigma_{i-1} to sigma_i of the previous step's x_c over m_{i-1}, ..., m_{i-p}
///      and the new m_i (Eq. (S38)); else x_c = x (the sample the model saw);
///   2. predictor UniP-q from sigma_i to sigma_{i+1} on x_c over m_i, ..., m_{i-q+1} (Eq. (S37)), with
///      q = min(solver_order, i + 1, N - i if lower_order_final). x becomes its result, which the next
///      step corrects once the model has seen it (the last step's result is not corrected).
/// A step to sigma = 0 is first order and returns x0 (the limit of (S37); diffusers' bh1 and
/// noise-prediction forms give NaN there, and its predictors of order >= 2 divide by r = 0); a step of zero
/// length (sigma_min as the final sigma after a ramp ending at sigma[0]) leaves x_c unchanged. coefficients(i)
/// holds each step's combination. x is the variance-preserving x_t throughout, as in diffusers. The
/// sampler keeps the last solver_order outputs and x_c: a run steps i = 0, 1, 2, ... in order; step 0 (or
/// reset()) starts a new run.
template <std::floating_point S>
class UniPCSampler : public detail::SamplerBase<UniPCSampler<S>, S> {
  using Base = detail::SamplerBase<UniPCSampler<S>, S>;
  friend Base;

 public:
  /// The grid defaults (UniPCMultistepScheduler's, DPMSolverMultistepScheduler's): N = 20, linspace spacing
  /// with N + 1 points and the smallest dropped, ramps from sigma[T-1] down to sigma[0].
  static constexpr GridDefaults grid_defaults = GridDefaults::dpm_solver_multistep();

  /// Throws ddpm::invalid_argument if solver_order is not 1, 2 or 3, solver_type is not bh1 or bh2, an
  /// entry of disable_corrector is negative, clipping is asked for in the noise-prediction form
  /// (predict_x0 = false), or the grid (see make_grid) or clipping options are bad.
  explicit UniPCSampler(NoiseSchedule<S> schedule, UniPCOptions options = {})
      : Base(std::move(schedule)), options_(std::move(options)) {
    const char* fn = "ddpm::UniPCSampler";
    const std::string f = fn;
    if (options_.solver_order < 1 || options_.solver_order > 3) {
      detail::throw_invalid_argument(f + ": solver_order is " + detail::number_string(options_.solver_order) +
                                     ", but must be 1, 2 or 3");
    }
    if (options_.solver_type != UniPCSolverType::bh1 && options_.solver_type != UniPCSolverType::bh2) {
      detail::throw_invalid_argument(f + ": solver_type is UniPCSolverType(" +
                                     detail::number_string(static_cast<int>(options_.solver_type)) +
                                     "), but must be UniPCSolverType::bh1 or bh2");
    }
    for (std::size_t k = 0; k < options_.disable_corrector.size(); ++k) {
      if (options_.disable_corrector[k] < 0) {
        detail::throw_invalid_argument(f + ": disable_corrector[" + detail::number_string(k) + "] is " +
                                       detail::number_string(options_.disable_corrector[k]) +
                                       ", but step indices must be >= 0");
      }
    }
    detail::check_clipping(fn, options_.clipping);
    if (!options_.predict_x0 && options_.clipping.mode != Clipping::Mode::none) {
      detail::throw_invalid_argument(f + ": clipping is " +
                                     (options_.clipping.mode == Clipping::Mode::clip ? "clip" : "dynamic_threshold") +
                                     " and predict_x0 is false, but bounds apply to x0 only: use predict_x0 = true "
                                     "or Clipping::none()");
    }
    Grid grid = make_grid(this->schedule_, options_.grid, grid_defaults, fn);
    this->timesteps_ = std::move(grid.timesteps);
    sigmas_ = std::move(grid.sigmas);
    plan();
  }

  const UniPCOptions& options() const { return options_; }
  /// The noise levels sigma_0, ..., sigma_{N-1} of the steps followed by the final sigma (N + 1 values).
  const std::vector<double>& sigmas() const { return sigmas_; }
  /// The combination step i computes (see UniPCCoefficients).
  /// Throws ddpm::invalid_argument if i is outside [0, num_inference_steps()).
  const UniPCCoefficients& coefficients(int i) const {
    detail::check_step_index("ddpm::UniPCSampler::coefficients", i, this->num_inference_steps());
    return plan_[static_cast<std::size_t>(i)];
  }
  /// Forgets the history; the next step must be step 0.
  void reset() { next_step_ = 0; }

 private:
  // The orders and coefficients of every step: they depend on the step index only (a run starts at 0).
  void plan() {
    const int n = this->num_inference_steps();
    const int order = options_.solver_order;
    plan_.assign(static_cast<std::size_t>(n), {});
    int previous_order = 0;
    for (int i = 0; i < n; ++i) {
      UniPCCoefficients& c = plan_[static_cast<std::size_t>(i)];
      const double s1 = sigmas_[static_cast<std::size_t>(i + 1)], s0 = sigmas_[static_cast<std::size_t>(i)];
      const bool disabled = std::find(options_.disable_corrector.begin(), options_.disable_corrector.end(), i - 1) !=
                            options_.disable_corrector.end();
      if (i > 0 && !disabled) {
        c.corrector_order = previous_order;
        detail::unipc_update(sigmas_, i - 1, s0, previous_order, true, options_.predict_x0, options_.solver_type,
                             c.last_coef, c.corrector);
      }
      int q = std::min(order, i + 1);
      if (options_.lower_order_final) q = std::min(q, n - i);
      if (s1 == 0.0) q = 1;
      c.predictor_order = q;
      if (s1 == 0.0) {
        // the limit of (S37) as sigma_t -> 0: x0 itself
        const double alpha = 1.0 / std::sqrt(1.0 + s0 * s0);
        c.x_coef = options_.predict_x0 ? 0.0 : 1.0 / alpha;
        c.predictor = {options_.predict_x0 ? 1.0 : -s0};
      } else if (s1 == s0) {
        c.x_coef = 1.0;
        c.predictor.assign(static_cast<std::size_t>(q), 0.0);
      } else {
        detail::unipc_update(sigmas_, i, s1, q, false, options_.predict_x0, options_.solver_type, c.x_coef,
                             c.predictor);
      }
      previous_order = q;
    }
  }

  template <DenseTensor M, MutableDenseTensor X, class N, class X0>
  void step_impl(int i, const M& output, X& x, N& noise, X0& x0_out, Prediction kind) {
    const char* fn = "ddpm::UniPCSampler::step";
    const auto target = this->begin_step(fn, i, output, x, noise, x0_out, kind);
    const auto total = static_cast<std::size_t>(x.size());
    detail::check_in_order(fn, i, next_step_, x, elements_);
    elements_ = total;
    const UniPCCoefficients& c = plan_[static_cast<std::size_t>(i)];
    const int order = options_.solver_order;
    if (i == 0) {
      history_.resize(static_cast<std::size_t>(order + 1));
      for (auto& h : history_) h.resize(total);
      last_.resize(total);
    }
    // history_[(i - j) mod (order + 1)] holds m_{i-j}; m_i goes into the slot of m_{i-order-1}, which no
    // step reads any more (the kernel's buffers never alias).
    auto slot_of = [order](int step) { return static_cast<std::size_t>(step % (order + 1)); };
    const double s0 = sigmas_[static_cast<std::size_t>(i)];
    const double alpha_bar = 1.0 / (1.0 + s0 * s0);
    const Conversion to_m = options_.predict_x0 ? x0_conversion(kind, alpha_bar) : eps_conversion(kind, alpha_bar);
    S* slot = history_[slot_of(i)].data();
    const S* given = nullptr;  // m_i made whole first: bounds need it (dynamic thresholding), or x0 is kept
    if (options_.predict_x0) {
      if (options_.clipping.mode != Clipping::Mode::none || target.x0 != nullptr) {
        S* dst = target.x0 != nullptr ? target.x0 : this->workspace_.x0(x.size());
        this->predict_x0(output, target.stride, x, to_m, options_.clipping, dst);
        given = dst;
      }
    } else if (target.x0 != nullptr) {
      this->predict_x0(output, target.stride, x, x0_conversion(kind, alpha_bar), Clipping::none(), target.x0);
    }
    detail::UniPCOperands<S> a{};
    a.x = x.data();
    a.output = output.data();
    a.output_stride = target.stride;
    a.per_sample = detail::per_sample_size(x);
    a.given = given;
    a.slot = slot;
    a.last = last_.data();
    a.from_x = static_cast<S>(to_m.from_x);
    a.from_output = static_cast<S>(to_m.from_output);
    const int reads = std::max(c.corrector_order, c.predictor_order - 1);  // m_{i-1} .. m_{i-reads}
    for (int j = 1; j <= reads; ++j) a.history[j - 1] = history_[slot_of(i - j)].data();
    for (std::size_t j = 0; j < c.corrector.size(); ++j) a.c[j] = static_cast<S>(c.corrector[j]);
    a.cl = static_cast<S>(c.last_coef);
    a.px = static_cast<S>(c.x_coef);
    for (std::size_t j = 0; j < c.predictor.size(); ++j) a.p[j] = static_cast<S>(c.predictor[j]);
    const bool correct = c.corrector_order > 0;
    auto run = [&](auto h_constant, auto correct_constant, auto given_constant) {
      constexpr int kH = decltype(h_constant)::value;
      constexpr bool kC = decltype(correct_constant)::value, kG = decltype(given_constant)::value;
      auto kernel = [&a](Eigen::Index first, Eigen::Index last, const S*) {
        detail::unipc_range<S, kH, kC, kG>(a, first, last);
      };
      detail::run_ranges(x.size(), kernel, static_cast<const S*>(nullptr));
    };
    auto with_reads = [&](auto correct_constant, auto given_constant) {
      switch (reads) {
        case 0: run(std::integral_constant<int, 0>{}, correct_constant, given_constant); break;
        case 1: run(std::integral_constant<int, 1>{}, correct_constant, given_constant); break;
        case 2: run(std::integral_constant<int, 2>{}, correct_constant, given_constant); break;
        default: run(std::integral_constant<int, 3>{}, correct_constant, given_constant); break;
      }
    };
    detail::with_flags(with_reads, correct, given != nullptr);
    next_step_ = i + 1;
  }

  UniPCOptions options_;
  std::vector<double> sigmas_;
  std::vector<UniPCCoefficients> plan_;
  std::vector<std::vector<S>> history_;  // the last solver_order + 1 converted outputs, a ring by step index
  std::vector<S> last_;                  // x_c of the previous step
  std::size_t elements_ = 0;             // x.size() of the run
  int next_step_ = 0;
};

}  // namespace ddpm
