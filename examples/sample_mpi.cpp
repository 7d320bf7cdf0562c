// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors

// sample_mpi: N images sampled over the ranks of an MPI job, gathered on rank 0 into a PNG grid and an
// uncompressed .npz of uint8 NHWC images (array arr_0, the layout FID evaluators read).
//
//   mpirun -np 4 sample_mpi --num 50000 --model DIR --sampler ddim --steps 50 --out-npz samples.npz
//   sample_mpi --num 64 --out-png grid.png          # one process; the Gaussian-mixture demo model
//
// Images are numbered 0 .. N-1 and sampled in micro-batches of --batch images at fixed positions
// [k B, (k + 1) B); each rank takes a contiguous run of whole micro-batches. Image i's noise (x_T and every
// step's) comes from its own stream, ddpm::PerImageNoiseSource(seed, i): numbers 0 .. P-1 for x_T, from 2^40
// on for the steps (as in sample_unet). A micro-batch is then the same computation whatever rank samples it,
// so the result is bit-identical for any number of ranks, and to the run without mpirun (MPI's singleton
// mode), as long as --num, --batch, the model and the sampler options are the same (docs/reproducibility.md).
// A rank that fails prints its error and ends the whole job with MPI_Abort.
//
// Models: --model DIR, a diffusers UNet2DModel folder (config.json + diffusion_pytorch_model.safetensors, or a
// pipeline folder with unet/), sampled with the DDPM checkpoints' schedule (linear betas 1e-4 .. 0.02,
// T = 1000, epsilon prediction, x0 clipped to [-1, 1] by DDPM and DDIM); without --model, the demo: the exact
// denoiser (ddpm::GaussianMixturePredictor) of a mixture of four 3 x 16 x 16 pictures with per-pixel noise.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <mpi.h>

#include "common/cli.hpp"
#include "common/npz.hpp"
#include "ddpm/ddpm.hpp"
#include "ddpm/io/image.hpp"
#include "ddpm/nn/unet2d.hpp"

