#include "perceiver/vision_heads.h"

namespace perceiver {

// The vision/flow/multimodal classes are added by the vision issue.
void register_vision_architectures(std::map<std::string, ArchitectureFactory>&) {}
void register_vision_preprocessors(std::map<std::string, ComponentFactory<PreprocessorImpl>>&) {}
void register_vision_decoders(std::map<std::string, ComponentFactory<DecoderImpl>>&) {}
void register_vision_postprocessors(std::map<std::string, ComponentFactory<PostprocessorImpl>>&) {}

}  // namespace perceiver
