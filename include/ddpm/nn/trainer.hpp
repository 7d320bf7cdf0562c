// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// Training a UNet2D: one step (batch, noise, label dropout, forward with saved activations, simple loss and
// its gradient, backward, clipping, learning-rate schedule, AdamW, EMA), a loop with a callback, and
// checkpoints that resume bit for bit.                     [docs/training.md, "Training a UNet"]
//
//   ddpm::nn::TrainState<float> state(config, ddpm::NoiseSchedule<float>::linear(), options, seed);
//   ddpm::nn::train(state, data, 2000, [](const ddpm::nn::TrainProgress& p) { ...; return true; });
//   ddpm::nn::save_checkpoint(state, "ckpt");   // and later load_checkpoint(state, "ckpt")
//
// The data source is any callable data(step, batch) filling batch.x0 [N, C, H, W] (and batch.labels, one
// class per image, for a class-conditional model); for resuming to be exact it must depend on the step only.

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "ddpm/ema.hpp"
#include "ddpm/error.hpp"
#include "ddpm/io/safetensors.hpp"
#include "ddpm/io/training_state.hpp"
#include "ddpm/loss.hpp"
#include "ddpm/lr_schedule.hpp"
#include "ddpm/optim.hpp"
#include "ddpm/random.hpp"
#include "ddpm/schedule.hpp"
#include "ddpm/timestep_sampler.hpp"
#include "ddpm/nn/save_pretrained.hpp"
#include "ddpm/nn/unet2d.hpp"

namespace ddpm::nn {

/// One batch from the data source: images x0 [N, C, H, W] in the model's range and (class-conditional
/// models) one label per image.
template <std::floating_point S>
struct DataBatch {
  Tensor<S, 4> x0;
  std::vector<int> labels;
};

/// A data source: callable as data(step, batch), filling `batch` for training step `step` (0-based).
template <class D, class S>
concept DataSource = std::floating_point<S> && requires(D& data, std::int64_t step, DataBatch<S>& batch) {
  data(step, batch);
};

/// The training recipe.
struct TrainOptions {
  AdamWOptions optimizer = {};
  /// The learning rate of optimiser step k (0-based) is lr_schedule.lr(k + lr_step_offset): offset 0 is
  /// diffusers' scripts (lr 0 at the first warm-up step), 1 is a LambdaLR of min(1, (k + 1) / warmup).
  LRSchedule lr_schedule = LRSchedule::constant(1e-3);
  std::int64_t lr_step_offset = 0;
  double max_grad_norm = 1.0;  ///< clip_grad_norm's max_norm; 0: no clipping (the norm is still reported)
  double label_dropout = 0.0;  ///< probability that a label is replaced by null_class
  int null_class = -1;         ///< -1: the last class, num_class_embeds - 1
  bool use_ema = true;
  EMAOptions ema = {};
  Prediction prediction = Prediction::epsilon;
};

/// What a step reports.
struct StepResult {
  double loss = 0;       ///< the simple loss of the batch (before the update)
  double grad_norm = 0;  ///< the global gradient norm before clipping
  double lr = 0;         ///< the learning rate the step used
};

/// Everything a training run holds: the model, its gradients (a zeros_like() model), a workspace, the
/// optimiser, the EMA, the schedule, the step count, the noise stream (seed and offset) and the buffers
/// of a step. save_checkpoint / load_checkpoint carry all of it that is not rebuilt from the options.
template <std::floating_point S>
struct TrainState {
  /// A fresh run: `model` (its current weights are the initial ones), Adam's state empty, the EMA a copy
  /// of the weights, step 0, noise stream `seed` from offset 0.
  /// Throws ddpm::invalid_argument if label_dropout is outside [0, 1], max_grad_norm is negative or not
  /// finite, or label_dropout > 0 on a model without class embeddings.
  TrainState(UNet2D<S> m, NoiseSchedule<S> s, TrainOptions o, std::uint64_t seed, int num_threads = 1)
      : model(std::move(m)),
        grads(model.zeros_like()),
        workspace(num_threads),
        optimizer(o.optimizer),
        schedule(std::move(s)),
        sampler(schedule.num_train_timesteps()),
        noise(seed),
        options(std::move(o)) {
    constexpr const char* fn = "ddpm::nn::TrainState";
    if (!(options.label_dropout >= 0.0 && options.label_dropout <= 1.0)) {
      ddpm::detail::throw_invalid_argument(std::string(fn) + ": label_dropout is " +
                                           ddpm::detail::number_string(options.label_dropout) + ", but must be in [0, 1]");
    }
    if (!(options.max_grad_norm >= 0.0) || !std::isfinite(options.max_grad_norm)) {
      ddpm::detail::throw_invalid_argument(std::string(fn) + ": max_grad_norm is " +
                                           ddpm::detail::number_string(options.max_grad_norm) + ", but must be finite and >= 0");
    }
    if (options.label_dropout > 0.0 && !model.config().num_class_embeds) {
      ddpm::detail::throw_invalid_argument(std::string(fn) + ": label_dropout is " +
                                           ddpm::detail::number_string(options.label_dropout) +
                                           ", but the model has no class embeddings (num_class_embeds null)");
    }
    if (options.use_ema) {
      refresh_spans();
      ema.emplace(std::span<const std::span<S>>(param_spans), options.ema);
    }
  }

