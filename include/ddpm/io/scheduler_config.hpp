// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// DiffusersSchedulerConfig: a diffusers scheduler_config.json read into the sampler it names. `_class_name` picks the
// ddpm sampler (or a class the caller names, as diffusers' `OtherScheduler.from_config(config)` swaps a
// pipeline's scheduler); the keys that class takes set the beta schedule, prediction type, timestep and
// sigma grid, solver and clipping options, with the class's own diffusers defaults for absent keys; keys the
// class does not take are ignored as diffusers ignores them (listed in ignored_keys), '_'-prefixed ones
// (_diffusers_version) are bookkeeping; a value ddpm does not implement is an error naming the key, the
// value and what is supported (classes: see SchedulerClass). make_sampler() builds the sampler as an AnySampler (a std::variant), which
// ddpm::sample() runs.                                                   [docs/samplers.md, Sec. 10]

#include <algorithm>
#include <array>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "ddpm/error.hpp"
#include "ddpm/io/detail/json_config.hpp"
#include "ddpm/posterior.hpp"
#include "ddpm/predictor.hpp"
#include "ddpm/sample.hpp"
#include "ddpm/samplers/ddim.hpp"
#include "ddpm/samplers/ddpm.hpp"
#include "ddpm/samplers/detail/sampler_base.hpp"
#include "ddpm/samplers/dpm2.hpp"
#include "ddpm/samplers/dpm_solver.hpp"
#include "ddpm/samplers/dpmpp_sde.hpp"
#include "ddpm/samplers/euler.hpp"
#include "ddpm/samplers/euler_ancestral.hpp"
#include "ddpm/samplers/grid.hpp"
#include "ddpm/samplers/heun.hpp"
#include "ddpm/samplers/lms.hpp"
#include "ddpm/samplers/pndm.hpp"
#include "ddpm/samplers/unipc.hpp"
#include "ddpm/samplers/sampler.hpp"
#include "ddpm/schedule.hpp"
#include "ddpm/timesteps.hpp"

