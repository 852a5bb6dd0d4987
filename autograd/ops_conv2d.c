/* SPDX-License-Identifier: MIT
 * autograd/ops_conv2d.c: 2-D convolution as one op, forward and backward, built so the im2col
 * matrix never leaves the cache.
 *
 * The output is computed tile by tile: a tile is a group of G whole images (small images, as an
 * ODE-Net's 7x7) or T output rows of one image (large ones), sized so its im2col matrix
 * col (C*kh*kw, cols) fits in L2. Per tile, the input rows it reads are first copied into a
 * zero-padded band, so im2col is a plain gather through an index table shared by every channel
 * and image (no bounds checks), and out (OC, cols) = w (OC, C*kh*kw) @ col + b with one GEMM: for
 * a single image the GEMM writes NCHW in place (ldc = OH*OW) over a bias-initialised output
 * (beta = 1); for a group it writes a scratch tile that one pass scatters to NCHW, adding b.
 * With nd_threads() > 1 (OpenMP) the image groups are shared among the threads.
 *
 * The backward rule, without ND_CREATE_GRAPH, walks the same tiles: with gt the gradient's tile
 * (OC, cols), dw += gt @ col^T (GEMM straight into w's .grad when nd_direct_grad gives it),
 * dcol = w^T @ gt then col2im into the band and the band into dx, db += row sums of gt. With
 * several threads dx is written per image and dw, db go through per-thread partial sums added in
 * thread order (deterministic for a thread count). Under ND_CREATE_GRAPH it composes the
 * differentiable ops instead (im2col, matmul, col2im, sums), so the gradient is itself a graph and
 * a second derivative follows.
 */
#include <string.h>

#include "autograd/ops_internal.h"
#include "tensor/kernels.h"

#define ND_CONV_MAX_WORKERS 64 /* workers of one conv kernel (nd_threads() above this: capped) */

/* im2col matrices are kept under this size (bytes), to stay in a core's L2 */
#define COL_BUDGET (512 * 1024) /* 64K to 1M measured alike on the ODE-Net's 7x7 convs */

#define GROUP_MAX_L 256 /* images with fewer outputs are grouped into tiles */
#define ROW_CHUNK 8     /* im2col copies rows of up to 2 ROW_CHUNK outputs as fixed chunks */
#define SLACK 16        /* reals after col and after the band that a chunk may run into */

typedef struct {
    int N, C, H, W; /* input */
    int OC, kh, kw; /* weight */
    int stride, pad, OH, OW;
    int ckk, L; /* C*kh*kw, OH*OW */
} conv_geom;

/* One worker's scratch: a tile's col (ckk, cols), dense tile (OC, cols), input band, the index
 * table and the rows per tile it was built for, and (backward, several workers) its partial dw (OC,
 * ckk) and db (OC,). */
typedef struct {
    nd_real *col, *tile, *band;
    int *idx;
    int idx_T;
    nd_real *dw, *db;
} conv_work;

/* A tile of output columns: images n0 .. n0+G-1, each rows oh0 .. oh0+T-1 (T = OH when G > 1). */
typedef struct {
    int n0, G, oh0, T;
} conv_tile;

static int tile_cols(const conv_geom *g, conv_tile t)
{
    return t.G * t.T * g->OW;
}

/* Images per group (1 for large images), or 1 with rows per tile when one image's matrix exceeds
 * the budget. */
static void tile_plan(const conv_geom *g, int *G, int *T)
{
    size_t per_image = (size_t)g->ckk * g->L * sizeof(nd_real);
    if (per_image <= COL_BUDGET) {
        /* an image of at least GROUP_MAX_L outputs is a tile of its own: its GEMM writes NCHW in
         * place, with no scatter, and its columns still fill the GEMM */
        size_t n = g->L >= GROUP_MAX_L ? 1 : COL_BUDGET / per_image;
        *G = n < (size_t)g->N ? (int)n : g->N;
        *T = g->OH;
    } else {
        size_t per_row = (size_t)g->ckk * g->OW * sizeof(nd_real);
        size_t n = COL_BUDGET / per_row;
        *G = 1;
        *T = n < 1 ? 1 : n < (size_t)g->OH ? (int)n : g->OH;
    }
}

