// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// Saving and restoring an optimiser's and an EMA's state in safetensors, so that a training run resumes
// bit-identically: the step count, the hyper-parameters and every state buffer, exactly (tensors in the
// scalar type's own dtype, numbers in the metadata as the shortest decimal that reads back to the same
// double).                                                                  [docs/training.md, "Resuming"]
//
// Layout under a prefix P ("optimizer", "ema"; a file may hold several prefixes and the model's weights):
//   __metadata__  P.type = "AdamW" | "Adam" | "SGD" | "EMA" | "FixedRateEMA",  P.scalar = "float32" | "float64",
//                 P.step, P.num_tensors, and the hyper-parameters under their option names (P.lr, P.beta1, ...)
//   tensors       P.<buffer>.<k>: buffer k of the state, rank 1 (PyTorch's names: exp_avg, exp_avg_sq,
//                 max_exp_avg_sq, momentum_buffer; the EMA's "shadow")
//
//   ddpm::io::SafetensorsWriter w;
//   ddpm::io::add_state(w, optimizer);           // "optimizer"
//   ddpm::io::add_state(w, ema);                 // "ema"
//   w.save("checkpoint.safetensors");
//   auto st = ddpm::io::Safetensors::load("checkpoint.safetensors");
//   auto optimizer = ddpm::io::read_optimizer<ddpm::AdamW<float>>(st);
//   auto ema = ddpm::io::read_ema<float>(st);
//
// The file is never trusted: a missing or unexpected tensor or key, a wrong type, scalar, dtype, rank or
// size, a count that does not match, or a number that does not parse throws ddpm::format_error naming it.

#include <charconv>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

#include "ddpm/ema.hpp"
#include "ddpm/error.hpp"
#include "ddpm/io/safetensors.hpp"
#include "ddpm/optim.hpp"

namespace ddpm::io {

namespace detail {

template <class S>
constexpr const char* scalar_name() {
  return std::is_same_v<S, float> ? "float32" : "float64";
}

template <class S>
constexpr DType scalar_dtype() {
  return std::is_same_v<S, float> ? DType::F32 : DType::F64;
}

/// Reads the metadata and tensors of one prefix of a file, throwing ddpm::format_error on anything wrong.
class StateReader {
 public:
  StateReader(const Safetensors& st, std::string prefix) : st_(st), prefix_(std::move(prefix)) {}

  [[noreturn]] void fail(const std::string& what) const {
    ddpm::detail::throw_format_error("ddpm::io::read_state: " + st_.source() + ": " + what);
  }

  const std::string& text(const std::string& key) const {
    const auto it = st_.metadata().find(prefix_ + "." + key);
    if (it == st_.metadata().end()) fail("metadata has no key '" + prefix_ + "." + key + "'");
    return it->second;
  }

  double number(const std::string& key) const {
    const std::string& s = text(key);
    double v = 0.0;
    const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    if (r.ec != std::errc() || r.ptr != s.data() + s.size()) {
      fail("metadata '" + prefix_ + "." + key + "' is '" + s + "', which is not a number");
    }
    return v;
  }

  std::int64_t integer(const std::string& key, std::int64_t min_value = 0) const {
    const std::string& s = text(key);
    std::int64_t v = 0;
    const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    if (r.ec != std::errc() || r.ptr != s.data() + s.size()) {
      fail("metadata '" + prefix_ + "." + key + "' is '" + s + "', which is not an integer");
    }
    if (v < min_value) {
      fail("metadata '" + prefix_ + "." + key + "' is " + s + ", but must be >= " + ddpm::detail::number_string(min_value));
    }
    return v;
  }

  bool boolean(const std::string& key) const {
    const std::string& s = text(key);
    if (s == "true") return true;
    if (s == "false") return false;
    fail("metadata '" + prefix_ + "." + key + "' is '" + s + "', but must be 'true' or 'false'");
  }

  /// Checks P.type and P.scalar.
  template <class S>
  void expect(std::string_view type) const {
    if (text("type") != type) {
      fail("'" + prefix_ + ".type' is '" + text("type") + "', but a " + std::string(type) + " state was requested");
    }
    if (text("scalar") != scalar_name<S>()) {
      fail("'" + prefix_ + ".scalar' is '" + text("scalar") + "', but the state is read as " + scalar_name<S>());
    }
  }

