// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
//
// train_digits: trains a class-conditional UNet from scratch on the 1797 8x8 handwritten digits (UCI optical
// digits, as scikit-learn ships them), then samples 10 digits of every class with classifier-free guidance
// through DDIM and measures the result: a 3-nearest-neighbour classifier fitted on real digits labels the
// samples, and each sample's distance to its nearest training image is compared with the typical distance
// between two real digits (samples must not be copies).
//
//   train_digits --data digits.csv.gz [--steps 2000] [--batch 64] [--threads 2] [--seed 0] [--out DIR]
//                [--eval-every N]
//
// The recipe (docs/training.md, "Training a UNet"): UNet2DModel (32, 64) channels, one layer per block,
// attention at 4x4, 11 class embeddings (10 = the null class), label dropout 0.1; linear betas, T = 1000;
// AdamW lr 2e-3, betas (0.95, 0.999), weight decay 1e-6, 100 warm-up steps; clip 1.0; EMA (warm-up decay,
// at most 0.999); DDIM 50 steps with CFG scale 3 from the EMA weights.
// Writes DIR/unet (save_pretrained, EMA weights), DIR/scheduler/scheduler_config.json, DIR/checkpoint (the
// resumable training state) and DIR/digits.png (one row per class: samples, then real digits). With
// --eval-every N, the EMA weights are also sampled and scored every N steps (DIR/digits_step<k>.png), outside
// the training time, which gives the curve of the score against training time.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <numeric>
#include <string>
#include <vector>

#include "common/cli.hpp"
#include "common/digits_eval.hpp"
#include "common/draw.hpp"
#include "common/progress.hpp"
#include "ddpm/io/digits.hpp"
#include "ddpm/io/image.hpp"
#include "ddpm/nn/save_pretrained.hpp"
#include "ddpm/nn/trainer.hpp"
#include "ddpm/predictor.hpp"
#include "ddpm/sample.hpp"
#include "ddpm/samplers/ddim.hpp"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using Batch = ddpm::Tensor<float, 4>;

constexpr int kClasses = 10;
constexpr int kNullClass = 10;
constexpr int kPerClass = 10;  // samples per class in the grid and the score
constexpr int kRealPerClass = 5;
constexpr double kGuidance = 3.0;

ddpm::nn::UNet2DConfig digits_config() {
  ddpm::nn::UNet2DConfig c;
  c.sample_size = std::array<int, 2>{8, 8};
  c.in_channels = 1;
  c.out_channels = 1;
  c.block_out_channels = {32, 64};
  c.layers_per_block = 1;
  c.down_block_types = {"DownBlock2D", "AttnDownBlock2D"};
  c.up_block_types = {"AttnUpBlock2D", "UpBlock2D"};
  c.norm_num_groups = 8;
  c.attention_head_dim = 8;
  c.num_class_embeds = kClasses + 1;
  return c;
}

// PyTorch's default initialisation of each layer (kaiming-uniform weights with a = sqrt(5), i.e.
// U(-1/sqrt(fan_in), 1/sqrt(fan_in)), biases the same bound; norms at weight 1, bias 0; embeddings N(0, 1)),
// from a fixed uniform stream.
void init_weights(ddpm::nn::UNet2D<float>& model, std::uint64_t seed) {
  ddpm::NoiseSource noise(seed ^ 0x5eedull);
  std::int64_t last_fan_in = 1;
  for (const auto& p : model.parameters()) {
    const bool is_norm = p.name.find("norm") != std::string::npos;
    const bool is_bias = p.name.size() >= 5 && p.name.compare(p.name.size() - 5, 5, ".bias") == 0;
    const auto n = static_cast<std::size_t>(p.numel());
    if (is_norm) {
      std::fill_n(p.data, n, is_bias ? 0.0f : 1.0f);
      continue;
    }
    if (p.name.find("class_embedding") != std::string::npos) {
      noise.fill(std::span<float>(p.data, n));
      continue;
    }
    std::int64_t fan_in = last_fan_in;
    if (!is_bias) {
      fan_in = 1;
      for (std::size_t d = 1; d < p.shape.size(); ++d) fan_in *= p.shape[d];
      last_fan_in = fan_in;
    }
    const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
    std::vector<double> u(n);
    noise.uniform(std::span<double>(u));
    for (std::size_t i = 0; i < n; ++i) p.data[i] = static_cast<float>((2.0 * u[i] - 1.0) * bound);
  }
  model.prepare();
}