/* The tile's input band: rows oh0*stride - pad .. + band_rows - 1 of its images, zero-padded to
 * padded_w columns, (G, C, band_rows, padded_w). Every tap of the tile reads inside it. */
static int band_rows(const conv_geom *g, int T)
{
    return (T - 1) * g->stride + g->kh;
}
static int padded_w(const conv_geom *g)
{
    return g->W + 2 * g->pad;
}

/* idx (kh*kw, T*OW): for kernel tap (i, j) and output position (r, ow) of a tile of T rows, the
 * offset of the value it reads in one channel's plane of the band. The same for every channel,
 * image and tile of T rows, so tile_copy is a plain gather. */
static void tile_index(const conv_geom *g, int T, int *idx)
{
    int per = T * g->OW, s = g->stride, Wp = padded_w(g);
    for (int i = 0; i < g->kh; i++)
        for (int j = 0; j < g->kw; j++) {
            int *ix = idx + (size_t)(i * g->kw + j) * per;
            for (int r = 0; r < T; r++)
                for (int ow = 0; ow < g->OW; ow++)
                    ix[r * g->OW + ow] = (r * s + i) * Wp + ow * s + j;
        }
}

/* row (n,) += src (n,): a loop the compiler vectorises (the two never overlap). */
static void add_row(nd_real *restrict row, const nd_real *restrict src, int n)
{
    for (int k = 0; k < n; k++) row[k] += src[k];
}

/* fill: band = the tile's rows of x, zero-padded; otherwise x += the band's interior (the padding
 * is dropped: the second half of col2im). */
static void band_move(const conv_geom *g, conv_tile t, nd_real *x /* (N, C, H, W) */, nd_real *band,
                      bool fill)
{
    int TH = band_rows(g, t.T), Wp = padded_w(g), ih0 = t.oh0 * g->stride - g->pad;
    size_t plane = (size_t)TH * Wp;
    if (fill) memset(band, 0, (size_t)t.G * g->C * plane * sizeof *band);
    for (int n = 0; n < t.G; n++)
        for (int c = 0; c < g->C; c++) {
            nd_real *img = x + ((size_t)(t.n0 + n) * g->C + c) * g->H * g->W; /* (H, W) */
            nd_real *bp = band + ((size_t)n * g->C + c) * plane + g->pad;     /* (TH, Wp) */
            for (int r = 0; r < TH; r++) {
                int ih = ih0 + r;
                if (ih < 0 || ih >= g->H) continue;
                nd_real *row = img + (size_t)ih * g->W, *br = bp + (size_t)r * Wp;
                if (fill)
                    memcpy(br, row, (size_t)g->W * sizeof *row);
                else
                    add_row(row, br, g->W);
            }
        }
}

/* One tap's segment of one image's band plane bp (band_rows, Wp) and col segment seg (T*OW,):
 * seg = the plane read at the tap (to_col), else plane += seg. With stride 1 and rows of at least
 * 2 ROW_CHUNK + 1 outputs (narrower ones take tile_chunks) each output row is a contiguous run of
 * the plane (a vectorised copy); other strides gather through idx (T*OW,). */
static void tap_copy(const conv_geom *g, int T, int tap, nd_real *restrict bp,
                     nd_real *restrict seg, const int *ix, bool to_col)
{
    int per = T * g->OW, OW = g->OW;
    if (g->stride != 1) {
        if (to_col)
            for (int p = 0; p < per; p++) seg[p] = bp[ix[p]];
        else
            for (int p = 0; p < per; p++) bp[ix[p]] += seg[p];
        return;
    }
    int i = tap / g->kw, j = tap % g->kw, Wp = padded_w(g);
    for (int r = 0; r < T; r++) {
        nd_real *row = bp + (size_t)(r + i) * Wp + j, *sr = seg + (size_t)r * OW;
        if (to_col)
            for (int ow = 0; ow < OW; ow++) sr[ow] = row[ow];
        else
            for (int ow = 0; ow < OW; ow++) row[ow] += sr[ow];
    }
}

/* Copies (to_col) or adds (masked to the first n values) one output row as `chunks` fixed chunks of
 * ROW_CHUNK values: constant sizes, so inline vector moves (a loop of 7 or 14 would be a call of
 * memmove per row). */
