#include "trainers/plot.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <stdexcept>

#include "trainers/metrics_log.h"

namespace perceiver::trainers {

namespace {

// Tableau-10 colours (BGR): distinguishable and readable on white.
const cv::Scalar kColors[] = {{180, 119, 31}, {14, 127, 255}, {44, 160, 44},  {40, 39, 214},   {189, 103, 148},
                              {75, 86, 140},  {194, 119, 227}, {127, 127, 127}, {34, 189, 188}, {207, 190, 23}};
constexpr int kFont = cv::FONT_HERSHEY_SIMPLEX;

struct Axis {
  double lo, hi, spacing;
};

// Range widened to "nice" 1-2-5 tick multiples, about `target` ticks.
Axis nice_axis(double lo, double hi, int target, bool integer) {
  if (!(hi > lo)) {
    const double pad = lo == 0 ? 1.0 : std::abs(lo) * 0.1;
    lo -= pad, hi += pad;
  }
  if (!std::isfinite(hi - lo)) throw std::runtime_error("values span more than a double can hold");
  const double raw = (hi - lo) / target;
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  const double n = raw / magnitude;
  double spacing = (n < 1.5 ? 1 : n < 3 ? 2 : n < 7 ? 5 : 10) * magnitude;
  if (integer) spacing = std::max(spacing, 1.0);
  return {std::floor(lo / spacing + 1e-9) * spacing, std::ceil(hi / spacing - 1e-9) * spacing, spacing};
}

std::string tick_label(double v, const Axis& axis) {
  char buf[48];
  if (std::abs(v) < axis.spacing * 1e-6) v = 0;  // no "-0" or 1e-17 from accumulated error
  const double biggest = std::max(std::abs(axis.lo), std::abs(axis.hi));
  if (axis.spacing < 1e-3 || biggest >= 1e6) {
    std::snprintf(buf, sizeof buf, v == 0 ? "0" : "%.1e", v);
  } else {
    const int decimals = std::clamp(static_cast<int>(-std::floor(std::log10(axis.spacing) + 1e-9)), 0, 6);
    std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  }
  return buf;
}

void put_text(cv::Mat& img, const std::string& text, cv::Point anchor, double scale, int thickness,
              double align_x /*0 left, 0.5 centre, 1 right*/, double align_y /*0 top, 0.5 middle, 1 baseline*/,
              const cv::Scalar& color = {30, 30, 30}) {
  int baseline = 0;
  const auto size = cv::getTextSize(text, kFont, scale, thickness, &baseline);
  const cv::Point origin(anchor.x - static_cast<int>(align_x * size.width),
                         anchor.y + static_cast<int>((1 - align_y) * size.height));
  cv::putText(img, text, origin, kFont, scale, color, thickness, cv::LINE_AA);
}

std::string sanitize(const std::string& name) {
  std::string out;
  for (char c : name) out += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.') ? c : '_';
  return out.empty() ? "metric" : out;
}

}  // namespace

void write_line_chart(const std::filesystem::path& png, const std::string& title, const std::string& x_label,
                      const std::vector<Series>& series, const PlotOptions& options) {
  if (options.width < 200 || options.height < 150) {
    throw std::invalid_argument("plot '" + title + "': image too small (need at least 200x150)");
  }
  double x_lo = INFINITY, x_hi = -INFINITY, y_lo = INFINITY, y_hi = -INFINITY;
  bool integer_x = true;
  for (const auto& s : series) {
    if (s.x.size() != s.y.size()) throw std::invalid_argument("plot '" + title + "': series '" + s.name + "' has " +
                                                              std::to_string(s.x.size()) + " x but " +
                                                              std::to_string(s.y.size()) + " y values");
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      x_lo = std::min(x_lo, s.x[i]), x_hi = std::max(x_hi, s.x[i]);
      y_lo = std::min(y_lo, s.y[i]), y_hi = std::max(y_hi, s.y[i]);
      integer_x = integer_x && s.x[i] == std::floor(s.x[i]);
    }
  }
  if (!(x_lo <= x_hi)) throw std::runtime_error("plot '" + title + "': no finite values to draw");

  const int W = options.width, H = options.height;
  cv::Mat img(H, W, CV_8UC3, cv::Scalar(255, 255, 255));
  const cv::Rect area(95, 60, W - 95 - 30, H - 60 - 70);  // plot area inside the axes
  Axis xa{}, ya{};
  try {
    xa = nice_axis(x_lo, x_hi, 8, integer_x);
    // Headroom so that curves do not run along the frame (but no negative axis for positive data).
    const double pad = 0.04 * (y_hi - y_lo);
    ya = nice_axis(y_lo >= 0 ? std::max(0.0, y_lo - pad) : y_lo - pad, y_hi + pad, 6, false);
  } catch (const std::runtime_error& e) {
    throw std::runtime_error("plot '" + title + "': " + e.what());
  }
  auto px = [&](double x) { return area.x + (x - xa.lo) / (xa.hi - xa.lo) * area.width; };
  auto py = [&](double y) { return area.y + area.height - (y - ya.lo) / (ya.hi - ya.lo) * area.height; };

