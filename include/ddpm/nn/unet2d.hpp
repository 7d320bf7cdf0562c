// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// UNet2D: a diffusers UNet2DModel in C++, built from its config.json and loaded from its
// diffusion_pytorch_model.safetensors. It predicts epsilon and is a ddpm Predictor: model(x_t, t).
//
//   auto model = ddpm::nn::UNet2D<float>::from_pretrained("ddpm-cifar10-32");
//   model.set_num_threads(2);                       // opt-in: Eigen's thread pool
//   ddpm::Tensor<float, 4> eps = model(x_t, 999);   // x_t: [N, 3, 32, 32]
//
// The model holds weights only; a pass is const. forward(workspace, x, t, out) runs in the caller's
// Workspace (one per concurrent pass); model(x, t) and forward(x, t, out) borrow one from a small
// mutex-guarded pool inside the model, so several threads may call them on one model at once (each
// borrows its own workspace). After changing the weights (parameters(), for_each_parameter, an optimiser
// step through raw pointers followed by mark_weights_changed()), call prepare() before the next pass;
// load_weights and from_pretrained do it themselves.

#include <algorithm>
#include <array>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include "ddpm/error.hpp"
#include "ddpm/io/safetensors.hpp"
#include "ddpm/random.hpp"
#include "ddpm/nn/activation.hpp"
#include "ddpm/nn/config.hpp"
#include "ddpm/nn/context.hpp"
#include "ddpm/nn/detail/conv_backward.hpp"
#include "ddpm/nn/detail/embedding_backward.hpp"
#include "ddpm/nn/detail/norm_backward.hpp"
#include "ddpm/nn/detail/resample_backward.hpp"
#include "ddpm/nn/conv2d.hpp"
#include "ddpm/nn/feature_map.hpp"
#include "ddpm/nn/group_norm.hpp"
#include "ddpm/nn/parameter.hpp"
#include "ddpm/nn/timestep_embedding.hpp"
#include "ddpm/nn/unet_blocks.hpp"
#include "ddpm/nn/weights.hpp"
#include "ddpm/tensor.hpp"

namespace ddpm::nn {

namespace detail {

/// Workspaces lent to the passes of one model that do not bring their own: a pass takes one (or a new one
/// when all are lent) and gives it back, so the steady state allocates nothing and concurrent passes never
/// share one. Copying a pool copies only its thread count.
template <class S>
class WorkspacePool {
 public:
  /// A workspace lent by the pool, returned on destruction.
  class Lease {
   public:
    Lease(const WorkspacePool* pool, std::unique_ptr<Workspace<S>> ws) : pool_(pool), ws_(std::move(ws)) {}
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease() { pool_->give_back(std::move(ws_)); }
    Workspace<S>& operator*() const { return *ws_; }

   private:
    const WorkspacePool* pool_;
    std::unique_ptr<Workspace<S>> ws_;
  };

  WorkspacePool() = default;
  WorkspacePool(const WorkspacePool& other) : num_threads_(other.num_threads()) {}
  WorkspacePool& operator=(const WorkspacePool& other) {
    if (this != &other) set_num_threads(other.num_threads());
    return *this;
  }
  WorkspacePool(WorkspacePool&& other) noexcept {
    std::lock_guard lock(other.mutex_);
    idle_ = std::move(other.idle_);
    num_threads_ = other.num_threads_;
  }
  WorkspacePool& operator=(WorkspacePool&& other) noexcept {
    if (this != &other) {
      std::scoped_lock lock(mutex_, other.mutex_);
      idle_ = std::move(other.idle_);
      num_threads_ = other.num_threads_;
    }
    return *this;
  }

  void set_num_threads(int n) {
    std::lock_guard lock(mutex_);
    num_threads_ = n;
  }
  int num_threads() const {
    std::lock_guard lock(mutex_);
    return num_threads_;
  }

  /// An idle workspace (set to the pool's thread count), or a new one.
  Lease take() const {
    std::unique_ptr<Workspace<S>> ws;
    int threads;
    {
      std::lock_guard lock(mutex_);
      threads = num_threads_;
      if (!idle_.empty()) {
        ws = std::move(idle_.back());
        idle_.pop_back();
      }
    }
    if (!ws) ws = std::make_unique<Workspace<S>>(threads);
    ws->set_num_threads(threads);
    return Lease(this, std::move(ws));
  }

  /// Allocations and bytes of the idle workspaces.
  std::size_t allocations() const {
    std::lock_guard lock(mutex_);
    std::size_t n = 0;
    for (const auto& ws : idle_) n += ws->allocations();
    return n;
  }
  std::size_t bytes() const {
    std::lock_guard lock(mutex_);
    std::size_t n = 0;
    for (const auto& ws : idle_) n += ws->scratch_bytes();
    return n;
  }

 private:
  void give_back(std::unique_ptr<Workspace<S>> ws) const {
    std::lock_guard lock(mutex_);
    idle_.push_back(std::move(ws));
  }

