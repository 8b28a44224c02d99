// BatchNorm in training mode on bf16 channels-last activations, with the ReLU6 that follows it
// fused in: two passes over memory forward (statistics, then normalize + clamp + round to bf16)
// and two back (the masked gradient's two sums, then the input's gradient), where ATen 1.13
// makes eighteen: native_batch_norm's statistics and normalize, hardtanh, then two
// threshold_backward and a neg for the ReLU6's backward and native_batch_norm_backward's
// reduce and apply. These ops move at memory speed, so passes are time: on MobileNetV2 at
// 96x96 they were 40% of a bf16 fine-tune step (profile in docs/engine.md).
//
// The statistics are summed in fp32 over blocks of 256 rows, shifted by each channel's first
// value, and the blocks in float64; the normalize is one fp32 fma per value, rounded to bf16
// by AVX512-BF16's vcvtneps2bf16 (round to nearest even). The backward recomputes the ReLU6's
// mask from the saved input with the forward's own arithmetic, so nothing but the input is kept.
// The kernels need AVX512 (F, BW, VL) and AVX512-BF16; `available()` says whether this CPU
// has them, and the caller falls back to ATen's ops otherwise.
#pragma once

#include <immintrin.h>
#include <torch/torch.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cstdint>
#include <cstring>
#include <vector>

namespace bnbf16 {

using at::Tensor;

inline bool available() {
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
  return ok;
}

#define BNBF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

BNBF16_TARGET inline __m512 load16(const uint16_t* p, __mmask16 m) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}
BNBF16_TARGET inline void store16(uint16_t* p, __m512 v, __mmask16 m) {
  __m256bh h = _mm512_cvtneps_pbh(v);
  _mm256_mask_storeu_epi16(p, m, (__m256i)h);
}
inline __mmask16 tailMask(int64_t left) { return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1); }

constexpr int64_t kBlock = 256;  // rows summed in fp32 before the float64 total
constexpr int64_t kWide = 256;   // channels from which the sums go a row at a time (blockSums)

// Two per-channel sums over rows [r0, r1) of [rows, C] bf16 data: term(r, c, m, u, w) adds row
// r's 16 terms from channel c (masked by m) for each sum into u and w. The sums run in fp32 over
// blocks of kBlock rows, four rows at a time (each row's terms in its own register, added as a
// tree into the block's sums, which are loaded and stored once per four rows), and each block's
// sums go into the float64 totals s1, s2. One row at a time, each term loaded and stored the
// block sums and the adds waited on each other: 3-11 GB/s here, against 17-21 for the apply passes.
template <typename T>
BNBF16_TARGET inline void blockSums(int64_t r0, int64_t r1, int64_t C, T term, double* s1, double* s2) {
  int64_t padded = (C + 15) / 16 * 16;
  std::vector<float> b1(padded), b2(padded);
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t k0 = r0; k0 < r1; k0 += kBlock) {
    int64_t k1 = std::min(r1, k0 + kBlock);
    std::fill(b1.begin(), b1.end(), 0.f);
    std::fill(b2.begin(), b2.end(), 0.f);
    int64_t r = k0;
    for (; C < kWide && r + 4 <= k1; r += 4) {
      for (int64_t c = 0; c < C; c += 16) {
        __mmask16 m = tailMask(C - c);
        __m512 u0 = zero, u1 = zero, u2 = zero, u3 = zero, w0 = zero, w1 = zero, w2 = zero, w3 = zero;
        term(r, c, m, u0, w0);
        term(r + 1, c, m, u1, w1);
        term(r + 2, c, m, u2, w2);
        term(r + 3, c, m, u3, w3);
        _mm512_storeu_ps(b1.data() + c, _mm512_add_ps(_mm512_loadu_ps(b1.data() + c), _mm512_add_ps(_mm512_add_ps(u0, u1), _mm512_add_ps(u2, u3))));
        _mm512_storeu_ps(b2.data() + c, _mm512_add_ps(_mm512_loadu_ps(b2.data() + c), _mm512_add_ps(_mm512_add_ps(w0, w1), _mm512_add_ps(w2, w3))));
      }
    }
    for (; r < k1; r++) {
      for (int64_t c = 0; c < C; c += 16) {
        __m512 u = _mm512_loadu_ps(b1.data() + c), w = _mm512_loadu_ps(b2.data() + c);
        term(r, c, tailMask(C - c), u, w);
        _mm512_storeu_ps(b1.data() + c, u);
        _mm512_storeu_ps(b2.data() + c, w);
      }
    }
    for (int64_t c = 0; c < C; c++) {
      s1[c] += b1[c];
      s2[c] += b2[c];
    }
  }
}