namespace ddpm::io {

/// The diffusers scheduler classes ddpm builds, in the order of AnySampler's alternatives:
///   ddpm                 DDPMScheduler                    -> DDPMSampler
///   ddim                 DDIMScheduler                    -> DDIMSampler
///   dpm_solver_multistep DPMSolverMultistepScheduler      -> DPMSolverMultistepSampler
///   euler                EulerDiscreteScheduler           -> EulerSampler
///   euler_ancestral      EulerAncestralDiscreteScheduler  -> EulerAncestralSampler
///   heun                 HeunDiscreteScheduler            -> HeunSampler
///   lms                  LMSDiscreteScheduler             -> LMSSampler
///   kdpm2                KDPM2DiscreteScheduler           -> DPM2Sampler
///   kdpm2_ancestral      KDPM2AncestralDiscreteScheduler  -> DPM2AncestralSampler
///   pndm                 PNDMScheduler                    -> PNDMSampler
///   dpm_solver_sde       DPMSolverSDEScheduler            -> DPMPPSDESampler
///   unipc                UniPCMultistepScheduler          -> UniPCSampler
enum class SchedulerClass {
  ddpm, ddim, dpm_solver_multistep, euler, euler_ancestral, heun, lms, kdpm2, kdpm2_ancestral, pndm, dpm_solver_sde,
  unipc
};

/// A sampler built from a scheduler config: one of the classes of SchedulerClass, alternative
/// static_cast<std::size_t>(SchedulerClass) of the variant. ddpm::sample() takes it as it takes a sampler;
/// std::visit reaches the sampler itself (timesteps(), sigmas(), options()).
template <std::floating_point S>
using AnySampler = std::variant<DDPMSampler<S>, DDIMSampler<S>, DPMSolverMultistepSampler<S>, EulerSampler<S>,
                                EulerAncestralSampler<S>, HeunSampler<S>, LMSSampler<S>, DPM2Sampler<S>,
                                DPM2AncestralSampler<S>, PNDMSampler<S>, DPMPPSDESampler<S>, UniPCSampler<S>>;

/// Which SchedulerClass an AnySampler holds.
template <std::floating_point S>
SchedulerClass scheduler_class_of(const AnySampler<S>& sampler) {
  return static_cast<SchedulerClass>(sampler.index());
}

namespace detail {

/// One supported class: its diffusers name and the keys its __init__ takes besides the ones every class
/// takes (kCommonKeys). Adding a class: an enumerator, an AnySampler alternative, an entry here, its
/// defaults in DiffusersSchedulerConfig::defaults and its case in make_sampler.
struct SchedulerClassInfo {
  SchedulerClass id;
  const char* name;
  std::vector<std::string> keys;
};

inline const std::vector<std::string>& common_scheduler_keys() {
  static const std::vector<std::string> keys = {"num_train_timesteps", "beta_start",      "beta_end",
                                                "beta_schedule",       "trained_betas",   "prediction_type",
                                                "timestep_spacing",    "steps_offset"};
  return keys;
}

inline const std::vector<SchedulerClassInfo>& scheduler_classes() {
  static const std::vector<std::string> ramps = {"use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas"};
  auto with_ramps = [&](std::vector<std::string> keys) {
    keys.insert(keys.end(), ramps.begin(), ramps.end());
    return keys;
  };
  static const std::vector<SchedulerClassInfo> classes = {
      {SchedulerClass::ddpm, "DDPMScheduler",
       {"variance_type", "clip_sample", "thresholding", "dynamic_thresholding_ratio", "clip_sample_range",
        "sample_max_value", "rescale_betas_zero_snr"}},
      {SchedulerClass::ddim, "DDIMScheduler",
       {"clip_sample", "set_alpha_to_one", "thresholding", "dynamic_thresholding_ratio", "clip_sample_range",
        "sample_max_value", "rescale_betas_zero_snr"}},
      {SchedulerClass::dpm_solver_multistep, "DPMSolverMultistepScheduler",
       with_ramps({"solver_order", "thresholding", "dynamic_thresholding_ratio", "sample_max_value",
                   "algorithm_type", "solver_type", "lower_order_final", "euler_at_final", "use_lu_lambdas",
                   "use_flow_sigmas", "flow_shift", "final_sigmas_type", "lambda_min_clipped", "variance_type",
                   "rescale_betas_zero_snr", "use_dynamic_shifting", "time_shift_type"})},
      {SchedulerClass::euler, "EulerDiscreteScheduler",
       with_ramps({"interpolation_type", "sigma_min", "sigma_max", "timestep_type", "rescale_betas_zero_snr",
                   "final_sigmas_type"})},
      {SchedulerClass::euler_ancestral, "EulerAncestralDiscreteScheduler", {"rescale_betas_zero_snr"}},
      {SchedulerClass::heun, "HeunDiscreteScheduler", with_ramps({"clip_sample", "clip_sample_range"})},
      {SchedulerClass::lms, "LMSDiscreteScheduler", with_ramps({})},
      {SchedulerClass::kdpm2, "KDPM2DiscreteScheduler", with_ramps({})},
      {SchedulerClass::kdpm2_ancestral, "KDPM2AncestralDiscreteScheduler", with_ramps({})},
      {SchedulerClass::pndm, "PNDMScheduler", {"skip_prk_steps", "set_alpha_to_one"}},
      {SchedulerClass::dpm_solver_sde, "DPMSolverSDEScheduler", with_ramps({"noise_sampler_seed"})},
      {SchedulerClass::unipc, "UniPCMultistepScheduler",
       with_ramps({"solver_order", "thresholding", "dynamic_thresholding_ratio", "sample_max_value", "predict_x0",
                   "solver_type", "lower_order_final", "disable_corrector", "solver_p", "use_flow_sigmas",
                   "flow_shift", "final_sigmas_type", "rescale_betas_zero_snr", "use_dynamic_shifting",
                   "time_shift_type", "sigma_min", "sigma_max", "shift_terminal"})},
  };
  return classes;
}

inline const SchedulerClassInfo* find_scheduler_class(const std::string& name) {
  for (const SchedulerClassInfo& c : scheduler_classes()) {
    if (name == c.name) return &c;
  }
  return nullptr;
}

inline std::string supported_class_list() {
  std::string list;
  for (const SchedulerClassInfo& c : scheduler_classes()) list += (list.empty() ? "" : ", ") + std::string(c.name);
  return list;
}

}  // namespace detail

/// The diffusers name of a class ("DDIMScheduler", ...).
inline const char* scheduler_class_name(SchedulerClass c) {
  for (const detail::SchedulerClassInfo& info : detail::scheduler_classes()) {
    if (info.id == c) return info.name;
  }
  return "unknown";
}

/// The diffusers class names DiffusersSchedulerConfig supports.
inline std::vector<std::string> supported_scheduler_classes() {
  std::vector<std::string> names;
  for (const detail::SchedulerClassInfo& c : detail::scheduler_classes()) names.emplace_back(c.name);
  return names;
}

/// A diffusers scheduler config read for one class: the keys under their diffusers names with ddpm's types,
/// the class's diffusers defaults where the file has no value. Fields a class does not take keep their
/// defaults and are unused by make_sampler (DDIM's set_alpha_to_one for Euler), except that the
/// clipping fields and the sigma ramp apply to every sampler when set in code.
struct DiffusersSchedulerConfig {
  /// The class, as `_class_name` names it (or the class the caller asked for).
  std::string class_name = "DDPMScheduler";
  SchedulerClass scheduler_class = SchedulerClass::ddpm;
  /// `_diffusers_version`, informational.
  std::optional<std::string> diffusers_version;

  // The beta schedule (schedule()).
  int num_train_timesteps = 1000;
  double beta_start = 1e-4;
  double beta_end = 0.02;
  /// "linear", "scaled_linear", "squaredcos_cap_v2", or (DDPMScheduler only, as in diffusers) "sigmoid".
  std::string beta_schedule = "linear";
  /// If not empty: the betas (beta_schedule is then unused); as many as num_train_timesteps.
  std::vector<double> trained_betas;
  bool rescale_betas_zero_snr = false;

  /// "epsilon", "sample" or "v_prediction" (Prediction::velocity).
  Prediction prediction_type = Prediction::epsilon;

  // The grid (GridOptions).
  TimestepSpacing timestep_spacing = TimestepSpacing::leading;
  int steps_offset = 0;
  bool use_karras_sigmas = false;
  bool use_exponential_sigmas = false;
  /// final_sigmas_type "zero" or "sigma_min" (DPMSolverMultistepScheduler, EulerDiscreteScheduler).
  FinalSigma final_sigmas_type = FinalSigma::zero;

  // Bounds on the predicted x0 (clipping()).
  bool clip_sample = false;
  double clip_sample_range = 1.0;
  bool thresholding = false;
  double dynamic_thresholding_ratio = 0.995;
  double sample_max_value = 1.0;

