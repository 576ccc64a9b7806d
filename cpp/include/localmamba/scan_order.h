// Scan orders over an H x W token grid (SPEC section 1.1). A scan order lists the
// spatial positions p = i * W + j visited, with -1 marking a zero padding token.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace localmamba {

enum class ScanKind : int {
  kRowMajor = 0,           // "h"
  kColumnMajor = 1,        // "v"
  kWindow = 2,             // "wK": windows row-major, tokens row-major inside a window
  kWindowColumnFirst = 3,  // "wK_col": windows and in-window tokens both column-major
};

struct ScanDirection {
  ScanKind kind = ScanKind::kRowMajor;
  int64_t window = 1;  // only for the window kinds
  bool flip = false;

  std::string name() const;
};

// Longest scan sequence (padding included) the library builds: 2^24 tokens, e.g. a 4096 x 4096
// grid. Larger sizes are rejected before anything is allocated (an int64 index table of this
// length is 128 MiB per direction). Window sizes are bounded by the same rule: a window larger
// than the grid pads it to one K x K window, so K <= kMaxScanWindow.
constexpr int64_t kMaxScanLength = int64_t{1} << 24;
constexpr int64_t kMaxScanWindow = int64_t{1} << 12;

// Parses "h", "v", "wK", "wK_col" with an optional "_flip" suffix (K >= 1).
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
