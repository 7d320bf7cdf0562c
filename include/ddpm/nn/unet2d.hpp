// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// UNet2D: a diffusers UNet2DModel in C++, built from its config.json and loaded from its
// diffusion_pytorch_model.safetensors. It predicts epsilon and is a ddpm Predictor: model(x_t, t).
//
//   auto model = ddpm::nn::UNet2D<float>::from_pretrained("ddpm-cifar10-32");
//   model.set_num_threads(2);                       // opt-in: Eigen's thread pool
//   ddpm::Tensor<float, 4> eps = model(x_t, 999);   // x_t: [N, 3, 32, 32]

#include <algorithm>
#include <concepts>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include "ddpm/error.hpp"
#include "ddpm/io/safetensors.hpp"
#include "ddpm/nn/activation.hpp"
#include "ddpm/nn/config.hpp"
#include "ddpm/nn/context.hpp"
#include "ddpm/nn/conv2d.hpp"
#include "ddpm/nn/feature_map.hpp"
#include "ddpm/nn/group_norm.hpp"
#include "ddpm/nn/parameter.hpp"
#include "ddpm/nn/timestep_embedding.hpp"
#include "ddpm/nn/unet_blocks.hpp"
#include "ddpm/nn/weights.hpp"
#include "ddpm/tensor.hpp"

namespace ddpm::nn {

template <std::floating_point S>
class UNet2D {
 public:
  using Matrix = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

  /// The network of `config` with PyTorch's neutral initial values (zero weights and biases, norms at
  /// weight 1): load weights with load_weights() or fill parameters() yourself.
  /// Throws ddpm::invalid_argument if the config is not supported (see UNet2DConfig::validate).
  explicit UNet2D(UNet2DConfig config) : config_(std::move(config)) {
    config_.validate();
    build();
  }

  /// dir/config.json and dir/diffusion_pytorch_model.safetensors, as diffusers' save_pretrained writes them.
  /// Throws ddpm::format_error if a file cannot be read, the config is not supported (the message lists
  /// what is), or the weights do not match the config (every missing, unexpected or misshapen tensor is
  /// named).
  static UNet2D from_pretrained(const std::string& dir) {
    UNet2D model(UNet2DConfig::from_file(dir + "/config.json"));
    model.load_weights(dir + "/diffusion_pytorch_model.safetensors");
    return model;
  }

  /// Loads every parameter from a safetensors file (F16, BF16, F32 or F64, converted to S).
  /// Throws ddpm::format_error as load_weights(layer, file) does; the model is then left unchanged.
  void load_weights(const std::string& path) { nn::load_weights<S>(*this, io::Safetensors::load(path)); }
  void load_weights(const io::Safetensors& file) { nn::load_weights<S>(*this, file); }

  /// Writes the parameters as diffusers names them (a diffusion_pytorch_model.safetensors).
  void save_weights(const std::string& path, io::DType dtype = io::DType::F32) {
    nn::save_weights<S>(*this, path, dtype);
  }

  const UNet2DConfig& config() const { return config_; }

  /// Threads of the forward pass (1, the default, runs on the caller's thread). Throws
  /// ddpm::invalid_argument if n < 1.
  void set_num_threads(int n) { ctx_->set_num_threads(n); }
  int num_threads() const { return ctx_->num_threads(); }

  /// Every parameter, named and shaped as in diffusers' state_dict.
  std::vector<Parameter<S>> parameters() { return parameters_of<S>(*this); }
  /// The number of scalar parameters.
  std::int64_t num_parameters() { return parameter_count<S>(*this); }

  /// eps_theta(x, t) for a batch x [N, in_channels, H, W] at one timestep t for all images.
  /// H and W must be multiples of 2^(levels - 1). Throws ddpm::invalid_argument if x has the wrong channel
  /// count or size, or is empty.
  template <DenseTensor X>
  Tensor<S, 4> operator()(const X& x, int t) {
    const double td = t;
    Tensor<S, 4> out;
    forward(x, std::span<const double>(&td, 1), out);
    return out;
  }

  /// eps_theta(x, t) with one timestep per image (t.size() == N).
  template <DenseTensor X>
  Tensor<S, 4> operator()(const X& x, std::span<const int> t) {
    timesteps_.assign(t.begin(), t.end());
    Tensor<S, 4> out;
    forward(x, std::span<const double>(timesteps_), out);
    return out;
  }

