// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors

// Reading diffusers' scheduler_config.json (io/scheduler_config.hpp): configs written by diffusers' own
// save_config for every supported class and loaded by diffusers' from_pretrained (the same class, or another
// one as a pipeline swaps schedulers; tests/reference/make_scheduler_configs.py) give the class, the option
// values, the schedule, the timesteps and the sigmas diffusers' set_timesteps(N) gives; the sampler runs under
// sample(); what ddpm does not implement, and hostile files, are refused by name.  [docs/samplers.md, Sec. 10]

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "ddpm/io/scheduler_config.hpp"
#include "ddpm/sample.hpp"

using ddpm::io::SchedulerClass;
using ddpm::io::DiffusersSchedulerConfig;

namespace {

namespace fs = std::filesystem;

const fs::path kDir = fs::path(DDPM_TEST_DATA_DIR) / "scheduler_configs";

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  REQUIRE(in);
  return nlohmann::json::parse(in);
}

// The classes by their diffusers names, written out here (not taken from the header's table).
const std::map<std::string, SchedulerClass> kClasses = {
    {"DDPMScheduler", SchedulerClass::ddpm},
    {"DDIMScheduler", SchedulerClass::ddim},
    {"DPMSolverMultistepScheduler", SchedulerClass::dpm_solver_multistep},
    {"EulerDiscreteScheduler", SchedulerClass::euler},
    {"EulerAncestralDiscreteScheduler", SchedulerClass::euler_ancestral},
    {"HeunDiscreteScheduler", SchedulerClass::heun},
    {"LMSDiscreteScheduler", SchedulerClass::lms},
    {"KDPM2DiscreteScheduler", SchedulerClass::kdpm2},
    {"KDPM2AncestralDiscreteScheduler", SchedulerClass::kdpm2_ancestral},
    {"PNDMScheduler", SchedulerClass::pndm},
    {"DPMSolverSDEScheduler", SchedulerClass::dpm_solver_sde},
    {"UniPCMultistepScheduler", SchedulerClass::unipc},
};

const char* algorithm_name(ddpm::DPMSolverAlgorithm a) {
  switch (a) {
    case ddpm::DPMSolverAlgorithm::dpmsolver_pp: return "dpmsolver++";
    case ddpm::DPMSolverAlgorithm::dpmsolver: return "dpmsolver";
    case ddpm::DPMSolverAlgorithm::sde_dpmsolver_pp: return "sde-dpmsolver++";
    case ddpm::DPMSolverAlgorithm::sde_dpmsolver: return "sde-dpmsolver";
  }
  return "";
}

