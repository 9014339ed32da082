// Fused optimiser updates: one pass reads the parameter, its gradient and its state, and writes the new
// parameter and state. Hyper-parameters are arguments, so a changing learning rate never recompiles.
// rule: 0 SGD (h0 momentum, h1 nesterov), 1 AdaGrad (h0 eps), 2 Adadelta (h0 rho, h1 eps),
// 3 RMSProp (h0 alpha, h1 eps, h2 momentum), 4 Adam, 5 AdamW (h0 beta1, h1 beta2, h2 eps).
// c1, c2: Adam's bias corrections 1 − β₁ᵗ and 1 − β₂ᵗ, computed on the host.

__kernel void optimizer_update(__global float *p, const uint p_offset, __global const float *grad, const uint g_offset,
                               __global float *s0, const uint s0_offset, __global float *s1, const uint s1_offset,
                               const uint n, const int rule, const float lr, const float weight_decay, const float l1,
                               const float h0, const float h1, const float h2, const float c1, const float c2) {
    const uint i = get_global_id(0);
    if (i >= n) return;
    float w = p[p_offset + i];
    float g = grad[g_offset + i] + l1 * sign(w);
    if (rule == 5) w -= lr * weight_decay * w; else g += weight_decay * w;
    __global float *a = s0 + s0_offset + i;
    __global float *b = s1 + s1_offset + i;
    switch (rule) {
    case 0:
        if (h0 == 0.0f) { w -= lr * g; break; }
        *a = h0 * *a + g;
        w -= lr * (h1 != 0.0f ? g + h0 * *a : *a);
        break;
    case 1:
        *a += g * g;
        w -= lr * g / (sqrt(*a) + h0);
        break;
    case 2: {
        *a = h0 * *a + (1.0f - h0) * g * g;
        const float delta = sqrt(*b + h1) / sqrt(*a + h1) * g;
        *b = h0 * *b + (1.0f - h0) * delta * delta;
        w -= lr * delta;
        break;
    }
    case 3: {
        *a = h0 * *a + (1.0f - h0) * g * g;
        const float scaled = g / (sqrt(*a) + h1);
        if (h2 > 0.0f) { *b = h2 * *b + scaled; w -= lr * *b; } else { w -= lr * scaled; }
        break;
    }
    default:
        *a = h0 * *a + (1.0f - h0) * g;
        *b = h1 * *b + (1.0f - h1) * g * g;
        w -= lr * (*a / c1) / (sqrt(*b / c2) + h2);
        break;
    }
    p[p_offset + i] = w;
}