  /// The class a dropped label becomes.
  int null_class() const {
    if (options.null_class >= 0) return options.null_class;
    return model.config().num_class_embeds.value_or(0) - 1;
  }

  /// Spans over the model's and the gradients' parameters (rebuilt each step: cheap, and safe after a move).
  void refresh_spans() {
    param_spans.clear();
    grad_spans.clear();
    for (const Parameter<S>& p : model.parameters()) param_spans.emplace_back(p.data, static_cast<std::size_t>(p.numel()));
    for (const Parameter<S>& p : grads.parameters()) grad_spans.emplace_back(p.data, static_cast<std::size_t>(p.numel()));
  }

  UNet2D<S> model;
  UNet2D<S> grads;
  Workspace<S> workspace;
  AdamW<S> optimizer;
  std::optional<EMA<S>> ema;
  NoiseSchedule<S> schedule;
  UniformTimestepSampler sampler;
  NoiseSource noise;
  TrainOptions options;
  std::int64_t step = 0;  ///< optimiser steps taken

  // Buffers of a step, reused.
  DataBatch<S> data;
  TrainingBatch<S, 4> batch;
  std::vector<double> t_double;
  std::vector<int> labels;
  std::vector<double> label_uniforms;
  Tensor<S, 4> out, d_out;
  Eigen::Array<S, Eigen::Dynamic, 1> per_sample;
  typename UNet2D<S>::Activations acts;
  std::vector<std::span<S>> param_spans, grad_spans;
};

/// Replaces each label by `null_class` where uniforms[i] < p (classifier-free guidance's label dropout).
inline void drop_labels(std::span<int> labels, std::span<const double> uniforms, double p, int null_class) {
  if (uniforms.size() != labels.size()) {
    ddpm::detail::throw_invalid_argument("ddpm::nn::drop_labels: uniforms has " + ddpm::detail::number_string(uniforms.size()) +
                                         " values, but must have one per label (" + ddpm::detail::number_string(labels.size()) +
                                         ")");
  }
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (uniforms[i] < p) labels[i] = null_class;
  }
}

