// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// UNet2DConfig: the keys of a diffusers UNet2DModel config.json, their diffusers defaults, and which values
// ddpm::nn::UNet2D supports. Keys that start with '_' (_class_name, _diffusers_version, _name_or_path) are
// bookkeeping and ignored; any other key that UNet2DModel does not take is an error.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "ddpm/error.hpp"
#include "ddpm/io/detail/json_config.hpp"
#include "ddpm/nn/activation.hpp"

namespace ddpm::nn {

/// How large a network UNet2D's constructor and from_pretrained agree to build, checked from the config
/// before anything is allocated (UNet2DConfig::check_size). A config can pass every key's range and still
/// ask for gigabytes; raise a limit to build such a network on purpose.
struct UNet2DLimits {
  /// Scalar parameters (UNet2DConfig::parameter_count()): 2^30, 4 GiB as float. DDPM's CIFAR10 network has
  /// 35.7 million, its 256 x 256 networks about 114 million.
  std::int64_t max_parameters = std::int64_t{1} << 30;
  /// Elements of the largest buffer of a pass at batch 1 for the config's sample_size
  /// (UNet2DConfig::largest_activation()): 2^30.
  std::int64_t max_activation = std::int64_t{1} << 30;
};

struct UNet2DConfig {
  std::optional<std::array<int, 2>> sample_size;  ///< int or [height, width]; informational
  int in_channels = 3;
  int out_channels = 3;
  bool center_input_sample = false;  ///< the model sees 2 x - 1
  std::string time_embedding_type = "positional";
  std::optional<int> time_embedding_dim;  ///< default 4 * block_out_channels[0]
  double freq_shift = 0;
  bool flip_sin_to_cos = true;
  std::vector<std::string> down_block_types = {"DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D",
                                               "AttnDownBlock2D"};
  std::optional<std::string> mid_block_type = "UNetMidBlock2D";  ///< empty: no mid block
  std::vector<std::string> up_block_types = {"AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"};
  std::vector<int> block_out_channels = {224, 448, 672, 896};
  int layers_per_block = 2;
  double mid_block_scale_factor = 1;
  int downsample_padding = 1;
  std::string downsample_type = "conv";
  std::string upsample_type = "conv";
  double dropout = 0;  ///< training only; ignored
  std::string act_fn = "silu";
  std::optional<int> attention_head_dim = 8;  ///< empty: one head as wide as the block
  int norm_num_groups = 32;
  std::optional<int> attn_norm_num_groups;
  double norm_eps = 1e-5;
  std::string resnet_time_scale_shift = "default";
  bool add_attention = true;
  /// null: a table of num_class_embeds labels (or no class conditioning when that is null too); "timestep": an
  /// MLP over the labels' sinusoidal embedding; "identity": the caller passes the class embedding itself.
  std::optional<std::string> class_embed_type;
  std::optional<int> num_class_embeds;  ///< the table's size (class_embed_type null); ignored otherwise
  std::optional<int> num_train_timesteps;  ///< informational
  /// The keys from_json read but ignored (ignorable_keys(), in nlohmann's sorted key order), as diffusers
  /// ignores them with a warning; not written by to_json. Empty for a config built in code.
  std::vector<std::string> ignored_keys;

  // The ranges of the integer keys (checked by validate(); from_json reads every integer as a checked 64-bit
  // value first, so a value outside int is refused by name rather than wrapped or converted with UB).
  static constexpr int kMaxChannels = 1 << 16;   ///< in/out_channels, block_out_channels[i], time_embedding_dim,
                                                 ///< attention_head_dim, norm_num_groups, attn_norm_num_groups
  static constexpr int kMaxBlocks = 16;          ///< entries of block_out_channels (inputs are multiples of 2^(n-1))
  static constexpr int kMaxLayers = 64;          ///< layers_per_block
  static constexpr int kMaxPadding = 1 << 10;    ///< downsample_padding
  static constexpr int kMaxSampleSize = 1 << 16; ///< sample_size (each side)
  static constexpr int kMaxClassEmbeds = 1 << 24;      ///< num_class_embeds
  static constexpr int kMaxTrainTimesteps = 1 << 24;   ///< num_train_timesteps
  static constexpr int kMaxJsonDepth = 32;       ///< nesting of config.json (its values nest at most 2 deep)

