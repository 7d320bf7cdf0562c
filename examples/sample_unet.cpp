// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors

// sample_unet: samples images from a diffusers UNet2DModel checkpoint with any sampler of the library and
// writes them as one PNG grid.
//
//   sample_unet --model DIR [--sampler ddim|config|...] [--steps 50] [--seed 0] [--batch 16] [--out grid.png]
//
// DIR is a folder as diffusers' save_pretrained writes it (config.json + diffusion_pytorch_model.safetensors),
// e.g. google/ddpm-cifar10-32 itself (flat: config.json, diffusion_pytorch_model.safetensors and
// scheduler_config.json at its root), a pipeline's unet/ folder, or the pipeline folder holding unet/. The noise
// schedule, the prediction type and the sampler's options come from DIR/scheduler_config.json (or the pipeline's
// scheduler/scheduler_config.json) when there is one, read by ddpm::io::DiffusersSchedulerConfig as the class
// --sampler names (as diffusers' OtherScheduler.from_config(config) does; --sampler config keeps the file's own
// class), else the class's defaults with the DDPM schedule (linear betas 1e-4 .. 0.02, T = 1000, epsilon).
// A progress bar runs on stderr; the time of every step (the UNet's forward pass and the sampler's update) is
// measured and summarised. Without --model, it says how to get a checkpoint and runs the small random-weight
// test model of the repository (tests/data/unet/tiny) as a smoke demo: its images are noise by design.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include "common/cli.hpp"
#include "common/draw.hpp"
#include "common/progress.hpp"
#include "ddpm/ddpm.hpp"
#include "ddpm/io/image.hpp"
#include "ddpm/io/scheduler_config.hpp"
#include "ddpm/nn/unet2d.hpp"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using Batch = ddpm::Tensor<float, 4>;  // NCHW

// Per-image streams (ddpm::PerImageNoiseSource): image i's x_T is numbers 0 .. P-1 of the seed's stream i (i
// counted from --first-index); the noisy samplers' per-step noise continues that stream from here, far beyond
// (as in gmm2d), so that x_T is the same for every sampler and step count, and an image is the same whatever
// the batch it is sampled in (examples/sample_mpi.cpp uses the same convention).
constexpr std::uint64_t kStepNoiseOffset = std::uint64_t{1} << 40;

constexpr const char* kTestModel = "tests/data/unet/tiny";

// ---------------------------------------------------------------------------------------------------------
// The checkpoint folder.

struct ModelFiles {
  fs::path unet_dir;          // holds config.json and diffusion_pytorch_model.safetensors
  fs::path scheduler_config;  // empty if there is none
};

[[noreturn]] void fail(const std::string& message) { throw std::runtime_error(message); }

// The UNet folder for --model DIR (DIR itself, or DIR/unet for a pipeline folder) and its scheduler config
// (DIR/scheduler_config.json, as the flat google/ddpm-* repositories have it, else
// DIR/../scheduler/scheduler_config.json, as a diffusers pipeline has it).
ModelFiles locate_model(const std::string& arg) {
  const fs::path dir(arg);
  std::error_code ec;
  if (!fs::exists(dir, ec)) fail("--model: \"" + arg + "\" does not exist");
  if (!fs::is_directory(dir, ec)) {
    fail("--model: \"" + arg +
         "\" is not a directory; pass the folder that holds config.json and diffusion_pytorch_model.safetensors");
  }
  ModelFiles files;
  if (fs::exists(dir / "config.json", ec)) {
    files.unet_dir = dir;
  } else if (fs::exists(dir / "unet" / "config.json", ec)) {
    files.unet_dir = dir / "unet";  // a pipeline folder: use its unet/
  } else {
    fail("--model: \"" + arg +
         "\" has no config.json (nor unet/config.json); it must be a diffusers UNet2DModel folder with "
         "config.json and diffusion_pytorch_model.safetensors");
  }
  const fs::path weights = files.unet_dir / "diffusion_pytorch_model.safetensors";
  if (!fs::exists(weights, ec)) {
    if (fs::exists(files.unet_dir / "diffusion_pytorch_model.bin", ec)) {
      fail("--model: \"" + files.unet_dir.string() +
           "\" has only diffusion_pytorch_model.bin (a PyTorch pickle); convert it once with\n"
           "  /usr/bin/python3 tests/reference/make_unet_fixture.py --convert-bin " +
           (files.unet_dir / "diffusion_pytorch_model.bin").string() +
           "\n(see docs/unet.md, \"Getting a checkpoint\")");
    }
    fail("--model: \"" + files.unet_dir.string() + "\" has no diffusion_pytorch_model.safetensors");
  }
  for (const fs::path& candidate :
       {files.unet_dir / "scheduler_config.json", files.unet_dir / ".." / "scheduler" / "scheduler_config.json"}) {
    if (fs::is_regular_file(candidate, ec)) {
      files.scheduler_config = candidate.lexically_normal();
      break;
    }
  }
  return files;
}

