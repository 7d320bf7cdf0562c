// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors

// gmm2d: every sampler of the library on a 2-D target it can be checked against exactly.
//
// The target is a mixture of eight Gaussians on a ring. Its perfectly trained denoiser is known in closed
// form (ddpm::GaussianMixturePredictor, Tweedie's formula, [docs/samplers.md, Eq. (S2)]), so whatever
// separates a sampler's output from the target is the sampler's own error: discretisation with few steps,
// nothing else. Every sampler starts from the SAME x_T ~ N(0, I) and the linear schedule (T = 1000).
//
// Writes one PNG, a panel per sampler (log density of its samples, the target's components circled) next to
// a panel of an exact sample, and prints a table: sampler, steps, wall time, the sliced Wasserstein-2
// distance to a fresh exact sample of the same size, the error of the component weights (each point
// assigned to its most probable component with GaussianMixturePredictor::classify) and the spread of the
// points around their component's mean; then the same scores of further exact samples, the noise floor
// that no sampler can beat at this sample size.
//
//   gmm2d [--samples N] [--seed N] [--out gmm2d.png]

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <numbers>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "common/cli.hpp"
#include "common/draw.hpp"
#include "common/plot.hpp"
#include "common/progress.hpp"
#include "ddpm/ddpm.hpp"
#include "ddpm/io/image.hpp"
#include "ddpm/predictor.hpp"
#include "ddpm/sample.hpp"
#include "ddpm/samplers/ddim.hpp"
#include "ddpm/samplers/ddpm.hpp"
#include "ddpm/samplers/dpm_solver.hpp"
#include "ddpm/samplers/euler.hpp"
#include "ddpm/samplers/euler_ancestral.hpp"
#include "ddpm/samplers/unipc.hpp"

namespace {

using Points = ddpm::Tensor<float, 2>;  // (N, 2): one point per row
using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------------------------
// The target: eight Gaussians of standard deviation 0.4 on a circle of radius 4, the k-th (counter-clockwise
// from the positive x axis) with weight (k + 1) / 36, so that the weights are worth checking too.

constexpr int kComponents = 8;
constexpr double kRadius = 4.0, kStddev = 0.4;

struct Mixture {
  std::vector<double> weights;
  std::vector<std::vector<double>> means;
  std::vector<double> stddevs;
};

Mixture ring() {
  Mixture m;
  for (int k = 0; k < kComponents; ++k) {
    const double angle = 2 * std::numbers::pi * k / kComponents;
    m.weights.push_back((k + 1) / 36.0);
    m.means.push_back({kRadius * std::cos(angle), kRadius * std::sin(angle)});
    m.stddevs.push_back(kStddev);
  }
  return m;
}

// Where in the seed's Philox stream each draw starts, far enough apart never to overlap (a DDPM run with
// 10^6 points draws 2 * 10^9 numbers, against 2^40 = 1.1 * 10^12 between offsets). x_T starts at 0.
constexpr std::uint64_t kStreamGap = std::uint64_t{1} << 40;
constexpr std::uint64_t kStepNoiseOffset = 1 * kStreamGap;  // the noisy samplers' per-step noise
constexpr std::uint64_t kExactOffset = 2 * kStreamGap;      // the exact sample in the figure
constexpr std::uint64_t kReferenceOffset = 3 * kStreamGap;  // what every run is compared with
constexpr std::uint64_t kFloorOffset = 4 * kStreamGap;      // more exact samples, for the noise floor
constexpr int kFloorDraws = 8;
constexpr int kProjections = 64;

// n exact draws from the mixture: three standard normals per point, the first turned into a uniform
// u = Phi(z) that picks the component (inverse CDF of the weights), the other two the offset from its mean.
// Stratified, the i-th point's uniform is (i + u) / n instead: component k then gets n w_k points within 1.
Points draw_mixture(const Mixture& m, Eigen::Index n, ddpm::NoiseSource noise, bool stratified = false) {
  std::vector<double> z(static_cast<std::size_t>(3 * n));
  noise.fill(std::span<double>(z));
  std::vector<double> cumulative(m.weights.size());
  double total = 0;
  for (std::size_t k = 0; k < m.weights.size(); ++k) cumulative[k] = total += m.weights[k];
  Points x(n, 2);
  for (Eigen::Index i = 0; i < n; ++i) {
    const double* zi = &z[static_cast<std::size_t>(3 * i)];
    const double phi = 0.5 * std::erfc(-zi[0] / std::numbers::sqrt2);
    const double u = (stratified ? (static_cast<double>(i) + phi) / static_cast<double>(n) : phi) * total;
    const std::size_t k = std::min<std::size_t>(
        static_cast<std::size_t>(std::upper_bound(cumulative.begin(), cumulative.end(), u) - cumulative.begin()),
        m.weights.size() - 1);
    x(i, 0) = static_cast<float>(m.means[k][0] + m.stddevs[k] * zi[1]);
    x(i, 1) = static_cast<float>(m.means[k][1] + m.stddevs[k] * zi[2]);
  }
  return x;
}

// ---------------------------------------------------------------------------------------------------------
// How far a sample is from the target.

// The sliced Wasserstein-2 distance of point clouds to a fixed reference cloud of the same size:
//   SW2(a, b)^2 = mean over directions theta of W2(theta . a, theta . b)^2,
// with `projections` directions evenly spaced in [0, pi) (a fixed quadrature of the mean over all
// directions) and the 1-D W2 distance of two equal-size samples matching their sorted values in order:
//   W2(p, q)^2 = (1 / n) sum_i (p_(i) - q_(i))^2.
class SlicedWasserstein2 {
 public:
  SlicedWasserstein2(const Points& reference, int projections) : n_(reference.dimension(0)) {
    for (int j = 0; j < projections; ++j) {
      const double angle = std::numbers::pi * (j + 0.5) / projections;
      directions_.push_back({std::cos(angle), std::sin(angle)});
      sorted_.push_back(sorted_projection(reference, directions_.back()));
    }
  }