  /// The general form, into `out` (a Tensor is resized, a map must have the shape [N, out_channels, H, W]):
  /// t holds one timestep for the batch or one per image, and may be fractional.   [docs/unet.md, "Forward"]
  /// Nothing is allocated once a pass at this batch size has run (when out is already the right size).
  /// Throws ddpm::invalid_argument for a wrong input shape or timestep count, or a timestep that is not
  /// finite.
  template <DenseTensor X, MutableDenseTensor Out>
  void forward(const X& x, std::span<const double> t, Out&& out) {
    static_assert(rank_v<X> == 4, "ddpm::nn::UNet2D: the input must be an NCHW tensor");
    static_assert(std::is_same_v<scalar_t<X>, S> && std::is_same_v<scalar_t<Out>, S>,
                  "ddpm::nn::UNet2D: tensors must have the model's scalar type");
    const Eigen::Index N = x.dimension(0), H = x.dimension(2), W = x.dimension(3);
    check_input(x, t);
    Context<S>& ctx = *ctx_;
    // 1. time: the embedding of every image's timestep, the MLP, and its activation (shared by all blocks)
    if (t.size() == 1 && N > 1) {
      timesteps_broadcast_.assign(static_cast<std::size_t>(N), t[0]);
      t = std::span<const double>(timesteps_broadcast_);
    }
    sinusoidal_embedding_into(t, config_.block_out_channels.front(), config_.flip_sin_to_cos, config_.freq_shift,
                              t_emb_);
    time_embedding_.forward(t_emb_, temb_, temb_hidden_);
    apply_activation(act_, temb_.data(), temb_.size());
    // 2. conv_in
    Feature<S> input = make_feature(ctx, config_.in_channels, N, H, W);
    nchw_to_channel_major(x, input.view(), config_.center_input_sample);
    Feature<S> h0 = make_feature(ctx, conv_in_.out_channels(), N, H, W);
    conv_in_.forward(ctx, input.cview(), h0.view());
    input = Feature<S>{};
    // 3. down: every intermediate state goes onto the skip stack
    skips_.clear();
    skips_.push_back(std::move(h0));
    for (const DownBlock2D<S>& block : down_blocks_) block.forward(ctx, skips_.back().cview(), temb_, skips_);
    // 4. mid
    Feature<S> h;
    if (mid_block_) {
      h = mid_block_->forward(ctx, skips_.back().cview(), temb_);
    } else {
      h = std::move(skips_.back());
      skips_.pop_back();
      skips_.push_back(copy_of(ctx, h.cview()));
    }
    // 5. up: each block pops its skip states
    for (const UpBlock2D<S>& block : up_blocks_) h = block.forward(ctx, h.cview(), temb_, skips_);
    // 6. out: conv_out(silu(conv_norm_out(h)))
    conv_norm_out_.forward(ctx, h.cview(), h.view(), Activation::silu);
    Feature<S> y = make_feature(ctx, config_.out_channels, N, H, W);
    conv_out_.forward(ctx, h.cview(), y.view());
    channel_major_to_nchw<S>(y.cview(), out);
    skips_.clear();
  }

  /// Scratch memory held between passes, and how many blocks of it were allocated so far (constant in
  /// the steady state).
  std::size_t scratch_bytes() const { return ctx_->scratch_bytes(); }
  std::size_t scratch_allocations() const { return ctx_->allocations(); }

  template <class F>
  void for_each_parameter(const std::string& prefix, F&& f) {
    conv_in_.for_each_parameter(prefix + "conv_in.", f);
    time_embedding_.for_each_parameter(prefix + "time_embedding.", f);
    for_each_indexed_parameter(down_blocks_, prefix + "down_blocks.", f);
    if (mid_block_) mid_block_->for_each_parameter(prefix + "mid_block.", f);
    for_each_indexed_parameter(up_blocks_, prefix + "up_blocks.", f);
    conv_norm_out_.for_each_parameter(prefix + "conv_norm_out.", f);
    conv_out_.for_each_parameter(prefix + "conv_out.", f);
  }