  mutable std::mutex mutex_;
  mutable std::vector<std::unique_ptr<Workspace<S>>> idle_;
  int num_threads_ = 1;
};

}  // namespace detail

template <std::floating_point S>
class UNet2D {
 public:
  using Matrix = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  /// What a model with class_embed_type "identity" takes in place of labels: the class embedding itself,
  /// [N, time_embed_dim] (one row per image; a Matrix, a map over the caller's buffer or a block of one), added
  /// to the time embedding as diffusers' UNet2DModel adds its class_labels (nn.Identity).
  using ClassEmbedding = Eigen::Ref<const Matrix>;
  /// The largest |t| a pass accepts, 2^24: float32 (the embedding's type, as in diffusers) holds every integer
  /// up to it exactly. diffusers' timesteps lie in [0, num_train_timesteps], fractional ones (Euler,
  /// DPM-Solver) included; t = 1e300 would become inf in float32 and the embedding NaN.
  static constexpr double kMaxTimestep = 16777216.0;

  /// The network of `config` with PyTorch's neutral initial values (zero weights and biases, norms at
  /// weight 1): load weights with load_weights() or fill parameters() yourself.
  /// Throws ddpm::invalid_argument if the config is not supported (see UNet2DConfig::validate), or, before
  /// anything is allocated, if it asks for more than `limits` allow (see UNet2DConfig::check_size).
  explicit UNet2D(UNet2DConfig config, const UNet2DLimits& limits = {}) : config_(std::move(config)) {
    config_.validate();
    config_.check_size(limits);
    build();
  }

  /// dir/config.json and dir/diffusion_pytorch_model.safetensors, as diffusers' save_pretrained writes them.
  /// Throws ddpm::format_error if a file cannot be read, the config is not supported (the message lists
  /// what is), or the weights do not match the config (every missing, unexpected or misshapen tensor is
  /// named), or the config asks for more than `limits` allow (checked before anything is allocated).
  static UNet2D from_pretrained(const std::string& dir, const UNet2DLimits& limits = {}) {
    const UNet2DConfig config = UNet2DConfig::from_file(dir + "/config.json");
    try {
      config.check_size(limits);
    } catch (const ddpm::invalid_argument& e) {
      ddpm::detail::throw_format_error(dir + "/config.json: " + e.what());
    }
    UNet2D model(config, limits);
    model.load_weights(dir + "/diffusion_pytorch_model.safetensors");
    return model;
  }

  /// Loads every parameter from a safetensors file (F16, BF16, F32 or F64, converted to S).
  /// Throws ddpm::format_error as load_weights(layer, file) does; the model is then left unchanged.
  /// Then prepares the model (prepare()).
  void load_weights(const std::string& path) { load_weights(io::Safetensors::load(path)); }
  void load_weights(const io::Safetensors& file) {
    nn::load_weights<S>(*this, file);
    prepare();
  }

  /// Writes the parameters as diffusers names them (a diffusion_pytorch_model.safetensors).
  void save_weights(const std::string& path, io::DType dtype = io::DType::F32) {
    nn::save_weights<S>(*this, path, dtype);
  }

  const UNet2DConfig& config() const { return config_; }

  /// Threads of the passes that use the model's own workspaces (model(x, t), forward(x, t, out); 1, the
  /// default, runs on the caller's thread). A pass in the caller's Workspace uses that one's thread count.
  /// Throws ddpm::invalid_argument if n < 1 or n > Workspace<S>::max_num_threads().
  void set_num_threads(int n) {
    if (n < 1 || n > Workspace<S>::max_num_threads()) {
      ddpm::detail::throw_invalid_argument("ddpm::nn::UNet2D::set_num_threads: n is " + ddpm::detail::number_string(n) +
                                           ", but must be in [1, " + ddpm::detail::number_string(Workspace<S>::max_num_threads()) +
                                           "] (Workspace::max_num_threads())");
    }
    workspaces_.set_num_threads(n);
  }
  int num_threads() const { return workspaces_.num_threads(); }

  /// Rebuilds what the layers derive from their weights (the Winograd transforms of the 3x3
  /// convolutions). Call it after changing the weights, before the next pass; a pass whose Winograd
  /// convolutions see changed weights throws ddpm::invalid_argument instead of using stale transforms.
  /// Not thread-safe with a pass.
  void prepare() {
    conv_in_.prepare();
    for (auto& b : down_blocks_) b.prepare();
    if (mid_block_) mid_block_->prepare();
    for (auto& b : up_blocks_) b.prepare();
    conv_out_.prepare();
  }
  /// Declares that the weights changed through pointers obtained earlier (an optimiser step writing
  /// through the spans of parameters()); prepare() must then run before the next pass.
  void mark_weights_changed() { for_each_parameter("", [](const Parameter<S>&) {}); }

  /// A model of the same config with every parameter zero: the gradients of this model, with the same
  /// names, shapes and order in for_each_parameter (backward accumulates into it; zero_parameters resets it).
  UNet2D zeros_like() const { return nn::zeros_like<S>(*this); }
  UNet2D gradient_like() const { return zeros_like(); }

  /// Every parameter, named and shaped as in diffusers' state_dict (mutable: a change of the weights).
  std::vector<Parameter<S>> parameters() { return parameters_of<S>(*this); }
  /// The number of scalar parameters.
  std::int64_t num_parameters() const { return parameter_count<S>(*this); }

  /// eps_theta(x, t) for a batch x [N, in_channels, H, W] at one timestep t for all images.
  /// H and W must be multiples of 2^(levels - 1). Throws ddpm::invalid_argument if x has the wrong channel
  /// count or size, or is empty.
  template <DenseTensor X>
  Tensor<S, 4> operator()(const X& x, int t) const {
    const double td = t;
    Tensor<S, 4> out;
    forward(x, std::span<const double>(&td, 1), out);
    return out;
  }