  double distance(const Points& x) const {
    if (x.dimension(0) != n_) throw std::invalid_argument("SlicedWasserstein2: the samples differ in size");
    double sum = 0;
    for (std::size_t j = 0; j < directions_.size(); ++j) {
      const std::vector<double> p = sorted_projection(x, directions_[j]);
      double d2 = 0;
      for (std::size_t i = 0; i < p.size(); ++i) d2 += (p[i] - sorted_[j][i]) * (p[i] - sorted_[j][i]);
      sum += d2 / static_cast<double>(n_);
    }
    return std::sqrt(sum / static_cast<double>(directions_.size()));
  }

 private:
  static std::vector<double> sorted_projection(const Points& x, const std::array<double, 2>& direction) {
    std::vector<double> p(static_cast<std::size_t>(x.dimension(0)));
    for (Eigen::Index i = 0; i < x.dimension(0); ++i) {
      p[static_cast<std::size_t>(i)] = direction[0] * x(i, 0) + direction[1] * x(i, 1);
    }
    std::sort(p.begin(), p.end());
    return p;
  }

  Eigen::Index n_;
  std::vector<std::array<double, 2>> directions_;
  std::vector<std::vector<double>> sorted_;
};

// What classify() makes of a sample: the fraction of the points whose most probable component is k, and
// how widely the points spread around the mean of their component, in units of its standard deviation:
//   spread = sqrt(mean over points of |x - mu_k|^2 / (2 s_k^2))
// (1 for an exact sample, up to sampling noise; the components are 7.7 sd apart, so classify() hardly
// ever assigns an exact point to the wrong one).
struct ComponentStats {
  std::vector<double> fractions;
  double spread = 0;
};

ComponentStats component_stats(const ddpm::GaussianMixturePredictor<float>& model, const Points& x) {
  const Eigen::Index n = x.dimension(0);
  ComponentStats stats{std::vector<double>(static_cast<std::size_t>(model.num_components()), 0.0), 0.0};
  const std::vector<int> labels = model.classify(x);
  for (Eigen::Index i = 0; i < n; ++i) {
    const std::size_t k = static_cast<std::size_t>(labels[static_cast<std::size_t>(i)]);
    const std::vector<double>& mu = model.means()[k];
    const double dx = x(i, 0) - mu[0], dy = x(i, 1) - mu[1], s = model.stddevs()[k];
    stats.fractions[k] += 1.0 / static_cast<double>(n);
    stats.spread += (dx * dx + dy * dy) / (2 * s * s) / static_cast<double>(n);
  }
  stats.spread = std::sqrt(stats.spread);
  return stats;
}

// ---------------------------------------------------------------------------------------------------------
// The runs.

struct Run {
  std::string name;  // e.g. "DDIM"
  int steps;         // model calls; 0 for the exact sample
  double seconds;    // wall time of the draw or of the sampling loop
  Points x = {};
  double sw2 = 0;                      // to the reference sample
  std::vector<double> fractions = {};  // of each component (component_stats)
  double max_weight_error = 0;         // max_k |fraction_k - w_k|
  double spread = 0;                   // component_stats
  std::string label() const { return steps > 0 ? name + " " + std::to_string(steps) : name; }
};

// Fills in the distances of a run to the reference sample.
void score(Run& run, const ddpm::GaussianMixturePredictor<float>& model, const SlicedWasserstein2& sw2) {
  run.sw2 = sw2.distance(run.x);
  const ComponentStats stats = component_stats(model, run.x);
  run.fractions = stats.fractions;
  run.spread = stats.spread;
  run.max_weight_error = 0;
  for (std::size_t k = 0; k < run.fractions.size(); ++k) {
    run.max_weight_error = std::max(run.max_weight_error, std::abs(run.fractions[k] - model.weights()[k]));
  }
}

// An exact sample of the target, timed.
Run exact_run(const Mixture& target, Eigen::Index n, ddpm::NoiseSource noise) {
  const Clock::time_point start = Clock::now();
  Points x = draw_mixture(target, n, noise);
  return Run{"exact sample", 0, std::chrono::duration<double>(Clock::now() - start).count(), std::move(x)};
}

// One sampling run from x_T with a progress bar; noise is a noise source, or ddpm::no_noise for the
// deterministic samplers.
template <class Sampler, class Noise>
Run run_sampler(const std::string& name, Sampler&& sampler, const ddpm::GaussianMixturePredictor<float>& model,
                const Points& x_T, Noise&& noise) {
  Run run{name, static_cast<int>(sampler.timesteps().size()), 0.0, {}};
  std::string label = run.label();
  label.resize(std::max<std::size_t>(label.size(), 19), ' ');
  examples::ProgressBar bar(label, run.steps);
  const Clock::time_point start = Clock::now();
  run.x = ddpm::sample(sampler, model, Points(x_T), std::forward<Noise>(noise),
                       [&](int i, int, const Points&, const Points&) { bar.update(i + 1); });
  run.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  bar.finish();
  return run;
}

// ---------------------------------------------------------------------------------------------------------
// The figure: a title, then four panels a row, each with its label and SW2 above it, then a colour bar.

constexpr int kPanel = 288, kGap = 16, kMargin = 16, kColumns = 4, kTextScale = 2;
constexpr double kHalfWidth = 6.0;  // the panels show [-6, 6]^2
constexpr double kBlurPixels = 1.5;
constexpr double kDecades = 3.0;
const examples::Rgb kInk{30, 30, 30}, kGrey{110, 110, 110}, kOverlay{90, 225, 255};

ddpm::Image draw_panel(const examples::PlotWindow& window, const std::vector<double>& density, double max_density,
                       const Mixture& target) {
  ddpm::Image panel = examples::heat_map(window, density, max_density, kDecades);
  // Faint axes through the origin, then each component's mean and its 2-sd circle.
  for (int p = 0; p < kPanel; ++p) {
    examples::blend_pixel(panel, p, static_cast<int>(window.py(0)), {255, 255, 255}, 0.12);
    examples::blend_pixel(panel, static_cast<int>(window.px(0)), p, {255, 255, 255}, 0.12);
  }
  for (std::size_t k = 0; k < target.means.size(); ++k) {
    const double cx = window.px(target.means[k][0]), cy = window.py(target.means[k][1]);
    examples::draw_circle(panel, cx, cy, 2 * target.stddevs[k] * window.scale_x(), kOverlay, 0.75);
    examples::draw_cross(panel, cx, cy, 3, kOverlay, 0.75);
  }
  return panel;
}

ddpm::Image draw_figure(const std::vector<Run>& runs, const Mixture& target, Eigen::Index samples, std::uint64_t seed) {
  const examples::PlotWindow window{-kHalfWidth, kHalfWidth, -kHalfWidth, kHalfWidth, kPanel, kPanel};
  std::vector<std::vector<double>> densities;
  double max_density = 0;  // one colour scale for every panel
  for (const Run& run : runs) {
    densities.push_back(
        examples::point_density(window, run.x.data(), static_cast<std::size_t>(run.x.dimension(0)), kBlurPixels));
    max_density = std::max(max_density, *std::max_element(densities.back().begin(), densities.back().end()));
  }

  const int line = examples::text_height(kTextScale);
  const int rows = (static_cast<int>(runs.size()) + kColumns - 1) / kColumns;
  const int title_h = line + kMargin, cell_h = 2 * line + 6 + kPanel, footer_h = 5 * line + 32;
  const int width = 2 * kMargin + kColumns * kPanel + (kColumns - 1) * kGap;
  const int height = kMargin + title_h + rows * cell_h + (rows - 1) * kGap + kGap + footer_h + kMargin;
  ddpm::Image figure(width, height, 3, 255);

  const std::string title = "Eight Gaussians on a ring: " + std::to_string(samples) +
                            " samples per panel, every sampler from the same x_T (seed " + std::to_string(seed) + ")";
  examples::draw_text(figure, kMargin, kMargin, title, kTextScale, kInk);
  for (std::size_t r = 0; r < runs.size(); ++r) {
    const int col = static_cast<int>(r) % kColumns, row = static_cast<int>(r) / kColumns;
    const int x = kMargin + col * (kPanel + kGap), y = kMargin + title_h + row * (cell_h + kGap);
    const std::string name = runs[r].steps > 0 ? runs[r].label() + " steps" : "exact sample (target)";
    examples::draw_text(figure, x, y, name, kTextScale, kInk);
    char stats[64];
    std::snprintf(stats, sizeof stats, "SW2 %.3f  spread %.2f", runs[r].sw2, runs[r].spread);
    examples::draw_text(figure, x, y + line + 2, stats, kTextScale, kGrey);
    examples::blit(figure, draw_panel(window, densities[r], max_density, target), x, y + 2 * line + 6);
  }

  // Footer: the colour bar and what the panels show.
  const int fy = kMargin + title_h + rows * cell_h + (rows - 1) * kGap + kGap;
  const int bar_w = 240, bar_h = line;
  static_assert(kDecades == 3.0, "the colour bar's label says 3 decades");
  const std::string low = "max/1000", high = "max";
  const int bx = kMargin + examples::text_width(low, kTextScale) + 8;
  examples::draw_text(figure, kMargin, fy, low, kTextScale, kInk);
  for (int i = 0; i < bar_w; ++i) {
    examples::fill_rect(figure, bx + i, fy, 1, bar_h, examples::inferno(static_cast<double>(i) / (bar_w - 1)));
  }
  examples::draw_text(figure, bx + bar_w + 8, fy, high, kTextScale, kInk);
  const int tx = bx + bar_w + 8 + examples::text_width(high, kTextScale) + 24;
  examples::draw_text(figure, tx, fy, "density of the samples, log scale, the same in every panel", kTextScale, kInk);
  const char* notes[] = {"circles: the target's components (mean and 2 sd); window [-6, 6]^2",
                         "SW2: sliced Wasserstein-2 distance to a fresh exact sample (exact vs exact: the noise floor)",
                         "spread: RMS distance of the points from their component's mean, in sd (1 = exact)",
                         "model: the mixture's exact denoiser (GaussianMixturePredictor); linear schedule, T = 1000"};
  for (int i = 0; i < 4; ++i) {
    examples::draw_text(figure, kMargin, fy + (i + 1) * (line + 8), notes[i], kTextScale, kGrey);
  }
  return figure;
}

// ---------------------------------------------------------------------------------------------------------

// The smallest and largest value of a score over some runs.
template <class Field>
std::pair<double, double> score_range(const std::vector<Run>& runs, Field field) {
  double lo = runs.front().*field, hi = lo;
  for (const Run& run : runs) lo = std::min(lo, run.*field), hi = std::max(hi, run.*field);
  return {lo, hi};
}

void print_table(const std::vector<Run>& runs, const std::vector<Run>& floor, const Mixture& target,
                 Eigen::Index samples, std::uint64_t seed) {
  std::printf("\nTarget: %d Gaussians of sd %g on a circle of radius %g, weights (k + 1) / 36 for k = 0..%d.\n",
              kComponents, kStddev, kRadius, kComponents - 1);
  std::printf("Model: its exact denoiser (GaussianMixturePredictor), linear schedule, T = 1000.\n");
  std::printf(
      "%lld points per run. Every sampler starts from the same x_T (seed %llu); the noisy ones (DDPM,\n"
      "Euler ancestral, DPM2 a, DPM++ 2S a, the DPM++ SDEs) draw the same noise stream (DPM++ SDE: the\n"
      "Brownian tree of that stream). \"steps\" counts model calls; K: Karras sigmas.\n\n",
      static_cast<long long>(samples), static_cast<unsigned long long>(seed));
  std::printf("  %-16s %5s %9s %8s %14s %7s\n", "sampler", "steps", "time (s)", "SW2", "max |w_k err|", "spread");
  std::printf("  %-16s %5s %9s %8s %14s %7s\n", "----------------", "-----", "--------", "------", "-------------",
              "------");
  for (const Run& run : runs) {
    const std::string steps = run.steps > 0 ? std::to_string(run.steps) : "-";
    std::printf("  %-16s %5s %9.3f %8.4f %14.4f %7.3f\n", run.name.c_str(), steps.c_str(), run.seconds, run.sw2,
                run.max_weight_error, run.spread);
  }
  const auto [sw2_lo, sw2_hi] = score_range(floor, &Run::sw2);
  const auto [w_lo, w_hi] = score_range(floor, &Run::max_weight_error);
  const auto [s_lo, s_hi] = score_range(floor, &Run::spread);
  std::printf(
      "\nSW2: sliced Wasserstein-2 distance (%d directions) to a fresh exact sample of the same size\n"
      "     (stratified: exactly n w_k points, within 1, from component k).\n"
      "max |w_k err|: the largest error of the component weights, each point counted for its most\n"
      "     probable component (classify).\n"
      "spread: RMS distance of the points from their component's mean, in sd per coordinate (1 = exact).\n"
      "Noise floor: %d more exact samples of this size score SW2 %.4f to %.4f, max |w_k err| %.4f\n"
      "     to %.4f, spread %.3f to %.3f; within these ranges a sampler is as good as exact sampling.\n",
      kProjections, static_cast<int>(floor.size()), sw2_lo, sw2_hi, w_lo, w_hi, s_lo, s_hi);
  std::printf("\nComponent weights (the fraction of the points classified to component k):\n\n");
  std::printf("  %-18s", "k");
  for (int k = 0; k < kComponents; ++k) std::printf(" %7d", k);
  std::printf("\n  %-18s", "target w_k");
  for (double w : target.weights) std::printf(" %7.4f", w);
  std::printf("\n");
  for (const Run& run : runs) {
    std::printf("  %-18s", run.label().c_str());
    for (double f : run.fractions) std::printf(" %7.4f", f);
    std::printf("\n");
  }
}

}  // namespace

