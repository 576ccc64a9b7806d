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

#if defined(__unix__) || defined(__APPLE__)
#include <sys/wait.h>
#include <unistd.h>

// A forked child (e.g. a data-loader worker) must get working threads of its own: the
// parent's workers do not exist in it.
TEST(ParallelFor, WorksInAForkedChild) {
  localmamba::set_num_threads(2);
  std::atomic<int64_t> warm{0};
  localmamba::parallel_for(100, 1, [&](int64_t b, int64_t e) { warm += e - b; });  // pool started
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::atomic<int64_t> total{0};
    localmamba::parallel_for(1000, 1, [&](int64_t b, int64_t e) { total += e - b; });
    _exit(total.load() == 1000 && localmamba::get_num_threads() == 2 ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  localmamba::set_num_threads(0);
}
#endif