// The repository's test model, looked for under the current directory and relative to the executable
// (build/<dir>/examples/sample_unet -> ../../../tests/..., or build/examples/sample_unet -> ../../tests/...).
fs::path find_test_model(const char* argv0) {
  std::vector<fs::path> candidates = {fs::current_path() / kTestModel};
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) exe = fs::absolute(argv0, ec);
  if (!exe.empty()) {
    const fs::path exe_dir = exe.parent_path();
    candidates.push_back(exe_dir / ".." / ".." / ".." / kTestModel);
    candidates.push_back(exe_dir / ".." / ".." / kTestModel);
  }
  std::string tried;
  for (const fs::path& c : candidates) {
    if (fs::exists(c / "config.json", ec) && fs::exists(c / "diffusion_pytorch_model.safetensors", ec)) {
      return c.lexically_normal();
    }
    tried += "\n  " + c.lexically_normal().string();
  }
  fail(std::string("no --model given, and the test model (") + kTestModel + ") was not found; looked in:" + tried +
       "\nrun from the repository root, or pass --model DIR");
}

// ---------------------------------------------------------------------------------------------------------
// The scheduler: diffusers' scheduler_config.json read by ddpm::io::DiffusersSchedulerConfig, for the class
// --sampler names (diffusers' `OtherScheduler.from_config(config)`) or the file's own (--sampler config).

struct SamplerChoice {
  const char* option;         // --sampler NAME
  const char* diffusers_class;  // "" for the config's own class
  const char* label;
};

constexpr SamplerChoice kSamplers[] = {
    {"config", "", ""},
    {"ddpm", "DDPMScheduler", "DDPM"},
    {"ddim", "DDIMScheduler", "DDIM"},
    {"dpm++", "DPMSolverMultistepScheduler", "DPM-Solver++"},
    {"euler", "EulerDiscreteScheduler", "Euler"},
    {"euler_a", "EulerAncestralDiscreteScheduler", "Euler ancestral"},
    {"heun", "HeunDiscreteScheduler", "Heun"},
    {"lms", "LMSDiscreteScheduler", "LMS"},
    {"dpm2", "KDPM2DiscreteScheduler", "DPM2"},
    {"dpm2_a", "KDPM2AncestralDiscreteScheduler", "DPM2 ancestral"},
    {"pndm", "PNDMScheduler", "PNDM"},
    {"dpm++_sde", "DPMSolverSDEScheduler", "DPM++ SDE"},
    {"unipc", "UniPCMultistepScheduler", "UniPC"},
};

std::string sampler_names() {
  std::string list;
  for (const SamplerChoice& c : kSamplers) list += (list.empty() ? "" : ", ") + std::string(c.option);
  return list;
}

const SamplerChoice* find_sampler(const std::string& name) {
  for (const SamplerChoice& c : kSamplers) {
    if (name == c.option) return &c;
  }
  return nullptr;
}