  /// Buffers P.<name>.0 .. P.<name>.<n-1>, each rank 1 of S's own dtype; `sizes` (if not empty) gives each
  /// tensor's expected size.
  template <class S>
  std::vector<std::vector<S>> buffers(const std::string& name, std::int64_t n,
                                      const std::vector<std::size_t>& sizes) const {
    std::vector<std::vector<S>> out;
    out.reserve(static_cast<std::size_t>(n));
    for (std::int64_t k = 0; k < n; ++k) {
      const std::string key = prefix_ + "." + name + "." + ddpm::detail::number_string(k);
      if (!st_.contains(key)) fail("has no tensor '" + key + "' (" + prefix_ + ".num_tensors is " + ddpm::detail::number_string(n) + ")");
      const TensorInfo& t = st_.info(key);
      if (t.dtype != scalar_dtype<S>()) {
        fail("tensor '" + key + "' has dtype " + std::string(dtype_name(t.dtype)) + ", but the state is " +
             std::string(dtype_name(scalar_dtype<S>())) + " (" + scalar_name<S>() + ")");
      }
      if (t.shape.size() != 1) {
        fail("tensor '" + key + "' has shape " + ddpm::detail::shape_string(t.shape) + ", but must have rank 1");
      }
      if (!sizes.empty() && static_cast<std::size_t>(t.shape[0]) != sizes[static_cast<std::size_t>(k)]) {
        fail("tensor '" + key + "' has " + ddpm::detail::number_string(t.shape[0]) + " elements, but '" + prefix_ + "." +
             first_name_ + "." + ddpm::detail::number_string(k) + "' has " + ddpm::detail::number_string(sizes[static_cast<std::size_t>(k)]));
      }
      out.push_back(st_.to_vector<S>(key));
    }
    return out;
  }

  /// Every state buffer named, sized consistently; then no other tensor under the prefix.
  template <class S>
  std::vector<std::vector<std::vector<S>>> all_buffers(const std::vector<std::string>& names, std::int64_t n) {
    std::vector<std::vector<std::vector<S>>> out;
    std::vector<std::size_t> sizes;
    for (const std::string& name : names) {
      if (out.empty()) first_name_ = name;
      out.push_back(buffers<S>(name, n, sizes));
      if (sizes.empty()) {
        for (const auto& v : out.back()) sizes.push_back(v.size());
      }
    }
    const std::string start = prefix_ + ".";
    std::size_t under_prefix = 0;
    for (const std::string& name : st_.names()) {
      if (name.compare(0, start.size(), start) == 0) ++under_prefix;
    }
    const std::size_t expected = names.size() * static_cast<std::size_t>(n);
    if (under_prefix != expected) {
      for (const std::string& name : st_.names()) {
        if (name.compare(0, start.size(), start) != 0) continue;
        bool known = false;
        for (const std::string& b : names) {
          const std::string head = start + b + ".";
          if (name.compare(0, head.size(), head) != 0) continue;
          std::int64_t k = -1;
          const char* first = name.data() + head.size();
          const auto r = std::from_chars(first, name.data() + name.size(), k);
          known = r.ec == std::errc() && r.ptr == name.data() + name.size() && k >= 0 && k < n &&
                  ddpm::detail::number_string(k) == std::string(first, r.ptr);
          if (known) break;
        }
        if (!known) fail("has an unexpected tensor '" + name + "' under '" + prefix_ + "'");
      }
    }
    return out;
  }

