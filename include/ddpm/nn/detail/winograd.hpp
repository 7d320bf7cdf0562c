// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// Winograd's minimal filtering F(2x2, 3x3) for 3x3 convolutions of stride 1 and padding 1 (Lavin & Gray,
// "Fast Algorithms for Convolutional Neural Networks", 2016): each 2x2 block of output pixels ("tile") is
//   Y = A^T [ (G g G^T) (.) (B^T d B) ] A
// for the 3x3 kernel g and the 4x4 input patch d around the tile, with
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1],
//   A^T = [1 1 1 0; 0 1 -1 -1].
// Summed over input channels, the 16 elementwise products become 16 matrix products
//   M[xi] (C_out x tiles) = U[xi] (C_out x C_in) * V[xi] (C_in x tiles),  xi = 0 .. 15,
// which do 16 / 36 = 1 / 2.25 of the multiply-adds of the direct convolution; the transforms are additions.
// Every matrix here is row-major; tiles are numbered (image, tile row, tile column).

#include <algorithm>

#include <Eigen/Core>

#include "ddpm/nn/feature_map.hpp"

namespace ddpm::nn::detail {

/// U[xi][o][c] = (G g G^T)[xi / 4][xi % 4] for the kernel g = w[o, c, :, :] (w is [C_out][C_in * 9]).
template <class S>
void winograd_weights(const S* w, Eigen::Index c_out, Eigen::Index c_in, S* u) {
  const Eigen::Index plane = c_out * c_in;
  for (Eigen::Index o = 0; o < c_out; ++o) {
    for (Eigen::Index c = 0; c < c_in; ++c) {
      const S* g = w + (o * c_in + c) * 9;
      S gg[4][3];  // G g
      for (int v = 0; v < 3; ++v) {
        gg[0][v] = g[v];
        gg[1][v] = S(0.5) * (g[v] + g[3 + v] + g[6 + v]);
        gg[2][v] = S(0.5) * (g[v] - g[3 + v] + g[6 + v]);
        gg[3][v] = g[6 + v];
      }
      for (int i = 0; i < 4; ++i) {  // (G g) G^T
        S* row = u + (i * 4) * plane + o * c_in + c;
        row[0 * plane] = gg[i][0];
        row[1 * plane] = S(0.5) * (gg[i][0] + gg[i][1] + gg[i][2]);
        row[2 * plane] = S(0.5) * (gg[i][0] - gg[i][1] + gg[i][2]);
        row[3 * plane] = gg[i][2];
      }
    }
  }
}

/// Tiles of one image: ceil(H / 2) x ceil(W / 2).
struct WinogradTiles {
  Eigen::Index rows, cols;
  WinogradTiles(Eigen::Index h, Eigen::Index w) : rows((h + 1) / 2), cols((w + 1) / 2) {}
};

/// Scratch values winograd_input and winograd_output need for a block of n tiles of `cols` tiles per row.
inline Eigen::Index winograd_scratch_size(Eigen::Index cols, Eigen::Index n) {
  return std::max<Eigen::Index>(16 * (cols + 2), 12 * n);
}

/// V[xi][c][t - first] = (B^T d B)[xi / 4][xi % 4] for the tiles of tile rows [r0, r1) (tile row r =
/// image * tiles.rows + row) and the input channels [c0, c1), d the 4x4 input patch at rows 2 row - 1 ..,
/// columns 2 col - 1 .. (zero outside the image). `scratch` holds winograd_scratch_size values.
template <class S>
void winograd_input(const FeatureMap<const S>& in, const WinogradTiles& tiles, Eigen::Index r0, Eigen::Index r1,
                    Eigen::Index c0, Eigen::Index c1, S* v, S* scratch) {
  using Array = Eigen::Array<S, Eigen::Dynamic, 1>;
  using Map = Eigen::Map<Array>;
  const Eigen::Index nt = (r1 - r0) * tiles.cols, H = in.height, W = in.width, cols = tiles.cols;
  // Each padded input row (x = -1 .. 2 cols) is split into its even and odd positions, e[k] = row[2k - 1]
  // and o[k] = row[2k], k = 0 .. cols, so that every combination below runs over contiguous values.
  const Eigen::Index h = cols + 1;
  S* e[4];
  S* o[4];
  for (int i = 0; i < 4; ++i) {
    e[i] = scratch + (2 * i) * (h + 1);
    o[i] = scratch + (2 * i + 1) * (h + 1);
  }
  S* se = scratch + 8 * (h + 1);  // the combined rows, 4 even and 4 odd
  const Eigen::Index stride = in.channels * nt;  // between the 16 matrices
  for (Eigen::Index c = c0; c < c1; ++c) {
    for (Eigen::Index r = r0; r < r1; ++r) {
      const Eigen::Index b = r / tiles.rows, ty = r % tiles.rows;
      const S* image = in.image_channel(c, b);
      for (int i = 0; i < 4; ++i) {
        const Eigen::Index y = 2 * ty - 1 + i;
        if (y < 0 || y >= H) {
          std::fill_n(e[i], h, S(0));
          std::fill_n(o[i], h, S(0));
          continue;
        }
        const S* row = image + y * W;
        const Eigen::Index n_odd = W / 2, n_even = (W + 1) / 2;  // x = 1, 3, .. and x = 0, 2, ..
        e[i][0] = S(0);
        for (Eigen::Index k = 0; k < n_odd; ++k) e[i][k + 1] = row[2 * k + 1];
        std::fill(e[i] + n_odd + 1, e[i] + h, S(0));
        for (Eigen::Index k = 0; k < n_even; ++k) o[i][k] = row[2 * k];
        std::fill(o[i] + n_even, o[i] + h, S(0));
      }
      // B^T d: combine the rows (s0 = d0 - d2, s1 = d1 + d2, s2 = d2 - d1, s3 = d1 - d3), even and odd
      S* sd[2][4];
      for (int i = 0; i < 4; ++i) {
        sd[0][i] = se + (2 * i) * (h + 1);
        sd[1][i] = se + (2 * i + 1) * (h + 1);
      }
      for (int p = 0; p < 2; ++p) {
        S* const* d = p == 0 ? e : o;
        Map(sd[p][0], h) = Map(d[0], h) - Map(d[2], h);
        Map(sd[p][1], h) = Map(d[1], h) + Map(d[2], h);
        Map(sd[p][2], h) = Map(d[2], h) - Map(d[1], h);
        Map(sd[p][3], h) = Map(d[1], h) - Map(d[3], h);
      }
      // (B^T d) B: the tile at column t reads row[2t - 1 .. 2t + 2] = e[t], o[t], e[t + 1], o[t + 1]
      S* out = v + c * nt + (r - r0) * cols;
      for (int i = 0; i < 4; ++i) {
        const Map ev(sd[0][i], h), od(sd[1][i], h);
        Map(out + (4 * i + 0) * stride, cols) = ev.head(cols) - ev.tail(cols);
        Map(out + (4 * i + 1) * stride, cols) = od.head(cols) + ev.tail(cols);
        Map(out + (4 * i + 2) * stride, cols) = ev.tail(cols) - od.head(cols);
        Map(out + (4 * i + 3) * stride, cols) = od.head(cols) - od.tail(cols);
      }
    }
  }
}

/// The output pixels of the tiles of tile rows [r0, r1) and output channels [o0, o1) from M[xi][o][t - first]:
///   out = scale * ((accumulate ? out : 0) + A^T m A + bias[o] + batch_bias[b, o] + residual)
/// bias, batch_bias ([batch, C_out]) and residual (out's shape) may be null. `scratch` holds
/// winograd_scratch_size values.
template <class S>
void winograd_output(const S* m, const WinogradTiles& tiles, Eigen::Index r0, Eigen::Index r1, Eigen::Index o0,
                     Eigen::Index o1, const FeatureMap<S>& out, const S* bias, const S* batch_bias,
                     const S* residual, S scale, bool accumulate, S* scratch) {
  using Array = Eigen::Array<S, Eigen::Dynamic, 1>;
  using Map = Eigen::Map<Array>;
  using ConstMap = Eigen::Map<const Array>;
  const Eigen::Index nt = (r1 - r0) * tiles.cols, H = out.height, W = out.width, cols = tiles.cols;
  const Eigen::Index stride = out.channels * nt;
  S* p0[4];
  S* p1[4];
  for (int j = 0; j < 4; ++j) {
    p0[j] = scratch + j * nt;
    p1[j] = scratch + (4 + j) * nt;
  }
  S* y[4] = {scratch + 8 * nt, scratch + 9 * nt, scratch + 10 * nt, scratch + 11 * nt};  // y00, y01, y10, y11
  for (Eigen::Index o = o0; o < o1; ++o) {
    // A^T m over all tiles of the block at once: every (xi, o) run of M is contiguous over the tiles
    const S* mo = m + o * nt;
    for (int j = 0; j < 4; ++j) {
      const ConstMap a(mo + (0 + j) * stride, nt), b(mo + (4 + j) * stride, nt), c(mo + (8 + j) * stride, nt),
          d(mo + (12 + j) * stride, nt);
      Map(p0[j], nt) = a + b + c;
      Map(p1[j], nt) = b - c - d;
    }
    // (A^T m) A
    Map(y[0], nt) = Map(p0[0], nt) + Map(p0[1], nt) + Map(p0[2], nt);
    Map(y[1], nt) = Map(p0[1], nt) - Map(p0[2], nt) - Map(p0[3], nt);
    Map(y[2], nt) = Map(p1[0], nt) + Map(p1[1], nt) + Map(p1[2], nt);
    Map(y[3], nt) = Map(p1[1], nt) - Map(p1[2], nt) - Map(p1[3], nt);
    for (Eigen::Index r = r0; r < r1; ++r) {
      const Eigen::Index b = r / tiles.rows, ty = r % tiles.rows;
      S add = bias != nullptr ? bias[o] : S(0);
      if (batch_bias != nullptr) add += batch_bias[b * out.channels + o];
      S* image = out.image_channel(o, b);
      for (int dy = 0; dy < 2; ++dy) {
        const Eigen::Index yy = 2 * ty + dy;
        if (yy >= H) break;
        S* row = image + yy * W;
        const S* first = y[2 * dy] + (r - r0) * cols;
        const S* second = y[2 * dy + 1] + (r - r0) * cols;
        const S* res = residual != nullptr ? residual + (row - out.data) : nullptr;
        auto finish = [&](Eigen::Index x, S value) {
          if (accumulate) value += row[x];
          if (res != nullptr) value += res[x];
          row[x] = value * scale;
        };
        for (Eigen::Index t = 0; t < W / 2; ++t) {
          finish(2 * t, first[t] + add);
          finish(2 * t + 1, second[t] + add);
        }
        if (W % 2 == 1) finish(W - 1, first[W / 2] + add);
      }
    }
  }
}

}  // namespace ddpm::nn::detail
