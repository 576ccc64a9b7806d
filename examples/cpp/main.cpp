// Scan orders, local scan and a selective scan on the CPU through localmamba's public headers.
// The caller owns every buffer; the library only reads and writes through the pointers and
// strides in the params structs. Prints a checksum of the result and exits non-zero when the
// library disagrees with the scalar loops written here.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <vector>

#include "localmamba/indexed_gather.h"
#include "localmamba/parallel.h"
#include "localmamba/scan_order.h"
#include "localmamba/selective_scan.h"
#ifdef EXAMPLE_WITH_CUDA
#include "localmamba_cuda.h"
#endif

namespace lm = localmamba;

namespace {

constexpr int64_t kBatch = 2, kChannels = 3, kHeight = 5, kWidth = 7, kState = 4;

// Token-order input (B, C, H*W), contiguous, non-trivial values.
std::vector<float> make_input() {
  std::vector<float> x(kBatch * kChannels * kHeight * kWidth);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37f * static_cast<float>(i) + 0.1f);
  return x;
}

// local scan: (B, C, H*W) -> (B, K, C, Lmax), zero at padding tokens.
std::vector<float> local_scan(const std::vector<float>& x, const lm::ScanIndexMaps& maps) {
  const int64_t K = maps.num_directions, L = maps.max_length, T = maps.num_tokens;
  std::vector<float> seq(kBatch * K * kChannels * L);
  lm::IndexedGatherParams p;
  p.src = x.data();
  p.dst = seq.data();
  p.dtype = lm::DType::kFloat32;
  p.batch = kBatch;
  p.num_directions = K;
  p.channels = kChannels;
  p.out_length = L;
  p.src_length = T;
  p.src_stride_batch = kChannels * T;
  p.src_stride_direction = 0;  // every direction reads the same tokens
  p.src_stride_channel = T;
  p.src_stride_token = 1;
  p.dst_stride_batch = K * kChannels * L;
  p.dst_stride_direction = kChannels * L;
  p.dst_stride_channel = L;
  p.dst_stride_token = 1;
  p.index = maps.forward.data();
  lm::indexed_gather_cpu(p);
  return seq;
}

bool local_scan_matches(const std::vector<float>& x, const std::vector<float>& seq, const lm::ScanIndexMaps& maps) {
  const int64_t K = maps.num_directions, L = maps.max_length, T = maps.num_tokens;
  for (int64_t b = 0; b < kBatch; ++b)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t c = 0; c < kChannels; ++c)
        for (int64_t t = 0; t < L; ++t) {
          const int64_t p = maps.forward[k * L + t];
          const float want = p < 0 ? 0.f : x[(b * kChannels + c) * T + p];
          if (seq[((b * K + k) * kChannels + c) * L + t] != want) return false;
        }
  return true;
}

struct ScanInputs {
  int64_t dim, length;
  std::vector<float> delta, A, B, C, D;
};

// Selective scan over the scanned sequences viewed as (batch, dim = K*C, length = Lmax).
std::vector<float> selective_scan(const std::vector<float>& u, const ScanInputs& in) {
  std::vector<float> out(u.size());
  lm::SelectiveScanParams p;
  p.batch = kBatch;
  p.dim = in.dim;
  p.length = in.length;
  p.dstate = kState;
  p.delta_softplus = true;
  p.u = u.data();
  p.u_stride_batch = in.dim * in.length;
  p.u_stride_dim = in.length;
  p.delta = in.delta.data();
  p.delta_stride_batch = in.dim * in.length;
  p.delta_stride_dim = in.length;
  p.A = in.A.data();
  p.A_stride_dim = kState;
  p.A_stride_state = 1;
  p.B = in.B.data();  // (batch, 1 group, dstate, length)
  p.B_stride_batch = kState * in.length;
  p.B_stride_state = in.length;
  p.C = in.C.data();
  p.C_stride_batch = kState * in.length;
  p.C_stride_state = in.length;
  p.D = in.D.data();
  p.D_stride = 1;
  p.out = out.data();
  p.out_stride_batch = in.dim * in.length;
  p.out_stride_dim = in.length;
  lm::selective_scan_fwd_cpu(p);
  return out;
}