// The values diffusers' loaded scheduler holds against DiffusersSchedulerConfig's fields. A key the loading class
// does not take is absent from diffusers' config; ddpm must then behave as the class does without it (no
// clipping for the classes without clip_sample, the timesteps' own sigmas, final sigma zero).
void check_loaded_values(const DiffusersSchedulerConfig& c, const nlohmann::json& loaded) {
  auto has = [&](const char* k) { return loaded.contains(k) && !loaded[k].is_null(); };
  if (has("num_train_timesteps")) CHECK(c.num_train_timesteps == loaded["num_train_timesteps"].get<int>());
  if (has("beta_schedule")) CHECK(c.beta_schedule == loaded["beta_schedule"].get<std::string>());
  const std::string kind = loaded["prediction_type"].get<std::string>();
  CHECK(c.prediction_type == (kind == "epsilon" ? ddpm::Prediction::epsilon
                              : kind == "sample" ? ddpm::Prediction::sample
                                                 : ddpm::Prediction::velocity));
  CHECK(ddpm::spacing_name(c.timestep_spacing) == loaded["timestep_spacing"].get<std::string>());
  CHECK(c.steps_offset == loaded["steps_offset"].get<int>());
  CHECK(c.rescale_betas_zero_snr == (has("rescale_betas_zero_snr") && loaded["rescale_betas_zero_snr"].get<bool>()));
  // UniPC thresholds x0 only in its data-prediction form (predict_x0).
  const bool thresholding = has("thresholding") && loaded["thresholding"].get<bool>() &&
                            !(c.scheduler_class == SchedulerClass::unipc && !c.predict_x0);
  const bool clip = has("clip_sample") && loaded["clip_sample"].get<bool>();
  const ddpm::Clipping clipping =
      c.scheduler_class == SchedulerClass::unipc ? c.unipc_options(10).clipping : c.clipping();
  if (thresholding) {
    CHECK(clipping.mode == ddpm::Clipping::Mode::dynamic_threshold);
    CHECK(clipping.ratio == loaded["dynamic_thresholding_ratio"].get<double>());
    CHECK(clipping.max_value == loaded["sample_max_value"].get<double>());
  } else if (clip) {
    CHECK(clipping.mode == ddpm::Clipping::Mode::clip);
    CHECK(clipping.range == loaded["clip_sample_range"].get<double>());
  } else {
    CHECK(clipping.mode == ddpm::Clipping::Mode::none);
  }
  if (c.scheduler_class == SchedulerClass::ddpm) {
    CHECK(ddpm::variance_type_name(c.variance_type) == loaded["variance_type"].get<std::string>());
  }
  if (c.scheduler_class == SchedulerClass::ddim || c.scheduler_class == SchedulerClass::pndm) {
    CHECK(c.set_alpha_to_one == loaded["set_alpha_to_one"].get<bool>());
  }
  if (c.scheduler_class == SchedulerClass::pndm) CHECK(c.skip_prk_steps == loaded["skip_prk_steps"].get<bool>());
  if (c.scheduler_class == SchedulerClass::dpm_solver_multistep) {
    CHECK(c.solver_order == loaded["solver_order"].get<int>());
    CHECK(algorithm_name(c.algorithm_type) == loaded["algorithm_type"].get<std::string>());
    CHECK((c.solver_type == ddpm::SolverType::heun) == (loaded["solver_type"].get<std::string>() == "heun"));
    CHECK(c.lower_order_final == loaded["lower_order_final"].get<bool>());
    CHECK(c.euler_at_final == loaded["euler_at_final"].get<bool>());
  }
  if (c.scheduler_class == SchedulerClass::unipc) {
    CHECK(c.solver_order == loaded["solver_order"].get<int>());
    CHECK(ddpm::unipc_solver_type_name(c.unipc_solver_type) == loaded["solver_type"].get<std::string>());
    CHECK(c.lower_order_final == loaded["lower_order_final"].get<bool>());
    CHECK(c.predict_x0 == loaded["predict_x0"].get<bool>());
    CHECK(c.disable_corrector == loaded["disable_corrector"].get<std::vector<int>>());
  }
  CHECK(c.use_karras_sigmas == (has("use_karras_sigmas") && loaded["use_karras_sigmas"].get<bool>()));
  CHECK(c.use_exponential_sigmas == (has("use_exponential_sigmas") && loaded["use_exponential_sigmas"].get<bool>()));
  const bool sigma_min = has("final_sigmas_type") && loaded["final_sigmas_type"].get<std::string>() == "sigma_min";
  CHECK((c.final_sigmas_type == ddpm::FinalSigma::sigma_min) == sigma_min);
}

template <class Sm>
std::vector<double> sigmas_of(const Sm& s) {
  if constexpr (requires { s.sigmas(); }) {
    return s.sigmas();
  } else {
    return {};
  }
}

std::vector<std::string> fixture_files() {
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(kDir)) {
    if (entry.path().extension() == ".json") files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

DiffusersSchedulerConfig parse(const std::string& text, const std::string& as_class = "") {
  return DiffusersSchedulerConfig::from_string(text, "test.json", as_class);
}

// The message of the ddpm::format_error `text` raises (as_class given or not).
std::string format_error_of(const std::string& text, const std::string& as_class = "") {
  try {
    (void)parse(text, as_class);
  } catch (const ddpm::format_error& e) {
    return e.what();
  }
  FAIL("no ddpm::format_error for " << text.substr(0, 200));
  return "";
}

}  // namespace

