// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// Optimisers over any model's parameters: AdamW, Adam and SGD with PyTorch's semantics (torch.optim of
// PyTorch 1.13, the single-tensor code path), and gradient clipping by the global L2 norm
// (torch.nn.utils.clip_grad_norm_).                                       [docs/training.md, "Optimisation"]
//
// A model's parameters are a list of spans, one per parameter tensor (e.g. a UNet's for_each_parameter
// order), and its gradients a second list parallel to it: gradient k has the size of parameter k. Every
// call checks that the lists match. An optimiser allocates its state (moments, momentum buffers) at its
// first step, one buffer per tensor, and from then on requires the same list shape.
//
// Each step is one fused pass per element over every tensor: the parameter, its gradient and the state
// are read once and written once, in vector registers (Eigen's packet primitives). The arithmetic of each
// element follows PyTorch's order of operations (the same roundings, up to fused multiply-adds the compiler
// may contract) and does not depend on how the work is split: with OpenMP (DDPM_OPENMP) the pieces run on
// several threads and give the same bits.

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include "ddpm/error.hpp"
#include "ddpm/tensor.hpp"

namespace ddpm {

namespace detail {

/// The shortest decimal that reads back as x ("0.001", "1e-08", "nan"): numbers in messages and files.
inline std::string optim_value_string(double x) { return number_string(x); }

[[noreturn]] inline void throw_optim_argument(const char* fn, const char* arg, double value, const char* allowed) {
  throw_invalid_argument(std::string(fn) + ": " + arg + " is " + optim_value_string(value) + ", but must be " +
                         allowed);
}

/// Throws unless lo <= x <= hi (a NaN fails).
inline void require_in(const char* fn, const char* arg, double x, double lo, double hi, const char* allowed) {
  if (!(x >= lo && x <= hi)) throw_optim_argument(fn, arg, x, allowed);
}

/// Throws unless x is finite and >= 0.
inline void require_nonnegative(const char* fn, const char* arg, double x) {
  if (!(x >= 0.0) || !std::isfinite(x)) throw_optim_argument(fn, arg, x, "a finite number >= 0");
}

/// Throws unless beta is in [0, 1).
inline void require_beta(const char* fn, const char* arg, double beta) {
  if (!(beta >= 0.0 && beta < 1.0)) throw_optim_argument(fn, arg, beta, "in [0, 1)");
}

/// Throws unless `b` has as many tensors as `a` and tensor k of `b` the size of tensor k of `a`.
template <class A, class B>
void require_matching_lists(const char* fn, const char* a_name, std::span<const std::span<A>> a, const char* b_name,
                            std::span<const std::span<B>> b) {
  if (a.size() != b.size()) {
    throw_invalid_argument(std::string(fn) + ": " + b_name + " has " + ddpm::detail::number_string(b.size()) +
                           " tensors, but must have as many as " + a_name + " (" + ddpm::detail::number_string(a.size()) + ")");
  }
  for (std::size_t k = 0; k < a.size(); ++k) {
    if (a[k].size() != b[k].size()) {
      throw_invalid_argument(std::string(fn) + ": " + b_name + "[" + ddpm::detail::number_string(k) + "] has " +
                             ddpm::detail::number_string(b[k].size()) + " elements, but must have as many as " + a_name + "[" +
                             ddpm::detail::number_string(k) + "] (" + ddpm::detail::number_string(a[k].size()) + ")");
    }
  }
}

/// Throws unless the state buffers (one vector per tensor) have the sizes of the parameter list.
template <class S, class P>
void require_state_matches(const char* fn, const char* state_name, const std::vector<std::vector<S>>& state,
                           std::span<const std::span<P>> params) {
  if (state.size() != params.size()) {
    throw_invalid_argument(std::string(fn) + ": params has " + ddpm::detail::number_string(params.size()) +
                           " tensors, but the optimiser's state (" + state_name + ") was made for " +
                           ddpm::detail::number_string(state.size()));
  }
  for (std::size_t k = 0; k < state.size(); ++k) {
    if (state[k].size() != params[k].size()) {
      throw_invalid_argument(std::string(fn) + ": params[" + ddpm::detail::number_string(k) + "] has " +
                             ddpm::detail::number_string(params[k].size()) + " elements, but the optimiser's state (" +
                             state_name + "[" + ddpm::detail::number_string(k) + "]) has " + ddpm::detail::number_string(state[k].size()));
    }
  }
}

/// One vector of zeros per parameter tensor.
template <class S, class P>
std::vector<std::vector<S>> zeros_like(std::span<const std::span<P>> params) {
  std::vector<std::vector<S>> out(params.size());
  for (std::size_t k = 0; k < params.size(); ++k) out[k].assign(params[k].size(), S(0));
  return out;
}

/// A piece of the work: elements [begin, end) of tensor `tensor`.
struct TensorPiece {
  std::size_t tensor;
  Eigen::Index begin, end;
};

/// Cuts a list of tensors of the given sizes into pieces of at most kParallelGrain elements (a tensor's
/// last piece may be shorter), into `pieces` (its capacity is reused). Returns the total element count.
template <class Span>
Eigen::Index plan_pieces(std::span<const Span> tensors, std::vector<TensorPiece>& pieces) {
  pieces.clear();
  Eigen::Index total = 0;
  for (std::size_t k = 0; k < tensors.size(); ++k) {
    const auto n = static_cast<Eigen::Index>(tensors[k].size());
    for (Eigen::Index b = 0; b < n; b += kParallelGrain) pieces.push_back({k, b, std::min(n, b + kParallelGrain)});
    total += n;
  }
  return total;
}

/// Runs f(piece) for every piece, on OpenMP threads when built with OpenMP and the total is large.
template <class F>
void for_each_piece(const std::vector<TensorPiece>& pieces, Eigen::Index total, F&& f) {
  for_each_chunk(static_cast<Eigen::Index>(pieces.size()), total,
                 [&](Eigen::Index i) { f(pieces[static_cast<std::size_t>(i)]); });
}

template <class S>
using Packet = typename Eigen::internal::packet_traits<S>::type;
template <class S>
inline constexpr int kPacketSize = Eigen::internal::unpacket_traits<Packet<S>>::size;

/// Calls body(in, io) once per packet of n elements, where in[j] points to the packet's elements of read-only
/// array j and io[j] to those of read-write array j. The last n % packet-size elements are copied into
/// packet-sized buffers (padded with pad_in / pad_io), processed by the same body and copied back, so every
/// element goes through the same instructions wherever a piece starts or ends.
template <class S, std::size_t KI, std::size_t KO, class Body>
void packet_loop(Eigen::Index n, std::array<const S*, KI> in, std::array<S*, KO> io, const std::array<S, KI>& pad_in,
                 const std::array<S, KO>& pad_io, Body&& body) {
  constexpr Eigen::Index P = kPacketSize<S>;
  Eigen::Index i = 0;
  for (; i + P <= n; i += P) {
    std::array<const S*, KI> a;
    std::array<S*, KO> b;
    for (std::size_t j = 0; j < KI; ++j) a[j] = in[j] + i;
    for (std::size_t j = 0; j < KO; ++j) b[j] = io[j] + i;
    body(a, b);
  }
  if (i == n) return;
  const Eigen::Index rest = n - i;
  alignas(64) std::array<std::array<S, P>, KI == 0 ? 1 : KI> tin{};
  alignas(64) std::array<std::array<S, P>, KO == 0 ? 1 : KO> tio{};
  std::array<const S*, KI> a;
  std::array<S*, KO> b;
  for (std::size_t j = 0; j < KI; ++j) {
    tin[j].fill(pad_in[j]);
    std::copy(in[j] + i, in[j] + n, tin[j].begin());
    a[j] = tin[j].data();
  }
  for (std::size_t j = 0; j < KO; ++j) {
    tio[j].fill(pad_io[j]);
    std::copy(io[j] + i, io[j] + n, tio[j].begin());
    b[j] = tio[j].data();
  }
  body(a, b);
  for (std::size_t j = 0; j < KO; ++j) std::copy(tio[j].begin(), tio[j].begin() + rest, io[j] + i);
}

/// Calls f(std::bool_constant<b>{}).
template <class F>
decltype(auto) optim_with_bool(bool b, F&& f) {
  return b ? f(std::true_type{}) : f(std::false_type{});
}

/// The Adam family's per-step scalars, in double as PyTorch computes them in Python, cast to S once.
template <class S>
struct AdamScalars {
  S decay;           // AdamW: 1 - lr * weight_decay
  S weight_decay;    // Adam: the L2 coefficient added to the gradient
  S beta1, one_minus_beta1, beta2, one_minus_beta2;
  S bias_correction2_sqrt;  // sqrt(1 - beta2^step)
  S eps;
  S neg_step_size;   // -lr / (1 - beta1^step)
};

}  // namespace detail

// ----------------------------------------------------------------------------------------------------------
// Adam and AdamW

/// AdamW's hyper-parameters, with PyTorch's defaults (torch.optim.AdamW).
struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;  ///< decoupled: p *= 1 - lr * weight_decay before the Adam update
  bool amsgrad = false;
};