 private:
  const Safetensors& st_;
  std::string prefix_;
  std::string first_name_;
};

inline std::string number_text(double x) { return ddpm::detail::optim_value_string(x); }

template <class S>
void add_header(SafetensorsWriter& w, const std::string& prefix, std::string_view type, std::int64_t step,
                std::size_t num_tensors) {
  w.set_metadata(prefix + ".type", std::string(type));
  w.set_metadata(prefix + ".scalar", scalar_name<S>());
  w.set_metadata(prefix + ".step", ddpm::detail::number_string(step));
  w.set_metadata(prefix + ".num_tensors", ddpm::detail::number_string(num_tensors));
}

template <class S>
void add_buffers(SafetensorsWriter& w, const std::string& prefix, std::string_view name,
                 const std::vector<std::vector<S>>& buffers) {
  for (std::size_t k = 0; k < buffers.size(); ++k) {
    const ConstTensorMap<S, 1> t(buffers[k].data(), static_cast<Eigen::Index>(buffers[k].size()));
    w.add(prefix + "." + std::string(name) + "." + ddpm::detail::number_string(k), t, scalar_dtype<S>());
  }
}

template <class Opt>
void add_optimizer_buffers(SafetensorsWriter& w, const std::string& prefix, const Opt& opt) {
  using S = typename Opt::Scalar;
  for (std::string_view name : opt.state_names()) add_buffers<S>(w, prefix, name, opt.state(name));
}

template <class Opt>
std::size_t state_tensor_count(const Opt& opt) {
  const auto names = opt.state_names();
  return names.empty() ? 0 : opt.state(names.front()).size();
}

template <class Opt>
std::vector<std::string> names_of(const Opt& opt) {
  std::vector<std::string> out;
  for (std::string_view n : opt.state_names()) out.emplace_back(n);
  return out;
}

template <class Opt>
void load_into(StateReader& r, Opt& opt) {
  using S = typename Opt::Scalar;
  const std::int64_t step = r.integer("step");
  const std::int64_t n = r.integer("num_tensors");
  const std::vector<std::string> names = names_of(opt);
  if (names.empty() && n != 0) {
    r.fail("num_tensors is " + ddpm::detail::number_string(n) + ", but this optimiser keeps no per-tensor state");
  }
  auto buffers = r.all_buffers<S>(names, n);
  if (!buffers.empty() && (step == 0) != (n == 0)) {
    r.fail("step is " + ddpm::detail::number_string(step) + " with " + ddpm::detail::number_string(n) +
           " state tensors, but a state has tensors exactly when step > 0");
  }
  opt.load_state(step, std::move(buffers));
}

template <class S, bool kDecoupled, class Options>
Options read_adam_options(const StateReader& r) {
  Options o;
  o.lr = r.number("lr");
  o.beta1 = r.number("beta1");
  o.beta2 = r.number("beta2");
  o.eps = r.number("eps");
  o.weight_decay = r.number("weight_decay");
  o.amsgrad = r.boolean("amsgrad");
  return o;
}

/// Runs make() and turns its ddpm::invalid_argument (a hyper-parameter out of range) into a format error.
template <class F>
auto checked(const StateReader& r, F&& make) {
  try {
    return make();
  } catch (const ddpm::invalid_argument& e) {
    r.fail(std::string("holds an invalid state: ") + e.what());
  }
}

}  // namespace detail

/// Adds an AdamW or Adam state under `prefix`: its type, hyper-parameters (the current lr), step and
/// buffers exp_avg, exp_avg_sq (and max_exp_avg_sq with amsgrad).
/// Throws ddpm::invalid_argument if the writer already holds one of the names.
template <class S, bool kDecoupled>
void add_state(SafetensorsWriter& w, const ddpm::detail::AdamBase<S, kDecoupled>& opt,
               const std::string& prefix = "optimizer") {
  detail::add_header<S>(w, prefix, kDecoupled ? "AdamW" : "Adam", opt.step_count(), detail::state_tensor_count(opt));
  w.set_metadata(prefix + ".lr", detail::number_text(opt.lr()));
  w.set_metadata(prefix + ".beta1", detail::number_text(opt.beta1()));
  w.set_metadata(prefix + ".beta2", detail::number_text(opt.beta2()));
  w.set_metadata(prefix + ".eps", detail::number_text(opt.eps()));
  w.set_metadata(prefix + ".weight_decay", detail::number_text(opt.weight_decay()));
  w.set_metadata(prefix + ".amsgrad", opt.amsgrad() ? "true" : "false");
  detail::add_optimizer_buffers(w, prefix, opt);
}

/// Adds an SGD state under `prefix`: its hyper-parameters, step and momentum buffers.
template <class S>
void add_state(SafetensorsWriter& w, const SGD<S>& opt, const std::string& prefix = "optimizer") {
  detail::add_header<S>(w, prefix, "SGD", opt.step_count(), detail::state_tensor_count(opt));
  const SGDOptions& o = opt.options();
  w.set_metadata(prefix + ".lr", detail::number_text(o.lr));
  w.set_metadata(prefix + ".momentum", detail::number_text(o.momentum));
  w.set_metadata(prefix + ".dampening", detail::number_text(o.dampening));
  w.set_metadata(prefix + ".weight_decay", detail::number_text(o.weight_decay));
  w.set_metadata(prefix + ".nesterov", o.nesterov ? "true" : "false");
  detail::add_optimizer_buffers(w, prefix, opt);
}

/// Adds an EMA's state under `prefix`: its form and options, optimization_step, the last decay and the
/// shadow weights.
template <class S>
void add_state(SafetensorsWriter& w, const EMA<S>& ema, const std::string& prefix = "ema") {
  detail::add_header<S>(w, prefix, ema.is_fixed_rate() ? "FixedRateEMA" : "EMA", ema.optimization_step(),
                        ema.shadow().size());
  w.set_metadata(prefix + ".current_decay", detail::number_text(ema.current_decay()));
  if (ema.is_fixed_rate()) {
    w.set_metadata(prefix + ".rate", detail::number_text(ema.rate()));
  } else {
    const EMAOptions& o = ema.options();
    w.set_metadata(prefix + ".decay", detail::number_text(o.decay));
    w.set_metadata(prefix + ".min_decay", detail::number_text(o.min_decay));
    w.set_metadata(prefix + ".update_after_step", ddpm::detail::number_string(o.update_after_step));
    w.set_metadata(prefix + ".use_ema_warmup", o.use_ema_warmup ? "true" : "false");
    w.set_metadata(prefix + ".inv_gamma", detail::number_text(o.inv_gamma));
    w.set_metadata(prefix + ".power", detail::number_text(o.power));
  }
  detail::add_buffers<S>(w, prefix, "shadow", ema.shadow());
}

/// The optimiser saved under `prefix`, rebuilt with its hyper-parameters and state: AdamW<S>, Adam<S> or
/// SGD<S>. Its next step continues the saved run bit for bit.
/// Throws ddpm::format_error if the file has no such state, a different type or scalar, or anything of it
/// is missing, malformed or inconsistent.
template <class Opt>
Opt read_optimizer(const Safetensors& st, const std::string& prefix = "optimizer") {
  using S = typename Opt::Scalar;
  detail::StateReader r(st, prefix);
  if constexpr (std::is_same_v<Opt, AdamW<S>> || std::is_same_v<Opt, Adam<S>>) {
    constexpr bool decoupled = std::is_same_v<Opt, AdamW<S>>;
    r.expect<S>(decoupled ? "AdamW" : "Adam");
    using Options = typename Opt::Options;
    const Options o = detail::read_adam_options<S, decoupled, Options>(r);
    Opt opt = detail::checked(r, [&] { return Opt(o); });
    detail::load_into(r, opt);
    return opt;
  } else {
    static_assert(std::is_same_v<Opt, SGD<S>>, "ddpm::io::read_optimizer: Opt must be AdamW, Adam or SGD");
    r.expect<S>("SGD");
    SGDOptions o;
    o.lr = r.number("lr");
    o.momentum = r.number("momentum");
    o.dampening = r.number("dampening");
    o.weight_decay = r.number("weight_decay");
    o.nesterov = r.boolean("nesterov");
    Opt opt = detail::checked(r, [&] { return Opt(o); });
    detail::load_into(r, opt);
    return opt;
  }
}

/// The EMA saved under `prefix` (either form), with its options, step, last decay and shadow weights.
/// Throws ddpm::format_error as read_optimizer does.
template <std::floating_point S>
EMA<S> read_ema(const Safetensors& st, const std::string& prefix = "ema") {
  detail::StateReader r(st, prefix);
  const std::string& type = r.text("type");
  if (type != "EMA" && type != "FixedRateEMA") {
    r.fail("'" + prefix + ".type' is '" + type + "', but an EMA state (EMA or FixedRateEMA) was requested");
  }
  r.expect<S>(type);
  const std::int64_t step = r.integer("step");
  const std::int64_t n = r.integer("num_tensors");
  const double current_decay = r.number("current_decay");
  auto buffers = r.all_buffers<S>({"shadow"}, n);
  std::vector<std::span<const S>> spans(buffers[0].begin(), buffers[0].end());
  EMA<S> ema = detail::checked(r, [&] {
    if (type == "FixedRateEMA") return EMA<S>::fixed_rate(std::span<const std::span<const S>>(spans), r.number("rate"));
    EMAOptions o;
    o.decay = r.number("decay");
    o.min_decay = r.number("min_decay");
    o.update_after_step = r.integer("update_after_step");
    o.use_ema_warmup = r.boolean("use_ema_warmup");
    o.inv_gamma = r.number("inv_gamma");
    o.power = r.number("power");
    return EMA<S>(std::span<const std::span<const S>>(spans), o);
  });
  ema.load_state(step, current_decay, std::move(buffers[0]));
  return ema;
}

}  // namespace ddpm::io
