// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// A minimal writer of NumPy's .npy and uncompressed .npz files, for handing samples to Python tools (the
// FID evaluators of guided-diffusion and torch-fidelity read an .npz whose array arr_0 holds uint8 NHWC
// images, as np.savez(path, images) writes it).
//
//   .npy (format version 1.0): the magic "\x93NUMPY", the bytes 1, 0, a little-endian uint16 header length,
//        the header, a Python dict literal {'descr': '|u1', 'fortran_order': False, 'shape': (N, H, W, C), }
//        padded with spaces and ended by '\n' so that the data starts at a multiple of 64 bytes, then the
//        values in C order.
//   .npz: a ZIP archive with one stored (method 0, uncompressed) entry per array, "<name>.npy": local file
//        header, data, central directory, end of central directory record (PKWARE APPNOTE 6.3, sections
//        4.3.7, 4.3.12, 4.3.16). The CRC-32 is zlib's. Every timestamp is the DOS epoch (1980-01-01 00:00),
//        so the same arrays always give the same bytes. Without ZIP64, an entry and the archive must stay
//        below 4 GiB; write_npz refuses larger ones.

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include <zlib.h>

namespace examples {

/// An array to store: its NumPy dtype descriptor ('|u1', '<f4', ...), shape and raw C-order bytes.
struct NpyArray {
  std::string name;   // the entry is name + ".npy"; np.load(path)[name] reads it back
  std::string descr;  // e.g. "|u1" for uint8, "<f4" for little-endian float32
  std::vector<std::uint64_t> shape;
  std::span<const unsigned char> bytes;
};

/// The .npy header (magic, version, length, dict, padding) of an array, data offset a multiple of 64.
inline std::string npy_header(const NpyArray& a) {
  std::string shape = "(";
  for (std::size_t d = 0; d < a.shape.size(); ++d) shape += std::to_string(a.shape[d]) + ", ";
  if (a.shape.size() > 1) shape.resize(shape.size() - 2);  // (N, H) but (N,) for one dimension
  else if (a.shape.size() == 1) shape.resize(shape.size() - 1);
  shape += ")";
  std::string dict = "{'descr': '" + a.descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  const std::size_t unpadded = 10 + dict.size() + 1;  // magic 6 + version 2 + length 2, dict, '\n'
  dict.append((64 - unpadded % 64) % 64, ' ');
  dict += '\n';
  std::string header = "\x93NUMPY";
  header += '\x01';
  header += '\x00';
  header += static_cast<char>(dict.size() & 0xFF);
  header += static_cast<char>(dict.size() >> 8);
  return header + dict;
}

namespace detail {

inline void put16(std::string& s, std::uint32_t v) {
  s += static_cast<char>(v & 0xFF);
  s += static_cast<char>((v >> 8) & 0xFF);
}
inline void put32(std::string& s, std::uint32_t v) {
  put16(s, v & 0xFFFF);
  put16(s, v >> 16);
}

inline std::uint32_t crc32_update(std::uint32_t crc, const unsigned char* data, std::size_t n) {
  constexpr std::size_t kBlock = std::size_t{1} << 30;  // zlib takes a uInt length
  uLong c = crc;
  for (std::size_t done = 0; done < n; done += kBlock) {
    const std::size_t len = std::min(kBlock, n - done);
    c = ::crc32(c, data + done, static_cast<uInt>(len));
  }
  return static_cast<std::uint32_t>(c);
}

}  // namespace detail

/// Writes the arrays as an uncompressed .npz (np.savez's layout). Throws std::runtime_error if the file
/// cannot be written or the archive would need ZIP64 (an entry or the whole file of 4 GiB or more).
inline void write_npz(const std::string& path, std::span<const NpyArray> arrays) {
  constexpr std::uint64_t kZipLimit = std::numeric_limits<std::uint32_t>::max();
  constexpr std::uint32_t kDosTime = 0, kDosDate = (0u << 9) | (1u << 5) | 1u;  // 1980-01-01 00:00:00
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) throw std::runtime_error("write_npz: cannot open \"" + path + "\" for writing");
  std::string central;
  std::uint64_t offset = 0;
  auto write = [&](const void* data, std::size_t n) {
    if (n > 0 && std::fwrite(data, 1, n, f) != n) {
      std::fclose(f);
      throw std::runtime_error("write_npz: writing \"" + path + "\" failed");
    }
    offset += n;
  };
  for (const NpyArray& a : arrays) {
    const std::string header = npy_header(a);
    const std::uint64_t size = header.size() + a.bytes.size();
    const std::string name = a.name + ".npy";
    if (size >= kZipLimit || offset + size + 30 + name.size() >= kZipLimit) {
      std::fclose(f);
      throw std::runtime_error("write_npz: \"" + path + "\" would reach 4 GiB (array " + a.name + " has " +
                               std::to_string(size) + " bytes), which needs ZIP64; write fewer images per file");
    }
    std::uint32_t crc = detail::crc32_update(0, reinterpret_cast<const unsigned char*>(header.data()), header.size());
    crc = detail::crc32_update(crc, a.bytes.data(), a.bytes.size());
    const auto size32 = static_cast<std::uint32_t>(size);
    const auto local_offset = static_cast<std::uint32_t>(offset);
    std::string local;
    detail::put32(local, 0x04034b50u);  // local file header signature
    detail::put16(local, 20);           // version needed to extract: 2.0
    detail::put16(local, 0);            // flags
    detail::put16(local, 0);            // method: stored
    detail::put16(local, kDosTime);
    detail::put16(local, kDosDate);
    detail::put32(local, crc);
    detail::put32(local, size32);  // compressed size
    detail::put32(local, size32);  // uncompressed size
    detail::put16(local, static_cast<std::uint32_t>(name.size()));
    detail::put16(local, 0);  // extra field length
    local += name;
    write(local.data(), local.size());
    write(header.data(), header.size());
    write(a.bytes.data(), a.bytes.size());

    detail::put32(central, 0x02014b50u);  // central directory file header signature
    detail::put16(central, 20);           // version made by: 2.0, MS-DOS attributes
    detail::put16(central, 20);
    detail::put16(central, 0);
    detail::put16(central, 0);
    detail::put16(central, kDosTime);
    detail::put16(central, kDosDate);
    detail::put32(central, crc);
    detail::put32(central, size32);
    detail::put32(central, size32);
    detail::put16(central, static_cast<std::uint32_t>(name.size()));
    detail::put16(central, 0);  // extra field length
    detail::put16(central, 0);  // comment length
    detail::put16(central, 0);  // disk number start
    detail::put16(central, 0);  // internal attributes
    detail::put32(central, 0);  // external attributes
    detail::put32(central, local_offset);
    central += name;
  }
  if (offset + central.size() + 22 >= kZipLimit) {
    std::fclose(f);
    throw std::runtime_error("write_npz: \"" + path + "\" would reach 4 GiB, which needs ZIP64");
  }
  const auto central_offset = static_cast<std::uint32_t>(offset);
  std::string end;
  detail::put32(end, 0x06054b50u);  // end of central directory signature
  detail::put16(end, 0);            // this disk
  detail::put16(end, 0);            // disk with the central directory
  detail::put16(end, static_cast<std::uint32_t>(arrays.size()));
  detail::put16(end, static_cast<std::uint32_t>(arrays.size()));
  detail::put32(end, static_cast<std::uint32_t>(central.size()));
  detail::put32(end, central_offset);
  detail::put16(end, 0);  // comment length
  write(central.data(), central.size());
  write(end.data(), end.size());
  if (std::fclose(f) != 0) throw std::runtime_error("write_npz: closing \"" + path + "\" failed");
}

}  // namespace examples
