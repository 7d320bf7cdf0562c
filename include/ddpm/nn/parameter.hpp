// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// Parameter: a named, shaped view of one weight tensor of a layer, under the name and the shape that
// PyTorch's state_dict (and so a diffusers safetensors file) gives it. Every layer lists its parameters
// with for_each_parameter(prefix, f); a model's list is the concatenation, in the order diffusers
// registers its modules. On a mutable layer the pointers are writable and the call counts as a change of
// the weights (call prepare() before the next pass); on a const layer it lists Parameter<const S>.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ddpm/error.hpp"

namespace ddpm::nn {

template <class S>
struct Parameter {
  std::string name;                  ///< e.g. "down_blocks.0.resnets.1.conv1.weight"
  std::vector<std::int64_t> shape;   ///< PyTorch's shape, e.g. {out, in, 3, 3}
  S* data = nullptr;                 ///< row-major (C order) storage of the layer

  std::int64_t numel() const {
    std::int64_t n = 1;
    for (std::int64_t d : shape) n *= d;
    return n;
  }
};

/// Visits the parameters of layers[0], layers[1], ... under the names prefix + "0.", prefix + "1.", ...
/// (a PyTorch ModuleList's names).
template <class Layers, class F>
void for_each_indexed_parameter(Layers& layers, const std::string& prefix, F& f) {
  for (std::size_t i = 0; i < layers.size(); ++i) layers[i].for_each_parameter(prefix + ddpm::detail::number_string(i) + ".", f);
}

/// The parameters of any layer or model, in order. With a mutable layer (S not const) this is a change of
/// its weights (the layers bump their weights version); parameters_of<const S>(const_layer) is not.
template <class S, class Layer>
std::vector<Parameter<S>> parameters_of(Layer& layer, const std::string& prefix = "") {
  std::vector<Parameter<S>> out;
  layer.for_each_parameter(prefix, [&](Parameter<S> p) { out.push_back(std::move(p)); });
  return out;
}

/// Sets every parameter of a layer or model to zero (zero_grad of a gradients object, which accumulates).
template <class S, class Layer>
void zero_parameters(Layer& layer) {
  layer.for_each_parameter("", [](const Parameter<S>& p) { std::fill_n(p.data, p.numel(), S(0)); });
}

/// The gradients of a layer or model, laid out as its parameters: a copy of it with every parameter zero,
/// so that for_each_parameter lists the same names and shapes in the same order (an optimiser walks
/// parameters_of(model) and parameters_of(grads) side by side). Every layer's gradient_like() is this.
template <class S, class Layer>
Layer zeros_like(const Layer& layer) {
  Layer g = layer;
  zero_parameters<S>(g);
  return g;
}

/// Number of scalars in a layer or model.
/// (Read-only: a const layer's for_each_parameter, which is not a change of the weights.)
template <class S, class Layer>
std::int64_t parameter_count(const Layer& layer) {
  std::int64_t n = 0;
  layer.for_each_parameter("", [&](const Parameter<const S>& p) { n += p.numel(); });
  return n;
}

}  // namespace ddpm::nn
