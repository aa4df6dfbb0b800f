/* The zero case of the ZINB log-likelihood summed over genes, with its local gradients, in one
 * pass over a minibatch (see snakevi/module/native.py, which compiles and loads this file).
 *
 * For cell b and gene g, with theta gene-wise:
 *   p          = theta * log(theta / (theta + mu)) - pi       (eps added as in snakevi.module.distributions)
 *   value[b]   = sum_g softplus(p) - softplus(-pi)
 *   d_mu       = -sigmoid(p) * theta / (theta + mu + eps)
 *   d_pi       = sigmoid(-pi) - sigmoid(p)
 *   d_theta    = sigmoid(p) * (log(theta+eps) - log(theta+mu+eps) + theta/(theta+eps) - theta/(theta+mu+eps)),
 *                summed over the cells (theta is gene-wise), row after row
 *
 * Plain C, no torch headers, so it compiles in a fraction of a second. The math functions are
 * declared with glibc's vector variants (libmvec), so that gcc turns the loop over genes into
 * SIMD code without -ffast-math: NaN and infinity keep their IEEE meaning, and a diverging run
 * still shows a NaN loss.
 */
#include <stdint.h>

#ifdef SNAKEVI_LIBMVEC /* set by native.py on x86-64 glibc, which has the vector variants */
#define SIMD_DECL __attribute__((__simd__("notinbranch")))
#else
#define SIMD_DECL
#endif

float expf(float) SIMD_DECL;
float logf(float) SIMD_DECL;
float fabsf(float);

/* max(x, 0), and 0 for a NaN (whose softplus then is NaN through the exp term) */
static inline float positive_part(float x) { return x > 0.f ? x : 0.f; }

/* log(theta + eps) and theta / (theta + eps) depend on the gene only: the caller passes them.
 * d_theta_sum must hold zeros: each row adds its d_theta to it. */
void zinb_zero_case_rows(int64_t n_rows, int64_t n_genes, const float *mu, const float *theta,
                         const float *log_theta_eps, const float *theta_share_eps, const float *pi,
                         float eps, float *value, float *d_mu, float *d_pi, float *d_theta_sum)
{
    for (int64_t b = 0; b < n_rows; ++b) {
        const float *m = mu + b * n_genes, *q = pi + b * n_genes;
        float *om = d_mu + b * n_genes, *op = d_pi + b * n_genes;
        float sum = 0.f;
#pragma omp simd reduction(+ : sum)
        for (int64_t g = 0; g < n_genes; ++g) {
            float th = theta[g], denominator = m[g] + th + eps;
            float log_ratio = log_theta_eps[g] - logf(denominator);
            float p = th * log_ratio - q[g];
            /* softplus(x) = max(x, 0) + log(1 + exp(-|x|)); sigmoid from the same exp(-|x|) */
            float ep = expf(-fabsf(p)), rp = 1.f / (1.f + ep);
            float eq = expf(-fabsf(q[g])), rq = 1.f / (1.f + eq);
            float sigmoid_p = p >= 0.f ? rp : ep * rp;
            float sigmoid_minus_pi = q[g] <= 0.f ? rq : eq * rq;
            sum += (positive_part(p) + logf(1.f + ep)) - (positive_part(-q[g]) + logf(1.f + eq));
            float share = th / denominator;
            om[g] = -sigmoid_p * share;
            op[g] = sigmoid_minus_pi - sigmoid_p;
            d_theta_sum[g] += sigmoid_p * (log_ratio + theta_share_eps[g] - share);
        }
        value[b] = sum;
    }
}

/* The value alone (no gradient wanted: validation, inference). */
void zinb_zero_case_rows_value(int64_t n_rows, int64_t n_genes, const float *mu, const float *theta,
                               const float *log_theta_eps, const float *pi, float eps, float *value)
{
    for (int64_t b = 0; b < n_rows; ++b) {
        const float *m = mu + b * n_genes, *q = pi + b * n_genes;
        float sum = 0.f;
#pragma omp simd reduction(+ : sum)
        for (int64_t g = 0; g < n_genes; ++g) {
            float th = theta[g];
            float p = th * (log_theta_eps[g] - logf(m[g] + th + eps)) - q[g];
            sum += (positive_part(p) + logf(1.f + expf(-fabsf(p)))) - (positive_part(-q[g]) + logf(1.f + expf(-fabsf(q[g]))));
        }
        value[b] = sum;
    }
}