// Rows [r0, r1) of x [rows, C]: per channel, sum(x - shift) and sum((x - shift)^2) into s, q.
BNBF16_TARGET inline void sumsChunk(const uint16_t* x, int64_t r0, int64_t r1, int64_t C, const float* shift, double* s, double* q) {
  blockSums(r0, r1, C, [&](int64_t r, int64_t c, __mmask16 m, __m512& u, __m512& w) BNBF16_TARGET {
    __m512 v = _mm512_sub_ps(load16(x + r * C + c, m), _mm512_maskz_loadu_ps(m, shift + c));
    u = _mm512_add_ps(u, v);
    w = _mm512_fmadd_ps(v, v, w);
  }, s, q);
}

// y = act(x * a + b) per channel, rounded to bf16; act clamps to [0, 6] when relu6.
BNBF16_TARGET inline void applyChunk(const uint16_t* x, uint16_t* y, int64_t r0, int64_t r1, int64_t C, const float* a, const float* b, bool relu6) {
  const __m512 zero = _mm512_setzero_ps(), six = _mm512_set1_ps(6.f);
  for (int64_t r = r0; r < r1; r++) {
    for (int64_t c = 0; c < C; c += 16) {
      __mmask16 m = tailMask(C - c);
      __m512 z = _mm512_fmadd_ps(load16(x + r * C + c, m), _mm512_maskz_loadu_ps(m, a + c), _mm512_maskz_loadu_ps(m, b + c));
      if (relu6) z = _mm512_min_ps(six, _mm512_max_ps(zero, z));  // NaN stays NaN (vmaxps returns its second operand), as in ATen's clamp
      store16(y + r * C + c, z, m);
    }
  }
}

// The gradient through the ReLU6: dy where 0 < x * a + b < 6 (the forward's own arithmetic).
BNBF16_TARGET inline __m512 masked(__m512 dy, __m512 xv, __m512 av, __m512 bv, bool relu6) {
  if (!relu6) return dy;
  __m512 z = _mm512_fmadd_ps(xv, av, bv);
  __mmask16 in = _mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_GT_OQ) & _mm512_cmp_ps_mask(z, _mm512_set1_ps(6.f), _CMP_LT_OQ);
  return _mm512_maskz_mov_ps(in, dy);
}

// Rows [r0, r1): per channel, sum(g) and sum(g * (x - mean)) for the masked gradient g.
BNBF16_TARGET inline void gradSumsChunk(const uint16_t* x, const uint16_t* dy, int64_t r0, int64_t r1, int64_t C, const float* a, const float* b, const float* mean, bool relu6, double* sg, double* sgx) {
  blockSums(r0, r1, C, [&](int64_t r, int64_t c, __mmask16 m, __m512& u, __m512& w) BNBF16_TARGET {
    __m512 xv = load16(x + r * C + c, m);
    __m512 g = masked(load16(dy + r * C + c, m), xv, _mm512_maskz_loadu_ps(m, a + c), _mm512_maskz_loadu_ps(m, b + c), relu6);
    u = _mm512_add_ps(u, g);
    w = _mm512_fmadd_ps(g, _mm512_sub_ps(xv, _mm512_maskz_loadu_ps(m, mean + c)), w);
  }, sg, sgx);
}