TEST_CASE("DiffusersSchedulerConfig: configs written by diffusers' save_config give diffusers' schedule, timesteps and sigmas",
          "[io][scheduler_config]") {
  const std::vector<std::string> files = fixture_files();
  REQUIRE(files.size() >= 40);
  std::map<SchedulerClass, int> per_class;
  for (const std::string& file : files) {
    const nlohmann::json fx = read_json(file);
    const std::string name = fx["name"].get<std::string>();
    INFO(name);
    const std::string load_as = fx["load_as"].get<std::string>();
    const std::string saved_by = fx["saved_by"].get<std::string>();
    // The file's own _class_name when diffusers loaded it with that class; else the class asked for.
    const DiffusersSchedulerConfig c = DiffusersSchedulerConfig::from_string(fx["config_text"].get<std::string>(), name,
                                                           load_as == saved_by ? "" : load_as);
    REQUIRE(kClasses.count(load_as) == 1);
    CHECK(c.class_name == load_as);
    CHECK(c.scheduler_class == kClasses.at(load_as));
    ++per_class[c.scheduler_class];
    if (load_as == saved_by) {
      CHECK(c.ignored_keys.empty());  // a class's own save_config writes only keys it takes
    } else {
      CHECK(!c.ignored_keys.empty());
    }
    check_loaded_values(c, fx["loaded"]);

    // The schedule: diffusers' float32 alphas_cumprod against ddpm's double one. Each float32 product
    // rounds once and each alpha = 1 - beta once (the zero-SNR rescale recomputes betas and multiplies
    // again): at most (4 t + 16) float32 units of relative error at index t; 2^-22 absolute covers the last
    // index, where diffusers' sigma-space classes hold 2^-24 for a zero alpha_bar.
    const auto schedule = c.schedule<double>();
    const std::vector<int> at = fx["alphas_cumprod_at"].get<std::vector<int>>();
    const std::vector<double> ab = fx["alphas_cumprod"].get<std::vector<double>>();
    const double u = std::ldexp(1.0, -24);
    for (std::size_t k = 0; k < at.size(); ++k) {
      if (at[k] >= schedule.num_train_timesteps()) continue;
      const double ours = schedule.alphas_cumprod_double()[static_cast<std::size_t>(at[k])];
      INFO("alphas_cumprod[" << at[k] << "] " << ours << " vs " << ab[k]);
      CHECK(std::abs(ours - ab[k]) <= (4.0 * at[k] + 16.0) * u * ab[k] + 4.0 * u);
    }

    const int n = fx["num_inference_steps"].get<int>();
    ddpm::io::AnySampler<double> sampler = c.make_sampler<double>(n);
    CHECK(ddpm::io::scheduler_class_of(sampler) == kClasses.at(load_as));

    // Timesteps: exact where diffusers' are integers; where diffusers interpolates a fractional timestep
    // from a sigma (Karras and exponential ramps, KDPM2's midpoints), ddpm calls the model with the nearest
    // integer (docs/samplers.md): within 0.5, plus 0.01 for diffusers' float32 log-sigma table.
    const std::vector<int> ts = std::visit([](const auto& s) { return s.timesteps(); }, sampler);
    // DPMSolverMultistepScheduler truncates its exponential ramp's timesteps to integers (its Karras branch
    // rounds); the fixture then holds the values before that cast, which ddpm rounds.
    const std::vector<double> ref_ts = fx["timesteps_unrounded"].is_null()
                                           ? fx["timesteps"].get<std::vector<double>>()
                                           : fx["timesteps_unrounded"].get<std::vector<double>>();
    REQUIRE(ts.size() == ref_ts.size());
    for (std::size_t i = 0; i < ts.size(); ++i) {
      INFO("timesteps[" << i << "] " << ts[i] << " vs diffusers " << ref_ts[i]);
      if (ref_ts[i] == std::floor(ref_ts[i])) {
        CHECK(ts[i] == static_cast<int>(ref_ts[i]));
      } else {
        CHECK(std::abs(ts[i] - ref_ts[i]) <= 0.51);
      }
    }

    // Sigmas (the N + 1 noise levels): diffusers derives them from its float32 alphas_cumprod and stores
    // them as float32. sigma = sqrt((1 - alpha_bar) / alpha_bar) has relative error
    // rho / (2 (1 - alpha_bar)) for a relative error rho of alpha_bar; with rho <= (4 t + 4) u (above) and
    // 1 - alpha_bar[t] >= (t + 1) beta_min, that is at most 2 u / beta_min, plus the ramps' and the final
    // float32 rounding: 8 u / beta_min + 4 u in all (6e-4 relative for beta_min = 1e-4; a wrong mapping, such
    // as another ramp, other ends or another final sigma, is off by far more). Zeros are exact.
    if (!fx["grid_sigmas"].is_null()) {
      const std::vector<double> ref = fx["grid_sigmas"].get<std::vector<double>>();
      const std::vector<double> sig = std::visit([](const auto& s) { return sigmas_of(s); }, sampler);
      REQUIRE(sig.size() == ref.size());
      const std::vector<double>& betas = schedule.betas_double();
      const double beta_min = *std::min_element(betas.begin(), betas.end());
      const double tol = 8.0 * u / beta_min + 4.0 * u;
      for (std::size_t i = 0; i < sig.size(); ++i) {
        INFO("sigmas[" << i << "] " << sig[i] << " vs diffusers " << ref[i] << ", tolerance " << tol);
        if (ref[i] == 0.0) {
          CHECK(sig[i] == 0.0);
        } else {
          CHECK(std::abs(sig[i] - ref[i]) <= tol * ref[i]);
        }
      }
    } else {
      CHECK((c.scheduler_class == SchedulerClass::ddpm || c.scheduler_class == SchedulerClass::ddim ||
             c.scheduler_class == SchedulerClass::pndm));
    }
  }
  // Every supported class has its fixtures.
  for (const auto& [name, id] : kClasses) {
    INFO(name);
    CHECK(per_class[id] >= 3);
  }
}

