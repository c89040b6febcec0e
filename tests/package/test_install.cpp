// The installed package as a C++ user meets it: `cmake --install` into a temporary prefix, the
// examples configured with find_package(perceiver) and built against it, then run on fixture
// models; their answers must equal the library's own, computed here in the test process.
#include <gtest/gtest.h>

#include <sstream>

#include "perceiver/pipelines/open_model.h"
#include "perceiver/pipelines/pipelines.h"
#include "perceiver/models/runner.h"
#include "tests/test_support.h"

namespace perceiver::testing {
namespace {

namespace fs = std::filesystem;

std::string quoted(const fs::path& p) { return "'" + p.string() + "'"; }

// Tab-separated lines of a program's output.
std::vector<std::vector<std::string>> rows(const std::string& text) {
  std::vector<std::vector<std::string>> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> fields;
    std::istringstream f(line);
    for (std::string field; std::getline(f, field, '\t');) fields.push_back(field);
    out.push_back(fields);
  }
  return out;
}

TEST(Package, InstallsAndTheExamplesBuildAgainstItAndRun) {
  TempDir tmp;
  const fs::path prefix = tmp.path() / "prefix", examples = tmp.path() / "examples";
  auto r = run_command("cmake --install " + quoted(PERCEIVER_BINARY_DIR) + " --prefix " + quoted(prefix));
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  for (const char* file : {"lib/cmake/perceiver/perceiverConfig.cmake", "lib/cmake/perceiver/perceiverTargets.cmake",
                           "include/perceiver-cpp/perceiver/pipelines/pipelines.h", "include/perceiver-cpp/datasets/loader.h",
                           "include/perceiver-cpp/trainers/trainer.h", "bin/perceiver"})
    EXPECT_TRUE(fs::exists(prefix / file)) << file;

  // The installed CLI finds its installed libraries.
  r = run_command(quoted(prefix / "bin" / "perceiver") + " env");
  EXPECT_EQ(r.exit_code, 0) << r.err;

  r = run_command("cmake -S " + quoted(fs::path(PERCEIVER_SOURCE_DIR) / "examples") + " -B " + quoted(examples) +
                  " -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH=" + quoted(prefix) + " && cmake --build " +
                  quoted(examples) + " -j 2");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;

  const fs::path mlm = hf_fixtures_dir() / "PerceiverForMaskedLM";
  const std::vector<std::string> texts = {"hello [MASK]orld", "[MASK][MASK] bytes"};
  r = run_command(quoted(examples / "fill_mask") + " " + quoted(mlm) + " '" + texts[0] + "' '" + texts[1] + "'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto fills = fill_mask(*open_model(mlm), texts);
  const auto got = rows(r.out);
  ASSERT_EQ(got.size(), texts.size()) << r.out;
  for (size_t i = 0; i < texts.size(); ++i)
    EXPECT_EQ(got[i], (std::vector<std::string>{fills[i].text, fills[i].filled, fills[i].predicted}));

#if PERCEIVER_WITH_OPENCV  // classify_images is built only where the library reads images
  const fs::path classifier = hf_fixtures_dir() / "PerceiverForImageClassificationLearned";
  const std::vector<fs::path> images = {hf_fixtures_dir() / "image_processor" / "checker_256x256.png",
                                        hf_fixtures_dir() / "image_processor" / "noise_120x90.png"};
  r = run_command(quoted(examples / "classify_images") + " " + quoted(classifier) + " " + quoted(images[0]) + " " +
                  quoted(images[1]));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto image_model = open_model(classifier);
  const auto answers = classify_images(*image_model, image_processor_for(*image_model), images);
  const auto lines = rows(r.out);
  ASSERT_EQ(lines.size(), images.size()) << r.out;
  for (size_t i = 0; i < images.size(); ++i) {
    ASSERT_EQ(lines[i].size(), 3u) << r.out;
    EXPECT_EQ(lines[i][0], images[i].string());
    EXPECT_EQ(lines[i][1], answers[i].labels.front());
    EXPECT_NEAR(std::stod(lines[i][2]), answers[i].top_k.front().score, 1e-5);
  }
#endif

  // Errors reach the user as one line and a non-zero exit.
  r = run_command(quoted(examples / "fill_mask") + " " + quoted(tmp.path() / "missing") + " 'x'");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("missing"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace perceiver::testing