  /// Every key UNet2DModel's config.json may hold (besides '_'-prefixed ones).
  static const std::vector<std::string>& supported_keys() {
    static const std::vector<std::string> keys = {
        "sample_size",       "in_channels",          "out_channels",           "center_input_sample",
        "time_embedding_type", "time_embedding_dim", "freq_shift",             "flip_sin_to_cos",
        "down_block_types",  "mid_block_type",       "up_block_types",         "block_out_channels",
        "layers_per_block",  "mid_block_scale_factor", "downsample_padding",   "downsample_type",
        "upsample_type",     "dropout",              "act_fn",                 "attention_head_dim",
        "norm_num_groups",   "attn_norm_num_groups", "norm_eps",               "resnet_time_scale_shift",
        "add_attention",     "class_embed_type",     "num_class_embeds",       "num_train_timesteps"};
    return keys;
  }

  /// Keys that do not change the network and that from_json ignores (listing them in ignored_keys): the
  /// state diffusers' EMAModel.save_pretrained registers in config.json (decay, inv_gamma, min_decay,
  /// optimization_step, power, update_after_step, use_ema_warmup). diffusers' UNet2DModel ignores them with a
  /// warning.
  static const std::vector<std::string>& ignorable_keys() {
    static const std::vector<std::string> keys = {"decay", "inv_gamma", "min_decay", "optimization_step",
                                                  "power", "update_after_step", "use_ema_warmup"};
    return keys;
  }

  /// The DDPM paper's CIFAR10 network (google/ddpm-cifar10-32): 35,746,307 parameters in 328 tensors.
  static UNet2DConfig ddpm_cifar10() {
    UNet2DConfig c;
    c.sample_size = std::array<int, 2>{32, 32};
    c.block_out_channels = {128, 256, 256, 256};
    c.down_block_types = {"DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"};
    c.up_block_types = {"UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"};
    c.layers_per_block = 2;
    c.attention_head_dim = std::nullopt;
    c.downsample_padding = 0;
    c.flip_sin_to_cos = false;
    c.freq_shift = 1;
    c.norm_eps = 1e-6;
    c.norm_num_groups = 32;
    return c;
  }

  /// Width of the time embedding: time_embedding_dim, or 4 * block_out_channels[0].
  int temb_channels() const { return time_embedding_dim.value_or(4 * block_out_channels.front()); }

