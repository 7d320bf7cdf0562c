// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// The blocks of diffusers' UNet2DModel: DownBlock2D and AttnDownBlock2D (one class, attention on or off),
// UpBlock2D and AttnUpBlock2D (likewise), and UNetMidBlock2D. The down path pushes its intermediate states
// onto a stack of skip connections; the up path pops them, concatenating each one to its input along the
// channels.

#include <concepts>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include "ddpm/error.hpp"
#include "ddpm/nn/activation.hpp"
#include "ddpm/nn/attention.hpp"
#include "ddpm/nn/context.hpp"
#include "ddpm/nn/downsample.hpp"
#include "ddpm/nn/feature_map.hpp"
#include "ddpm/nn/parameter.hpp"
#include "ddpm/nn/resnet_block.hpp"
#include "ddpm/nn/upsample.hpp"
#include "ddpm/random.hpp"

namespace ddpm::nn {

namespace detail {
/// dst += src for two maps of one shape.
template <std::floating_point S>
void add_feature(Workspace<S>& ctx, FeatureMap<const S> src, FeatureMap<S> dst) {
  copy_or_add_feature(ctx, src, dst, true);
}
}  // namespace detail

/// What every block of one UNet shares: its normalisation, activation and time conditioning.
struct BlockOptions {
  Eigen::Index temb_channels = 512;
  Eigen::Index groups = 32;      ///< norm_num_groups
  double eps = 1e-5;             ///< norm_eps
  Activation act = Activation::silu;
  TimeEmbeddingNorm time_norm = TimeEmbeddingNorm::additive;
};

/// Channel-wise concatenation [a; b] of two maps of the same batch and size (a skip connection).
template <class S>
Feature<S> concat_channels(Workspace<S>& ctx, FeatureMap<const S> a, FeatureMap<const S> b) {
  if (a.batch != b.batch || a.height != b.height || a.width != b.width) {
    ddpm::detail::throw_invalid_argument("ddpm::nn::concat_channels: a is " + map_shape_string(a) + " and b " +
                                         map_shape_string(b) + " [C, N, H, W], but must agree in batch and size");
  }
  Feature<S> out = make_feature(ctx, a.channels + b.channels, a.batch, a.height, a.width);
  parallel_copy(ctx, a.data, a.size(), out.map.data);
  parallel_copy(ctx, b.data, b.size(), out.map.data + a.size());
  return out;
}

/// DownBlock2D (attention = false) or AttnDownBlock2D (attention = true): `layers` ResNet blocks (each
/// followed by an attention block), then an optional Downsample2D.
template <std::floating_point S>
class DownBlock2D {
 public:
  using Matrix = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

  DownBlock2D() = default;
  /// head_dim is the attention head width (diffusers' attention_head_dim, or out_channels when unset);
  /// downsample_padding as in Downsample2D.
  DownBlock2D(bool attention, Eigen::Index layers, Eigen::Index in_channels, Eigen::Index out_channels,
              bool add_downsample, const BlockOptions& o, Eigen::Index head_dim, Eigen::Index downsample_padding)
      : attention_(attention) {
    if (layers < 1) {
      ddpm::detail::throw_invalid_argument("ddpm::nn::DownBlock2D: layers is " + ddpm::detail::number_string(layers) +
                                           ", but must be >= 1");
    }
    for (Eigen::Index i = 0; i < layers; ++i) {
      resnets_.emplace_back(i == 0 ? in_channels : out_channels, out_channels, o.temb_channels, o.groups, o.eps, o.act,
                            1.0, o.time_norm);
      if (attention) attentions_.emplace_back(out_channels, head_dim, o.groups, o.eps, 1.0);
    }
    if (add_downsample) downsampler_ = Downsample2D<S>(out_channels, true, downsample_padding);
  }

  bool has_attention() const { return attention_; }
  bool has_downsample() const { return downsampler_.has_value(); }
  std::vector<ResnetBlock2D<S>>& resnets() { return resnets_; }
  std::vector<AttentionBlock<S>>& attentions() { return attentions_; }

