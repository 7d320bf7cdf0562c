// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// A reproducible Brownian path over the counter-based normals of random.hpp: W(t) on [t_min, t_max] for
// every element of a tensor, a pure function of (seed, path, image stream, element, t), so that the same
// seed gives the same path whatever times are asked for, in whatever order, how often, and in which batch.
// It is what k-diffusion's BrownianTreeNoiseSampler (over torchsde's BrownianTree) gives DPM++ SDE: noise
// for overlapping intervals that is consistent with one Brownian motion.  [docs/reproducibility.md, Sec. 6]
//
// Construction (a virtual Brownian tree, Levy's midpoint construction cut at depth D). In u = (t - t_min) / L,
// L = t_max - t_min, W(t) = sqrt(L) B(u) with B a standard Brownian motion on [0, 1]:
//   B(0) = 0,  B(1) = z_0;
//   the interval of heap index n >= 1 (n = 1 is [0, 1], children 2n = left half, 2n + 1 = right half),
//   [a, b] with B(a), B(b) known, gets its midpoint value B((a + b)/2) = (B(a) + B(b))/2 + sqrt((b - a)/4) z_n
//   (the Brownian bridge's law at the midpoint, independent of everything outside [a, b]);
//   a query descends from n = 1 for at most D levels (stopping at a midpoint it hits exactly) and, inside
//   the last interval [a, b], interpolates linearly: B(u) = B(a) + (u - a)/(b - a) (B(b) - B(a)).
// So W(t) is exact Brownian motion at the dyadic nodes t_min + L j / 2^D, and in between the piecewise linear
// interpolant of those (its variance falls short of t - t_min by (t - a)(b - t)/(b - a) <= h/4, h = L / 2^D,
// the leaf width; an increment over [t0, t1] has variance (t1 - t0) - delta with 0 <= delta <= h/2, exact when
// t0 and t1 are nodes; an interval inside one leaf has variance (t1 - t0)^2 / h only). D is the smallest depth
// with h <= tolerance (torchsde's tol; default 1e-6), at most kMaxDepth = 52.
// Counters: z_n for element k of image b is normal number k of stream first_index + b (per image; or number
// b * P + k of stream first_index for the whole batch) under the Philox key
//   K_n = words 0, 1 of Philox4x32-10(counter (n mod 2^32, n / 2^32, path mod 2^32, path / 2^32),
//                                      key of seed XOR 0x42726f776e69616e ("Brownian"))
// (docs/math.md, Eq. (19) for the stream itself). Every value is a sum over at most 2D + 1 nodes accumulated in
// double from double normals and rounded once to the tensor's scalar: a float path is the double path rounded.

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "ddpm/error.hpp"
#include "ddpm/random.hpp"
#include "ddpm/tensor.hpp"

namespace ddpm {

/// Where a BrownianTree takes its normals (see the top of brownian_tree.hpp).
struct BrownianTreeOptions {
  /// Image b of a batch-first tensor uses stream first_index + b (per_image), as PerImageNoiseSource does.
  std::uint64_t first_index = 0;
  /// true: each image has its own stream, so an image's path does not depend on its batch or position;
  /// false: the whole tensor is one stream (stream first_index, elements in memory order), as NoiseSource.
  bool per_image = true;
  /// Distinct values give independent paths of one seed (ddpm's DPM++ SDE passes its noise source's offset).
  std::uint64_t path = 0;
  /// The leaf width h = (t_max - t_min) / 2^D is at most this (torchsde's tol); > 0.
  double tolerance = 1e-6;
};

/// A Brownian motion W on [t_min, t_max] with W(t_min) = 0, one independent path per tensor element, drawn
/// reproducibly from a seed (the virtual Brownian tree described at the top of brownian_tree.hpp). Stateless:
/// a query is a function of its arguments, so any set of queries in any order sees one path.
///   BrownianTree w(0.03, 14.6, 42);  w.increment(10.0, 14.6, dW);  // dW = W(14.6) - W(10) per element
class BrownianTree {
 public:
  static constexpr int kMaxDepth = 52;