  /// eps_theta(x, t, labels) of a class-conditional model (one label per image).
  template <DenseTensor X>
  Tensor<S, 4> operator()(const X& x, int t, std::span<const int> labels) const {
    const double td = t;
    Tensor<S, 4> out;
    forward(x, std::span<const double>(&td, 1), out, labels);
    return out;
  }

  /// eps_theta(x, t, class_emb) of a model with class_embed_type "identity" (class_emb [N, time_embed_dim]).
  template <DenseTensor X>
  Tensor<S, 4> operator()(const X& x, int t, const ClassEmbedding& class_emb) const {
    const double td = t;
    Tensor<S, 4> out;
    forward(x, std::span<const double>(&td, 1), out, class_emb);
    return out;
  }

  /// eps_theta(x, t) with one timestep per image (t.size() == N).
  template <DenseTensor X>
  Tensor<S, 4> operator()(const X& x, std::span<const int> t) const {
    const std::vector<double> td(t.begin(), t.end());
    Tensor<S, 4> out;
    forward(x, std::span<const double>(td), out);
    return out;
  }

  /// The general form, into `out` (a Tensor is resized, a map must have the shape [N, out_channels, H, W]):
  /// t holds one timestep for the batch or one per image, and may be fractional.   [docs/unet.md, "Forward"]
  /// Nothing is allocated once a pass at this batch size has run (when out is already the right size).
  /// Runs in a workspace borrowed from the model's pool (thread-safe).
  /// Throws ddpm::invalid_argument for a wrong input shape or timestep count, or a timestep that is not
  /// finite, or weights changed since prepare().
  /// labels: one class per image for a class-conditional model (num_class_embeds), empty otherwise.
  template <DenseTensor X, MutableDenseTensor Out>
  void forward(const X& x, std::span<const double> t, Out&& out, std::span<const int> labels = {}) const {
    const typename detail::WorkspacePool<S>::Lease ws = workspaces_.take();
    forward(*ws, x, t, std::forward<Out>(out), labels);
  }

  /// The same for a model with class_embed_type "identity": class_emb [N, time_embed_dim] is added to the
  /// time embedding. Throws ddpm::invalid_argument as forward does, and if the model's class embedding is not
  /// "identity" or class_emb is not [N, time_embed_dim].
  template <DenseTensor X, MutableDenseTensor Out>
  void forward(const X& x, std::span<const double> t, Out&& out, const ClassEmbedding& class_emb) const {
    const typename detail::WorkspacePool<S>::Lease ws = workspaces_.take();
    forward(*ws, x, t, std::forward<Out>(out), class_emb);
  }

  /// The same pass in the caller's workspace (its thread count, its buffers): thread-safe as long as each
  /// concurrent pass has its own workspace. Nothing is allocated once ws has run a pass at this batch size.
  template <DenseTensor X, MutableDenseTensor Out>
  void forward(Workspace<S>& ws, const X& x, std::span<const double> t, Out&& out,
               std::span<const int> labels = {}) const {
    forward_impl(ws, x, t, std::forward<Out>(out), ClassInput{labels, nullptr});
  }

  /// The identity class embedding's form in the caller's workspace.
  template <DenseTensor X, MutableDenseTensor Out>
  void forward(Workspace<S>& ws, const X& x, std::span<const double> t, Out&& out,
               const ClassEmbedding& class_emb) const {
    forward_impl(ws, x, t, std::forward<Out>(out), ClassInput{{}, &class_emb});
  }

 private:
  /// What conditions a pass besides t: labels (table, "timestep") or the class embedding ("identity").
  struct ClassInput {
    std::span<const int> labels;
    const ClassEmbedding* embedding = nullptr;
  };

  template <DenseTensor X, MutableDenseTensor Out>
  void forward_impl(Workspace<S>& ws, const X& x, std::span<const double> t, Out&& out, const ClassInput& cls) const {
    static_assert(rank_v<X> == 4, "ddpm::nn::UNet2D: the input must be an NCHW tensor");
    static_assert(std::is_same_v<scalar_t<X>, S> && std::is_same_v<scalar_t<Out>, S>,
                  "ddpm::nn::UNet2D: tensors must have the model's scalar type");
    const Eigen::Index N = x.dimension(0), H = x.dimension(2), W = x.dimension(3);
    check_input(x, t);
    check_class_input(N, cls);
    Workspace<S>& ctx = ws;
    // 1. time: the embedding of every image's timestep, the MLP, and its activation (shared by all blocks)
    const Eigen::Index E = config_.block_out_channels.front(), T = time_embedding_.dim();
    typename Workspace<S>::Buffer t_emb = ctx.acquire(N * E), temb_storage = ctx.acquire(N * T);
    sinusoidal_embedding_into(t, N, E, config_.flip_sin_to_cos, config_.freq_shift, t_emb.data());
    time_embedding_.forward(ctx, typename Linear<S>::ConstRows(t_emb.data(), N, E),
                            typename Linear<S>::Rows(temb_storage.data(), N, T));
    t_emb.release();
    add_class_embedding(ctx, N, cls, temb_storage.data());
    apply_activation(act_, temb_storage.data(), N * T);
    const typename Linear<S>::ConstRows temb(temb_storage.data(), N, T);
    // 2. conv_in
    Feature<S> input = make_feature(ctx, config_.in_channels, N, H, W);
    nchw_to_channel_major(x, input.view(), config_.center_input_sample);
    Feature<S> h0 = make_feature(ctx, conv_in_.out_channels(), N, H, W);
    conv_in_.forward(ctx, input.cview(), h0.view());
    input = Feature<S>{};
    // 3. down: every intermediate state goes onto the skip stack (the workspace's, so its capacity is reused)
    std::vector<Feature<S>>& skips = ctx.feature_stack();
    skips.clear();
    skips.push_back(std::move(h0));
    for (const DownBlock2D<S>& block : down_blocks_) block.forward(ctx, skips.back().cview(), temb, skips);
    // 4. mid
    Feature<S> h;
    if (mid_block_) {
      h = mid_block_->forward(ctx, skips.back().cview(), temb);
    } else {
      h = std::move(skips.back());
      skips.pop_back();
      skips.push_back(copy_of(ctx, h.cview()));
    }
    // 5. up: each block pops its skip states
    for (const UpBlock2D<S>& block : up_blocks_) h = block.forward(ctx, h.cview(), temb, skips);
    // 6. out: conv_out(silu(conv_norm_out(h)))
    conv_norm_out_.forward(ctx, h.cview(), h.view(), Activation::silu);
    Feature<S> y = make_feature(ctx, config_.out_channels, N, H, W);
    conv_out_.forward(ctx, h.cview(), y.view());
    channel_major_to_nchw<S>(y.cview(), out);
    skips.clear();
  }