TEST_CASE("DiffusersSchedulerConfig: the variant runs under sample() as the sampler itself does", "[io][scheduler_config]") {
  const DiffusersSchedulerConfig c = DiffusersSchedulerConfig::from_string(
      R"({"_class_name": "DPMSolverMultistepScheduler", "beta_schedule": "scaled_linear", "beta_start": 0.00085,
          "beta_end": 0.012, "prediction_type": "v_prediction", "use_karras_sigmas": true})");
  ddpm::io::AnySampler<double> any = c.make_sampler<double>(6);
  ddpm::DPMSolverMultistepSampler<double> direct(c.schedule<double>(), c.dpm_solver_options(6));
  REQUIRE(std::holds_alternative<ddpm::DPMSolverMultistepSampler<double>>(any));
  CHECK(std::get<ddpm::DPMSolverMultistepSampler<double>>(any).sigmas() == direct.sigmas());
  // A model whose v-prediction depends on x and t, so that every step matters.
  auto model = ddpm::with_prediction(c.prediction_type, [](const ddpm::Tensor<double, 2>& x, int t) {
    ddpm::Tensor<double, 2> out = x * (0.3 + 1e-4 * t);
    return out;
  });
  ddpm::Tensor<double, 2> x_T(2, 3);
  x_T.setValues({{0.5, -1.0, 2.0}, {0.1, 0.0, -0.7}});
  int calls = 0;
  const ddpm::Tensor<double, 2> a =
      ddpm::sample(any, model, x_T, ddpm::no_noise, [&](int, int, const auto&, const auto&) { ++calls; });
  const ddpm::Tensor<double, 2> b = ddpm::sample(direct, model, x_T, ddpm::no_noise);
  const ddpm::Tensor<double, 2> a2 = ddpm::sample(any, model, x_T, ddpm::no_noise);
  CHECK(calls == 6);
  for (Eigen::Index k = 0; k < a.size(); ++k) {
    CHECK(a.data()[k] == b.data()[k]);
    CHECK(a2.data()[k] == b.data()[k]);
  }
}