// The recurrence of selective_scan.h, one (batch, channel) at a time.
float max_error_vs_scalar_loop(const std::vector<float>& u, const ScanInputs& in, const std::vector<float>& out) {
  float worst = 0.f;
  for (int64_t b = 0; b < kBatch; ++b)
    for (int64_t d = 0; d < in.dim; ++d) {
      std::vector<double> h(kState, 0.0);
      for (int64_t t = 0; t < in.length; ++t) {
        const int64_t i = (b * in.dim + d) * in.length + t;
        const double dt = std::log1p(std::exp(static_cast<double>(in.delta[i])));
        double y = in.D[d] * u[i];
        for (int64_t n = 0; n < kState; ++n) {
          const int64_t bc = (b * kState + n) * in.length + t;
          h[n] = std::exp(dt * in.A[d * kState + n]) * h[n] + dt * in.B[bc] * u[i];
          y += in.C[bc] * h[n];
        }
        worst = std::max(worst, static_cast<float>(std::fabs(y - out[i])));
      }
    }
  return worst;
}

ScanInputs make_scan_inputs(int64_t dim, int64_t length) {
  ScanInputs in{dim, length, {}, {}, {}, {}, {}};
  in.delta.resize(kBatch * dim * length);
  for (size_t i = 0; i < in.delta.size(); ++i) in.delta[i] = 0.5f * std::cos(0.11f * static_cast<float>(i));
  for (int64_t d = 0; d < dim; ++d)
    for (int64_t n = 0; n < kState; ++n) in.A.push_back(-0.5f - 0.25f * static_cast<float>((d + n) % 5));
  in.B.resize(kBatch * kState * length);
  in.C.resize(in.B.size());
  for (size_t i = 0; i < in.B.size(); ++i) {
    in.B[i] = std::sin(0.23f * static_cast<float>(i));
    in.C[i] = std::cos(0.19f * static_cast<float>(i));
  }
  for (int64_t d = 0; d < dim; ++d) in.D.push_back(0.1f * static_cast<float>(d % 3));
  return in;
}

}  // namespace

int main() {
  try {
    lm::set_num_threads(2);
    const std::vector<lm::ScanDirection> directions = {lm::parse_direction("h"), lm::parse_direction("w2"),
                                                       lm::parse_direction("w3_flip")};
    const lm::ScanIndexMaps maps = lm::build_scan_index_maps(directions, kHeight, kWidth);
    const std::vector<float> x = make_input();
    const std::vector<float> seq = local_scan(x, maps);
    const ScanInputs inputs = make_scan_inputs(maps.num_directions * kChannels, maps.max_length);
    const std::vector<float> y = selective_scan(seq, inputs);

    double checksum = 0.0;
    for (size_t i = 0; i < y.size(); ++i) checksum += y[i] * static_cast<double>(1 + i % 7);
    const bool scan_ok = local_scan_matches(x, seq, maps);
    const float error = max_error_vs_scalar_loop(seq, inputs, y);
    std::printf("directions h, w2, w3_flip on a %lldx%lld grid: Lmax = %lld tokens, %d threads\n",
                static_cast<long long>(kHeight), static_cast<long long>(kWidth),
                static_cast<long long>(maps.max_length), lm::get_num_threads());
    std::printf("local scan %s; selective scan max |error| vs scalar loop = %.2e\n",
                scan_ok ? "exact" : "WRONG", error);
#ifdef EXAMPLE_WITH_CUDA
    std::printf("CUDA library linked: %d device(s), kernels for %s\n", lm::cuda::device_count(),
                lm::cuda::compiled_architectures().c_str());
#endif
    std::printf("checksum %.6f\n", checksum);
    return scan_ok && error < 1e-4f ? 0 : 1;
  } catch (const std::exception& error) {  // the library reports bad arguments by throwing
    std::fprintf(stderr, "error: %s\n", error.what());
    return 2;
  }
}
