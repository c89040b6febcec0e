// Vision, optical-flow and multimodal heads beyond the fixtures: full-size parameter counts,
// interpolate_pos_encoding, input-shape errors, and the flow / multimodal training objectives
// (finite-difference gradients in double precision, a few Adam steps). The forward passes run on
// PERCEIVER_TEST_DEVICE (test_device(), the CPU by default); the random inputs are drawn on the CPU
// and moved, so that they are the same on every device.
#include <gtest/gtest.h>

#include <functional>
#include <set>

#include "perceiver/models/architectures.h"
#include "perceiver/models/composition.h"
#include "perceiver/models/heads.h"
#include "perceiver/models/position_encoding.h"
#include "perceiver/models/image_heads.h"
#include "perceiver/models/multimodal_autoencoding.h"
#include "perceiver/models/optical_flow.h"
#include "perceiver/models/modality_preprocessors.h"
#include "tests/test_support.h"

namespace perceiver::testing {
namespace {
using perceiver::testing::error_of;

PerceiverConfig fixture_config(const std::string& name) {
  auto config = PerceiverConfig::from_json_file(hf_fixtures_dir() / name / "config.json");
  config.attention_probs_dropout_prob = 0.0;
  return config;
}

// torch::allclose of the two on the CPU: the given tolerances on the CPU, at least 1e-4 on a GPU.
bool close(const torch::Tensor& a, const torch::Tensor& b, double rtol = 1e-5, double atol = 1e-8) {
  return torch::allclose(a.to(torch::kCPU), b.to(torch::kCPU), parity_tolerance(rtol), parity_tolerance(atol));
}

int64_t parameter_count(const torch::nn::Module& model) {
  int64_t n = 0;
  for (const auto& p : model.parameters()) n += p.numel();
  return n;
}


PerceiverConfig vision_imagenet_config(int64_t d_model) {
  PerceiverConfig c;
  c.num_latents = 512;
  c.d_latents = 1024;
  c.d_model = d_model;
  c.num_blocks = 8;
  c.num_self_attends_per_block = 6;
  c.num_self_attention_heads = 8;
  c.num_cross_attention_heads = 1;
  c.image_size = 224;
  c.set_num_labels(1000);
  return c;
}

TEST(VisionFullSize, FourierHasHfParameterCount) {
  // deepmind/vision-perceiver-fourier: 48,440,627 parameters (HF model card / issue).
  PerceiverForImageClassificationFourierImpl model(vision_imagenet_config(261));
  EXPECT_EQ(parameter_count(model), 48440627);
}

// The full-size counts the README's Models table states, each worked by hand from HF's architecture
// (modeling_perceiver.py) with its default widening factors of 1 and qk/v channels left unset (so a
// cross-attention's query/key/value width is its kv_dim). Notation for one PerceiverLayer:
//   cross(q, kv): layernorms 2q + 2kv + 2q, query q*kv + kv, key and value 2 (kv*kv + kv), output kv*q + q,
//                 MLP 2 q*q + 2q;
//   self(d):      layernorms 2d + 2d, query/key/value/output 4 (d*d + d), MLP 2 d*d + 2d;
//                 self(1024) = 6,301,696, self(512) = 1,577,984.
// The encoder's num_blocks repeat one set of self-attends, so they count once.
TEST(VisionFullSize, OtherFullConfigurationsHaveTheReadmesParameterCounts) {
  // Both ImageNet heads share: latents 512*1024 = 524,288; 6 self(1024) = 37,810,176; the classification
  // decoder's trainable query 1*1024 + its cross(1024, 1024) 6,303,744 + final layer 1024*1000 + 1000 =
  // 7,329,768. (The Fourier head, tested above, adds cross(1024, 261) = 2,776,395: 48,440,627.)
  const int64_t imagenet_common = 524288 + 37810176 + 7329768;
  // Learned: conv1x1 3*256 + 256 = 1,024; trainable positions 224*224*256 = 12,845,056; their projection
  // 256*256 + 256 = 65,792; encoder cross(1024, 512) = 3,679,744. Sum 62,255,848.
  PerceiverForImageClassificationLearnedImpl learned(vision_imagenet_config(512));
  EXPECT_EQ(imagenet_common + 1024 + 12845056 + 65792 + 3679744, 62255848);
  EXPECT_EQ(parameter_count(learned), 62255848);
  // Conv: a 7x7 conv 3 -> 64 without bias 9,408 and its batch norm 128 (running stats are buffers);
  // d_model 64 + Fourier 2 + 2*2*64 = 322; encoder cross(1024, 322) = 2,972,754. Sum 48,646,522.
  PerceiverForImageClassificationConvProcessingImpl conv(vision_imagenet_config(322));
  EXPECT_EQ(imagenet_common + 9408 + 128 + 2972754, 48646522);
  EXPECT_EQ(parameter_count(conv), 48646522);

  PerceiverConfig flow;
  flow.num_latents = 2048;
  flow.d_latents = 512;
  flow.d_model = 322;
  flow.num_blocks = 1;
  flow.num_self_attends_per_block = 24;
  flow.num_self_attention_heads = 16;
  flow.num_cross_attention_heads = 1;
  flow.train_size = {368, 496};
  // Optical flow: latents 2048*512 = 1,048,576; conv_after_patches Linear(54, 64) 3,520; d_model
  // 64 + 258 = 322; encoder cross(512, 322) = 1,066,578; 24 self(512) = 37,871,616; decoder (queries
  // are the 322 input channels) cross(322, 512) = 1,066,198 and final layer 322*2 + 2 = 646.
  // Sum 41,057,134 (deepmind/optical-flow-perceiver, ~41 M).
  PerceiverForOpticalFlowImpl flow_model(flow);
  EXPECT_EQ(1048576 + 3520 + 1066578 + 37871616 + 1066198 + 646, 41057134);
  EXPECT_EQ(parameter_count(flow_model), 41057134);

  PerceiverConfig mm;
  mm.num_latents = 784;
  mm.d_latents = 512;
  mm.d_model = 704;
  mm.num_blocks = 1;
  mm.num_self_attends_per_block = 8;
  mm.num_self_attention_heads = 8;
  mm.num_cross_attention_heads = 1;
  mm.image_size = 224;
  mm.num_frames = 16;
  mm.audio_samples_per_frame = 1920;
  mm.samples_per_patch = 16;
  mm.output_shape = {1, 16, 224, 224};
  mm.output_num_channels = 512;
  mm._label_trainable_num_channels = 1024;
  mm.set_num_labels(700);
  // Multimodal autoencoding:
  //   input channels: audio 16 + Fourier 1 + 2*192 = 401, image 3*4*4 = 48 + Fourier 3 + 2*3*32 = 195,
  //   label 700; common width 700 + 4 = 704. Padding (704 - 401) + (704 - 243) + (704 - 700) = 768 and
  //   three mask tokens 3*704 = 2,112;
  //   latents 784*512 = 401,408; encoder cross(512, 704) = 2,243,520; 8 self(512) = 12,623,872;
  //   decoder queries: audio 385, image 195, label trainable 1*1024 = 1,024 parameters; common width
  //   1024 + 2 = 1026, padding (1026 - 385) + (1026 - 195) + (1026 - 1024) = 1,474; cross(1026, 512) =
  //   3,690,006 and final layer 1026*512 + 512 = 525,824;
  //   postprocessors: audio Linear(512, 16) 8,208, image Linear(512, 3) 1,539, label Linear(512, 700) 359,100.
  //   Sum 19,858,855 (deepmind/multimodal-perceiver).
  PerceiverForMultimodalAutoencodingImpl mm_model(mm);
  EXPECT_EQ(768 + 2112 + 401408 + 2243520 + 12623872 + 1024 + 1474 + 3690006 + 525824 + 8208 + 1539 + 359100, 19858855);
  EXPECT_EQ(parameter_count(mm_model), 19858855);
  // The multimodal decoder queries are max(audio 16+385, image 48+195, label 700) + 4 wide inputs.
  auto* pre = mm_model.perceiver->input_preprocessor().get();
  EXPECT_EQ(pre->num_channels(), 704);
}

// ---------------------------------------------------------------- interpolate_pos_encoding

TEST(VisionInterpolation, LearnedHeadResamplesItsGrid) {
  auto config = fixture_config("PerceiverForImageClassificationLearned");  // image_size 8
  auto model = std::dynamic_pointer_cast<PerceiverClassifierHeadImpl>(build_model(config));
  model->eval();
  model->to(test_device());
  torch::NoGradGuard no_grad;
  const auto same = on_test_device(torch::randn({2, 3, 8, 8}));
  ForwardOptions interp;
  interp.interpolate_pos_encoding = true;
  // At the trained size interpolation is the identity.
  EXPECT_TRUE(close(model->forward(same).logits.tensor, model->forward(same, {}, {}, interp).logits.tensor));
  const auto larger = on_test_device(torch::randn({2, 3, 12, 12}));
  const auto out = model->forward(larger, {}, {}, interp);
  EXPECT_EQ(out.logits.tensor.sizes(), (std::vector<int64_t>{2, config.num_labels()}));
  EXPECT_TRUE(torch::isfinite(out.logits.tensor).all().item<bool>());
  // The encoder attended over all 144 positions.
  ForwardOptions attn = interp;
  attn.output_attentions = true;
  EXPECT_EQ(model->forward(larger, {}, {}, attn).cross_attentions.front().size(-1), 144);
  const auto message = error_of([&] { model->forward(larger); });
  EXPECT_NE(message.find("144"), std::string::npos) << message;
  EXPECT_NE(message.find("64"), std::string::npos) << message;
  EXPECT_NE(message.find("interpolate_pos_encoding"), std::string::npos) << message;
}

// The Fourier features of an input of another size are recomputed on that size's grid, with
// frequencies from the configured max_resolution.
void expect_fourier_grid(const std::string& fixture, int64_t size, int64_t grid, std::vector<int64_t> max_resolution) {
  auto config = fixture_config(fixture);
  auto model = std::dynamic_pointer_cast<PerceiverClassifierHeadImpl>(build_model(config));
  model->eval();
  model->to(test_device());
  torch::NoGradGuard no_grad;
  ForwardOptions interp;
  interp.interpolate_pos_encoding = true;
  const auto images = on_test_device(torch::randn({1, 3, size, size}));
  const auto out = model->forward(images, {}, {}, interp);
  EXPECT_EQ(out.logits.tensor.sizes(), (std::vector<int64_t>{1, config.num_labels()}));
  auto pre = model->perceiver->input_preprocessor()->forward(images, true).whole();
  FourierPositionEncodingOptions f;
  f.num_bands = 64;
  f.max_resolution = max_resolution;
  const auto expected = generate_fourier_features(build_linear_positions({grid, grid}).unsqueeze(0), f);  // CPU
  ASSERT_EQ(pre.size(1), grid * grid);
  EXPECT_TRUE(close(pre.narrow(2, pre.size(2) - expected.size(2), expected.size(2)), expected));
  // Without the flag the same input works too: Fourier positions follow the input.
  EXPECT_TRUE(close(model->forward(images).logits.tensor, out.logits.tensor));
}

TEST(VisionInterpolation, FourierHeadRecomputesGrid) {
  expect_fourier_grid("PerceiverForImageClassificationFourier", 24, 24, {224, 224});
}

TEST(VisionInterpolation, ConvHeadRecomputesGrid) {
  // conv 7x7/2 pad 3 then max-pool 3x3/2: 40 -> 20 -> 9.
  expect_fourier_grid("PerceiverForImageClassificationConvProcessing", 40, 9, {56, 56});
}

TEST(VisionPreprocessor, AddModeWithProjectedTrainablePositions) {
  ImagePreprocessorOptions o;
  o.prep_type = "conv1x1";
  o.spatial_downsample = 1;
  o.out_channels = 6;
  o.concat_or_add_pos = "add";
  o.position_encoding.type = "trainable";
  o.position_encoding.trainable = TrainablePositionEncodingOptions{{16}, 6};
  o.position_encoding.project_pos_dim = 6;
  PerceiverImagePreprocessorImpl pre(o);
  EXPECT_EQ(pre.num_channels(), 6);
  pre.to(test_device());
  torch::NoGradGuard no_grad;
  const auto x = on_test_device(torch::randn({2, 3, 4, 4}));
  const auto out = pre.forward(x, false);
  // Independent: per-pixel W x + b, channels last, row-major positions, plus the projected table.
  const auto w = pre.convnet_1x1->weight.reshape({6, 3});
  const auto pixels = x.permute({0, 2, 3, 1}).reshape({2, 16, 3});
  const auto features = torch::matmul(pixels, w.t()) + pre.convnet_1x1->bias;
  auto* table = dynamic_cast<PerceiverTrainablePositionEncodingImpl*>(pre.position_embeddings.get());
  ASSERT_NE(table, nullptr);
  const auto pos = pre.positions_projection(table->position_embeddings);
  EXPECT_TRUE(close(out.inputs_without_pos, features, 1e-5, 1e-6));
  EXPECT_TRUE(close(out.whole(), features + pos, 1e-5, 1e-6));
  // 4 channels where 3 are expected: the error names both shapes.
  const auto m = error_of([&] { pre.forward(on_test_device(torch::randn({2, 4, 4, 4})), false); });
  EXPECT_NE(m.find("(batch, 3, height, width)"), std::string::npos) << m;
  EXPECT_NE(m.find("[2, 4, 4, 4]"), std::string::npos) << m;
}

// ---------------------------------------------------------------- input-shape errors

TEST(VisionErrors, WrongInputShapesNameExpectedAndActual) {
  {
    auto model = build_model(fixture_config("PerceiverForImageClassificationFourier"));
    const auto m = error_of([&] { model->forward_named({{"pixel_values", torch::randn({2, 4, 16, 16})}}, {}); });
    EXPECT_NE(m.find("expected 3 channels"), std::string::npos) << m;
    EXPECT_NE(m.find("[2, 4, 16, 16]"), std::string::npos) << m;
  }
  {
    auto model = build_model(fixture_config("PerceiverForImageClassificationLearned"));
    const auto m = error_of([&] { model->forward_named({{"inputs", torch::randn({2, 4, 8, 8})}}, {}); });
    EXPECT_NE(m.find("(batch, 3, height, width)"), std::string::npos) << m;
    EXPECT_NE(m.find("[2, 4, 8, 8]"), std::string::npos) << m;
  }
  {
    auto model = build_model(fixture_config("PerceiverForImageClassificationConvProcessing"));
    model->eval();
    const auto m = error_of([&] { model->forward_named({{"inputs", torch::randn({1, 3, 4, 4})}}, {}); });
    EXPECT_NE(m.find("at least 5x5"), std::string::npos) << m;
    EXPECT_NE(m.find("[1, 3, 4, 4]"), std::string::npos) << m;
    torch::NoGradGuard no_grad;
    EXPECT_EQ(model->forward_named({{"inputs", torch::randn({1, 3, 5, 5})}}, {}).at("logits").size(0), 1);
  }
  {
    auto model = build_model(fixture_config("PerceiverForOpticalFlow"));  // train_size (8, 12)
    const auto m = error_of([&] { model->forward_named({{"inputs", torch::randn({1, 2, 27, 8, 10})}}, {}); });
    EXPECT_NE(m.find("(batch, 2, 27, 8, 12)"), std::string::npos) << m;
    EXPECT_NE(m.find("[1, 2, 27, 8, 10]"), std::string::npos) << m;
    const auto m2 = error_of([&] { model->forward_named({{"inputs", torch::randn({1, 2, 3, 8, 12})}}, {}); });
    EXPECT_NE(m2.find("[1, 2, 3, 8, 12]"), std::string::npos) << m2;
  }
  {
    auto model = build_model(fixture_config("PerceiverForMultimodalAutoencoding"));
    const auto m = error_of([&] {
      model->forward_named({{"inputs.image", torch::randn({1, 2, 3, 8, 8})}, {"inputs.label", torch::zeros({1, 5})}},
                           {});
    });
    EXPECT_NE(m.find("missing input for modality 'audio'"), std::string::npos) << m;
    EXPECT_NE(m.find("got: image, label"), std::string::npos) << m;
  }
}

// ---------------------------------------------------------------- composition from HF class names

// Copies the head's `perceiver.*` weights into a composed PerceiverModel (names must match 1:1).
void copy_weights(torch::nn::Module& head, torch::nn::Module& model) {
  auto from_params = head.named_parameters();
  auto from_buffers = head.named_buffers();
  torch::NoGradGuard no_grad;
  std::set<std::string> theirs, ours;
  for (const auto& p : from_params) theirs.insert(p.key());
  for (auto& p : model.named_parameters()) {
    ours.insert("perceiver." + p.key());
    ASSERT_TRUE(from_params.contains("perceiver." + p.key())) << p.key();
    p.value().copy_(from_params["perceiver." + p.key()]);
  }
  for (auto& b : model.named_buffers()) b.value().copy_(from_buffers["perceiver." + b.key()]);
  EXPECT_EQ(ours, theirs);
}

TEST(VisionComposition, FlowComponentsFromKwargsMatchTheHead) {
  const auto config = fixture_config("PerceiverForOpticalFlow");  // train_size (8, 12)
  auto head = std::dynamic_pointer_cast<PerceiverForOpticalFlowImpl>(build_model(config));
  const auto fourier = nlohmann::json::parse(R"({"num_bands": 64, "max_resolution": [8, 12], "sine_only": false, "concat_pos": true})");
  nlohmann::json construction = {
      {"input_preprocessor",
       {{"class", "PerceiverImagePreprocessor"},
        {"kwargs", {{"prep_type", "patches"}, {"spatial_downsample", 1}, {"conv_after_patching", true},
                    {"conv_after_patching_in_channels", 54}, {"temporal_downsample", 2},
                    {"position_encoding_type", "fourier"}, {"fourier_position_encoding_kwargs", fourier}}}}},
      {"decoder",
       {{"class", "PerceiverOpticalFlowDecoder"},
        {"kwargs", {{"num_channels", 322}, {"output_image_shape", {8, 12}}, {"rescale_factor", 100.0},
                    {"use_query_residual", false}, {"output_num_channels", 2}, {"position_encoding_type", "fourier"},
                    {"fourier_position_encoding_kwargs", fourier}}}}}};
  auto model = build_perceiver_model(config, construction);
  copy_weights(*head, *model);
  head->eval();
  model->eval();
  head->to(test_device());
  model->to(test_device());
  torch::NoGradGuard no_grad;
  const auto x = on_test_device(torch::randn({1, 2, 27, 8, 12}));
  EXPECT_TRUE(close(model->forward(x).logits.tensor, head->forward(x).logits));
}

TEST(VisionComposition, MultimodalComponentsFromKwargsMatchTheHead) {
  const auto config = fixture_config("PerceiverForMultimodalAutoencoding");
  auto head = std::dynamic_pointer_cast<PerceiverForMultimodalAutoencodingImpl>(build_model(config));
  const auto construction = nlohmann::json::parse(R"({
   "input_preprocessor": {"class": "PerceiverMultimodalPreprocessor", "kwargs": {"min_padding_size": 4,
     "mask_probs": {"image": 0.0, "audio": 0.0, "label": 1.0},
     "modalities": {
       "audio": {"class": "PerceiverAudioPreprocessor", "kwargs": {"position_encoding_type": "fourier",
         "fourier_position_encoding_kwargs": {"num_bands": 192, "max_resolution": [32], "sine_only": false, "concat_pos": true},
         "prep_type": "patches", "samples_per_patch": 4}},
       "image": {"class": "PerceiverImagePreprocessor", "kwargs": {"position_encoding_type": "fourier",
         "fourier_position_encoding_kwargs": {"num_bands": 32, "max_resolution": [2, 8, 8], "sine_only": false, "concat_pos": true},
         "prep_type": "patches", "spatial_downsample": 4, "temporal_downsample": 1}},
       "label": {"class": "PerceiverOneHotPreprocessor"}}}},
   "decoder": {"class": "PerceiverMultimodalDecoder", "kwargs": {"concat_preprocessed_input": false, "num_outputs": null,
     "output_num_channels": 16, "use_query_residual": false,
     "modalities": {
       "audio": {"class": "PerceiverBasicDecoder", "kwargs": {"concat_preprocessed_input": false, "output_index_dims": [8],
         "output_num_channels": 16, "use_query_residual": false, "position_encoding_only": true, "position_encoding_type": "fourier",
         "fourier_position_encoding_kwargs": {"num_bands": 192, "max_resolution": [32], "sine_only": false, "concat_pos": true}}},
       "image": {"class": "PerceiverBasicVideoAutoencodingDecoder", "kwargs": {"concat_preprocessed_input": false,
         "output_shape": [1, 2, 8, 8], "output_num_channels": 16, "use_query_residual": false, "position_encoding_only": true,
         "position_encoding_type": "fourier",
         "fourier_position_encoding_kwargs": {"num_bands": 32, "max_resolution": [2, 8, 8], "sine_only": false, "concat_pos": true}}},
       "label": {"class": "PerceiverClassificationDecoder", "kwargs": {"concat_preprocessed_input": false,
         "use_query_residual": false, "position_encoding_only": true, "position_encoding_type": "trainable",
         "trainable_position_encoding_kwargs": {"num_channels": 8, "index_dims": 1}}}}}},
   "output_postprocessor": {"class": "PerceiverMultimodalPostprocessor", "kwargs": {"modalities": {
       "audio": {"class": "PerceiverAudioPostprocessor", "kwargs": {"in_channels": 16}},
       "image": {"class": "PerceiverProjectionPostprocessor", "kwargs": {"in_channels": 16, "out_channels": 3}},
       "label": {"class": "PerceiverClassificationPostprocessor", "kwargs": {"in_channels": 16}}}}}
  })");
  auto model = build_perceiver_model(config, construction);
  copy_weights(*head, *model);
  head->eval();
  model->eval();
  head->to(test_device());
  model->to(test_device());
  torch::NoGradGuard no_grad;
  const auto inputs = on_test_device(std::map<std::string, torch::Tensor>{
      {"audio", torch::randn({1, 32, 1})}, {"image", torch::randn({1, 2, 3, 8, 8})}, {"label", torch::zeros({1, 5})}});
  const auto points = on_test_device(
      std::map<std::string, torch::Tensor>{{"audio", torch::tensor({0, 2, 7})}, {"image", torch::tensor({3, 9, 120})}});
  const auto expected = head->forward(inputs, {}, points).logits;
  const auto actual = model->forward(TensorOrDict(inputs), {}, TensorOrDict(points)).logits.dict;
  ASSERT_EQ(actual.size(), expected.size());
  for (const auto& [name, t] : expected) EXPECT_TRUE(close(actual.at(name), t)) << name;
}

// ---------------------------------------------------------------- losses

using LossFn = std::function<torch::Tensor()>;

// Central differences vs autograd for a few elements of the named parameters.
void expect_gradients_match(torch::nn::Module& model, const LossFn& loss_fn, const std::vector<std::string>& names) {
  auto params = model.named_parameters();
  model.zero_grad();
  loss_fn().backward();
  const double eps = 1e-6;
  int checked_nonzero = 0;
  for (const auto& name : names) {
    ASSERT_TRUE(params.contains(name)) << name;
    auto p = params[name];
    ASSERT_TRUE(p.grad().defined()) << name << " received no gradient";
    auto flat = p.view(-1);
    const auto grad = p.grad().view(-1);
    for (const int64_t k : {int64_t{0}, flat.numel() / 2, flat.numel() - 1}) {
      double plus = 0, minus = 0;
      {
        torch::NoGradGuard no_grad;
        flat[k].add_(eps);
        plus = loss_fn().item<double>();
        flat[k].sub_(2 * eps);
        minus = loss_fn().item<double>();
        flat[k].add_(eps);
      }
      const double numeric = (plus - minus) / (2 * eps);
      const double analytic = grad[k].item<double>();
      EXPECT_NEAR(analytic, numeric, 1e-7 + 1e-5 * std::abs(numeric)) << name << "[" << k << "]";
      checked_nonzero += std::abs(numeric) > 1e-9;
    }
  }
  EXPECT_GT(checked_nonzero, 0);
}

struct FlowCase {
  std::shared_ptr<PerceiverForOpticalFlowImpl> model;
  torch::Tensor inputs, labels;
};

FlowCase flow_case(torch::Dtype dtype) {
  torch::manual_seed(7);
  auto model = std::dynamic_pointer_cast<PerceiverForOpticalFlowImpl>(build_model(fixture_config("PerceiverForOpticalFlow")));
  model->to(test_device(), dtype);
  model->eval();
  const auto& ts = model->config().train_size;
  return {model, on_test_device(torch::randn({2, 2, 27, ts[0], ts[1]}, dtype)),
          on_test_device(0.05 * torch::randn({2, ts[0], ts[1], 2}, dtype))};
}

TEST(VisionLosses, OpticalFlowEndPointError) {
  auto c = flow_case(torch::kFloat64);
  c.model->loss_options.flow_scale = 20.0;
  auto out = c.model->forward(c.inputs, {}, c.labels);
  // Independent: average over pixels of the Euclidean distance, labels scaled into logit units.
  const auto d = out.logits - c.labels / 20.0;
  const auto expected = (d.select(-1, 0).pow(2) + d.select(-1, 1).pow(2)).sqrt().mean();
  EXPECT_NEAR(out.loss.item<double>(), expected.item<double>(), 1e-12);
  EXPECT_NEAR(out.epe.item<double>(), 20.0 * expected.item<double>(), 1e-10);
  const auto named = c.model->forward_named({{"inputs", c.inputs}, {"labels", c.labels}}, {});
  EXPECT_TRUE(named.count("loss") && named.count("epe") && named.count("logits"));
  const auto m = error_of([&] { c.model->forward(c.inputs, {}, c.labels.narrow(1, 0, 4)); });
  EXPECT_NE(m.find("labels must have the shape"), std::string::npos) << m;
}

// Regression: Middlebury's "unknown flow" (> 1e9, as in Sintel's and KITTI's files) was scored as motion.
TEST(VisionLosses, OpticalFlowIgnoresUnknownFlowLabels) {
  auto c = flow_case(torch::kFloat64);
  c.model->loss_options.flow_scale = 20.0;
  auto labels = c.labels.clone();
  labels[0][1][2][0] = 1e10;  // unknown
  labels[1][0][0][1] = -2e9;  // unknown
  labels[1][3][1][0] = NAN;   // no ground truth either
  const auto valid = valid_flow_mask(labels);
  EXPECT_EQ(valid.logical_not().sum().item<int64_t>(), 3);
  for (auto& p : c.model->parameters()) p.mutable_grad() = torch::Tensor();
  auto out = c.model->forward(c.inputs, {}, labels);
  // Independent: the mean over the valid pixels only.
  const auto d = out.logits - c.labels / 20.0;
  const auto norms = (d.select(-1, 0).pow(2) + d.select(-1, 1).pow(2)).sqrt();
  const auto expected = norms.masked_select(valid).mean();
  EXPECT_NEAR(out.loss.item<double>(), expected.item<double>(), 1e-12);
  EXPECT_NEAR(out.epe.item<double>(), 20.0 * expected.item<double>(), 1e-10);
  out.loss.backward();
  for (const auto& p : c.model->parameters())
    if (p.grad().defined()) ASSERT_TRUE(torch::isfinite(p.grad()).all().item<bool>());
  // No valid pixel at all: zero, not NaN.
  const auto none = torch::full_like(labels, 1e10);
  EXPECT_EQ(optical_flow_loss(out.logits.detach(), none, {20.0}).loss.item<double>(), 0.0);
}

TEST(VisionLosses, OpticalFlowSubsampledPixelsMatchTheFullGrid) {
  auto c = flow_case(torch::kFloat64);
  c.model->loss_options.flow_scale = 20.0;
  const auto& ts = c.model->config().train_size;
  const auto full = c.model->forward(c.inputs, {}, c.labels);
  const auto points = on_test_device(torch::tensor({ts[0] * ts[1] - 1, int64_t{0}, int64_t{7}, int64_t{3}}, torch::kLong));
  const auto sub = c.model->forward(c.inputs, {}, c.labels, {}, points);
  // Decoder queries are independent: the subset's outputs are the full grid's at those pixels.
  ASSERT_EQ(sub.logits.sizes(), (std::vector<int64_t>{2, 4, 2}));
  const auto full_at_points = full.logits.flatten(1, 2).index_select(1, points);
  EXPECT_TRUE(torch::allclose(sub.logits, full_at_points, 1e-10, 1e-12));
  // The loss gathers full-grid labels at the same pixels.
  const auto labels_at_points = c.labels.flatten(1, 2).index_select(1, points);
  EXPECT_NEAR(sub.loss.item<double>(), optical_flow_loss(full_at_points, labels_at_points, {20.0}).loss.item<double>(),
              1e-12);
  const auto named = c.model->forward_named({{"inputs", c.inputs}, {"subsampled_output_points", points}}, {});
  EXPECT_TRUE(torch::allclose(named.at("logits"), full_at_points, 1e-10, 1e-12));

  const auto out_of_range =
      error_of([&] { c.model->forward(c.inputs, {}, {}, {}, on_test_device(torch::tensor({ts[0] * ts[1]}))); });
  EXPECT_NE(out_of_range.find("flat pixel indices in [0, "), std::string::npos) << out_of_range;
  const auto all = error_of([&] { c.model->forward(c.inputs, {}, {}, {}, on_test_device(torch::arange(ts[0] * ts[1]))); });
  EXPECT_NE(all.find("pass none for the full grid"), std::string::npos) << all;
}

TEST(VisionLosses, OpticalFlowGradientsMatchFiniteDifferences) {
  auto c = flow_case(torch::kFloat64);
  expect_gradients_match(*c.model, [&] { return c.model->forward(c.inputs, {}, c.labels).loss; },
                         {"perceiver.decoder.decoder.final_layer.weight",
                          "perceiver.input_preprocessor.conv_after_patches.weight", "perceiver.embeddings.latents",
                          "perceiver.encoder.cross_attention.attention.self.query.weight"});
}

struct MultimodalCase {
  std::shared_ptr<PerceiverForMultimodalAutoencodingImpl> model;
  std::map<std::string, torch::Tensor> inputs, points, labels;
};

MultimodalCase multimodal_case(torch::Dtype dtype) {
  torch::manual_seed(11);
  auto model = std::dynamic_pointer_cast<PerceiverForMultimodalAutoencodingImpl>(
      build_model(fixture_config("PerceiverForMultimodalAutoencoding")));
  model->to(test_device(), dtype);
  model->eval();
  const auto& c = model->config();
  const int64_t samples = c.num_frames * c.audio_samples_per_frame;
  MultimodalCase m;
  m.model = model;
  const auto video = on_test_device(torch::randn({2, c.num_frames, 3, c.image_size, c.image_size}, dtype));
  const auto audio = on_test_device(torch::randn({2, samples, 1}, dtype));
  m.inputs = {{"audio", audio}, {"image", video}, {"label", on_test_device(torch::zeros({2, c.num_labels()}, dtype))}};
  m.points = on_test_device(std::map<std::string, torch::Tensor>{
      {"image", torch::tensor({0, 5, 17, 64, 100, 127}, torch::kLong)}, {"audio", torch::tensor({1, 3, 6}, torch::kLong)}});
  m.labels = {{"image", video}, {"audio", audio}, {"label", on_test_device(torch::tensor({1, 3}, torch::kLong))}};
  return m;
}

TEST(VisionLosses, MultimodalReconstructionLosses) {
  auto m = multimodal_case(torch::kFloat64);
  m.model->loss_options.weights = {{"audio", 0.5}, {"image", 2.0}, {"label", 1.0}};
  auto out = m.model->forward(m.inputs, {}, m.points, m.labels);
  // Independent gathers: image index i -> (t, h, w) of the 2x8x8 output grid; audio patch j -> samples 4j..4j+3.
  const auto& video = m.labels["image"];
  std::vector<torch::Tensor> pixels;
  for (const int64_t i : {0, 5, 17, 64, 100, 127}) pixels.push_back(video.select(1, i / 64).select(-2, (i / 8) % 8).select(-1, i % 8));
  const auto image_target = torch::stack(pixels, 1);  // (B, 6, 3)
  const double image_loss = (out.logits["image"] - image_target).pow(2).mean().item<double>();
  std::vector<torch::Tensor> samples;
  for (const int64_t j : {1, 3, 6}) samples.push_back(m.labels["audio"].squeeze(-1).narrow(1, 4 * j, 4));
  const double audio_loss = (out.logits["audio"] - torch::cat(samples, 1)).pow(2).mean().item<double>();
  const auto logp = torch::log_softmax(out.logits["label"], -1);
  const double label_loss = -(logp[0][1] + logp[1][3]).item<double>() / 2;
  EXPECT_NEAR(out.losses.at("image").item<double>(), image_loss, 1e-12);
  EXPECT_NEAR(out.losses.at("audio").item<double>(), audio_loss, 1e-12);
  EXPECT_NEAR(out.losses.at("label").item<double>(), label_loss, 1e-12);
  EXPECT_NEAR(out.loss.item<double>(), 2.0 * image_loss + 0.5 * audio_loss + label_loss, 1e-12);

  NamedTensors named = {{"inputs.audio", m.inputs["audio"]},          {"inputs.image", m.inputs["image"]},
                        {"inputs.label", m.inputs["label"]},          {"subsampled_output_points.image", m.points["image"]},
                        {"subsampled_output_points.audio", m.points["audio"]}, {"labels.image", video}};
  const auto named_out = m.model->forward_named(named, {});
  EXPECT_TRUE(named_out.count("loss") && named_out.count("loss.image") && !named_out.count("loss.audio"));
  EXPECT_NEAR(named_out.at("loss.image").item<double>(), image_loss, 1e-12);

  // Without subsampled points every position is decoded (audio: 8 patches x 4 samples, image: 2x8x8).
  auto full = m.model->forward(m.inputs);
  EXPECT_EQ(full.logits.at("audio").sizes(), (std::vector<int64_t>{2, 32}));
  EXPECT_EQ(full.logits.at("image").sizes(), (std::vector<int64_t>{2, 128, 3}));
}

TEST(VisionLosses, MultimodalGradientsMatchFiniteDifferences) {
  auto m = multimodal_case(torch::kFloat64);
  for (const auto& p : m.model->named_parameters()) EXPECT_TRUE(p.value().requires_grad()) << p.key();
  expect_gradients_match(*m.model, [&] { return m.model->forward(m.inputs, {}, m.points, m.labels).loss; },
                         {"perceiver.input_preprocessor.padding.image", "perceiver.input_preprocessor.mask.label",
                          "perceiver.decoder.padding.audio", "perceiver.output_postprocessor.modalities.label.classifier.weight",
                          "perceiver.decoder.modalities.label.decoder.output_position_encodings.position_embeddings",
                          "perceiver.embeddings.latents"});
}

TEST(VisionLosses, AdamStepsReduceEachLoss) {
  {
    auto c = flow_case(torch::kFloat32);
    torch::optim::Adam adam(c.model->parameters(), torch::optim::AdamOptions(1e-4));
    const double first = c.model->forward(c.inputs, {}, c.labels).loss.item<double>();
    for (int step = 0; step < 20; ++step) {
      adam.zero_grad();
      c.model->forward(c.inputs, {}, c.labels).loss.backward();
      adam.step();
    }
    EXPECT_LT(c.model->forward(c.inputs, {}, c.labels).loss.item<double>(), first);
  }
  {
    auto m = multimodal_case(torch::kFloat32);
    torch::optim::Adam adam(m.model->parameters(), torch::optim::AdamOptions(1e-3));
    const auto first = m.model->forward(m.inputs, {}, m.points, m.labels);
    for (int step = 0; step < 15; ++step) {
      adam.zero_grad();
      m.model->forward(m.inputs, {}, m.points, m.labels).loss.backward();
      adam.step();
    }
    const auto last = m.model->forward(m.inputs, {}, m.points, m.labels);
    EXPECT_LT(last.loss.item<double>(), first.loss.item<double>());
    for (const auto& [name, loss] : first.losses)
      EXPECT_LT(last.losses.at(name).item<double>(), loss.item<double>()) << name;
  }
}

}  // namespace
}  // namespace perceiver::testing
