// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// Shared by the tests of ddpm/nn/: deterministic random fills, and naive float64 reference implementations
// of the layers, written as the plain loops of their definitions (PyTorch's documentation) on NCHW
// tensors, independent of the library's im2col/GEMM/channel-major code paths.
//
// The comparison criterion:  max |actual - expected| <= tol * max |expected|  (relative to the largest
// magnitude of the result: a value near 0 after cancellation carries the rounding error of its terms).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "ddpm/nn/parameter.hpp"
#include "ddpm/tensor.hpp"

namespace nn_test {

using Index = Eigen::Index;
using T4 = ddpm::Tensor<double, 4>;

/// splitmix64: a fixed, portable stream of uniform values in [lo, hi).
class Uniform {
 public:
  explicit Uniform(std::uint64_t seed) : state_(seed) {}
  double operator()(double lo = -1.0, double hi = 1.0) {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return lo + (hi - lo) * static_cast<double>(z >> 11) * 0x1.0p-53;
  }

 private:
  std::uint64_t state_;
};

template <class S>
ddpm::Tensor<S, 4> random_images(Index n, Index c, Index h, Index w, std::uint64_t seed, double amplitude = 1.0) {
  ddpm::Tensor<S, 4> x(n, c, h, w);
  Uniform u(seed);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<S>(amplitude * u());
  return x;
}

/// Every parameter of a layer set to uniform values: weights in +-scale / sqrt(fan_in) (fan_in = the
/// product of all but the first dimension), 1-d parameters (biases, norm weights) in [0.5, 1.5] for names
/// ending in "norm*.weight"/"group_norm.weight" and +-0.5 otherwise, so that none sits at its default.
template <class S, class Layer>
void randomize(Layer& layer, std::uint64_t seed, double scale = 1.0) {
  Uniform u(seed);
  layer.for_each_parameter("", [&](const ddpm::nn::Parameter<S>& p) {
    const bool is_norm_weight = p.shape.size() == 1 && p.name.find("norm") != std::string::npos &&
                                p.name.size() >= 6 && p.name.compare(p.name.size() - 6, 6, "weight") == 0;
    double fan_in = 1.0;
    for (std::size_t i = 1; i < p.shape.size(); ++i) fan_in *= static_cast<double>(p.shape[i]);
    for (std::int64_t i = 0; i < p.numel(); ++i) {
      double v;
      if (p.shape.size() == 1) {
        v = is_norm_weight ? u(0.5, 1.5) : u(-0.5, 0.5);
      } else {
        v = scale * u() * std::sqrt(3.0 / fan_in);
      }
      p.data[i] = static_cast<S>(v);
    }
  });
  // the weights changed: rebuild what the layer derives from them (the protocol's prepare step)
  if constexpr (requires { layer.prepare(); }) layer.prepare();
}

template <class S, int R>
ddpm::Tensor<double, R> to_double(const ddpm::Tensor<S, R>& x) {
  return x.template cast<double>();
}

template <class A, class B>
double max_rel_error(const A& actual, const B& expected) {
  REQUIRE(actual.size() == expected.size());
  double err = 0.0, mag = 0.0;
  for (Index i = 0; i < expected.size(); ++i) {
    err = std::max(err, std::abs(static_cast<double>(actual.data()[i]) - static_cast<double>(expected.data()[i])));
    mag = std::max(mag, std::abs(static_cast<double>(expected.data()[i])));
  }
  return mag == 0.0 ? err : err / mag;
}

/// Tolerance for a result computed in S from O(1) terms: a few hundred roundings of S.
template <class S>
constexpr double tolerance() {
  return std::is_same_v<S, float> ? 2e-5 : 1e-12;
}

// ---------------------------------------------------------------------------------------------------------
// Naive float64 layers on NCHW tensors.

/// out[n, o, y, x] = b[o] + sum_{c, u, v} w[o, c, u, v] * x[n, c, y * s + u - top, x * s + v - left]
/// (zero outside the image); output size (H + top + bottom - kh) / s + 1.
inline T4 conv2d(const T4& x, const std::vector<double>& w, const std::vector<double>& b, Index out_channels,
                 Index kh, Index kw, Index s, Index top, Index left, Index bottom, Index right) {
  const Index N = x.dimension(0), C = x.dimension(1), H = x.dimension(2), W = x.dimension(3);
  const Index OH = (H + top + bottom - kh) / s + 1, OW = (W + left + right - kw) / s + 1;
  T4 out(N, out_channels, OH, OW);
  for (Index n = 0; n < N; ++n)
    for (Index o = 0; o < out_channels; ++o)
      for (Index y = 0; y < OH; ++y)
        for (Index xx = 0; xx < OW; ++xx) {
          double acc = b.empty() ? 0.0 : b[static_cast<std::size_t>(o)];
          for (Index c = 0; c < C; ++c)
            for (Index u = 0; u < kh; ++u)
              for (Index v = 0; v < kw; ++v) {
                const Index iy = y * s + u - top, ix = xx * s + v - left;
                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                acc += w[static_cast<std::size_t>(((o * C + c) * kh + u) * kw + v)] * x(n, c, iy, ix);
              }
          out(n, o, y, xx) = acc;
        }
  return out;
}

/// PyTorch's GroupNorm: per image and group, (x - mean) / sqrt(biased var + eps) * gamma[c] + beta[c].
inline T4 group_norm(const T4& x, Index groups, const std::vector<double>& gamma, const std::vector<double>& beta,
                     double eps) {
  const Index N = x.dimension(0), C = x.dimension(1), HW = x.dimension(2) * x.dimension(3), per = C / groups;
  T4 out(x.dimensions());
  for (Index n = 0; n < N; ++n)
    for (Index g = 0; g < groups; ++g) {
      double sum = 0.0, sq = 0.0;
      for (Index c = g * per; c < (g + 1) * per; ++c)
        for (Index i = 0; i < HW; ++i) sum += x.data()[(n * C + c) * HW + i];
      const double mean = sum / static_cast<double>(per * HW);
      for (Index c = g * per; c < (g + 1) * per; ++c)
        for (Index i = 0; i < HW; ++i) sq += std::pow(x.data()[(n * C + c) * HW + i] - mean, 2);
      const double var = sq / static_cast<double>(per * HW);
      for (Index c = g * per; c < (g + 1) * per; ++c)
        for (Index i = 0; i < HW; ++i) {
          const Index k = (n * C + c) * HW + i;
          out.data()[k] = (x.data()[k] - mean) / std::sqrt(var + eps) * gamma[static_cast<std::size_t>(c)] +
                          beta[static_cast<std::size_t>(c)];
        }
    }
  return out;
}

inline double silu(double v) { return v / (1.0 + std::exp(-v)); }

inline T4 silu(const T4& x) {
  T4 y(x.dimensions());
  for (Index i = 0; i < x.size(); ++i) y.data()[i] = silu(x.data()[i]);
  return y;
}

/// y = W x + b for each row x of a [rows, in] matrix given as a flat vector.
inline std::vector<double> linear(const std::vector<double>& x, Index rows, const std::vector<double>& w,
                                  const std::vector<double>& b, Index out, Index in) {
  std::vector<double> y(static_cast<std::size_t>(rows * out));
  for (Index r = 0; r < rows; ++r)
    for (Index o = 0; o < out; ++o) {
      double acc = b.empty() ? 0.0 : b[static_cast<std::size_t>(o)];
      for (Index i = 0; i < in; ++i) acc += w[static_cast<std::size_t>(o * in + i)] * x[static_cast<std::size_t>(r * in + i)];
      y[static_cast<std::size_t>(r * out + o)] = acc;
    }
  return y;
}

/// A layer parameter's values in double.
template <class S, class Layer>
std::vector<double> param(const Layer& layer, const std::string& name) {
  std::vector<double> out;
  bool found = false;
  layer.for_each_parameter("", [&](const ddpm::nn::Parameter<const S>& p) {  // read-only: no change

    if (p.name != name) return;
    found = true;
    out.assign(p.data, p.data + p.numel());
  });
  if (!found) FAIL("no parameter " << name);
  return out;
}

}  // namespace nn_test