// The config for the chosen class: the file read as that class, or without a file the class's diffusers
// defaults with the DDPM schedule (linear betas 1e-4 .. 0.02, T = 1000, epsilon prediction).
ddpm::io::DiffusersSchedulerConfig read_scheduler(const fs::path& path, const SamplerChoice& choice) {
  if (!path.empty()) return ddpm::io::DiffusersSchedulerConfig::from_file(path.string(), choice.diffusers_class);
  ddpm::io::DiffusersSchedulerConfig c = ddpm::io::DiffusersSchedulerConfig::defaults(
      *choice.diffusers_class != '\0' ? choice.diffusers_class : "DDPMScheduler");
  c.beta_schedule = "linear";
  c.beta_start = 1e-4;
  c.beta_end = 0.02;
  return c;
}

// What the log calls the sampler.
std::string sampler_label(const ddpm::io::DiffusersSchedulerConfig& c) {
  char buf[64];
  switch (c.scheduler_class) {
    case ddpm::io::SchedulerClass::ddpm: return std::string("DDPM (") + ddpm::variance_type_name(c.variance_type) + ")";
    case ddpm::io::SchedulerClass::ddim: std::snprintf(buf, sizeof buf, "DDIM (eta %g)", c.eta); return buf;
    case ddpm::io::SchedulerClass::dpm_solver_multistep: {
      const char* names[] = {"DPM-Solver++", "DPM-Solver", "SDE-DPM-Solver++", "SDE-DPM-Solver"};
      std::snprintf(buf, sizeof buf, "%s(%dM)", names[static_cast<int>(c.algorithm_type)], c.solver_order);
      return buf;
    }
    case ddpm::io::SchedulerClass::unipc:
      std::snprintf(buf, sizeof buf, "UniPC (%s, order %d)", ddpm::unipc_solver_type_name(c.unipc_solver_type),
                    c.solver_order);
      return buf;
    case ddpm::io::SchedulerClass::pndm: return c.skip_prk_steps ? "PLMS (PNDM, skip_prk_steps)" : "PNDM";
    default: break;
  }
  for (const SamplerChoice& s : kSamplers) {
    if (c.class_name == s.diffusers_class) return s.label;
  }
  return c.class_name;
}

std::optional<ddpm::TimestepSpacing> parse_spacing(const std::string& text, const std::string& where) {
  if (text == "auto") return std::nullopt;
  if (text == "leading") return ddpm::TimestepSpacing::leading;
  if (text == "trailing") return ddpm::TimestepSpacing::trailing;
  if (text == "linspace") return ddpm::TimestepSpacing::linspace;
  throw examples::UsageError(where + " is \"" + text + "\", but must be leading, trailing or linspace");
}

// ---------------------------------------------------------------------------------------------------------
// Sampling.

struct StepTiming {
  std::vector<double> step_ms;   // each step: the model's forward pass and the sampler's update
  std::vector<double> model_ms;  // the forward pass alone
  double total_s = 0;
};