  /// Rebuilds what the sub-layers derive from their weights (call after changing the weights).
  void prepare() {
    for (auto& r : resnets_) r.prepare();
    for (auto& a : attentions_) a.prepare();
    if (downsampler_) downsampler_->prepare();
  }
  /// Declares a change of the weights written through pointers obtained earlier (see Conv2d).
  void mark_weights_changed() { for_each_parameter("", [](const Parameter<S>&) {}); }
  /// A copy with zero parameters: the gradients, laid out as the parameters (same names, shapes, order).
  DownBlock2D gradient_like() const { return zeros_like<S>(*this); }

  /// Runs the block on x, pushing the output of every layer (and of the downsampler) onto `skips`; the
  /// block's output is skips.back().
  void forward(Workspace<S>& ctx, FeatureMap<const S> x, const Eigen::Ref<const Matrix>& temb_act, std::vector<Feature<S>>& skips) const {
    FeatureMap<const S> h = x;
    for (std::size_t i = 0; i < resnets_.size(); ++i) {
      Feature<S> r = make_feature(ctx, resnets_[i].out_channels(), h.batch, h.height, h.width);
      resnets_[i].forward(ctx, h, temb_act, r.view());
      if (attention_) {
        Feature<S> a = make_feature(ctx, r.map.channels, r.map.batch, r.map.height, r.map.width);
        attentions_[i].forward(ctx, r.cview(), a.view());
        r = std::move(a);
      }
      skips.push_back(std::move(r));
      h = skips.back().cview();
    }
    if (downsampler_) {
      Feature<S> d = make_feature(ctx, h.channels, h.batch, downsampler_->output_height(h.height),
                                  downsampler_->output_width(h.width));
      downsampler_->forward(ctx, h, d.view());
      skips.push_back(std::move(d));
    }
  }

  /// What backward needs from forward_train.
  struct Saved {
    std::vector<typename ResnetBlock2D<S>::Saved> resnets;
    std::vector<typename AttentionBlock<S>::Saved> attentions;
    typename Downsample2D<S>::Saved down;
  };

  /// forward's training form: pushes the same states onto `skips` and keeps what backward needs.
  void forward_train(Workspace<S>& ctx, FeatureMap<const S> x, const Eigen::Ref<const Matrix>& temb_act,
                     std::vector<Feature<S>>& skips, Saved& saved, NoiseSource* noise = nullptr) const {
    saved.resnets.clear();
    saved.resnets.resize(resnets_.size());
    saved.attentions.clear();
    saved.attentions.resize(attentions_.size());
    FeatureMap<const S> h = x;
    for (std::size_t i = 0; i < resnets_.size(); ++i) {
      Feature<S> r = make_feature(ctx, resnets_[i].out_channels(), h.batch, h.height, h.width);
      resnets_[i].forward_train(ctx, h, temb_act, r.view(), saved.resnets[i], noise);
      if (attention_) {
        Feature<S> a = make_feature(ctx, r.map.channels, r.map.batch, r.map.height, r.map.width);
        attentions_[i].forward_train(ctx, r.cview(), a.view(), saved.attentions[i]);
        r = std::move(a);
      }
      skips.push_back(std::move(r));
      h = skips.back().cview();
    }
    if (downsampler_) {
      Feature<S> d = make_feature(ctx, h.channels, h.batch, downsampler_->output_height(h.height),
                                  downsampler_->output_width(h.width));
      downsampler_->forward_train(ctx, h, d.view(), saved.down);
      skips.push_back(std::move(d));
    }
  }

  /// The backward pass. d_states[j] is the gradient of the j-th state this block pushed, complete for the
  /// last one (its consumers outside the block added in); the others receive the in-block shares here.
  /// The gradient of the block's input is added to d_x; dL/d temb_act to d_temb; parameter gradients to grads.
  void backward(Workspace<S>& ctx, Saved& saved, const Eigen::Ref<const Matrix>& temb_act,
                std::span<Feature<S>> d_states, FeatureMap<S> d_x, S* d_temb, DownBlock2D& grads) const {
    std::size_t j = d_states.size() - 1;
    if (downsampler_) {
      downsampler_->backward(ctx, saved.down, d_states[j].cview(), d_states[j - 1].view(), true, *grads.downsampler_);
      --j;
    }
    for (std::size_t i = resnets_.size(); i-- > 0; --j) {
      FeatureMap<const S> cur = d_states[j].cview();
      Feature<S> da;
      if (attention_) {
        da = make_feature(ctx, cur.channels, cur.batch, cur.height, cur.width);
        attentions_[i].backward(ctx, saved.attentions[i], cur, da.view(), grads.attentions_[i]);
        cur = da.cview();
      }
      FeatureMap<S> target = i > 0 ? d_states[j - 1].view() : d_x;
      Feature<S> dr = make_feature(ctx, target.channels, target.batch, target.height, target.width);
      resnets_[i].backward(ctx, saved.resnets[i], temb_act, cur, dr.view(), d_temb, grads.resnets_[i]);
      detail::add_feature<S>(ctx, dr.cview(), target);
      if (i == 0) break;
    }
  }

