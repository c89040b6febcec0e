#include "perceiver/ops/softmax.h"

#include <ATen/record_function.h>

#include "perceiver/ops/onednn.h"

namespace perceiver::ops {
namespace {

#if PERCEIVER_WITH_ONEDNN

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

bool onednn_eligible(const torch::Tensor& x) {
  return onednn::active() && onednn::readable(x) && x.scalar_type() == torch::kFloat32 && x.is_contiguous() &&
         x.dim() >= 1 && x.dim() <= DNNL_MAX_NDIMS;
}

// softmax(x) over the last dim, as a new dense tensor.
torch::Tensor onednn_softmax(const torch::Tensor& x) {
  RECORD_FUNCTION("perceiver::onednn_softmax", c10::ArrayRef<c10::IValue>{});  // named in profiles
  const auto& engine = onednn::cpu_engine();
  const auto md = onednn::describe(x);
  auto out = torch::empty_like(x);
  const dnnl::softmax_forward::primitive_desc pd(
      dnnl::softmax_forward::desc(dnnl::prop_kind::forward_inference, md, static_cast<int>(x.dim() - 1)),
      engine);
  dnnl::stream stream(engine);
  dnnl::softmax_forward(pd).execute(stream, {{DNNL_ARG_SRC, dnnl::memory(md, engine, x.data_ptr())},
                                             {DNNL_ARG_DST, dnnl::memory(onednn::describe(out), engine, out.data_ptr())}});
  stream.wait();
  return out;
}

struct SoftmaxFunction : torch::autograd::Function<SoftmaxFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x) {
    auto y = onednn_softmax(x);
    ctx->save_for_backward({y});
    return y;
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto y = ctx->get_saved_variables()[0];
    return {torch::_softmax_backward_data(grads[0], y, -1, y.scalar_type())};
  }
};

#endif  // PERCEIVER_WITH_ONEDNN

}  // namespace

torch::Tensor softmax(const torch::Tensor& x) {
#if PERCEIVER_WITH_ONEDNN
  if (onednn_eligible(x)) {
    if (torch::GradMode::is_enabled() && x.requires_grad()) return SoftmaxFunction::apply(x);
    return onednn_softmax(x);
  }
#endif
  return torch::softmax(x, -1);
}

}  // namespace perceiver::ops