  const cv::Scalar grid(228, 228, 228), axis_color(60, 60, 60);
  const double tick_scale = 0.48;
  for (int i = 0; i < 100; ++i) {  // nice_axis gives about 6 ticks; the bound guards rounding
    const double v = ya.lo + i * ya.spacing;
    if (v > ya.hi + ya.spacing * 1e-6) break;
    const int y = static_cast<int>(std::lround(py(v)));
    cv::line(img, {area.x, y}, {area.x + area.width, y}, grid, 1);
    cv::line(img, {area.x - 6, y}, {area.x, y}, axis_color, 1);
    put_text(img, tick_label(v, ya), {area.x - 10, y}, tick_scale, 1, 1.0, 0.5);
  }
  for (int i = 0; i < 100; ++i) {
    const double v = xa.lo + i * xa.spacing;
    if (v > xa.hi + xa.spacing * 1e-6) break;
    const int x = static_cast<int>(std::lround(px(v)));
    cv::line(img, {x, area.y}, {x, area.y + area.height}, grid, 1);
    cv::line(img, {x, area.y + area.height}, {x, area.y + area.height + 6}, axis_color, 1);
    put_text(img, tick_label(v, xa), {x, area.y + area.height + 12}, tick_scale, 1, 0.5, 0.0);
  }
  cv::rectangle(img, area, axis_color, 1);
  put_text(img, title, {W / 2, 18}, 0.8, 2, 0.5, 0.0);
  put_text(img, x_label, {area.x + area.width / 2, H - 28}, 0.6, 1, 0.5, 0.0);

  cv::Mat plot_area = img(area);  // a view: lines are clipped to the plot area
  cv::Mat ink(area.size(), CV_8U, cv::Scalar(0));  // where data was drawn, to place the legend
  for (size_t k = 0; k < series.size(); ++k) {
    const auto& s = series[k];
    const auto color = kColors[k % std::size(kColors)];
    std::vector<cv::Point> run;
    auto flush = [&]() {
      if (run.size() == 1) {
        cv::circle(plot_area, run[0], 3, color, cv::FILLED, cv::LINE_AA);
        cv::circle(ink, run[0], 3, 255, cv::FILLED);
      }
      if (run.size() > 1) {
        cv::polylines(plot_area, run, false, color, 2, cv::LINE_AA);
        cv::polylines(ink, run, false, 255, 2);
      }
      run.clear();
    };
    const bool markers = s.x.size() <= 40;
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) {
        flush();
        continue;
      }
      const cv::Point p(static_cast<int>(std::lround(px(s.x[i]) - area.x)), static_cast<int>(std::lround(py(s.y[i]) - area.y)));
      run.push_back(p);
      if (markers) {
        cv::circle(plot_area, p, 3, color, cv::FILLED, cv::LINE_AA);
        cv::circle(ink, p, 3, 255, cv::FILLED);
      }
    }
    flush();
  }

  // Legend: top-right inside the plot area, on a white box so lines do not cross the text.
  if (!series.empty()) {
    int text_w = 0;
    for (const auto& s : series) {
      int baseline = 0;
      text_w = std::max(text_w, cv::getTextSize(s.name, kFont, 0.5, 1, &baseline).width);
    }
    const int row_h = 22, box_w = text_w + 50, box_h = row_h * static_cast<int>(series.size()) + 10;
    // The corner whose box covers the least data (top-right on ties).
    cv::Rect box;
    int least = -1;
    for (const cv::Point corner : {cv::Point(area.width - box_w - 10, 10), cv::Point(10, 10),
                                   cv::Point(area.width - box_w - 10, area.height - box_h - 10),
                                   cv::Point(10, area.height - box_h - 10)}) {
      const cv::Rect local = cv::Rect(corner, cv::Size(box_w, box_h)) & cv::Rect(0, 0, area.width, area.height);
      const int covered = cv::countNonZero(ink(local));
      if (least < 0 || covered < least) least = covered, box = local + area.tl();
    }
    cv::rectangle(img, box, cv::Scalar(255, 255, 255), cv::FILLED);
    cv::rectangle(img, box, cv::Scalar(170, 170, 170), 1);
    for (size_t k = 0; k < series.size(); ++k) {
      const int y = box.y + 5 + row_h * static_cast<int>(k) + row_h / 2;
      cv::line(img, {box.x + 8, y}, {box.x + 32, y}, kColors[k % std::size(kColors)], 3, cv::LINE_AA);
      put_text(img, series[k].name, {box.x + 40, y}, 0.5, 1, 0.0, 0.5);
    }
  }

  if (!png.parent_path().empty()) std::filesystem::create_directories(png.parent_path());
  if (!cv::imwrite(png.string(), img)) throw std::runtime_error(png.string() + ": cannot write PNG");
}

std::string metric_group(const std::string& metric_name) {
  std::string name = metric_name;
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const char* prefix : {"train_", "train/", "eval_", "eval/", "val_", "val/", "valid_", "test_", "test/"}) {
    if (name.rfind(prefix, 0) == 0 && name.size() > std::strlen(prefix)) {
      name = name.substr(std::strlen(prefix));
      break;
    }
  }
  if (name.find("loss") != std::string::npos) return "loss";
  if (name == "lr" || name.find("learning_rate") != std::string::npos) return "lr";
  return name;
}

