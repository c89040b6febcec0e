#include "perceiver/models/problem_type.h"

#include <torch/torch.h>

#include <stdexcept>
#include <utility>

namespace perceiver {
namespace {

const std::vector<std::pair<std::string, ProblemType::Kind>>& registry() {
  static const std::vector<std::pair<std::string, ProblemType::Kind>> kinds = {
      {"single_label_classification", ProblemType::Kind::single_label},
      {"multi_label_classification", ProblemType::Kind::multi_label},
      {"regression", ProblemType::Kind::regression},
  };
  return kinds;
}

}  // namespace

const std::vector<std::string>& ProblemType::names() {
  static const std::vector<std::string> list = [] {
    std::vector<std::string> out;
    for (const auto& [name, kind] : registry()) out.push_back(name);
    return out;
  }();
  return list;
}

bool ProblemType::known(const std::string& name) {
  for (const auto& [n, kind] : registry())
    if (n == name) return true;
  return false;
}

std::string ProblemType::expected(const std::string& found) {
  std::string list;
  for (const auto& n : names()) list += (list.empty() ? "" : ", ") + n;
  return "must be one of " + list + "; found '" + found + "'";
}

ProblemType::ProblemType(const std::string& name, const std::string& where) : name_(name) {
  for (const auto& [n, kind] : registry())
    if (n == name) {
      kind_ = kind;
      return;
    }
  throw std::invalid_argument(where + " " + expected(name));
}

ProblemType ProblemType::of(const std::optional<std::string>& problem_type, int64_t num_labels) {
  if (problem_type) return ProblemType(*problem_type, "config.json: problem_type");
  return ProblemType(num_labels == 1 ? "multi_label_classification" : "single_label_classification");
}

torch::Tensor ProblemType::scores(const torch::Tensor& logits) const {
  const auto values = logits.to(torch::kDouble);
  switch (kind_) {
    case Kind::single_label:
      return torch::softmax(values, -1);
    case Kind::multi_label:
      return torch::sigmoid(values);
    case Kind::regression:
      break;
  }
  return values;
}

}  // namespace perceiver