// dx = k1 * g + k2 * (x - mean) + k3 per channel, rounded to bf16.
BNBF16_TARGET inline void gradApplyChunk(const uint16_t* x, const uint16_t* dy, uint16_t* dx, int64_t r0, int64_t r1, int64_t C, const float* a, const float* b, const float* mean, bool relu6, const float* k1, const float* k2, const float* k3) {
  for (int64_t r = r0; r < r1; r++) {
    for (int64_t c = 0; c < C; c += 16) {
      __mmask16 m = tailMask(C - c);
      __m512 xv = load16(x + r * C + c, m);
      __m512 g = masked(load16(dy + r * C + c, m), xv, _mm512_maskz_loadu_ps(m, a + c), _mm512_maskz_loadu_ps(m, b + c), relu6);
      __m512 xc = _mm512_sub_ps(xv, _mm512_maskz_loadu_ps(m, mean + c));
      __m512 d = _mm512_fmadd_ps(g, _mm512_maskz_loadu_ps(m, k1 + c), _mm512_fmadd_ps(xc, _mm512_maskz_loadu_ps(m, k2 + c), _mm512_maskz_loadu_ps(m, k3 + c)));
      store16(dx + r * C + c, d, m);
    }
  }
}

// Runs f(chunk, r0, r1) over `rows` split into at most one chunk a thread; returns the chunk count.
template <typename F>
int64_t chunked(int64_t rows, F f) {
  int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), rows / kBlock));
  at::parallel_for(0, chunks, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; t++) f(t, rows * t / chunks, rows * (t + 1) / chunks);
  });
  return chunks;
}

// Two per-channel float64 sums over `rows`: sums(r0, r1, s, q) adds rows [r0, r1) into s and q
// ([C] each), one chunk a thread, and the chunks' sums are added here.
template <typename F>
std::pair<std::vector<double>, std::vector<double>> twoSums(int64_t rows, int64_t C, F sums) {
  int64_t most = std::max<int64_t>(1, at::get_num_threads());
  std::vector<double> s(most * C, 0.0), q(most * C, 0.0);
  int64_t chunks = chunked(rows, [&](int64_t t, int64_t r0, int64_t r1) { sums(r0, r1, s.data() + t * C, q.data() + t * C); });
  for (int64_t t = 1; t < chunks; t++) {
    for (int64_t c = 0; c < C; c++) {
      s[c] += s[t * C + c];
      q[c] += q[t * C + c];
    }
  }
  s.resize(C);
  q.resize(C);
  return {s, q};
}

inline const uint16_t* u16(const Tensor& t) { return reinterpret_cast<const uint16_t*>(t.data_ptr<at::BFloat16>()); }
inline uint16_t* u16w(Tensor& t) { return reinterpret_cast<uint16_t*>(t.data_ptr<at::BFloat16>()); }

// Whether x is what the kernels take: a 4-D bf16 tensor with channels-last strides.
inline bool fits(const Tensor& x) {
  return available() && x.scalar_type() == at::kBFloat16 && x.dim() == 4 && x.is_contiguous(at::MemoryFormat::ChannelsLast) && x.numel() > 0;
}

// The batch's per-channel mean and biased variance of x (fp32 tensors [C]).
inline std::pair<Tensor, Tensor> meanVar(const Tensor& x) {
  int64_t C = x.size(1), rows = x.numel() / C;
  const uint16_t* px = u16(x);
  std::vector<float> shift(C);
  for (int64_t c = 0; c < C; c++) {
    uint32_t bits = (uint32_t)px[c] << 16;
    std::memcpy(&shift[c], &bits, 4);
  }
  auto [S, Q] = twoSums(rows, C, [&](int64_t r0, int64_t r1, double* s, double* q) { sumsChunk(px, r0, r1, C, shift.data(), s, q); });
  Tensor mean = at::empty({C}, x.options().dtype(at::kFloat)), var = at::empty({C}, x.options().dtype(at::kFloat));
  float* pm = mean.data_ptr<float>();
  float* pv = var.data_ptr<float>();
  for (int64_t c = 0; c < C; c++) {
    double m = S[c] / rows;
    pm[c] = (float)(shift[c] + m);
    pv[c] = (float)std::max(0.0, Q[c] / rows - m * m);
  }
  return {mean, var};
}