  /// Throws ddpm::invalid_argument if t_min or t_max is not finite or t_min >= t_max, or the tolerance is not
  /// finite and > 0 or would need a depth above kMaxDepth ((t_max - t_min) / tolerance > 2^52).
  BrownianTree(double t_min, double t_max, std::uint64_t seed, BrownianTreeOptions options = {})
      : t_min_(t_min), t_max_(t_max), seed_(seed), options_(options) {
    const std::string fn = "ddpm::BrownianTree";
    if (!(std::isfinite(t_min) && std::isfinite(t_max) && t_min < t_max)) {
      detail::throw_invalid_argument(fn + ": t_min is " + detail::number_string(t_min) + " and t_max " +
                                     detail::number_string(t_max) + ", but they must be finite with t_min < t_max");
    }
    const double length = t_max - t_min;
    if (!(std::isfinite(options.tolerance) && options.tolerance > 0.0) ||
        !(length / options.tolerance <= std::ldexp(1.0, kMaxDepth))) {
      detail::throw_invalid_argument(fn + ": options.tolerance is " + detail::number_string(options.tolerance) +
                                     ", but must be finite, > 0 and at least (t_max - t_min) / 2^52 = " +
                                     detail::number_string(std::ldexp(length, -kMaxDepth)));
    }
    depth_ = 0;
    while (std::ldexp(length, -depth_) > options.tolerance) ++depth_;
    const Philox4x32::Key base = detail::philox_key(seed ^ kDomain);
    base_ = base;
  }

  double t_min() const noexcept { return t_min_; }
  double t_max() const noexcept { return t_max_; }
  std::uint64_t seed() const noexcept { return seed_; }
  const BrownianTreeOptions& options() const noexcept { return options_; }
  /// D: the number of bisection levels; the leaf width is (t_max - t_min) / 2^D.
  int depth() const noexcept { return depth_; }
  /// The leaf width h = (t_max - t_min) / 2^D (<= tolerance): times t_min + j h are nodes, where W is exact.
  double leaf_width() const noexcept { return std::ldexp(t_max_ - t_min_, -depth_); }

  /// out = W(t1) - W(t0) for every element (batch-first: image b of dimension 0 uses stream first_index + b
  /// when per_image). 0 when t0 = t1.
  /// Throws ddpm::invalid_argument if t0 or t1 is outside [t_min, t_max] (or not a number), or t0 > t1.
  template <MutableDenseTensor T>
  void increment(double t0, double t1, T&& out) const {
    const char* fn = "ddpm::BrownianTree::increment";
    check_time(fn, "t0", t0);
    check_time(fn, "t1", t1);
    if (t0 > t1) {
      detail::throw_invalid_argument(std::string(fn) + ": t0 is " + detail::number_string(t0) + " and t1 " +
                                     detail::number_string(t1) + ", but t0 must be <= t1");
    }
    fill(combine(weights(t1), weights(t0), 1.0), out);
  }

  /// out = (W(t1) - W(t0)) / sqrt(t1 - t0): the normalized increment, N(0, 1) per element up to the leaf
  /// interpolation (see the top of this header). Throws as increment, and if t0 = t1.
  template <MutableDenseTensor T>
  void normalized_increment(double t0, double t1, T&& out) const {
    const char* fn = "ddpm::BrownianTree::normalized_increment";
    check_time(fn, "t0", t0);
    check_time(fn, "t1", t1);
    if (!(t0 < t1)) {
      detail::throw_invalid_argument(std::string(fn) + ": t0 is " + detail::number_string(t0) + " and t1 " +
                                     detail::number_string(t1) + ", but t0 must be < t1");
    }
    fill(combine(weights(t1), weights(t0), 1.0 / std::sqrt(t1 - t0)), out);
  }

  /// out = W(t) (W(t_min) = 0). Throws ddpm::invalid_argument if t is outside [t_min, t_max].
  template <MutableDenseTensor T>
  void value(double t, T&& out) const {
    check_time("ddpm::BrownianTree::value", "t", t);
    fill(combine(weights(t), {}, 1.0), out);
  }

 private:
  static constexpr std::uint64_t kDomain = 0x42726f776e69616eull;  // "Brownian"

  /// A node's coefficient in a query: value = sum of weight * z_node.
  struct Term {
    std::uint64_t node;
    double weight;
  };

  void check_time(const char* fn, const char* name, double t) const {
    if (!(t >= t_min_ && t <= t_max_)) {
      detail::throw_invalid_argument(std::string(fn) + ": " + name + " is " + detail::number_string(t) +
                                     ", but must be in [t_min, t_max] = [" + detail::number_string(t_min_) + ", " +
                                     detail::number_string(t_max_) + "]");
    }
  }