  /// DDPMScheduler: "fixed_small", "fixed_small_log", "fixed_large" or "learned_range".
  VarianceType variance_type = VarianceType::fixed_small;
  /// DDIMScheduler and PNDMScheduler (whose default is false).
  bool set_alpha_to_one = true;
  /// PNDMScheduler: PLMS alone (Stable Diffusion 1.x) instead of the pseudo Runge-Kutta warm-up.
  bool skip_prk_steps = false;
  /// DPMSolverSDEScheduler's seed of its Brownian tree, informational: ddpm's DPMPPSDESampler takes its
  /// Brownian path from the noise source given to sample() (diffusers' torchsde tree is not reproduced).
  std::optional<long long> noise_sampler_seed;
  /// DDIMScheduler's eta: not a config key but an argument of diffusers' step (DDIMPipeline's default 0);
  /// set it before make_sampler.
  double eta = 0.0;
  /// DDIMScheduler: the alpha_bar a step goes to, not a config key (DDIMOptions::previous_timestep): the next
  /// listed timestep's (the default; diffusers' own wherever diffusers is right), or PreviousTimestep::diffusers
  /// for diffusers' t - T / N exactly (docs/samplers.md, Eq. (S33)).
  PreviousTimestep ddim_previous_timestep = PreviousTimestep::listed;

  // DPMSolverMultistepScheduler (solver_order and lower_order_final also UniPCMultistepScheduler's).
  int solver_order = 2;
  /// "dpmsolver++", "dpmsolver", "sde-dpmsolver++", "sde-dpmsolver" ("deis" is read as "dpmsolver++", as
  /// diffusers registers it).
  DPMSolverAlgorithm algorithm_type = DPMSolverAlgorithm::dpmsolver_pp;
  /// "midpoint" or "heun" ("logrho", "bh1", "bh2" are read as "midpoint", as diffusers registers them).
  SolverType solver_type = SolverType::midpoint;
  bool lower_order_final = true;
  bool euler_at_final = false;

  // UniPCMultistepScheduler.
  /// Its solver_type: "bh1" or "bh2" ("midpoint", "heun", "logrho" are read as "bh2", as diffusers does).
  UniPCSolverType unipc_solver_type = UniPCSolverType::bh2;
  bool predict_x0 = true;
  /// Step indices whose result is not corrected (negative entries, which never match in diffusers, are
  /// dropped).
  std::vector<int> disable_corrector;

  /// The keys the file holds that the class does not take (nor '_'-prefixed ones), in the file's key order as
  /// nlohmann sorts it: diffusers ignores them with a warning, and so does from_json (a caller may warn).
  std::vector<std::string> ignored_keys;

  static constexpr int kMaxTrainTimesteps = 1 << 20;  ///< num_train_timesteps, entries of trained_betas
  static constexpr int kMaxJsonDepth = 8;             ///< nesting of the file (its values nest at most 1 deep)

  /// The keys `class_name` takes (diffusers' __init__ parameters of the class).
  /// Throws ddpm::invalid_argument for a class outside supported_scheduler_classes().
  static std::vector<std::string> class_keys(const std::string& class_name) {
    const detail::SchedulerClassInfo& info = class_info(class_name, "ddpm::io::DiffusersSchedulerConfig::class_keys");
    std::vector<std::string> keys = detail::common_scheduler_keys();
    keys.insert(keys.end(), info.keys.begin(), info.keys.end());
    return keys;
  }

  /// The config of `class_name` with every key at its diffusers default (what from_config of an empty
  /// config builds). Throws ddpm::invalid_argument for a class outside supported_scheduler_classes().
  static DiffusersSchedulerConfig defaults(const std::string& class_name) {
    const detail::SchedulerClassInfo& info = class_info(class_name, "ddpm::io::DiffusersSchedulerConfig::defaults");
    DiffusersSchedulerConfig c;
    c.class_name = info.name;
    c.scheduler_class = info.id;
    switch (info.id) {
      case SchedulerClass::ddpm:
      case SchedulerClass::ddim:
        c.timestep_spacing = TimestepSpacing::leading;
        c.clip_sample = true;
        break;
      case SchedulerClass::pndm:
        c.timestep_spacing = TimestepSpacing::leading;
        c.set_alpha_to_one = false;
        break;
      case SchedulerClass::heun:
      case SchedulerClass::kdpm2:
      case SchedulerClass::kdpm2_ancestral:
      case SchedulerClass::dpm_solver_sde:
        c.beta_start = 0.00085;  // diffusers' "sensible defaults" of these classes (still "linear")
        c.beta_end = 0.012;
        c.timestep_spacing = TimestepSpacing::linspace;
        break;
      default:
        c.timestep_spacing = TimestepSpacing::linspace;
        break;
    }
    return c;
  }

