// Inputs whose concatenated positions are held apart (WithSharedChannels::apart, what the model takes
// from PreprocessorOutput::parts()): the parts must make HF's whole (B, N, C) tensor, and the decoders
// that read the parts must give what they give on the whole. (The attention layers that take the parts
// are checked against the reference in test_attention_plans.)
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "perceiver/models/attention.h"
#include "perceiver/models/decoders.h"
#include "perceiver/models/modality_preprocessors.h"
#include "perceiver/models/position_encoding.h"
#include "tests/test_support.h"

namespace perceiver::testing {
namespace {

TEST(ChannelsApart, WholeSizesAndRowsAreThoseOfTheConcatenation) {
  torch::manual_seed(51);
  const auto own = torch::randn({2, 5, 3}), shared = torch::randn({1, 5, 2});
  const auto expected = torch::cat({own, shared.expand({2, -1, -1})}, -1);
  const auto apart = WithSharedChannels::apart(own, shared);
  EXPECT_TRUE(apart.held_apart());
  EXPECT_TRUE(torch::equal(apart.whole(), expected));
  EXPECT_TRUE(torch::equal(apart.own_channels(), own));
  EXPECT_EQ(apart.size(0), 2);
  EXPECT_EQ(apart.size(1), 5);
  EXPECT_EQ(apart.size(-1), 5);
  EXPECT_EQ(apart.size(2), 5);
  const auto slice = apart.rows(1, 3);
  EXPECT_TRUE(slice.held_apart());
  EXPECT_EQ(slice.shared_offset, 1);
  EXPECT_TRUE(torch::equal(slice.whole(), expected.narrow(1, 1, 3)));
  EXPECT_TRUE(torch::equal(slice.rows(1, 2).whole(), expected.narrow(1, 2, 2)));

  // The same tensor made whole: own_channels is a view of its first channels.
  const WithSharedChannels made(expected, shared);
  EXPECT_FALSE(made.held_apart());
  EXPECT_TRUE(torch::equal(made.own_channels(), own));
  EXPECT_TRUE(made.whole().is_same(expected));
  EXPECT_EQ(made.size(-1), 5);

  const auto wrong = error_of([&] { WithSharedChannels::apart(own, torch::randn({1, 4, 2})); });
  EXPECT_NE(wrong.find("own [2, 5, 3] and shared [1, 4, 2]"), std::string::npos) << wrong;
}

// HF's inputs are `own` (B, N, C) followed by the Fourier features of `grid`: forward leaves them
// unmade, as parts, and whole() makes them.
void expect_apart_makes_the_inputs(PreprocessorImpl& preprocessor, const torch::Tensor& x, const torch::Tensor& own,
                                   const std::vector<int64_t>& grid, int64_t bands) {
  FourierPositionEncodingOptions f;
  f.num_bands = bands;
  f.max_resolution = grid;
  const auto positions = generate_fourier_features(build_linear_positions(grid).unsqueeze(0), f);
  const auto expected = torch::cat({own, positions.expand({own.size(0), -1, -1})}, -1);

  const auto apart = preprocessor.forward(x, false);
  EXPECT_EQ(tensor_mismatch(apart.whole(), expected, 1e-6, 1e-6), "");
  ASSERT_FALSE(apart.inputs.defined());
  const auto network = apart.parts();
  ASSERT_TRUE(network.held_apart());
  EXPECT_TRUE(torch::equal(network.own, own));
  EXPECT_EQ(tensor_mismatch(network.whole(), expected, 1e-6, 1e-6), "");
}

TEST(ChannelsApart, PreprocessorsThatConcatenatePositionsLeaveThemApart) {
  torch::manual_seed(52);
  ImagePreprocessorOptions image;
  image.prep_type = "pixels";
  image.spatial_downsample = 1;
  image.position_encoding = fourier_position_encoding(3, {6, 6});
  PerceiverImagePreprocessor pixels(image);
  const auto images = torch::randn({2, 3, 6, 6});
  expect_apart_makes_the_inputs(*pixels, images, images.permute({0, 2, 3, 1}).reshape({2, 36, 3}), {6, 6}, 3);

  AudioPreprocessorOptions audio;
  audio.samples_per_patch = 4;
  audio.position_encoding = fourier_position_encoding(2, {8});
  PerceiverAudioPreprocessor patches(audio);
  const auto samples = torch::randn({3, 32});
  expect_apart_makes_the_inputs(*patches, samples, samples.reshape({3, 8, 4}), {8}, 2);

  image.concat_or_add_pos = "add";  // added positions: nothing to hold apart
  image.position_encoding = {};
  image.position_encoding.trainable = TrainablePositionEncodingOptions{{6, 6}, 3};
  PerceiverImagePreprocessor added(image);
  const auto out = added->forward(torch::randn({2, 3, 6, 6}), false);
  EXPECT_TRUE(out.inputs.defined());
  EXPECT_TRUE(out.whole().is_same(out.inputs));
  EXPECT_FALSE(out.parts().held_apart());
}

// A basic decoder's queries read only the inputs' batch, dtype and sizes (HF's index_dims =
// inputs.shape[2:], which a Fourier decoder encodes): held apart, the whole's sizes.
TEST(ChannelsApart, BasicDecoderQueriesAreThoseOfTheWholeInputs) {
  torch::manual_seed(54);
  PerceiverConfig config;
  config.d_latents = 8;
  for (const std::string type : {"trainable", "fourier"}) {
    SCOPED_TRACE(type);
    BasicDecoderOptions o;
    o.output_num_channels = 2;
    o.output_index_dims = {5};
    o.num_channels = type == "fourier" ? 1 + 2 * 2 : 7;  // 1-D positions and 2 bands of sine and cosine
    if (type == "fourier") {
      o.position_encoding = fourier_position_encoding(2, {5});
    } else {
      o.position_encoding.trainable = TrainablePositionEncodingOptions{{5}, 7};
    }
    PerceiverBasicDecoder decoder(config, o);
    const auto apart = WithSharedChannels::apart(torch::randn({3, 4, 2}), torch::randn({1, 4, 3}));
    const auto expected = decoder->decoder_query(apart.whole(), std::nullopt, apart.own, {}).whole();
    const auto queries = decoder->decoder_query(apart, std::nullopt, apart.own, {});
    EXPECT_TRUE(torch::equal(queries.whole(), expected));
  }
}

}  // namespace
}  // namespace perceiver::testing