 public:
  /// What backward needs from forward_train: every layer's saved state (buffers of the pass's workspace,
  /// which must outlive it). Default-constructible and reusable; backward releases it (empty() after).
  struct Activations {
    Eigen::Index N = 0, H = 0, W = 0;
    std::vector<int> labels;
    Matrix t_emb, class_proj, class_emb, temb_act;  // [N, E], [N, E], [N, T] (table, MLP or given), [N, T]
    Feature<S> input;                               // conv_in's input
    std::vector<typename DownBlock2D<S>::Saved> down;
    typename UNetMidBlock2D<S>::Saved mid;
    std::vector<typename UpBlock2D<S>::Saved> up;
    std::vector<std::array<Eigen::Index, 3>> skip_shapes;  // channels, height, width of each skip state
    Feature<S> h, n_out;                                   // conv_norm_out's input, conv_out's input
    std::vector<S> mean, rstd;
    bool filled = false;

    bool empty() const { return !filled; }
    /// Returns every buffer to the workspace's pool.
    void clear() { *this = Activations{}; }
  };

  /// The training pass: out = eps_theta(x, t, labels) as forward computes it, with every convolution through
  /// im2col (no prepare() needed between optimiser steps) and what backward needs kept in `acts`. t holds
  /// one timestep per image (or one for all); labels one class per image for a class-conditional model
  /// (empty otherwise). With `dropout_noise`, the ResNet blocks' dropout (config.dropout) is on and draws its
  /// masks from it (train mode); without, dropout is off (eval mode).
  /// Throws ddpm::invalid_argument for a wrong input shape, timestep or label count, or a label out of range.
  template <DenseTensor X, MutableDenseTensor Out>
  void forward_train(Workspace<S>& ws, const X& x, std::span<const double> t, std::span<const int> labels, Out&& out,
                     Activations& acts, NoiseSource* dropout_noise = nullptr) const {
    forward_train_impl(ws, x, t, ClassInput{labels, nullptr}, std::forward<Out>(out), acts, dropout_noise);
  }

  /// The training pass of a model with class_embed_type "identity": class_emb [N, time_embed_dim] is added to
  /// the time embedding (kept in acts; backward can return its gradient). Throws as the other form does, and if
  /// the model's class embedding is not "identity" or class_emb is not [N, time_embed_dim].
  template <DenseTensor X, MutableDenseTensor Out>
  void forward_train(Workspace<S>& ws, const X& x, std::span<const double> t, const ClassEmbedding& class_emb,
                     Out&& out, Activations& acts, NoiseSource* dropout_noise = nullptr) const {
    forward_train_impl(ws, x, t, ClassInput{{}, &class_emb}, std::forward<Out>(out), acts, dropout_noise);
  }

