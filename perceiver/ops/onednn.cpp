#include "perceiver/ops/onednn.h"

#if PERCEIVER_WITH_ONEDNN

#include <torch/csrc/jit/frontend/tracer.h>

#include <cstdlib>
#include <cstring>

#include "perceiver/ops/reference_mode.h"

namespace perceiver::ops::onednn {

bool requested() {
  static const bool requested = [] {
    const char* choice = std::getenv("PERCEIVER_MATMUL");
    return !(choice && std::strcmp(choice, "aten") == 0);
  }();
  return requested;
}

// ATen's ops for a trace (TorchScript records them) and for the reference (ReferenceMode).
bool active() { return requested() && !torch::jit::tracer::isTracing() && !ReferenceMode::is_enabled(); }

bool readable(const torch::Tensor& t) {
  return t.device().is_cpu() && t.layout() == torch::kStrided && t.numel() > 0 && !t.is_neg() && !t.is_conj();
}

dnnl::memory::data_type data_type(torch::ScalarType dtype) {
  return dtype == torch::kBFloat16 ? dnnl::memory::data_type::bf16 : dnnl::memory::data_type::f32;
}

dnnl::memory::desc describe(const torch::Tensor& t) {
  return dnnl::memory::desc(dnnl::memory::dims(t.sizes().begin(), t.sizes().end()), data_type(t.scalar_type()),
                            dnnl::memory::dims(t.strides().begin(), t.strides().end()));
}

const dnnl::engine& cpu_engine() {
  static const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

}  // namespace perceiver::ops::onednn

#endif  // PERCEIVER_WITH_ONEDNN
