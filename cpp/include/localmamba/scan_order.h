// Scan orders over an H x W token grid (SPEC section 1.1). A scan order lists the
// spatial positions p = i * W + j visited, with -1 marking a zero padding token.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace localmamba {

// A scan-order family, e.g. row-major "h" or windowed "w{K}". Every family visits each position
// of the grid padded to multiples of its window K (K = 1 for a family without "{K}") exactly once;
// positions outside the H x W grid are zero padding tokens. "_flip" (the order reversed) applies
// to every family. The families are one table in scan_order.cpp (scan_families()); adding a family
// is one entry there and its mirror in python/localmamba/ops/directions.py (SCAN_FAMILIES).
struct ScanFamily {
  // Visits position (i, j) of the padded grid; called once per position, in scan order.
  using Visit = void (*)(void* context, int64_t i, int64_t j);
  // The direction name with "{K}" standing for the window size, e.g. "w{K}_col".
  const char* pattern;
  // Calls visit(context, i, j) for every position of the padded_height x padded_width grid (both
  // multiples of k), in the family's order.
  void (*visit_padded_grid)(int64_t padded_height, int64_t padded_width, int64_t k, Visit visit, void* context);

  bool has_window() const;
};

// Every family the library knows, in a fixed order (also the order of the accepted forms in errors).
const std::vector<ScanFamily>& scan_families();

struct ScanDirection {
  int family = 0;      // index into scan_families(); 0 is row-major "h"
  int64_t window = 1;  // K, only for families whose pattern has "{K}"
  bool flip = false;

  const ScanFamily& scan_family() const;
  std::string name() const;
};

// Longest scan sequence (padding included) the library builds: 2^24 tokens, e.g. a 4096 x 4096
// grid. Larger sizes are rejected before anything is allocated (an int64 index table of this
// length is 128 MiB per direction). Window sizes are bounded by the same rule: a window larger
// than the grid pads it to one K x K window, so K <= kMaxScanWindow.
constexpr int64_t kMaxScanLength = int64_t{1} << 24;
constexpr int64_t kMaxScanWindow = int64_t{1} << 12;

// Parses a family's name ("h", "v", "wK", "wK_col", K >= 1) with an optional "_flip" suffix.
// Throws std::invalid_argument naming the direction and the accepted forms.
ScanDirection parse_direction(const std::string& name);

// Number of tokens visited, padding included. Throws std::invalid_argument naming the
// direction, the grid and the limit when it exceeds kMaxScanLength.
int64_t scan_length(const ScanDirection& direction, int64_t height, int64_t width);

// The visit order (length scan_length), -1 for padding tokens.
std::vector<int64_t> scan_order(const ScanDirection& direction, int64_t height, int64_t width);

// Index maps for K directions, each padded with -1 at the end to the longest length:
// a row-major (K, max_length) table. Also fills the inverse table (K, H*W): for each
// direction and spatial position, its index in that direction's sequence.
struct ScanIndexMaps {
  int64_t num_directions = 0;
  int64_t max_length = 0;
  int64_t num_tokens = 0;
  std::vector<int64_t> forward;  // (K, max_length): sequence index -> spatial position or -1
  std::vector<int64_t> inverse;  // (K, num_tokens): spatial position -> sequence index
};

ScanIndexMaps build_scan_index_maps(const std::vector<ScanDirection>& directions, int64_t height,
                                    int64_t width);

}  // namespace localmamba
