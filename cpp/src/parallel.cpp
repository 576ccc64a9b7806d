#include "localmamba/parallel.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <new>
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif
#include <thread>
#include <vector>

namespace localmamba {
namespace {

int default_num_threads() {
  if (const char* env = std::getenv("LOCALMAMBA_NUM_THREADS")) {
    const int value = std::atoi(env);
    if (value > 0) return value;
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

thread_local bool tls_inside_parallel_region = false;

class ThreadPool {
 public:
  explicit ThreadPool(int num_threads) { resize(num_threads); }
  ~ThreadPool() { stop_workers(); }

  int num_threads() const { return num_threads_; }

  void resize(int num_threads) {
    std::lock_guard<std::mutex> run_lock(run_mutex_);
    stop_workers();
    num_threads_ = std::max(1, num_threads);
    stopping_ = false;
    for (int i = 1; i < num_threads_; ++i) workers_.emplace_back([this] { worker_loop(); });
  }

  // Runs task(i) for i in [0, num_tasks) using the caller and the workers.
  void run(int64_t num_tasks, const std::function<void(int64_t)>& task) {
    std::lock_guard<std::mutex> run_lock(run_mutex_);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      task_ = &task;
      num_tasks_ = num_tasks;
      next_task_.store(0);
      pending_workers_ = static_cast<int>(workers_.size());
      error_ = nullptr;
      ++generation_;
    }
    wake_.notify_all();
    drain();
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return pending_workers_ == 0; });
    task_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void drain() {
    const bool was_inside = tls_inside_parallel_region;
    tls_inside_parallel_region = true;
    for (;;) {
      const int64_t i = next_task_.fetch_add(1);
      if (i >= num_tasks_) break;
      try {
        (*task_)(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!error_) error_ = std::current_exception();
      }
    }
    tls_inside_parallel_region = was_inside;
  }

  void worker_loop() {
    uint64_t seen_generation = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || generation_ != seen_generation; });
        if (stopping_) return;
        seen_generation = generation_;
      }
      drain();
      {
        std::lock_guard<std::mutex> lock(mutex_);
        --pending_workers_;
      }
      done_.notify_all();
    }
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& worker : workers_) worker.join();
    workers_.clear();
  }

  int num_threads_ = 1;
  std::vector<std::thread> workers_;
  std::mutex run_mutex_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  const std::function<void(int64_t)>* task_ = nullptr;
  int64_t num_tasks_ = 0;
  std::atomic<int64_t> next_task_{0};
  int pending_workers_ = 0;
  uint64_t generation_ = 0;
  bool stopping_ = false;
  std::exception_ptr error_;
};

// The pool is created on first use and deliberately never destroyed: joining workers from a
// static destructor at interpreter exit races with other teardown, and after fork() the
// parent's workers do not exist in the child, so the child must start a fresh pool instead.
std::atomic<ThreadPool*> g_pool{nullptr};
std::mutex g_pool_mutex;
std::atomic<int> g_requested_threads{0};  // 0 = default

void forget_pool_in_forked_child() {
  g_pool.store(nullptr);  // the parent's pool (and its threads) is leaked on purpose
  new (&g_pool_mutex) std::mutex();
}

#if defined(__unix__) || defined(__APPLE__)
const int g_atfork_registered = pthread_atfork(nullptr, nullptr, forget_pool_in_forked_child);
#endif

ThreadPool& pool() {
  ThreadPool* current = g_pool.load(std::memory_order_acquire);
  if (current == nullptr) {
    std::lock_guard<std::mutex> lock(g_pool_mutex);
    current = g_pool.load(std::memory_order_acquire);
    if (current == nullptr) {
      const int requested = g_requested_threads.load();
      current = new ThreadPool(requested > 0 ? requested : default_num_threads());
      g_pool.store(current, std::memory_order_release);
    }
  }
  return *current;
}

}  // namespace

int get_num_threads() { return pool().num_threads(); }

void set_num_threads(int num_threads) {
  g_requested_threads.store(num_threads > 0 ? num_threads : 0);
  if (num_threads < 1) num_threads = default_num_threads();
  if (num_threads != pool().num_threads()) pool().resize(num_threads);
}

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int threads = tls_inside_parallel_region ? 1 : get_num_threads();
  const int64_t max_blocks = (n + grain - 1) / grain;
  const int64_t num_blocks = std::min<int64_t>(max_blocks, threads);
  if (num_blocks <= 1) {
    fn(0, n);
    return;
  }
  const int64_t block = (n + num_blocks - 1) / num_blocks;
  pool().run(num_blocks, [&](int64_t b) {
    const int64_t begin = b * block;
    const int64_t end = std::min(n, begin + block);
    if (begin < end) fn(begin, end);
  });
}

}  // namespace localmamba
