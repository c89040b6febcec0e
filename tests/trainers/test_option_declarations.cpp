// The run-file keys of the tasks and the data sources are declared once (datasets::OptionSpec): every
// declaration is well formed, its default parses as its type and matches what the code used to fall
// back to, and a section with an undeclared key is refused naming it.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "datasets/fortunes.h"
#include "datasets/labelled_text.h"
#include "datasets/mlm_collator.h"
#include "datasets/sources.h"
#include "datasets/text_corpus.h"
#if PERCEIVER_WITH_OPENCV
#include "datasets/image_shards.h"
#endif
#include "perceiver/models/architectures.h"
#include "tests/test_support.h"
#include "trainers/classification_objective.h"
#include "trainers/task_options.h"
#include "trainers/tasks.h"

namespace perceiver::testing {
namespace {

using datasets::OptionSpec;
using datasets::OptionSpecs;

std::string trim(const std::string& s) {
  const auto a = s.find_first_not_of(' '), b = s.find_last_not_of(' ');
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

// The values of "enum[a, b, c]".
std::vector<std::string> enum_values(const std::string& type) {
  std::vector<std::string> out;
  const auto inner = type.substr(5, type.size() - 6);
  size_t start = 0;
  while (start <= inner.size()) {
    const auto comma = inner.find(',', start);
    out.push_back(trim(inner.substr(start, comma == std::string::npos ? std::string::npos : comma - start)));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

bool is_enum(const std::string& type) { return type.rfind("enum[", 0) == 0 && type.back() == ']'; }

bool known_type(const std::string& type) {
  static const std::set<std::string> plain = {"int",       "float",      "bool",         "string", "list",
                                              "list[int]", "list[float]", "list[string]", "map",    "any"};
  if (plain.count(type)) return true;
  if (!is_enum(type)) return false;
  for (const auto& v : enum_values(type))
    if (v.empty()) return false;
  return true;
}

// Whether `node` is a value of `type` (a scalar of a list's item type for list[T]).
bool parses_as(const YAML::Node& node, const std::string& type) {
  try {
    if (type == "int") return node.IsScalar() && (node.as<int64_t>(), true);
    if (type == "float") return node.IsScalar() && (node.as<double>(), true);
    if (type == "bool") return node.IsScalar() && (node.as<bool>(), true);
    if (type == "string") return node.IsScalar();
    if (type == "map") return node.IsMap();
    if (type == "any") return true;
    if (type == "list") return node.IsSequence();
    if (type.rfind("list[", 0) == 0) {
      if (!node.IsSequence()) return false;
      const auto item = type.substr(5, type.size() - 6);
      for (const auto& v : node)
        if (!parses_as(v, item)) return false;
      return true;
    }
    if (is_enum(type)) {
      const auto values = enum_values(type);
      return node.IsScalar() && std::find(values.begin(), values.end(), node.Scalar()) != values.end();
    }
  } catch (const YAML::Exception&) {
  }
  return false;
}

// Every problem with a list of declarations, one line each, naming `where`.
std::vector<std::string> problems_of(const OptionSpecs& specs, const std::string& where) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const auto& s : specs) {
    const auto at = where + "." + s.key;
    if (s.key.empty()) out.push_back(where + ": a key without a name");
    if (!seen.insert(s.key).second) out.push_back(at + ": declared twice");
    if (s.help.empty()) out.push_back(at + ": no help");
    if (s.help.find('\n') != std::string::npos) out.push_back(at + ": help is more than one line");
    if (!known_type(s.type)) out.push_back(at + ": unknown type '" + s.type + "'");
    if (s.required && !s.default_value.empty()) out.push_back(at + ": required, yet has a default");
    if (s.default_value.empty()) continue;
    try {
      if (!parses_as(YAML::Load(s.default_value), s.type))
        out.push_back(at + ": default '" + s.default_value + "' is not " + s.type);
    } catch (const YAML::Exception& e) {
      out.push_back(at + ": default '" + s.default_value + "' is not YAML: " + e.what());
    }
  }
  return out;
}

const OptionSpec& declared(const OptionSpecs& specs, const std::string& key) {
  const auto* spec = datasets::find_option(specs, key);
  if (!spec) throw std::runtime_error("'" + key + "' is not declared");
  return *spec;
}

template <typename T>
T default_of(const OptionSpecs& specs, const std::string& key) {
  return YAML::Load(declared(specs, key).default_value).as<T>();
}

const OptionSpecs& source_options(const std::string& kind, const std::string& name) {
  for (const auto& k : datasets::source_kinds())
    if (k.name == kind)
      for (const auto& s : k.sources)
        if (s.name == name) {
          static std::map<std::string, OptionSpecs> kept;  // source_kinds() returns copies
          return kept[kind + "/" + name] = s.options;
        }
  throw std::runtime_error("no " + kind + " source " + name);
}

// find_source of each kind: the factory is looked up and its keys declared, nothing is read.
const std::map<std::string, std::function<void(datasets::SourceOptions&)>>& finders() {
  namespace pd = datasets;
  static const std::map<std::string, std::function<void(pd::SourceOptions&)>> f = {
      {"text", [](pd::SourceOptions& o) { pd::find_source(pd::text_sources(), o, "text"); }},
      {"labelled-text", [](pd::SourceOptions& o) { pd::find_source(pd::labelled_text_sources(), o, "labelled-text"); }},
      {"token-labels", [](pd::SourceOptions& o) { pd::find_source(pd::token_label_sources(), o, "token-labels"); }},
#if PERCEIVER_WITH_OPENCV
      {"image", [](pd::SourceOptions& o) { pd::find_source(pd::image_sources(), o, "image"); }},
      {"flow", [](pd::SourceOptions& o) { pd::find_source(pd::flow_sources(), o, "flow"); }},
      {"clip", [](pd::SourceOptions& o) { pd::find_source(pd::clip_sources(), o, "clip"); }},
#endif
  };
  return f;
}

TEST(OptionDeclarations, EveryTaskDeclaresItsKeysWithHelpTypeAndAParsingDefault) {
  std::set<std::string> kinds;
  for (const auto& k : datasets::source_kinds()) kinds.insert(k.name);
  ASSERT_FALSE(trainers::task_registry().empty());
  for (const auto& [name, info] : trainers::task_registry()) {
    SCOPED_TRACE(name);
    EXPECT_NE(info.make, nullptr);
    EXPECT_FALSE(info.help.empty());
    EXPECT_EQ(problems_of(info.options, "task"), std::vector<std::string>{});
    EXPECT_EQ(problems_of(info.data_options, "data"), std::vector<std::string>{});
    EXPECT_EQ(problems_of(info.source_options, "data.train"), std::vector<std::string>{});
    EXPECT_EQ(datasets::find_option(info.options, "name"), nullptr) << "make_task declares `name`";
    for (const auto& key : trainers::loader_data_keys())
      EXPECT_EQ(datasets::find_option(info.data_options, key), nullptr) << key << " is the trainer's";
    EXPECT_TRUE(kinds.count(info.source_kind)) << "unknown source kind '" << info.source_kind << "'";
    for (const char* key : {"train", "eval"}) {
      const auto* spec = datasets::find_option(info.data_options, key);
      ASSERT_NE(spec, nullptr) << key;
      EXPECT_EQ(spec->type, "map");
      EXPECT_NE(spec->help.find("source section"), std::string::npos) << spec->help;
    }
    // The task's own keys in a source section must not shadow a source's.
    for (const auto& k : datasets::source_kinds())
      if (k.name == info.source_kind)
        for (const auto& s : k.sources)
          for (const auto& o : info.source_options)
            EXPECT_EQ(datasets::find_option(s.options, o.key), nullptr) << o.key << " is also " << s.name << "'s";
  }
  EXPECT_EQ(problems_of({trainers::task_name_option()}, "task"), std::vector<std::string>{});
}

TEST(OptionDeclarations, EverySourceDeclaresItsKeysWithHelpTypeAndAParsingDefault) {
  const auto kinds = datasets::source_kinds();
  std::set<std::string> names;
  for (const auto& kind : kinds) {
    names.insert(kind.name);
    EXPECT_FALSE(kind.sources.empty()) << kind.name;
    for (const auto& source : kind.sources) {
      SCOPED_TRACE(kind.name + " source " + source.name);
      EXPECT_FALSE(source.help.empty());
      EXPECT_EQ(datasets::find_option(source.options, "type"), nullptr) << "`type` is every section's";
      EXPECT_EQ(problems_of(source.options, "data.train"), std::vector<std::string>{});
    }
  }
  std::set<std::string> expected = {"text", "labelled-text", "token-labels"};
#if PERCEIVER_WITH_OPENCV
  expected.insert({"image", "flow", "clip"});
#endif
  EXPECT_EQ(names, expected);
}

TEST(OptionDeclarations, EverySourceRefusesAnUndeclaredKeyAndAcceptsItsDeclaredOnes) {
  for (const auto& kind : datasets::source_kinds()) {
    ASSERT_TRUE(finders().count(kind.name)) << kind.name;
    const auto& find = finders().at(kind.name);
    for (const auto& source : kind.sources) {
      SCOPED_TRACE(kind.name + " source " + source.name);
      // A typo of the source's first key (or a made-up one) is named with its file, line and the known keys.
      const auto typo = source.options.empty() ? std::string("colour") : source.options.front().key + "x";
      const auto node = YAML::Load("type: " + source.name + "\n" + typo + ": 1\n");
      trainers::SourceSection bad(node, "run.yaml", "data.train");
      find(bad);
      const auto m = error_of([&] { bad.section().finish(); });
      EXPECT_NE(m.find("run.yaml:2: 'data.train." + typo + "' is not a known key here"), std::string::npos) << m;
      EXPECT_NE(m.find("known: "), std::string::npos) << m;
      if (!source.options.empty())
        EXPECT_NE(m.find("did you mean '" + source.options.front().key + "'"), std::string::npos) << m;
      // Every declared key (with its default, or any value) and `type` pass.
      YAML::Node all;
      all["type"] = source.name;
      for (const auto& o : source.options) all[o.key] = o.default_value.empty() ? YAML::Load("x") : YAML::Load(o.default_value);
      trainers::SourceSection good(all, "run.yaml", "data.eval");
      find(good);
      EXPECT_EQ(error_of([&] { good.section().finish(); }), "");
    }
  }
}

#if PERCEIVER_WITH_OPENCV  // image classification reads images: a text-only build has no such task
TEST(OptionDeclarations, TheTasksOwnSourceKeysArePartOfTheSection) {
  const auto& info = trainers::task_registry().at("image_classification");
  trainers::SourceSection s(YAML::Load("{type: idx, images: a, labels: b, limit: 5, limt: 6}"), "run.yaml", "data.eval",
                            info.source_options);
  finders().at("image")(s);
  EXPECT_EQ(s.section().get<int64_t>("limit"), 5);
  const auto m = error_of([&] { s.section().finish(); });
  EXPECT_EQ(m, "run.yaml:1: 'data.eval.limt' is not a known key here (did you mean 'limit'? known: images, labels, "
               "limit, type)");
}
#endif

TEST(OptionDeclarations, DefaultsAreTheOnesTheCodeUsedBefore) {
  // Where a source's options struct has the default, the declaration says the same.
  EXPECT_EQ(default_of<int64_t>(source_options("text", "kjv"), "holdout_every"), datasets::KjvSplitOptions{}.holdout_every);
  EXPECT_EQ(default_of<std::string>(source_options("text", "text"), "unit"), "file");
  EXPECT_EQ(default_of<std::string>(source_options("text", "jsonl"), "jsonl_field"), datasets::TextReadOptions{}.jsonl_field);
  const datasets::FortuneLangIdOptions fortunes;
  const auto& f = source_options("labelled-text", "fortunes");
  EXPECT_EQ(default_of<size_t>(f, "max_bytes"), fortunes.max_bytes);
  EXPECT_EQ(default_of<size_t>(f, "min_bytes"), fortunes.min_bytes);
  EXPECT_EQ(default_of<double>(f, "validation_fraction"), fortunes.validation_fraction);
  EXPECT_EQ(default_of<double>(f, "test_fraction"), fortunes.test_fraction);
  EXPECT_EQ(default_of<bool>(f, "balance"), fortunes.balance);
  EXPECT_EQ(default_of<uint64_t>(f, "split_seed"), fortunes.split_seed);
  const datasets::LabelledReadOptions labelled;
  EXPECT_EQ(default_of<std::string>(source_options("labelled-text", "labelled_text"), "text_field"), labelled.text_field);
  EXPECT_EQ(default_of<std::string>(source_options("labelled-text", "labelled_text"), "label_field"), labelled.label_field);
#if PERCEIVER_WITH_OPENCV
  const datasets::ImageListOptions list;
  EXPECT_EQ(default_of<std::string>(source_options("image", "image_list"), "image_field"), list.image_field);
  EXPECT_EQ(default_of<std::string>(source_options("image", "image_list"), "label_field"), list.label_field);
  EXPECT_EQ(default_of<int64_t>(source_options("image", "image_folder"), "height"), list.height);
  EXPECT_EQ(default_of<std::string>(source_options("image", "image_shards"), "label_key"),
            datasets::ImageShardOptions{}.label_key);
  const datasets::SyntheticFlowOptions flow;
  EXPECT_EQ(default_of<double>(source_options("flow", "synthetic"), "max_displacement"), flow.max_displacement);
  EXPECT_EQ(default_of<std::vector<double>>(source_options("flow", "synthetic"), "pan"),
            (std::vector<double>{flow.pan[0], flow.pan[1]}));
  EXPECT_EQ(default_of<double>(source_options("flow", "shifted_images"), "max_displacement"),
            datasets::ShiftedImageOptions{}.max_displacement);
#endif
  // The classification keys both classification tasks share are declared once, with the objective's defaults.
  const auto& shared = trainers::classification_options();
  EXPECT_EQ(default_of<std::string>(shared, "problem_type"), "single_label_classification");
  EXPECT_EQ(default_of<std::string>(shared, "label_separator"), "|");
  EXPECT_EQ(default_of<double>(shared, "label_smoothing"), 0.0);
  for (const char* name : {"sequence_classification", "image_classification"}) {  // the tasks on ClassificationObjective
    const auto it = trainers::task_registry().find(name);
    if (it == trainers::task_registry().end()) continue;  // image classification needs OpenCV
    for (const auto& spec : shared) EXPECT_NE(datasets::find_option(it->second.options, spec.key), nullptr) << name << " " << spec.key;
  }
}

TEST(OptionDeclarations, TaskSectionReadsDeclaredKeysOnly) {
  const OptionSpecs specs = {{"steps", "int", "3", "steps"},
                             {"seq_len", "int", "", "default: the model's"},
                             {"path", "string", "", "the file", true}};
  trainers::TaskSection s(YAML::Load("{steps: null, sq_len: 4, other: 1}"), "run.yaml", "task", specs);
  EXPECT_EQ(s.get<int>("steps"), 3);  // null is unset: the declared default
  EXPECT_FALSE(s.has("seq_len"));
  EXPECT_EQ(s.get<int>("seq_len", 7), 7);
  EXPECT_THROW(s.get<int>("seq_len"), std::logic_error);      // no declared default
  EXPECT_THROW(s.get<int>("steps", 5), std::logic_error);     // the default is declared: not written twice
  EXPECT_THROW(s.get<int>("undeclared"), std::logic_error);
  EXPECT_THROW(s.has("undeclared"), std::logic_error);
  EXPECT_EQ(error_of([&] { s.required("path"); }), "run.yaml:1: 'task.path' is required");
  EXPECT_EQ(error_of([&] { s.get<std::string>("path"); }), "run.yaml:1: 'task.path' is required");
  // Every undeclared key is reported at once.
  EXPECT_EQ(error_of([&] { s.finish(); }),
            "run.yaml:1: 'task.sq_len' is not a known key here (did you mean 'seq_len'? known: path, seq_len, steps)\n"
            "run.yaml:1: 'task.other' is not a known key here (known: path, seq_len, steps)");
}

TEST(OptionDeclarations, MakeTaskRefusesAnUndeclaredTaskKey) {
  const auto m = error_of([] { trainers::make_task(YAML::Load("{name: mlm, mlm_probabilty: 0.2}"), "run.yaml"); });
  EXPECT_NE(m.find("run.yaml:1: 'task.mlm_probabilty' is not a known key here (did you mean 'mlm_probability'? known: "),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("name"), std::string::npos) << m;
  EXPECT_EQ(error_of([] { trainers::make_task(YAML::Load("{name: mlm, mlm_probability: 0.2}"), "run.yaml"); }), "");
  EXPECT_EQ(error_of([] { trainers::make_task(YAML::Load("mlm"), "run.yaml"); }), "");
}

// eval_mlm_probability: evaluation masks its own share of the bytes, training mlm_probability's; the
// count of scored bytes (the weight of eval/accuracy) shows which share a step masked.
TEST(OptionDeclarations, MaskedLmEvaluationKeepsItsOwnMaskingRate) {
  const auto task = trainers::make_task(
      YAML::Load("{name: mlm, mlm_probability: 0.5, eval_mlm_probability: 0.1}"), "run.yaml");
  auto model = build_model(PerceiverConfig::from_json(
      {{"d_model", 16}, {"d_latents", 16}, {"num_latents", 4}, {"num_self_attends_per_block", 1},
       {"max_position_embeddings", 100}, {"architectures", {"PerceiverForMaskedLM"}}}));
  const datasets::Example batch{{"input_ids", torch::randint(6 + 'a', 6 + 'z', {2, 100}, torch::kLong)},
                                {"attention_mask", torch::ones({2, 100}, torch::kLong)}};
  auto generator = datasets::make_generator(3);
  const auto scored = [&](bool training) {
    return task->step(*model, batch, generator, training).metrics.entries().at("accuracy").second;
  };
  EXPECT_EQ(scored(true), 2 * 50);
  EXPECT_EQ(scored(false), 2 * 10);
  // Without it, evaluation masks as training does.
  const auto same = trainers::make_task(YAML::Load("{name: mlm, mlm_probability: 0.3}"), "run.yaml");
  EXPECT_EQ(same->step(*model, batch, generator, false).metrics.entries().at("accuracy").second, 2 * 30);
  EXPECT_NE(error_of([] { trainers::make_task(YAML::Load("{name: mlm, eval_mlm_probability: 0}"), "run.yaml"); })
                .find("eval_mlm_probability"),
            std::string::npos);
}

}  // namespace
}  // namespace perceiver::testing