  /// The number of scalar parameters of the UNet2D this config describes, in closed form (no allocation),
  /// as UNet2D::num_parameters() counts them once built. Precondition: validate() passes (the ranges keep every
  /// product below 2^63).
  ///   ResNet block in -> out: 2 in (norm1) + 9 in out + out (conv1) + temb p + p (time_emb_proj, p = out, or
  ///   2 out with scale_shift) + 2 out (norm2) + 9 out^2 + out (conv2) [+ in out + out (conv_shortcut, in != out)];
  ///   attention over c channels, head width h: 2 c (GroupNorm, if any) + 4 c i + 3 i + c, i = (c / h) h.
  std::int64_t parameter_count() const {
    using I = std::int64_t;
    const I temb = temb_channels();
    const bool scale_shift = resnet_time_scale_shift == "scale_shift";
    auto resnet = [&](I in, I out) {
      const I p = scale_shift ? 2 * out : out;
      return 2 * in + 9 * in * out + out + temb * p + p + 2 * out + 9 * out * out + out + (in != out ? in * out + out : 0);
    };
    auto attention = [&](I c, I head, bool norm) {
      const I inner = (c / head) * head;
      return (norm ? 2 * c : 0) + 4 * c * inner + 3 * inner + c;
    };
    auto conv3 = [](I in, I out) { return 9 * in * out + out; };
    auto mlp = [&](I in) { return in * temb + temb + temb * temb + temb; };  // TimestepEmbedding
    const std::vector<int>& ch = block_out_channels;
    const std::size_t n = ch.size();
    I total = conv3(in_channels, ch[0]) + mlp(ch[0]);
    if (class_embed_type && *class_embed_type == "timestep") {
      total += mlp(ch[0]);
    } else if (!class_embed_type && num_class_embeds) {
      total += I{*num_class_embeds} * temb;
    }
    I out = ch[0];
    for (std::size_t i = 0; i < n; ++i) {
      const I in = out;
      out = ch[i];
      const bool attn = down_block_types[i] == "AttnDownBlock2D";
      for (int l = 0; l < layers_per_block; ++l) {
        total += resnet(l == 0 ? in : out, out);
        if (attn) total += attention(out, attention_head_dim.value_or(static_cast<int>(out)), true);
      }
      if (i + 1 < n) total += conv3(out, out);  // Downsample2D
    }
    if (mid_block_type) {
      const I c = ch.back();
      total += 2 * resnet(c, c);
      if (add_attention) {
        total += attention(c, attention_head_dim.value_or(static_cast<int>(c)), attn_norm_num_groups || !scale_shift);
      }
    }
    out = ch.back();
    for (std::size_t i = 0; i < n; ++i) {
      const I prev = out;
      out = ch[n - 1 - i];
      const I in = ch[n >= 2 + i ? n - 2 - i : 0];
      const bool attn = up_block_types[i] == "AttnUpBlock2D";
      for (int l = 0; l <= layers_per_block; ++l) {
        const I skip = l == layers_per_block ? in : out;
        total += resnet((l == 0 ? prev : out) + skip, out);
        if (attn) total += attention(out, attention_head_dim.value_or(static_cast<int>(out)), true);
      }
      if (i + 1 < n) total += conv3(out, out);  // Upsample2D
    }
    return total + 2 * I{ch[0]} + conv3(ch[0], out_channels);  // conv_norm_out, conv_out
  }

  /// An upper estimate of the largest buffer of a pass at batch 1 for sample_size (0 when sample_size is
  /// null): 3 x max(block_out_channels, in_channels, out_channels) x height x width, which bounds an up block's
  /// concatenation (at most twice the widest block) and an attention's q, k, v (three times its width) at full
  /// resolution. Precondition: validate() passes.
  std::int64_t largest_activation() const {
    if (!sample_size) return 0;
    std::int64_t widest = std::max(in_channels, out_channels);
    for (int c : block_out_channels) widest = std::max<std::int64_t>(widest, c);
    return 3 * widest * (*sample_size)[0] * (*sample_size)[1];
  }

  /// Throws ddpm::invalid_argument, naming the count and the limit, if parameter_count() exceeds
  /// limits.max_parameters or largest_activation() exceeds limits.max_activation (see UNet2DLimits).
  /// Precondition: validate() passes.
  void check_size(const UNet2DLimits& limits = {}) const {
    const std::int64_t params = parameter_count();
    if (params > limits.max_parameters) {
      ddpm::detail::throw_invalid_argument(
          "ddpm::nn::UNet2DConfig: the network has " + ddpm::detail::number_string(params) + " parameters (" +
          ddpm::detail::number_string(params * 4 / (1 << 20)) + " MiB as float), but UNet2DLimits::max_parameters is " +
          ddpm::detail::number_string(limits.max_parameters) + " (raise it to build this network)");
    }
    const std::int64_t act = largest_activation();
    if (act > limits.max_activation) {
      ddpm::detail::throw_invalid_argument(
          "ddpm::nn::UNet2DConfig: a pass at sample_size " + ddpm::detail::number_string((*sample_size)[0]) + " x " +
          ddpm::detail::number_string((*sample_size)[1]) + " needs buffers of up to about " + ddpm::detail::number_string(act) +
          " elements per image, but UNet2DLimits::max_activation is " + ddpm::detail::number_string(limits.max_activation) +
          " (raise it to build this network)");
    }
  }

