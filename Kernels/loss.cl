// Softmax, log-softmax and losses. Row-wise ops take one work-item per row of [N, K] (K is the number of
// classes: small next to N·K work elsewhere). Per-row or per-element losses go to a scratch vector that
// reduce.cl then averages, so nothing here needs atomics.

// (max, log Σ exp(x − max)) of a row: log-softmax is x − max − log_sum, stable for any logits.
inline float2 row_max_and_log_sum(__global const float *in, const uint classes) {
    float top = in[0];
    for (uint k = 1; k < classes; ++k) top = fmax(top, in[k]);
    float sum = 0.0f;
    for (uint k = 0; k < classes; ++k) sum += exp(in[k] - top);
    return (float2)(top, log(sum));
}

// Whether a label stored as a float names one of the classes; other labels make their row's loss NaN.
inline int is_class_index(const float label, const uint classes) {
    return label >= 0.0f && label < (float)classes && label == floor(label);
}

// y = softmax(x) or log-softmax(x) per row.
__kernel void softmax_forward(__global const float *x, const uint x_offset, __global float *y, const uint y_offset,
                              const uint rows, const uint classes, const uint logarithm) {
    const uint r = get_global_id(0);
    if (r >= rows) return;
    __global const float *in = x + x_offset + r * classes;
    __global float *out = y + y_offset + r * classes;
    const float2 normalizer = row_max_and_log_sum(in, classes);
    for (uint k = 0; k < classes; ++k) {
        const float lp = in[k] - normalizer.x - normalizer.y;
        out[k] = logarithm ? lp : exp(lp);
    }
}

__kernel void softmax_backward(__global const float *y, const uint y_offset, __global const float *dy, const uint dy_offset,
                               __global float *dx, const uint dx_offset, const uint rows, const uint classes, const uint logarithm) {
    const uint r = get_global_id(0);
    if (r >= rows) return;
    __global const float *out = y + y_offset + r * classes;
    __global const float *g = dy + dy_offset + r * classes;
    __global float *d = dx + dx_offset + r * classes;
    float total = 0.0f;
    for (uint k = 0; k < classes; ++k) total += logarithm ? g[k] : g[k] * out[k];
    for (uint k = 0; k < classes; ++k) d[k] = logarithm ? g[k] - exp(out[k]) * total : out[k] * (g[k] - total);
}

// Per row: row_loss = −Σ t·log softmax(x); gradient = (softmax − t)/N. soft != 0: targets are [N, K]
// probabilities; otherwise [N] labels, and a label outside 0..K-1 gives a NaN row loss. Label smoothing ε
// replaces t by (1 − ε)·t + ε/K, as PyTorch's cross_entropy(label_smoothing=ε).
__kernel void cross_entropy(__global const float *x, const uint x_offset, __global const float *t, const uint t_offset,
                            __global float *row_loss, __global float *gradient, const uint g_offset,
                            const uint rows, const uint classes, const uint soft, const float smoothing) {
    const uint r = get_global_id(0);
    if (r >= rows) return;
    __global const float *in = x + x_offset + r * classes;
    __global float *g = gradient + g_offset + r * classes;
    const float2 normalizer = row_max_and_log_sum(in, classes);
    const float label = soft ? -1.0f : t[t_offset + r];
    const int valid = soft || is_class_index(label, classes);
    float loss = 0.0f;
    for (uint k = 0; k < classes; ++k) {
        const float lp = in[k] - normalizer.x - normalizer.y;
        const float given = soft ? t[t_offset + r * classes + k] : ((float)k == label ? 1.0f : 0.0f);
        const float target = (1.0f - smoothing) * given + smoothing / (float)classes;
        loss -= target * lp;
        g[k] = (exp(lp) - target) / (float)rows;
    }
    row_loss[r] = valid ? loss : NAN;
}

__kernel void nll_loss(__global const float *lp, const uint lp_offset, __global const float *labels, const uint l_offset,
                       __global float *row_loss, __global float *gradient, const uint g_offset, const uint rows, const uint classes) {
    const uint r = get_global_id(0);
    if (r >= rows) return;
    const float label = labels[l_offset + r];
    const int valid = is_class_index(label, classes);
    for (uint k = 0; k < classes; ++k) gradient[g_offset + r * classes + k] = (valid && (float)k == label) ? -1.0f / (float)rows : 0.0f;
    row_loss[r] = valid ? -lp[lp_offset + r * classes + (uint)label] : NAN;
}

// Elementwise losses, shared with Swift (generated there as ElementwiseLossKind).
enum elementwise_loss_kind {
    ELEMENTWISE_LOSS_SQUARED_ERROR = 0,
    ELEMENTWISE_LOSS_BINARY_CROSS_ENTROPY_WITH_LOGITS = 1,
};
typedef int elementwise_loss_kind;

__kernel void elementwise_loss(__global const float *p, const uint p_offset, __global const float *t, const uint t_offset,
                               __global float *element_loss, __global float *gradient, const uint g_offset,
                               const uint n, const elementwise_loss_kind kind) {
    const uint i = get_global_id(0);
    if (i >= n) return;
    const float x = p[p_offset + i], y = t[t_offset + i];
    switch (kind) {
    case ELEMENTWISE_LOSS_SQUARED_ERROR:
        element_loss[i] = (x - y) * (x - y);
        gradient[g_offset + i] = 2.0f * (x - y) / (float)n;
        break;
    case ELEMENTWISE_LOSS_BINARY_CROSS_ENTROPY_WITH_LOGITS:
        element_loss[i] = fmax(x, 0.0f) - x * y + log1p(exp(-fabs(x)));
        gradient[g_offset + i] = (1.0f / (1.0f + exp(-x)) - y) / (float)n;
        break;
    default:
        element_loss[i] = NAN;
        gradient[g_offset + i] = NAN;
        break;
    }
}