  /// W(t) as sum_j weight_j z_{node_j} over the nodes of t's descent, sorted by node.
  std::vector<Term> weights(double t) const {
    const double length = t_max_ - t_min_;
    const double root = std::sqrt(length);
    std::vector<Term> terms;
    if (t == t_min_) return terms;
    if (t == t_max_) return {{0, root}};
    const double u = std::min(1.0, std::max(0.0, (t - t_min_) / length));
    // B(a), B(b) as coefficient vectors over the path's nodes: slot 0 is z_0, slot j + 1 the node of level j.
    std::vector<std::uint64_t> nodes{0};
    std::vector<double> wa{0.0}, wb{1.0};
    double a = 0.0, b = 1.0;
    std::uint64_t n = 1;
    bool hit = false;
    std::vector<double> wm;
    for (int level = 0; level < depth_; ++level) {
      const double m = 0.5 * (a + b);  // exact: a and b are dyadic
      nodes.push_back(n);
      wa.push_back(0.0);
      wb.push_back(0.0);
      wm.assign(wa.size(), 0.0);
      for (std::size_t j = 0; j < wa.size(); ++j) wm[j] = 0.5 * (wa[j] + wb[j]);
      wm.back() = std::sqrt(0.25 * (b - a));
      if (u == m) {
        wa = wm;
        hit = true;
        break;
      }
      if (u < m) {
        b = m;
        wb = wm;
        n = 2 * n;
      } else {
        a = m;
        wa = wm;
        n = 2 * n + 1;
      }
    }
    std::vector<double> w = wa;
    if (!hit) {
      const double lambda = (u - a) / (b - a);
      for (std::size_t j = 0; j < w.size(); ++j) w[j] = (1.0 - lambda) * wa[j] + lambda * wb[j];
    }
    for (std::size_t j = 0; j < w.size(); ++j) {
      if (w[j] != 0.0) terms.push_back({nodes[j], root * w[j]});
    }
    std::sort(terms.begin(), terms.end(), [](const Term& x, const Term& y) { return x.node < y.node; });
    return terms;
  }

  /// scale (plus - minus), merged by node, zero weights dropped.
  static std::vector<Term> combine(const std::vector<Term>& plus, const std::vector<Term>& minus, double scale) {
    std::vector<Term> r;
    std::size_t i = 0, j = 0;
    while (i < plus.size() || j < minus.size()) {
      Term t;
      if (j == minus.size() || (i < plus.size() && plus[i].node < minus[j].node)) {
        t = plus[i++];
      } else if (i == plus.size() || minus[j].node < plus[i].node) {
        t = {minus[j].node, -minus[j].weight};
        ++j;
      } else {
        t = {plus[i].node, plus[i].weight - minus[j].weight};
        ++i, ++j;
      }
      t.weight *= scale;
      if (t.weight != 0.0) r.push_back(t);
    }
    return r;
  }

  Philox4x32::Key node_key(std::uint64_t node) const noexcept {
    const std::uint64_t path = options_.path;
    const Philox4x32::Counter w = Philox4x32::generate(
        {static_cast<std::uint32_t>(node), static_cast<std::uint32_t>(node >> 32), static_cast<std::uint32_t>(path),
         static_cast<std::uint32_t>(path >> 32)},
        base_);
    return {w[0], w[1]};
  }

