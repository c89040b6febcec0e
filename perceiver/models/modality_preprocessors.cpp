#include "perceiver/models/modality_preprocessors.h"

#include "perceiver/ops/dynamic_size.h"
#include "perceiver/ops/matmul.h"

#include <cmath>
#include <sstream>

namespace perceiver {
namespace {

std::string shape_string(const std::vector<int64_t>& dims) {
  std::ostringstream s;
  s << "(";
  for (size_t i = 0; i < dims.size(); ++i) s << (i ? ", " : "") << dims[i];
  s << ")";
  return s.str();
}

// Number of axes the position encoding spans (HF's num_dimensions).
int64_t position_dimensions(const PositionEncodingOptions& p) {
  if (p.type == "trainable" && p.trainable) return static_cast<int64_t>(p.trainable->index_dims.size());
  if (p.type == "fourier" && p.fourier) return static_cast<int64_t>(p.fourier->max_resolution.size());
  return 0;
}

int64_t position_width(const PositionEncodingOptions& p, const PositionEncodingImpl& encoding) {
  return p.project_pos_dim > 0 ? p.project_pos_dim : encoding.output_size();
}

// Shared tail of the image and audio preprocessors (HF's _build_network_inputs): flattens the
// index dimensions of channels-last `inputs`, builds the positions and concatenates or adds them.
PreprocessorOutput build_network_inputs(const char* who, torch::Tensor inputs, PositionEncodingImpl& encoding,
                                        torch::nn::Linear projection, const std::string& concat_or_add,
                                        bool interpolate) {
  const auto index_dims = inputs.sizes().slice(1, inputs.dim() - 2).vec();
  if (inputs.dim() > 3) inputs = inputs.flatten(1, -2);

  PositionQuery query;
  query.batch_size = DynamicSize::of(inputs, 0);
  query.dtype = inputs.scalar_type();
  query.device = inputs.device();
  query.index_dims = index_dims;
  if (auto* trainable = dynamic_cast<PerceiverTrainablePositionEncodingImpl*>(&encoding)) {
    query.interpolate = interpolate;
    if (interpolate) {
      TORCH_CHECK(index_dims.size() >= 2, who, ": interpolate_pos_encoding needs a 2-D input grid, got index dims ",
                  shape_string(index_dims));
      query.index_dims = {index_dims[0], index_dims[1]};
    }
    const int64_t have = trainable->position_embeddings.size(0);
    TORCH_CHECK(interpolate || have == inputs.size(1), who, ": the input has ", inputs.size(1), " positions (grid ",
                shape_string(index_dims), ") but the trainable position encoding was built for ", have,
                " positions; resize the input or pass interpolate_pos_encoding to resample the learned grid");
  }
  auto pos = encoding.forward(query);
  if (projection) pos = ops::linear(pos, projection);
  TORCH_CHECK(pos.size(1) == inputs.size(1), who, ": position encoding has ", pos.size(1),
              " positions but the input has ", inputs.size(1), " (grid ", shape_string(index_dims), ")");
  PreprocessorOutput out;
  if (concat_or_add == "concat") {
    // Left unmade (PreprocessorOutput::parts()): the positions are the same for every example, so one row of them
    // serves the batch.
    out.shared_channels = pos.narrow(0, 0, 1).to(inputs.scalar_type());
  } else {
    TORCH_CHECK(pos.size(-1) == inputs.size(-1), who, ": concat_or_add_pos='add' needs ", inputs.size(-1),
                " position channels, got ", pos.size(-1));
    out.inputs = inputs + pos;
  }
  out.inputs_without_pos = inputs;
  return out;
}

}  // namespace

torch::Tensor space_to_depth(const torch::Tensor& frames, int64_t t, int64_t s) {
  TORCH_CHECK(t > 0 && s > 0, "space_to_depth: block sizes must be positive");
  TORCH_CHECK(frames.dim() == 4 || frames.dim() == 5, "Frames should be of rank 4 (batch, channels, height, width) or "
              "rank 5 (batch, time, channels, height, width), got shape ", frames.sizes());
  if (frames.dim() == 4) {
    const int64_t h = frames.size(2), w = frames.size(3);
    TORCH_CHECK(h % s == 0 && w % s == 0, "space_to_depth: height and width ", h, "x", w,
                " must be divisible by the spatial block size ", s);
    // unflatten/flatten rather than reshape with sizes: the batch stays free in an export.
    return frames.unflatten(3, {w / s, s}).unflatten(2, {h / s, s}).permute({0, 2, 4, 3, 5, 1}).flatten(3);
  }
  {
    const int64_t time = frames.size(1), h = frames.size(3), w = frames.size(4);
    TORCH_CHECK(time % t == 0 && h % s == 0 && w % s == 0, "space_to_depth: frames ", time, " and size ", h, "x", w,
                " must be divisible by the temporal block size ", t, " and the spatial block size ", s);
    return frames.unflatten(4, {w / s, s})
        .unflatten(3, {h / s, s})
        .unflatten(1, {time / t, t})
        .permute({0, 1, 4, 6, 2, 5, 7, 3})
        .flatten(4);
  }
}

Conv2DDownsampleImpl::Conv2DDownsampleImpl(int64_t in_channels, int64_t out_channels, bool use_batchnorm) {
  conv = register_module(
      "conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(in_channels, out_channels, 7).stride(2).padding(3).bias(false)));
  if (use_batchnorm) batchnorm = register_module("batchnorm", torch::nn::BatchNorm2d(out_channels));
}

torch::Tensor Conv2DDownsampleImpl::forward(const torch::Tensor& x) {
  auto out = conv(x);
  if (batchnorm) out = batchnorm(out);
  return torch::max_pool2d(torch::relu(out), {3, 3}, {2, 2});
}

PerceiverImagePreprocessorImpl::PerceiverImagePreprocessorImpl(const ImagePreprocessorOptions& options)
    : options_(options) {
  const auto& o = options_;
  TORCH_CHECK(o.prep_type == "conv" || o.prep_type == "conv1x1" || o.prep_type == "pixels" || o.prep_type == "patches",
              "PerceiverImagePreprocessor: prep_type ", o.prep_type, " is invalid (conv, conv1x1, pixels, patches)");
  TORCH_CHECK(o.concat_or_add_pos == "concat" || o.concat_or_add_pos == "add",
              "PerceiverImagePreprocessor: invalid concat_or_add_pos ", o.concat_or_add_pos);
  TORCH_CHECK(o.spatial_downsample > 0 && o.temporal_downsample > 0,
              "PerceiverImagePreprocessor: downsampling factors must be positive");
  if (o.prep_type == "conv") {
    const double layers = std::log(static_cast<double>(o.spatial_downsample)) / std::log(4.0);
    TORCH_CHECK(std::abs(layers - std::round(layers)) < 1e-9 && o.temporal_downsample == 1,
                "Only powers of 4 expected for spatial and 1 expected for temporal downsampling with conv.");
    convnet = register_module("convnet", Conv2DDownsample(o.in_channels, o.out_channels, o.conv2d_use_batchnorm));
  } else if (o.prep_type == "conv1x1") {
    TORCH_CHECK(o.temporal_downsample == 1, "Conv1x1 does not downsample in time.");
    convnet_1x1 = register_module(
        "convnet_1x1", torch::nn::Conv2d(torch::nn::Conv2dOptions(o.in_channels, o.out_channels, 1)
                                             .stride({o.spatial_downsample, o.spatial_downsample})));
  }
  auto pe = o.position_encoding;
  if (pe.out_channels <= 0) pe.out_channels = o.out_channels;
  options_.position_encoding = pe;
  auto built = build_position_encoding(pe);
  position_embeddings = register_module("position_embeddings", built.encoding);
  if (built.projection) positions_projection = register_module("positions_projection", built.projection);
  if (o.conv_after_patching)
    conv_after_patches =
        register_module("conv_after_patches", torch::nn::Linear(o.conv_after_patching_in_channels, o.out_channels));
}

int64_t PerceiverImagePreprocessorImpl::num_channels() const {
  const auto& o = options_;
  const bool is_temporal = position_dimensions(o.position_encoding) > 2;
  const int64_t pos_dim = position_width(o.position_encoding, *position_embeddings);
  if (o.concat_or_add_pos == "add") return pos_dim;
  int64_t inp_dim = 0;
  if (o.conv_after_patching || o.prep_type == "conv1x1" || o.prep_type == "conv") {
    inp_dim = o.out_channels;
  } else if (o.prep_type == "pixels") {
    inp_dim = o.in_channels;
    if (!is_temporal) inp_dim = (inp_dim + o.spatial_downsample - 1) / o.spatial_downsample;
  } else {  // patches
    inp_dim = o.in_channels * o.spatial_downsample * o.spatial_downsample;
    if (is_temporal) inp_dim *= o.temporal_downsample;
  }
  return inp_dim + pos_dim;
}

void PerceiverImagePreprocessorImpl::check_input(const torch::Tensor& x) const {
  const auto& o = options_;
  TORCH_CHECK(x.is_floating_point(), "PerceiverImagePreprocessor: expected float pixel values, got dtype ",
              x.scalar_type());
  const bool conv = o.prep_type == "conv" || o.prep_type == "conv1x1";
  if (conv) {
    TORCH_CHECK(x.dim() == 4 && x.size(1) == o.in_channels, "PerceiverImagePreprocessor (", o.prep_type,
                "): expected images of shape (batch, ", o.in_channels, ", height, width), got ", x.sizes());
    if (o.prep_type == "conv")
      // conv 7x7/2 (pad 3) then max-pool 3x3/2 without padding leave nothing below 5x5.
      TORCH_CHECK(x.size(2) >= 5 && x.size(3) >= 5, "PerceiverImagePreprocessor (conv): images must be at least 5x5, "
                  "got ", x.sizes());
    return;
  }
  TORCH_CHECK(x.dim() == 4 || x.dim() == 5, "PerceiverImagePreprocessor (", o.prep_type,
              "): expected (batch, channels, height, width) or (batch, time, channels, height, width), got ", x.sizes());
  const int64_t c = x.size(x.dim() - 3);
  if (o.prep_type == "pixels" || !o.conv_after_patching) {
    TORCH_CHECK(c == o.in_channels, "PerceiverImagePreprocessor (", o.prep_type, "): expected ", o.in_channels,
                " channels (shape ", x.dim() == 4 ? "(batch, " : "(batch, time, ", o.in_channels,
                ", height, width)), got ", c, " in shape ", x.sizes());
    return;
  }
  const int64_t t = x.dim() == 5 ? o.temporal_downsample : 1;
  const int64_t features = t * o.spatial_downsample * o.spatial_downsample * c;
  TORCH_CHECK(features == o.conv_after_patching_in_channels, "PerceiverImagePreprocessor (patches): patching ",
              x.sizes(), " gives ", features, " features per position but conv_after_patches expects ",
              o.conv_after_patching_in_channels);
}

PreprocessorOutput PerceiverImagePreprocessorImpl::forward(const TensorOrDict& in, bool interpolate_pos_encoding) {
  const auto& o = options_;
  auto x = single_tensor(in, "PerceiverImagePreprocessor");
  check_input(x);
  if (o.prep_type == "conv") {
    x = convnet(x);
  } else if (o.prep_type == "conv1x1") {
    x = convnet_1x1(x);
  } else if (o.prep_type == "pixels") {
    using torch::indexing::Slice;
    const int64_t s = o.spatial_downsample, t = o.temporal_downsample;
    // HF strides the first two axes of 4-D inputs (batch and channels, as num_channels assumes).
    if (x.dim() == 4)
      x = x.index({Slice(torch::indexing::None, torch::indexing::None, s),
                   Slice(torch::indexing::None, torch::indexing::None, s)});
    else
      x = x.index({Slice(), Slice(torch::indexing::None, torch::indexing::None, t), Slice(),
                   Slice(torch::indexing::None, torch::indexing::None, s),
                   Slice(torch::indexing::None, torch::indexing::None, s)});
  } else {
    x = space_to_depth(x, o.temporal_downsample, o.spatial_downsample);
    if (x.dim() == 5 && x.size(1) == 1) x = x.squeeze(1);  // flow: the two frames became channels
    if (conv_after_patches) x = ops::linear(x, conv_after_patches);
  }
  if (o.prep_type != "patches") x = x.dim() == 4 ? x.permute({0, 2, 3, 1}) : x.permute({0, 1, 3, 4, 2});
  return build_network_inputs("PerceiverImagePreprocessor", x, *position_embeddings, positions_projection,
                              o.concat_or_add_pos, interpolate_pos_encoding);
}

PreprocessorOutput PerceiverOneHotPreprocessorImpl::forward(const TensorOrDict& in, bool /*interpolate*/) {
  const auto& x = single_tensor(in, "PerceiverOneHotPreprocessor");
  TORCH_CHECK(x.dim() == 2 && x.size(1) == num_labels_, "PerceiverOneHotPreprocessor: expected labels of shape (batch, ",
              num_labels_, "), got ", x.sizes());
  auto out = x.unsqueeze(1);
  return {out, std::nullopt, out};
}

PerceiverAudioPreprocessorImpl::PerceiverAudioPreprocessorImpl(const AudioPreprocessorOptions& options)
    : options_(options) {
  TORCH_CHECK(options.samples_per_patch > 0, "PerceiverAudioPreprocessor: samples_per_patch must be positive");
  TORCH_CHECK(options.concat_or_add_pos == "concat" || options.concat_or_add_pos == "add", "Concat_or_pos ",
              options.concat_or_add_pos, " is invalid, can only be 'concat' or 'add'.");
  auto built = build_position_encoding(options.position_encoding);
  position_embeddings = register_module("position_embeddings", built.encoding);
  if (built.projection) positions_projection = register_module("positions_projection", built.projection);
}

int64_t PerceiverAudioPreprocessorImpl::num_channels() const {
  const int64_t pos_dim = position_width(options_.position_encoding, *position_embeddings);
  return options_.concat_or_add_pos == "add" ? pos_dim : options_.samples_per_patch + pos_dim;
}

PreprocessorOutput PerceiverAudioPreprocessorImpl::forward(const TensorOrDict& in, bool /*interpolate*/) {
  const auto& x = single_tensor(in, "PerceiverAudioPreprocessor");
  const int64_t spp = options_.samples_per_patch;
  TORCH_CHECK(x.dim() >= 2 && x.is_floating_point() && x.numel() > 0 && (x.numel() / x.size(0)) % spp == 0,
              "PerceiverAudioPreprocessor: expected float audio of shape (batch, samples[, 1]) with samples a multiple "
              "of samples_per_patch = ", spp, ", got ", x.sizes(), " (", x.scalar_type(), ")");
  auto patches = dynamic::reshape(x, {DynamicSize::of(x, 0), -1, spp});
  return build_network_inputs("PerceiverAudioPreprocessor", patches, *position_embeddings, positions_projection,
                              options_.concat_or_add_pos, false);
}

PerceiverMultimodalPreprocessorImpl::PerceiverMultimodalPreprocessorImpl(std::map<std::string, Preprocessor> modalities,
                                                                         const MultimodalPreprocessorOptions& options)
    : modalities_(std::move(modalities)), options_(options) {
  TORCH_CHECK(!modalities_.empty(), "PerceiverMultimodalPreprocessor needs at least one modality");
  register_module("modalities", modality_dict(modalities_));
  padding = register_module("padding", torch::nn::ParameterDict());
  mask = register_module("mask", torch::nn::ParameterDict());
  const int64_t common = num_channels();
  // ParameterDict keeps the tensor's requires_grad flag: set it so that these train.
  for (const auto& [name, pre] : modalities_) padding->insert(name, torch::randn({1, common - pre->num_channels()}).requires_grad_());
  for (const auto& [name, p] : options_.mask_probs) {
    TORCH_CHECK(p >= 0.0 && p <= 1.0, "PerceiverMultimodalPreprocessor: mask_probs[", name, "] = ", p,
                " is not a probability");
    mask->insert(name, torch::randn({1, common}).requires_grad_());
  }
}

int64_t PerceiverMultimodalPreprocessorImpl::num_channels() const {
  int64_t max_channels = 0;
  for (const auto& [name, pre] : modalities_) max_channels = std::max(max_channels, pre->num_channels());
  return max_channels + options_.min_padding_size;
}

PreprocessorOutput PerceiverMultimodalPreprocessorImpl::forward(const TensorOrDict& in, bool /*interpolate*/) {
  std::string expected, given;
  for (const auto& [name, pre] : modalities_) expected += (expected.empty() ? "" : ", ") + name;
  for (const auto& [name, t] : in.dict) given += (given.empty() ? "" : ", ") + name;
  TORCH_CHECK(in.is_dict(), "PerceiverMultimodalPreprocessor: expected one input per modality (", expected,
              "), got a single tensor");
  for (const auto& [name, pre] : modalities_)
    TORCH_CHECK(in.dict.count(name) && in.dict.at(name).defined(), "PerceiverMultimodalPreprocessor: missing input for "
                "modality '", name, "' (expected modalities: ", expected, "; got: ", given, ")");
  for (const auto& [name, t] : in.dict)
    TORCH_CHECK(modalities_.count(name), "PerceiverMultimodalPreprocessor: unknown modality '", name,
                "' (expected modalities: ", expected, ")");

  const int64_t common = num_channels();
  std::vector<torch::Tensor> padded;
  ModalitySizes sizes;
  std::optional<int64_t> batch;
  for (const auto& [name, pre] : modalities_) {  // std::map: sorted order, as HF concatenates
    const auto& x = in.dict.at(name);
    TORCH_CHECK(x.dim() >= 1 && (!batch || x.size(0) == *batch), "PerceiverMultimodalPreprocessor: modality '", name,
                "' has batch size ", x.dim() ? x.size(0) : 0, " but an earlier modality has ", batch.value_or(0),
                " (shape ", x.sizes(), ")");
    batch = x.size(0);
    auto output = pre->forward(x, false).whole();
    const auto b = DynamicSize::of(output, 0);
    const int64_t n = output.size(1), c = output.size(2);
    auto pad = dynamic::expand(padding->get(name), {b, n, common - c});
    auto output_padded = torch::cat({output, pad.to(output.scalar_type())}, 2);
    auto it = options_.mask_probs.find(name);
    if (it != options_.mask_probs.end()) {
      auto mask_token = dynamic::expand(mask->get(name), {b, -1, -1});
      // Drawn on the global generator even for p = 0 or 1, so that the RNG stream matches HF.
      auto m = torch::bernoulli(dynamic::full({b, n}, it->second)).unsqueeze(2).to(mask_token.device());
      output_padded = (1 - m) * output_padded + m * mask_token;
    }
    sizes[name] = output_padded.size(1);
    padded.push_back(output_padded);
  }
  PreprocessorOutput out;
  out.inputs = torch::cat(padded, 1);
  out.modality_sizes = sizes;
  return out;
}

}  // namespace perceiver