 private:
  template <DenseTensor X, MutableDenseTensor Out>
  void forward_train_impl(Workspace<S>& ws, const X& x, std::span<const double> t, const ClassInput& cls, Out&& out,
                          Activations& acts, NoiseSource* dropout_noise) const {
    static_assert(rank_v<X> == 4, "ddpm::nn::UNet2D: the input must be an NCHW tensor");
    static_assert(std::is_same_v<scalar_t<X>, S> && std::is_same_v<scalar_t<Out>, S>,
                  "ddpm::nn::UNet2D: tensors must have the model's scalar type");
    const Eigen::Index N = x.dimension(0), H = x.dimension(2), W = x.dimension(3);
    check_input(x, t);
    check_class_input(N, cls);
    acts.clear();
    acts.N = N;
    acts.H = H;
    acts.W = W;
    acts.labels.assign(cls.labels.begin(), cls.labels.end());
    const Eigen::Index E = config_.block_out_channels.front(), T = time_embedding_.dim();
    acts.t_emb.resize(N, E);
    sinusoidal_embedding_into(t, N, E, config_.flip_sin_to_cos, config_.freq_shift, acts.t_emb.data());
    acts.temb_act.resize(N, T);
    time_embedding_.forward(ws, typename Linear<S>::ConstRows(acts.t_emb.data(), N, E),
                            typename Linear<S>::Rows(acts.temb_act.data(), N, T));
    if (class_kind_ != ClassKind::none) {
      acts.class_emb = Matrix::Zero(N, T);
      if (class_kind_ == ClassKind::timestep) {
        acts.class_proj.resize(N, E);
        class_projection(cls.labels, acts.class_proj.data());
      }
      add_class_embedding(ws, N, cls, acts.class_emb.data());
      acts.temb_act += acts.class_emb;
    }
    apply_activation(act_, acts.temb_act.data(), N * T);
    const typename Linear<S>::ConstRows temb(acts.temb_act.data(), N, T);
    acts.input = make_feature(ws, config_.in_channels, N, H, W);
    nchw_to_channel_major(x, acts.input.view(), config_.center_input_sample);
    std::vector<Feature<S>> skips;
    {
      Feature<S> h0 = make_feature(ws, conv_in_.out_channels(), N, H, W);
      conv_in_.forward_train(ws, acts.input.cview(), h0.view());
      skips.push_back(std::move(h0));
    }
    acts.down.clear();
    acts.down.resize(down_blocks_.size());
    for (std::size_t i = 0; i < down_blocks_.size(); ++i) {
      down_blocks_[i].forward_train(ws, skips.back().cview(), temb, skips, acts.down[i], dropout_noise);
    }
    for (const Feature<S>& f : skips) acts.skip_shapes.push_back({f.map.channels, f.map.height, f.map.width});
    Feature<S> h;
    if (mid_block_) {
      h = mid_block_->forward_train(ws, skips.back().cview(), temb, acts.mid, dropout_noise);
    } else {
      h = copy_of(ws, skips.back().cview());
    }
    acts.up.clear();
    acts.up.resize(up_blocks_.size());
    for (std::size_t i = 0; i < up_blocks_.size(); ++i) {
      h = up_blocks_[i].forward_train(ws, h.cview(), temb, skips, acts.up[i], dropout_noise);
    }
    skips.clear();
    acts.h = std::move(h);
    acts.n_out = make_feature(ws, acts.h.map.channels, N, H, W);
    acts.mean.resize(N * conv_norm_out_.groups());
    acts.rstd.resize(N * conv_norm_out_.groups());
    detail::group_norm_forward_saved(ws, detail::group_norm_args(conv_norm_out_, Activation::silu), acts.h.cview(),
                                     acts.n_out.view(), acts.mean.data(), acts.rstd.data());
    Feature<S> y = make_feature(ws, config_.out_channels, N, H, W);
    conv_out_.forward_train(ws, acts.n_out.cview(), y.view());
    channel_major_to_nchw<S>(y.cview(), out);
    acts.filled = true;
  }

