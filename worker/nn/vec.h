/* SPDX-License-Identifier: MIT */
/*
 * Folder-internal SIMD types for the element-wise kernels (kernels.c).
 * The build targets plain x86-64 (SSE2), and GCC's -O2 vectoriser leaves
 * loops of unknown length scalar, so the memory-bound layers (batch norm,
 * ReLU, the convolution epilogue, gradient sums) are written with
 * 16-float vectors (GCC/Clang vector extensions) and compiled three times
 * through NN__CLONES: for AVX-512 and AVX2 machines and the baseline,
 * picked at load time.  Vectors never cross a function call (their
 * calling convention differs between those targets); scalars mix with
 * vectors directly (v * s broadcasts s).
 */
#ifndef SS_WORKER_NN_VEC_H
#define SS_WORKER_NN_VEC_H

#include <stdint.h>

typedef float nn__v16 __attribute__((vector_size(64)));
typedef int32_t nn__v16i __attribute__((vector_size(64)));

#if defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
/* by feature, not "arch=": the resolver tests arch names against the
 * CPU model, so a newer CPU with AVX-512 would get the baseline */
#define NN__CLONES \
    __attribute__((target_clones("avx512f", "avx2", "default")))
#else
/* LIMIT: on other architectures (and under AddressSanitizer) the kernels
 * are compiled once for the baseline instruction set: correct, slower. */
#define NN__CLONES
#endif

#endif
