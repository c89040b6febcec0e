// The layout of perceiver/: every file in a folder that says what it holds, folders that include only
// folders below them, and no two files (a header and its .cpp taken as one) that include each other,
// directly or in a loop.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

namespace perceiver::testing {
namespace {

namespace fs = std::filesystem;

// Lowest first: a folder may include its own files and those of the folders before it.
const std::vector<std::string> kLayers = {"ops", "runtime", "io", "models", "processing", "export", "pipelines"};

struct Source {
  std::string folder;  // e.g. "models"
  std::string unit;    // e.g. "models/attention" (a header and its .cpp)
  std::vector<std::string> includes;  // units included, e.g. "ops/matmul"
};

std::vector<Source> sources() {
  const fs::path root = fs::path(PERCEIVER_SOURCE_DIR) / "perceiver";
  const std::regex include(R"re(^\s*#\s*include\s*[<"]perceiver/([a-z_0-9/]+)\.h[>"])re");
  std::vector<Source> out;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    const auto ext = entry.path().extension();
    if (!entry.is_regular_file() || (ext != ".h" && ext != ".cpp")) continue;
    Source s;
    const auto relative = fs::relative(entry.path(), root);
    s.folder = relative.has_parent_path() ? relative.begin()->string() : "";
    s.unit = (relative.parent_path() / relative.stem()).string();
    std::ifstream in(entry.path());
    std::string line;
    std::smatch m;
    while (std::getline(in, line))
      if (std::regex_search(line, m, include)) s.includes.push_back(m[1]);
    out.push_back(std::move(s));
  }
  return out;
}

std::string folder_of(const std::string& unit) { return unit.substr(0, unit.find('/')); }

TEST(Layout, EveryFileIsInALayerFolder) {
  const auto all = sources();
  ASSERT_GT(all.size(), 50u);
  for (const auto& s : all)
    EXPECT_NE(std::find(kLayers.begin(), kLayers.end(), s.folder), kLayers.end())
        << "perceiver/" << s.unit << " is not in one of the layer folders";
}

TEST(Layout, FoldersIncludeOnlyFoldersBelowThem) {
  const auto rank = [](const std::string& folder) {
    return std::find(kLayers.begin(), kLayers.end(), folder) - kLayers.begin();
  };
  for (const auto& s : sources())
    for (const auto& included : s.includes)
      EXPECT_LE(rank(folder_of(included)), rank(s.folder))
          << "perceiver/" << s.unit << " (" << s.folder << ") includes perceiver/" << included << ".h, a layer above it";
}

TEST(Layout, NoFilesIncludeEachOther) {
  std::map<std::string, std::set<std::string>> graph;
  for (const auto& s : sources())
    for (const auto& included : s.includes)
      if (included != s.unit) graph[s.unit].insert(included);
  // Depth-first search; a unit met again while still on the path closes a loop.
  std::map<std::string, int> state;  // 0 unseen, 1 on the path, 2 done
  std::vector<std::string> path;
  std::vector<std::string> loops;
  const std::function<void(const std::string&)> visit = [&](const std::string& unit) {
    state[unit] = 1;
    path.push_back(unit);
    for (const auto& next : graph[unit]) {
      if (state[next] == 1) {
        std::string loop;
        for (auto it = std::find(path.begin(), path.end(), next); it != path.end(); ++it) loop += *it + " -> ";
        loops.push_back(loop + next);
      } else if (state[next] == 0) {
        visit(next);
      }
    }
    path.pop_back();
    state[unit] = 2;
  };
  for (const auto& [unit, _] : graph)
    if (state[unit] == 0) visit(unit);
  for (const auto& loop : loops) ADD_FAILURE() << "include loop: " << loop;
}

}  // namespace
}  // namespace perceiver::testing
