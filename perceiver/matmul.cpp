#include "perceiver/matmul.h"

#include <ATen/autocast_mode.h>
#include <ATen/record_function.h>
#include <torch/csrc/jit/frontend/tracer.h>

#include <cstdlib>
#include <cstring>

#if PERCEIVER_WITH_ONEDNN
#include <dnnl.hpp>
#endif

namespace perceiver::ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

bool onednn_requested() {
  static const bool requested = [] {
    const char* choice = std::getenv("PERCEIVER_MATMUL");
    return !(choice && std::strcmp(choice, "aten") == 0);
  }();
  return requested;
}

#if PERCEIVER_WITH_ONEDNN

// Plain float32 CPU tensors outside autocast and tracing (an exported graph must hold ATen ops).
bool onednn_eligible(std::initializer_list<const torch::Tensor*> tensors) {
  if (!onednn_requested() || at::autocast::is_cpu_enabled() || torch::jit::tracer::isTracing()) return false;
  for (const auto* t : tensors) {
    if (!t->defined()) continue;
    if (!t->device().is_cpu() || t->scalar_type() != torch::kFloat32 || t->layout() != torch::kStrided ||
        t->numel() == 0 || t->is_neg() || t->is_conj())
      return false;
  }
  return true;
}

dnnl::memory::desc describe(const torch::Tensor& t) {
  return dnnl::memory::desc(dnnl::memory::dims(t.sizes().begin(), t.sizes().end()), dnnl::memory::data_type::f32,
                            dnnl::memory::dims(t.strides().begin(), t.strides().end()));
}

const dnnl::engine& cpu_engine() {
  static const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// a (..., M, K) x b (..., K, N) [+ bias (N), dense] -> new contiguous (..., M, N); same leading dims. False
// where oneDNN has no implementation for these strides.
bool try_onednn(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& bias, torch::Tensor& out) {
  auto sizes = a.sizes().vec();
  sizes.back() = b.size(-1);
  out = torch::empty(sizes, a.options());
  try {
    const auto& engine = cpu_engine();
    const auto a_md = describe(a), b_md = describe(b), out_md = describe(out);
    dnnl::memory::desc bias_md;
    if (bias.defined()) {
      dnnl::memory::dims dims(out.dim(), 1), strides(out.dim(), bias.size(0));
      dims.back() = bias.size(0);
      strides.back() = 1;
      bias_md = dnnl::memory::desc(dims, dnnl::memory::data_type::f32, strides);
    }
    const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, b_md, bias_md, out_md), engine);
    std::unordered_map<int, dnnl::memory> args{{DNNL_ARG_SRC, dnnl::memory(a_md, engine, a.data_ptr())},
                                               {DNNL_ARG_WEIGHTS, dnnl::memory(b_md, engine, b.data_ptr())},
                                               {DNNL_ARG_DST, dnnl::memory(out_md, engine, out.data_ptr())}};
    if (bias.defined()) args.emplace(DNNL_ARG_BIAS, dnnl::memory(bias_md, engine, bias.data_ptr()));
    dnnl::stream stream(engine);
    dnnl::matmul(pd).execute(stream, args);
    stream.wait();
    return true;
  } catch (const dnnl::error&) {
    return false;
  }
}

// The product without autograd; odd strides (broadcast, both inner dims strided) are made dense first.
torch::Tensor multiply(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& bias) {
  RECORD_FUNCTION("perceiver::onednn_matmul", c10::ArrayRef<c10::IValue>{});  // named in profiles
  torch::Tensor out;
  const auto bias_dense = bias.defined() ? bias.contiguous() : bias;  // try_onednn reads it densely
  if (try_onednn(a, b, bias_dense, out)) return out;
  if (try_onednn(a.contiguous(), b.contiguous(), bias_dense, out)) return out;
  out = at::matmul(a, b);
  return bias.defined() ? out + bias : out;
}

bool needs_grad(std::initializer_list<const torch::Tensor*> tensors) {
  if (!torch::GradMode::is_enabled()) return false;
  for (const auto* t : tensors)
    if (t->defined() && t->requires_grad()) return true;
  return false;
}

// x (R, K), weight (N, K), bias (N).
struct LinearFunction : torch::autograd::Function<LinearFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& weight,
                               const torch::Tensor& bias) {
    ctx->save_for_backward({x, weight});
    return multiply(x, weight.t(), bias);
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto& weight = saved[1];
    const auto& g = grads[0];
    torch::Tensor grad_x, grad_weight, grad_bias;
    if (ctx->needs_input_grad(0)) grad_x = ops::matmul(g, weight);
    if (ctx->needs_input_grad(1)) grad_weight = ops::matmul(g.t(), x);
    if (ctx->needs_input_grad(2)) grad_bias = g.sum(0);
    return {grad_x, grad_weight, grad_bias};
  }
};

struct MatmulFunction : torch::autograd::Function<MatmulFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& a, const torch::Tensor& b) {
    ctx->save_for_backward({a, b});
    return multiply(a, b, {});
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& g = grads[0];
    torch::Tensor grad_a, grad_b;
    if (ctx->needs_input_grad(0)) grad_a = ops::matmul(g, saved[1].transpose(-1, -2));
    if (ctx->needs_input_grad(1)) grad_b = ops::matmul(saved[0].transpose(-1, -2), g);
    return {grad_a, grad_b};
  }
};

#endif  // PERCEIVER_WITH_ONEDNN

}  // namespace

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
#if PERCEIVER_WITH_ONEDNN
  if (x.dim() >= 1 && weight.dim() == 2 && (!bias.defined() || bias.dim() == 1) &&
      onednn_eligible({&x, &weight, &bias})) {
    const auto rows = x.reshape({-1, x.size(-1)});
    torch::Tensor out;
    if (!needs_grad({&x, &weight, &bias}))
      out = multiply(rows, weight.t(), bias);
    else  // a custom Function takes no undefined input: without bias it is a plain product
      out = bias.defined() ? LinearFunction::apply(rows, weight, bias) : MatmulFunction::apply(rows, weight.t());
    auto sizes = x.sizes().vec();
    sizes.back() = weight.size(0);
    return out.view(sizes);
  }
#endif
  return torch::nn::functional::linear(x, weight, bias);
}

torch::Tensor matmul(const torch::Tensor& a, const torch::Tensor& b) {
#if PERCEIVER_WITH_ONEDNN
  if (a.dim() >= 2 && a.dim() == b.dim() && a.sizes().slice(0, a.dim() - 2) == b.sizes().slice(0, b.dim() - 2) &&
      onednn_eligible({&a, &b})) {
    return needs_grad({&a, &b}) ? MatmulFunction::apply(a, b) : multiply(a, b, {});
  }
#endif
  return torch::matmul(a, b);
}

std::string matmul_backend() {
#if PERCEIVER_WITH_ONEDNN
  if (onednn_requested()) {
    const auto* v = dnnl::version();
    return "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
  }
  return "ATen (PERCEIVER_MATMUL=aten)";
#else
  return "ATen (built without oneDNN)";
#endif
}

}  // namespace perceiver::ops
