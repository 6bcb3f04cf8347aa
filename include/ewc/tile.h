/* tile.h: find the row quantum of the BLAS. SGEMM kernels compute output rows in tiles, and the
 * rows of a leftover partial tile may be rounded differently from the same rows inside a full
 * one, so a product split across ranks is bit-identical to the unsplit product only when every
 * split falls on the tile grid. The quantum is measured, not assumed: it depends on the CPU's
 * kernel (12 rows for OpenBLAS's Haswell SGEMM) and on the shapes. */
#ifndef EWC_TILE_H
#define EWC_TILE_H

#include "ewc/model.h"

/* Smallest q in {1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256} such that every GEMM the
 * trainer makes for S on N batch rows (forward, input-gradient and weight-gradient products of
 * each layer) gives bitwise the same rows when computed in pieces whose boundaries are
 * multiples of q as in one call. Returns 0 if none does (then splitting is never exact), -1 if
 * its buffers cannot be allocated. Uses
 * the BLAS thread count in force. Local (not collective), about 20 GEMM passes of one step. */
int tile_probe_quantum(const ModelShape *s, int n);

/* The layers (bit l) whose batch-row products on N rows, the forward one and (below layer 0)
 * the input-gradient one, give bitwise the same rows when split at multiples of Q as in one
 * call: those whose calls over whole Q-row blocks may be merged (fixsum.h). -1 if its buffers
 * cannot be allocated. Local (not collective), about 6 GEMM passes of one step. */
int tile_probe_calls(const ModelShape *s, int n, int q);

#endif
