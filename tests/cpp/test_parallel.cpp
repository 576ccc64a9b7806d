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

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>

namespace {

// Ends the process if `body` has not returned within `limit`: a deadlocked pool would otherwise
// hang the test binary instead of failing it.
template <typename Body>
void run_with_deadline(std::chrono::seconds limit, const char* what, Body body) {
  std::mutex mutex;
  std::condition_variable finished_cv;
  bool finished = false;
  std::thread watchdog([&] {
    std::unique_lock<std::mutex> lock(mutex);
    if (!finished_cv.wait_for(lock, limit, [&] { return finished; })) {
      std::fprintf(stderr, "%s: still running after %lld s: deadlock\n", what,
                   static_cast<long long>(limit.count()));
      std::fflush(stderr);
      std::_Exit(3);
    }
  });
  body();
  {
    std::lock_guard<std::mutex> lock(mutex);
    finished = true;
  }
  finished_cv.notify_all();
  watchdog.join();
}

}  // namespace

// Regression test: resizing the pool while other threads run jobs used to hang (a restarted
// worker could count itself twice in one job, so the caller returned early or waited forever).
// Several threads resize and run for a fixed time; every job must cover its items exactly once.
TEST(ParallelFor, ResizeWhileRunningFromSeveralThreadsNeverHangs) {
  using Clock = std::chrono::steady_clock;
  std::atomic<int64_t> jobs{0}, bad_jobs{0};
  run_with_deadline(std::chrono::seconds(60), "resize stress", [&] {
    const auto stop_at = Clock::now() + std::chrono::milliseconds(1500);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        for (int64_t i = 0; Clock::now() < stop_at; ++i) {
          if (t < 2) localmamba::set_num_threads(1 + static_cast<int>((i + t) % 4));
          const int64_t n = 1 + (i * 7 + t) % 97;
          std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
          localmamba::parallel_for(n, 1, [&](int64_t begin, int64_t end) {
            for (int64_t k = begin; k < end; ++k) hits[static_cast<size_t>(k)]++;
          });
          for (auto& h : hits) {
            if (h.load() != 1) {
              ++bad_jobs;
              break;
            }
          }
          ++jobs;
        }
      });
    }
    for (auto& thread : threads) thread.join();
  });
  EXPECT_EQ(bad_jobs.load(), 0);
  EXPECT_GT(jobs.load(), 0);
  localmamba::set_num_threads(0);
}

TEST(ParallelFor, SetNumThreadsInsideAJobIsRejected) {
  localmamba::set_num_threads(2);
  EXPECT_THROW(localmamba::parallel_for(4, 1, [](int64_t, int64_t) { localmamba::set_num_threads(3); }),
               std::logic_error);
  EXPECT_EQ(localmamba::get_num_threads(), 2);
  localmamba::set_num_threads(0);
}