  /// Checks every value against what UNet2D supports.
  /// Throws ddpm::invalid_argument naming the key, its value and the supported values.
  void validate() const {
    auto fail = [](const std::string& what) {
      ddpm::detail::throw_invalid_argument("ddpm::nn::UNet2DConfig: " + what);
    };
    auto in_range = [&](const std::string& key, long long v, long long lo, long long hi) {
      if (v < lo || v > hi) fail(key + " is " + ddpm::detail::number_string(v) + ", but must be in " + range_string(lo, hi));
    };
    in_range("in_channels", in_channels, 1, kMaxChannels);
    in_range("out_channels", out_channels, 1, kMaxChannels);
    in_range("layers_per_block", layers_per_block, 1, kMaxLayers);
    in_range("norm_num_groups", norm_num_groups, 1, kMaxChannels);
    if (time_embedding_dim) in_range("time_embedding_dim", *time_embedding_dim, 1, kMaxChannels);
    if (attention_head_dim) in_range("attention_head_dim", *attention_head_dim, 1, kMaxChannels);
    if (attn_norm_num_groups) in_range("attn_norm_num_groups", *attn_norm_num_groups, 1, kMaxChannels);
    if (sample_size) {
      in_range("sample_size[0]", (*sample_size)[0], 1, kMaxSampleSize);
      in_range("sample_size[1]", (*sample_size)[1], 1, kMaxSampleSize);
    }
    if (num_train_timesteps) in_range("num_train_timesteps", *num_train_timesteps, 1, kMaxTrainTimesteps);
    in_range("downsample_padding", downsample_padding, 0, kMaxPadding);
    if (time_embedding_type != "positional") {
      fail("time_embedding_type is \"" + time_embedding_type + "\", but must be \"positional\" (supported: positional)");
    }
    if (block_out_channels.empty() || block_out_channels.size() > static_cast<std::size_t>(kMaxBlocks)) {
      fail("block_out_channels has " + ddpm::detail::number_string(block_out_channels.size()) +
           " entries, but must have one per block, 1 to " + ddpm::detail::number_string(kMaxBlocks));
    }
    for (std::size_t i = 0; i < block_out_channels.size(); ++i) {
      const int c = block_out_channels[i];
      in_range("block_out_channels[" + ddpm::detail::number_string(i) + "]", c, 1, kMaxChannels);
      if (c % norm_num_groups != 0) {
        fail("block_out_channels[" + ddpm::detail::number_string(i) + "] is " + ddpm::detail::number_string(c) +
             ", but must be a multiple of norm_num_groups (" + ddpm::detail::number_string(norm_num_groups) + ")");
      }
    }
    if (down_block_types.size() != block_out_channels.size() || up_block_types.size() != block_out_channels.size()) {
      fail("down_block_types, up_block_types and block_out_channels have " + ddpm::detail::number_string(down_block_types.size()) +
           ", " + ddpm::detail::number_string(up_block_types.size()) + " and " + ddpm::detail::number_string(block_out_channels.size()) +
           " entries, but must have the same number");
    }
    for (std::size_t i = 0; i < down_block_types.size(); ++i) {
      if (down_block_types[i] != "DownBlock2D" && down_block_types[i] != "AttnDownBlock2D") {
        fail("down_block_types[" + ddpm::detail::number_string(i) + "] is \"" + down_block_types[i] +
             "\", but must be one of DownBlock2D, AttnDownBlock2D");
      }
      if (up_block_types[i] != "UpBlock2D" && up_block_types[i] != "AttnUpBlock2D") {
        fail("up_block_types[" + ddpm::detail::number_string(i) + "] is \"" + up_block_types[i] +
             "\", but must be one of UpBlock2D, AttnUpBlock2D");
      }
    }
    if (mid_block_type && *mid_block_type != "UNetMidBlock2D") {
      fail("mid_block_type is \"" + *mid_block_type + "\", but must be one of UNetMidBlock2D, null");
    }
    if (!(std::isfinite(mid_block_scale_factor) && mid_block_scale_factor != 0.0)) {
      fail("mid_block_scale_factor is " + ddpm::detail::number_string(mid_block_scale_factor) + ", but must be finite and != 0");
    }
    if (downsample_type != "conv") {
      fail("downsample_type is \"" + downsample_type + "\", but must be \"conv\" (supported: conv)");
    }
    if (upsample_type != "conv") fail("upsample_type is \"" + upsample_type + "\", but must be \"conv\" (supported: conv)");
    try {
      (void)parse_activation(act_fn);
    } catch (const ddpm::invalid_argument&) {
      fail("act_fn is \"" + act_fn + "\", but must be one of silu, swish, mish, gelu, relu");
    }
    if (!(norm_eps > 0.0)) fail("norm_eps is " + ddpm::detail::number_string(norm_eps) + ", but must be > 0");
    if (resnet_time_scale_shift != "default" && resnet_time_scale_shift != "scale_shift") {
      fail("resnet_time_scale_shift is \"" + resnet_time_scale_shift +
           "\", but must be one of default, scale_shift");
    }
    if (attn_norm_num_groups && block_out_channels.back() % *attn_norm_num_groups != 0) {
      fail("attn_norm_num_groups is " + ddpm::detail::number_string(*attn_norm_num_groups) +
           ", but must divide block_out_channels[-1] (" + ddpm::detail::number_string(block_out_channels.back()) + ")");
    }
    if (attention_head_dim) {
      for (std::size_t i = 0; i < block_out_channels.size(); ++i) {
        if (*attention_head_dim > block_out_channels[i]) {
          fail("attention_head_dim is " + ddpm::detail::number_string(*attention_head_dim) +
               ", but must not exceed block_out_channels[" + ddpm::detail::number_string(i) + "] (" +
               ddpm::detail::number_string(block_out_channels[i]) + ")");
        }
      }
    }
    const int half = block_out_channels.front() / 2;
    if (static_cast<double>(half) == freq_shift) {
      fail("freq_shift is " + ddpm::detail::number_string(freq_shift) + ", but must differ from block_out_channels[0] / 2");
    }
    if (!(dropout >= 0.0 && dropout <= 1.0)) fail("dropout is " + ddpm::detail::number_string(dropout) + ", but must be in [0, 1]");
    if (class_embed_type && *class_embed_type != "timestep" && *class_embed_type != "identity") {
      fail("class_embed_type is \"" + *class_embed_type + "\", but must be null (a table of num_class_embeds), "
           "\"timestep\" or \"identity\"");
    }
    if (!class_embed_type && num_class_embeds && (*num_class_embeds < 1 || *num_class_embeds > kMaxClassEmbeds)) {
      fail("num_class_embeds is " + ddpm::detail::number_string(*num_class_embeds) + ", but must be in " +
           range_string(1, kMaxClassEmbeds) + " (or null)");
    }
  }