  /// The config a parsed scheduler_config.json describes, for its `_class_name` or, if `as_class` is not
  /// empty, for that class (diffusers' `AsClass.from_config(config)`: the keys AsClass takes are read, the
  /// others ignored). `source` names the file in messages. Keys listed in `_use_default_values` keep their
  /// defaults, as diffusers does.
  /// Throws ddpm::invalid_argument if as_class is not supported; ddpm::format_error if j is not an object,
  /// nests deeper than kMaxJsonDepth, has no string _class_name (and as_class is empty), names an
  /// unsupported class, or a key the class takes holds a value of the wrong type, outside its range, or
  /// one ddpm does not implement (the message names the key, its value, truncated to about 200 characters,
  /// and what is supported).
  static DiffusersSchedulerConfig from_json(const nlohmann::json& j, const std::string& source = "scheduler_config.json",
                                   const std::string& as_class = "") {
    const std::string where = "ddpm::io::DiffusersSchedulerConfig: " + source + ": ";
    if (!as_class.empty()) class_info(as_class, "ddpm::io::DiffusersSchedulerConfig::from_json: as_class");
    if (!j.is_object()) ddpm::detail::throw_format_error(where + "must be a JSON object, but is " + describe(j));
    for (const auto& [key, value] : j.items()) {
      if (io::detail::nests_deeper_than(value, kMaxJsonDepth - 1)) {
        ddpm::detail::throw_format_error(where + "key \"" + io::detail::truncated(key) +
                                         "\" holds a value that nests deeper than " +
                                         ddpm::detail::number_string(kMaxJsonDepth - 1) + " levels");
      }
    }
    std::string name = as_class;
    std::optional<std::string> version;
    if (const auto it = j.find("_diffusers_version"); it != j.end() && it->is_string()) version = it->get<std::string>();
    if (name.empty()) {
      const auto it = j.find("_class_name");
      if (it == j.end()) {
        ddpm::detail::throw_format_error(where + "has no \"_class_name\"; name the class (as_class), one of " +
                                         detail::supported_class_list());
      }
      if (!it->is_string()) {
        ddpm::detail::throw_format_error(where + "key \"_class_name\" is " + describe(*it) + ", but must be a string");
      }
      name = it->get<std::string>();
      if (detail::find_scheduler_class(name) == nullptr) {
        ddpm::detail::throw_format_error(where + "_class_name is \"" + io::detail::truncated(name) +
                                         "\", which ddpm does not implement; the supported classes are " +
                                         detail::supported_class_list());
      }
    }
    DiffusersSchedulerConfig c = defaults(name);
    c.diffusers_version = version;
    std::vector<std::string> use_defaults;
    if (const auto it = j.find("_use_default_values"); it != j.end() && it->is_array()) {
      for (const auto& k : *it) {
        if (k.is_string()) use_defaults.push_back(k.get<std::string>());
      }
    }
    const std::vector<std::string> keys = class_keys(name);
    for (const auto& [key, value] : j.items()) {
      if (!key.empty() && key.front() == '_') continue;
      if (std::find(use_defaults.begin(), use_defaults.end(), key) != use_defaults.end()) continue;
      if (std::find(keys.begin(), keys.end(), key) == keys.end()) {
        c.ignored_keys.push_back(key);
        continue;
      }
      try {
        c.set(key, value);
      } catch (const io::detail::WrongType& e) {
        ddpm::detail::throw_format_error(where + "key \"" + key + "\" is " + describe(value) + ", but " + e.expected);
      }
    }
    c.check(where);
    return c;
  }

  /// from_json of a scheduler_config.json's text (Python's NaN, Infinity and -Infinity, which json.dumps
  /// writes, are read as numbers). Throws ddpm::format_error if the text nests deeper than kMaxJsonDepth or
  /// is not JSON, and as from_json.
  static DiffusersSchedulerConfig from_string(const std::string& text, const std::string& source = "scheduler_config.json",
                                     const std::string& as_class = "") {
    const nlohmann::json j =
        io::detail::parse_config_text(text, "ddpm::io::DiffusersSchedulerConfig: " + source, kMaxJsonDepth);
    return from_json(j, source, as_class);
  }

  /// from_string of a file. Throws ddpm::format_error if it cannot be read, and as from_string.
  static DiffusersSchedulerConfig from_file(const std::string& path, const std::string& as_class = "") {
    std::ifstream in(path, std::ios::binary);
    if (!in) ddpm::detail::throw_format_error("ddpm::io::DiffusersSchedulerConfig: cannot open '" + path + "'");
    std::stringstream text;
    text << in.rdbuf();
    return from_string(text.str(), path, as_class);
  }

  /// The noise schedule: trained_betas, or beta_schedule over num_train_timesteps (linear and
  /// scaled_linear from beta_start to beta_end, squaredcos_cap_v2 the cosine schedule, sigmoid), rescaled to
  /// zero terminal SNR if rescale_betas_zero_snr. ddpm computes it in double (diffusers in float32).
  /// Throws ddpm::invalid_argument as NoiseSchedule's constructors do (an end outside (0, 1), ...).
  template <std::floating_point S>
  NoiseSchedule<S> schedule() const {
    NoiseSchedule<S> s = [&] {
      if (!trained_betas.empty()) return NoiseSchedule<S>::from_betas(trained_betas);
      if (beta_schedule == "scaled_linear") return NoiseSchedule<S>::scaled_linear(num_train_timesteps, beta_start, beta_end);
      if (beta_schedule == "squaredcos_cap_v2") return NoiseSchedule<S>::cosine(num_train_timesteps);
      if (beta_schedule == "sigmoid") return NoiseSchedule<S>::sigmoid(num_train_timesteps, beta_start, beta_end);
      if (beta_schedule != "linear") {
        ddpm::detail::throw_invalid_argument("ddpm::io::DiffusersSchedulerConfig::schedule: beta_schedule is \"" +
                                             io::detail::truncated(beta_schedule) +
                                             "\", but must be linear, scaled_linear, squaredcos_cap_v2 or sigmoid");
      }
      return NoiseSchedule<S>::linear(num_train_timesteps, beta_start, beta_end);
    }();
    return rescale_betas_zero_snr ? s.rescaled_zero_terminal_snr() : s;
  }

  /// The bounds on x0: thresholding -> Clipping::dynamic_threshold(dynamic_thresholding_ratio,
  /// sample_max_value); else clip_sample -> Clipping::clip(clip_sample_range); else none (diffusers' order).
  Clipping clipping() const {
    if (thresholding) return Clipping::dynamic_threshold(dynamic_thresholding_ratio, sample_max_value);
    if (clip_sample) return Clipping::clip(clip_sample_range);
    return Clipping::none();
  }

