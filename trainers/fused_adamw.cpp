#include "trainers/fused_adamw.h"

#include <ATen/Parallel.h>
#include <ATen/record_function.h>

#include <cmath>

#include "perceiver/ops/torch_compat.h"
#include "trainers/adamw_kernel.h"
#include "trainers/optim.h"

namespace perceiver::trainers {
namespace {

bool plain_cpu_float(const torch::Tensor& t) {
  return t.device().is_cpu() && t.scalar_type() == torch::kFloat32 && t.layout() == torch::kStrided &&
         t.is_contiguous();
}

}  // namespace

bool FusedAdamW::fusable() const {
  for (const auto& group : param_groups_) {
    if (static_cast<const torch::optim::AdamWOptions&>(group.options()).amsgrad()) return false;
    for (const auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      if (!plain_cpu_float(p) || !plain_cpu_float(p.grad())) return false;
      const auto it = state_.find(compat::optimizer_state_key(p));
      if (it == state_.end()) continue;
      const auto& s = static_cast<const torch::optim::AdamWParamState&>(*it->second);
      if (!plain_cpu_float(s.exp_avg()) || !plain_cpu_float(s.exp_avg_sq())) return false;
    }
  }
  return true;
}

torch::Tensor FusedAdamW::step(LossClosure closure) {
  // A closure makes the gradients, so whether they can be fused is known only after it ran: torch's
  // step takes that case (nothing here passes one).
  if (closure || !fusable()) return torch::optim::AdamW::step(std::move(closure));
  RECORD_FUNCTION("perceiver::fused_adamw", c10::ArrayRef<c10::IValue>{});  // named in profiles
  torch::NoGradGuard no_grad;
  for (auto& group : param_groups_) {
    const auto& o = static_cast<const torch::optim::AdamWOptions&>(group.options());
    const auto [beta1, beta2] = o.betas();
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      auto& s = moment_state<torch::optim::AdamWParamState>(state_, p);  // as torch's AdamW makes it
      s.step(s.step() + 1);
      const auto step = static_cast<double>(s.step());
      AdamWScalars c{};
      c.decay = static_cast<float>(1 - o.lr() * o.weight_decay());
      c.beta1 = static_cast<float>(beta1);
      c.beta2 = static_cast<float>(beta2);
      c.one_minus_beta1 = static_cast<float>(1 - beta1);
      c.one_minus_beta2 = static_cast<float>(1 - beta2);
      c.bias_correction2_sqrt = static_cast<float>(std::sqrt(1 - std::pow(beta2, step)));
      c.eps = static_cast<float>(o.eps());
      c.neg_step_size = static_cast<float>(-o.lr() / (1 - std::pow(beta1, step)));

      float* param = p.data_ptr<float>();
      const float* grad = p.grad().data_ptr<float>();
      float* exp_avg = s.exp_avg().data_ptr<float>();
      float* exp_avg_sq = s.exp_avg_sq().data_ptr<float>();
      at::parallel_for(0, p.numel(), 1 << 14, [&](int64_t begin, int64_t end) {
        adamw_update(param + begin, grad + begin, exp_avg + begin, exp_avg_sq + begin, end - begin, c);
      });
      // Written through raw pointers: bump the versions as ATen's in-place ops would. Autograd's
      // saved-tensor checks need it (a tensor saved for a backward and then changed is an error, not a
      // silently wrong gradient), and so do the attention's kept position terms (models/attention.cpp).
      for (const auto* t : {&p, &s.exp_avg(), &s.exp_avg_sq()}) t->unsafeGetTensorImpl()->bump_version();
    }
  }
  return {};
}

}  // namespace perceiver::trainers