TEST_CASE("DiffusersSchedulerConfig: keys a class does not take are ignored, as diffusers ignores them", "[io][scheduler_config]") {
  // Stable Diffusion 1.x's PNDMScheduler config read as Euler: skip_prk_steps, set_alpha_to_one and clip_sample
  // are not EulerDiscreteScheduler's, so they neither fail nor clip; unknown keys are ignored too.
  const std::string sd = R"({"_class_name": "PNDMScheduler", "_diffusers_version": "0.6.0", "beta_end": 0.012,
      "beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000, "set_alpha_to_one": false,
      "skip_prk_steps": true, "steps_offset": 1, "trained_betas": null, "clip_sample": false, "a_future_key": [1, 2]})";
  const DiffusersSchedulerConfig e = parse(sd, "EulerDiscreteScheduler");
  CHECK(e.class_name == "EulerDiscreteScheduler");
  CHECK(e.diffusers_version == "0.6.0");
  CHECK(e.ignored_keys == std::vector<std::string>{"a_future_key", "clip_sample", "set_alpha_to_one", "skip_prk_steps"});
  CHECK(e.clipping().mode == ddpm::Clipping::Mode::none);
  CHECK(e.timestep_spacing == ddpm::TimestepSpacing::linspace);  // the class's default
  CHECK(e.steps_offset == 1);
  const DiffusersSchedulerConfig d = parse(sd, "DDIMScheduler");
  CHECK(d.ignored_keys == std::vector<std::string>{"a_future_key", "skip_prk_steps"});
  CHECK(!d.set_alpha_to_one);
  DiffusersSchedulerConfig dd = d;
  dd.ddim_previous_timestep = ddpm::PreviousTimestep::diffusers;
  const auto ddim = dd.make_sampler<double>(10);
  REQUIRE(std::holds_alternative<ddpm::DDIMSampler<double>>(ddim));
  CHECK(std::get<ddpm::DDIMSampler<double>>(ddim).options().previous_timestep == ddpm::PreviousTimestep::diffusers);
  CHECK(!std::get<ddpm::DDIMSampler<double>>(ddim).options().use_clipped_model_output);
  CHECK(d.clipping().mode == ddpm::Clipping::Mode::none);
  CHECK(d.timestep_spacing == ddpm::TimestepSpacing::leading);
  // Without the file's clip_sample, DDIMScheduler's default clips to [-1, 1].
  CHECK(parse(R"({"_class_name": "DDIMScheduler"})").clipping().mode == ddpm::Clipping::Mode::clip);
  // _use_default_values: those keys keep the class default (diffusers' extract_init_dict).
  const DiffusersSchedulerConfig u = parse(R"({"_class_name": "DDIMScheduler", "clip_sample": false, "steps_offset": 1,
                                      "_use_default_values": ["clip_sample"]})");
  CHECK(u.clip_sample);
  CHECK(u.steps_offset == 1);
  // Python's -Infinity (lambda_min_clipped, as save_config writes it) and the classes' own defaults.
  const DiffusersSchedulerConfig p = parse(R"({"_class_name": "DPMSolverMultistepScheduler", "lambda_min_clipped": -Infinity,
                                      "solver_type": "logrho", "algorithm_type": "deis", "variance_type": null})");
  CHECK(p.solver_type == ddpm::SolverType::midpoint);
  CHECK(p.algorithm_type == ddpm::DPMSolverAlgorithm::dpmsolver_pp);
  CHECK(p.timestep_spacing == ddpm::TimestepSpacing::linspace);
  // google/ddpm-cifar10-32's DDPMScheduler config read as DPM-Solver: its variance_type "fixed_large" is a key
  // DPMSolverMultistepScheduler takes but only acts on for "learned" / "learned_range": no effect, no error.
  const DiffusersSchedulerConfig v = parse(R"({"_class_name": "DDPMScheduler", "variance_type": "fixed_large", "clip_sample": true})",
                                  "DPMSolverMultistepScheduler");
  CHECK(v.ignored_keys == std::vector<std::string>{"clip_sample"});
  CHECK(v.clipping().mode == ddpm::Clipping::Mode::none);
  CHECK_THROWS_AS(parse(R"({"_class_name": "DPMSolverMultistepScheduler", "variance_type": 3})"), ddpm::format_error);
  const DiffusersSchedulerConfig h = DiffusersSchedulerConfig::defaults("HeunDiscreteScheduler");
  CHECK(h.beta_start == 0.00085);
  CHECK(h.beta_end == 0.012);
  CHECK(h.beta_schedule == "linear");
  CHECK(!DiffusersSchedulerConfig::defaults("PNDMScheduler").set_alpha_to_one);
  CHECK(parse(R"({"_class_name": "DPMSolverSDEScheduler", "noise_sampler_seed": 42})").noise_sampler_seed == 42);
  CHECK(ddpm::io::supported_scheduler_classes().size() == kClasses.size());
  // Euler's sigma_min / sigma_max are used only by a ramp: accepted (unused) without one.
  CHECK_NOTHROW(parse(R"({"_class_name": "EulerDiscreteScheduler", "sigma_min": 0.1, "sigma_max": 10})"));
  CHECK(DiffusersSchedulerConfig::class_keys("LMSDiscreteScheduler").size() == 11);
}

