#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <cmath>
#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <sstream>

#include "tests/test_support.h"
#include "trainers/metrics_log.h"
#include "trainers/plot.h"
#include "trainers/progress.h"

namespace {

namespace fs = std::filesystem;
using namespace perceiver::trainers;

std::vector<std::string> lines_of(const fs::path& p) {
  std::ifstream in(p);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

TEST(TrainMetricsLog, AppendsJsonlAndWidensCsv) {
  perceiver::testing::TempDir run;
  {
    MetricsLog log(run.path());
    log.log(1, {{"train_loss", 2.5}, {"lr", 1e-4}});
    log.log(2, {{"train_loss", 2.0}, {"lr", 2e-4}});
    // Flushed per row: readable while the log is still open.
    EXPECT_EQ(lines_of(log.csv_path()).size(), 3u);
    log.log(2, {{"eval_loss", 2.25}, {"eval_accuracy", 0.5}});
    log.log(3, {{"train_loss", NAN}, {"lr", 3e-4}});
  }
  const auto csv = lines_of(run.path() / "metrics.csv");
  ASSERT_EQ(csv.size(), 5u);
  EXPECT_EQ(csv[0], "step,lr,train_loss,eval_accuracy,eval_loss");
  EXPECT_EQ(csv[1], "1,0.0001,2.5,,");
  EXPECT_EQ(csv[3], "2,,,0.5,2.25");
  const auto rows = read_metrics_jsonl(run.path() / "metrics.jsonl");
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[2].step, 2);
  EXPECT_EQ(rows[2].values.at("eval_accuracy"), 0.5);
  EXPECT_TRUE(std::isnan(rows[3].values.at("train_loss")));
  EXPECT_EQ(rows[3].values.at("lr"), 3e-4);
}

TEST(TrainMetricsLog, ResumeDropsRowsAfterCheckpointAndTornLine) {
  perceiver::testing::TempDir run;
  {
    MetricsLog log(run.path());
    for (int s = 1; s <= 5; ++s) log.log(s, {{"train_loss", 1.0 / s}});
  }
  std::ofstream(run.path() / "metrics.jsonl", std::ios::app) << "{\"step\": 6, \"train_lo";  // crash mid-row
  EXPECT_EQ(read_metrics_jsonl(run.path() / "metrics.jsonl").size(), 5u);
  {
    MetricsLog log(run.path(), 3);
    log.log(4, {{"train_loss", 0.3}});
  }
  const auto rows = read_metrics_jsonl(run.path() / "metrics.jsonl");
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows.back().step, 4);
  EXPECT_EQ(rows.back().values.at("train_loss"), 0.3);
  EXPECT_EQ(lines_of(run.path() / "metrics.csv").size(), 5u);

  std::ofstream(run.path() / "metrics.jsonl", std::ios::app) << "garbage\n{\"step\": 9}\n";
  try {
    read_metrics_jsonl(run.path() / "metrics.jsonl");
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("metrics.jsonl:5"), std::string::npos) << e.what();
  }
}

// Pixels of exactly this BGR colour (series colours are the first entries of the palette).
int count_color(const cv::Mat& img, cv::Vec3b bgr) {
  int n = 0;
  for (int y = 0; y < img.rows; ++y) {
    for (int x = 0; x < img.cols; ++x) n += img.at<cv::Vec3b>(y, x) == bgr;
  }
  return n;
}

void write_demo_run(const fs::path& run) {
  MetricsLog log(run);
  for (int s = 0; s <= 200; s += 5) {
    log.log(s, {{"train_loss", 2.3 * std::exp(-s / 80.0) + 0.2}, {"lr", 3e-4 * std::min(1.0, s / 50.0)}});
    if (s % 50 == 0) log.log(s, {{"eval_loss", 2.4 * std::exp(-s / 90.0) + 0.3}, {"eval_accuracy", 0.1 + s / 300.0}});
  }
}

TEST(TrainPlot, WritesOneChartPerGroupWithBothSeries) {
  perceiver::testing::TempDir run;
  write_demo_run(run.path());
  const auto files = plot_run(run.path());
  std::vector<std::string> names;
  for (const auto& f : files) names.push_back(f.filename().string());
  EXPECT_EQ(names, (std::vector<std::string>{"accuracy.png", "loss.png", "lr.png"}));
  const auto img = cv::imread((run.path() / "plots" / "loss.png").string());
  ASSERT_EQ(img.cols, 1000);
  ASSERT_EQ(img.rows, 600);
  EXPECT_GT(count_color(img, {180, 119, 31}), 200);  // train_loss line (first colour)
  EXPECT_GT(count_color(img, {14, 127, 255}), 50);   // eval_loss line (second colour)

  // Degenerate data: errors, not hangs or garbage images.
  const auto odd = run.path() / "odd.png";
  EXPECT_THROW(write_line_chart(odd, "t", "step", {{"huge", {0, 1}, {-1e308, 1e308}}}), std::runtime_error);
  EXPECT_THROW(write_line_chart(odd, "t", "step", {{"nan", {0, 1}, {NAN, NAN}}}), std::runtime_error);
  EXPECT_THROW(write_line_chart(odd, "t", "step", {{"ragged", {0, 1}, {1}}}), std::invalid_argument);
  write_line_chart(odd, "flat", "step", {{"one point", {5}, {0.25}}});
  EXPECT_EQ(cv::imread(odd.string()).cols, 1000);

  EXPECT_EQ(metric_group("eval/accuracy"), "accuracy");
  EXPECT_EQ(metric_group("train_mlm_loss"), "loss");
  EXPECT_EQ(metric_group("learning_rate"), "lr");
  EXPECT_EQ(metric_group("samples_per_second"), "samples_per_second");
}

