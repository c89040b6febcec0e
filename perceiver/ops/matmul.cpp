#include "perceiver/ops/matmul.h"

#include <ATen/record_function.h>

#include "perceiver/ops/onednn.h"
#include "perceiver/ops/torch_compat.h"

namespace perceiver::ops {

torch::Tensor activate(const torch::Tensor& x, Activation activation) {
  namespace F = torch::nn::functional;
  switch (activation) {
    case Activation::gelu: return F::gelu(x);
    case Activation::gelu_tanh: return F::gelu(x, F::GELUFuncOptions().approximate("tanh"));
    case Activation::relu: return torch::relu(x);
    case Activation::none: break;
  }
  return x;
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

#if PERCEIVER_WITH_ONEDNN

// Whether oneDNN has bf16 matmul kernels for this CPU (avx512_core and up in oneDNN 2.x; none on an
// AVX2-only CPU, reference kernels included), asked once with a small product's descriptor.
bool onednn_bf16_supported() {
  static const bool supported = [] {
    try {
      const dnnl::memory::desc md({2, 2}, dnnl::memory::data_type::bf16, dnnl::memory::format_tag::ab);
      const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(md, md, md), onednn::cpu_engine());
      return true;
    } catch (const dnnl::error&) {
      return false;
    }
  }();
  return supported;
}

// The dtype oneDNN multiplies in, or none where ATen does the work: float32 for float32 CPU tensors,
// bfloat16 under CPU bf16 autocast (float32 or bfloat16 operands, cast as autocast casts them) where
// oneDNN has bf16 kernels for the CPU. Never while tracing: an exported graph must hold ATen ops.
c10::optional<torch::ScalarType> onednn_compute_type(std::initializer_list<const torch::Tensor*> tensors) {
  if (!onednn::active()) return c10::nullopt;
  const bool autocast = compat::autocast_enabled(c10::DeviceType::CPU);
  if (autocast && (compat::autocast_dtype(c10::DeviceType::CPU) != torch::kBFloat16 || !onednn_bf16_supported()))
    return c10::nullopt;
  for (const auto* t : tensors) {
    if (!t->defined()) continue;
    const auto dtype = t->scalar_type();
    if (!onednn::readable(*t) || !(dtype == torch::kFloat32 || (autocast && dtype == torch::kBFloat16)))
      return c10::nullopt;
  }
  return autocast ? torch::kBFloat16 : torch::kFloat32;
}

// A backward that makes a graph (create_graph) differentiates the saved operands; a bf16 cast made
// inside the forward has no history back to its float32 input, so the second derivative through it
// would be silently lost.
void check_second_derivatives(const torch::Tensor& saved, torch::ScalarType input_dtype) {
  TORCH_CHECK(!torch::GradMode::is_enabled() || saved.scalar_type() == input_dtype,
              "second derivatives (create_graph) through a product under bf16 autocast are not supported: its "
              "operands are cast to bf16 inside it; take them in float32, or set PERCEIVER_MATMUL=aten");
}

// What oneDNN does to a product before writing it: scale * (a b) [+ bias], then the activation, then
// + residual (a tensor of the result's shape).
struct Epilogue {
  double scale = 1.0;
  Activation activation = Activation::none;
  torch::Tensor residual;
};

dnnl::algorithm eltwise_algorithm(Activation activation) {
  switch (activation) {
    case Activation::gelu: return dnnl::algorithm::eltwise_gelu_erf;
    case Activation::gelu_tanh: return dnnl::algorithm::eltwise_gelu_tanh;
    case Activation::relu: return dnnl::algorithm::eltwise_relu;
    case Activation::none: break;
  }
  return dnnl::algorithm::undef;
}

// a (..., M, K) x b (..., K, N) [+ bias (N), dense], a and b of one dtype -> out, new and contiguous,
// of `out_dtype`: (..., M, N), or `out_sizes` where given (the same elements; a linear's rows given
// back their leading dims, so that the result is no view). False where oneDNN has no implementation
// for these strides.
bool try_onednn(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& bias, c10::IntArrayRef out_sizes,
                const Epilogue& epilogue, torch::ScalarType out_dtype, torch::Tensor& out) {
  auto sizes = a.sizes().vec();
  sizes.back() = b.size(-1);
  out = torch::empty(out_sizes.empty() ? c10::IntArrayRef(sizes) : out_sizes, a.options().dtype(out_dtype));
  try {
    const auto& engine = onednn::cpu_engine();
    const auto dst = out.view(sizes);
    const auto a_md = onednn::describe(a), b_md = onednn::describe(b), out_md = onednn::describe(dst);
    dnnl::memory::desc bias_md;
    if (bias.defined()) {
      dnnl::memory::dims dims(dst.dim(), 1), strides(dst.dim(), bias.size(0));
      dims.back() = bias.size(0);
      strides.back() = 1;
      bias_md = dnnl::memory::desc(dims, onednn::data_type(bias.scalar_type()), strides);
    }
    std::unordered_map<int, dnnl::memory> args{{DNNL_ARG_SRC, dnnl::memory(a_md, engine, a.data_ptr())},
                                               {DNNL_ARG_WEIGHTS, dnnl::memory(b_md, engine, b.data_ptr())},
                                               {DNNL_ARG_DST, dnnl::memory(out_md, engine, out.data_ptr())}};
    if (bias.defined()) args.emplace(DNNL_ARG_BIAS, dnnl::memory(bias_md, engine, bias.data_ptr()));

    dnnl::primitive_attr attr;
    if (epilogue.scale != 1.0) attr.set_output_scales(0, {static_cast<float>(epilogue.scale)});
    dnnl::post_ops post_ops;
    if (epilogue.activation != Activation::none)
      post_ops.append_eltwise(1.0F, eltwise_algorithm(epilogue.activation), 0.0F, 0.0F);
    torch::Tensor residual;  // alive until the product has run: a reshape may have copied it
    if (epilogue.residual.defined()) {
      // Dense: oneDNN's fast kernels read no other layout (an expanded one ran its reference kernel).
      residual = epilogue.residual.reshape(sizes).contiguous();
      const auto residual_md = onednn::describe(residual);
      args.emplace(DNNL_ARG_ATTR_MULTIPLE_POST_OP(post_ops.len()) | DNNL_ARG_SRC_1,
                   dnnl::memory(residual_md, engine, residual.data_ptr()));
      post_ops.append_binary(dnnl::algorithm::binary_add, residual_md);
    }
    attr.set_post_ops(post_ops);

    const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, b_md, bias_md, out_md), attr, engine);
    dnnl::stream stream(engine);
    dnnl::matmul(pd).execute(stream, args);
    stream.wait();
    return true;
  } catch (const dnnl::error&) {
    return false;
  }
}