/// Adam's hyper-parameters, with PyTorch's defaults (torch.optim.Adam).
struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;  ///< L2: weight_decay * p is added to the gradient
  bool amsgrad = false;
};

namespace detail {

/// Adam and AdamW: the same moments and bias corrections, weight decay either decoupled (AdamW) or added
/// to the gradient (Adam).
template <std::floating_point S, bool kDecoupled>
class AdamBase {
 public:
  using Scalar = S;

  /// The learning rate of the next step.
  double lr() const noexcept { return lr_; }
  /// Sets the learning rate of the next steps (a schedule calls this before every step).
  /// Throws ddpm::invalid_argument if lr is negative or not finite.
  void set_lr(double lr) {
    require_nonnegative(name(), "lr", lr);
    lr_ = lr;
  }
  double beta1() const noexcept { return beta1_; }
  double beta2() const noexcept { return beta2_; }
  double eps() const noexcept { return eps_; }
  double weight_decay() const noexcept { return weight_decay_; }
  bool amsgrad() const noexcept { return amsgrad_; }

  /// The number of steps taken (PyTorch's state["step"]).
  std::int64_t step_count() const noexcept { return step_; }

  /// The names of the per-tensor state buffers, as PyTorch's state_dict names them: "exp_avg", "exp_avg_sq",
  /// and with amsgrad "max_exp_avg_sq".
  std::vector<std::string_view> state_names() const {
    if (amsgrad_) return {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"};
    return {"exp_avg", "exp_avg_sq"};
  }

  /// State buffer `name` (one of state_names()), one vector per parameter tensor; empty before the first
  /// step. Throws ddpm::invalid_argument for another name.
  const std::vector<std::vector<S>>& state(std::string_view name) const {
    if (name == "exp_avg") return m_;
    if (name == "exp_avg_sq") return v_;
    if (name == "max_exp_avg_sq" && amsgrad_) return v_max_;
    throw_invalid_argument(std::string(this->name()) + "::state: name is '" + std::string(name) +
                           "', but must be one of state_names()");
  }

  /// Replaces the state: the step count and the buffers, in the order of state_names() (as a saved
  /// training state restores them). All buffers must hold the same number of tensors with the same
  /// sizes; a step count of 0 requires empty buffers and a positive one non-empty buffers.
  /// Throws ddpm::invalid_argument otherwise.
  void load_state(std::int64_t step, std::vector<std::vector<std::vector<S>>> buffers) {
    const std::string fn = std::string(name()) + "::load_state";
    const std::size_t expected = amsgrad_ ? 3 : 2;
    if (buffers.size() != expected) {
      throw_invalid_argument(fn + ": buffers has " + ddpm::detail::number_string(buffers.size()) + " entries, but must have " +
                             ddpm::detail::number_string(expected) + " (state_names())");
    }
    if (step < 0) throw_invalid_argument(fn + ": step is " + ddpm::detail::number_string(step) + ", but must be >= 0");
    for (std::size_t b = 1; b < buffers.size(); ++b) {
      if (buffers[b].size() != buffers[0].size()) {
        throw_invalid_argument(fn + ": buffers[" + ddpm::detail::number_string(b) + "] has " + ddpm::detail::number_string(buffers[b].size()) +
                               " tensors, but buffers[0] has " + ddpm::detail::number_string(buffers[0].size()));
      }
      for (std::size_t k = 0; k < buffers[0].size(); ++k) {
        if (buffers[b][k].size() != buffers[0][k].size()) {
          throw_invalid_argument(fn + ": buffers[" + ddpm::detail::number_string(b) + "][" + ddpm::detail::number_string(k) + "] has " +
                                 ddpm::detail::number_string(buffers[b][k].size()) + " elements, but buffers[0][" +
                                 ddpm::detail::number_string(k) + "] has " + ddpm::detail::number_string(buffers[0][k].size()));
        }
      }
    }
    if ((step == 0) != buffers[0].empty()) {
      throw_invalid_argument(fn + ": step is " + ddpm::detail::number_string(step) + " with " + ddpm::detail::number_string(buffers[0].size()) +
                             " state tensors, but a state has tensors exactly when step > 0");
    }
    step_ = step;
    m_ = std::move(buffers[0]);
    v_ = std::move(buffers[1]);
    if (amsgrad_) v_max_ = std::move(buffers[2]);
  }

  /// Forgets the state (the next step is a first step again).
  void reset() {
    step_ = 0;
    m_.clear();
    v_.clear();
    v_max_.clear();
  }

  /// One step over every tensor: params[k] is updated from grads[k] (see the class's formula).
  /// Throws ddpm::invalid_argument if the lists differ in count or in a tensor's size, or do not match the
  /// state made at the first step.
  void step(std::span<const std::span<S>> params, std::span<const std::span<const S>> grads) {
    step_impl(params, grads);
  }
  void step(std::span<const std::span<S>> params, std::span<const std::span<S>> grads) { step_impl(params, grads); }

 protected:
  template <class Options>
  explicit AdamBase(const Options& o)
      : lr_(o.lr), beta1_(o.beta1), beta2_(o.beta2), eps_(o.eps), weight_decay_(o.weight_decay), amsgrad_(o.amsgrad) {
    require_nonnegative(name(), "lr", o.lr);
    require_nonnegative(name(), "eps", o.eps);
    require_beta(name(), "beta1", o.beta1);
    require_beta(name(), "beta2", o.beta2);
    require_nonnegative(name(), "weight_decay", o.weight_decay);
  }

 private:
  static constexpr const char* name() { return kDecoupled ? "ddpm::AdamW" : "ddpm::Adam"; }

  template <class G>
  void step_impl(std::span<const std::span<S>> params, std::span<const std::span<G>> grads) {
    const std::string fn = std::string(name()) + "::step";
    require_matching_lists(fn.c_str(), "params", params, "grads", grads);
    if (step_ == 0) {
      m_ = zeros_like<S>(params);
      v_ = zeros_like<S>(params);
      if (amsgrad_) v_max_ = zeros_like<S>(params);
    } else {
      require_state_matches(fn.c_str(), "exp_avg", m_, params);
    }
    ++step_;
    // The scalars as PyTorch 1.13 computes them (Python floats), then rounded once to S.
    const double step = static_cast<double>(step_);
    const double bias_correction1 = 1.0 - std::pow(beta1_, step);
    const double bias_correction2 = 1.0 - std::pow(beta2_, step);
    const double step_size = lr_ / bias_correction1;
    AdamScalars<S> c;
    c.decay = static_cast<S>(1.0 - lr_ * weight_decay_);
    c.weight_decay = static_cast<S>(weight_decay_);
    c.beta1 = static_cast<S>(beta1_);
    c.one_minus_beta1 = static_cast<S>(1.0 - beta1_);
    c.beta2 = static_cast<S>(beta2_);
    c.one_minus_beta2 = static_cast<S>(1.0 - beta2_);
    c.bias_correction2_sqrt = static_cast<S>(std::sqrt(bias_correction2));
    c.eps = static_cast<S>(eps_);
    c.neg_step_size = static_cast<S>(-step_size);
    const Eigen::Index total = plan_pieces(params, pieces_);
    optim_with_bool(weight_decay_ != 0.0, [&](auto decay) {
      optim_with_bool(amsgrad_, [&](auto ams) {
        for_each_piece(pieces_, total, [&](const TensorPiece& piece) {
          const std::size_t k = piece.tensor;
          const Eigen::Index b = piece.begin;
          run<decltype(decay)::value, decltype(ams)::value>(c, piece.end - b, params[k].data() + b,
                                                             grads[k].data() + b, m_[k].data() + b, v_[k].data() + b,
                                                             ams ? v_max_[k].data() + b : nullptr);
        });
      });
    });
  }

  // The update of n elements, per element in PyTorch 1.13's order (_single_tensor_adamw / _single_tensor_adam):
  //   AdamW: p = p * (1 - lr wd)             Adam: g = g + wd p     (grad.add(param, alpha=wd): an fma)
  //   m = fma(g, 1 - beta1, m * beta1)                               (mul_, then add_'s fma)
  //   v = v * beta2 + ((1 - beta2) g) g                              (mul_, then addcmul_)
  //   amsgrad: v_max = max(v_max, v), used in place of v below
  //   denom = sqrt(v) / sqrt(1 - beta2^step) + eps
  //   p = p + ((-step_size) m) / denom                               (addcdiv_), step_size = lr / (1 - beta1^step)
  template <bool kDecay, bool kAmsgrad>
  static void run(const AdamScalars<S>& c, Eigen::Index n, S* p, const S* g, S* m, S* v, S* v_max) {
    using namespace Eigen::internal;
    using Pk = Packet<S>;
    const Pk decay = pset1<Pk>(c.decay), wd = pset1<Pk>(c.weight_decay), b1 = pset1<Pk>(c.beta1),
             a1 = pset1<Pk>(c.one_minus_beta1), b2 = pset1<Pk>(c.beta2), a2 = pset1<Pk>(c.one_minus_beta2),
             bc2 = pset1<Pk>(c.bias_correction2_sqrt), eps = pset1<Pk>(c.eps), neg_step = pset1<Pk>(c.neg_step_size);
    // io = {p, m, v} (+ v_max with amsgrad), in = {g}.
    auto body = [&](const std::array<const S*, 1>& in, const auto& io) {
      Pk pv = ploadu<Pk>(io[0]);
      Pk gv = ploadu<Pk>(in[0]);
      if constexpr (kDecay) {
        if constexpr (kDecoupled) {
          pv = pmul(pv, decay);
        } else {
          gv = pmadd(pv, wd, gv);
        }
      }
      const Pk mv = pmadd(gv, a1, pmul(ploadu<Pk>(io[1]), b1));
      const Pk vv = padd(pmul(ploadu<Pk>(io[2]), b2), pmul(pmul(a2, gv), gv));
      Pk second = vv;
      if constexpr (kAmsgrad) {
        second = pmax(ploadu<Pk>(io[3]), vv);
        pstoreu(io[3], second);
      }
      const Pk denom = padd(pdiv(psqrt(second), bc2), eps);
      pstoreu(io[0], padd(pv, pdiv(pmul(neg_step, mv), denom)));
      pstoreu(io[1], mv);
      pstoreu(io[2], vv);
    };
    // Padding of a last partial packet: v = 1 keeps the padded lanes finite.
    if constexpr (kAmsgrad) {
      packet_loop<S, 1, 4>(n, {g}, {p, m, v, v_max}, {S(0)}, {S(0), S(0), S(1), S(1)}, body);
    } else {
      (void)v_max;
      packet_loop<S, 1, 3>(n, {g}, {p, m, v}, {S(0)}, {S(0), S(0), S(1)}, body);
    }
  }

  double lr_, beta1_, beta2_, eps_, weight_decay_;
  bool amsgrad_;
  std::int64_t step_ = 0;
  std::vector<std::vector<S>> m_, v_, v_max_;
  std::vector<TensorPiece> pieces_;
};

}  // namespace detail

/// AdamW (Loshchilov and Hutter 2019) with PyTorch's semantics and defaults (torch.optim.AdamW):
/// decoupled weight decay first, then Adam's moments with bias correction.  [docs/training.md, Eq. (O1)]
///   t = t + 1
///   p = p * (1 - lr * weight_decay)
///   m = beta1 * m + (1 - beta1) * g;   v = beta2 * v + (1 - beta2) * g^2
///   p = p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
/// With amsgrad, v_max = max(v_max, v) replaces v in the last line.
///
///   ddpm::AdamW<float> opt({.lr = 1e-4, .weight_decay = 0.0});
///   opt.step(params, grads);     // std::vector<std::span<float>> each, one span per tensor
///
/// Throws ddpm::invalid_argument if lr, eps or weight_decay is negative or not finite, or beta1 or beta2 is
/// outside [0, 1).
template <std::floating_point S>
class AdamW : public detail::AdamBase<S, true> {
 public:
  using Options = AdamWOptions;
  explicit AdamW(const AdamWOptions& options = {}) : detail::AdamBase<S, true>(options) {}
  AdamWOptions options() const {
    return {this->lr(), this->beta1(), this->beta2(), this->eps(), this->weight_decay(), this->amsgrad()};
  }
};

/// Adam (Kingma and Ba 2015) with PyTorch's semantics and defaults (torch.optim.Adam): weight decay is an L2
/// term added to the gradient, g = g + weight_decay * p, before the moments; otherwise as AdamW.
///                                                                             [docs/training.md, Eq. (O2)]
/// Throws as AdamW.
template <std::floating_point S>
class Adam : public detail::AdamBase<S, false> {
 public:
  using Options = AdamOptions;
  explicit Adam(const AdamOptions& options = {}) : detail::AdamBase<S, false>(options) {}
  AdamOptions options() const {
    return {this->lr(), this->beta1(), this->beta2(), this->eps(), this->weight_decay(), this->amsgrad()};
  }
};

// ----------------------------------------------------------------------------------------------------------
// SGD

/// SGD's hyper-parameters (torch.optim.SGD). PyTorch has no default learning rate, and neither does this:
/// lr must be given.
struct SGDOptions {
  double lr = std::numeric_limits<double>::quiet_NaN();
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
};

/// Stochastic gradient descent with momentum, as torch.optim.SGD.            [docs/training.md, Eq. (O3)]
///   g = g + weight_decay * p
///   momentum > 0:  b = g at the first step, else b = momentum * b + (1 - dampening) * g;
///                  g = g + momentum * b (nesterov) or g = b
///   p = p - lr * g
/// Throws ddpm::invalid_argument if lr, momentum, dampening or weight_decay is negative or not finite (lr is
/// NaN unless given), or nesterov is asked for without momentum > 0 and dampening = 0.
template <std::floating_point S>
class SGD {
 public:
  using Scalar = S;
  using Options = SGDOptions;