  /// The config described by a parsed config.json. `source` names the file in error messages. Keys starting
  /// with '_' are skipped; ignorable_keys() are skipped and listed in ignored_keys.
  /// Throws ddpm::format_error for a key UNet2DModel does not take (listing the keys it takes), a value nested
  /// deeper than kMaxJsonDepth - 1 levels, a value of the wrong JSON type, an integer outside its range (read
  /// as a checked 64-bit value: never wrapped or converted with undefined behaviour), or a value UNet2D does
  /// not support (see validate()). Values in messages are truncated to about 200 characters.
  static UNet2DConfig from_json(const nlohmann::json& j, const std::string& source = "config.json") {
    const std::string where = "ddpm::nn::UNet2DConfig: " + source + ": ";
    if (!j.is_object()) ddpm::detail::throw_format_error(where + "must be a JSON object");
    UNet2DConfig c;
    const std::vector<std::string>& keys = supported_keys();
    for (const auto& [key, value] : j.items()) {
      // Before anything formats or walks the value recursively (nlohmann's dump() and copies recurse once
      // per level; a 100,000-deep list overflowed the stack while formatting an error).
      if (io::detail::nests_deeper_than(value, kMaxJsonDepth - 1)) {
        ddpm::detail::throw_format_error(where + "key \"" + io::detail::truncated(key) + "\" holds a value that nests deeper than " +
                                         ddpm::detail::number_string(kMaxJsonDepth - 1) + " levels");
      }
      if (!key.empty() && key.front() == '_') continue;
      if (const auto& skip = ignorable_keys(); std::find(skip.begin(), skip.end(), key) != skip.end()) {
        c.ignored_keys.push_back(key);
        continue;
      }
      if (std::find(keys.begin(), keys.end(), key) == keys.end()) {
        std::string list;
        for (const std::string& k : keys) list += (list.empty() ? "" : ", ") + k;
        ddpm::detail::throw_format_error(where + "unsupported key \"" + io::detail::truncated(key) + "\"; the supported keys are " +
                                         list);
      }
      try {
        c.set(key, value);
      } catch (const WrongType& e) {
        ddpm::detail::throw_format_error(where + "key \"" + key + "\" is " + describe(value) + ", but " + e.expected);
      } catch (const OutOfRange& e) {
        ddpm::detail::throw_format_error(where + "key \"" + e.key + "\" is " + e.value + ", but must be an integer in " +
                                         range_string(e.lo, e.hi));
      } catch (const nlohmann::json::exception& e) {
        ddpm::detail::throw_format_error(where + "key \"" + key + "\" is " + describe(value) +
                                         ", a value of the wrong type (" + e.what() + ")");
      }
    }
    try {
      c.validate();
    } catch (const ddpm::invalid_argument& e) {
      ddpm::detail::throw_format_error(where + e.what());
    }
    return c;
  }