// The product and its epilogue without autograd, in `out_dtype` (a's where not given; a residual's
// dtype must be the result's). Odd strides (broadcast, both inner dims strided) are made dense first,
// and ATen does what oneDNN declines.
torch::Tensor multiply(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& bias,
                       c10::IntArrayRef out_sizes = {}, const Epilogue& epilogue = {},
                       c10::optional<torch::ScalarType> out_dtype = c10::nullopt) {
  RECORD_FUNCTION("perceiver::onednn_matmul", c10::ArrayRef<c10::IValue>{});  // named in profiles
  TORCH_INTERNAL_ASSERT(epilogue.scale == 1.0 || !bias.defined(), "a scaled product takes no bias");
  const auto dtype = out_dtype.value_or(a.scalar_type());
  torch::Tensor out;
  const auto bias_dense = bias.defined() ? bias.contiguous() : bias;  // try_onednn reads it densely
  if (try_onednn(a, b, bias_dense, out_sizes, epilogue, dtype, out)) return out;
  if (try_onednn(a.contiguous(), b.contiguous(), bias_dense, out_sizes, epilogue, dtype, out)) return out;
  out = at::matmul(a, b).to(dtype);
  if (epilogue.scale != 1.0) out = out * epilogue.scale;
  if (bias.defined()) out = out + bias;
  if (!out_sizes.empty()) out = out.reshape(out_sizes);
  out = activate(out, epilogue.activation);
  return (epilogue.residual.defined() ? out + epilogue.residual : out).to(dtype);
}

