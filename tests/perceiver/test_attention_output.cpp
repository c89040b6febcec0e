// An attention's output projection applied to the values before they are weighted (probs (values
// W^T) instead of (probs values) W^T, summed over heads): the same values and gradients as HF's
// order, and taken only where it saves work. And a decoder that takes its queries a slice at a time
// without gradients: the same values as all at once.
#include <gtest/gtest.h>

#include <functional>

#include "perceiver/attention.h"
#include "perceiver/decoders.h"
#include "trainers/op_profile.h"
#include "tests/test_support.h"

namespace perceiver::testing {
namespace {

TEST(AttentionOutput, FoldedProjectionGivesWhatTheContextThenTheProjectionGives) {
  torch::manual_seed(41);
  const int64_t batch = 2, queries = 11, keys = 5, out_channels = 7;
  for (const int64_t heads : {1, 3}) {
    for (const bool with_residual : {false, true}) {
      SCOPED_TRACE(std::to_string(heads) + " heads" + (with_residual ? ", with residual" : ""));
      const int64_t head_channels = 4, v_channels = heads * head_channels;
      PerceiverSelfOutput output(v_channels, out_channels);
      const auto probs = torch::softmax(torch::randn({batch, heads, queries, keys}), -1);
      const auto values = torch::randn({batch, heads, keys, head_channels});
      const auto residual = with_residual ? torch::randn({batch, queries, out_channels}) : torch::Tensor();
      // HF's order in ATen's ops: the context with the heads side by side, then the projection.
      const auto context = torch::matmul(probs, values).transpose(1, 2).flatten(-2);
      auto expected = torch::nn::functional::linear(context, output->named_parameters()["dense.weight"],
                                                    output->named_parameters()["dense.bias"]);
      if (with_residual) expected = expected + residual;

      for (const bool fold : {false, true}) {
        SCOPED_TRACE(fold ? "folded" : "unfolded");
        {
          const torch::NoGradGuard no_grad;
          EXPECT_EQ(tensor_mismatch(output->forward(Attended{probs, values}, residual, fold), expected.detach(), 1e-5, 1e-6),
                    "");
        }
        // Gradients of every input and parameter, against HF's order run on the same leaves.
        const auto p = probs.clone().requires_grad_(true), v = values.clone().requires_grad_(true);
        const auto r = with_residual ? residual.clone().requires_grad_(true) : torch::Tensor();
        const auto weights = torch::randn({batch, queries, out_channels});
        output->zero_grad();
        (output->forward(Attended{p, v}, r, fold) * weights).sum().backward();
        std::vector<torch::Tensor> got{p.grad(), v.grad()};
        for (const auto& param : output->parameters()) got.push_back(param.grad().clone());
        if (with_residual) got.push_back(r.grad());

        const auto p2 = probs.clone().requires_grad_(true), v2 = values.clone().requires_grad_(true);
        const auto r2 = with_residual ? residual.clone().requires_grad_(true) : torch::Tensor();
        output->zero_grad();
        auto reference = output->forward(torch::matmul(p2, v2).transpose(1, 2).flatten(-2));
        if (with_residual) reference = reference + r2;
        (reference * weights).sum().backward();
        std::vector<torch::Tensor> want{p2.grad(), v2.grad()};
        for (const auto& param : output->parameters()) want.push_back(param.grad().clone());
        if (with_residual) want.push_back(r2.grad());
        for (size_t i = 0; i < want.size(); ++i)
          EXPECT_EQ(tensor_mismatch(got[i], want[i], 1e-4, 1e-5), "") << "gradient " << i;
      }
    }
  }
}

TEST(AttentionOutput, FoldsOnlyWhereItSavesWork) {
  // The optical-flow decoder: 6,144 pixels query 256 latents with one head; 42 % fewer FLOPs.
  EXPECT_TRUE(output_projection_folds(6144, 256, 256, 322, 1));
  // Self-attention (as many queries as keys, V = O): the same work either way.
  EXPECT_FALSE(output_projection_folds(256, 256, 1280, 1280, 8));
  EXPECT_FALSE(output_projection_folds(256, 256, 256, 256, 1));
  // The language decoder's eight heads each weigh all 256 latents for every output channel.
  EXPECT_FALSE(output_projection_folds(2048, 256, 768, 768, 8));
  // An encoder's latents querying many inputs, a classifier's one query.
  EXPECT_FALSE(output_projection_folds(256, 2048, 1280, 1280, 8));
  EXPECT_FALSE(output_projection_folds(1, 256, 256, 10, 1));
}

int64_t softmax_calls(const std::function<void()>& f) {
  trainers::OpProfile profile;
  f();
  int64_t calls = 0;
  for (const auto& op : profile.table())
    if (op.name == "perceiver::onednn_softmax" || op.name == "aten::_softmax") calls += op.calls;
  return calls;
}

// Queries with shared channels (as the optical-flow decoder's are), decoded 7 at a time and all at
// once: the same logits, on the first call and on later ones (which take the kept terms of the
// shared channels, a slice's rows of them), with one head (the output projection folded) and two.
TEST(DecoderPasses, SlicesOfTheQueriesDecodeWhatAllOfThemDecode) {
  torch::manual_seed(43);
  PerceiverConfig config;
  config.d_latents = 16;
  const int64_t batch = 2, queries = 30, own = 4, shared = 8, latents = 5;
  for (const int64_t heads : {1, 2}) {
    for (const bool residual : {false, true}) {
      SCOPED_TRACE(std::to_string(heads) + " heads" + (residual ? ", query residual" : ""));
      BasicDecoderOptions o;
      o.output_num_channels = 3;
      o.num_channels = own + shared;
      o.num_heads = heads;
      o.use_query_residual = residual;
      o.position_encoding.type = "none";
      o.queries_per_pass = queries;
      PerceiverBasicDecoder whole(config, o);
      o.queries_per_pass = 7;
      PerceiverBasicDecoder sliced(config, o);
      whole->eval();  // no dropout
      sliced->eval();
      {
        const torch::NoGradGuard no_grad;
        for (auto& item : sliced->named_parameters()) item.value().copy_(whole->named_parameters()[item.key()]);
      }
      const auto e = torch::randn({1, queries, shared});
      const auto all = torch::cat({torch::randn({batch, queries, own}), e.expand({batch, -1, -1})}, -1);
      const WithSharedChannels query(all, e);
      const auto apart = WithSharedChannels::apart(all.narrow(-1, 0, own), e);  // the same queries, never made whole
      const auto z = torch::randn({batch, latents, config.d_latents});

      // With gradients: all queries at once (AttentionOutput.* checks the folded projection it takes
      // against HF's order).
      auto with_gradients = [&] { return sliced->forward(query, z, {}, false).logits.tensor.detach(); };
      torch::Tensor expected;
      EXPECT_EQ(softmax_calls([&] { expected = with_gradients(); }), 1) << "with gradients: no slices";
      EXPECT_EQ(tensor_mismatch(sliced->forward(apart, z, {}, false).logits.tensor.detach(), expected, 1e-5, 1e-6), "")
          << "held apart, with gradients";
      const torch::NoGradGuard no_grad;
      EXPECT_EQ(softmax_calls([&] {
                  EXPECT_EQ(tensor_mismatch(sliced->forward(apart, z, {}, false).logits.tensor, expected, 1e-5, 1e-6), "");
                }),
                5)
          << "held apart, 7 at a time";
      EXPECT_EQ(softmax_calls([&] {
                  EXPECT_EQ(tensor_mismatch(sliced->forward(query, z, {}, false).logits.tensor, expected, 1e-5, 1e-6), "");
                }),
                5)
          << "30 queries 7 at a time";
      EXPECT_EQ(tensor_mismatch(sliced->forward(query, z, {}, false).logits.tensor, expected, 1e-5, 1e-6), "")
          << "second call";
      EXPECT_EQ(tensor_mismatch(whole->forward(query, z, {}, false).logits.tensor, expected, 1e-5, 1e-6), "")
          << "all at once";
      // Attention weights asked for: all at once.
      const auto with_attentions = sliced->forward(query, z, {}, true);
      ASSERT_EQ(with_attentions.cross_attentions.size(), 1U);
      EXPECT_EQ(with_attentions.cross_attentions[0].sizes(), (std::vector<int64_t>{batch, heads, queries, latents}));
      EXPECT_EQ(tensor_mismatch(with_attentions.logits.tensor, expected, 1e-5, 1e-6), "");
    }
  }
}

// A one-head cross-attention to inputs with shared channels weighs them without making their keys
// and values when nothing needs a backward: the same outputs and attention weights as with them.
TEST(AttentionWithoutKeys, GivesWhatTheKeysAndValuesGive) {
  torch::manual_seed(44);
  const int64_t batch = 2, latents = 6, inputs = 40, own = 5, shared = 9;
  for (const int64_t heads : {1, 2}) {
    SCOPED_TRACE(std::to_string(heads) + " heads");
    auto attention = small_cross_attention(own + shared, heads);
    const auto e = torch::randn({1, inputs, shared}) * 3 + 1;
    const WithSharedChannels x(torch::cat({torch::randn({batch, inputs, own}), e.expand({batch, -1, -1})}, -1), e);
    const auto q = torch::randn({batch, latents, 8});
    auto mask = torch::ones({batch, inputs});
    mask.index_put_({1, torch::indexing::Slice(0, 30)}, 0);
    const auto additive = invert_attention_mask(mask);
    // With gradients the keys and values are made (factored, for a batch of two).
    const auto made = attention->forward(q, x, additive, true);
    for (int call = 0; call < 2; ++call) {  // the second takes the kept terms of the shared channels
      const torch::NoGradGuard no_grad;
      const auto unmade = attention->forward(q, x, additive, true);
      EXPECT_EQ(tensor_mismatch(unmade.output, made.output.detach(), 1e-5, 1e-6), "") << "call " << call;
      EXPECT_EQ(tensor_mismatch(unmade.attention_probs, made.attention_probs.detach(), 1e-5, 1e-6), "") << "call " << call;
    }
  }
}

}  // namespace
}  // namespace perceiver::testing
