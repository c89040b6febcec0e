// The answers a user asks a Perceiver for, one pipeline per task, each on a ModelRunner (an eager
// model or an exported file, perceiver/runner.h): fill-mask, text and image classification, tiled
// optical flow with Middlebury's colour coding, multimodal reconstruction, whole-word fill-in, token
// classification (entities over bytes, long texts windowed); and the input
// settings (image processor, flow scale) a model directory or checkpoint asks for.
#pragma once

#include "perceiver/classification_pipeline.h"
#include "perceiver/fill_mask_pipeline.h"
#include "perceiver/flow_colour.h"
#include "perceiver/flow_pipeline.h"
#include "perceiver/input_settings.h"
#include "perceiver/multimodal_pipeline.h"
#include "perceiver/span_fill.h"
#include "perceiver/token_classification_pipeline.h"