  /// The number of states forward pushes.
  std::size_t skip_count() const { return resnets_.size() + (downsampler_ ? 1 : 0); }

  /// Visits every parameter (name, PyTorch shape, writable pointer); a change of the weights.
  template <class F>
  void for_each_parameter(const std::string& prefix, F&& f) {
    visit_parameters(*this, prefix, f);
  }
  /// The same list with read-only pointers (Parameter<const S>): not a change of the weights.
  template <class F>
  void for_each_parameter(const std::string& prefix, F&& f) const {
    visit_parameters(*this, prefix, f);
  }

 private:
  // The body of both (Self is this class, const or not).
  template <class Self, class F>
  static void visit_parameters(Self& self, const std::string& prefix, F& f) {
    for_each_indexed_parameter(self.resnets_, prefix + "resnets.", f);
    for_each_indexed_parameter(self.attentions_, prefix + "attentions.", f);
    if (self.downsampler_) self.downsampler_->for_each_parameter(prefix + "downsamplers.0.", f);
  }

 private:
  bool attention_ = false;
  std::vector<ResnetBlock2D<S>> resnets_;
  std::vector<AttentionBlock<S>> attentions_;
  std::optional<Downsample2D<S>> downsampler_;
};

/// UpBlock2D (attention = false) or AttnUpBlock2D (attention = true): `layers` ResNet blocks, each taking
/// the previous output concatenated with a skip state (each followed by an attention block), then an
/// optional Upsample2D. Skip widths follow diffusers: the last layer's skip has in_channels channels, the
/// others out_channels; the first layer's input has prev_output_channels.
template <std::floating_point S>
class UpBlock2D {
 public:
  using Matrix = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

  UpBlock2D() = default;
  UpBlock2D(bool attention, Eigen::Index layers, Eigen::Index in_channels, Eigen::Index prev_output_channels,
            Eigen::Index out_channels, bool add_upsample, const BlockOptions& o, Eigen::Index head_dim)
      : attention_(attention) {
    if (layers < 1) {
      ddpm::detail::throw_invalid_argument("ddpm::nn::UpBlock2D: layers is " + ddpm::detail::number_string(layers) +
                                           ", but must be >= 1");
    }
    for (Eigen::Index i = 0; i < layers; ++i) {
      const Eigen::Index skip = i == layers - 1 ? in_channels : out_channels;
      const Eigen::Index input = i == 0 ? prev_output_channels : out_channels;
      resnets_.emplace_back(input + skip, out_channels, o.temb_channels, o.groups, o.eps, o.act, 1.0, o.time_norm);
      if (attention) attentions_.emplace_back(out_channels, head_dim, o.groups, o.eps, 1.0);
    }
    if (add_upsample) upsampler_ = Upsample2D<S>(out_channels, true);
  }

  bool has_attention() const { return attention_; }
  bool has_upsample() const { return upsampler_.has_value(); }
  /// The number of skip states forward pops (one per layer).
  std::size_t skip_count() const { return resnets_.size(); }
  std::vector<ResnetBlock2D<S>>& resnets() { return resnets_; }
  std::vector<AttentionBlock<S>>& attentions() { return attentions_; }

  /// Rebuilds what the sub-layers derive from their weights (call after changing the weights).
  void prepare() {
    for (auto& r : resnets_) r.prepare();
    for (auto& a : attentions_) a.prepare();
    if (upsampler_) upsampler_->prepare();
  }
  /// Declares a change of the weights written through pointers obtained earlier (see Conv2d).
  void mark_weights_changed() { for_each_parameter("", [](const Parameter<S>&) {}); }
  /// A copy with zero parameters: the gradients, laid out as the parameters (same names, shapes, order).
  UpBlock2D gradient_like() const { return zeros_like<S>(*this); }