 public:
  /// The backward pass of forward_train for d_out = dL/d out (NCHW, out's shape): accumulates (+=) every
  /// parameter gradient into `grads` (a zeros_like() model: the same names, shapes and for_each_parameter
  /// order) and, when d_x is given, writes dL/dx (NCHW, resized); when d_class_emb is given (a model with
  /// class_embed_type "identity"), writes dL/d class_emb [N, time_embed_dim] (resized). Releases `acts`.
  /// Throws ddpm::invalid_argument if acts is empty, d_out has the wrong shape, grads has another config, or
  /// d_class_emb is given for a model whose class embedding is not "identity".
  template <DenseTensor D>
  void backward(Workspace<S>& ws, Activations& acts, const D& d_out, UNet2D& grads, Tensor<S, 4>* d_x = nullptr,
                Matrix* d_class_emb = nullptr) const {
    static_assert(rank_v<D> == 4 && std::is_same_v<scalar_t<D>, S>,
                  "ddpm::nn::UNet2D::backward: d_out must be an NCHW tensor of the model's scalar type");
    if (acts.empty()) {
      ddpm::detail::throw_invalid_argument(
          "ddpm::nn::UNet2D::backward: acts is empty, but must hold a forward_train pass");
    }
    const Eigen::Index N = acts.N, H = acts.H, W = acts.W, T = time_embedding_.dim();
    if (d_out.dimension(0) != N || d_out.dimension(1) != config_.out_channels || d_out.dimension(2) != H ||
        d_out.dimension(3) != W) {
      ddpm::detail::throw_invalid_argument("ddpm::nn::UNet2D::backward: d_out has shape " +
                                           ddpm::detail::shape_string(d_out) + ", but must have the output's shape");
    }
    if (grads.num_parameters() != num_parameters() || grads.down_blocks_.size() != down_blocks_.size() ||
        grads.class_kind_ != class_kind_) {
      ddpm::detail::throw_invalid_argument(
          "ddpm::nn::UNet2D::backward: grads has another layout, but must be this model's zeros_like()");
    }
    if (d_class_emb != nullptr && class_kind_ != ClassKind::identity) {
      ddpm::detail::throw_invalid_argument(
          "ddpm::nn::UNet2D::backward: d_class_emb is given, but the model's class_embed_type is not \"identity\" "
          "(it has no class embedding input)");
    }
    Matrix d_temb = Matrix::Zero(N, T);
    const typename Linear<S>::ConstRows temb(acts.temb_act.data(), N, T);
    // out: conv_out(silu(conv_norm_out(h)))
    Feature<S> dy = make_feature(ws, config_.out_channels, N, H, W);
    nchw_to_channel_major(d_out, dy.view(), false);
    Feature<S> dh = make_feature(ws, acts.h.map.channels, N, H, W);
    detail::conv2d_backward(ws, conv_out_, acts.n_out.cview(), dy.cview(), S(1), dh.view(), false,
                            detail::conv_grads_of(grads.conv_out_));
    dy = Feature<S>{};
    detail::group_norm_backward(ws, detail::group_norm_args(conv_norm_out_, Activation::silu), acts.h.cview(),
                                acts.mean.data(), acts.rstd.data(), dh.cview(), dh.view(),
                                detail::GroupNormGrads<S>{grads.conv_norm_out_.weight().data(),
                                                          grads.conv_norm_out_.bias().data(), nullptr, nullptr});
    // the gradients of the skip states
    std::vector<Feature<S>> d_skips;
    for (const auto& sh : acts.skip_shapes) {
      Feature<S> f = make_feature(ws, sh[0], N, sh[1], sh[2]);
      std::fill_n(f.map.data, f.map.size(), S(0));
      d_skips.push_back(std::move(f));
    }
    // up
    std::size_t top = d_skips.size() - 1;
    std::vector<std::size_t> tops(up_blocks_.size());
    for (std::size_t i = 0; i < up_blocks_.size(); ++i) {
      tops[i] = top;
      top -= up_blocks_[i].skip_count();
    }
    for (std::size_t i = up_blocks_.size(); i-- > 0;) {
      const std::size_t in_channels = i == 0 ? mid_channels() : up_output_channels(i - 1);
      const Eigen::Index factor = up_blocks_[i].has_upsample() ? 2 : 1;
      Feature<S> d_in = make_feature(ws, static_cast<Eigen::Index>(in_channels), N, dh.map.height / factor,
                                     dh.map.width / factor);
      up_blocks_[i].backward(ws, acts.up[i], temb, dh.cview(), d_in.view(), d_skips, tops[i], d_temb.data(),
                             grads.up_blocks_[i]);
      acts.up[i] = {};
      dh = std::move(d_in);
    }
    // mid
    if (mid_block_) {
      Feature<S> d_in = make_feature(ws, dh.map.channels, N, dh.map.height, dh.map.width);
      mid_block_->backward(ws, acts.mid, temb, dh.cview(), d_in.view(), d_temb.data(), *grads.mid_block_);
      detail::add_feature<S>(ws, d_in.cview(), d_skips.back().view());
    } else {
      detail::add_feature<S>(ws, dh.cview(), d_skips.back().view());
    }
    dh = Feature<S>{};
    // down
    std::size_t end = d_skips.size();
    for (std::size_t i = down_blocks_.size(); i-- > 0;) {
      const std::size_t count = down_blocks_[i].skip_count(), start = end - count;
      down_blocks_[i].backward(ws, acts.down[i], temb, std::span<Feature<S>>(d_skips.data() + start, count),
                               d_skips[start - 1].view(), d_temb.data(), grads.down_blocks_[i]);
      acts.down[i] = {};
      end = start;
    }
    // conv_in
    Feature<S> dx;
    if (d_x != nullptr) dx = make_feature(ws, config_.in_channels, N, H, W);
    detail::conv2d_backward(ws, conv_in_, acts.input.cview(), d_skips[0].cview(), S(1),
                            d_x != nullptr ? dx.view() : FeatureMap<S>{nullptr, config_.in_channels, N, H, W}, false,
                            detail::conv_grads_of(grads.conv_in_));
    d_skips.clear();
    if (d_x != nullptr) {
      if (config_.center_input_sample) {
        Eigen::Map<Eigen::Array<S, Eigen::Dynamic, 1>>(dx.map.data, dx.map.size()) *= S(2);
      }
      d_x->resize(N, config_.in_channels, H, W);
      channel_major_to_nchw<S>(dx.cview(), *d_x);
    }
    // the time embedding MLP (with the class embedding added before the activation)
    const Eigen::Index E = config_.block_out_channels.front();
    Matrix d_class;
    if (class_kind_ != ClassKind::none) d_class = Matrix::Zero(N, T);
    detail::TimestepMlpArgs<S> targs{N, E, T, time_embedding_.linear_1().weight().data(),
                                     time_embedding_.linear_1().bias().data(), time_embedding_.linear_2().weight().data(),
                                     time_embedding_.linear_2().bias().data(), Activation::silu, act_,
                                     class_kind_ != ClassKind::none ? acts.class_emb.data() : nullptr};
    detail::TimestepMlpGrads<S> tgrads{grads.time_embedding_.linear_1().weight().data(),
                                       grads.time_embedding_.linear_1().bias().data(),
                                       grads.time_embedding_.linear_2().weight().data(),
                                       grads.time_embedding_.linear_2().bias().data(), nullptr,
                                       class_kind_ != ClassKind::none ? d_class.data() : nullptr};
    detail::timestep_mlp_backward(ws, targs, acts.t_emb.data(), d_temb.data(), tgrads);
    if (class_kind_ == ClassKind::table) {
      detail::embedding_backward(std::span<const int>(acts.labels), d_class.data(), class_table_.rows(), T,
                                 grads.class_table_.data());
    } else if (class_kind_ == ClassKind::timestep) {
      detail::TimestepMlpArgs<S> cargs{N, E, T, class_mlp_.linear_1().weight().data(),
                                       class_mlp_.linear_1().bias().data(), class_mlp_.linear_2().weight().data(),
                                       class_mlp_.linear_2().bias().data(), Activation::silu, Activation::identity,
                                       nullptr};
      detail::TimestepMlpGrads<S> cgrads{grads.class_mlp_.linear_1().weight().data(),
                                         grads.class_mlp_.linear_1().bias().data(),
                                         grads.class_mlp_.linear_2().weight().data(),
                                         grads.class_mlp_.linear_2().bias().data(), nullptr, nullptr};
      detail::timestep_mlp_backward(ws, cargs, acts.class_proj.data(), d_class.data(), cgrads);
    } else if (class_kind_ == ClassKind::identity && d_class_emb != nullptr) {
      *d_class_emb = std::move(d_class);  // the class embedding is added as it is: its gradient is d temb's
    }
    acts.clear();
  }

