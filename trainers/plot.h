// PNG line charts of a run's metrics (OpenCV drawing): `perceiver plot RUN_DIR`.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace perceiver::trainers {

struct PlotOptions {
  int width = 1000;
  int height = 600;
};

struct Series {
  std::string name;
  std::vector<double> x, y;  // non-finite y values break the line
};

// One chart with axes, numbered ticks, title, axis labels and a legend. Throws std::runtime_error
// when there is nothing to draw or the PNG cannot be written.
void write_line_chart(const std::filesystem::path& png, const std::string& title, const std::string& x_label,
                      const std::vector<Series>& series, const PlotOptions& options = {});

// The chart a metric belongs to: "loss" for any *loss* (train and eval together), "lr" for the
// learning rate, otherwise the name without its train/eval/val/test prefix (train_accuracy and
// eval_accuracy share "accuracy").
std::string metric_group(const std::string& metric_name);

// A confusion matrix's (n, n) counts (row: true class, column: predicted) as a heat map of each row's
// shares, with the class names where they fit; errors name the file.
void write_confusion_png(const std::filesystem::path& png, const torch::Tensor& counts,
                         const std::map<int64_t, std::string>& names);

// Reads RUN_DIR/metrics.jsonl and writes RUN_DIR/plots/<group>.png for every group; returns the
// files written. Throws std::runtime_error when the run has no metrics.
std::vector<std::filesystem::path> plot_run(const std::filesystem::path& run_dir, const PlotOptions& options = {});

}  // namespace perceiver::trainers
