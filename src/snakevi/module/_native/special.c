/* digamma for float32, as the backward of lgamma at a minibatch's non-zero counts (see
 * snakevi/module/special.py; snakevi/module/native.py compiles and loads this file).
 *
 * torch's CPU digamma is a scalar loop (about 8 ns an entry); this one is one vectorised pass,
 * with the same method: below 6 the recurrence psi(z) = psi(z + 6) - sum_{k<6} 1/(z + k), from 6
 * on the asymptotic series log(w) - 1/(2w) - sum_k B_2k / (2k w^2k), truncated after w^-10
 * (error below 1e-9 there). Float32 error within 6e-7 of the float64 value for z in [1e-6, 1e8],
 * as torch's own. Not for z <= 0 (NaN there); the callers' arguments are positive.
 */
#include <stdint.h>

#ifdef SNAKEVI_LIBMVEC /* set by native.py on x86-64 glibc, which has the vector variants */
#define SIMD_DECL __attribute__((__simd__("notinbranch")))
#else
#define SIMD_DECL
#endif

float logf(float) SIMD_DECL;

void digamma_positive(int64_t n, const float *z, float *out)
{
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
        float x = z[i];
        int small = x < 6.f;
        float shift = 0.f;
        if (small)
            shift = 1.f / x + 1.f / (x + 1.f) + 1.f / (x + 2.f) + 1.f / (x + 3.f) + 1.f / (x + 4.f) + 1.f / (x + 5.f);
        float w = small ? x + 6.f : x;
        float r = 1.f / w, r2 = r * r;
        float series = r2 * (1.f / 12 - r2 * (1.f / 120 - r2 * (1.f / 252 - r2 * (1.f / 240 - r2 * (1.f / 132)))));
        float value = logf(w) - 0.5f * r - series - shift;
        out[i] = x > 0.f ? value : __builtin_nanf("");
    }
}
