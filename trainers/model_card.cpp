#include "trainers/model_card.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <yaml-cpp/yaml.h>

#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

#include "datasets/file_store.h"
#include "perceiver/pipelines/open_model.h"
#include "perceiver/io/json_io.h"
#include "trainers/predict.h"

namespace perceiver::trainers {
namespace fs = std::filesystem;

namespace {

// The Hub's pipeline tags that our heads answer (huggingface.co/docs/hub/models-widgets).
const std::set<std::string>& hub_tags() {
  static const std::set<std::string> tags{"fill-mask", "text-classification", "image-classification",
                                          "token-classification"};
  return tags;
}

// The shortest text that reads back as the same double (a plain YAML float, not 0.75700000000000001).
std::string number(double v) { return fmt::format("{}", v); }

std::string read_text(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void usage_section(std::ostringstream& out, const std::string& architecture) {
  const bool text = architecture == "PerceiverForMaskedLM" || architecture == "PerceiverForSequenceClassification" ||
                    architecture == "PerceiverForTokenClassification";
  const bool image = architecture.rfind("PerceiverForImageClassification", 0) == 0;
  // transformers has no token-classification Perceiver: perceiver-cpp ships the class, on its modules.
  const bool shipped_class = architecture == "PerceiverForTokenClassification";
  out << "## How to use\n\n"
      << "In Python, with `transformers` (this folder is a Hugging Face model directory):\n\n```python\n";
  if (shipped_class)
    out << "from perceiver_token_classification import " << architecture
        << "  # perceiver-cpp's python/ folder, on sys.path\nfrom transformers import PerceiverTokenizer\n\n";
  else
    out << "from transformers import " << architecture << (text ? ", PerceiverTokenizer" : "")
        << (image ? ", PerceiverImageProcessor" : "") << "\n\n";
  out << "model = " << architecture << ".from_pretrained(\"path/to/this/folder\")\n";
  if (text) out << "tokenizer = PerceiverTokenizer()  # byte-level: no vocabulary file\n";
  if (image) out << "processor = PerceiverImageProcessor.from_pretrained(\"path/to/this/folder\")\n";
  out << "```\n\n";
  std::string inputs;
  try {
    inputs = predict_task(architecture).inputs;
  } catch (const std::exception&) {  // no pipeline for this head (the bare PerceiverModel)
  }
  if (!inputs.empty())
    out << "With perceiver-cpp's command line (INPUT...: " << inputs << "):\n\n```bash\n"
        << "perceiver predict --model path/to/this/folder INPUT...\n```\n\n";
  out << "In C++, with perceiver-cpp's library (`find_package(perceiver)`, target `perceiver::core`):\n\n```cpp\n"
      << "#include <perceiver/pipelines/pipelines.h>\n#include <perceiver/models/runner.h>\n\n"
      << "const auto model = perceiver::open_model(\"path/to/this/folder\");  // then perceiver::fill_mask, "
         "classify_texts, ...\n```\n\n";
}

std::string title_of(const std::string& task_type) {
  std::string out = task_type;
  bool start = true;
  for (char& c : out) {
    if (c == '-' || c == '_') c = ' ', start = true;
    else if (start) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c))), start = false;
  }
  return out;
}

}  // namespace

std::string hub_pipeline_tag(const std::string& architecture) {
  try {
    const auto& name = predict_task(architecture).name;
    return hub_tags().count(name) ? name : "";
  } catch (const std::exception&) {
    return "";
  }
}

