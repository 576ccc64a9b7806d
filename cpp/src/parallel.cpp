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
#include <stdexcept>
#include <thread>
#include <utility>
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

// Protocol: run() publishes a job (task, task count, generation) under `mutex_`. A worker joins
// the job only while it is published and only once per generation, registering itself in
// `active_workers_` under the same lock; it reads the job's fields into locals when it joins.
// When the caller has drained the task counter it unpublishes the job (no further joins) and
// waits until every worker that joined has left. Workers that never woke up for a job simply
// miss it: the caller and the others have done its tasks. So no count depends on how many
// workers exist or when they were started, and resize() (which holds `run_mutex_`, like run())
// can replace the workers between jobs without any of them seeing a stale job.
class ThreadPool {
 public:
  explicit ThreadPool(int num_threads) { resize(num_threads); }
  ~ThreadPool() { stop_workers(); }

  int num_threads() const { return num_threads_.load(); }

  void resize(int num_threads) {
    std::lock_guard<std::mutex> run_lock(run_mutex_);
    stop_workers();
    num_threads_.store(std::max(1, num_threads));
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = false;
    }
    for (int i = 1; i < num_threads_.load(); ++i) workers_.emplace_back([this] { worker_loop(); });
  }

  // Runs task(i) for i in [0, num_tasks) using the caller and the workers.
  void run(int64_t num_tasks, const std::function<void(int64_t)>& task) {
    std::lock_guard<std::mutex> run_lock(run_mutex_);
    const Job job{&task, num_tasks};
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = job;
      next_task_.store(0);
      error_ = nullptr;
      ++generation_;
    }
    wake_.notify_all();
    drain(job);
    std::unique_lock<std::mutex> lock(mutex_);
    job_ = Job{};
    done_.wait(lock, [this] { return active_workers_ == 0; });
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  }

 private:
  struct Job {
    const std::function<void(int64_t)>* task = nullptr;
    int64_t num_tasks = 0;
  };

  void drain(const Job& job) {
    const bool was_inside = tls_inside_parallel_region;
    tls_inside_parallel_region = true;
    for (;;) {
      const int64_t i = next_task_.fetch_add(1);
      if (i >= job.num_tasks) break;
      try {
        (*job.task)(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!error_) error_ = std::current_exception();
      }
    }
    tls_inside_parallel_region = was_inside;
  }

  void worker_loop() {
    uint64_t joined_generation = 0;
    for (;;) {
      Job job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || (job_.task != nullptr && generation_ != joined_generation); });
        if (stopping_) return;
        joined_generation = generation_;
        job = job_;
        ++active_workers_;
      }
      drain(job);
      {
        std::lock_guard<std::mutex> lock(mutex_);
        --active_workers_;
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

  std::atomic<int> num_threads_{1};
  std::vector<std::thread> workers_;
  std::mutex run_mutex_;  // one job or resize at a time
  std::mutex mutex_;      // guards everything below except next_task_
  std::condition_variable wake_;
  std::condition_variable done_;
  Job job_;  // the published job; empty while none is open to workers
  std::atomic<int64_t> next_task_{0};
  int active_workers_ = 0;
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
  // From inside a job the resize would wait for that job (and join the calling worker) forever.
  if (tls_inside_parallel_region) {
    throw std::logic_error("set_num_threads cannot be called from inside parallel_for");
  }
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