// Uniform minibatches with replacement; the indices of step k depend on (seed, k) only, so a resumed run
// sees the same batches.
struct DigitBatches {
  const ddpm::io::Digits<float>* digits;
  Eigen::Index batch;
  std::uint64_t seed;
  void operator()(std::int64_t step, ddpm::nn::DataBatch<float>& out) const {
    const Eigen::Index n = digits->size();
    out.x0.resize(batch, 1, 8, 8);
    out.labels.resize(static_cast<std::size_t>(batch));
    std::uint64_t state = seed * 0x9E3779B97F4A7C15ull + static_cast<std::uint64_t>(step);
    for (Eigen::Index b = 0; b < batch; ++b) {
      const auto i = static_cast<Eigen::Index>(examples::detail::splitmix64(state) % static_cast<std::uint64_t>(n));
      std::copy_n(digits->images.data() + i * 64, 64, out.x0.data() + b * 64);
      out.labels[static_cast<std::size_t>(b)] = digits->labels[static_cast<std::size_t>(i)];
    }
  }
};

// One 8x8 image into the grid at (x, y), scaled by `scale`.
void put_digit(ddpm::Image& grid, const float* pixels, int x, int y, int scale) {
  for (int r = 0; r < 8 * scale; ++r) {
    for (int c = 0; c < 8 * scale; ++c) {
      const std::uint8_t v = ddpm::value_to_pixel(std::clamp(pixels[(r / scale) * 8 + c / scale], -1.0f, 1.0f));
      for (int ch = 0; ch < 3; ++ch) grid.at(y + r, x + c, ch) = v;
    }
  }
}

// What one evaluation of the EMA weights found.
struct Evaluation {
  Batch samples;
  double classified = 0;  // fraction the 3-NN labels as the class asked for
  double median_nearest = 0, mean_nearest = 0, min_nearest = 0;
  double seconds = 0;  // sampling time
};

// Samples kPerClass digits of every class from `ema` (DDIM 50, x0 clipped, CFG kGuidance with the null class in
// one doubled batch) from the noise stream `seed` and scores them against the real digits.
Evaluation evaluate(ddpm::nn::UNet2D<float>& ema, const ddpm::NoiseSchedule<float>& schedule, int threads,
                    std::uint64_t seed, const examples::KnnClassifier<float>& knn,
                    const ddpm::io::Digits<float>& digits) {
  ema.prepare();  // a model whose weights were written (saved, copied) is prepared before a pass
  ema.set_num_threads(threads);
  std::vector<int> requested(kClasses * kPerClass);
  for (int i = 0; i < kClasses * kPerClass; ++i) requested[static_cast<std::size_t>(i)] = i / kPerClass;
  std::vector<int> doubled_labels(requested.size(), kNullClass);
  doubled_labels.insert(doubled_labels.end(), requested.begin(), requested.end());
  auto both = [&](const Batch& x, int t) { return ema(x, t, std::span<const int>(doubled_labels)); };
  ddpm::BatchedClassifierFreeGuidance guided(both, kGuidance);
  ddpm::DDIMSampler<float> sampler(schedule, {.grid = {.num_inference_steps = 50}, .clipping = ddpm::Clipping::clip()});
  ddpm::PerImageNoiseSource noise(seed);  // image i's noise depends only on (seed, i), not on the batch
  Batch x_T(kClasses * kPerClass, 1, 8, 8);
  noise(x_T);
  Evaluation e;
  const Clock::time_point start = Clock::now();
  e.samples = ddpm::sample(sampler, guided, std::move(x_T), noise);
  e.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  e.classified = knn.accuracy(e.samples, requested);
  std::vector<double> d;
  for (const auto& nb : examples::nearest_neighbours(e.samples, digits.images)) d.push_back(nb.distance);
  e.median_nearest = examples::median(d);
  e.mean_nearest = std::accumulate(d.begin(), d.end(), 0.0) / static_cast<double>(d.size());
  e.min_nearest = *std::min_element(d.begin(), d.end());
  return e;
}

// The grid: per class, the samples, a gap, real digits of that class.
void write_grid(const std::string& png, const Batch& samples, const ddpm::io::Digits<float>& digits,
                const std::string& caption) {
  constexpr int scale = 4, cell = 8 * scale + 2, gap = 12, top = 16;
  const int width = kPerClass * cell + gap + kRealPerClass * cell;
  ddpm::Image grid(width, top + kClasses * cell, 3, 255);
  examples::draw_text(grid, 2, 2, caption, 1, {0, 0, 0});
  examples::draw_text(grid, kPerClass * cell + gap, 2, "real", 1, {0, 0, 0});
  for (int c = 0; c < kClasses; ++c) {
    for (int j = 0; j < kPerClass; ++j) {
      put_digit(grid, samples.data() + (c * kPerClass + j) * 64, j * cell + 1, top + c * cell + 1, scale);
    }
    int shown = 0;
    for (std::size_t i = 0; i < digits.labels.size() && shown < kRealPerClass; ++i) {
      if (digits.labels[i] != c) continue;
      put_digit(grid, digits.images.data() + static_cast<Eigen::Index>(i) * 64,
                kPerClass * cell + gap + shown * cell + 1, top + c * cell + 1, scale);
      ++shown;
    }
  }
  ddpm::write_png(png, grid);
}

}  // namespace