/// One training step.                                               [docs/training.md, "Training a UNet"]
///   1. data(step, batch): x0 and labels
///   2. t ~ U{0..T-1}, eps ~ N(0, I) from state.noise (make_training_batch), x_t = q_sample(x0, t, eps)
///   3. with label_dropout p > 0: N uniforms from state.noise; label i -> null class where u_i < p
///   4. out = model.forward_train(x_t, t, labels) (dropout masks, if the config has dropout, from state.noise)
///   5. loss, d_out = simple_loss_and_gradient(out, target)
///   6. grads = 0; model.backward(d_out) -> grads
///   7. norm = clip_grad_norm(grads, max_grad_norm) (or grad_norm without clipping)
///   8. lr = lr_schedule.lr(step + lr_step_offset); AdamW step; model.mark_weights_changed()
///   9. EMA step; ++step
/// Throws ddpm::invalid_argument if the data source's batch does not fit the model (shape, label count or
/// range), as the model's passes do.
template <std::floating_point S, DataSource<S> D>
StepResult train_step(TrainState<S>& state, D&& data) {
  constexpr const char* fn = "ddpm::nn::train_step";
  StepResult r;
  data(state.step, state.data);
  const Eigen::Index n = state.data.x0.dimension(0);
  make_training_batch(state.schedule, state.data.x0, state.sampler, state.noise, state.options.prediction,
                      state.batch);
  state.t_double.assign(state.batch.t.begin(), state.batch.t.end());
  state.labels = state.data.labels;
  if (state.options.label_dropout > 0.0) {
    if (static_cast<Eigen::Index>(state.labels.size()) != n) {
      ddpm::detail::throw_invalid_argument(std::string(fn) + ": the data source gave " +
                                           ddpm::detail::number_string(state.labels.size()) + " labels, but must give one per image (" +
                                           ddpm::detail::number_string(n) + ") for label dropout");
    }
    state.label_uniforms.resize(static_cast<std::size_t>(n));
    state.noise.uniform(std::span<double>(state.label_uniforms));
    drop_labels(std::span<int>(state.labels), std::span<const double>(state.label_uniforms),
                state.options.label_dropout, state.null_class());
  }
  NoiseSource* dropout_noise = state.model.config().dropout > 0.0 ? &state.noise : nullptr;
  state.model.forward_train(state.workspace, state.batch.x_t, std::span<const double>(state.t_double),
                            std::span<const int>(state.labels), state.out, state.acts, dropout_noise);
  r.loss = static_cast<double>(simple_loss_and_gradient(state.out, state.batch.target,
                                                        weights_span(state.batch.weights), state.d_out,
                                                        state.per_sample));
  zero_parameters<S>(state.grads);
  state.model.backward(state.workspace, state.acts, state.d_out, state.grads);
  state.refresh_spans();
  const std::span<const std::span<S>> params(state.param_spans), grads(state.grad_spans);
  r.grad_norm = state.options.max_grad_norm > 0.0 ? clip_grad_norm(grads, state.options.max_grad_norm)
                                                  : grad_norm(grads);
  r.lr = state.options.lr_schedule.lr(state.step + state.options.lr_step_offset);
  state.optimizer.set_lr(r.lr);
  state.optimizer.step(params, grads);
  state.model.mark_weights_changed();
  if (state.ema) state.ema->step(params);
  ++state.step;
  return r;
}

/// What the loop's callback sees after each step.
struct TrainProgress {
  std::int64_t step = 0;        ///< steps taken so far (the state's step)
  std::int64_t total = 0;       ///< the step this run ends at
  StepResult result;            ///< of the step just taken
  double seconds = 0;           ///< since the loop started
  double steps_per_second = 0;  ///< of this run
  double eta_seconds = 0;       ///< at this run's rate
};

/// A loop callback: returns true to continue, false to stop early.
template <class C>
concept TrainCallback = requires(C& c, const TrainProgress& p) {
  { c(p) } -> std::convertible_to<bool>;
};

/// Runs train_step `steps` times (from the state's current step), calling callback(progress) after each;
/// a callback returning false stops the loop. Returns the number of steps taken.
/// Throws ddpm::invalid_argument if steps < 0, and whatever train_step throws.
template <std::floating_point S, DataSource<S> D, TrainCallback C>
std::int64_t train(TrainState<S>& state, D&& data, std::int64_t steps, C&& callback) {
  if (steps < 0) {
    ddpm::detail::throw_invalid_argument("ddpm::nn::train: steps is " + ddpm::detail::number_string(steps) + ", but must be >= 0");
  }
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  const std::int64_t first = state.step;
  TrainProgress p;
  p.total = first + steps;
  for (std::int64_t k = 0; k < steps; ++k) {
    p.result = train_step(state, data);
    p.step = state.step;
    p.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    p.steps_per_second = p.seconds > 0 ? static_cast<double>(k + 1) / p.seconds : 0.0;
    p.eta_seconds = p.steps_per_second > 0 ? static_cast<double>(steps - k - 1) / p.steps_per_second : 0.0;
    if (!static_cast<bool>(callback(std::as_const(p)))) return k + 1;
  }
  return steps;
}