  /// The sigma ramp: karras (use_karras_sigmas), exponential (use_exponential_sigmas) or the timesteps' own.
  SigmaSpacing sigma_spacing() const {
    if (use_karras_sigmas) return SigmaSpacing::karras;
    if (use_exponential_sigmas) return SigmaSpacing::exponential;
    return SigmaSpacing::timesteps;
  }

  /// The grid of N steps (diffusers' set_timesteps(N)) as the config says: timestep_spacing and steps_offset,
  /// and with `sigmas` also the sigma ramp (sigma_spacing()) and final_sigmas_type.
  GridOptions grid_options(int num_inference_steps, bool sigmas) const {
    GridOptions g;
    g.num_inference_steps = num_inference_steps;
    g.timestep_spacing = timestep_spacing;
    g.steps_offset = steps_offset;
    if (sigmas) {
      g.sigma_spacing = sigma_spacing();
      g.final_sigma = final_sigmas_type;
    }
    return g;
  }

  // The options of each sampler for N steps (diffusers' set_timesteps(N)).
  DDPMOptions ddpm_options(int num_inference_steps) const {
    DDPMOptions o;
    o.grid = grid_options(num_inference_steps, false);
    o.variance_type = variance_type;
    o.clipping = clipping();
    return o;
  }
  /// use_clipped_model_output is false, diffusers' default (DDIMOptions' own default is true).
  DDIMOptions ddim_options(int num_inference_steps) const {
    DDIMOptions o;
    o.grid = grid_options(num_inference_steps, false);
    o.eta = eta;
    o.set_alpha_to_one = set_alpha_to_one;
    o.clipping = clipping();
    o.use_clipped_model_output = false;
    o.previous_timestep = ddim_previous_timestep;
    return o;
  }
  DPMSolverOptions dpm_solver_options(int num_inference_steps) const {
    DPMSolverOptions o;
    o.grid = grid_options(num_inference_steps, true);
    o.solver_order = solver_order;
    o.solver_type = solver_type;
    o.algorithm_type = algorithm_type;
    o.lower_order_final = lower_order_final;
    o.euler_at_final = euler_at_final;
    o.clipping = clipping();
    return o;
  }
  PNDMOptions pndm_options(int num_inference_steps) const {
    PNDMOptions o;
    o.grid = grid_options(num_inference_steps, false);
    o.skip_prk_steps = skip_prk_steps;
    o.set_alpha_to_one = set_alpha_to_one;
    return o;
  }
  /// The options of the samplers on EulerDiscreteScheduler's sigma grid (Euler, Euler ancestral, Heun, LMS,
  /// DPM2, DPM2 ancestral, DPM++ SDE): N, spacing, offset, sigma ramp, final sigma and bounds.
  template <class Options>
  Options sigma_grid_options(int num_inference_steps) const {
    Options o;
    o.grid = grid_options(num_inference_steps, true);
    o.clipping = clipping();
    return o;
  }
  /// Bounds only in the data-prediction form: diffusers thresholds x0 only when predict_x0.
  UniPCOptions unipc_options(int num_inference_steps) const {
    UniPCOptions o;
    o.grid = grid_options(num_inference_steps, true);
    o.solver_order = solver_order;
    o.solver_type = unipc_solver_type;
    o.predict_x0 = predict_x0;
    o.lower_order_final = lower_order_final;
    o.disable_corrector = disable_corrector;
    o.clipping = predict_x0 ? clipping() : Clipping::none();
    return o;
  }

  /// The sampler of scheduler_class over `schedule` for N steps (diffusers' set_timesteps(N); for Heun and
  /// KDPM2, N noise intervals of two model calls). Throws ddpm::invalid_argument as the sampler's
  /// constructor does (N outside [1, T], ...).
  template <std::floating_point S>
  AnySampler<S> make_sampler(NoiseSchedule<S> schedule, int num_inference_steps) const {
    const int n = num_inference_steps;
    switch (scheduler_class) {
      case SchedulerClass::ddpm: return AnySampler<S>(std::in_place_index<0>, std::move(schedule), ddpm_options(n));
      case SchedulerClass::ddim: return AnySampler<S>(std::in_place_index<1>, std::move(schedule), ddim_options(n));
      case SchedulerClass::dpm_solver_multistep:
        return AnySampler<S>(std::in_place_index<2>, std::move(schedule), dpm_solver_options(n));
      case SchedulerClass::euler: return AnySampler<S>(std::in_place_index<3>, std::move(schedule), sigma_grid_options<EulerOptions>(n));
      case SchedulerClass::euler_ancestral:
        return AnySampler<S>(std::in_place_index<4>, std::move(schedule), sigma_grid_options<EulerOptions>(n));
      case SchedulerClass::heun: return AnySampler<S>(std::in_place_index<5>, std::move(schedule), sigma_grid_options<HeunOptions>(n));
      case SchedulerClass::lms: return AnySampler<S>(std::in_place_index<6>, std::move(schedule), sigma_grid_options<LMSOptions>(n));
      case SchedulerClass::kdpm2: return AnySampler<S>(std::in_place_index<7>, std::move(schedule), sigma_grid_options<DPM2Options>(n));
      case SchedulerClass::kdpm2_ancestral:
        return AnySampler<S>(std::in_place_index<8>, std::move(schedule), sigma_grid_options<DPM2Options>(n));
      case SchedulerClass::pndm: return AnySampler<S>(std::in_place_index<9>, std::move(schedule), pndm_options(n));
      case SchedulerClass::dpm_solver_sde:
        return AnySampler<S>(std::in_place_index<10>, std::move(schedule), sigma_grid_options<DPMPPSDEOptions>(n));
      case SchedulerClass::unipc: return AnySampler<S>(std::in_place_index<11>, std::move(schedule), unipc_options(n));
    }
    ddpm::detail::throw_invalid_argument("ddpm::io::DiffusersSchedulerConfig::make_sampler: scheduler_class is " +
                                         ddpm::detail::number_string(static_cast<int>(scheduler_class)) +
                                         ", but must be a SchedulerClass");
  }