static void chunk_row(nd_real *restrict sr, nd_real *restrict row, int n, int chunks, bool to_col)
{
    if (to_col && chunks == 1)
        memcpy(sr, row, ROW_CHUNK * sizeof *sr);
    else if (to_col)
        memcpy(sr, row, 2 * ROW_CHUNK * sizeof *sr);
    else
        for (int ow = 0; ow < chunks * ROW_CHUNK; ow++) {
            nd_real v = sr[ow]; /* read, then select: vectorisable */
            row[ow] += ow < n ? v : 0;
        }
}

/* tile_copy for stride 1 and rows of at most 2 ROW_CHUNK outputs (a 7x7 ODE-Net's, a 14x14
 * conv-net's): every output row as one or two fixed chunks. A chunk runs past its row: copying,
 * the next row's chunk overwrites the excess and the last one's lands in the slack after col;
 * adding, the excess adds zeros. */
static void tile_chunks(const conv_geom *g, conv_tile t, nd_real *band, nd_real *col, bool to_col)
{
    int cols = tile_cols(g, t), per = t.T * g->OW, OW = g->OW, Wp = padded_w(g);
    int chunks = (OW + ROW_CHUNK - 1) / ROW_CHUNK;
    size_t plane = (size_t)band_rows(g, t.T) * Wp, image = (size_t)g->C * plane;
    for (int c = 0; c < g->C; c++)
        for (int i = 0; i < g->kh; i++)
            for (int j = 0; j < g->kw; j++) {
                nd_real *seg = col + ((size_t)(c * g->kh + i) * g->kw + j) * cols;
                nd_real *src = band + c * plane + (size_t)i * Wp + j;
                for (int n = 0; n < t.G; n++, src += image, seg += per)
                    for (int r = 0; r < t.T; r++)
                        chunk_row(seg + (size_t)r * OW, src + (size_t)r * Wp, OW, chunks, to_col);
            }
}

/* to_col: col (ckk, cols) = im2col of the tile from its band; otherwise band += col2im(col)
 * (the band zeroed first). idx from tile_index. */
static void tile_copy(const conv_geom *g, conv_tile t, nd_real *band, nd_real *col, const int *idx,
                      bool to_col)
{
    int cols = tile_cols(g, t), per = t.T * g->OW, kk = g->kh * g->kw;
    size_t plane = (size_t)band_rows(g, t.T) * padded_w(g);
    if (!to_col) memset(band, 0, (size_t)t.G * g->C * plane * sizeof *band);
    if (g->stride == 1 && g->OW <= 2 * ROW_CHUNK) {
        tile_chunks(g, t, band, col, to_col);
        return;
    }
    for (int c = 0; c < g->C; c++)
        for (int k = 0; k < kk; k++) {
            nd_real *r = col + ((size_t)c * kk + k) * cols; /* (cols,) */
            for (int n = 0; n < t.G; n++)
                tap_copy(g, t.T, k, band + ((size_t)n * g->C + c) * plane, r + (size_t)n * per,
                         idx + (size_t)k * per, to_col);
        }
}

/* Gathers (scatter = false) or scatters the tile's part of an NCHW tensor y (N, OC, OH, OW) from
 * or to a dense tile buf (OC, cols); scattering adds b (may be NULL). */
static void tile_move(const conv_geom *g, conv_tile t, nd_real *y, nd_real *buf, const nd_real *b,
                      bool scatter)
{
    int cols = tile_cols(g, t);
    size_t seg = (size_t)t.T * g->OW;
    for (int n = 0; n < t.G; n++)
        for (int oc = 0; oc < g->OC; oc++) {
            nd_real *yp = y + ((size_t)(t.n0 + n) * g->OC + oc) * g->L + (size_t)t.oh0 * g->OW;
            nd_real *bp = buf + (size_t)oc * cols + n * seg;
            if (!scatter)
                memcpy(bp, yp, seg * sizeof *bp);
            else if (!b)
                memcpy(yp, bp, seg * sizeof *bp);
            else
                for (size_t k = 0; k < seg; k++) yp[k] = bp[k] + b[oc];
        }
}

