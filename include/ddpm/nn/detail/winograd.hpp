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

/// V[xi][c][t - first] = (B^T d B)[xi / 4][xi % 4] for the tiles of tile rows [r0, r1) (tile row r =
/// image * tiles.rows + row), d the 4x4 input patch at rows 2 row - 1 .., columns 2 col - 1 .. (zero
/// outside the image). `scratch` holds 8 * (2 * tiles.cols + 2) values.
template <class S>
void winograd_input(const FeatureMap<const S>& in, const WinogradTiles& tiles, Eigen::Index r0, Eigen::Index r1, S* v,
                    S* scratch) {
  const Eigen::Index nt = (r1 - r0) * tiles.cols, H = in.height, W = in.width, cols = tiles.cols;
  const Eigen::Index pw = 2 * cols + 2;  // padded row: x = -1 .. 2 cols
  S* rows[4] = {scratch, scratch + pw, scratch + 2 * pw, scratch + 3 * pw};
  S* s[4] = {scratch + 4 * pw, scratch + 5 * pw, scratch + 6 * pw, scratch + 7 * pw};
  const Eigen::Index stride = in.channels * nt;  // between the 16 matrices
  for (Eigen::Index c = 0; c < in.channels; ++c) {
    for (Eigen::Index r = r0; r < r1; ++r) {
      const Eigen::Index b = r / tiles.rows, ty = r % tiles.rows;
      const S* image = in.image_channel(c, b);
      for (int i = 0; i < 4; ++i) {  // the four input rows of this tile row, padded with zeros
        const Eigen::Index y = 2 * ty - 1 + i;
        S* dst = rows[i];
        if (y < 0 || y >= H) {
          std::fill_n(dst, pw, S(0));
        } else {
          dst[0] = S(0);
          std::copy_n(image + y * W, W, dst + 1);
          std::fill(dst + 1 + W, dst + pw, S(0));
        }
      }
      for (Eigen::Index x = 0; x < pw; ++x) {  // B^T d: combine the rows
        s[0][x] = rows[0][x] - rows[2][x];
        s[1][x] = rows[1][x] + rows[2][x];
        s[2][x] = rows[2][x] - rows[1][x];
        s[3][x] = rows[1][x] - rows[3][x];
      }
      S* out = v + c * nt + (r - r0) * cols;
      for (int i = 0; i < 4; ++i) {  // (B^T d) B: combine the columns of each tile
        const S* si = s[i];
        S* o0 = out + (4 * i + 0) * stride;
        S* o1 = out + (4 * i + 1) * stride;
        S* o2 = out + (4 * i + 2) * stride;
        S* o3 = out + (4 * i + 3) * stride;
        for (Eigen::Index t = 0; t < cols; ++t) {
          const S a = si[2 * t], bb = si[2 * t + 1], cc = si[2 * t + 2], d = si[2 * t + 3];
          o0[t] = a - cc;
          o1[t] = bb + cc;
          o2[t] = cc - bb;
          o3[t] = bb - d;
        }
      }
    }
  }
}

/// The output pixels of the tiles of tile rows [r0, r1) from M[xi][o][t - first]:
///   out = scale * ((accumulate ? out : 0) + A^T m A + bias[o] + batch_bias[b, o])
/// bias and batch_bias ([batch, C_out]) may be null. `scratch` holds 4 * tiles.cols values.
template <class S>
void winograd_output(const S* m, const WinogradTiles& tiles, Eigen::Index r0, Eigen::Index r1, const FeatureMap<S>& out,
                     const S* bias, const S* batch_bias, S scale, bool accumulate, S* scratch) {
  const Eigen::Index nt = (r1 - r0) * tiles.cols, H = out.height, W = out.width, cols = tiles.cols;
  const Eigen::Index stride = out.channels * nt;
  S* y00 = scratch;
  S* y01 = scratch + cols;
  S* y10 = scratch + 2 * cols;
  S* y11 = scratch + 3 * cols;
  for (Eigen::Index o = 0; o < out.channels; ++o) {
    for (Eigen::Index r = r0; r < r1; ++r) {
      const Eigen::Index b = r / tiles.rows, ty = r % tiles.rows;
      const S* mm = m + o * nt + (r - r0) * cols;
      for (Eigen::Index t = 0; t < cols; ++t) {
        S p0[4], p1[4];  // A^T m: combine the rows
        for (int j = 0; j < 4; ++j) {
          const S a = mm[(0 + j) * stride + t], bb = mm[(4 + j) * stride + t], cc = mm[(8 + j) * stride + t],
                  d = mm[(12 + j) * stride + t];
          p0[j] = a + bb + cc;
          p1[j] = bb - cc - d;
        }
        y00[t] = p0[0] + p0[1] + p0[2];  // (A^T m) A: combine the columns
        y01[t] = p0[1] - p0[2] - p0[3];
        y10[t] = p1[0] + p1[1] + p1[2];
        y11[t] = p1[1] - p1[2] - p1[3];
      }
      S add = bias != nullptr ? bias[o] : S(0);
      if (batch_bias != nullptr) add += batch_bias[b * out.channels + o];
      S* image = out.image_channel(o, b);
      for (int dy = 0; dy < 2; ++dy) {
        const Eigen::Index y = 2 * ty + dy;
        if (y >= H) break;
        S* row = image + y * W;
        const S* first = dy == 0 ? y00 : y10;
        const S* second = dy == 0 ? y01 : y11;
        if (accumulate) {
          for (Eigen::Index t = 0; t < W / 2; ++t) {
            row[2 * t] = (row[2 * t] + first[t] + add) * scale;
            row[2 * t + 1] = (row[2 * t + 1] + second[t] + add) * scale;
          }
          if (W % 2 == 1) row[W - 1] = (row[W - 1] + first[W / 2] + add) * scale;
        } else {
          for (Eigen::Index t = 0; t < W / 2; ++t) {
            row[2 * t] = (first[t] + add) * scale;
            row[2 * t + 1] = (second[t] + add) * scale;
          }
          if (W % 2 == 1) row[W - 1] = (first[W / 2] + add) * scale;
        }
      }
    }
  }
}

}  // namespace ddpm::nn::detail
