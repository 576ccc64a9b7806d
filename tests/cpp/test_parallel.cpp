#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <vector>

#include "localmamba/parallel.h"

TEST(ParallelFor, CoversEveryItemOnceForAnyThreadCount) {
  for (int threads : {1, 2, 3, 8}) {
    localmamba::set_num_threads(threads);
    for (int64_t n : {0, 1, 5, 1000}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      localmamba::parallel_for(n, 3, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) hits[static_cast<size_t>(i)]++;
      });
      for (auto& h : hits) EXPECT_EQ(h.load(), 1);
    }
  }
  localmamba::set_num_threads(0);
}

TEST(ParallelFor, RethrowsWorkerExceptions) {
  localmamba::set_num_threads(2);
  EXPECT_THROW(localmamba::parallel_for(100, 1,
                                        [](int64_t begin, int64_t) {
                                          if (begin > 0) throw std::runtime_error("boom");
                                        }),
               std::runtime_error);
  localmamba::set_num_threads(0);
}

TEST(ParallelFor, NestedCallsRunInline) {
  localmamba::set_num_threads(2);
  std::atomic<int64_t> total{0};
  localmamba::parallel_for(4, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      localmamba::parallel_for(10, 1, [&](int64_t b2, int64_t e2) { total += e2 - b2; });
  });
  EXPECT_EQ(total.load(), 40);
  localmamba::set_num_threads(0);
}
