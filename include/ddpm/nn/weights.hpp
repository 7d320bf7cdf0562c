// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// Loading a layer's (or a whole model's) parameters from a safetensors file by name, as diffusers writes
// them, and saving them back. F16, BF16, F32 and F64 tensors convert to the model's scalar on load.
// Attention parameters are also found under the names of older diffusers files (query, key, value,
// proj_attn for to_q, to_k, to_v, to_out.0).

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "ddpm/error.hpp"
#include "ddpm/io/safetensors.hpp"
#include "ddpm/nn/parameter.hpp"
#include "ddpm/tensor.hpp"

namespace ddpm::nn {

/// The name an attention parameter had in files written before diffusers 0.15 (the same name when it has
/// no older form): "x.attentions.0.to_q.weight" -> "x.attentions.0.query.weight", likewise to_k -> key,
/// to_v -> value, to_out.0 -> proj_attn.
inline std::string legacy_attention_name(const std::string& name) {
  static const std::array<std::pair<const char*, const char*>, 4> renames = {
      {{".to_q.", ".query."}, {".to_k.", ".key."}, {".to_v.", ".value."}, {".to_out.0.", ".proj_attn."}}};
  if (name.find("attentions.") == std::string::npos) return name;
  for (const auto& [current, old] : renames) {
    const std::size_t at = name.rfind(current);
    if (at != std::string::npos) return name.substr(0, at) + old + name.substr(at + std::string(current).size());
  }
  return name;
}

namespace detail {
inline std::string name_list(const std::vector<std::string>& names) {
  constexpr std::size_t kShown = 12;
  std::string s;
  for (std::size_t i = 0; i < names.size() && i < kShown; ++i) s += (i ? ", " : "") + names[i];
  if (names.size() > kShown) s += ", and " + ddpm::detail::number_string(names.size() - kShown) + " more";
  return s;
}
}  // namespace detail

/// Fills every parameter of `layer` from `file`, converting to S. Each parameter is looked up under its
/// name, then under its legacy_attention_name.
/// Throws ddpm::format_error, naming every offending tensor, if a parameter is missing, the file holds a
/// tensor the layer does not have, a shape differs, or a tensor is not F16, BF16, F32 or F64; the layer
/// is then left unchanged.
template <class S, class Layer>
void load_weights(Layer& layer, const io::Safetensors& file) {
  std::vector<Parameter<S>> params = parameters_of<S>(layer);
  std::map<std::string, bool> used;
  for (const std::string& n : file.names()) used[n] = false;
  std::vector<std::string> missing, mismatched;
  std::vector<std::string> source(params.size());
  for (std::size_t i = 0; i < params.size(); ++i) {
    const Parameter<S>& p = params[i];
    std::string name = p.name;
    if (!file.contains(name)) name = legacy_attention_name(p.name);
    if (!file.contains(name)) {
      missing.push_back(p.name);
      continue;
    }
    used[name] = true;
    const io::TensorInfo& info = file.info(name);
    if (info.shape != p.shape) {
      mismatched.push_back(name + " has shape " + ddpm::detail::shape_string(info.shape) +
                           " in the file, but the model needs " + ddpm::detail::shape_string(p.shape));
    } else if (!io::is_floating_point(info.dtype)) {
      mismatched.push_back(name + " has dtype " + std::string(io::dtype_name(info.dtype)) +
                           ", but must be F16, BF16, F32 or F64");
    } else {
      source[i] = name;
    }
  }
  std::vector<std::string> unexpected;
  for (const auto& [name, was_used] : used) {
    if (!was_used) unexpected.push_back(name);
  }
  if (!missing.empty() || !unexpected.empty() || !mismatched.empty()) {
    std::string msg = "ddpm::nn::load_weights: " + file.source() + " does not match the model:";
    if (!missing.empty()) msg += " " + ddpm::detail::number_string(missing.size()) + " missing: " + detail::name_list(missing) + ";";
    if (!unexpected.empty()) {
      msg += " " + ddpm::detail::number_string(unexpected.size()) + " unexpected: " + detail::name_list(unexpected) + ";";
    }
    if (!mismatched.empty()) {
      msg += " " + ddpm::detail::number_string(mismatched.size()) + " mismatched: " + detail::name_list(mismatched) + ";";
    }
    msg.pop_back();
    ddpm::detail::throw_format_error(msg);
  }
  for (std::size_t i = 0; i < params.size(); ++i) {
    const std::vector<S> values = file.to_vector<S>(source[i]);
    std::copy(values.begin(), values.end(), params[i].data);
  }
}

/// Writes every parameter of `layer` to a safetensors file at `path` under its (current) name, converted
/// to dtype (F16 and BF16 round to nearest even), with metadata {"format": "pt"} as diffusers writes.
/// Throws ddpm::invalid_argument for a dtype that is not floating point, ddpm::format_error (from the
/// writer) if the file cannot be written.
template <class S, class Layer>
void save_weights(Layer& layer, const std::string& path, io::DType dtype = io::DType::F32) {
  io::SafetensorsWriter writer;
  writer.set_metadata("format", "pt");
  for (const Parameter<S>& p : parameters_of<S>(layer)) {
    const auto d = [&](std::size_t i) { return static_cast<Eigen::Index>(p.shape[i]); };
    switch (p.shape.size()) {
      case 1: writer.add(p.name, ConstTensorMap<S, 1>(p.data, d(0)), dtype); break;
      case 2: writer.add(p.name, ConstTensorMap<S, 2>(p.data, d(0), d(1)), dtype); break;
      case 3: writer.add(p.name, ConstTensorMap<S, 3>(p.data, d(0), d(1), d(2)), dtype); break;
      case 4: writer.add(p.name, ConstTensorMap<S, 4>(p.data, d(0), d(1), d(2), d(3)), dtype); break;
      default:
        ddpm::detail::throw_invalid_argument("ddpm::nn::save_weights: parameter " + p.name + " has rank " +
                                             ddpm::detail::number_string(p.shape.size()) + ", but must have rank 1 to 4");
    }
  }
  writer.save(path);
}

}  // namespace ddpm::nn