  /// Reads and parses a config.json. Throws ddpm::format_error if it cannot be read, nests lists and objects
  /// deeper than kMaxJsonDepth, is not JSON, or from_json rejects it.
  static UNet2DConfig from_file(const std::string& path) {
    std::ifstream in(path);
    if (!in) ddpm::detail::throw_format_error("ddpm::nn::UNet2DConfig: cannot open '" + path + "'");
    std::stringstream text;
    text << in.rdbuf();
    const std::string str = text.str();
    // nlohmann's parser does not recurse, but formatting and copying a parsed value do: refuse deep nesting
    // in the text itself, before a value exists.
    if (const auto offset = io::detail::nesting_exceeded(str, kMaxJsonDepth)) {
      ddpm::detail::throw_format_error("ddpm::nn::UNet2DConfig: " + path + " nests deeper than " +
                                       ddpm::detail::number_string(kMaxJsonDepth) + " levels (at byte offset " +
                                       ddpm::detail::number_string(*offset) + ")");
    }
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(str);
    } catch (const nlohmann::json::exception& e) {
      ddpm::detail::throw_format_error("ddpm::nn::UNet2DConfig: " + path + " is not valid JSON (" + e.what() + ")");
    }
    return from_json(j, path);
  }

  /// The config as diffusers writes it (every key, nulls included).
  nlohmann::json to_json() const {
    nlohmann::json j;
    j["_class_name"] = "UNet2DModel";
    j["sample_size"] = sample_size ? nlohmann::json((*sample_size)[0] == (*sample_size)[1]
                                                        ? nlohmann::json((*sample_size)[0])
                                                        : nlohmann::json(*sample_size))
                                   : nlohmann::json(nullptr);
    j["in_channels"] = in_channels;
    j["out_channels"] = out_channels;
    j["center_input_sample"] = center_input_sample;
    j["time_embedding_type"] = time_embedding_type;
    j["time_embedding_dim"] = optional_json(time_embedding_dim);
    j["freq_shift"] = freq_shift == std::floor(freq_shift) ? nlohmann::json(static_cast<long long>(freq_shift))
                                                           : nlohmann::json(freq_shift);
    j["flip_sin_to_cos"] = flip_sin_to_cos;
    j["down_block_types"] = down_block_types;
    j["mid_block_type"] = optional_json(mid_block_type);
    j["up_block_types"] = up_block_types;
    j["block_out_channels"] = block_out_channels;
    j["layers_per_block"] = layers_per_block;
    j["mid_block_scale_factor"] = mid_block_scale_factor;
    j["downsample_padding"] = downsample_padding;
    j["downsample_type"] = downsample_type;
    j["upsample_type"] = upsample_type;
    j["dropout"] = dropout;
    j["act_fn"] = act_fn;
    j["attention_head_dim"] = optional_json(attention_head_dim);
    j["norm_num_groups"] = norm_num_groups;
    j["attn_norm_num_groups"] = optional_json(attn_norm_num_groups);
    j["norm_eps"] = norm_eps;
    j["resnet_time_scale_shift"] = resnet_time_scale_shift;
    j["add_attention"] = add_attention;
    j["class_embed_type"] = optional_json(class_embed_type);
    j["num_class_embeds"] = optional_json(num_class_embeds);
    j["num_train_timesteps"] = optional_json(num_train_timesteps);
    return j;
  }