  /// out[i] = sum_j terms[j].weight * z_{terms[j].node}[i], accumulated in double, rounded once.
  template <MutableDenseTensor T>
  void fill(const std::vector<Term>& terms, T& out) const {
    using S = scalar_t<T>;
    static_assert(std::is_same_v<S, float> || std::is_same_v<S, double>, "ddpm::BrownianTree: float and double only");
    const auto total = static_cast<std::uint64_t>(out.size());
    if (total == 0) return;
    const std::uint64_t images = options_.per_image ? static_cast<std::uint64_t>(out.dimension(0)) : 1;
    const std::uint64_t per_image = total / images;
    if (images > 0 && images - 1 > std::numeric_limits<std::uint64_t>::max() - options_.first_index) {
      detail::throw_invalid_argument("ddpm::BrownianTree: a batch of " + detail::number_string(images) +
                                     " images from first_index " + detail::number_string(options_.first_index) +
                                     " runs past the last image index (2^64 - 1)");
    }
    std::vector<Philox4x32::Key> keys;
    for (const Term& t : terms) keys.push_back(node_key(t.node));
    const std::uint64_t chunks = (per_image + detail::kNormalChunk - 1) / detail::kNormalChunk;
    S* const data = out.data();
    auto run = [&](std::uint64_t pair) {
      const std::uint64_t image = pair / chunks, chunk = pair % chunks;
      const std::uint64_t lo = chunk * detail::kNormalChunk;
      const std::uint64_t hi = std::min(per_image, lo + detail::kNormalChunk);
      const std::uint64_t stream = options_.first_index + image;
      alignas(64) double acc[detail::kNormalChunk] = {};
      alignas(64) double z[detail::kNormalChunk];
      const bool small = hi - lo <= detail::kSmallDraw;
      const std::uint64_t first_block = lo / 4, end_block = (hi - 1) / 4 + 1;
      const std::size_t n = static_cast<std::size_t>(hi - lo);
      for (std::size_t j = 0; j < terms.size(); ++j) {
        if (small) {
          detail::normal_blocks<double>(first_block, static_cast<std::size_t>(end_block - first_block), keys[j], z, stream);
        } else {
          detail::normal_chunk<double>(chunk, keys[j], z, stream);
        }
        const double w = terms[j].weight;
        const double* zs = z + (lo - (small ? 4 * first_block : lo));
        for (std::size_t k = 0; k < n; ++k) acc[k] += w * zs[k];
      }
      S* o = data + image * per_image + lo;
      for (std::size_t k = 0; k < n; ++k) o[k] = static_cast<S>(acc[k]);
    };
    const std::uint64_t pairs = images * chunks;
#ifdef _OPENMP
    if (total * (terms.size() + 1) >= detail::kParallelNormals && pairs > 1) {
      const auto count = static_cast<std::int64_t>(pairs);
#pragma omp parallel for schedule(static)
      for (std::int64_t k = 0; k < count; ++k) run(static_cast<std::uint64_t>(k));
      return;
    }
#endif
    for (std::uint64_t k = 0; k < pairs; ++k) run(k);
  }

  double t_min_, t_max_;
  std::uint64_t seed_;
  BrownianTreeOptions options_;
  Philox4x32::Key base_{};
  int depth_ = 0;
};

/// k-diffusion's BrownianTreeNoiseSampler (its default transform, the identity): a BrownianTree over the
/// noise levels [sigma_min, sigma_max], called as noise(sigma, sigma_next, out) to fill out with
///   (W(sigma_next) - W(sigma)) / sqrt|sigma_next - sigma|        (either order of the two levels)
/// the normalized increment DPM++ SDE adds as its noise: N(0, 1) per element, and consistent between
/// overlapping intervals.                                                    [docs/samplers.md, Eq. (S29)]
class BrownianTreeNoise {
 public:
  /// Throws ddpm::invalid_argument as BrownianTree (sigma_min < sigma_max, both finite).
  BrownianTreeNoise(double sigma_min, double sigma_max, std::uint64_t seed, BrownianTreeOptions options = {})
      : tree_(sigma_min, sigma_max, seed, options) {}

  /// Throws ddpm::invalid_argument if a level is outside [sigma_min, sigma_max] or the two are equal.
  template <MutableDenseTensor T>
  void operator()(double sigma, double sigma_next, T&& out) const {
    if (sigma == sigma_next) {
      detail::throw_invalid_argument("ddpm::BrownianTreeNoise: sigma and sigma_next are both " +
                                     detail::number_string(sigma) + ", but must differ");
    }
    if (sigma_next > sigma) {
      tree_.normalized_increment(sigma, sigma_next, out);
    } else {
      tree_.normalized_increment(sigma_next, sigma, out);
      for (Eigen::Index i = 0; i < out.size(); ++i) out.data()[i] = -out.data()[i];
    }
  }

  const BrownianTree& tree() const noexcept { return tree_; }

 private:
  BrownianTree tree_;
};

/// A source of DPM++ SDE's noise for tensors of scalar S and rank R: callable as
/// noise(double sigma, double sigma_next, Tensor<S, R>& out), filling out with the normalized Brownian
/// increment over [sigma_next, sigma] (BrownianTreeNoise, or a user's callable, e.g. one replaying
/// increments exported from PyTorch).
template <class N, class S, int R>
concept BrownianNoiseFor =
    std::floating_point<S> && !DenseTensor<std::remove_cvref_t<N>> &&
    std::invocable<std::remove_reference_t<N>&, double, double, Tensor<S, R>&>;

}  // namespace ddpm
