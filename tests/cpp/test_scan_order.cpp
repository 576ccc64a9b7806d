#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "localmamba/scan_order.h"

using localmamba::build_scan_index_maps;
using localmamba::parse_direction;
using localmamba::scan_length;
using localmamba::scan_order;
using localmamba::scan_families;
using localmamba::ScanDirection;

namespace {

std::vector<int64_t> order_of(const char* name, int64_t h, int64_t w) { return scan_order(parse_direction(name), h, w); }

// The order visits every real token exactly once; everything else is padding (-1).
void expect_visits_each_token_once(const std::vector<int64_t>& order, int64_t h, int64_t w, const std::string& name) {
  std::vector<int64_t> real;
  for (int64_t p : order)
    if (p >= 0) real.push_back(p);
  std::sort(real.begin(), real.end());
  std::vector<int64_t> all(static_cast<size_t>(h * w));
  std::iota(all.begin(), all.end(), 0);
  EXPECT_EQ(real, all) << name << " on " << h << "x" << w;
  EXPECT_EQ(std::count(order.begin(), order.end(), -1), static_cast<int64_t>(order.size()) - h * w) << name;
}

std::vector<int64_t> reversed(std::vector<int64_t> v) {
  std::reverse(v.begin(), v.end());
  return v;
}

}  // namespace

TEST(ScanOrder, SpecExampleW2On4x4) {
  const std::vector<int64_t> expected{0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15};
  EXPECT_EQ(order_of("w2", 4, 4), expected);
}

