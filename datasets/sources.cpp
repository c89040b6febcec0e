#include "datasets/sources.h"

namespace perceiver::datasets {
namespace {

template <typename Factory>
SourceKind kind_of(const std::string& name, const SourceRegistry<Factory>& registry) {
  SourceKind kind{name, {}};
  for (const auto& [source, entry] : registry) kind.sources.push_back({source, entry.help, entry.options});
  return kind;
}

}  // namespace

std::vector<SourceKind> source_kinds() {
  std::vector<SourceKind> kinds = {kind_of("text", text_sources()), kind_of("labelled-text", labelled_text_sources()),
                                   kind_of("token-labels", token_label_sources())};
#if PERCEIVER_WITH_OPENCV  // images.cpp, flow.cpp and multimodal.cpp are left out of a build without OpenCV
  kinds.push_back(kind_of("image", image_sources()));
  kinds.push_back(kind_of("flow", flow_sources()));
  kinds.push_back(kind_of("clip", clip_sources()));
#endif
  return kinds;
}

}  // namespace perceiver::datasets