  /// Runs the block on x, popping one skip state per layer from the back of `skips`.
  /// Throws ddpm::invalid_argument if there are too few skip states or their shapes do not fit.
  Feature<S> forward(Workspace<S>& ctx, FeatureMap<const S> x, const Eigen::Ref<const Matrix>& temb_act,
                     std::vector<Feature<S>>& skips) const {
    if (skips.size() < resnets_.size()) {
      ddpm::detail::throw_invalid_argument("ddpm::nn::UpBlock2D::forward: " + ddpm::detail::number_string(skips.size()) +
                                           " skip states left, but the block needs " +
                                           ddpm::detail::number_string(resnets_.size()));
    }
    Feature<S> h;
    for (std::size_t i = 0; i < resnets_.size(); ++i) {
      const FeatureMap<const S> in = i == 0 ? x : h.cview();
      Feature<S> cat = concat_channels<S>(ctx, in, skips.back().cview());
      skips.pop_back();
      Feature<S> r = make_feature(ctx, resnets_[i].out_channels(), in.batch, in.height, in.width);
      resnets_[i].forward(ctx, cat.cview(), temb_act, r.view());
      cat = Feature<S>{};
      if (attention_) {
        Feature<S> a = make_feature(ctx, r.map.channels, r.map.batch, r.map.height, r.map.width);
        attentions_[i].forward(ctx, r.cview(), a.view());
        r = std::move(a);
      }
      h = std::move(r);
    }
    if (upsampler_) {
      Feature<S> u = make_feature(ctx, h.map.channels, h.map.batch, 2 * h.map.height, 2 * h.map.width);
      upsampler_->forward(ctx, h.cview(), u.view());
      h = std::move(u);
    }
    return h;
  }

  /// What backward needs from forward_train.
  struct Saved {
    std::vector<typename ResnetBlock2D<S>::Saved> resnets;
    std::vector<typename AttentionBlock<S>::Saved> attentions;
    typename Upsample2D<S>::Saved up;
    std::vector<Eigen::Index> input_channels;  // channels of each layer's input before the concatenation
  };

  /// forward's training form (pops the same skip states), keeping what backward needs.
  Feature<S> forward_train(Workspace<S>& ctx, FeatureMap<const S> x, const Eigen::Ref<const Matrix>& temb_act,
                           std::vector<Feature<S>>& skips, Saved& saved, NoiseSource* noise = nullptr) const {
    if (skips.size() < resnets_.size()) {
      ddpm::detail::throw_invalid_argument("ddpm::nn::UpBlock2D::forward_train: " + ddpm::detail::number_string(skips.size()) +
                                           " skip states left, but the block needs " +
                                           ddpm::detail::number_string(resnets_.size()));
    }
    saved.resnets.clear();
    saved.resnets.resize(resnets_.size());
    saved.attentions.clear();
    saved.attentions.resize(attentions_.size());
    saved.input_channels.assign(resnets_.size(), 0);
    Feature<S> h;
    for (std::size_t i = 0; i < resnets_.size(); ++i) {
      const FeatureMap<const S> in = i == 0 ? x : h.cview();
      saved.input_channels[i] = in.channels;
      Feature<S> cat = concat_channels<S>(ctx, in, skips.back().cview());
      skips.pop_back();
      Feature<S> r = make_feature(ctx, resnets_[i].out_channels(), in.batch, in.height, in.width);
      resnets_[i].forward_train(ctx, cat.cview(), temb_act, r.view(), saved.resnets[i], noise);
      cat = Feature<S>{};
      if (attention_) {
        Feature<S> a = make_feature(ctx, r.map.channels, r.map.batch, r.map.height, r.map.width);
        attentions_[i].forward_train(ctx, r.cview(), a.view(), saved.attentions[i]);
        r = std::move(a);
      }
      h = std::move(r);
    }
    if (upsampler_) {
      Feature<S> u = make_feature(ctx, h.map.channels, h.map.batch, 2 * h.map.height, 2 * h.map.width);
      upsampler_->forward_train(ctx, h.cview(), u.view(), saved.up);
      h = std::move(u);
    }
    return h;
  }

