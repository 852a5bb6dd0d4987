/* SPDX-License-Identifier: MIT
 * bench/bare_tanh_avx2.c: tanh over an array with the SLEEF kernel the library uses on AVX2
 * machines, for bench_odeint's hand-written baseline. Compiled with -mavx2 -mfma; called only
 * after a CPU check. */
#include <immintrin.h>
#include <math.h>
#include <sleef.h>
#include <stddef.h>

void bare_tanh_avx2(double *y, const double *x, size_t n)
{
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        _mm256_storeu_pd(y + i, Sleef_tanhd4_u35avx2(_mm256_loadu_pd(x + i)));
    for (; i < n; i++) y[i] = tanh(x[i]);
}