// Runs `sampler` from x_T with a progress bar, timing every step.
template <class Sampler>
Batch run_sampler(Sampler& sampler, ddpm::nn::UNet2D<float>& unet, ddpm::Prediction kind, Batch x_T,
                  ddpm::PerImageNoiseSource noise, const std::string& label, StepTiming& timing) {
  const int n = sampler.num_inference_steps();
  timing.step_ms.assign(static_cast<std::size_t>(n), 0.0);
  timing.model_ms.assign(static_cast<std::size_t>(n), 0.0);
  int current = 0;
  auto timed_unet = [&](const Batch& x, int t) {
    const Clock::time_point start = Clock::now();
    Batch out = unet(x, t);
    timing.model_ms[static_cast<std::size_t>(current)] =
        std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    return out;
  };
  examples::ProgressBar bar(label, n);
  const Clock::time_point start = Clock::now();
  Clock::time_point last = start;
  Batch x = ddpm::sample(sampler, ddpm::with_prediction(kind, timed_unet), std::move(x_T), noise,
                         [&](int i, int, const Batch&, const Batch&) {
                           const Clock::time_point now = Clock::now();
                           timing.step_ms[static_cast<std::size_t>(i)] =
                               std::chrono::duration<double, std::milli>(now - last).count();
                           last = now;
                           current = i + 1;
                           bar.update(i + 1);
                         });
  timing.total_s = std::chrono::duration<double>(Clock::now() - start).count();
  bar.finish();
  return x;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

void print_timing(const StepTiming& timing, const std::vector<int>& timesteps, Eigen::Index batch, bool per_step) {
  const std::size_t n = timing.step_ms.size();
  if (per_step) {
    std::printf("\n  %5s %6s %10s %10s\n", "step", "t", "step (ms)", "UNet (ms)");
    for (std::size_t i = 0; i < n; ++i) {
      std::printf("  %5zu %6d %10.2f %10.2f\n", i, timesteps[i], timing.step_ms[i], timing.model_ms[i]);
    }
  }
  double model_total = 0;
  for (double ms : timing.model_ms) model_total += ms;
  const auto [lo, hi] = std::minmax_element(timing.step_ms.begin(), timing.step_ms.end());
  std::printf("\ntiming: %zu steps in %.3f s, %.2f ms per step on average (%.2f ms per image per step)\n", n,
              timing.total_s, 1e3 * timing.total_s / static_cast<double>(n),
              1e3 * timing.total_s / static_cast<double>(n) / static_cast<double>(batch));
  std::printf("        per step: first %.2f ms, median %.2f ms, min %.2f ms, max %.2f ms\n", timing.step_ms.front(),
              median(timing.step_ms), *lo, *hi);
  std::printf("        the UNet took %.3f s of it (%.1f %%), the sampler and the loop the rest\n", model_total / 1e3,
              timing.total_s > 0 ? 100.0 * model_total / 1e3 / timing.total_s : 0.0);
}

// Nearest-neighbour enlargement by an integer factor, so that 32 x 32 samples are visible.
ddpm::Image enlarge(const ddpm::Image& src, int factor) {
  if (factor == 1) return src;
  ddpm::Image out(src.width * factor, src.height * factor, src.channels);
  for (int y = 0; y < out.height; ++y) {
    for (int x = 0; x < out.width; ++x) {
      for (int c = 0; c < src.channels; ++c) out.at(y, x, c) = src.at(y / factor, x / factor, c);
    }
  }
  return out;
}

// The grid under a line of text (black on white), widened if the text is wider than the grid.
ddpm::Image add_caption(const ddpm::Image& grid, const std::string& text) {
  constexpr int margin = 4;
  const int text_h = examples::text_height(1);
  const int width = std::max(grid.width, examples::text_width(text, 1) + 2 * margin);
  ddpm::Image out(width, grid.height + text_h + 2 * margin, grid.channels, 255);
  examples::draw_text(out, margin, margin, text, 1, {0, 0, 0});
  examples::blit(out, grid, (width - grid.width) / 2, text_h + 2 * margin);
  return out;
}

const char* kHowToGetOne =
    "No --model given. To sample a real model, download a diffusers UNet2DModel checkpoint, e.g.\n"
    "google/ddpm-cifar10-32 from the Hugging Face hub (a flat repository: the UNet's config.json and weights\n"
    "and the scheduler's scheduler_config.json at its root):\n"
    "\n"
    "  huggingface-cli download google/ddpm-cifar10-32 config.json \\\n"
    "      diffusion_pytorch_model.safetensors scheduler_config.json --local-dir ddpm-cifar10-32\n"
    "  sample_unet --model ddpm-cifar10-32 --sampler ddim --steps 50 --batch 16 --out grid.png\n"
    "\n"
    "A pipeline repository with unet/ and scheduler/ folders works the same way (--model DIR or DIR/unet).\n"
    "\n"
    "A checkpoint with only diffusion_pytorch_model.bin converts to safetensors with PyTorch alone:\n"
    "\n"
    "  /usr/bin/python3 tests/reference/make_unet_fixture.py --convert-bin DIR/diffusion_pytorch_model.bin\n"
    "\n"
    "(docs/unet.md, \"Getting a checkpoint\", has more ways.) Meanwhile, a smoke demo on the repository's\n"
    "small test model, whose weights are random: expect noise, not pictures.\n\n";

}  // namespace