  /// The backward pass for d_out = dL/d output: writes d_x (=) and adds the skip states' gradients to
  /// d_skips[top], d_skips[top - 1], ... (the order forward popped them); dL/d temb_act is added to d_temb.
  void backward(Workspace<S>& ctx, Saved& saved, const Eigen::Ref<const Matrix>& temb_act, FeatureMap<const S> d_out,
                FeatureMap<S> d_x, std::vector<Feature<S>>& d_skips, std::size_t top, S* d_temb,
                UpBlock2D& grads) const {
    Feature<S> du, cur_store;
    FeatureMap<const S> cur = d_out;
    if (upsampler_) {
      du = make_feature(ctx, cur.channels, cur.batch, cur.height / 2, cur.width / 2);
      upsampler_->backward(ctx, saved.up, cur, du.view(), false, *grads.upsampler_);
      cur = du.cview();
    }
    for (std::size_t i = resnets_.size(); i-- > 0;) {
      Feature<S> da;
      if (attention_) {
        da = make_feature(ctx, cur.channels, cur.batch, cur.height, cur.width);
        attentions_[i].backward(ctx, saved.attentions[i], cur, da.view(), grads.attentions_[i]);
        cur = da.cview();
      }
      Feature<S> dcat = make_feature(ctx, resnets_[i].in_channels(), cur.batch, cur.height, cur.width);
      resnets_[i].backward(ctx, saved.resnets[i], temb_act, cur, dcat.view(), d_temb, grads.resnets_[i]);
      Feature<S> dprev;
      FeatureMap<S> target = d_x;
      if (i > 0) {
        dprev = make_feature(ctx, saved.input_channels[i], cur.batch, cur.height, cur.width);
        target = dprev.view();
      }
      detail::concat_channels_backward(ctx, dcat.cview(), target, false, d_skips[top - i].view(), true);
      cur_store = std::move(dprev);
      cur = cur_store.cview();
    }
  }

  /// Visits every parameter (name, PyTorch shape, writable pointer); a change of the weights.
  template <class F>
  void for_each_parameter(const std::string& prefix, F&& f) {
    visit_parameters(*this, prefix, f);
  }
  /// The same list with read-only pointers (Parameter<const S>): not a change of the weights.
  template <class F>
  void for_each_parameter(const std::string& prefix, F&& f) const {
    visit_parameters(*this, prefix, f);
  }

 private:
  // The body of both (Self is this class, const or not).
  template <class Self, class F>
  static void visit_parameters(Self& self, const std::string& prefix, F& f) {
    for_each_indexed_parameter(self.resnets_, prefix + "resnets.", f);
    for_each_indexed_parameter(self.attentions_, prefix + "attentions.", f);
    if (self.upsampler_) self.upsampler_->for_each_parameter(prefix + "upsamplers.0.", f);
  }

 private:
  bool attention_ = false;
  std::vector<ResnetBlock2D<S>> resnets_;
  std::vector<AttentionBlock<S>> attentions_;
  std::optional<Upsample2D<S>> upsampler_;
};

/// UNetMidBlock2D: resnets.0, attentions.0 (optional), resnets.1, all at one width, with the block's
/// output_scale_factor (mid_block_scale_factor) on the ResNet blocks and as the attention's rescale.
template <std::floating_point S>
class UNetMidBlock2D {
 public:
  using Matrix = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

  UNetMidBlock2D() = default;
  /// attn_groups: the attention's GroupNorm groups (none when empty).
  UNetMidBlock2D(Eigen::Index channels, const BlockOptions& o, double output_scale_factor, bool add_attention,
                 Eigen::Index head_dim, std::optional<Eigen::Index> attn_groups) {
    for (int i = 0; i < 2; ++i) {
      resnets_.emplace_back(channels, channels, o.temb_channels, o.groups, o.eps, o.act, output_scale_factor,
                            o.time_norm);
    }
    if (add_attention) attention_ = AttentionBlock<S>(channels, head_dim, attn_groups, o.eps, output_scale_factor);
  }

  bool has_attention() const { return attention_.has_value(); }
  std::vector<ResnetBlock2D<S>>& resnets() { return resnets_; }