 private:
  struct WrongType {
    const char* expected;
  };
  struct OutOfRange {
    std::string key, value;
    long long lo, hi;
  };

  static std::string range_string(long long lo, long long hi) {
    std::string s(1, '[');  // appended piecewise: GCC 12 -O3 warns (-Wrestrict) on "[" + std::string&&
    s += ddpm::detail::number_string(lo);
    s += ", ";
    s += ddpm::detail::number_string(hi);
    s += ']';
    return s;
  }

  /// A value for a message: its JSON text truncated to about 200 characters (called only on values that
  /// nests_deeper_than has bounded, so dump() recurses at most kMaxJsonDepth levels).
  static std::string describe(const nlohmann::json& v) {
    if (io::detail::nests_deeper_than(v, kMaxJsonDepth)) return "a value nested deeper than " + ddpm::detail::number_string(kMaxJsonDepth) + " levels";
    return io::detail::truncated(v.dump());
  }

  template <class T>
  static nlohmann::json optional_json(const std::optional<T>& v) {
    return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
  }

  template <class T>
  static std::optional<T> optional_value(const nlohmann::json& v) {
    if (v.is_null()) return std::nullopt;
    return v.get<T>();
  }

  /// The integer `v` if it lies in [lo, hi]. JSON integers are read as checked 64-bit values and integral
  /// floats (3.0) are compared as doubles before any conversion, so nothing wraps or converts with UB.
  /// Throws WrongType (not an integer) or OutOfRange naming `key` and the value as written.
  static int integer(const nlohmann::json& v, const std::string& key, long long lo, long long hi) {
    if (v.is_number_unsigned()) {
      const std::uint64_t u = v.get<std::uint64_t>();
      if (u > static_cast<std::uint64_t>(hi)) throw OutOfRange{key, ddpm::detail::number_string(u), lo, hi};
      return static_cast<int>(u);
    }
    if (v.is_number_integer()) {
      const std::int64_t i = v.get<std::int64_t>();
      if (i < lo || i > hi) throw OutOfRange{key, ddpm::detail::number_string(i), lo, hi};
      return static_cast<int>(i);
    }
    if (v.is_number_float()) {
      const double d = v.get<double>();
      if (!std::isfinite(d) || d != std::floor(d)) throw WrongType{"must be an integer"};
      if (d < static_cast<double>(lo) || d > static_cast<double>(hi)) {
        std::ostringstream shown;
        if (std::fabs(d) < 1e18) {
          shown << static_cast<long long>(d);
        } else {
          shown << d;
        }
        throw OutOfRange{key, shown.str(), lo, hi};
      }
      return static_cast<int>(d);
    }
    throw WrongType{"must be an integer"};
  }

  static double number(const nlohmann::json& v) {
    if (!v.is_number()) throw WrongType{"must be a number"};
    return v.get<double>();
  }