  /// make_sampler over schedule<S>().
  template <std::floating_point S>
  AnySampler<S> make_sampler(int num_inference_steps) const {
    return make_sampler<S>(schedule<S>(), num_inference_steps);
  }

  /// One line for a log: "DDIMScheduler: scaled_linear betas 0.00085 .. 0.012, T = 1000, epsilon, leading
  /// spacing, steps_offset 1, clip 1".
  std::string summary() const {
    std::string s = class_name + ": ";
    if (!trained_betas.empty()) {
      s += "trained_betas";
    } else if (beta_schedule == "squaredcos_cap_v2") {
      s += "squaredcos_cap_v2 betas";
    } else {
      s += beta_schedule + " betas " + ddpm::detail::number_string(beta_start) + " .. " + ddpm::detail::number_string(beta_end);
    }
    s += ", T = " + ddpm::detail::number_string(num_train_timesteps);
    if (rescale_betas_zero_snr) s += ", zero terminal SNR";
    s += std::string(", ") + (prediction_type == Prediction::velocity ? "v_prediction" : prediction_name(prediction_type));
    s += std::string(", ") + spacing_name(timestep_spacing) + " spacing";
    if (steps_offset != 0) s += ", steps_offset " + ddpm::detail::number_string(steps_offset);
    if (sigma_spacing() != SigmaSpacing::timesteps) s += std::string(", ") + sigma_spacing_name(sigma_spacing()) + " sigmas";
    const Clipping c = clipping();
    if (c.mode == Clipping::Mode::clip) s += ", clip " + ddpm::detail::number_string(c.range);
    if (c.mode == Clipping::Mode::dynamic_threshold) s += ", dynamic thresholding " + ddpm::detail::number_string(c.ratio);
    return s;
  }

 private:
  static const detail::SchedulerClassInfo& class_info(const std::string& name, const char* what) {
    const detail::SchedulerClassInfo* info = detail::find_scheduler_class(name);
    if (info == nullptr) {
      ddpm::detail::throw_invalid_argument(std::string(what) + " is \"" + io::detail::truncated(name) +
                                           "\", but must be one of " + detail::supported_class_list());
    }
    return *info;
  }

  static std::string describe(const nlohmann::json& v) { return io::detail::describe(v, kMaxJsonDepth); }

  /// The index of v among `names`; else WrongType listing them (and `extra`, e.g. what ddpm lacks).
  static std::size_t choice(const nlohmann::json& v, std::initializer_list<const char*> names, const std::string& extra = "") {
    std::string list;
    std::size_t k = 0;
    for (const char* n : names) list += std::string(k++ == 0 ? "" : ", ") + "\"" + n + "\"";
    const io::detail::WrongType bad{"must be one of " + list + extra};
    if (!v.is_string()) throw bad;
    const std::string& s = v.get_ref<const std::string&>();
    k = 0;
    for (const char* n : names) {
      if (s == n) return k;
      ++k;
    }
    throw bad;
  }

  /// A flag ddpm supports only at its default value (false).
  static void require_false(const nlohmann::json& v, const std::string& why) {
    if (io::detail::boolean(v)) throw io::detail::WrongType{"ddpm supports only false (" + why + ")"};
  }