 private:
  void build() {
    const UNet2DConfig& c = config_;
    const std::vector<int>& ch = c.block_out_channels;
    const Eigen::Index levels = static_cast<Eigen::Index>(ch.size());
    act_ = parse_activation(c.act_fn);
    BlockOptions o;
    o.temb_channels = c.temb_channels();
    o.groups = c.norm_num_groups;
    o.eps = c.norm_eps;
    o.act = act_;
    o.time_norm = c.resnet_time_scale_shift == "scale_shift" ? TimeEmbeddingNorm::scale_shift
                                                             : TimeEmbeddingNorm::additive;
    conv_in_ = Conv2d<S>(c.in_channels, ch[0], 3, 1, 1);
    time_embedding_ = TimestepEmbedding<S>(ch[0], o.temb_channels);
    Eigen::Index out = ch[0];
    for (Eigen::Index i = 0; i < levels; ++i) {
      const Eigen::Index in = out;
      out = ch[i];
      const bool attention = c.down_block_types[i] == "AttnDownBlock2D";
      down_blocks_.emplace_back(attention, c.layers_per_block, in, out, i < levels - 1, o,
                                c.attention_head_dim.value_or(static_cast<int>(out)), c.downsample_padding);
    }
    if (c.mid_block_type) {
      std::optional<Eigen::Index> attn_groups;
      if (c.attn_norm_num_groups) {
        attn_groups = *c.attn_norm_num_groups;
      } else if (o.time_norm == TimeEmbeddingNorm::additive) {
        attn_groups = c.norm_num_groups;
      }
      mid_block_ = UNetMidBlock2D<S>(ch.back(), o, c.mid_block_scale_factor, c.add_attention,
                                     c.attention_head_dim.value_or(ch.back()), attn_groups);
    }
    out = ch.back();
    for (Eigen::Index i = 0; i < levels; ++i) {
      const Eigen::Index prev = out;
      out = ch[levels - 1 - i];
      const Eigen::Index in = ch[std::max<Eigen::Index>(levels - 2 - i, 0)];
      const bool attention = c.up_block_types[i] == "AttnUpBlock2D";
      up_blocks_.emplace_back(attention, c.layers_per_block + 1, in, prev, out, i < levels - 1, o,
                              c.attention_head_dim.value_or(static_cast<int>(out)));
    }
    conv_norm_out_ = GroupNorm<S>(c.norm_num_groups, ch[0], c.norm_eps);
    conv_out_ = Conv2d<S>(ch[0], c.out_channels, 3, 1, 1);
  }

  template <DenseTensor X>
  void check_input(const X& x, std::span<const double> t) const {
    const Eigen::Index N = x.dimension(0), H = x.dimension(2), W = x.dimension(3);
    const Eigen::Index factor = Eigen::Index{1} << (config_.block_out_channels.size() - 1);
    if (N < 1 || x.dimension(1) != config_.in_channels || H < 1 || W < 1 || H % factor != 0 || W % factor != 0) {
      ddpm::detail::throw_invalid_argument(
          "ddpm::nn::UNet2D: x has shape " + ddpm::detail::shape_string(x) + ", but must be [N >= 1, " +
          std::to_string(config_.in_channels) + ", H, W] with H and W positive multiples of " +
          std::to_string(factor));
    }
    if (t.size() != 1 && static_cast<Eigen::Index>(t.size()) != N) {
      ddpm::detail::throw_invalid_argument("ddpm::nn::UNet2D: t holds " + std::to_string(t.size()) +
                                           " timesteps, but must hold 1 or one per image (" + std::to_string(N) +
                                           ")");
    }
  }

  static Feature<S> copy_of(Context<S>& ctx, FeatureMap<const S> m) {
    Feature<S> f = make_feature(ctx, m.channels, m.batch, m.height, m.width);
    parallel_copy(ctx, m.data, m.size(), f.map.data);
    return f;
  }

  UNet2DConfig config_;
  Activation act_ = Activation::silu;
  Conv2d<S> conv_in_;
  TimestepEmbedding<S> time_embedding_;
  std::vector<DownBlock2D<S>> down_blocks_;
  std::optional<UNetMidBlock2D<S>> mid_block_;
  std::vector<UpBlock2D<S>> up_blocks_;
  GroupNorm<S> conv_norm_out_;
  Conv2d<S> conv_out_;
  // State of a forward pass, kept so that the steady state allocates nothing.
  std::unique_ptr<Context<S>> ctx_ = std::make_unique<Context<S>>(1);
  std::vector<Feature<S>> skips_;
  std::vector<double> timesteps_, timesteps_broadcast_;
  Matrix t_emb_, temb_, temb_hidden_;
};

}  // namespace ddpm::nn
