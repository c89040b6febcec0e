// The answers a user asks a Perceiver for, one pipeline per task, each on a ModelRunner (an eager
// model or an exported file, perceiver/models/runner.h): fill-mask, text and image classification, tiled
// optical flow with Middlebury's colour coding, multimodal reconstruction, whole-word fill-in, token
// classification (entities over bytes, long texts windowed); and the input
// settings (image processor, flow scale) a model directory or checkpoint asks for.
#pragma once

#include "perceiver/pipelines/classification_pipeline.h"
#include "perceiver/pipelines/fill_mask_pipeline.h"
#include "perceiver/processing/flow_colour.h"
#include "perceiver/pipelines/flow_pipeline.h"
#include "perceiver/export/input_settings.h"
#include "perceiver/pipelines/multimodal_pipeline.h"
#include "perceiver/pipelines/span_fill.h"
#include "perceiver/pipelines/token_classification_pipeline.h"