// x (..., K) -> (..., N): the shape a linear's result has.
std::vector<int64_t> linear_sizes(const torch::Tensor& x, const torch::Tensor& weight) {
  auto sizes = x.sizes().vec();
  sizes.back() = weight.size(0);
  return sizes;
}

torch::Tensor as_rows(const torch::Tensor& t) { return t.reshape({-1, t.size(-1)}); }

c10::optional<torch::Tensor> optional(const torch::Tensor& t) {
  return t.defined() ? c10::optional<torch::Tensor>(t) : c10::nullopt;
}

bool needs_grad(std::initializer_list<const torch::Tensor*> tensors) {
  if (!torch::GradMode::is_enabled()) return false;
  for (const auto* t : tensors)
    if (t->defined() && t->requires_grad()) return true;
  return false;
}

// The dtype of a product in `compute` with a residual added: float32 from a bf16 product and a
// float32 residual, as ATen's add promotes autocast's bf16 result.
torch::ScalarType result_type(torch::ScalarType compute, const torch::Tensor& residual) {
  return residual.defined() ? c10::promoteTypes(compute, residual.scalar_type()) : compute;
}

c10::IValue dtype_value(torch::ScalarType dtype) { return static_cast<int64_t>(dtype); }
torch::ScalarType dtype_of(const c10::IValue& value) { return static_cast<torch::ScalarType>(value.toInt()); }

torch::Tensor product_like(bool transposed, const torch::Tensor& x, const torch::Tensor& y, double scale,
                           torch::ScalarType out_dtype);

// x (..., K), weight (N, K), bias (N) or none, residual (..., N) or none -> x W^T + b + residual, the
// product in `compute` (x and weight cast to it and saved so, as autocast saves its casts). The result
// is a tensor of its own, not a view of the rows' product: an in-place op on a view would make
// autograd copy it whole in backward. Gradients come back in each input's own dtype.
struct LinearFunction : torch::autograd::Function<LinearFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& weight,
                               const c10::optional<torch::Tensor>& bias, const c10::optional<torch::Tensor>& residual,
                               torch::ScalarType compute) {
    const auto xc = x.to(compute), wc = weight.to(compute);
    ctx->save_for_backward({xc, wc});
    ctx->saved_data["x_dtype"] = dtype_value(x.scalar_type());
    ctx->saved_data["weight_dtype"] = dtype_value(weight.scalar_type());
    ctx->saved_data["bias"] = bias.has_value();
    if (bias) ctx->saved_data["bias_dtype"] = dtype_value(bias->scalar_type());
    ctx->saved_data["residual"] = residual.has_value();
    if (residual) ctx->saved_data["residual_dtype"] = dtype_value(residual->scalar_type());
    Epilogue epilogue;
    epilogue.residual = residual.value_or(torch::Tensor());
    return multiply(as_rows(xc), wc.t(), bias.value_or(torch::Tensor()), linear_sizes(x, weight), epilogue,
                    result_type(compute, epilogue.residual));
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto& weight = saved[1];
    check_second_derivatives(x, dtype_of(ctx->saved_data["x_dtype"]));
    check_second_derivatives(weight, dtype_of(ctx->saved_data["weight_dtype"]));
    const auto g = as_rows(grads[0]);
    const auto gc = g.to(x.scalar_type());
    // Absent inputs are no inputs of the graph: the indices asked about count the present ones.
    const bool has_bias = ctx->saved_data["bias"].toBool(), has_residual = ctx->saved_data["residual"].toBool();
    torch::Tensor grad_x, grad_weight, grad_bias, grad_residual;
    if (ctx->needs_input_grad(0))
      grad_x = product_like(false, gc, weight, 1.0, dtype_of(ctx->saved_data["x_dtype"])).view(x.sizes());
    if (ctx->needs_input_grad(1))
      grad_weight = product_like(false, gc.t(), as_rows(x), 1.0, dtype_of(ctx->saved_data["weight_dtype"]));
    if (has_bias && ctx->needs_input_grad(2))
      grad_bias = g.sum(0, false, dtype_of(ctx->saved_data["bias_dtype"]));
    if (has_residual && ctx->needs_input_grad(has_bias ? 3 : 2))
      grad_residual = grads[0].to(dtype_of(ctx->saved_data["residual_dtype"]));
    return {grad_x, grad_weight, grad_bias, grad_residual, torch::Tensor()};
  }
};