  explicit SGD(const SGDOptions& o) : o_(o) {
    if (std::isnan(o.lr)) {
      detail::throw_invalid_argument("ddpm::SGD: lr is nan, but must be given (SGD has no default) and be >= 0");
    }
    detail::require_nonnegative("ddpm::SGD", "lr", o.lr);
    detail::require_nonnegative("ddpm::SGD", "momentum", o.momentum);
    detail::require_nonnegative("ddpm::SGD", "dampening", o.dampening);
    detail::require_nonnegative("ddpm::SGD", "weight_decay", o.weight_decay);
    if (o.nesterov && (o.momentum <= 0.0 || o.dampening != 0.0)) {
      detail::throw_invalid_argument("ddpm::SGD: nesterov is true with momentum " +
                                     detail::optim_value_string(o.momentum) + " and dampening " +
                                     detail::optim_value_string(o.dampening) +
                                     ", but Nesterov momentum needs momentum > 0 and dampening = 0");
    }
  }

  const SGDOptions& options() const noexcept { return o_; }
  double lr() const noexcept { return o_.lr; }
  /// Throws ddpm::invalid_argument if lr is negative or not finite.
  void set_lr(double lr) {
    detail::require_nonnegative("ddpm::SGD", "lr", lr);
    o_.lr = lr;
  }
  std::int64_t step_count() const noexcept { return step_; }

