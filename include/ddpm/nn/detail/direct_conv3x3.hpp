// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// Internal: the direct 3x3 convolution (stride 1, padding 1) of float feature maps on AVX-512, with no
// im2col and no packing. A layer with few channels spends more time copying the im2col matrix and packing it
// for the GEMM than multiplying (bench_train's small UNet: about a third of a training step); here each
// 16-lane vector of output pixels is formed in registers straight from the input:
//   out[o, p] = sum_i sum_{t = (u, v)} W[o, i, u, v] x[i, p + (u - 1) W_img + (v - 1)]      [docs/unet.md, Eq. (U1)]
// where a tap that falls outside the image reads 0. The channel-major rows (nn/context.hpp: channel c holds
// the batch's images one after another) are cut into vectors of 16 consecutive pixels; when an image's pixel
// count is a multiple of 16 and its width is a multiple of 16 or divides 16, a vector lies inside one image
// and the pixels a tap may not read form a fixed lane mask per (vector of the image, tap), so every tap is
// one masked load (masked lanes are never read, so a load that reaches past a row, an image or the buffer
// reads nothing there). The input gradient is the same kernel over d_out with the flipped, transposed
// weights; the weight gradient sums d_out times the masked shifted input over all pixels.
//
// Every value is computed by one thread with a sequence of operations fixed by the shape (tiles of output
// pixels; the weight gradient in chunks of kDirectGradChunk vectors), so results are bit-identical for every
// thread count. Compiled only where __AVX512F__ is defined (-march=native on an AVX-512 machine); elsewhere
// direct3x3_applies() is false and Conv2d keeps im2col + GEMM.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include <Eigen/Core>

#if defined(__AVX512F__)
#include <immintrin.h>
#define DDPM_NN_DIRECT_CONV3X3 1
// Fixed-count loops over registers, unrolled so that the accumulators stay in registers.
#define DDPM_DIRECT_UNROLL _Pragma("GCC unroll 32")
#endif

#include "ddpm/nn/context.hpp"

namespace ddpm::nn::detail {

/// The largest image (pixels) of the direct kernels: their lane masks (9 per vector of an image) live on the
/// stack.
inline constexpr Eigen::Index kDirectMaxPixels = 4096;
/// Vectors (of 16 pixels) per chunk of the weight gradient, in whole images (at least one): each chunk's
/// sums are added to d_W once.
inline constexpr Eigen::Index kDirectGradChunk = 128;
/// The largest in_channels * out_channels for which the convolution and its input gradient take the direct
/// kernel: with more, the weights no longer stay in cache across a tile's output channels and im2col + GEMM
/// (or Winograd) is faster (measured on Emerald Rapids: 256 -> 256 on 16 x 16 or smaller images 0.3-0.6x of
/// im2col's speed, 128 -> 128 0.97-1.03x, 64 -> 64 1.3-1.9x, 32 -> 32 1.7x, 128 -> 3 5.8x).
inline constexpr Eigen::Index kDirectMaxChannelProduct = 128 * 128;
/// The same bound for the weight gradient. Measured on Emerald Rapids, 1 thread, the whole backward pass of
/// the layer with the direct weight gradient against im2col + GEMM: 128 -> 64 and 96 -> 64 on 8 x 8 (batch
/// 64) 1.26x, 64 -> 128 on 8 x 8 1.04x, 128 -> 128 on 16 x 16 (batch 32) 1.01x, on 32 x 32 (batch 8) 0.93x.
inline constexpr Eigen::Index kDirectGradMaxChannelProduct = 128 * 64;

/// Whether the direct kernels compute a 3x3, stride-1, padding-1 convolution of scalar S on h x w images:
/// float, compiled for AVX-512, w one of 4, 8, 16, 32, 64 (each a compiled kernel: the taps' offsets are
/// constants) and h * w a multiple of 16 and at most kDirectMaxPixels.
template <class S>
constexpr bool direct3x3_applies(Eigen::Index h, Eigen::Index w) {
#ifdef DDPM_NN_DIRECT_CONV3X3
  return std::is_same_v<S, float> && h >= 1 && (w == 4 || w == 8 || w == 16 || w == 32 || w == 64) &&
         (h * w) % 16 == 0 && h * w <= kDirectMaxPixels;
#else
  (void)h, (void)w;
  return false;
#endif
}

#ifdef DDPM_NN_DIRECT_CONV3X3

/// The lane masks of the nine taps for h x w images: mask[j * 9 + t] has bit l set when pixel 16 j + l of
/// an image reads tap t = 3 u + v inside the image.
/// interior[j] says that vector j of an image has the masks of interior_mask (every tap inside the image
/// but for the columns past its left and right edges), so that a kernel may use those constant masks.
struct Direct3x3Taps {
  std::array<std::uint16_t, kDirectMaxPixels / 16 * 9> mask{};
  std::array<bool, kDirectMaxPixels / 16> interior{};
  Eigen::Index vectors = 0;  // per image