  void set(const std::string& key, const nlohmann::json& v) {
    namespace jd = io::detail;
    const bool ddpm_class = scheduler_class == SchedulerClass::ddpm;
    if (key == "num_train_timesteps") {
      num_train_timesteps = static_cast<int>(jd::integer(v, 1, kMaxTrainTimesteps));
    } else if (key == "beta_start") {
      beta_start = jd::number(v);
    } else if (key == "beta_end") {
      beta_end = jd::number(v);
    } else if (key == "beta_schedule") {
      if (ddpm_class) {
        beta_schedule = std::array<const char*, 4>{"linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid"}
            [choice(v, {"linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid"})];
      } else {
        beta_schedule = std::array<const char*, 3>{"linear", "scaled_linear", "squaredcos_cap_v2"}
            [choice(v, {"linear", "scaled_linear", "squaredcos_cap_v2"}, " (sigmoid: DDPMScheduler only, as in diffusers)")];
      }
    } else if (key == "trained_betas") {
      trained_betas.clear();
      if (v.is_null()) return;
      if (!v.is_array() || v.size() > static_cast<std::size_t>(kMaxTrainTimesteps)) {
        throw jd::WrongType{"must be null or a list of at most " + ddpm::detail::number_string(kMaxTrainTimesteps) +
                            " numbers"};
      }
      for (const auto& b : v) trained_betas.push_back(jd::number(b));
    } else if (key == "prediction_type") {
      constexpr Prediction kinds[] = {Prediction::epsilon, Prediction::sample, Prediction::velocity};
      prediction_type = kinds[choice(v, {"epsilon", "sample", "v_prediction"})];
    } else if (key == "timestep_spacing") {
      constexpr TimestepSpacing kinds[] = {TimestepSpacing::leading, TimestepSpacing::trailing, TimestepSpacing::linspace};
      timestep_spacing = kinds[choice(v, {"leading", "trailing", "linspace"})];
    } else if (key == "steps_offset") {
      steps_offset = static_cast<int>(jd::integer(v, 0, kMaxTrainTimesteps));
    } else if (key == "rescale_betas_zero_snr") {
      rescale_betas_zero_snr = jd::boolean(v);
    } else if (key == "clip_sample") {
      clip_sample = jd::boolean(v);
    } else if (key == "clip_sample_range") {
      clip_sample_range = jd::number(v);
    } else if (key == "thresholding") {
      thresholding = jd::boolean(v);
    } else if (key == "dynamic_thresholding_ratio") {
      dynamic_thresholding_ratio = jd::number(v);
    } else if (key == "sample_max_value") {
      sample_max_value = jd::number(v);
    } else if (key == "set_alpha_to_one") {
      set_alpha_to_one = jd::boolean(v);
    } else if (key == "skip_prk_steps") {
      skip_prk_steps = jd::boolean(v);
    } else if (key == "noise_sampler_seed") {
      noise_sampler_seed = v.is_null() ? std::nullopt
                                       : std::optional<long long>(jd::integer(v, std::numeric_limits<long long>::min(),
                                                                              std::numeric_limits<long long>::max()));
    } else if (key == "variance_type") {
      if (ddpm_class) {
        constexpr VarianceType kinds[] = {VarianceType::fixed_small, VarianceType::fixed_small_log,
                                          VarianceType::fixed_large, VarianceType::learned_range};
        variance_type = kinds[choice(v, {"fixed_small", "fixed_small_log", "fixed_large", "learned_range"},
                                     " (ddpm does not implement \"learned\" and \"fixed_large_log\")")];
      } else if (!v.is_null() && !v.is_string()) {
        // DPMSolverMultistepScheduler: "learned" / "learned_range" say the output has a variance half, which
        // ddpm's samplers drop themselves; any other string (a DDPMScheduler config's "fixed_large", as
        // pipelines load one into this class) has no effect in diffusers either.
        throw jd::WrongType{"must be a string or null"};
      }
    } else if (key == "solver_order") {
      solver_order = static_cast<int>(jd::integer(v, 1, 3));
    } else if (key == "algorithm_type") {
      constexpr DPMSolverAlgorithm kinds[] = {DPMSolverAlgorithm::dpmsolver_pp, DPMSolverAlgorithm::dpmsolver,
                                              DPMSolverAlgorithm::sde_dpmsolver_pp, DPMSolverAlgorithm::sde_dpmsolver,
                                              DPMSolverAlgorithm::dpmsolver_pp};
      algorithm_type = kinds[choice(v, {"dpmsolver++", "dpmsolver", "sde-dpmsolver++", "sde-dpmsolver", "deis"},
                                    " (\"deis\" is read as \"dpmsolver++\", as diffusers does)")];
    } else if (key == "solver_type" && scheduler_class == SchedulerClass::unipc) {
      unipc_solver_type = choice(v, {"bh1", "bh2", "midpoint", "heun", "logrho"}, " (the last three are read as "
                                                                                   "\"bh2\", as diffusers does)") == 0
                              ? UniPCSolverType::bh1
                              : UniPCSolverType::bh2;
    } else if (key == "solver_type") {
      solver_type = choice(v, {"midpoint", "heun", "logrho", "bh1", "bh2"}, " (the last three are read as \"midpoint\", "
                                                                              "as diffusers does)") == 1
                        ? SolverType::heun
                        : SolverType::midpoint;
    } else if (key == "predict_x0") {
      predict_x0 = jd::boolean(v);
    } else if (key == "disable_corrector") {
      if (!v.is_array() || v.size() > static_cast<std::size_t>(kMaxTrainTimesteps)) {
        throw jd::WrongType{"must be a list of at most " + ddpm::detail::number_string(kMaxTrainTimesteps) +
                            " step indices"};
      }
      disable_corrector.clear();
      for (const auto& k : v) {
        const long long index = jd::integer(k, std::numeric_limits<int>::min(), std::numeric_limits<int>::max());
        if (index >= 0) disable_corrector.push_back(static_cast<int>(index));
      }
    } else if (key == "solver_p") {
      if (!v.is_null()) throw jd::WrongType{"ddpm supports only null (no other scheduler as UniPC's predictor)"};
    } else if (key == "shift_terminal") {
      if (!v.is_null()) throw jd::WrongType{"ddpm supports only null (it applies to flow-matching sigmas)"};
    } else if (key == "lower_order_final") {
      lower_order_final = jd::boolean(v);
    } else if (key == "euler_at_final") {
      euler_at_final = jd::boolean(v);
    } else if (key == "use_karras_sigmas") {
      use_karras_sigmas = v.is_null() ? false : jd::boolean(v);
    } else if (key == "use_exponential_sigmas") {
      use_exponential_sigmas = v.is_null() ? false : jd::boolean(v);
    } else if (key == "use_beta_sigmas") {
      if (!v.is_null()) require_false(v, "no beta-distribution sigma ramp; use_karras_sigmas or use_exponential_sigmas");
    } else if (key == "use_lu_lambdas") {
      require_false(v, "no uniform-lambda grid");
    } else if (key == "use_flow_sigmas") {
      require_false(v, "no flow-matching sigmas");
    } else if (key == "use_dynamic_shifting") {
      require_false(v, "no dynamic shifting");
    } else if (key == "flow_shift" || key == "time_shift_type") {
      // Used only with use_flow_sigmas / use_dynamic_shifting, which must be false: no effect.
    } else if (key == "final_sigmas_type") {
      final_sigmas_type = choice(v, {"zero", "sigma_min"}) == 0 ? FinalSigma::zero : FinalSigma::sigma_min;
    } else if (key == "lambda_min_clipped") {
      const double lambda = jd::number(v);
      if (!(lambda < 0 && std::isinf(lambda))) {
        throw jd::WrongType{"ddpm does not clip lambda: supported is -Infinity, the default"};
      }
    } else if (key == "interpolation_type") {
      choice(v, {"linear"}, " (ddpm does not implement \"log_linear\")");
    } else if (key == "timestep_type") {
      choice(v, {"discrete"}, " (ddpm does not implement \"continuous\")");
    } else if (key == "sigma_min") {
      sigma_min_ = v.is_null() ? std::nullopt : std::optional<double>(jd::number(v));
    } else if (key == "sigma_max") {
      sigma_max_ = v.is_null() ? std::nullopt : std::optional<double>(jd::number(v));
    }
  }

