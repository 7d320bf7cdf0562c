// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// save_pretrained: a UNet2D written as diffusers' UNet2DModel.save_pretrained writes it (config.json and
// diffusion_pytorch_model.safetensors in a folder), and the DDPMScheduler config of the schedule it was
// trained with (scheduler_config.json), so that diffusers' from_pretrained loads what ddpm trained.
//                                                          [docs/training.md, "Training a UNet"]

#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "ddpm/error.hpp"
#include "ddpm/nn/config.hpp"
#include "ddpm/nn/unet2d.hpp"

namespace ddpm::nn {

/// The diffusers version written into "_diffusers_version" (the one whose configs tests/data was made with).
inline constexpr const char* kDiffusersVersion = "0.30.0";

/// A UNet2DModel config.json as diffusers writes it: every key of UNet2DModel's config (nulls included),
/// "_class_name": "UNet2DModel" and "_diffusers_version".
inline nlohmann::json unet_config_json(const UNet2DConfig& config) {
  nlohmann::json j = config.to_json();
  j["_class_name"] = "UNet2DModel";
  j["_diffusers_version"] = kDiffusersVersion;
  return j;
}

/// The schedule a model was trained with, as a DDPMScheduler config describes it.
struct SchedulerConfig {
  int num_train_timesteps = 1000;
  std::string beta_schedule = "linear";  ///< "linear", "scaled_linear", "squaredcos_cap_v2" or "sigmoid"
  double beta_start = 1e-4;
  double beta_end = 0.02;
  std::string prediction_type = "epsilon";  ///< "epsilon", "sample" or "v_prediction"
  std::string variance_type = "fixed_small";
  bool clip_sample = true;
  double clip_sample_range = 1.0;
  std::string timestep_spacing = "leading";
  int steps_offset = 0;
};

/// A DDPMScheduler scheduler_config.json: every key of DDPMScheduler's config in diffusers 0.30
/// (trained_betas null, thresholding off at diffusers' defaults, rescale_betas_zero_snr false).
inline nlohmann::json scheduler_config_json(const SchedulerConfig& s) {
  nlohmann::json j;
  j["_class_name"] = "DDPMScheduler";
  j["_diffusers_version"] = kDiffusersVersion;
  j["beta_end"] = s.beta_end;
  j["beta_schedule"] = s.beta_schedule;
  j["beta_start"] = s.beta_start;
  j["clip_sample"] = s.clip_sample;
  j["clip_sample_range"] = s.clip_sample_range;
  j["dynamic_thresholding_ratio"] = 0.995;
  j["num_train_timesteps"] = s.num_train_timesteps;
  j["prediction_type"] = s.prediction_type;
  j["rescale_betas_zero_snr"] = false;
  j["sample_max_value"] = 1.0;
  j["steps_offset"] = s.steps_offset;
  j["thresholding"] = false;
  j["timestep_spacing"] = s.timestep_spacing;
  j["trained_betas"] = nullptr;
  j["variance_type"] = s.variance_type;
  return j;
}

namespace detail {
inline void write_json_file(const std::string& fn, const std::string& path, const nlohmann::json& j) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) ddpm::detail::throw_format_error(fn + ": cannot write " + path);
  out << j.dump(2) << "\n";  // diffusers: json.dumps(indent=2, sort_keys=True) + "\n" (nlohmann sorts keys)
  if (!out) ddpm::detail::throw_format_error(fn + ": cannot write " + path);
}
}  // namespace detail

/// Writes dir/config.json and dir/diffusion_pytorch_model.safetensors (F32, or `dtype`), creating dir if
/// needed, as diffusers' UNet2DModel.save_pretrained does; UNet2D::from_pretrained(dir) reads it back.
/// Throws ddpm::format_error if the folder or a file cannot be written.
template <std::floating_point S>
void save_pretrained(UNet2D<S>& model, const std::string& dir, io::DType dtype = io::DType::F32) {
  const std::string fn = "ddpm::nn::save_pretrained";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (!std::filesystem::is_directory(dir)) ddpm::detail::throw_format_error(fn + ": cannot create " + dir);
  detail::write_json_file(fn, dir + "/config.json", unet_config_json(model.config()));
  model.save_weights(dir + "/diffusion_pytorch_model.safetensors", dtype);
}

/// Writes dir/scheduler_config.json (a DDPMScheduler config), creating dir if needed.
/// Throws ddpm::format_error if the folder or the file cannot be written.
inline void save_scheduler_config(const SchedulerConfig& s, const std::string& dir) {
  const std::string fn = "ddpm::nn::save_scheduler_config";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (!std::filesystem::is_directory(dir)) ddpm::detail::throw_format_error(fn + ": cannot create " + dir);
  detail::write_json_file(fn, dir + "/scheduler_config.json", scheduler_config_json(s));
}

}  // namespace ddpm::nn