  /// Scratch memory held between passes, and how many blocks of it were allocated so far (constant in
  /// the steady state).
  /// (Of the model's own idle workspaces; a caller's Workspace reports its own.)
  std::size_t scratch_bytes() const { return workspaces_.bytes(); }
  std::size_t scratch_allocations() const { return workspaces_.allocations(); }

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
    self.conv_in_.for_each_parameter(prefix + "conv_in.", f);
    self.time_embedding_.for_each_parameter(prefix + "time_embedding.", f);
    if (self.class_kind_ == ClassKind::table) {
      using P = std::conditional_t<std::is_const_v<Self>, Parameter<const S>, Parameter<S>>;
      f(P{prefix + "class_embedding.weight", {self.class_table_.rows(), self.class_table_.cols()},
          self.class_table_.data()});
    } else if (self.class_kind_ == ClassKind::timestep) {
      self.class_mlp_.for_each_parameter(prefix + "class_embedding.", f);
    }
    for_each_indexed_parameter(self.down_blocks_, prefix + "down_blocks.", f);
    if (self.mid_block_) self.mid_block_->for_each_parameter(prefix + "mid_block.", f);
    for_each_indexed_parameter(self.up_blocks_, prefix + "up_blocks.", f);
    self.conv_norm_out_.for_each_parameter(prefix + "conv_norm_out.", f);
    self.conv_out_.for_each_parameter(prefix + "conv_out.", f);
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
    if (c.class_embed_type && *c.class_embed_type == "timestep") {
      class_kind_ = ClassKind::timestep;
      class_mlp_ = TimestepEmbedding<S>(ch[0], o.temb_channels);
    } else if (c.class_embed_type && *c.class_embed_type == "identity") {
      class_kind_ = ClassKind::identity;  // no weights: the caller's class embedding is added as it is
    } else if (c.num_class_embeds) {
      class_kind_ = ClassKind::table;
      class_table_ = Matrix::Zero(*c.num_class_embeds, o.temb_channels);
    }
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
    if (c.dropout > 0.0) {
      for (auto& b : down_blocks_) for (auto& r : b.resnets()) r.set_dropout(c.dropout);
      if (mid_block_) for (auto& r : mid_block_->resnets()) r.set_dropout(c.dropout);
      for (auto& b : up_blocks_) for (auto& r : b.resnets()) r.set_dropout(c.dropout);
    }
    conv_out_ = Conv2d<S>(ch[0], c.out_channels, 3, 1, 1);
  }

  template <DenseTensor X>
  void check_input(const X& x, std::span<const double> t) const {
    const Eigen::Index N = x.dimension(0), H = x.dimension(2), W = x.dimension(3);
    const Eigen::Index factor = Eigen::Index{1} << (config_.block_out_channels.size() - 1);
    if (N < 1 || x.dimension(1) != config_.in_channels || H < 1 || W < 1 || H % factor != 0 || W % factor != 0) {
      ddpm::detail::throw_invalid_argument(
          "ddpm::nn::UNet2D: x has shape " + ddpm::detail::shape_string(x) + ", but must be [N >= 1, " +
          ddpm::detail::number_string(config_.in_channels) + ", H, W] with H and W positive multiples of " +
          ddpm::detail::number_string(factor));
    }
    if (t.size() != 1 && static_cast<Eigen::Index>(t.size()) != N) {
      ddpm::detail::throw_invalid_argument("ddpm::nn::UNet2D: t holds " + ddpm::detail::number_string(t.size()) +
                                           " timesteps, but must hold 1 or one per image (" + ddpm::detail::number_string(N) +
                                           ")");
    }
    for (std::size_t i = 0; i < t.size(); ++i) {
      if (!(std::abs(t[i]) <= kMaxTimestep)) {  // also NaN
        ddpm::detail::throw_invalid_argument("ddpm::nn::UNet2D: t[" + ddpm::detail::number_string(i) + "] is " +
                                             ddpm::detail::number_string(t[i]) +
                                             ", but must be finite and in [-2^24, 2^24] (kMaxTimestep)");
      }
    }
  }

  std::size_t mid_channels() const { return static_cast<std::size_t>(config_.block_out_channels.back()); }
  std::size_t up_output_channels(std::size_t i) const {
    return static_cast<std::size_t>(config_.block_out_channels[config_.block_out_channels.size() - 1 - i]);
  }