TEST(TrainPlot, CliPlotsRunAndRejectsEmptyRun) {
  perceiver::testing::TempDir run;
  write_demo_run(run.path());
  const auto ok = perceiver::testing::run_cli("plot '" + run.path().string() + "' --width 640 --height 400");
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_NE(ok.out.find("loss.png"), std::string::npos) << ok.out;
  EXPECT_EQ(cv::imread((run.path() / "plots" / "lr.png").string()).cols, 640);

  perceiver::testing::TempDir empty;
  const auto bad = perceiver::testing::run_cli("plot '" + empty.path().string() + "'");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("no metrics"), std::string::npos) << bad.err;
}

TEST(TrainProgress, FormatsLine) {
  ProgressSnapshot s{120, 1000, 2.34561, 3e-4, 812.5, 3723};
  EXPECT_EQ(format_progress(s, 10), "step 120/1000 [=>        ]  12% | loss 2.3456 | lr 3.00e-04 | 812.5 samples/s | ETA 1:02:03");
  s.total_steps = 0;
  s.eta_seconds = -1;
  EXPECT_EQ(format_progress(s, 10), "step 120 | loss 2.3456 | lr 3.00e-04 | 812.5 samples/s");
  EXPECT_EQ(format_duration(59.6), "1:00");
}

TEST(TrainProgress, TtyRedrawsOneLine) {
  std::ostringstream out;
  ProgressOptions o;
  o.total_steps = 5;
  o.tty = true;
  o.stream = &out;
  o.redraw_seconds = 0;
  {
    ProgressReporter p(o);
    for (int s = 1; s <= 5; ++s) p.update(s, 1.0 / s, 1e-3, 8);
    p.finish();
  }
  const auto text = out.str();
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1);  // only the final newline
  EXPECT_EQ(std::count(text.begin(), text.end(), '\r'), 6);
  EXPECT_NE(text.find("\rstep 3/5 ["), std::string::npos) << text;
  EXPECT_NE(text.find("step 5/5 [==============================] 100% | loss 0.2000"), std::string::npos) << text;
}

TEST(TrainProgress, MessagesDoNotTearTheBar) {
  std::ostringstream terminal;  // bar and log share the terminal, as stderr does
  auto logger = std::make_shared<spdlog::logger>("progress-msg", std::make_shared<spdlog::sinks::ostream_sink_st>(terminal));
  logger->set_pattern("%v");
  ProgressOptions o;
  o.total_steps = 4;
  o.tty = true;
  o.stream = &terminal;
  o.logger = logger;
  o.redraw_seconds = 0;
  ProgressReporter p(o);
  p.update(1, 0.5, 1e-3, 2);
  p.message("eval accuracy 0.9");
  p.finish();
  const auto text = terminal.str();
  const auto bar = text.find("\rstep 1/4");
  const auto cleared = text.find("\r\x1b[Keval accuracy 0.9\n");
  const auto redrawn = text.find("\rstep 1/4", cleared);
  EXPECT_NE(bar, std::string::npos) << text;
  EXPECT_NE(cleared, std::string::npos) << text;
  EXPECT_NE(redrawn, std::string::npos) << text;
  EXPECT_LT(bar, cleared);
}

TEST(TrainProgress, PlainLinesEveryNSteps) {
  std::ostringstream out;
  auto logger = std::make_shared<spdlog::logger>("progress-test", std::make_shared<spdlog::sinks::ostream_sink_mt>(out));
  logger->set_pattern("%v");
  ProgressOptions o;
  o.total_steps = 25;
  o.tty = false;
  o.log_every_steps = 10;
  o.log_every_seconds = 1e9;
  o.logger = logger;
  ProgressReporter p(o);
  for (int s = 1; s <= 25; ++s) p.update(s, 0.5, 1e-3, 4);
  p.finish();
  const auto text = out.str();
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 3) << text;  // steps 10, 20 and the last
  EXPECT_NE(text.find("step 10/25  40% | loss 0.5000"), std::string::npos) << text;
  EXPECT_NE(text.find("step 25/25 100%"), std::string::npos) << text;
  EXPECT_EQ(text.find('\r'), std::string::npos);
}

}  // namespace