/* The tile of images n0 .. n0+G-1 (clipped to N), rows oh0 .. oh0+T-1 (clipped to OH). */
static conv_tile make_tile(const conv_geom *g, int n0, int G, int oh0, int T)
{
    return (conv_tile){n0, n0 + G <= g->N ? G : g->N - n0, oh0, oh0 + T <= g->OH ? T : g->OH - oh0};
}

/* The worker's index table for tile t, rebuilt only when t's rows per tile differ from the last
 * tile's. */
static const int *work_index(const conv_geom *g, conv_tile t, conv_work *wk)
{
    if (wk->idx_T != t.T) {
        tile_index(g, t.T, wk->idx);
        wk->idx_T = t.T;
    }
    return wk->idx;
}

/* Workers for a kernel over n_groups image groups: nd_threads(), at most one per group and one
 * per ~1 MFLOP of work (smaller kernels stay on the calling thread). */
static int conv_workers(const conv_geom *g)
{
#ifdef ND_HAVE_OPENMP
    int G, T;
    tile_plan(g, &G, &T);
    double flops = 2.0 * g->N * g->L * g->OC * g->ckk;
    int n = nd_threads(), n_groups = (g->N + G - 1) / G, by_size = (int)(flops / 1e6);
    if (n > n_groups) n = n_groups;
    if (n > by_size) n = by_size;
    return n < 1 ? 1 : n;
#else
    (void)g;
    return 1;
#endif
}

/* out (N, OC, OH, OW) = conv(x, w) + b for one tile; scratch holds col and (for groups) a tile. */
static void forward_tile(const conv_geom *g, conv_tile t, const nd_real *x, const nd_real *w,
                         const nd_real *b, nd_real *out, conv_work *wk)
{
    int cols = tile_cols(g, t);
    band_move(g, t, (nd_real *)x, wk->band, true);
    tile_copy(g, t, wk->band, wk->col, work_index(g, t, wk), true);
    if (t.G > 1) { /* (OC, cols) in scratch, then NCHW with the bias */
        nd_gemm(false, false, g->OC, cols, g->ckk, 1, w, g->ckk, wk->col, cols, 0, wk->tile, cols);
        tile_move(g, t, out, wk->tile, b, true);
        return;
    }
    nd_real *y = out + (size_t)t.n0 * g->OC * g->L + (size_t)t.oh0 * g->OW; /* ld L */
    if (b)
        for (int oc = 0; oc < g->OC; oc++)
            for (int k = 0; k < cols; k++) y[(size_t)oc * g->L + k] = b[oc];
    nd_gemm(false, false, g->OC, cols, g->ckk, 1, w, g->ckk, wk->col, cols, b ? 1 : 0, y, g->L);
}

/* out = conv(x, w) + b for image group gi, row tile by row tile. */
static void forward_group(const conv_geom *g, int gi, const nd_real *x, const nd_real *w,
                          const nd_real *b, nd_real *out, conv_work *wk)
{
    int G, T;
    tile_plan(g, &G, &T);
    for (int oh0 = 0; oh0 < g->OH; oh0 += T)
        forward_tile(g, make_tile(g, gi * G, G, oh0, T), x, w, b, out, wk);
}

/* out = conv(x, w) + b, the image groups shared among n_work workers (no parallel region at
 * all for one: OpenMP's runtime allocates when it enters one). */
static void conv_forward(const conv_geom *g, const nd_real *x, const nd_real *w, const nd_real *b,
                         nd_real *out, conv_work *work, int n_work)
{
    int G, T;
    tile_plan(g, &G, &T);
    int n_groups = (g->N + G - 1) / G;
    if (n_work == 1) {
        for (int gi = 0; gi < n_groups; gi++) forward_group(g, gi, x, w, b, out, work);
        return;
    }
#ifdef ND_HAVE_OPENMP
#pragma omp parallel for num_threads(n_work) schedule(static)
#endif
    for (int gi = 0; gi < n_groups; gi++) forward_group(g, gi, x, w, b, out, &work[nd_worker_id()]);
}