  static Feature<S> copy_of(Workspace<S>& ctx, FeatureMap<const S> m) {
    Feature<S> f = make_feature(ctx, m.channels, m.batch, m.height, m.width);
    parallel_copy(ctx, m.data, m.size(), f.map.data);
    return f;
  }

  enum class ClassKind { none, table, timestep, identity };

  /// Throws ddpm::invalid_argument unless the class input fits the model: one label per image in range for a
  /// table or "timestep" model, a class embedding [N, time_embed_dim] for an "identity" one, nothing otherwise.
  void check_class_input(Eigen::Index N, const ClassInput& cls) const {
    const std::string fn = "ddpm::nn::UNet2D";
    const Eigen::Index T = time_embedding_.dim();
    if (class_kind_ == ClassKind::identity) {
      if (cls.embedding == nullptr) {
        ddpm::detail::throw_invalid_argument(
            fn + ": labels holds " + ddpm::detail::number_string(cls.labels.size()) +
            " labels, but the model's class_embed_type is \"identity\": pass the class embedding [N, " +
            ddpm::detail::number_string(T) + "] (class_emb) instead");
      }
      if (cls.embedding->rows() != N || cls.embedding->cols() != T) {
        ddpm::detail::throw_invalid_argument(fn + ": class_emb has shape [" + ddpm::detail::number_string(cls.embedding->rows()) +
                                             ", " + ddpm::detail::number_string(cls.embedding->cols()) + "], but must be [" +
                                             ddpm::detail::number_string(N) + ", " + ddpm::detail::number_string(T) +
                                             "] (one row of time_embed_dim values per image)");
      }
      return;
    }
    if (cls.embedding != nullptr) {
      ddpm::detail::throw_invalid_argument(fn + ": class_emb is given, but the model's class_embed_type is not "
                                                "\"identity\" (" +
                                           std::string(class_kind_ == ClassKind::none ? "it has no class embedding"
                                                                                      : "it takes labels") +
                                           ")");
    }
    const std::span<const int> labels = cls.labels;
    if (class_kind_ == ClassKind::none) {
      if (!labels.empty()) {
        ddpm::detail::throw_invalid_argument(fn + ": labels holds " + ddpm::detail::number_string(labels.size()) +
                                             " labels, but must be empty: the model has no class embedding");
      }
      return;
    }
    if (static_cast<Eigen::Index>(labels.size()) != N) {
      ddpm::detail::throw_invalid_argument(fn + ": labels holds " + ddpm::detail::number_string(labels.size()) +
                                           " labels, but must hold one per image (" + ddpm::detail::number_string(N) +
                                           ") for a class-conditional model");
    }
    if (class_kind_ == ClassKind::table) detail::check_labels("ddpm::nn::UNet2D", labels, class_table_.rows());
  }

  /// The sinusoidal projection of the labels [N, E] (the "timestep" class embedding's input).
  void class_projection(std::span<const int> labels, S* out) const {
    const std::vector<double> l(labels.begin(), labels.end());
    sinusoidal_embedding_into(std::span<const double>(l), static_cast<Eigen::Index>(l.size()),
                              config_.block_out_channels.front(), config_.flip_sin_to_cos, config_.freq_shift, out);
  }

  /// temb [N, T] += the class embedding of the labels, or the given one (nothing for a model without one).
  void add_class_embedding(Workspace<S>& ctx, Eigen::Index N, const ClassInput& cls, S* temb) const {
    const Eigen::Index T = time_embedding_.dim();
    const std::span<const int> labels = cls.labels;
    if (class_kind_ == ClassKind::table) {
      detail::embedding_forward(class_table_.data(), class_table_.rows(), T, labels, temb, true);
    } else if (class_kind_ == ClassKind::timestep) {
      const Eigen::Index E = config_.block_out_channels.front();
      typename Workspace<S>::Buffer proj = ctx.acquire(N * E), emb = ctx.acquire(N * T);
      class_projection(labels, proj.data());
      class_mlp_.forward(ctx, typename Linear<S>::ConstRows(proj.data(), N, E),
                         typename Linear<S>::Rows(emb.data(), N, T));
      Eigen::Map<Eigen::Array<S, Eigen::Dynamic, 1>>(temb, N * T) +=
          Eigen::Map<const Eigen::Array<S, Eigen::Dynamic, 1>>(emb.data(), N * T);
    } else if (class_kind_ == ClassKind::identity) {
      Eigen::Map<Matrix>(temb, N, T) += *cls.embedding;
    }
  }

  UNet2DConfig config_;
  Activation act_ = Activation::silu;
  ClassKind class_kind_ = ClassKind::none;
  Matrix class_table_;                // class_embedding.weight [num_class_embeds, T] (table)
  TimestepEmbedding<S> class_mlp_;    // class_embedding.linear_1/2 ("timestep")
  Conv2d<S> conv_in_;
  TimestepEmbedding<S> time_embedding_;
  std::vector<DownBlock2D<S>> down_blocks_;
  std::optional<UNetMidBlock2D<S>> mid_block_;
  std::vector<UpBlock2D<S>> up_blocks_;
  GroupNorm<S> conv_norm_out_;
  Conv2d<S> conv_out_;
  // Workspaces for the passes that bring none (not part of the model's state: a copy starts empty).
  mutable detail::WorkspacePool<S> workspaces_;
};

}  // namespace ddpm::nn