TEST_CASE("DiffusersSchedulerConfig: what ddpm does not implement and hostile files are refused by name",
          "[io][scheduler_config]") {
  auto has = [](const std::string& message, std::initializer_list<const char*> parts) {
    INFO(message);
    for (const char* p : parts) CHECK(message.find(p) != std::string::npos);
    CHECK(message.size() < 1200);
  };
  // Classes.
  has(format_error_of(R"({"_class_name": "DEISMultistepScheduler"})"),
      {"test.json", "DEISMultistepScheduler", "DDIMScheduler", "KDPM2AncestralDiscreteScheduler", "PNDMScheduler"});
  has(format_error_of(R"({"beta_start": 0.001})"), {"_class_name", "EulerDiscreteScheduler"});
  has(format_error_of(R"({"_class_name": ["FlaxDDIMScheduler"]})"), {"_class_name", "string"});
  REQUIRE_THROWS_AS(parse("{}", "UniPCScheduler"), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(DiffusersSchedulerConfig::defaults("X"), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(DiffusersSchedulerConfig::class_keys("X"), ddpm::invalid_argument);
  // Options ddpm does not implement: the key, the value and what is supported.
  const std::string dpm = R"({"_class_name": "DPMSolverMultistepScheduler", )";
  has(format_error_of(dpm + R"("solver_order": 4})"), {"solver_order", "4", "[1, 3]"});
  has(format_error_of(dpm + R"("algorithm_type": "dpmsolver+++"})"), {"algorithm_type", "dpmsolver+++", "\"sde-dpmsolver\""});
  has(format_error_of(dpm + R"("algorithm_type": "dpmsolver"})"), {"algorithm_type", "dpmsolver", "sigma_min"});
  has(format_error_of(dpm + R"("algorithm_type": "sde-dpmsolver", "solver_order": 3, "final_sigmas_type": "sigma_min"})"),
      {"solver_order", "sde-dpmsolver"});
  const std::string unipc = R"({"_class_name": "UniPCMultistepScheduler", )";
  has(format_error_of(unipc + R"("solver_p": {"_class_name": "DPMSolverMultistepScheduler"}})"), {"solver_p", "null"});
  has(format_error_of(unipc + R"("shift_terminal": 0.1})"), {"shift_terminal", "0.1"});
  has(format_error_of(unipc + R"("solver_type": "bh3"})"), {"solver_type", "bh3", "\"bh2\""});
  has(format_error_of(unipc + R"("disable_corrector": [1, "2"]})"), {"disable_corrector"});
  CHECK(parse(unipc + R"("disable_corrector": [-1, 3], "solver_type": "midpoint"})").disable_corrector == std::vector<int>{3});
  CHECK(parse(unipc + R"("solver_type": "logrho"})").unipc_solver_type == ddpm::UniPCSolverType::bh2);
  has(format_error_of(dpm + R"("use_beta_sigmas": true})"), {"use_beta_sigmas", "true", "false"});
  has(format_error_of(dpm + R"("use_lu_lambdas": true})"), {"use_lu_lambdas"});
  has(format_error_of(dpm + R"("lambda_min_clipped": -5.1})"), {"lambda_min_clipped", "-5.1", "-Infinity"});
  has(format_error_of(dpm + R"("prediction_type": "flow_prediction"})"), {"prediction_type", "flow_prediction", "v_prediction"});
  has(format_error_of(dpm + R"("use_karras_sigmas": true, "use_exponential_sigmas": true})"),
      {"use_karras_sigmas", "use_exponential_sigmas"});
  has(format_error_of(R"({"_class_name": "DDPMScheduler", "variance_type": "learned"})"),
      {"variance_type", "learned", "fixed_small", "learned_range"});
  has(format_error_of(R"({"_class_name": "DDIMScheduler", "beta_schedule": "sigmoid"})"), {"beta_schedule", "sigmoid", "DDPMScheduler only"});
  has(format_error_of(R"({"_class_name": "EulerDiscreteScheduler", "timestep_type": "continuous"})"), {"timestep_type", "continuous"});
  has(format_error_of(R"({"_class_name": "EulerDiscreteScheduler", "interpolation_type": "log_linear"})"), {"interpolation_type"});
  has(format_error_of(R"({"_class_name": "EulerDiscreteScheduler", "use_karras_sigmas": true, "sigma_min": 0.1})"),
      {"sigma_min", "0.1", "karras"});
  has(format_error_of(R"({"_class_name": "EulerDiscreteScheduler", "timestep_spacing": "uniform"})"),
      {"timestep_spacing", "uniform", "trailing"});
  // Values of the wrong type or outside their range: checked integers, never wrapped.
  const std::string ddim = R"({"_class_name": "DDIMScheduler", )";
  const std::vector<std::pair<std::string, std::string>> bad_integers = {
      {"0", "0"},         {"-1", "-1"},         {"2.5", "2.5"},
      {"1e30", "1e+30"},  {"\"1000\"", "\"1000\""}, {"18446744073709551615", "18446744073709551615"},
      {"1048577", "1048577"}, {"true", "true"}, {"null", "null"}};
  for (const auto& [text, shown] : bad_integers) {
    has(format_error_of(ddim + "\"num_train_timesteps\": " + text + "}"),
        {"num_train_timesteps", shown.c_str(), "[1, 1048576]"});
  }
  has(format_error_of(ddim + R"("steps_offset": -1})"), {"steps_offset", "-1"});
  has(format_error_of(ddim + R"("beta_start": 2.0})"), {"beta_start", "2"});
  has(format_error_of(ddim + R"("beta_end": NaN})"), {"beta_end"});
  has(format_error_of(ddim + R"("beta_start": "0.001"})"), {"beta_start", "must be a number"});
  has(format_error_of(ddim + R"("clip_sample": true, "clip_sample_range": -1})"), {"clip_sample_range", "-1"});
  has(format_error_of(ddim + R"("thresholding": true, "dynamic_thresholding_ratio": 1.5})"), {"dynamic_thresholding_ratio", "1.5"});
  has(format_error_of(ddim + R"("trained_betas": [0.1, 0.2]})"), {"trained_betas", "2 values", "1000"});
  has(format_error_of(ddim + R"("num_train_timesteps": 2, "trained_betas": [0.1, "x"]})"), {"trained_betas"});
  has(format_error_of(ddim + R"("prediction_type": ")" + std::string(5000, 'x') + "\"}"), {"prediction_type", "..."});
  has(format_error_of(ddim + R"("clip_sample": 1})"), {"clip_sample", "true or false"});
  // Text: not JSON, not an object, nested too deep (a million levels refused before parsing, no recursion).
  has(format_error_of("{\"_class_name\": "), {"test.json", "not valid JSON"});
  has(format_error_of("[1, 2]"), {"must be a JSON object"});
  has(format_error_of(std::string(1000000, '[') + std::string(1000000, ']')), {"nests deeper than"});
  has(format_error_of(ddim + R"("x": [[[[[[[[1]]]]]]]]})"), {"nests deeper than"});
  nlohmann::json deep = 1;
  for (int k = 0; k < 20; ++k) deep = nlohmann::json::array({deep});
  REQUIRE_THROWS_AS(DiffusersSchedulerConfig::from_json(nlohmann::json{{"_class_name", "DDIMScheduler"}, {"x", deep}}), ddpm::format_error);
  REQUIRE_THROWS_AS(DiffusersSchedulerConfig::from_file((kDir / "no_such_file.json").string()), ddpm::format_error);
  // The sampler's own preconditions at make_sampler: N outside [1, T], a leading offset past T.
  const DiffusersSchedulerConfig c = parse(ddim + R"("num_train_timesteps": 100, "steps_offset": 5})");
  REQUIRE_THROWS_AS(c.make_sampler<float>(0), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(c.make_sampler<float>(101), ddpm::invalid_argument);
  REQUIRE_THROWS_AS(c.make_sampler<float>(100), ddpm::invalid_argument);  // starts at 99 + 5
  CHECK_NOTHROW(c.make_sampler<float>(10));
}