  static bool boolean(const nlohmann::json& v) {
    if (!v.is_boolean()) throw WrongType{"must be true or false"};
    return v.get<bool>();
  }

  static std::optional<int> optional_integer(const nlohmann::json& v, const std::string& key, long long lo,
                                             long long hi) {
    if (v.is_null()) return std::nullopt;
    return integer(v, key, lo, hi);
  }

  void set(const std::string& key, const nlohmann::json& v) {
    if (key == "sample_size") {
      if (v.is_null()) {
        sample_size.reset();
      } else if (v.is_array()) {
        if (v.size() != 2) throw WrongType{"must be an integer or [height, width]"};
        sample_size = std::array<int, 2>{integer(v[0], "sample_size[0]", 1, kMaxSampleSize),
                                         integer(v[1], "sample_size[1]", 1, kMaxSampleSize)};
      } else {
        const int s = integer(v, key, 1, kMaxSampleSize);
        sample_size = std::array<int, 2>{s, s};
      }
    } else if (key == "in_channels") {
      in_channels = integer(v, key, 1, kMaxChannels);
    } else if (key == "out_channels") {
      out_channels = integer(v, key, 1, kMaxChannels);
    } else if (key == "center_input_sample") {
      center_input_sample = boolean(v);
    } else if (key == "time_embedding_type") {
      time_embedding_type = v.get<std::string>();
    } else if (key == "time_embedding_dim") {
      time_embedding_dim = optional_integer(v, key, 1, kMaxChannels);
    } else if (key == "freq_shift") {
      freq_shift = number(v);
    } else if (key == "flip_sin_to_cos") {
      flip_sin_to_cos = boolean(v);
    } else if (key == "down_block_types") {
      down_block_types = v.get<std::vector<std::string>>();
    } else if (key == "mid_block_type") {
      mid_block_type = optional_value<std::string>(v);
    } else if (key == "up_block_types") {
      up_block_types = v.get<std::vector<std::string>>();
    } else if (key == "block_out_channels") {
      if (!v.is_array()) throw WrongType{"must be a list of integers"};
      block_out_channels.clear();
      for (std::size_t i = 0; i < v.size(); ++i) {
        block_out_channels.push_back(integer(v[i], key + "[" + ddpm::detail::number_string(i) + "]", 1, kMaxChannels));
      }
    } else if (key == "layers_per_block") {
      layers_per_block = integer(v, key, 1, kMaxLayers);
    } else if (key == "mid_block_scale_factor") {
      mid_block_scale_factor = number(v);
    } else if (key == "downsample_padding") {
      downsample_padding = integer(v, key, 0, kMaxPadding);
    } else if (key == "downsample_type") {
      downsample_type = v.get<std::string>();
    } else if (key == "upsample_type") {
      upsample_type = v.get<std::string>();
    } else if (key == "dropout") {
      dropout = number(v);
    } else if (key == "act_fn") {
      act_fn = v.get<std::string>();
    } else if (key == "attention_head_dim") {
      attention_head_dim = optional_integer(v, key, 1, kMaxChannels);
    } else if (key == "norm_num_groups") {
      norm_num_groups = integer(v, key, 1, kMaxChannels);
    } else if (key == "attn_norm_num_groups") {
      attn_norm_num_groups = optional_integer(v, key, 1, kMaxChannels);
    } else if (key == "norm_eps") {
      norm_eps = number(v);
    } else if (key == "resnet_time_scale_shift") {
      resnet_time_scale_shift = v.get<std::string>();
    } else if (key == "add_attention") {
      add_attention = boolean(v);
    } else if (key == "class_embed_type") {
      class_embed_type = optional_value<std::string>(v);
    } else if (key == "num_class_embeds") {
      num_class_embeds = optional_integer(v, key, 1, kMaxClassEmbeds);
    } else if (key == "num_train_timesteps") {
      num_train_timesteps = optional_integer(v, key, 1, kMaxTrainTimesteps);
    }
  }
};

}  // namespace ddpm::nn
