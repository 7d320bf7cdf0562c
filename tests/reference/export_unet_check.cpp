// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
//
// export_unet_check: the C++ half of tests/reference/check_save_pretrained.py (not a test; C++ tests never run
// Python). It reads a model directory as UNet2D::from_pretrained does (config.json +
// diffusion_pytorch_model.safetensors, e.g. what ddpm::nn::save_pretrained wrote for train_digits), draws a
// batch of inputs and writes them with the model's outputs beside the weights:
//
//   export_unet_check DIR [--batch N] [--seed N]
//
// DIR/export_check.safetensors:
//   "sample" [N, C, H, W] F32      x, standard normal (H = W = the config's sample_size, else 16)
//   "timesteps" [N] F64            one training timestep per image, uniform in [0, 1000), as integers
//   "class_labels" [N] F64         a class-conditional model's labels (uniform in [0, num_class_embeds) for a
//                                  table, [0, 1000) for "timestep"), or [N, time_embed_dim] F32 (standard
//                                  normal) for class_embed_type "identity"
//   "output_f32" [N, C', H, W] F32 UNet2D<float>(sample, timesteps, class_labels)
//   "output_f64" [N, C', H, W] F64 UNet2D<double> of the same inputs (the weights converted to double)
// The draws come from ddpm::NoiseSource(seed), so a rerun writes the same file.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "ddpm/io/safetensors.hpp"
#include "ddpm/nn/unet2d.hpp"
#include "ddpm/random.hpp"

namespace {

int usage(const char* why) {
  std::fprintf(stderr, "export_unet_check: %s\nusage: export_unet_check DIR [--batch N] [--seed N]\n", why);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  long batch = 3;
  unsigned long long seed = 20261207;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if ((a == "--batch" || a == "--seed") && i + 1 < argc) {
      const std::string v = argv[++i];
      try {
        if (a == "--batch") {
          batch = std::stol(v);
        } else {
          seed = std::stoull(v);
        }
      } catch (const std::exception&) {
        return usage((a + " is \"" + v + "\", but must be a non-negative integer").c_str());
      }
    } else if (dir.empty() && !a.starts_with("--")) {
      dir = a;
    } else {
      return usage(("unexpected argument \"" + a + "\"").c_str());
    }
  }
  if (dir.empty()) return usage("DIR is missing");
  if (batch < 1 || batch > 1024) return usage("--batch must be in [1, 1024]");
  try {
    using ddpm::nn::UNet2D;
    const UNet2D<double> model = UNet2D<double>::from_pretrained(dir);
    const UNet2D<float> model_f = UNet2D<float>::from_pretrained(dir);
    const ddpm::nn::UNet2DConfig& c = model.config();
    const int h = c.sample_size ? (*c.sample_size)[0] : 16, w = c.sample_size ? (*c.sample_size)[1] : 16;
    const Eigen::Index n = batch;
    ddpm::NoiseSource noise(seed);
    ddpm::Tensor<float, 4> x_f(n, c.in_channels, h, w);
    noise(x_f);
    const ddpm::Tensor<double, 4> x = x_f.cast<double>();
    std::vector<double> u(static_cast<std::size_t>(n));
    noise.uniform(std::span<double>(u));
    std::vector<double> t(u.size());
    for (std::size_t i = 0; i < u.size(); ++i) t[i] = std::floor(1000.0 * u[i]);
    ddpm::io::SafetensorsWriter out;
    out.add("sample", x_f);
    ddpm::Tensor<double, 1> t_tensor(n);
    std::copy(t.begin(), t.end(), t_tensor.data());
    out.add("timesteps", t_tensor);
    ddpm::Tensor<float, 4> y_f;
    ddpm::Tensor<double, 4> y;
    const std::string kind = c.class_embed_type.value_or("");
    if (kind == "identity") {
      const Eigen::Index dim = c.temb_channels();
      ddpm::Tensor<float, 2> emb_f(n, dim);
      noise(emb_f);
      const typename UNet2D<float>::Matrix e_f =
          Eigen::Map<const typename UNet2D<float>::Matrix>(emb_f.data(), n, dim);
      const typename UNet2D<double>::Matrix e = e_f.cast<double>();
      model_f.forward(x_f, std::span<const double>(t), y_f, e_f);
      model.forward(x, std::span<const double>(t), y, e);
      out.add("class_labels", emb_f);
    } else if (kind == "timestep" || c.num_class_embeds) {
      const double classes = kind == "timestep" ? 1000.0 : static_cast<double>(*c.num_class_embeds);
      noise.uniform(std::span<double>(u));
      std::vector<int> labels(u.size());
      ddpm::Tensor<double, 1> labels_d(n);
      for (std::size_t i = 0; i < u.size(); ++i) {
        labels[i] = static_cast<int>(std::floor(classes * u[i]));
        labels_d(static_cast<Eigen::Index>(i)) = labels[i];
      }
      model_f.forward(x_f, std::span<const double>(t), y_f, std::span<const int>(labels));
      model.forward(x, std::span<const double>(t), y, std::span<const int>(labels));
      out.add("class_labels", labels_d);
    } else {
      model_f.forward(x_f, std::span<const double>(t), y_f);
      model.forward(x, std::span<const double>(t), y);
    }
    out.add("output_f32", y_f);
    out.add("output_f64", y);
    const std::string path = dir + "/export_check.safetensors";
    out.save(path);
    std::printf("wrote %s: %ld images of %d x %d, %lld parameters\n", path.c_str(), batch, h, w,
                static_cast<long long>(model.num_parameters()));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "export_unet_check: %s\n", e.what());
    return 1;
  }
}