void write_confusion_png(const std::filesystem::path& png, const torch::Tensor& counts,
                         const std::map<int64_t, std::string>& names) {
  const auto rows = counts.to(torch::kCPU, torch::kDouble).contiguous();
  const int n = static_cast<int>(rows.size(0));
  if (n == 0) throw std::runtime_error(png.string() + ": an empty confusion matrix has no picture");
  const auto shares = rows / rows.sum(1, true).clamp_min(1.0);
  const auto shares_u8 = (shares * 255.0).round().to(torch::kUInt8).contiguous();
  const int cell = std::clamp(720 / n, 2, 40);
  const bool labelled = cell >= 12;  // names and counts only where they can be read
  int margin = 10;
  for (int i = 0; labelled && i < n; ++i) {
    int baseline = 0;
    const auto it = names.find(i);
    margin = std::max(margin, 10 + cv::getTextSize(it != names.end() ? it->second : std::to_string(i), kFont, 0.4, 1,
                                                   &baseline).width);
  }
  const int top = labelled ? 48 : 30;
  const std::string title = "rows: true class, columns: predicted";
  int baseline = 0;
  const int title_width = cv::getTextSize(title, kFont, 0.45, 1, &baseline).width + 20;
  cv::Mat img(top + n * cell + 10, std::max(margin + n * cell + 10, title_width), CV_8UC3, cv::Scalar(255, 255, 255));
  cv::Mat grey(n, n, CV_8UC1, shares_u8.data_ptr<uint8_t>());
  cv::Mat coloured;
  cv::applyColorMap(grey, coloured, cv::COLORMAP_VIRIDIS);
  cv::resize(coloured, img(cv::Rect(margin, top, n * cell, n * cell)), {n * cell, n * cell}, 0, 0, cv::INTER_NEAREST);
  put_text(img, title, {10, 8}, 0.45, 1, 0, 0);
  for (int i = 0; labelled && i < n; ++i) {
    const auto it = names.find(i);
    const auto name = it != names.end() ? it->second : std::to_string(i);
    put_text(img, name, {margin - 5, top + i * cell + cell / 2}, 0.4, 1, 1, 0.5);
    // Column heads: as much of the name as a cell holds.
    std::string head = name;
    while (head.size() > 1 && cv::getTextSize(head, kFont, 0.35, 1, &baseline).width > cell - 2) head.pop_back();
    put_text(img, head, {margin + i * cell + cell / 2, top - 6}, 0.35, 1, 0.5, 1);
    for (int j = 0; cell >= 24 && j < n; ++j) {
      const double share = shares[i][j].item<double>();
      put_text(img, std::to_string(static_cast<int64_t>(rows[i][j].item<double>())),
               {margin + j * cell + cell / 2, top + i * cell + cell / 2}, 0.3, 1, 0.5, 0.5,
               share > 0.6 ? cv::Scalar(30, 30, 30) : cv::Scalar(240, 240, 240));
    }
  }
  if (!png.parent_path().empty()) std::filesystem::create_directories(png.parent_path());
  if (!cv::imwrite(png.string(), img)) throw std::runtime_error(png.string() + ": cannot write PNG");
}

std::vector<std::filesystem::path> plot_run(const std::filesystem::path& run_dir, const PlotOptions& options) {
  if (!std::filesystem::is_directory(run_dir)) throw std::runtime_error(run_dir.string() + ": not a run directory");
  const auto jsonl = run_dir / "metrics.jsonl";
  const auto rows = read_metrics_jsonl(jsonl);
  if (rows.empty()) throw std::runtime_error(run_dir.string() + ": no metrics to plot (" + jsonl.string() + " is missing or empty)");

  std::map<std::string, Series> by_name;
  std::vector<std::string> order;  // first appearance, so train_loss comes before eval_loss
  for (const auto& row : rows) {
    for (const auto& [name, value] : row.values) {
      auto [it, inserted] = by_name.try_emplace(name);
      if (inserted) it->second.name = name, order.push_back(name);
      it->second.x.push_back(static_cast<double>(row.step));
      it->second.y.push_back(value);
    }
  }
  std::map<std::string, std::vector<Series>> groups;
  for (const auto& name : order) groups[metric_group(name)].push_back(by_name[name]);

  std::vector<std::filesystem::path> written;
  for (const auto& [group, series] : groups) {
    const std::string title = group == "loss" ? "Loss" : group == "lr" ? "Learning rate" : group;
    const auto png = run_dir / "plots" / (sanitize(group) + ".png");
    bool any_finite = false;
    for (const auto& s : series) {
      for (double v : s.y) any_finite = any_finite || std::isfinite(v);
    }
    if (!any_finite) continue;  // e.g. a metric that was NaN throughout
    write_line_chart(png, title, "step", series, options);
    written.push_back(png);
  }
  if (written.empty()) throw std::runtime_error(run_dir.string() + ": metrics hold no finite values to plot");
  return written;
}

}  // namespace perceiver::trainers