static bool conv_geometry(nd_ctx *ctx, const nd_tensor *x, const nd_tensor *w, const nd_tensor *b,
                          int stride, int pad, conv_geom *g)
{
    char sx[64], sw[64], sb[64];
    if (w->ndim != 4) {
        nd_fail(ctx, ND_ERR_SHAPE, "nd_conv2d: weight %s is not (out_ch, in_ch, kh, kw)",
                nd_shape_str(w, sw));
        return false;
    }
    if (b && (b->ndim != 1 || b->shape[0] != w->shape[0])) {
        nd_fail(ctx, ND_ERR_SHAPE, "nd_conv2d: bias %s is not (%d,) for weight %s",
                nd_shape_str(b, sb), w->shape[0], nd_shape_str(w, sw));
        return false;
    }
    if (x->ndim != 4 || x->shape[1] != w->shape[1]) {
        nd_fail(ctx, ND_ERR_SHAPE, "nd_conv2d: input %s is not (N, %d, H, W) for weight %s",
                nd_shape_str(x, sx), w->shape[1], nd_shape_str(w, sw));
        return false;
    }
    if (stride < 1 || pad < 0) {
        nd_fail(ctx, ND_ERR_ARG, "nd_conv2d: stride %d, padding %d", stride, pad);
        return false;
    }
    *g = (conv_geom){.N = x->shape[0],
                     .C = x->shape[1],
                     .H = x->shape[2],
                     .W = x->shape[3],
                     .OC = w->shape[0],
                     .kh = w->shape[2],
                     .kw = w->shape[3],
                     .stride = stride,
                     .pad = pad};
    if (g->H + 2 * pad < g->kh || g->W + 2 * pad < g->kw) {
        nd_fail(ctx, ND_ERR_SHAPE, "nd_conv2d: kernel %dx%d with padding %d does not fit input %s",
                g->kh, g->kw, pad, nd_shape_str(x, sx));
        return false;
    }
    g->OH = (g->H + 2 * pad - g->kh) / stride + 1;
    g->OW = (g->W + 2 * pad - g->kw) / stride + 1;
    g->ckk = g->C * g->kh * g->kw;
    g->L = g->OH * g->OW;
    return true;
}

/* Scratch for n workers from the arena (with partial dw, db when partials); false when the arena
 * failed (the error is in ctx). */
static bool conv_scratch(nd_ctx *ctx, const conv_geom *g, int n, bool partials, conv_work *work)
{
    int G, T;
    tile_plan(g, &G, &T);
    size_t cols = (size_t)G * T * g->OW, per = (size_t)T * g->OW * g->kh * g->kw;
    size_t band = (size_t)G * g->C * band_rows(g, T) * padded_w(g);
    size_t reals = (size_t)(g->ckk + g->OC) * cols + band + 2 * SLACK +
                   (partials ? (size_t)g->OC * (g->ckk + 1) : 0) +
                   (per * sizeof(int) + sizeof(nd_real) - 1) / sizeof(nd_real);
    nd_real *mem = nd_ctx_alloc(ctx, (size_t)n * reals * sizeof *mem);
    for (int i = 0; mem && i < n; i++) {
        nd_real *p = mem + (size_t)i * reals;
        work[i] = (conv_work){.col = p, .tile = p + (size_t)g->ckk * cols + SLACK, .idx_T = -1};
        work[i].band = work[i].tile + (size_t)g->OC * cols;
        memset(work[i].band + band, 0, SLACK * sizeof *p); /* read by chunks: kept finite */
        p = work[i].band + band + SLACK;
        if (partials) {
            work[i].dw = p, work[i].db = p + (size_t)g->OC * g->ckk;
            memset(p, 0, (size_t)g->OC * (g->ckk + 1) * sizeof *p);
            p += (size_t)g->OC * (g->ckk + 1);
        }
        work[i].idx = (int *)p;
    }
    return mem != NULL;
}