int main(int argc, char** argv) {
  return examples::main_guard("gmm2d", [&] {
    examples::CommandLine cli(
        "gmm2d",
        "Samples a mixture of eight Gaussians on a ring with every sampler (DDPM, DDIM, DPM-Solver++ 2M and\n"
        "3M, Euler, Euler ancestral, UniPC, Heun, LMS, PLMS, DPM2, DPM2 a, DPM++ 2S a, DPM++ SDE, DPM++ 2M\n"
        "SDE, DPM++ 3M SDE) driven by the mixture's exact denoiser, writes one PNG with a\n"
        "density panel per sampler next to an exact sample, and prints each sampler's distance to the\n"
        "target.");
    cli.option("samples", "N", "points per sampler (100 to 1000000)", "20000");
    cli.option("seed", "N", "seed of x_T, of the samplers' noise and of the exact samples", "0");
    cli.option("out", "PATH", "where to write the PNG", "gmm2d.png");
    if (!cli.parse(argc, argv)) return 0;
    const Eigen::Index n = cli.get_integer("samples", 100, 1000000);
    const std::uint64_t seed = cli.get_u64("seed");
    const std::string out_path = cli.get("out");

    const auto schedule = ddpm::NoiseSchedule<float>::linear(1000);
    const Mixture target = ring();
    const ddpm::GaussianMixturePredictor<float> model(schedule, target.weights, target.means, target.stddevs);

    // x_T ~ N(0, I): point i is numbers 0, 1 of the seed's per-image stream i, shared by every sampler; the
    // noisy samplers' step noise continues each point's stream from kStepNoiseOffset, so that a point's
    // path does not depend on how many points are sampled with it (docs/reproducibility.md).
    Points x_T(n, 2);
    ddpm::PerImageNoiseSource initial_noise(seed);
    initial_noise(x_T);
    const ddpm::PerImageNoiseSource step_noise(seed, 0, kStepNoiseOffset);  // copied: each noisy run draws the same

    std::printf("gmm2d: %lld points per sampler, seed %llu\n", static_cast<long long>(n),
                static_cast<unsigned long long>(seed));
    std::fflush(stdout);  // before the progress bars on stderr
    std::vector<Run> runs;
    runs.push_back(exact_run(target, n, ddpm::NoiseSource(seed, kExactOffset)));
    runs.push_back(
        run_sampler("DDPM", ddpm::DDPMSampler<float>(schedule, {}), model, x_T, ddpm::PerImageNoiseSource(step_noise)));
    runs.push_back(run_sampler("DDIM", ddpm::DDIMSampler<float>(schedule, {.grid = {.num_inference_steps = 50}}), model,
                               x_T, ddpm::no_noise));
    runs.push_back(run_sampler("DDIM", ddpm::DDIMSampler<float>(schedule, {.grid = {.num_inference_steps = 10}}), model,
                               x_T, ddpm::no_noise));
    runs.push_back(run_sampler("DPM-Solver++",
                               ddpm::DPMSolverMultistepSampler<float>(schedule, {.grid = {.num_inference_steps = 20}}),
                               model, x_T, ddpm::no_noise));
    runs.push_back(run_sampler("DPM-Solver++",
                               ddpm::DPMSolverMultistepSampler<float>(schedule, {.grid = {.num_inference_steps = 10}}),
                               model, x_T, ddpm::no_noise));
    runs.push_back(run_sampler("Euler", ddpm::EulerSampler<float>(schedule, {.grid = {.num_inference_steps = 50}}),
                               model, x_T, ddpm::no_noise));
    runs.push_back(run_sampler("Euler ancestral",
                               ddpm::EulerAncestralSampler<float>(schedule, {.grid = {.num_inference_steps = 50}}),
                               model, x_T, ddpm::PerImageNoiseSource(step_noise)));
    runs.push_back(run_sampler("UniPC", ddpm::UniPCSampler<float>(schedule, {.grid = {.num_inference_steps = 10}}),
                               model, x_T, ddpm::no_noise));
    runs.push_back(run_sampler(
        "DPM-Solver++ 3M",
        ddpm::DPMSolverMultistepSampler<float>(schedule, {.grid = {.num_inference_steps = 10}, .solver_order = 3}),
        model, x_T, ddpm::no_noise));
    runs.push_back(run_sampler("Heun", ddpm::HeunSampler<float>(schedule, {.grid = {.num_inference_steps = 10}}), model,
                               x_T, ddpm::no_noise));
    runs.push_back(run_sampler("LMS", ddpm::LMSSampler<float>(schedule, {.grid = {.num_inference_steps = 20}}), model,
                               x_T, ddpm::no_noise));
    runs.push_back(run_sampler(
        "PLMS", ddpm::PNDMSampler<float>(schedule, {.grid = {.num_inference_steps = 20}, .skip_prk_steps = true}),
        model, x_T, ddpm::no_noise));
    runs.push_back(run_sampler("DPM2", ddpm::DPM2Sampler<float>(schedule, {.grid = {.num_inference_steps = 10}}), model,
                               x_T, ddpm::no_noise));
    runs.push_back(run_sampler("DPM2 a",
                               ddpm::DPM2AncestralSampler<float>(schedule, {.grid = {.num_inference_steps = 10}}),
                               model, x_T, ddpm::PerImageNoiseSource(step_noise)));
    runs.push_back(run_sampler("DPM++ 2S a",
                               ddpm::DPMPP2SAncestralSampler<float>(schedule, {.grid = {.num_inference_steps = 10}}),
                               model, x_T, ddpm::PerImageNoiseSource(step_noise)));
    runs.push_back(run_sampler(
        "DPM++ SDE K",
        ddpm::DPMPPSDESampler<float>(schedule, {.grid = {.num_inference_steps = 10, .use_karras_sigmas = true}}), model,
        x_T, ddpm::PerImageNoiseSource(step_noise)));
    runs.push_back(run_sampler(
        "DPM++ 2M SDE K",
        ddpm::DPMPP2MSDESampler<float>(schedule, {.grid = {.num_inference_steps = 20, .use_karras_sigmas = true}}),
        model, x_T, ddpm::PerImageNoiseSource(step_noise)));
    runs.push_back(run_sampler(
        "DPM++ 3M SDE K",
        ddpm::DPMPP3MSDESampler<float>(schedule, {.grid = {.num_inference_steps = 20, .use_karras_sigmas = true}}),
        model, x_T, ddpm::PerImageNoiseSource(step_noise)));

    // Score every run against one fresh exact sample, stratified over the components (exactly n w_k
    // points from component k, within 1) so that its own component counts add no noise.
    const SlicedWasserstein2 sw2(
        draw_mixture(target, n, ddpm::NoiseSource(seed, kReferenceOffset), /*stratified=*/true), kProjections);
    for (Run& run : runs) score(run, model, sw2);
    // The noise floor: how far further exact samples of the same size land, which no sampler can beat.
    std::vector<Run> floor;
    for (int r = 0; r < kFloorDraws; ++r) {
      floor.push_back(exact_run(target, n, ddpm::NoiseSource(seed, kFloorOffset + r * kStreamGap)));
      score(floor.back(), model, sw2);
    }

    const ddpm::Image figure = draw_figure(runs, target, n, seed);
    ddpm::write_png(out_path, figure);
    print_table(runs, floor, target, n, seed);
    std::printf("\nwrote %s (%d x %d pixels)\n", out_path.c_str(), figure.width, figure.height);
    return 0;
  });
}