TEST(ScanOrder, RowAndColumnMajorOn2x3) {
  EXPECT_EQ(order_of("h", 2, 3), (std::vector<int64_t>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(order_of("v", 2, 3), (std::vector<int64_t>{0, 3, 1, 4, 2, 5}));
  EXPECT_EQ(order_of("h_flip", 2, 3), (std::vector<int64_t>{5, 4, 3, 2, 1, 0}));
  EXPECT_EQ(order_of("v_flip", 2, 3), (std::vector<int64_t>{5, 2, 4, 1, 3, 0}));
}

TEST(ScanOrder, WindowPaddingSitsInsideTheSequence) {
  // 3x3 grid, 2x2 windows: padded to 4x4; the last window column and row are half padding.
  const std::vector<int64_t> expected{0, 1, 3, 4, 2, -1, 5, -1, 6, 7, -1, -1, 8, -1, -1, -1};
  EXPECT_EQ(order_of("w2", 3, 3), expected);
  EXPECT_EQ(scan_length(parse_direction("w2"), 3, 3), 16);
  EXPECT_EQ(order_of("w2_flip", 3, 3), reversed(expected));
}

TEST(ScanOrder, ColumnFirstWindows) {
  // Windows column-major, tokens column-major inside a window.
  const std::vector<int64_t> expected{0, 4, 1, 5, 8, 12, 9, 13, 2, 6, 3, 7, 10, 14, 11, 15};
  EXPECT_EQ(order_of("w2_col", 4, 4), expected);
}

TEST(ScanOrder, WindowOneEqualsRowMajor) { EXPECT_EQ(order_of("w1", 5, 7), order_of("h", 5, 7)); }

TEST(ScanOrder, WindowCoveringTheGridIsPaddedRowMajor) {
  // w7 on 5x9: padded to 7x14, two windows side by side.
  const auto order = order_of("w7", 5, 9);
  ASSERT_EQ(order.size(), 98u);
  EXPECT_EQ(order[0], 0);
  EXPECT_EQ(order[6], 6);
  EXPECT_EQ(order[7], 9);   // second row of the first window
  EXPECT_EQ(order[35], -1); // row 5 lies outside the grid
  EXPECT_EQ(order[49], 7);  // first token of the second window
  EXPECT_EQ(order[51], -1); // column 9 lies outside the grid
}

TEST(ScanOrder, BijectionOnRealTokensForManyGrids) {
  const char* names[] = {"h", "h_flip", "v", "v_flip", "w1", "w2", "w2_flip", "w3", "w7", "w7_flip", "w2_col", "w5_col_flip"};
  for (int64_t h : {1, 2, 5, 7, 14}) {
    for (int64_t w : {1, 3, 9, 17}) {
      for (const char* name : names) {
        const auto order = order_of(name, h, w);
        EXPECT_EQ(static_cast<int64_t>(order.size()), scan_length(parse_direction(name), h, w));
        expect_visits_each_token_once(order, h, w, name);
      }
    }
  }
}

TEST(ScanOrder, ParseRoundTripsAndRejectsBadNames) {
  for (const char* name : {"h", "v_flip", "w2", "w7_flip", "w12_col", "w3_col_flip"}) {
    EXPECT_EQ(parse_direction(name).name(), name);
  }
  EXPECT_EQ(std::string(parse_direction("w7").scan_family().pattern), "w{K}");
  EXPECT_EQ(std::string(parse_direction("w7_col_flip").scan_family().pattern), "w{K}_col");
  EXPECT_EQ(parse_direction("w7").window, 7);
  for (const char* bad : {"", "x", "w", "w0", "w-1", "h_flip_flip", "wx", "flip", "W2", "w2_row"}) {
    EXPECT_THROW(parse_direction(bad), std::invalid_argument) << bad;
  }
  EXPECT_THROW(scan_order(parse_direction("h"), 0, 3), std::invalid_argument);
}

// Every registered family, also one added later, visits each position of the padded grid exactly
// once (so the real tokens once each), and its names round-trip through the parser.
TEST(ScanFamilies, EveryFamilyIsABijectionOnThePaddedGridAndRoundTrips) {
  const auto& families = scan_families();
  ASSERT_GE(families.size(), 4u);
  for (size_t f = 0; f < families.size(); ++f) {
    for (int64_t k : {1, 2, 3}) {
      for (bool flip : {false, true}) {
        ScanDirection direction;
        direction.family = static_cast<int>(f);
        direction.window = families[f].has_window() ? k : 1;
        direction.flip = flip;
        EXPECT_EQ(parse_direction(direction.name()).name(), direction.name());
        EXPECT_EQ(parse_direction(direction.name()).family, direction.family) << direction.name();
        for (int64_t h : {1, 4, 5}) {
          for (int64_t w : {2, 3, 7}) {
            expect_visits_each_token_once(scan_order(direction, h, w), h, w, direction.name());
          }
        }
      }
    }
  }
  ScanDirection unknown;
  unknown.family = static_cast<int>(families.size());
  EXPECT_THROW(unknown.name(), std::invalid_argument);
}

TEST(ScanOrder, UnknownNameListsEveryFamily) {
  try {
    parse_direction("diagonal");
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& error) {
    const std::string message = error.what();
    EXPECT_EQ(message.rfind("unknown scan direction 'diagonal': expected 'h', 'v', ", 0), 0u) << message;
    for (const auto& family : scan_families()) {
      std::string form = family.pattern;
      const size_t at = form.find("{K}");
      if (at != std::string::npos) form.replace(at, 3, "K");
      EXPECT_NE(message.find("'" + form + "'"), std::string::npos) << form << " missing from: " << message;
    }
    EXPECT_NE(message.find("(K a positive integer), optionally followed by '_flip'"), std::string::npos) << message;
  }
}

TEST(ScanIndexMaps, ForwardAndInverseAgreeAndPadToLongest) {
  std::vector<localmamba::ScanDirection> dirs{parse_direction("h"), parse_direction("w2_flip"), parse_direction("v")};
  const auto maps = build_scan_index_maps(dirs, 3, 3);
  EXPECT_EQ(maps.max_length, 16);
  for (int64_t k = 0; k < 3; ++k) {
    for (int64_t p = 0; p < 9; ++p) {
      const int64_t t = maps.inverse[static_cast<size_t>(k * 9 + p)];
      ASSERT_GE(t, 0);
      EXPECT_EQ(maps.forward[static_cast<size_t>(k * 16 + t)], p);
    }
  }
  for (int64_t t = 9; t < 16; ++t) EXPECT_EQ(maps.forward[static_cast<size_t>(t)], -1);  // h padded at the end
}

// Oversized grids and windows are rejected by their implied length before anything is
// allocated, including sizes whose padded product would overflow int64.
TEST(ScanOrder, LengthLimitIsCheckedBeforeAllocating) {
  using localmamba::kMaxScanLength;
  using localmamba::kMaxScanWindow;
  EXPECT_EQ(scan_length(parse_direction("h"), 4096, 4096), kMaxScanLength);
  EXPECT_EQ(scan_length(parse_direction("w4096"), 1, 1), kMaxScanLength);
  EXPECT_EQ(scan_length(parse_direction("w4_col_flip"), 4093, 4095), kMaxScanLength);  // padded to 4096 x 4096
  EXPECT_THROW(scan_length(parse_direction("h"), 4096, 4097), std::invalid_argument);
  EXPECT_THROW(scan_length(parse_direction("v"), int64_t{1} << 40, int64_t{1} << 40), std::invalid_argument);
  EXPECT_THROW(scan_length(parse_direction("w4097"), 1, 1), std::invalid_argument);
  EXPECT_THROW(scan_length(parse_direction("w999999999"), 1, 1), std::invalid_argument);
  EXPECT_THROW(scan_order(parse_direction("w50000"), 2, 2), std::invalid_argument);
  EXPECT_THROW(build_scan_index_maps({parse_direction("h"), parse_direction("w5000")}, 2, 2), std::invalid_argument);
  EXPECT_THROW(scan_order(parse_direction("h"), 1000000, 1000000), std::invalid_argument);
  try {
    scan_length(parse_direction("w50000"), 2, 2);
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find("'w50000'"), std::string::npos) << message;
    EXPECT_NE(message.find("2500000000"), std::string::npos) << message;
    EXPECT_NE(message.find(std::to_string(kMaxScanLength)), std::string::npos) << message;
    EXPECT_NE(message.find(std::to_string(kMaxScanWindow)), std::string::npos) << message;
  }
}