  /// "momentum_buffer" when momentum > 0 (PyTorch's state name), else none.
  std::vector<std::string_view> state_names() const {
    if (o_.momentum != 0.0) return {"momentum_buffer"};
    return {};
  }
  /// The momentum buffers, one per tensor (empty before the first step or without momentum).
  /// Throws ddpm::invalid_argument for another name.
  const std::vector<std::vector<S>>& state(std::string_view name) const {
    if (name == "momentum_buffer" && o_.momentum != 0.0) return buf_;
    detail::throw_invalid_argument("ddpm::SGD::state: name is '" + std::string(name) +
                                   "', but must be one of state_names()");
  }
  /// Replaces the step count and the buffers (in the order of state_names()).
  /// Throws ddpm::invalid_argument if the number of buffers is wrong, or (with momentum) a step count of 0
  /// comes with tensors or a positive one without.
  void load_state(std::int64_t step, std::vector<std::vector<std::vector<S>>> buffers) {
    const std::size_t expected = o_.momentum != 0.0 ? 1 : 0;
    if (buffers.size() != expected) {
      detail::throw_invalid_argument("ddpm::SGD::load_state: buffers has " + ddpm::detail::number_string(buffers.size()) +
                                     " entries, but must have " + ddpm::detail::number_string(expected) + " (state_names())");
    }
    if (step < 0) {
      detail::throw_invalid_argument("ddpm::SGD::load_state: step is " + ddpm::detail::number_string(step) + ", but must be >= 0");
    }
    if (expected == 1 && (step == 0) != buffers[0].empty()) {
      detail::throw_invalid_argument("ddpm::SGD::load_state: step is " + ddpm::detail::number_string(step) + " with " +
                                     ddpm::detail::number_string(buffers[0].size()) +
                                     " momentum buffers, but there are buffers exactly when step > 0");
    }
    step_ = step;
    buf_ = expected == 1 ? std::move(buffers[0]) : std::vector<std::vector<S>>{};
  }
  void reset() {
    step_ = 0;
    buf_.clear();
  }