nd_tensor *nd_conv2d(nd_ctx *ctx, nd_tensor *x, nd_tensor *w, nd_tensor *b, int stride, int pad)
{
    if (!ND_CHECK2(ctx, "nd_conv2d", x, w)) return NULL;
    conv_geom g;
    if (!conv_geometry(ctx, x, w, b, stride, pad, &g)) return NULL;
    nd_tensor *out = nd_tensor_alloc(ctx, 4, (int[]){g.N, g.OC, g.OH, g.OW});
    int n_work = conv_workers(&g);
    conv_work work[ND_CONV_MAX_WORKERS];
    if (n_work > ND_CONV_MAX_WORKERS) n_work = ND_CONV_MAX_WORKERS;
    if (!out || !conv_scratch(ctx, &g, n_work, false, work)) return NULL;
    conv_forward(&g, x->data, w->data, b ? b->data : NULL, out->data, work, n_work);
    out->arg[0] = stride, out->arg[1] = pad;
    nd_tensor *src[3] = {x, w, b};
    return nd_record(ctx, out, ND_OP_CONV2D, b ? 3 : 2, src);
}

/* The gradients as a graph (ND_CREATE_GRAPH): with rows = im2col(x) (N*L, ckk) and
 * gr = dL/dout as (N*L, OC): dx = col2im(gr @ w2), dw = gr^T @ rows, db = column sums of gr. */
static void conv_backward_graph(nd_ctx *ctx, nd_tensor *out, const conv_geom *g)
{
    nd_tensor *x = out->src[0], *w = out->src[1], *b = out->n_src > 2 ? out->src[2] : NULL;
    nd_window2d win = {g->kh, g->kw, g->stride, g->stride, g->pad, g->pad};
    nd_tensor *g3 = nd_reshape(ctx, out->gnode, 3, (int[]){g->N, g->OC, g->L});
    nd_tensor *gr = nd_reshape(ctx, nd_transpose(ctx, g3), 2, (int[]){g->N * g->L, g->OC});
    if (nd_needs_grad(ctx, x)) {
        nd_tensor *w2 = nd_reshape(ctx, w, 2, (int[]){g->OC, g->ckk});
        nd_accumulate_grad(ctx, x, nd_col2im(ctx, nd_matmul(ctx, gr, w2), x->shape, win));
    }
    if (nd_needs_grad(ctx, w)) {
        nd_tensor *dw = nd_matmul_t(ctx, gr, nd_im2col(ctx, x, win), true, false);
        nd_accumulate_grad(ctx, w, nd_reshape(ctx, dw, 4, w->shape));
    }
    if (b && nd_needs_grad(ctx, b)) nd_accumulate_grad(ctx, b, nd_sum_axis(ctx, gr, 0, false));
}

/* The sum of x (n,) in 16 interleaved partial sums added pairwise at the end: a fixed order that
 * vectorises (one running sum is a chain of dependent scalar adds). */
static nd_real row_sum(const nd_real *x, int n)
{
    nd_real part[16] = {0};
    int k = 0;
    for (; k + 16 <= n; k += 16)
        for (int l = 0; l < 16; l++) part[l] += x[k + l];
    for (; k < n; k++) part[k % 16] += x[k];
    for (int w = 8; w >= 1; w /= 2)
        for (int l = 0; l < w; l++) part[l] += part[l + w];
    return part[0];
}

/* One tile's gradients (see the file's comment), added to dx, dw, db (each may be NULL). */
static void backward_tile(const conv_geom *g, conv_tile t, const nd_real *x, const nd_real *w,
                          nd_real *gy, nd_real *dx, nd_real *dw, nd_real *db, conv_work *wk)
{
    int cols = tile_cols(g, t), ldg = cols;
    const nd_real *gt = wk->tile;
    if (t.G > 1)
        tile_move(g, t, gy, wk->tile, NULL, false);
    else /* the tile of one image is a strided view of gy */
        gt = gy + (size_t)t.n0 * g->OC * g->L + (size_t)t.oh0 * g->OW, ldg = g->L;
    if (db)
        for (int oc = 0; oc < g->OC; oc++) db[oc] += row_sum(gt + (size_t)oc * ldg, cols);
    const int *idx = work_index(g, t, wk);
    if (dw) {
        band_move(g, t, (nd_real *)x, wk->band, true);
        tile_copy(g, t, wk->band, wk->col, idx, true);
        nd_gemm(false, true, g->OC, g->ckk, cols, 1, gt, ldg, wk->col, cols, 1, dw, g->ckk);
    }
    if (dx) {
        nd_gemm(true, false, g->ckk, cols, g->OC, 1, w, g->ckk, gt, ldg, 0, wk->col, cols);
        tile_copy(g, t, wk->band, wk->col, idx, false);
        band_move(g, t, dx, wk->band, false);
    }
}