namespace {

namespace fs = std::filesystem;
using Batch = ddpm::Tensor<float, 4>;  // NCHW

// Where each image's step noise starts in its stream (x_T is numbers 0 .. P-1), as in sample_unet.
constexpr std::uint64_t kStepNoiseOffset = std::uint64_t{1} << 40;
// The largest MPI message, in elements (MPI counts are ints).
constexpr std::size_t kMaxMessage = std::size_t{1} << 30;

/// A model, evaluated on one micro-batch at a time.
struct Model {
  std::function<Batch(const Batch&, int)> eval;
  int channels = 3, height = 16, width = 16;
  std::string description;
};

// The demo: four pictures (a red disc, green stripes, a blue checkerboard, a yellow-to-magenta ramp) in
// [-1, 1], each the mean of a component with per-pixel standard deviation 0.1. Its exact denoiser is a
// perfectly trained model, so the samples are those pictures with a little noise.
Model mixture_model(const ddpm::NoiseSchedule<float>& schedule) {
  constexpr int C = 3, H = 16, W = 16;
  std::vector<std::vector<double>> means(4, std::vector<double>(C * H * W));
  auto at = [](std::vector<double>& m, int c, int y, int x) -> double& { return m[(c * H + y) * W + x]; };
  for (int y = 0; y < H; ++y) {
    for (int x = 0; x < W; ++x) {
      const double r2 = (y - 7.5) * (y - 7.5) + (x - 7.5) * (x - 7.5);
      const bool disc = r2 < 36.0, stripe = (y / 2) % 2 == 0, check = ((y / 4) + (x / 4)) % 2 == 0;
      const double ramp = x / 7.5 - 1.0;
      for (int c = 0; c < C; ++c) {
        at(means[0], c, y, x) = c == 0 && disc ? 0.9 : -0.8;
        at(means[1], c, y, x) = c == 1 && stripe ? 0.8 : -0.7;
        at(means[2], c, y, x) = c == 2 ? (check ? 0.9 : -0.9) : -0.6;
        at(means[3], c, y, x) = c == 0 ? 0.8 : c == 1 ? -ramp : ramp;
      }
    }
  }
  auto gmm = std::make_shared<ddpm::GaussianMixturePredictor<float>>(schedule, std::vector<double>{1, 1, 1, 1}, means,
                                                                     std::vector<double>{0.1, 0.1, 0.1, 0.1});
  return {[gmm](const Batch& x, int t) { return (*gmm)(x, t); }, C, H, W,
          "the exact denoiser of a mixture of four 3 x 16 x 16 pictures (demo)"};
}

Model unet_model(const std::string& arg, int threads) {
  fs::path dir(arg);
  std::error_code ec;
  if (!fs::exists(dir / "config.json", ec) && fs::exists(dir / "unet" / "config.json", ec)) dir /= "unet";
  auto unet = std::make_shared<ddpm::nn::UNet2D<float>>(ddpm::nn::UNet2D<float>::from_pretrained(dir.string()));
  unet->set_num_threads(threads);
  const ddpm::nn::UNet2DConfig& config = unet->config();
  if (!config.sample_size) throw std::runtime_error(dir.string() + "/config.json has no sample_size");
  Model m{[unet](const Batch& x, int t) { return (*unet)(x, t); }, static_cast<int>(config.in_channels),
          (*config.sample_size)[0], (*config.sample_size)[1],
          "UNet " + dir.string() + " (" + std::to_string(unet->num_parameters()) + " parameters)"};
  return m;
}

struct Options {
  std::string sampler = "ddim";
  int steps = 20;
  double eta = 0.0;
  std::uint64_t seed = 0;
};

/// Samples images first .. first + count - 1 (one micro-batch) into out (count x C x H x W).
template <class Sampler>
Batch run_batch(Sampler& sampler, Model& model, std::uint64_t seed, std::uint64_t first, Eigen::Index count) {
  Batch x_T(count, model.channels, model.height, model.width);
  ddpm::PerImageNoiseSource initial(seed, first);
  initial(x_T);
  ddpm::PerImageNoiseSource steps(seed, first, kStepNoiseOffset);
  return ddpm::sample(sampler, model.eval, std::move(x_T), steps);
}

Batch sample_range(const Options& o, Model& model, const ddpm::NoiseSchedule<float>& schedule, std::uint64_t first,
                   Eigen::Index count) {
  const auto clip = ddpm::Clipping::clip();
  if (o.sampler == "ddpm") {
    ddpm::DDPMSampler<float> s(schedule, {.grid = {.num_inference_steps = o.steps}, .clipping = clip});
    return run_batch(s, model, o.seed, first, count);
  }
  if (o.sampler == "ddim") {
    ddpm::DDIMSampler<float> s(schedule, {.grid = {.num_inference_steps = o.steps}, .eta = o.eta, .clipping = clip});
    return run_batch(s, model, o.seed, first, count);
  }
  if (o.sampler == "euler") {
    ddpm::EulerSampler<float> s(schedule, {.grid = {.num_inference_steps = o.steps}});
    return run_batch(s, model, o.seed, first, count);
  }
  if (o.sampler == "euler_a") {
    ddpm::EulerAncestralSampler<float> s(schedule, {.grid = {.num_inference_steps = o.steps}});
    return run_batch(s, model, o.seed, first, count);
  }
  if (o.sampler == "heun") {
    ddpm::HeunSampler<float> s(schedule, {.grid = {.num_inference_steps = o.steps}});
    return run_batch(s, model, o.seed, first, count);
  }
  ddpm::DPMSolverMultistepSampler<float> s(schedule, {.grid = {.num_inference_steps = o.steps}});
  return run_batch(s, model, o.seed, first, count);
}

/// The bytes of images x (NCHW floats in [-1, 1]) as NHWC uint8, appended to out.
void append_nhwc(const Batch& x, std::vector<std::uint8_t>& out) {
  const Eigen::Index n = x.dimension(0), c = x.dimension(1), h = x.dimension(2), w = x.dimension(3);
  for (Eigen::Index b = 0; b < n; ++b) {
    for (Eigen::Index y = 0; y < h; ++y) {
      for (Eigen::Index xx = 0; xx < w; ++xx) {
        for (Eigen::Index k = 0; k < c; ++k) {
          const float v = x(b, k, y, xx);
          if (!std::isfinite(v)) throw std::runtime_error("a sample holds a non-finite value");
          out.push_back(ddpm::value_to_pixel(v));
        }
      }
    }
  }
}

/// Up to `limit` images of the NHWC bytes tiled 8 per row with 2-pixel black borders.
ddpm::Image grid_image(const std::vector<std::uint8_t>& nhwc, std::size_t count, int c, int h, int w) {
  const int cols = static_cast<int>(std::min<std::size_t>(8, count));
  const int rows = static_cast<int>((count + cols - 1) / static_cast<std::size_t>(cols));
  ddpm::Image grid(cols * (w + 2) + 2, rows * (h + 2) + 2, c, 0);
  const std::size_t per = static_cast<std::size_t>(c) * h * w;
  for (std::size_t k = 0; k < count; ++k) {
    const int y0 = 2 + static_cast<int>(k / cols) * (h + 2), x0 = 2 + static_cast<int>(k % cols) * (w + 2);
    for (int y = 0; y < h; ++y) {
      for (int x = 0; x < w; ++x) {
        for (int ch = 0; ch < c; ++ch) grid.at(y0 + y, x0 + x, ch) = nhwc[k * per + (y * w + x) * c + ch];
      }
    }
  }
  return grid;
}

template <class T>
MPI_Datatype mpi_type();
template <>
MPI_Datatype mpi_type<std::uint8_t>() {
  return MPI_UNSIGNED_CHAR;
}
template <>
MPI_Datatype mpi_type<float>() {
  return MPI_FLOAT;
}

/// Rank 0 receives `count` values from `source` into data, in messages of at most kMaxMessage; other ranks
/// send. Tag = the message number.
template <class T>
void transfer(T* data, std::size_t count, int source, bool receive) {
  int tag = 0;
  for (std::size_t done = 0; done < count; done += kMaxMessage, ++tag) {
    const int n = static_cast<int>(std::min(kMaxMessage, count - done));
    if (receive) {
      MPI_Recv(data + done, n, mpi_type<T>(), source, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    } else {
      MPI_Send(data + done, n, mpi_type<T>(), 0, tag, MPI_COMM_WORLD);
    }
  }
}

int run(int argc, char** argv, int rank, int ranks) {
  examples::CommandLine cli(
      "sample_mpi",
      "Samples --num images over the ranks of an MPI job (per-image noise streams, contiguous shares of whole\n"
      "micro-batches), gathers them on rank 0 and writes a PNG grid and an uncompressed .npz of uint8 NHWC\n"
      "images (arr_0). Bit-identical for any number of ranks. Without --model: a Gaussian-mixture demo.");
  cli.option("model", "DIR", "a diffusers UNet2DModel folder (default: the Gaussian-mixture demo)", "");
  cli.option("sampler", "NAME", "ddpm, ddim, euler, euler_a, heun or dpm++", "ddim");
  cli.option("steps", "N", "number of sampling steps", "20");
  cli.option("eta", "X", "DDIM's eta in [0, 1]", "0");
  cli.option("num", "N", "number of images", "64");
  cli.option("batch", "B", "images per model call (the result depends on it, not on the ranks)", "16");
  cli.option("seed", "N", "noise seed; image i draws stream i of it", "0");
  cli.option("threads", "N", "threads of the UNet's forward pass on each rank", "1");
  cli.option("out-png", "PATH", "the grid of the first --grid images (\"\": none)", "sample_mpi.png");
  cli.option("grid", "N", "images in the PNG grid", "64");
  cli.option("out-npz", "PATH", "the .npz of uint8 NHWC images, array arr_0 (\"\": none)", "sample_mpi.npz");
  cli.option("out-raw", "PATH", "also the float32 NCHW samples as .npy (\"\": none)", "");
  cli.option("fail-rank", "R", "(testing) rank R throws after sampling its first micro-batch", "-1");
  if (!cli.parse(argc, argv)) return 0;
  Options o;
  o.sampler = cli.get("sampler");
  if (o.sampler != "ddpm" && o.sampler != "ddim" && o.sampler != "euler" && o.sampler != "euler_a" &&
      o.sampler != "heun" && o.sampler != "dpm++") {
    throw examples::UsageError("--sampler is \"" + o.sampler + "\", but must be ddpm, ddim, euler, euler_a, heun or dpm++");
  }
  o.steps = static_cast<int>(cli.get_integer("steps", 1, 1000));
  o.eta = cli.get_double("eta", 0.0, 1.0);
  o.seed = cli.get_u64("seed");
  const auto num = static_cast<std::size_t>(cli.get_integer("num", 1, 10000000));
  const auto batch = static_cast<std::size_t>(cli.get_integer("batch", 1, 4096));
  const int threads = static_cast<int>(cli.get_integer("threads", 1, 1024));
  const auto grid_count = static_cast<std::size_t>(cli.get_integer("grid", 1, 4096));
  const int fail_rank = static_cast<int>(cli.get_integer("fail-rank", -1, 1 << 20));
  const std::string png = cli.get("out-png"), npz = cli.get("out-npz"), raw = cli.get("out-raw");

  const auto schedule = ddpm::NoiseSchedule<float>::linear(1000, 1e-4, 0.02);
  Model model = cli.get("model").empty() ? mixture_model(schedule) : unet_model(cli.get("model"), threads);

  // Rank r takes micro-batches [r M / R, (r + 1) M / R): contiguous image indices.
  const std::size_t micro = (num + batch - 1) / batch;
  const std::size_t first_micro = micro * static_cast<std::size_t>(rank) / static_cast<std::size_t>(ranks);
  const std::size_t end_micro = micro * static_cast<std::size_t>(rank + 1) / static_cast<std::size_t>(ranks);
  auto images_before = [&](std::size_t m) { return std::min(num, m * batch); };
  const std::size_t first = images_before(first_micro), share = images_before(end_micro) - first;
  const std::size_t per_image = static_cast<std::size_t>(model.channels) * model.height * model.width;
  if (rank == 0) {
    std::printf("sample_mpi: %zu images of %d x %d x %d over %d rank%s, micro-batches of %zu, %s %d steps, seed %llu\n",
                num, model.channels, model.height, model.width, ranks, ranks == 1 ? "" : "s", batch,
                o.sampler.c_str(), o.steps, static_cast<unsigned long long>(o.seed));
    std::printf("model: %s\n", model.description.c_str());
    std::fflush(stdout);
  }

  MPI_Barrier(MPI_COMM_WORLD);
  const double start = MPI_Wtime();
  std::vector<std::uint8_t> bytes;
  std::vector<float> values;
  bytes.reserve(share * per_image);
  if (!raw.empty()) values.reserve(share * per_image);
  for (std::size_t m = first_micro; m < end_micro; ++m) {
    const std::size_t lo = images_before(m), hi = images_before(m + 1);
    const Batch x = sample_range(o, model, schedule, lo, static_cast<Eigen::Index>(hi - lo));
    append_nhwc(x, bytes);
    if (!raw.empty()) values.insert(values.end(), x.data(), x.data() + x.size());
    if (rank == fail_rank) throw std::runtime_error("failing on purpose (--fail-rank " + std::to_string(fail_rank) + ")");
  }
  const double sampled = MPI_Wtime() - start;

  // Gather on rank 0, in rank order (= image order).
  if (rank != 0) {
    transfer(bytes.data(), bytes.size(), 0, false);
    if (!raw.empty()) transfer(values.data(), values.size(), 0, false);
  } else {
    bytes.resize(num * per_image);
    if (!raw.empty()) values.resize(num * per_image);
    for (int r = 1; r < ranks; ++r) {
      const std::size_t rf = images_before(micro * static_cast<std::size_t>(r) / static_cast<std::size_t>(ranks));
      const std::size_t re = images_before(micro * static_cast<std::size_t>(r + 1) / static_cast<std::size_t>(ranks));
      transfer(bytes.data() + rf * per_image, (re - rf) * per_image, r, true);
      if (!raw.empty()) transfer(values.data() + rf * per_image, (re - rf) * per_image, r, true);
    }
  }
  double slowest = 0.0;
  MPI_Reduce(&sampled, &slowest, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
  const double total = MPI_Wtime() - start;
  if (rank == 0) {
    std::printf("sampled %zu images in %.3f s (slowest rank %.3f s): %.2f images/s\n", num, total, slowest,
                static_cast<double>(num) / total);
    const auto c = static_cast<std::uint64_t>(model.channels), h = static_cast<std::uint64_t>(model.height),
               w = static_cast<std::uint64_t>(model.width);
    if (!npz.empty()) {
      const examples::NpyArray arr{"arr_0", "|u1", {num, h, w, c}, std::span<const unsigned char>(bytes.data(), bytes.size())};
      examples::write_npz(npz, std::span<const examples::NpyArray>(&arr, 1));
      std::printf("wrote %s (arr_0: uint8 [%zu, %llu, %llu, %llu], NHWC)\n", npz.c_str(), num,
                  static_cast<unsigned long long>(h), static_cast<unsigned long long>(w),
                  static_cast<unsigned long long>(c));
    }
    if (!raw.empty()) {
      std::FILE* f = std::fopen(raw.c_str(), "wb");
      if (f == nullptr) throw std::runtime_error("cannot open \"" + raw + "\" for writing");
      const std::string header = examples::npy_header({"", "<f4", {num, c, h, w}, {}});
      const bool ok = std::fwrite(header.data(), 1, header.size(), f) == header.size() &&
                      std::fwrite(values.data(), sizeof(float), values.size(), f) == values.size();
      if (std::fclose(f) != 0 || !ok) throw std::runtime_error("writing \"" + raw + "\" failed");
      std::printf("wrote %s (float32 [%zu, %llu, %llu, %llu], NCHW)\n", raw.c_str(), num,
                  static_cast<unsigned long long>(c), static_cast<unsigned long long>(h),
                  static_cast<unsigned long long>(w));
    }
    if (!png.empty()) {
      const std::size_t shown = std::min(grid_count, num);
      ddpm::write_png(png, grid_image(bytes, shown, model.channels, model.height, model.width));
      std::printf("wrote %s (%zu images)\n", png.c_str(), shown);
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  // Any error on any rank ends the whole job: the other ranks may be waiting for this one in a collective
  // or a receive, and would otherwise wait forever.
  int status = 0;
  try {
    status = run(argc, argv, rank, ranks);
  } catch (const examples::UsageError& e) {
    if (rank == 0) std::fprintf(stderr, "sample_mpi: error: %s\n(try sample_mpi --help)\n", e.what());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 2);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sample_mpi: rank %d of %d: error: %s\n", rank, ranks, e.what());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  MPI_Finalize();
  return status;
}
