/* Parameter blocks for the objaudio CUDA kernels: plain pointers, strides and sizes (C99).
 *
 * Every pointer is device memory. Element strides are in elements, not bytes. The same blocks
 * are filled by the torch bindings (bindings.cpp) and by a C/C++ host through objaudio.h. Every name
 * carries the objaudio_kernel_ / OBJAUDIO_KERNEL_ prefix of the kernel API (objaudio.h), apart from
 * OBJAUDIO_MAX_PATCHES, which the builds define.
 */
#ifndef OBJAUDIO_PARAMS_H
#define OBJAUDIO_PARAMS_H

#include <stdint.h>

typedef enum objaudio_kernel_dtype {
  OBJAUDIO_KERNEL_FLOAT32 = 0,
  OBJAUDIO_KERNEL_FLOAT16 = 1,
  OBJAUDIO_KERNEL_BFLOAT16 = 2
} objaudio_kernel_dtype;

/* History slots a step may read: objaudio_rt/kernels/sampler_step.py MAX_HISTORY (tests/kernels holds them equal). */
#define OBJAUDIO_KERNEL_MAX_HISTORY 2

/* One guided sampler step (objaudio_rt/core/samplers.py), per element i < n of item b, in float32, with the
 * row (cx, ce, c_1 .. c_K, dx, de) = coefs[*step] of a table `width` = K + 4 wide:
 *   eps = eps_u + cfg[b] (eps_c - eps_u);  x_next = cx x + ce eps + sum_{k <= n_history} c_k h_k;
 *   x0 = dx x + de eps
 * The caller keeps (x0, h_1, .., h_{K-1}) as the next step's history (a shift of pointers, no copy).
 * The row and the guidance scale are read on the device: a loop (or a CUDA graph of it) advances
 * *step on the device, never syncs with the host, and serves every guidance value without being
 * captured again. */
typedef struct objaudio_kernel_step_params {
  const float* coefs;       /* (S, width) float32 coefficient table, rows contiguous */
  int64_t width;            /* K + 4 columns, 0 <= K <= OBJAUDIO_KERNEL_MAX_HISTORY */
  const int64_t* step;      /* one int64: the table row of this step, 0 <= *step < S */
  const void* x;            /* (n) dtype: current latent, contiguous */
  const void* eps_pair;     /* (2n) dtype: noise predictions, unconditional half first */
  const void* history[OBJAUDIO_KERNEL_MAX_HISTORY];   /* (n) dtype each: previous data predictions,
                                                         newest first */
  int32_t n_history;        /* the slots read, 0 <= n_history <= K (the others' terms are skipped) */
  void* x_next;             /* (n) dtype, written */
  void* x0;                 /* (n) dtype, written */
  const float* cfg;         /* (cfg_items) float32 guidance scale(s) */
  int64_t cfg_items;        /* 1 (one scale for the batch) or B (one per item; n must be a multiple) */
  int64_t n;                /* elements of one latent batch (B * C * H * W) */
  objaudio_kernel_dtype dtype;  /* of x, eps_pair, history, x_next, x0 */
} objaudio_kernel_step_params;

/* Single-query grounding pool (objaudio_rt/core/grounding.py), per selection b < batch, X = tokens + pe:
 *   a = softmax_p(X_p . k_vec[b])  (or a = weights_in[b]);  pooled[b] = a X;  weights_out[b] = a */
typedef struct objaudio_kernel_grounding_params {
  const void* tokens;            /* (batch or 1, patches, dim) dtype, unit stride along dim */
  int64_t tokens_batch_stride;   /* 0: one image shared by every selection */
  int64_t tokens_row_stride;     /* between patches */
  const void* pe;                /* (patches, dim) dtype, unit stride along dim */
  int64_t pe_row_stride;
  const float* k_vec;            /* (batch, dim) float32 contiguous, pre-scaled by 1/sqrt(d_k); NULL for masks */
  const float* weights_in;       /* (batch, patches) float32 contiguous; NULL for the softmax path */
  float* weights_out;            /* (batch, patches) float32, written */
  float* pooled;                 /* (batch, dim) float32, written */
  int32_t batch;
  int32_t patches;               /* at most OBJAUDIO_MAX_PATCHES (below) */
  int32_t dim;
  objaudio_kernel_dtype dtype;   /* of tokens and pe */
} objaudio_kernel_grounding_params;

/* Patches per image the grounding kernels take: defined once, as MAX_PATCHES in
 * objaudio_rt/kernels/grounding.py; the builds (setup.py, CMakeLists.txt) pass it in. */
#ifndef OBJAUDIO_MAX_PATCHES
#error "define OBJAUDIO_MAX_PATCHES (objaudio_rt/kernels/grounding.py's MAX_PATCHES; the builds pass it)"
#endif

#endif /* OBJAUDIO_PARAMS_H */
