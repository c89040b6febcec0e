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

// a (..., M, K) x b (..., K, N) [+ bias (N), dense] -> out, new and contiguous: (..., M, N), or
// `out_sizes` where given (the same elements; a linear's rows given back their leading dims, so that
// the result is no view). False where oneDNN has no implementation for these strides.
bool try_onednn(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& bias, c10::IntArrayRef out_sizes,
                torch::Tensor& out) {
  auto sizes = a.sizes().vec();
  sizes.back() = b.size(-1);
  out = torch::empty(out_sizes.empty() ? c10::IntArrayRef(sizes) : out_sizes, a.options());
  try {
    const auto& engine = cpu_engine();
    const auto dst = out.view(sizes);
    const auto a_md = describe(a), b_md = describe(b), out_md = describe(dst);
    dnnl::memory::desc bias_md;
    if (bias.defined()) {
      dnnl::memory::dims dims(dst.dim(), 1), strides(dst.dim(), bias.size(0));
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
torch::Tensor multiply(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& bias,
                       c10::IntArrayRef out_sizes = {}) {
  RECORD_FUNCTION("perceiver::onednn_matmul", c10::ArrayRef<c10::IValue>{});  // named in profiles
  torch::Tensor out;
  const auto bias_dense = bias.defined() ? bias.contiguous() : bias;  // try_onednn reads it densely
  if (try_onednn(a, b, bias_dense, out_sizes, out)) return out;
  if (try_onednn(a.contiguous(), b.contiguous(), bias_dense, out_sizes, out)) return out;
  out = at::matmul(a, b);
  if (bias.defined()) out = out + bias;
  return out_sizes.empty() ? out : out.reshape(out_sizes);
}

// x (..., K) -> (..., N): the shape a linear's result has.
std::vector<int64_t> linear_sizes(const torch::Tensor& x, const torch::Tensor& weight) {
  auto sizes = x.sizes().vec();
  sizes.back() = weight.size(0);
  return sizes;
}

torch::Tensor as_rows(const torch::Tensor& t) { return t.reshape({-1, t.size(-1)}); }

bool needs_grad(std::initializer_list<const torch::Tensor*> tensors) {
  if (!torch::GradMode::is_enabled()) return false;
  for (const auto* t : tensors)
    if (t->defined() && t->requires_grad()) return true;
  return false;
}

// x (..., K), weight (N, K), bias (N) or none -> (..., N). The result is a tensor of its own, not a
// view of the rows' product: an in-place op on a view would make autograd copy it whole in backward.
struct LinearFunction : torch::autograd::Function<LinearFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& weight,
                               const c10::optional<torch::Tensor>& bias) {
    ctx->save_for_backward({x, weight});
    ctx->saved_data["bias"] = bias.has_value();
    return multiply(as_rows(x), weight.t(), bias.value_or(torch::Tensor()), linear_sizes(x, weight));
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto& weight = saved[1];
    const auto g = as_rows(grads[0]);
    torch::Tensor grad_x, grad_weight, grad_bias;
    if (ctx->needs_input_grad(0)) grad_x = ops::matmul(g, weight).view(x.sizes());
    if (ctx->needs_input_grad(1)) grad_weight = ops::matmul(g.t(), as_rows(x));
    // An absent bias is no input of the graph: there is no index 2 to ask about.
    if (ctx->saved_data["bias"].toBool() && ctx->needs_input_grad(2)) grad_bias = g.sum(0);
    return {grad_x, grad_weight, grad_bias};
  }
};

// x y, laid out like `like`: where `like` is a transposed view (k.transpose(-1, -2) in q k^T), the
// product is computed transposed (y^T x^T) and handed back transposed, so that the gradient reaching
// k is dense; a transposed gradient made every later reduction and reshape over it slow.
torch::Tensor product_like(const torch::Tensor& like, const torch::Tensor& x, const torch::Tensor& y) {
  const bool transposed = like.stride(-2) == 1 && like.stride(-1) != 1;
  return transposed ? ops::matmul(y.transpose(-1, -2), x.transpose(-1, -2)).transpose(-1, -2) : ops::matmul(x, y);
}

struct MatmulFunction : torch::autograd::Function<MatmulFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& a, const torch::Tensor& b) {
    ctx->save_for_backward({a, b});
    return multiply(a, b, {});
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& g = grads[0];
    torch::Tensor grad_a, grad_b;
    const auto& a = saved[0];
    const auto& b = saved[1];
    if (ctx->needs_input_grad(0)) grad_a = product_like(a, g, b.transpose(-1, -2));
    if (ctx->needs_input_grad(1)) grad_b = product_like(b, a.transpose(-1, -2), g);
    return {grad_a, grad_b};
  }
};

#endif  // PERCEIVER_WITH_ONEDNN

}  // namespace

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
#if PERCEIVER_WITH_ONEDNN
  if (x.dim() >= 1 && weight.dim() == 2 && (!bias.defined() || bias.dim() == 1) &&
      onednn_eligible({&x, &weight, &bias})) {
    if (!needs_grad({&x, &weight, &bias})) return multiply(as_rows(x), weight.t(), bias, linear_sizes(x, weight));
    return LinearFunction::apply(x, weight, bias.defined() ? c10::optional<torch::Tensor>(bias) : c10::nullopt);
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
