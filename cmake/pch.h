// The one precompiled header every target reuses.
#pragma once
#include <torch/torch.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>