/* Image group gi's gradients, row tile by row tile, added to dx, dw, db (each may be NULL). */
static void backward_group(const conv_geom *g, int gi, const nd_real *x, const nd_real *w,
                           nd_real *gy, nd_real *dx, nd_real *dw, nd_real *db, conv_work *wk)
{
    int G, T;
    tile_plan(g, &G, &T);
    for (int oh0 = 0; oh0 < g->OH; oh0 += T)
        backward_tile(g, make_tile(g, gi * G, G, oh0, T), x, w, gy, dx, dw, db, wk);
}

/* The gradients as values, the image groups shared among n_work workers: dx directly (the
 * groups' images are disjoint), dw and db (with several workers) through each worker's partial
 * sums over its fixed range of groups, added in worker order. dx, dw, db may be NULL. */
static void conv_backward_tiles(const conv_geom *g, const nd_real *x, const nd_real *w, nd_real *gy,
                                nd_real *dx, nd_real *dw, nd_real *db, conv_work *work, int n_work)
{
    int G, T;
    tile_plan(g, &G, &T);
    int n_groups = (g->N + G - 1) / G;
    if (n_work == 1) {
        for (int gi = 0; gi < n_groups; gi++) backward_group(g, gi, x, w, gy, dx, dw, db, work);
        return;
    }
#ifdef ND_HAVE_OPENMP
#pragma omp parallel for num_threads(n_work) schedule(static)
#endif
    for (int gi = 0; gi < n_groups; gi++) {
        conv_work *wk = &work[nd_worker_id()];
        backward_group(g, gi, x, w, gy, dx, dw ? wk->dw : NULL, db ? wk->db : NULL, wk);
    }
    for (int i = 0; i < n_work; i++) {
        for (int k = 0; dw && k < g->OC * g->ckk; k++) dw[k] += work[i].dw[k];
        for (int k = 0; db && k < g->OC; k++) db[k] += work[i].db[k];
    }
}

/* A gradient buffer for t: its .grad when the rule may add there, else zeros in the arena (then
 * *tmp is that tensor, to accumulate afterwards); NULL when t needs no gradient. */
static nd_real *grad_buffer(nd_ctx *ctx, nd_tensor *t, nd_tensor **tmp)
{
    *tmp = NULL;
    if (!t || !nd_needs_grad(ctx, t)) return NULL;
    nd_real *direct = nd_direct_grad(ctx, t);
    if (direct) return direct;
    *tmp = nd_zeros_like(ctx, t);
    return *tmp ? (*tmp)->data : NULL;
}

void nd_CONV2D_backward_rule(nd_ctx *ctx, nd_tensor *out)
{
    nd_tensor *x = out->src[0], *w = out->src[1], *b = out->n_src > 2 ? out->src[2] : NULL;
    conv_geom g;
    if (!conv_geometry(ctx, x, w, b, (int)out->arg[0], (int)out->arg[1], &g)) return;
    if (nd_ctx_grad_enabled(ctx)) { /* recording: a differentiable gradient */
        conv_backward_graph(ctx, out, &g);
        return;
    }
    nd_tensor *tx, *tw, *tb;
    nd_real *dx = grad_buffer(ctx, x, &tx), *dw = grad_buffer(ctx, w, &tw),
            *db = grad_buffer(ctx, b, &tb);
    int n_work = conv_workers(&g);
    conv_work work[ND_CONV_MAX_WORKERS];
    if (n_work > ND_CONV_MAX_WORKERS) n_work = ND_CONV_MAX_WORKERS;
    if (!conv_scratch(ctx, &g, n_work, n_work > 1, work) || (nd_needs_grad(ctx, x) && !dx) ||
        (nd_needs_grad(ctx, w) && !dw) || (b && nd_needs_grad(ctx, b) && !db))
        return; /* the arena failed; the error is in ctx */
    conv_backward_tiles(&g, x->data, w->data, out->gnode->data, dx, dw, db, work, n_work);
    if (tx) nd_accumulate_grad(ctx, x, tx);
    if (tw) nd_accumulate_grad(ctx, w, tw);
    if (tb) nd_accumulate_grad(ctx, b, tb);
}