// Normalizes x with the given batch statistics, scales and shifts (gamma, beta: fp32 [C]) and
// clamps to [0, 6] when relu6; differentiable in x, gamma and beta (mean and invstd are the
// batch's own, so their dependence on x is in the backward, as in ATen's batch norm).
struct BnAct : public torch::autograd::Function<BnAct> {
  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& mean, const Tensor& invstd, bool relu6) {
    Tensor a = gamma * invstd;
    Tensor b = beta - mean * a;
    Tensor y = at::empty_like(x, at::MemoryFormat::ChannelsLast);
    int64_t C = x.size(1), rows = x.numel() / C;
    const uint16_t* px = u16(x);
    uint16_t* py = u16w(y);
    const float *pa = a.data_ptr<float>(), *pb = b.data_ptr<float>();
    chunked(rows, [&](int64_t, int64_t r0, int64_t r1) { applyChunk(px, py, r0, r1, C, pa, pb, relu6); });
    ctx->save_for_backward({x});
    for (auto& [k, t] : {std::pair<const char*, Tensor>{"gamma", gamma}, {"mean", mean}, {"invstd", invstd}, {"a", a}, {"b", b}}) ctx->saved_data[k] = t.detach();
    ctx->saved_data["relu6"] = relu6;
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    Tensor x = ctx->get_saved_variables()[0];
    auto get = [&](const char* k) { return ctx->saved_data[k].toTensor(); };
    Tensor gamma = get("gamma"), mean = get("mean"), invstd = get("invstd"), a = get("a"), b = get("b");
    bool relu6 = ctx->saved_data["relu6"].toBool();
    Tensor dy = grads[0].to(at::kBFloat16).contiguous(at::MemoryFormat::ChannelsLast);
    int64_t C = x.size(1), rows = x.numel() / C;
    const uint16_t *px = u16(x), *pdy = u16(dy);
    const float *pa = a.data_ptr<float>(), *pb = b.data_ptr<float>(), *pm = mean.data_ptr<float>();
    auto [sg, sgx] = twoSums(rows, C, [&](int64_t r0, int64_t r1, double* s, double* q) { gradSumsChunk(px, pdy, r0, r1, C, pa, pb, pm, relu6, s, q); });
    Tensor dbeta = at::empty({C}, mean.options()), dgamma = at::empty({C}, mean.options());
    Tensor k1 = at::empty({C}, mean.options()), k2 = at::empty({C}, mean.options()), k3 = at::empty({C}, mean.options());
    const float *pg = gamma.data_ptr<float>(), *pi = invstd.data_ptr<float>();
    float *pdb = dbeta.data_ptr<float>(), *pdg = dgamma.data_ptr<float>(), *p1 = k1.data_ptr<float>(), *p2 = k2.data_ptr<float>(), *p3 = k3.data_ptr<float>();
    for (int64_t c = 0; c < C; c++) {
      double G = sg[c], GX = sgx[c], is = pi[c], gm = pg[c];
      pdb[c] = (float)G;
      pdg[c] = (float)(GX * is);
      // dx = gamma * invstd * (g - mean(g) - xhat * mean(g * xhat)), xhat = (x - mean) * invstd
      double kk1 = gm * is, kk2 = -gm * is * is * is * GX / rows;
      p1[c] = (float)kk1;
      p2[c] = (float)kk2;
      p3[c] = (float)(-kk1 * G / rows);
    }
    Tensor dx;
    if (ctx->needs_input_grad(0)) {
      dx = at::empty_like(x, at::MemoryFormat::ChannelsLast);
      uint16_t* pdx = u16w(dx);
      chunked(rows, [&](int64_t, int64_t r0, int64_t r1) { gradApplyChunk(px, pdy, pdx, r0, r1, C, pa, pb, pm, relu6, p1, p2, p3); });
    }
    return {dx, ctx->needs_input_grad(1) ? dgamma : Tensor(), ctx->needs_input_grad(2) ? dbeta : Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

// One training BatchNorm (+ ReLU6) of x (fits(x)): the output, and the batch's mean and biased
// variance, which the caller moves its moving averages toward.
struct Trained {
  Tensor y, mean, var;
};
inline Trained train(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps, bool relu6) {
  Trained t;
  {
    at::NoGradGuard ng;
    std::tie(t.mean, t.var) = meanVar(x);
  }
  t.y = BnAct::apply(x, gamma, beta, t.mean, (t.var + eps).rsqrt(), relu6);
  return t;
}

}  // namespace bnbf16