std::string render_model_card(const ModelCard& card) {
  const auto tag = hub_pipeline_tag(card.architecture);
  std::vector<std::pair<std::string, double>> metrics;  // what the evaluation reports, in name order
  for (const auto& [name, value] : card.eval)
    if (name != "data_skipped") metrics.emplace_back(name, value);

  YAML::Emitter y;
  y << YAML::BeginMap;
  y << YAML::Key << "library_name" << YAML::Value << "transformers";
  y << YAML::Key << "tags" << YAML::Value << YAML::Flow << std::vector<std::string>{"perceiver", "perceiver-cpp"};
  if (!tag.empty()) y << YAML::Key << "pipeline_tag" << YAML::Value << tag;
  if (!card.datasets.empty()) y << YAML::Key << "datasets" << YAML::Value << card.datasets;
  if (!metrics.empty()) {
    y << YAML::Key << "metrics" << YAML::Value << YAML::BeginSeq;
    for (const auto& [name, value] : metrics) y << name;
    y << YAML::EndSeq;
    const auto task_type = tag.empty() ? std::string(card.task.empty() ? "other" : card.task) : tag;
    y << YAML::Key << "model-index" << YAML::Value << YAML::BeginSeq << YAML::BeginMap;
    y << YAML::Key << "name" << YAML::Value << card.name;
    y << YAML::Key << "results" << YAML::Value << YAML::BeginSeq << YAML::BeginMap;
    y << YAML::Key << "task" << YAML::Value << YAML::BeginMap << YAML::Key << "type" << YAML::Value << task_type
      << YAML::Key << "name" << YAML::Value << title_of(task_type) << YAML::EndMap;
    y << YAML::Key << "dataset" << YAML::Value << YAML::BeginMap << YAML::Key << "name" << YAML::Value
      << card.eval_dataset << YAML::Key << "type" << YAML::Value << card.eval_dataset << YAML::Key << "split"
      << YAML::Value << card.eval_split << YAML::EndMap;
    y << YAML::Key << "metrics" << YAML::Value << YAML::BeginSeq;
    for (const auto& [name, value] : metrics)
      y << YAML::BeginMap << YAML::Key << "name" << YAML::Value << name << YAML::Key << "type" << YAML::Value << name
        << YAML::Key << "value" << YAML::Value << number(value) << YAML::EndMap;
    y << YAML::EndSeq << YAML::EndMap << YAML::EndSeq << YAML::EndMap << YAML::EndSeq;
  }
  y << YAML::EndMap;
  if (!y.good()) throw std::logic_error("model card front matter: " + y.GetLastError());

  std::ostringstream out;
  out << "---\n" << y.c_str() << "\n---\n\n# " << card.name << "\n\n"
      << "A Perceiver (`" << card.architecture << "`, task `" << card.task << "`) trained with "
      << "perceiver-cpp (C++, LibTorch); its config.json and model.safetensors are Hugging Face's "
      << "format and load in `transformers`.\n\n";
  out << "## Evaluation\n\n";
  if (metrics.empty()) {
    out << "Not evaluated yet.\n\n";
  } else {
    out << "At step " << card.eval_step << ", on " << card.eval_dataset << " (" << card.eval_split << "):\n\n"
        << "| metric | value |\n|---|---|\n";
    for (const auto& [name, value] : metrics) out << "| " << name << " | " << fmt::format("{:.4f}", value) << " |\n";
    out << "\n";
  }
  out << "## Training\n\n";
  if (card.hardware.empty())
    out << "Not recorded: this card was made from the model's config.json"
        << (card.from.empty() ? std::string() : " (" + card.from + ")") << ".\n\n";
  else
    out << "- " << card.steps << " steps in "
        << (card.train_seconds < 60 ? fmt::format("{:.1f} seconds", card.train_seconds)
                                    : fmt::format("{:.1f} minutes", card.train_seconds / 60))
        << " on "
      << card.hardware << ", precision " << card.precision << "\n"
      << "- data: " << (card.datasets.empty() ? std::string("(none named)") : fmt::format("{}", fmt::join(card.datasets, ", ")))
      << "\n"
      << "- " << (card.from.empty() ? std::string("trained from scratch") : "fine-tuned from `" + card.from + "`")
      << "\n\n";
  usage_section(out, card.architecture);
  if (!card.run_file.empty())
    out << "## Run file\n\n`perceiver train --config run.yaml` with this folder's run.yaml:\n\n```yaml\n"
        << card.run_file << (card.run_file.back() == '\n' ? "" : "\n") << "```\n";
  return out.str();
}

std::string model_card_front_matter(const std::string& card_text, const std::string& file) {
  if (card_text.rfind("---\n", 0) != 0) throw std::runtime_error(file + ": no YAML front matter (the card must start with ---)");
  const auto end = card_text.find("\n---\n", 3);
  if (end == std::string::npos) throw std::runtime_error(file + ": the YAML front matter has no closing ---");
  return card_text.substr(4, end - 3);
}

void write_export_model_card(const fs::path& source_dir, const fs::path& exported_file, const fs::path& card) {
  std::string text;
  const auto source_card = source_dir / "README.md";
  bool ours = false;
  if (fs::is_regular_file(source_card)) {
    text = read_text(source_card);
    try {
      const auto front = YAML::Load(model_card_front_matter(text, source_card.string()));
      for (const auto& t : front["tags"]) ours = ours || t.as<std::string>() == "perceiver-cpp";
    } catch (const std::exception&) {  // someone else's card: make our own below
    }
  }
  if (!ours) {
    ModelCard c;
    const auto config = read_json_file(source_dir / "config.json");
    const auto architectures = config.value("architectures", nlohmann::json::array());
    c.architecture = architectures.empty() ? "PerceiverModel" : architectures[0].get<std::string>();
    c.name = source_dir.filename().string();
    c.task = hub_pipeline_tag(c.architecture);
    c.from = source_dir.string();  // hardware left empty: how it was trained is not known here
    text = render_model_card(c);
  }
  text += fmt::format(
      "\n## TorchScript export\n\n`{}` was traced from this model by `perceiver export`. It runs without the "
      "perceiver-cpp library: `torch.jit.load(\"{}\")` in Python or `torch::jit::load` in C++, with the "
      "forward's inputs in the order its perceiver.json lists them; `perceiver infer --model {}` and "
      "`perceiver predict --model {}` run it too.\n",
      exported_file.filename().string(), exported_file.filename().string(), exported_file.filename().string(),
      exported_file.filename().string());
  datasets::write_file_atomically(card, text);
}

}  // namespace perceiver::trainers