  /// The checks that involve several keys, and the values' ranges (a schedule and the clipping built once).
  void check(const std::string& where) const {
    auto fail = [&](const std::string& what) { ddpm::detail::throw_format_error(where + what); };
    if (use_karras_sigmas && use_exponential_sigmas) {
      fail("use_karras_sigmas and use_exponential_sigmas are both true, but only one sigma ramp can be used "
           "(diffusers refuses this too)");
    }
    if ((sigma_min_ || sigma_max_) && sigma_spacing() != SigmaSpacing::timesteps) {
      fail(std::string("sigma_min / sigma_max are set (") + (sigma_min_ ? ddpm::detail::number_string(*sigma_min_) : "null") +
           " / " + (sigma_max_ ? ddpm::detail::number_string(*sigma_max_) : "null") + ") with " +
           sigma_spacing_name(sigma_spacing()) +
           " sigmas, but ddpm's ramps run between the schedule's own sigmas: supported is null for both");
    }
    const bool eps_form = algorithm_type == DPMSolverAlgorithm::dpmsolver || algorithm_type == DPMSolverAlgorithm::sde_dpmsolver;
    if (scheduler_class == SchedulerClass::dpm_solver_multistep && eps_form && final_sigmas_type == FinalSigma::zero) {
      fail(std::string("algorithm_type is \"") + (algorithm_type == DPMSolverAlgorithm::dpmsolver ? "dpmsolver" : "sde-dpmsolver") +
           "\" with final_sigmas_type \"zero\", which diffusers refuses too: use final_sigmas_type \"sigma_min\"");
    }
    if (scheduler_class == SchedulerClass::dpm_solver_multistep && algorithm_type == DPMSolverAlgorithm::sde_dpmsolver &&
        solver_order == 3) {
      fail("solver_order is 3 with algorithm_type \"sde-dpmsolver\", which ddpm implements for orders 1 and 2 only");
    }
    if (!trained_betas.empty() && static_cast<int>(trained_betas.size()) != num_train_timesteps) {
      fail("trained_betas has " + ddpm::detail::number_string(trained_betas.size()) + " values, but num_train_timesteps is " +
           ddpm::detail::number_string(num_train_timesteps) + "; they must agree (diffusers spaces the timesteps over "
           "num_train_timesteps)");
    }
    try {
      (void)schedule<double>();
      ddpm::detail::check_clipping("clipping", clipping());
    } catch (const ddpm::invalid_argument& e) {
      fail(std::string("the values do not make a valid ") + (trained_betas.empty() ? "schedule" : "schedule from trained_betas") +
           " or clipping: " + e.what() + " (keys beta_start, beta_end, trained_betas, clip_sample_range, "
           "dynamic_thresholding_ratio, sample_max_value)");
    }
  }

  std::optional<double> sigma_min_, sigma_max_;  // EulerDiscreteScheduler's ramp ends (null supported)
};

}  // namespace ddpm::io

namespace ddpm {

/// sample() of a sampler held in a std::variant (ddpm::io::AnySampler): the same loop on the alternative
/// it holds.                                                               [docs/samplers.md, Eq. (S15)]
template <std::floating_point S, int R, class... Sms, class Model, class Noise, class Callback>
  requires(Sampler<Sms, S, R> && ...) && Predictor<std::remove_reference_t<Model>, S, R> &&
          SampleCallback<std::remove_reference_t<Callback>, S, R>
Tensor<S, R> sample(std::variant<Sms...>& sampler, Model&& model, Tensor<S, R> x_T, Noise&& noise, Callback&& callback) {
  return std::visit(
      [&](auto& s) {
        return ddpm::sample(s, std::forward<Model>(model), std::move(x_T), std::forward<Noise>(noise),
                            std::forward<Callback>(callback));
      },
      sampler);
}

/// sample() of a sampler held in a std::variant, without a callback.
template <std::floating_point S, int R, class... Sms, class Model, class Noise>
  requires(Sampler<Sms, S, R> && ...) && Predictor<std::remove_reference_t<Model>, S, R>
Tensor<S, R> sample(std::variant<Sms...>& sampler, Model&& model, Tensor<S, R> x_T, Noise&& noise) {
  return std::visit(
      [&](auto& s) { return ddpm::sample(s, std::forward<Model>(model), std::move(x_T), std::forward<Noise>(noise)); },
      sampler);
}

}  // namespace ddpm