int main(int argc, char** argv) {
  return examples::main_guard("sample_unet", [&] {
    examples::CommandLine cli(
        "sample_unet",
        "Samples images from a diffusers UNet2DModel checkpoint (config.json + diffusion_pytorch_model.\n"
        "safetensors) with one of the library's samplers and writes them as a PNG grid. The schedule,\n"
        "prediction type and sampler options come from scheduler_config.json in the model folder (or\n"
        "scheduler/ next to it) if present, read as the --sampler's diffusers class (--sampler config: the\n"
        "file's own class), else that class's defaults with linear betas 1e-4 .. 0.02 over T = 1000 and\n"
        "epsilon prediction. Without --model it explains how to get a checkpoint and runs the repository's\n"
        "random-weight test model.");
    cli.option("model", "DIR", "the model folder (flat, as google/ddpm-*; a UNet folder; or a pipeline holding unet/)", "");
    cli.option("sampler", "NAME",
               "ddpm, ddim, dpm++, euler, euler_a, heun, lms, dpm2, dpm2_a, pndm, dpm++_sde, unipc, or config (the "
               "scheduler config's "
               "own class); the others read the config as that class, as diffusers' from_config does",
               "ddim");
    cli.option("steps", "N", "number of sampling steps (model calls), 1 to T", "50");
    cli.option("eta", "X", "DDIM's eta in [0, 1] (0: deterministic, 1: DDPM-like noise)", "0");
    cli.option("spacing", "NAME",
               "timestep spacing: auto (the scheduler config's, else the sampler's), "
               "leading, trailing or linspace",
               "auto");
    cli.option("clip", "MODE",
               "bound the predicted x0: auto (as the scheduler class does with the config: clip_sample / "
               "thresholding), on (clip to clip_sample_range) or off",
               "auto");
    cli.option("seed", "N", "seed of x_T and of the samplers' noise", "0");
    cli.option("first-index", "N", "index of the first image (image i's noise depends only on seed and i)", "0");
    cli.option("batch", "N", "number of images (default 16; 8 for the smoke demo)", "");
    cli.option("size", "N", "image height and width (default: the config's sample_size)", "");
    cli.option("threads", "N", "threads of the UNet's forward pass (0: all cores)", "0");
    cli.option("columns", "N", "images per row of the grid (0: about sqrt(batch))", "0");
    cli.option("scale", "N", "enlarge the grid by N, nearest neighbour (0: to at least 64 pixels per image)", "0");
    cli.option("out", "PATH", "where to write the PNG grid", "grid.png");
    cli.flag("per-step", "print the time of every step, not only the summary");
    cli.flag("caption", "write the sampler, steps and seed above the grid");
    if (!cli.parse(argc, argv)) return 0;

    // Options first, so that a typo fails before the model is loaded.
    const std::string sampler_name = cli.get("sampler");
    const SamplerChoice* choice = find_sampler(sampler_name);
    if (choice == nullptr) {
      throw examples::UsageError("--sampler is \"" + sampler_name + "\", but must be one of " + sampler_names());
    }
    const int steps = static_cast<int>(cli.get_integer("steps", 1, 1000000));
    const double eta = cli.get_double("eta", 0.0, 1.0);
    if (cli.has("eta") && sampler_name != "ddim" && sampler_name != "config") {
      throw examples::UsageError("--eta applies to --sampler ddim only");
    }
    const std::optional<ddpm::TimestepSpacing> spacing_option = parse_spacing(cli.get("spacing"), "--spacing");
    const std::string clip_mode = cli.get("clip");
    if (clip_mode != "auto" && clip_mode != "on" && clip_mode != "off") {
      throw examples::UsageError("--clip is \"" + clip_mode + "\", but must be auto, on or off");
    }
    const std::uint64_t seed = cli.get_u64("seed");
    const std::uint64_t first_index = cli.get_u64("first-index");
    const bool demo = !cli.has("model");
    const Eigen::Index batch = cli.has("batch") ? cli.get_integer("batch", 1, 4096) : (demo ? 8 : 16);
    const int threads_option = static_cast<int>(cli.get_integer("threads", 0, 1024));
    const int threads =
        threads_option > 0 ? threads_option : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
    const int columns_option = static_cast<int>(cli.get_integer("columns", 0, 4096));
    const int scale_option = static_cast<int>(cli.get_integer("scale", 0, 64));
    const std::string out_path = cli.get("out");
    {  // fail now rather than after sampling
      std::error_code ec;
      const fs::path parent = fs::path(out_path).parent_path();
      if (out_path.empty() || fs::is_directory(out_path, ec) || (!parent.empty() && !fs::is_directory(parent, ec))) {
        throw examples::UsageError("--out is \"" + out_path + "\", but must be a file path in an existing directory");
      }
    }

    ModelFiles files;
    if (demo) {
      std::printf("%s", kHowToGetOne);
      files = locate_model(find_test_model(argv[0]).string());
    } else {
      files = locate_model(cli.get("model"));
    }

    // The model.
    const Clock::time_point load_start = Clock::now();
    auto unet = ddpm::nn::UNet2D<float>::from_pretrained(files.unet_dir.string());
    const double load_s = std::chrono::duration<double>(Clock::now() - load_start).count();
    unet.set_num_threads(threads);
    const ddpm::nn::UNet2DConfig& config = unet.config();
    int height = 0, width = 0;
    if (cli.has("size")) {
      height = width = static_cast<int>(cli.get_integer("size", 1, 4096));
    } else if (config.sample_size) {
      height = (*config.sample_size)[0];
      width = (*config.sample_size)[1];
    } else {
      throw examples::UsageError(files.unet_dir.string() + "/config.json has no sample_size; give --size N");
    }
    const int levels = static_cast<int>(config.block_out_channels.size());
    const int multiple = 1 << (levels - 1);
    if (height % multiple != 0 || width % multiple != 0) {
      throw examples::UsageError("the image size is " + std::to_string(height) + " x " + std::to_string(width) +
                                 ", but this UNet (" + std::to_string(levels) + " blocks) needs multiples of " +
                                 std::to_string(multiple));
    }
    const int channels = config.in_channels;
    if (channels < 1 || channels > 4) {
      throw std::runtime_error("the model has " + std::to_string(channels) +
                               " input channels; a PNG grid needs 1 to 4");
    }

    // The process: the scheduler config read as the chosen class, with the command line's overrides.
    ddpm::io::DiffusersSchedulerConfig sched = read_scheduler(files.scheduler_config, *choice);
    const std::string source =
        files.scheduler_config.empty() ? "defaults (no scheduler_config.json)" : files.scheduler_config.string();
    if (cli.has("eta") && sched.scheduler_class != ddpm::io::SchedulerClass::ddim) {
      throw examples::UsageError("--eta applies to DDIM only (--sampler ddim, or a DDIMScheduler config)");
    }
    sched.eta = eta;
    if (spacing_option) sched.timestep_spacing = *spacing_option;
    if (clip_mode != "auto") {
      sched.thresholding = false;
      sched.clip_sample = clip_mode == "on";
    }
    const ddpm::NoiseSchedule<float> schedule = sched.schedule<float>();
    const ddpm::Prediction kind = sched.prediction_type;
    const int T = schedule.num_train_timesteps();
    if (steps > T) {
      throw examples::UsageError("--steps is " + std::to_string(steps) + ", but must be in [1, " + std::to_string(T) +
                                 "] (T = " + std::to_string(T) + ")");
    }
    if (config.num_train_timesteps && *config.num_train_timesteps != T) {
      std::fprintf(stderr,
                   "sample_unet: warning: the UNet config says num_train_timesteps = %d, the schedule has T = %d\n",
                   *config.num_train_timesteps, T);
    }

    std::printf("model:     %s (%lld parameters, loaded in %.2f s)\n", files.unet_dir.string().c_str(),
                static_cast<long long>(unet.num_parameters()), load_s);
    std::printf("           %d blocks, channels", levels);
    for (int c : config.block_out_channels) std::printf(" %d", c);
    std::printf(", %d in / %d out channels; images %d x %d; %d thread%s\n", config.in_channels, config.out_channels,
                height, width, threads, threads == 1 ? "" : "s");
    std::printf("schedule:  %s\n", source.c_str());
    std::printf("           %s\n", sched.summary().c_str());
    if (!sched.ignored_keys.empty()) {
      std::string keys;
      for (const std::string& k : sched.ignored_keys) keys += (keys.empty() ? "" : ", ") + k;
      std::printf("           ignored (not keys of %s, as diffusers ignores them): %s\n", sched.class_name.c_str(),
                  keys.c_str());
    }

    // x_T ~ N(0, I).
    Batch x_T(batch, channels, height, width);
    ddpm::PerImageNoiseSource initial_noise(seed, first_index);
    initial_noise(x_T);
    const ddpm::PerImageNoiseSource step_noise(seed, first_index, kStepNoiseOffset);

    StepTiming timing;
    std::vector<int> timesteps;
    ddpm::io::AnySampler<float> sampler = sched.make_sampler<float>(schedule, steps);
    const std::string description = sampler_label(sched) + ", " + std::to_string(steps) + " steps";
    Batch x = std::visit(
        [&](auto& s) {
          timesteps = s.timesteps();
          std::printf("sampler:   %s (%d model calls), timesteps %d .. %d; %lld images, seed %llu\n",
                      description.c_str(), s.num_inference_steps(), timesteps.front(), timesteps.back(),
                      static_cast<long long>(batch), static_cast<unsigned long long>(seed));
          std::fflush(stdout);  // before the progress bar on stderr
          return run_sampler(s, unet, kind, std::move(x_T), step_noise, "sampling", timing);
        },
        sampler);
    print_timing(timing, timesteps, batch, cli.has("per-step"));

    // What came out: a broken model or schedule shows as NaN, a dead one as a constant.
    long long non_finite = 0;
    double lo = std::numeric_limits<double>::infinity(), hi = -lo, sum = 0, sum2 = 0;
    for (Eigen::Index k = 0; k < x.size(); ++k) {
      const double v = x.data()[k];
      if (!std::isfinite(v)) {
        ++non_finite;
        continue;
      }
      lo = std::min(lo, v), hi = std::max(hi, v), sum += v, sum2 += v * v;
    }
    if (non_finite > 0) {
      throw std::runtime_error("the samples have " + std::to_string(non_finite) + " of " + std::to_string(x.size()) +
                               " values that are not finite (NaN or infinity); no grid written");
    }
    const double mean = sum / static_cast<double>(x.size());
    const double stddev = std::sqrt(std::max(0.0, sum2 / static_cast<double>(x.size()) - mean * mean));
    std::printf(
        "\nsamples:   min %.3f, max %.3f, mean %.3f, standard deviation %.3f (the PNG maps [-1, 1] to 0..255)\n", lo,
        hi, mean, stddev);

    const int columns =
        columns_option > 0 ? columns_option : static_cast<int>(std::ceil(std::sqrt(static_cast<double>(batch))));
    const int scale =
        scale_option > 0 ? scale_option : std::max(1, (64 + std::min(height, width) - 1) / std::min(height, width));
    ddpm::Image grid = enlarge(ddpm::make_grid(x, columns, 2, 0), scale);
    if (cli.has("caption")) grid = add_caption(grid, description + ", seed " + std::to_string(seed));
    ddpm::write_png(out_path, grid);
    std::printf("wrote %s (%d x %d pixels: %lld images of %d x %d, %d per row, enlarged %dx)\n", out_path.c_str(),
                grid.width, grid.height, static_cast<long long>(batch), height, width,
                std::min<int>(columns, static_cast<int>(batch)), scale);
    return 0;
  });
}