  /// One step over every tensor. Throws as AdamW::step.
  void step(std::span<const std::span<S>> params, std::span<const std::span<const S>> grads) {
    step_impl(params, grads);
  }
  void step(std::span<const std::span<S>> params, std::span<const std::span<S>> grads) { step_impl(params, grads); }

 private:
  struct Scalars {
    S wd, momentum, one_minus_dampening, neg_lr;
  };

  template <class G>
  void step_impl(std::span<const std::span<S>> params, std::span<const std::span<G>> grads) {
    constexpr const char* fn = "ddpm::SGD::step";
    detail::require_matching_lists(fn, "params", params, "grads", grads);
    const bool has_momentum = o_.momentum != 0.0;
    const bool first = buf_.empty();
    if (has_momentum) {
      if (first) {
        buf_ = detail::zeros_like<S>(params);
      } else {
        detail::require_state_matches(fn, "momentum_buffer", buf_, params);
      }
    }
    ++step_;
    const Scalars c{static_cast<S>(o_.weight_decay), static_cast<S>(o_.momentum),
                    static_cast<S>(1.0 - o_.dampening), static_cast<S>(-o_.lr)};
    const Eigen::Index total = detail::plan_pieces(params, pieces_);
    detail::optim_with_bool(o_.weight_decay != 0.0, [&](auto wd) {
      detail::optim_with_bool(has_momentum, [&](auto mom) {
        detail::optim_with_bool(first, [&](auto fst) {
          detail::optim_with_bool(o_.nesterov, [&](auto nest) {
            detail::for_each_piece(pieces_, total, [&](const detail::TensorPiece& piece) {
              const std::size_t k = piece.tensor;
              const Eigen::Index b = piece.begin;
              S* bp = mom ? buf_[k].data() + b : nullptr;
              run<decltype(wd)::value, decltype(mom)::value, decltype(fst)::value, decltype(nest)::value>(
                  c, piece.end - b, params[k].data() + b, grads[k].data() + b, bp);
            });
          });
        });
      });
    });
  }