namespace nn_test {

/// diffusers' attention block on NCHW, as plain loops: tokens are pixels; softmax over keys.
template <class S, class Block>
T4 attention(Block& block, const T4& x, bool group_norm, Index groups, double eps, Index heads, Index d,
             double rescale) {
  const Index N = x.dimension(0), C = x.dimension(1), L = x.dimension(2) * x.dimension(3), inner = heads * d;
  const T4 xn = group_norm ? nn_test::group_norm(x, groups, param<S>(block, "group_norm.weight"),
                                                 param<S>(block, "group_norm.bias"), eps)
                           : x;
  const auto wq = param<S>(block, "to_q.weight"), bq = param<S>(block, "to_q.bias");
  const auto wk = param<S>(block, "to_k.weight"), bk = param<S>(block, "to_k.bias");
  const auto wv = param<S>(block, "to_v.weight"), bv = param<S>(block, "to_v.bias");
  const auto wo = param<S>(block, "to_out.0.weight"), bo = param<S>(block, "to_out.0.bias");
  T4 out(x.dimensions());
  for (Index n = 0; n < N; ++n) {
    std::vector<double> tokens(static_cast<std::size_t>(L * C));
    for (Index l = 0; l < L; ++l)
      for (Index c = 0; c < C; ++c) tokens[static_cast<std::size_t>(l * C + c)] = xn.data()[(n * C + c) * L + l];
    const auto q = linear(tokens, L, wq, bq, inner, C), k = linear(tokens, L, wk, bk, inner, C),
               v = linear(tokens, L, wv, bv, inner, C);
    std::vector<double> o(static_cast<std::size_t>(L * inner), 0.0);
    for (Index h = 0; h < heads; ++h)
      for (Index i = 0; i < L; ++i) {
        std::vector<double> p(static_cast<std::size_t>(L));
        double m = -1e300, sum = 0.0;
        for (Index j = 0; j < L; ++j) {
          double s = 0.0;
          for (Index e = h * d; e < (h + 1) * d; ++e) s += q[i * inner + e] * k[j * inner + e];
          p[j] = s / std::sqrt(static_cast<double>(d));
          m = std::max(m, p[j]);
        }
        for (Index j = 0; j < L; ++j) sum += (p[j] = std::exp(p[j] - m));
        for (Index j = 0; j < L; ++j)
          for (Index e = h * d; e < (h + 1) * d; ++e) o[i * inner + e] += p[j] / sum * v[j * inner + e];
      }
    const auto proj = linear(o, L, wo, bo, C, inner);
    for (Index l = 0; l < L; ++l)
      for (Index c = 0; c < C; ++c) {
        const Index at = (n * C + c) * L + l;
        out.data()[at] = (proj[static_cast<std::size_t>(l * C + c)] + x.data()[at]) / rescale;
      }
  }
  return out;
}

/// diffusers' ResnetBlock2D with SiLU on NCHW: temb [N, T] (before the activation).
template <class S, class Block>
T4 resnet_block(Block& block, const T4& x, const std::vector<double>& temb, Index temb_channels, Index out_channels,
                Index groups, double eps, double output_scale_factor, bool scale_shift) {
  const Index N = x.dimension(0), C = x.dimension(1), H = x.dimension(2), W = x.dimension(3), HW = H * W;
  const Index O = out_channels;
  T4 h = silu(group_norm(x, groups, param<S>(block, "norm1.weight"), param<S>(block, "norm1.bias"), eps));
  h = conv2d(h, param<S>(block, "conv1.weight"), param<S>(block, "conv1.bias"), O, 3, 3, 1, 1, 1, 1, 1);
  std::vector<double> t = temb;
  for (double& v : t) v = silu(v);
  const Index P = scale_shift ? 2 * O : O;
  const auto proj = linear(t, N, param<S>(block, "time_emb_proj.weight"), param<S>(block, "time_emb_proj.bias"), P,
                           temb_channels);
  if (!scale_shift) {
    for (Index n = 0; n < N; ++n)
      for (Index o = 0; o < O; ++o)
        for (Index i = 0; i < HW; ++i) h.data()[(n * O + o) * HW + i] += proj[n * P + o];
    h = group_norm(h, groups, param<S>(block, "norm2.weight"), param<S>(block, "norm2.bias"), eps);
  } else {
    h = group_norm(h, groups, param<S>(block, "norm2.weight"), param<S>(block, "norm2.bias"), eps);
    for (Index n = 0; n < N; ++n)
      for (Index o = 0; o < O; ++o)
        for (Index i = 0; i < HW; ++i) {
          double& v = h.data()[(n * O + o) * HW + i];
          v = v * (1 + proj[n * P + o]) + proj[n * P + O + o];
        }
  }
  h = conv2d(silu(h), param<S>(block, "conv2.weight"), param<S>(block, "conv2.bias"), O, 3, 3, 1, 1, 1, 1, 1);
  const T4 shortcut = C == O ? x
                             : conv2d(x, param<S>(block, "conv_shortcut.weight"), param<S>(block, "conv_shortcut.bias"),
                                      O, 1, 1, 1, 0, 0, 0, 0);
  T4 out(N, O, H, W);
  for (Index i = 0; i < out.size(); ++i) out.data()[i] = (shortcut.data()[i] + h.data()[i]) / output_scale_factor;
  return out;
}

}  // namespace nn_test
