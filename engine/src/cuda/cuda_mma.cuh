// Tensor-core and asynchronous-copy primitives shared by the prefill kernels (compute capability
// 8.0 and later: sm_87, sm_90 and sm_110 alike; nothing Hopper-only). On older targets they
// compile to nothing, and the host never selects the kernels that use them there.
#pragma once
#include <cstdint>

namespace omni {
namespace cuda {

// d += a * b: mma.sync m16n8k16, bf16 inputs, fp32 accumulation. Fragments (g = lane / 4,
// c = lane % 4; each register holds two bf16, the lower k in the low half):
//   a[0] = A[g][2c, 2c+1], a[1] = A[g+8][2c, 2c+1], a[2] = A[g][2c+8, +9], a[3] = A[g+8][2c+8, +9];
//   b0 = B[2c, 2c+1][g], b1 = B[2c+8, +9][g];  d[0..1] = D[g][2c, 2c+1], d[2..3] = D[g+8][2c, 2c+1].
__device__ __forceinline__ void mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

// 16 bytes global -> shared without registers; !valid writes 16 zero bytes instead (src unread).
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(src), "r"(valid ? 16 : 0));
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}
// Waits until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#endif
}

}  // namespace cuda
}  // namespace omni