int main(int argc, char** argv) {
  return examples::main_guard("train_digits", [&] {
    examples::CommandLine cli(
        "train_digits",
        "Trains a class-conditional UNet on the 8x8 handwritten digits from scratch, samples 10 digits of\n"
        "every class with classifier-free guidance (DDIM 50, scale 3, EMA weights), writes them as a PNG grid\n"
        "beside real digits and prints how many a k-NN classifier of real digits recognises as their class.");
    cli.option("data", "PATH", "digits.csv.gz (scripts/get-digits.sh prints where it is)",
               std::string(ddpm::io::kSklearnDigitsPath));
    cli.option("steps", "N", "training steps", "2000");
    cli.option("batch", "N", "images per step", "64");
    cli.option("threads", "N", "threads of the training and sampling passes", "2");
    cli.option("seed", "N", "seed of the initial weights, batches, noise and samples", "0");
    cli.option("out", "DIR", "where to write unet/, scheduler/, checkpoint/ and digits.png", "train_digits_out");
    cli.option("eval-every", "N", "also sample and score the EMA weights every N steps (0: only at the end)", "0");
    cli.flag("smoke", "a quick check: 40 steps of batch 16 (unless --steps/--batch say otherwise)");
    if (!cli.parse(argc, argv)) return 0;
    const bool smoke = cli.has("smoke");
    const std::int64_t steps = cli.has("steps") || !smoke ? cli.get_integer("steps", 1, 10000000) : 40;
    const Eigen::Index batch = cli.has("batch") || !smoke ? cli.get_integer("batch", 1, 65536) : 16;
    const int threads = static_cast<int>(cli.get_integer("threads", 1, 1024));
    const std::uint64_t seed = cli.get_u64("seed");
    const std::string out_dir = cli.get("out");
    const std::int64_t eval_every = cli.get_integer("eval-every", 0, 10000000);
    std::error_code ec;
    fs::create_directories(out_dir, ec);
    if (!fs::is_directory(out_dir)) throw examples::UsageError("--out is \"" + out_dir + "\", but cannot be created");

    // The data and the classifier that scores the samples.
    const ddpm::io::Digits<float> digits = ddpm::io::load_digits<float>(cli.get("data"));
    const examples::DigitSplit split = examples::split_digits(digits.labels, 0.2, 0);
    const examples::KnnClassifier<float> knn(examples::take_images(digits.images, split.train),
                                             examples::take_labels(digits.labels, split.train), 3);
    const double knn_accuracy = knn.accuracy(examples::take_images(digits.images, split.held_out),
                                             examples::take_labels(digits.labels, split.held_out));
    std::printf("digits: %lld images of 8 x 8; 3-NN classifier held-out accuracy %.3f (%zu train / %zu held out)\n",
                static_cast<long long>(digits.size()), knn_accuracy, split.train.size(), split.held_out.size());

    // The model and the recipe.
    ddpm::nn::UNet2D<float> model(digits_config());
    init_weights(model, seed);
    std::printf("model: UNet2DModel (32, 64), attention at 4x4, 11 classes: %lld parameters\n",
                static_cast<long long>(model.num_parameters()));
    ddpm::nn::TrainOptions options;
    options.optimizer = {.lr = 2e-3, .beta1 = 0.95, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 1e-6};
    options.lr_schedule = ddpm::LRSchedule::constant_with_warmup(2e-3, 100);
    options.lr_step_offset = 1;  // LambdaLR of min(1, (k + 1) / 100), as the PyTorch reference
    options.max_grad_norm = 1.0;
    options.label_dropout = 0.1;
    options.null_class = kNullClass;
    options.ema = {.decay = 0.999, .min_decay = 0.0, .update_after_step = 0, .use_ema_warmup = true,
                   .inv_gamma = 1.0, .power = 0.75};
    const ddpm::NoiseSchedule<float> schedule = ddpm::NoiseSchedule<float>::linear(1000, 1e-4, 0.02);
    ddpm::nn::TrainState<float> state(std::move(model), schedule, options, seed, threads);
    const DigitBatches data{&digits, batch, seed};

    // Training, with the optional evaluations outside the training time.
    std::vector<double> losses;
    examples::ProgressBar bar("training", steps);
    double train_s = 0, eval_s = 0;
    Clock::time_point last = Clock::now();
    ddpm::nn::train(state, data, steps, [&](const ddpm::nn::TrainProgress& p) {
      losses.push_back(p.result.loss);
      const std::size_t recent = std::min<std::size_t>(losses.size(), 50);
      const double loss = std::accumulate(losses.end() - static_cast<std::ptrdiff_t>(recent), losses.end(), 0.0) /
                          static_cast<double>(recent);
      char note[32];
      std::snprintf(note, sizeof note, "loss %.4f", loss);
      bar.update(p.step, note);
      if (eval_every > 0 && p.step % eval_every == 0 && p.step < steps) {
        const Clock::time_point now = Clock::now();
        train_s += std::chrono::duration<double>(now - last).count();
        ddpm::nn::UNet2D<float> ema = ddpm::nn::ema_model(state);
        const Evaluation e = evaluate(ema, schedule, threads, seed + 1, knn, digits);
        const std::string png = out_dir + "/digits_step" + std::to_string(p.step) + ".png";
        write_grid(png, e.samples, digits, "step " + std::to_string(p.step));
        std::fprintf(stderr, "%s", "\n");
        std::printf("eval: step %lld, training time %.1f s, loss %.4f, classified %.3f, nearest/pairwise median "
                    "%.3f (%s)\n",
                    static_cast<long long>(p.step), train_s, loss, e.classified,
                    e.median_nearest / examples::median_pairwise_distance(digits.images), png.c_str());
        std::fflush(stdout);
        last = Clock::now();
        eval_s += std::chrono::duration<double>(last - now).count();
      }
      return true;
    });
    bar.finish();
    train_s += std::chrono::duration<double>(Clock::now() - last).count();
    const std::size_t window = std::max<std::size_t>(1, std::min<std::size_t>(100, losses.size() / 4));
    const double first_loss = std::accumulate(losses.begin(), losses.begin() + window, 0.0) / window;
    const double last_loss = std::accumulate(losses.end() - window, losses.end(), 0.0) / window;
    std::printf("training: %lld steps of batch %lld on %d threads in %.1f s (%.1f ms/step)\n",
                static_cast<long long>(steps), static_cast<long long>(batch), threads, train_s,
                1e3 * train_s / static_cast<double>(steps));
    if (eval_every > 0) std::printf("evaluations during training took %.1f s (not counted above)\n", eval_s);
    std::printf("mean loss of the first %zu steps %.4f, of the last %zu steps %.4f\n", window, first_loss, window,
                last_loss);
    if (last_loss < first_loss) std::printf("loss fell from %.4f to %.4f\n", first_loss, last_loss);

    // Checkpoints: the EMA weights as a diffusers folder, the schedule, the resumable state.
    ddpm::nn::UNet2D<float> ema = ddpm::nn::ema_model(state);
    ddpm::nn::save_pretrained(ema, out_dir + "/unet");
    ddpm::nn::save_scheduler_config({}, out_dir + "/scheduler");
    ddpm::nn::save_checkpoint(state, out_dir + "/checkpoint");
    std::printf("wrote %s/unet (EMA weights), %s/scheduler, %s/checkpoint\n", out_dir.c_str(), out_dir.c_str(),
                out_dir.c_str());

    // Sampling: DDIM 50, x0 clipped, CFG 3 with the null class in one doubled batch.
    const Evaluation e = evaluate(ema, schedule, threads, seed + 1, knn, digits);

    // The score.
    const double pairwise = examples::median_pairwise_distance(digits.images);
    std::printf("sampling: %d per class, DDIM 50 with CFG %.0f, in %.1f s\n", kPerClass, kGuidance, e.seconds);
    std::printf("classified as their class by the 3-NN: %.3f (its held-out accuracy on real digits: %.3f)\n",
                e.classified, knn_accuracy);
    std::printf("nearest training image: mean %.3f, median %.3f, min %.3f; median distance of two real digits "
                "%.3f (ratio of medians %.3f)\n",
                e.mean_nearest, e.median_nearest, e.min_nearest, pairwise, e.median_nearest / pairwise);
    std::printf("training time %.1f s\n", train_s);

    const std::string png = out_dir + "/digits.png";
    write_grid(png, e.samples, digits, "samples (DDIM 50, CFG 3)");
    std::printf("wrote %s (%d classes x %d samples beside %d real digits)\n", png.c_str(), kClasses, kPerClass,
                kRealPerClass);
    return 0;
  });
}
