// Fused optimiser updates: one pass reads the parameter, its gradient and its state, and writes the new
// parameter and state. Hyper-parameters are arguments, so a changing learning rate never recompiles.
// c1, c2: Adam's bias corrections 1 − β₁ᵗ and 1 − β₂ᵗ, computed on the host.

// The rules, shared with Swift (generated there as UpdateRuleKind), and their hyper-parameters h0..h2:
// SGD: momentum, nesterov (0 or 1); AdaGrad: eps; Adadelta: rho, eps; RMSProp: alpha, eps, momentum;
// Adam and AdamW: beta1, beta2, eps. An unknown rule writes NaN rather than running another rule.
enum update_rule_kind {
    UPDATE_SGD = 0, UPDATE_ADAGRAD = 1, UPDATE_ADADELTA = 2, UPDATE_RMSPROP = 3, UPDATE_ADAM = 4, UPDATE_ADAMW = 5,
};
typedef int update_rule_kind;

__kernel void optimizer_update(__global float *p, const uint p_offset, __global const float *grad, const uint g_offset,
                               __global float *s0, const uint s0_offset, __global float *s1, const uint s1_offset,
                               const uint n, const update_rule_kind rule, const float lr, const float weight_decay, const float l1,
                               const float h0, const float h1, const float h2, const float c1, const float c2) {
    const uint i = get_global_id(0);
    if (i >= n) return;
    float w = p[p_offset + i];
    float g = grad[g_offset + i] + l1 * sign(w);
    if (rule == UPDATE_ADAMW) w -= lr * weight_decay * w; else g += weight_decay * w;
    __global float *a = s0 + s0_offset + i;
    __global float *b = s1 + s1_offset + i;
    switch (rule) {
    case UPDATE_SGD:
        if (h0 == 0.0f) { w -= lr * g; break; }
        *a = h0 * *a + g;
        w -= lr * (h1 != 0.0f ? g + h0 * *a : *a);
        break;
    case UPDATE_ADAGRAD:
        *a += g * g;
        w -= lr * g / (sqrt(*a) + h0);
        break;
    case UPDATE_ADADELTA: {
        *a = h0 * *a + (1.0f - h0) * g * g;
        const float delta = sqrt(*b + h1) / sqrt(*a + h1) * g;
        *b = h0 * *b + (1.0f - h0) * delta * delta;
        w -= lr * delta;
        break;
    }
    case UPDATE_RMSPROP: {
        *a = h0 * *a + (1.0f - h0) * g * g;
        const float scaled = g / (sqrt(*a) + h1);
        if (h2 > 0.0f) { *b = h2 * *b + scaled; w -= lr * *b; } else { w -= lr * scaled; }
        break;
    }
    case UPDATE_ADAM:
    case UPDATE_ADAMW:
        *a = h0 * *a + (1.0f - h0) * g;
        *b = h1 * *b + (1.0f - h1) * g * g;
        w -= lr * (*a / c1) / (sqrt(*b / c2) + h2);
        break;
    default:
        w = NAN;
        break;
    }
    p[p_offset + i] = w;
}