  /// Rebuilds what the sub-layers derive from their weights (call after changing the weights).
  void prepare() {
    for (auto& r : resnets_) r.prepare();
    if (attention_) attention_->prepare();
  }
  /// Declares a change of the weights written through pointers obtained earlier (see Conv2d).
  void mark_weights_changed() { for_each_parameter("", [](const Parameter<S>&) {}); }
  /// A copy with zero parameters: the gradients, laid out as the parameters (same names, shapes, order).
  UNetMidBlock2D gradient_like() const { return zeros_like<S>(*this); }

  /// What backward needs from forward_train.
  struct Saved {
    typename ResnetBlock2D<S>::Saved r0, r1;
    typename AttentionBlock<S>::Saved attention;
  };

  /// forward's training form, keeping what backward needs.
  Feature<S> forward_train(Workspace<S>& ctx, FeatureMap<const S> x, const Eigen::Ref<const Matrix>& temb_act,
                           Saved& saved, NoiseSource* noise = nullptr) const {
    Feature<S> h = make_feature(ctx, x.channels, x.batch, x.height, x.width);
    resnets_[0].forward_train(ctx, x, temb_act, h.view(), saved.r0, noise);
    if (attention_) {
      Feature<S> a = make_feature(ctx, x.channels, x.batch, x.height, x.width);
      attention_->forward_train(ctx, h.cview(), a.view(), saved.attention);
      h = std::move(a);
    }
    Feature<S> out = make_feature(ctx, x.channels, x.batch, x.height, x.width);
    resnets_[1].forward_train(ctx, h.cview(), temb_act, out.view(), saved.r1, noise);
    return out;
  }

  /// The backward pass: writes d_x (=), adds dL/d temb_act to d_temb and the parameter gradients to grads.
  void backward(Workspace<S>& ctx, Saved& saved, const Eigen::Ref<const Matrix>& temb_act, FeatureMap<const S> d_out,
                FeatureMap<S> d_x, S* d_temb, UNetMidBlock2D& grads) const {
    Feature<S> dh = make_feature(ctx, d_out.channels, d_out.batch, d_out.height, d_out.width);
    resnets_[1].backward(ctx, saved.r1, temb_act, d_out, dh.view(), d_temb, grads.resnets_[1]);
    if (attention_) {
      Feature<S> da = make_feature(ctx, d_out.channels, d_out.batch, d_out.height, d_out.width);
      attention_->backward(ctx, saved.attention, dh.cview(), da.view(), *grads.attention_);
      dh = std::move(da);
    }
    resnets_[0].backward(ctx, saved.r0, temb_act, dh.cview(), d_x, d_temb, grads.resnets_[0]);
  }

  Feature<S> forward(Workspace<S>& ctx, FeatureMap<const S> x, const Eigen::Ref<const Matrix>& temb_act) const {
    Feature<S> h = make_feature(ctx, x.channels, x.batch, x.height, x.width);
    resnets_[0].forward(ctx, x, temb_act, h.view());
    if (attention_) {
      Feature<S> a = make_feature(ctx, x.channels, x.batch, x.height, x.width);
      attention_->forward(ctx, h.cview(), a.view());
      h = std::move(a);
    }
    Feature<S> out = make_feature(ctx, x.channels, x.batch, x.height, x.width);
    resnets_[1].forward(ctx, h.cview(), temb_act, out.view());
    return out;
  }

  /// Visits every parameter (name, PyTorch shape, writable pointer); a change of the weights.
  template <class F>
  void for_each_parameter(const std::string& prefix, F&& f) {
    visit_parameters(*this, prefix, f);
  }
  /// The same list with read-only pointers (Parameter<const S>): not a change of the weights.
  template <class F>
  void for_each_parameter(const std::string& prefix, F&& f) const {
    visit_parameters(*this, prefix, f);
  }

 private:
  // The body of both (Self is this class, const or not).
  template <class Self, class F>
  static void visit_parameters(Self& self, const std::string& prefix, F& f) {
    self.resnets_[0].for_each_parameter(prefix + "resnets.0.", f);
    if (self.attention_) self.attention_->for_each_parameter(prefix + "attentions.0.", f);
    self.resnets_[1].for_each_parameter(prefix + "resnets.1.", f);
  }

 private:
  std::vector<ResnetBlock2D<S>> resnets_;
  std::optional<AttentionBlock<S>> attention_;
};

}  // namespace ddpm::nn