// Whether `t` is a transposed view (k.transpose(-1, -2) in q k^T).
bool is_transposed(const torch::Tensor& t) { return t.stride(-2) == 1 && t.stride(-1) != 1; }

// scale * x y in `out_dtype`, for a backward. Where `transposed` (the input it is the gradient of was
// a transposed view), the product is computed transposed (y^T x^T) and handed back transposed, so
// that the gradient is dense; a transposed gradient made every later reduction and reshape over it
// slow. Float32 goes through ops::matmul, whose own backward gives second derivatives; a bf16
// product does where a graph is being made (create_graph), through ATen.
torch::Tensor product_like(bool transposed, const torch::Tensor& x, const torch::Tensor& y, double scale,
                           torch::ScalarType out_dtype) {
  const auto product = [&](const torch::Tensor& a, const torch::Tensor& b) {
    if (a.scalar_type() == torch::kFloat32 && out_dtype == torch::kFloat32) return ops::matmul(a, b, scale);
    if (needs_grad({&a, &b})) return (at::matmul(a, b) * scale).to(out_dtype);
    Epilogue epilogue;
    epilogue.scale = scale;
    return multiply(a, b, {}, {}, epilogue, out_dtype);
  };
  return transposed ? product(y.transpose(-1, -2), x.transpose(-1, -2)).transpose(-1, -2) : product(x, y);
}

// scale * a b, the product in `compute` (a and b cast to it, the result in it, as under autocast).
struct MatmulFunction : torch::autograd::Function<MatmulFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& a, const torch::Tensor& b, double scale,
                               torch::ScalarType compute) {
    const auto ac = a.to(compute), bc = b.to(compute);
    ctx->save_for_backward({ac, bc});
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["a_dtype"] = dtype_value(a.scalar_type());
    ctx->saved_data["b_dtype"] = dtype_value(b.scalar_type());
    ctx->saved_data["a_transposed"] = is_transposed(a);
    ctx->saved_data["b_transposed"] = is_transposed(b);
    Epilogue epilogue;
    epilogue.scale = scale;
    return multiply(ac, bc, {}, {}, epilogue, compute);
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& a = saved[0];
    const auto& b = saved[1];
    check_second_derivatives(a, dtype_of(ctx->saved_data["a_dtype"]));
    check_second_derivatives(b, dtype_of(ctx->saved_data["b_dtype"]));
    const auto g = grads[0].to(a.scalar_type());
    const double scale = ctx->saved_data["scale"].toDouble();
    torch::Tensor grad_a, grad_b;
    if (ctx->needs_input_grad(0))
      grad_a = product_like(ctx->saved_data["a_transposed"].toBool(), g, b.transpose(-1, -2), scale,
                            dtype_of(ctx->saved_data["a_dtype"]));
    if (ctx->needs_input_grad(1))
      grad_b = product_like(ctx->saved_data["b_transposed"].toBool(), a.transpose(-1, -2), g, scale,
                            dtype_of(ctx->saved_data["b_dtype"]));
    return {grad_a, grad_b, torch::Tensor(), torch::Tensor()};
  }
};

// The fused form of a LinearEpilogue without gradients.
Epilogue fused(const LinearEpilogue& epilogue) {
  Epilogue f;
  f.activation = epilogue.activation;
  f.residual = epilogue.residual;
  return f;
}

#endif  // PERCEIVER_WITH_ONEDNN