/// The loop without a callback.
template <std::floating_point S, DataSource<S> D>
std::int64_t train(TrainState<S>& state, D&& data, std::int64_t steps) {
  return train(state, std::forward<D>(data), steps, [](const TrainProgress&) { return true; });
}

/// The EMA weights as a model (a copy of the state's model with the averaged weights, prepared for
/// inference); without an EMA, a prepared copy of the model.
template <std::floating_point S>
UNet2D<S> ema_model(TrainState<S>& state) {
  UNet2D<S> m = state.model;
  if (state.ema) {
    std::vector<std::span<S>> spans;
    for (const Parameter<S>& p : m.parameters()) spans.emplace_back(p.data, static_cast<std::size_t>(p.numel()));
    state.ema->copy_to(std::span<const std::span<S>>(spans));
  }
  m.prepare();
  return m;
}

namespace detail {
template <class S>
constexpr io::DType exact_dtype() {
  return sizeof(S) > 4 ? io::DType::F64 : io::DType::F32;
}
inline std::int64_t metadata_integer(const io::Safetensors& st, const std::string& path, const std::string& key) {
  const auto it = st.metadata().find(key);
  if (it == st.metadata().end()) {
    ddpm::detail::throw_format_error("ddpm::nn::load_checkpoint: " + path + " has no metadata '" + key + "'");
  }
  try {
    std::size_t used = 0;
    const long long v = std::stoll(it->second, &used);
    if (used != it->second.size()) throw std::invalid_argument("trailing");
    return v;
  } catch (const std::exception&) {
    ddpm::detail::throw_format_error("ddpm::nn::load_checkpoint: " + path + " has metadata '" + key + "' = '" +
                                     it->second + "', but it must be an integer");
  }
}
}  // namespace detail

/// Saves a resumable checkpoint in `dir`: the weights as save_pretrained writes them (config.json and
/// diffusion_pytorch_model.safetensors, at the model's own precision so that nothing is rounded), and
/// training_state.safetensors: the AdamW state ("optimizer"), the EMA ("ema") and metadata "trainer.step",
/// "trainer.noise_seed", "trainer.noise_offset".
/// Throws ddpm::format_error if a file cannot be written.
template <std::floating_point S>
void save_checkpoint(TrainState<S>& state, const std::string& dir) {
  save_pretrained(state.model, dir, detail::exact_dtype<S>());
  io::SafetensorsWriter w;
  io::add_state(w, state.optimizer, "optimizer");
  if (state.ema) io::add_state(w, *state.ema, "ema");
  w.set_metadata("trainer.step", ddpm::detail::number_string(state.step));
  w.set_metadata("trainer.noise_seed", ddpm::detail::number_string(state.noise.seed()));
  w.set_metadata("trainer.noise_offset", ddpm::detail::number_string(state.noise.offset()));
  w.save(dir + "/training_state.safetensors");
}

/// Loads a checkpoint written by save_checkpoint into `state` (built with the same config and options):
/// weights, optimiser, EMA, step and noise stream; the next train_step continues the saved run bit for bit.
/// Throws ddpm::format_error if a file is missing or malformed, or the weights do not fit the model.
template <std::floating_point S>
void load_checkpoint(TrainState<S>& state, const std::string& dir) {
  const std::string path = dir + "/training_state.safetensors";
  const io::Safetensors st = io::Safetensors::load(path);
  state.model.load_weights(dir + "/diffusion_pytorch_model.safetensors");
  state.optimizer = io::read_optimizer<AdamW<S>>(st, "optimizer");
  if (state.options.use_ema) state.ema = io::read_ema<S>(st, "ema");
  const std::int64_t step = detail::metadata_integer(st, path, "trainer.step");
  const auto seed = static_cast<std::uint64_t>(std::stoull(st.metadata().at("trainer.noise_seed")));
  const auto offset = static_cast<std::uint64_t>(std::stoull(st.metadata().at("trainer.noise_offset")));
  state.step = step;
  state.noise = NoiseSource(seed, offset);
  state.model.mark_weights_changed();
}

}  // namespace ddpm::nn