  // Per element in PyTorch 1.13's order (_single_tensor_sgd); every add with alpha is an fma there:
  //   g = fma(p, wd, g);  b = g (first step) or fma(g, 1 - dampening, b * momentum);
  //   d = fma(b, momentum, g) (nesterov) or b;  p = fma(d, -lr, p)
  template <bool kDecay, bool kMomentum, bool kFirst, bool kNesterov>
  static void run(const Scalars& c, Eigen::Index n, S* p, const S* g, S* buf) {
    using namespace Eigen::internal;
    using Pk = detail::Packet<S>;
    const Pk wd = pset1<Pk>(c.wd), mu = pset1<Pk>(c.momentum), damp = pset1<Pk>(c.one_minus_dampening),
             neg_lr = pset1<Pk>(c.neg_lr);
    // io = {p} (+ the momentum buffer), in = {g}.
    auto body = [&](const std::array<const S*, 1>& in, const auto& io) {
      const Pk pv = ploadu<Pk>(io[0]);
      Pk d = ploadu<Pk>(in[0]);
      if constexpr (kDecay) d = pmadd(pv, wd, d);
      if constexpr (kMomentum) {
        Pk bv;
        if constexpr (kFirst) {
          bv = d;
        } else {
          bv = pmadd(d, damp, pmul(ploadu<Pk>(io[1]), mu));
        }
        pstoreu(io[1], bv);
        if constexpr (kNesterov) {
          d = pmadd(bv, mu, d);
        } else {
          d = bv;
        }
      }
      pstoreu(io[0], pmadd(d, neg_lr, pv));
    };
    if constexpr (kMomentum) {
      detail::packet_loop<S, 1, 2>(n, {g}, {p, buf}, {S(0)}, {S(0), S(0)}, body);
    } else {
      (void)buf;
      detail::packet_loop<S, 1, 1>(n, {g}, {p}, {S(0)}, {S(0)}, body);
    }
  }