// y then the epilogue, in ATen's ops (with gradients where the product cannot fuse them).
torch::Tensor apply_epilogue(const torch::Tensor& y, const LinearEpilogue& epilogue) {
  const auto activated = activate(y, epilogue.activation);
  return epilogue.residual.defined() ? activated + epilogue.residual : activated;
}

}  // namespace

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                     const LinearEpilogue& epilogue) {
  const auto& residual = epilogue.residual;
#if PERCEIVER_WITH_ONEDNN
  const auto compute = onednn_compute_type({&x, &weight, &bias, &residual});
  if (compute && x.dim() >= 1 && weight.dim() == 2 && (!bias.defined() || bias.dim() == 1) &&
      (!residual.defined() || residual.sizes() == c10::IntArrayRef(linear_sizes(x, weight)))) {
    if (!needs_grad({&x, &weight, &bias, &residual})) {
      const auto out_dtype = result_type(*compute, residual);
      return multiply(as_rows(x.to(*compute)), weight.to(*compute).t(), bias, linear_sizes(x, weight),
                      fused(epilogue), out_dtype);
    }
    if (epilogue.activation == Activation::none)
      return LinearFunction::apply(x, weight, optional(bias), optional(residual), *compute);
    // The activation's backward needs its input: the product is kept, the activation is ATen's.
    return apply_epilogue(LinearFunction::apply(x, weight, optional(bias), c10::nullopt, *compute), epilogue);
  }
#endif
  return apply_epilogue(torch::nn::functional::linear(x, weight, bias), epilogue);
}

torch::Tensor matmul(const torch::Tensor& a, const torch::Tensor& b, double scale) {
#if PERCEIVER_WITH_ONEDNN
  const auto compute = onednn_compute_type({&a, &b});
  if (compute && a.dim() >= 2 && a.dim() == b.dim() &&
      a.sizes().slice(0, a.dim() - 2) == b.sizes().slice(0, b.dim() - 2)) {
    if (needs_grad({&a, &b})) return MatmulFunction::apply(a, b, scale, *compute);
    Epilogue epilogue;
    epilogue.scale = scale;
    return multiply(a.to(*compute), b.to(*compute), {}, {}, epilogue, *compute);
  }
#endif
  const auto product = torch::matmul(a, b);
  return scale == 1.0 ? product : product * scale;
}

torch::Tensor matmul_add(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& bias,
                         const LinearEpilogue& epilogue) {
  TORCH_CHECK(a.dim() >= 2 && b.dim() >= 2 && a.size(-1) == b.size(-2), "matmul_add: cannot multiply ", a.sizes(),
              " by ", b.sizes());
  TORCH_CHECK(!bias.defined() || (bias.dim() == 1 && bias.size(0) == b.size(-1)), "matmul_add: bias ", bias.sizes(),
              " does not fit a product with ", b.size(-1), " columns");
#if PERCEIVER_WITH_ONEDNN
  const auto& residual = epilogue.residual;
  const auto compute = onednn_compute_type({&a, &b, &bias, &residual});
  auto sizes = a.sizes().vec();
  sizes.back() = b.size(-1);
  if (compute && a.dim() == b.dim() && a.sizes().slice(0, a.dim() - 2) == b.sizes().slice(0, b.dim() - 2) &&
      (!residual.defined() || residual.sizes() == c10::IntArrayRef(sizes)) &&
      !needs_grad({&a, &b, &bias, &residual})) {
    const auto out_dtype = result_type(*compute, residual);
    return multiply(a.to(*compute), b.to(*compute), bias, {}, fused(epilogue), out_dtype);
  }
#endif
  auto y = ops::matmul(a, b, 1.0);
  // The bias in the product's dtype, as a linear under autocast adds it.
  if (bias.defined()) y = y + bias.to(y.scalar_type());
  return apply_epilogue(y, epilogue);
}

std::string matmul_backend(torch::ScalarType dtype) {
#if PERCEIVER_WITH_ONEDNN
  if (!onednn::requested()) return "ATen (PERCEIVER_MATMUL=aten)";
  const auto* v = dnnl::version();
  const auto version = std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
  if (dtype == torch::kBFloat16 && !onednn_bf16_supported())
    return "ATen (oneDNN " + version + " has no bf16 kernels for this CPU)";
  return "oneDNN " + version;
#else
  return "ATen (built without oneDNN)";
#endif
}

}  // namespace perceiver::ops