  Direct3x3Taps(Eigen::Index h, Eigen::Index w) : vectors(h * w / 16) {
    for (Eigen::Index j = 0; j < vectors; ++j) {
      for (int t = 0; t < 9; ++t) {
        unsigned bits = 0;
        for (int l = 0; l < 16; ++l) {
          const Eigen::Index q = 16 * j + l, y = q / w + t / 3 - 1, x = q % w + t % 3 - 1;
          if (y >= 0 && y < h && x >= 0 && x < w) bits |= 1u << l;
        }
        mask[static_cast<std::size_t>(j * 9 + t)] = static_cast<std::uint16_t>(bits);
      }
      bool same = w <= 16;
      for (int t = 0; t < 9 && same; ++t) same = mask[static_cast<std::size_t>(j * 9 + t)] == column_mask(w, t);
      interior[static_cast<std::size_t>(j)] = same;
    }
  }

  /// For w <= 16 (a vector holds whole rows, or part of one starting at x = 0): the lanes whose column
  /// x = l mod w reads tap t inside the image's width.
  static constexpr std::uint16_t column_mask(Eigen::Index w, int t) {
    unsigned bits = 0;
    for (int l = 0; l < 16; ++l) {
      const Eigen::Index x = l % w + t % 3 - 1;
      if (x >= 0 && x < w) bits |= 1u << l;
    }
    return static_cast<std::uint16_t>(bits);
  }
};

/// The offset of tap t = 3 u + v from the pixel it is applied to, in an image of width W: (u - 1) W + (v - 1).
template <int W>
constexpr Eigen::Index tap_shift(int t) {
  return (t / 3 - 1) * W + (t % 3 - 1);
}

/// The nine taps' offsets and column masks for width W, as tables for loops that do not unroll the taps.
template <int W>
struct DirectTapTable {
  static constexpr std::array<Eigen::Index, 9> shift = {tap_shift<W>(0), tap_shift<W>(1), tap_shift<W>(2),
                                                        tap_shift<W>(3), tap_shift<W>(4), tap_shift<W>(5),
                                                        tap_shift<W>(6), tap_shift<W>(7), tap_shift<W>(8)};
  static constexpr std::array<std::uint16_t, 9> column = {
      Direct3x3Taps::column_mask(W, 0), Direct3x3Taps::column_mask(W, 1), Direct3x3Taps::column_mask(W, 2),
      Direct3x3Taps::column_mask(W, 3), Direct3x3Taps::column_mask(W, 4), Direct3x3Taps::column_mask(W, 5),
      Direct3x3Taps::column_mask(W, 6), Direct3x3Taps::column_mask(W, 7), Direct3x3Taps::column_mask(W, 8)};
};

/// 16 floats at `base + offset` under `mask` (masked lanes are 0 and not read). The address is formed as an
/// integer: a masked-off tap may point before or past the buffer.
inline __m512 direct_load(const float* base, Eigen::Index offset, std::uint16_t mask) {
  const auto address = reinterpret_cast<std::uintptr_t>(base) + static_cast<std::uintptr_t>(offset * 4);
  return _mm512_maskz_loadu_ps(static_cast<__mmask16>(mask), reinterpret_cast<const void*>(address));
}

/// One tile: CB output channels x PV vectors. `in` is input channel 0 at the tile's first pixel, `wt` the
/// weights as [in][tap][out] at the tile's first output channel, `masks` the masks of the tile's vectors
/// (9 each, PV rows), `out` output channel o0 at the tile's first pixel. out = alpha * sum (or out += it).
template <int W, bool Interior, int CB, int PV>
inline void direct3x3_tile(const float* in, Eigen::Index plane, Eigen::Index channels_in, const float* wt,
                           Eigen::Index channels_out, const std::uint16_t* const* masks, float* out, bool accumulate,
                           float alpha) {
  __m512 acc[CB][PV];
  DDPM_DIRECT_UNROLL
  for (int c = 0; c < CB; ++c) {
    for (int p = 0; p < PV; ++p) acc[c][p] = _mm512_setzero_ps();
  }
  for (Eigen::Index i = 0; i < channels_in; ++i) {
    const float* x = in + i * plane;
    const float* w = wt + i * 9 * channels_out;
    // (Not unrolled: unrolling the taps lets the compiler hoist loads until the accumulators spill.)
#pragma GCC unroll 1
    for (int t = 0; t < 9; ++t) {
      __m512 v[PV];
      DDPM_DIRECT_UNROLL
      for (int p = 0; p < PV; ++p) {
        const std::uint16_t m = Interior ? DirectTapTable<W>::column[static_cast<std::size_t>(t)] : masks[p][t];
        v[p] = direct_load(x, 16 * p + DirectTapTable<W>::shift[static_cast<std::size_t>(t)], m);
      }
      const float* wr = w + t * channels_out;
      DDPM_DIRECT_UNROLL
      for (int c = 0; c < CB; ++c) {
        const __m512 b = _mm512_set1_ps(wr[c]);
        DDPM_DIRECT_UNROLL
        for (int p = 0; p < PV; ++p) acc[c][p] = _mm512_fmadd_ps(b, v[p], acc[c][p]);
      }
    }
  }
  const __m512 a = _mm512_set1_ps(alpha);
  DDPM_DIRECT_UNROLL
  for (int c = 0; c < CB; ++c) {
    for (int p = 0; p < PV; ++p) {
      float* o = out + c * plane + 16 * p;
      __m512 r = _mm512_mul_ps(a, acc[c][p]);
      if (accumulate) r = _mm512_add_ps(_mm512_loadu_ps(o), r);
      _mm512_storeu_ps(o, r);
    }
  }
}

/// All output channels of one tile of PV vectors starting at global vector j (blocks of 8, then 4, 2, 1).
template <int W, int PV>
inline void direct3x3_column(const float* in, Eigen::Index plane, Eigen::Index channels_in, const float* wt,
                             Eigen::Index channels_out, const Direct3x3Taps& taps, Eigen::Index j, float* out,
                             bool accumulate, float alpha) {
  const std::uint16_t* masks[PV];
  bool interior = W <= 16;
  for (int p = 0; p < PV; ++p) {
    const Eigen::Index local = (j + p) % taps.vectors;
    masks[p] = taps.mask.data() + local * 9;
    interior = interior && taps.interior[static_cast<std::size_t>(local)];
  }
  const float* x = in + 16 * j;
  float* o = out + 16 * j;
  auto run = [&](auto inside) {
    constexpr bool I = decltype(inside)::value;
    Eigen::Index c = 0;
    for (; c + 8 <= channels_out; c += 8) {
      direct3x3_tile<W, I, 8, PV>(x, plane, channels_in, wt + c, channels_out, masks, o + c * plane, accumulate, alpha);
    }
    if (c + 4 <= channels_out) {
      direct3x3_tile<W, I, 4, PV>(x, plane, channels_in, wt + c, channels_out, masks, o + c * plane, accumulate, alpha);
      c += 4;
    }
    if (c + 2 <= channels_out) {
      direct3x3_tile<W, I, 2, PV>(x, plane, channels_in, wt + c, channels_out, masks, o + c * plane, accumulate, alpha);
      c += 2;
    }
    if (c < channels_out) {
      direct3x3_tile<W, I, 1, PV>(x, plane, channels_in, wt + c, channels_out, masks, o + c * plane, accumulate, alpha);
    }
  };
  if constexpr (W <= 16) {
    if (interior) {
      run(std::true_type{});
      return;
    }
  }
  run(std::false_type{});
}

/// The weight gradient of CB output channels and one input channel over images [n0, n1):
/// d_w[c * K + t] += alpha * sum_j dy[c, j] * (x shifted by tap t, masked)[j], visiting the vectors by their
/// place in the image first and by image second, so that the masks stay the same along the inner loop.
template <int W, int CB>
inline void direct3x3_grad_tile(const float* dy, Eigen::Index plane, const float* x, const Direct3x3Taps& taps,
                                Eigen::Index n0, Eigen::Index n1, float* d_w, Eigen::Index K, float alpha) {
  __m512 acc[CB][9];
  DDPM_DIRECT_UNROLL
  for (int c = 0; c < CB; ++c) {
    for (int t = 0; t < 9; ++t) acc[c][t] = _mm512_setzero_ps();
  }
  // The products of vector `local` of images [n0, n1); Interior: with the constant masks of column_mask.
  auto run = [&](Eigen::Index local, auto inside) {
    constexpr bool I = decltype(inside)::value;
    const std::uint16_t* m = taps.mask.data() + local * 9;
    std::uint16_t mask[9];
    DDPM_DIRECT_UNROLL
    for (int t = 0; t < 9; ++t) mask[t] = I ? Direct3x3Taps::column_mask(W, t) : m[t];
    for (Eigen::Index n = n0; n < n1; ++n) {
      const Eigen::Index j = n * taps.vectors + local;
      __m512 d[CB];
      DDPM_DIRECT_UNROLL
      for (int c = 0; c < CB; ++c) d[c] = _mm512_loadu_ps(dy + c * plane + 16 * j);
      DDPM_DIRECT_UNROLL
      for (int t = 0; t < 9; ++t) {
        __m512 v = direct_load(x, 16 * j + tap_shift<W>(t), mask[t]);
        // Keep v in a register: for an unmasked tap the compiler otherwise folds the load into each of the
        // CB multiply-adds, loading it CB times (the load ports, not the FMA units, then set the pace).
        __asm__("" : "+v"(v));
        DDPM_DIRECT_UNROLL
        for (int c = 0; c < CB; ++c) acc[c][t] = _mm512_fmadd_ps(d[c], v, acc[c][t]);
      }
    }
  };
  for (Eigen::Index local = 0; local < taps.vectors; ++local) {
    if (W <= 16 && taps.interior[static_cast<std::size_t>(local)]) {
      run(local, std::true_type{});
    } else {
      run(local, std::false_type{});
    }
  }
  DDPM_DIRECT_UNROLL
  for (int c = 0; c < CB; ++c) {
    for (int t = 0; t < 9; ++t) d_w[c * K + t] += alpha * _mm512_reduce_add_ps(acc[c][t]);
  }
}

/// Calls f(std::integral_constant<int, W>) for the image width w, one of those direct3x3_applies accepts.
template <class F>
void with_direct_width(Eigen::Index w, F&& f) {
  switch (w) {
    case 4: f(std::integral_constant<int, 4>{}); break;
    case 8: f(std::integral_constant<int, 8>{}); break;
    case 16: f(std::integral_constant<int, 16>{}); break;
    case 32: f(std::integral_constant<int, 32>{}); break;
    default: f(std::integral_constant<int, 64>{}); break;
  }
}

/// out (=, or += when accumulate) alpha * the 3x3 convolution of `in` with `wt` (weights laid out [in][tap][out],
/// see direct3x3_weights), over ctx's threads by tiles of output pixels; after(p0, p1) runs on the thread that
/// computed pixels [p0, p1) of every channel, once they are done (the layer's epilogue).
/// Precondition: direct3x3_applies<float>(in.height, in.width), out of in's batch and image size.
template <class After>
void direct3x3_forward(Workspace<float>& ctx, FeatureMap<const float> in, const float* wt, FeatureMap<float> out,
                       bool accumulate, float alpha, After&& after) {
  with_direct_width(in.width, [&](auto width) {
    constexpr int W = decltype(width)::value;
    const Direct3x3Taps taps(in.height, W);
    const Eigen::Index plane = in.plane(), vectors = plane / 16, tiles = (vectors + 2) / 3;
    ctx.parallel_for(tiles, [&](Eigen::Index begin, Eigen::Index end, int) {
      const Eigen::Index j_end = std::min(vectors, end * 3);
      Eigen::Index j = begin * 3;
      for (; j + 3 <= j_end; j += 3) {
        direct3x3_column<W, 3>(in.data, plane, in.channels, wt, out.channels, taps, j, out.data, accumulate, alpha);
      }
      if (j + 2 == j_end) {
        direct3x3_column<W, 2>(in.data, plane, in.channels, wt, out.channels, taps, j, out.data, accumulate, alpha);
      } else if (j + 1 == j_end) {
        direct3x3_column<W, 1>(in.data, plane, in.channels, wt, out.channels, taps, j, out.data, accumulate, alpha);
      }
      after(16 * begin * 3, 16 * j_end);
    });
  });
}

/// d_w[o, i * 9 + t] += alpha * sum_p dy[o, p] x[i, p + shift(t)] (masked): the weight gradient of the
/// convolution above, d_w laid out as Conv2d's weights [out, in * 9]. The threads share out the output
/// channels; each value is summed over chunks of whole images (about kDirectGradChunk vectors) in order.
/// Precondition: direct3x3_applies<float>(x.height, x.width), dy of x's batch and image size.
inline void direct3x3_weight_grad(Workspace<float>& ctx, FeatureMap<const float> x, FeatureMap<const float> dy,
                                  float alpha, float* d_w) {
  with_direct_width(x.width, [&](auto width) {
    constexpr int W = decltype(width)::value;
    const Direct3x3Taps taps(x.height, W);
    const Eigen::Index plane = x.plane(), I = x.channels, M = dy.channels, K = 9 * I;
    const Eigen::Index images = std::max<Eigen::Index>(1, kDirectGradChunk / taps.vectors);
    // Each thread takes an even share of the output channels, in tiles of 3 (a remainder of 1 as 2 + 2).
    ctx.parallel_for(M, [&](Eigen::Index m0, Eigen::Index m1, int) {
      for (Eigen::Index n0 = 0; n0 < x.batch; n0 += images) {
        const Eigen::Index n1 = std::min(x.batch, n0 + images);
        // For each tile of output channels, every input channel in turn: the tile's rows of dy stay in the
        // L1 cache while the input channels stream past.
        auto tiles = [&](auto cb, Eigen::Index m) {
          constexpr int CB = decltype(cb)::value;
          for (Eigen::Index i = 0; i < I; ++i) {
            direct3x3_grad_tile<W, CB>(dy.data + m * plane, plane, x.data + i * plane, taps, n0, n1,
                                       d_w + m * K + 9 * i, K, alpha);
          }
        };
        Eigen::Index m = m0;
        for (; m1 - m >= 5 || m1 - m == 3; m += 3) tiles(std::integral_constant<int, 3>{}, m);
        for (; m + 2 <= m1; m += 2) tiles(std::integral_constant<int, 2>{}, m);
        if (m < m1) tiles(std::integral_constant<int, 1>{}, m);
      }
    });
  });
}

#endif  // DDPM_NN_DIRECT_CONV3X3

/// The weights [out, in * 9] of a 3x3 convolution laid out for the direct kernels, [in][tap][out]; with
/// `adjoint`, those of the input gradient's convolution (in and out exchanged, the taps flipped):
/// dst[(o * 9 + t) * in + i] = W[o, i * 9 + 8 - t].
template <class S>
void direct3x3_weights(Workspace<S>& ctx, const S* weight, Eigen::Index out, Eigen::Index in, bool adjoint, S* dst) {
  const Eigen::Index K = 9 * in;
  if (!adjoint) {
    ctx.parallel_for(in, [&](Eigen::Index i0, Eigen::Index i1, int) {
      for (Eigen::Index i = i0; i < i1; ++i) {
        for (int t = 0; t < 9; ++t) {
          for (Eigen::Index o = 0; o < out; ++o) dst[(i * 9 + t) * out + o] = weight[o * K + i * 9 + t];
        }
      }
    });
  } else {
    ctx.parallel_for(out, [&](Eigen::Index o0, Eigen::Index o1, int) {
      for (Eigen::Index o = o0; o < o1; ++o) {
        for (int t = 0; t < 9; ++t) {
          for (Eigen::Index i = 0; i < in; ++i) dst[(o * 9 + t) * in + i] = weight[o * K + i * 9 + 8 - t];
        }
      }
    });
  }
}

}  // namespace ddpm::nn::detail