  SGDOptions o_;
  std::int64_t step_ = 0;
  std::vector<std::vector<S>> buf_;
  std::vector<detail::TensorPiece> pieces_;
};

// ----------------------------------------------------------------------------------------------------------
// Gradient clipping

namespace detail {

/// The sum of squares of n values, accumulated in double in 16 lanes (a fixed order, whatever the threads).
template <class S>
double sum_of_squares(const S* x, Eigen::Index n) {
  constexpr int L = 16;
  std::array<double, L> acc{};
  Eigen::Index i = 0;
  for (; i + L <= n; i += L) {
    for (int j = 0; j < L; ++j) {
      const double v = static_cast<double>(x[i + j]);
      acc[static_cast<std::size_t>(j)] += v * v;
    }
  }
  for (int j = 0; i < n; ++i, ++j) {
    const double v = static_cast<double>(x[i]);
    acc[static_cast<std::size_t>(j)] += v * v;
  }
  double s = 0.0;
  for (double a : acc) s += a;
  return s;
}

template <class S, class G>
double global_norm(std::span<const std::span<G>> grads, std::vector<TensorPiece>& pieces,
                   std::vector<double>& partial, Eigen::Index* total_elements = nullptr) {
  const Eigen::Index total = plan_pieces(grads, pieces);
  if (total_elements != nullptr) *total_elements = total;
  partial.assign(pieces.size(), 0.0);
  for_each_chunk(static_cast<Eigen::Index>(pieces.size()), total, [&](Eigen::Index i) {
    const TensorPiece& piece = pieces[static_cast<std::size_t>(i)];
    partial[static_cast<std::size_t>(i)] =
        sum_of_squares<S>(grads[piece.tensor].data() + piece.begin, piece.end - piece.begin);
  });
  double s = 0.0;
  for (double v : partial) s += v;  // in piece order: the same sum on any number of threads
  return std::sqrt(s);
}

}  // namespace detail

/// The L2 norm of all gradients together, as if concatenated into one vector, accumulated in double.
template <std::floating_point S>
double grad_norm(std::span<const std::span<const S>> grads) {
  std::vector<detail::TensorPiece> pieces;
  std::vector<double> partial;
  return detail::global_norm<S>(grads, pieces, partial);
}
template <std::floating_point S>
double grad_norm(std::span<const std::span<S>> grads) {
  std::vector<detail::TensorPiece> pieces;
  std::vector<double> partial;
  return detail::global_norm<S>(grads, pieces, partial);
}

/// Clips the gradients by their global L2 norm, in place, as torch.nn.utils.clip_grad_norm_ (norm_type 2,
/// error_if_nonfinite False); returns the total norm before clipping.       [docs/training.md, Eq. (O4)]
///   total_norm = sqrt(sum over every element of every gradient of g^2)      (accumulated in double)
///   clip_coef = max_norm / (total_norm + 1e-6);   g = g * clip_coef  if clip_coef < 1
/// A non-finite total norm gives a clip_coef of 0 or NaN, which PyTorch applies too (the gradients become
/// 0 or NaN); the returned norm says so.
/// Throws ddpm::invalid_argument if max_norm is not finite or not > 0.
template <std::floating_point S>
double clip_grad_norm(std::span<const std::span<S>> grads, double max_norm) {
  if (!(max_norm > 0.0) || !std::isfinite(max_norm)) {
    detail::throw_optim_argument("ddpm::clip_grad_norm", "max_norm", max_norm, "a finite number > 0");
  }
  std::vector<detail::TensorPiece> pieces;
  std::vector<double> partial;
  Eigen::Index total = 0;
  const double total_norm = detail::global_norm<S>(grads, pieces, partial, &total);
  const double clip_coef = max_norm / (total_norm + 1e-6);
  if (!(clip_coef >= 1.0)) {  // PyTorch multiplies by min(clip_coef, 1); by 1 changes nothing, NaN does
    const S c = static_cast<S>(clip_coef);
    detail::for_each_piece(pieces, total, [&](const detail::TensorPiece& piece) {
      using Vec = Eigen::Array<S, Eigen::Dynamic, 1>;
      Eigen::Map<Vec>(grads[piece.tensor].data() + piece.begin, piece.end - piece.begin) *= c;
    });
  }
  return total_norm;
}

}  // namespace ddpm
