#include "trainers/predict.h"

#include <torch/torch.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <iomanip>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>

#include "perceiver/pipelines/pipelines.h"
#include "perceiver/models/problem_type.h"
#if PERCEIVER_WITH_OPENCV
#include "datasets/flow.h"
#include "datasets/images.h"
#include "datasets/multimodal.h"
#include "perceiver/processing/image_writer.h"
#endif

namespace perceiver::trainers {
namespace fs = std::filesystem;
using nlohmann::json;

json tensor_json(const torch::Tensor& t) {
  const auto c = t.to(torch::kCPU, torch::kDouble).contiguous();
  const double* data = c.data_ptr<double>();
  std::function<json(int64_t, int64_t)> build = [&](int64_t dim, int64_t offset) -> json {
    if (dim == c.dim()) return data[offset];
    json out = json::array();
    for (int64_t i = 0; i < c.size(dim); ++i) out.push_back(build(dim + 1, offset + i * c.stride(dim)));
    return out;
  };
  return build(0, 0);
}

namespace {

// ---- inputs ----

// Non-empty lines of a list file that do not start with '#'.
std::vector<std::string> list_lines(const fs::path& list) {
  std::vector<std::string> lines;
  if (list.empty()) return lines;
  std::ifstream in(list);
  if (!in) throw std::runtime_error(list.string() + ": cannot read the list file");
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty() && line.front() != '#') lines.push_back(line);
  }
  return lines;
}

// A list-file path: relative to the list file's folder.
std::string resolve(const fs::path& list, const std::string& path) {
  const fs::path p(path);
  return p.is_absolute() ? path : (list.parent_path() / p).string();
}

// A list line's fields: split at tabs when there is one, else at runs of spaces.
std::vector<std::string> fields(const std::string& line) {
  std::vector<std::string> out;
  if (line.find('\t') != std::string::npos) {
    std::istringstream in(line);
    for (std::string f; std::getline(in, f, '\t');)
      if (!f.empty()) out.push_back(f);
  } else {
    std::istringstream in(line);
    for (std::string f; in >> f;) out.push_back(f);
  }
  return out;
}

std::vector<PredictInput> texts(const std::vector<std::string>& args, const fs::path& list) {
  std::vector<PredictInput> out;
  for (const auto& a : args) out.push_back({a});
  for (const auto& line : list_lines(list)) out.push_back({line});
  return out;
}

// Two paths per input: consecutive arguments, list lines of two fields, and (given `folder`) every
// folder argument as the pairs `folder` makes of it, in command-line order.
std::vector<PredictInput> path_pairs(const std::vector<std::string>& args, const fs::path& list,
                                     const std::function<std::vector<PredictInput>(const fs::path&)>& folder,
                                     const std::string& what) {
  std::vector<PredictInput> out;
  std::optional<std::string> pending;  // the first path of a pair
  auto unpaired = [&](const std::string& path) {
    return std::invalid_argument("expected " + what + " in pairs; '" + path + "' has no partner");
  };
  std::error_code ec;
  for (const auto& a : args) {
    if (folder && fs::is_directory(a, ec)) {
      if (pending) throw unpaired(*pending);
      const auto pairs = folder(a);
      out.insert(out.end(), pairs.begin(), pairs.end());
    } else if (pending) {
      out.push_back({*pending, a});
      pending.reset();
    } else {
      pending = a;
    }
  }
  if (pending) throw unpaired(*pending);
  for (const auto& line : list_lines(list)) {
    const auto f = fields(line);
    if (f.size() != 2)
      throw std::invalid_argument(list.string() + ": expected two paths (" + what + ") per line, found '" + line + "'");
    out.push_back({resolve(list, f[0]), resolve(list, f[1])});
  }
  return out;
}

// ---- answers ----

json label_scores_json(const std::vector<LabelScore>& scores) {
  json out = json::array();
  for (const auto& s : scores) out.push_back({{"label", s.label}, {"score", s.score}});
  return out;
}

// "\tlabel (score)" for each entry of a top_k answer.
std::string top_k_text(const json& top_k) {
  std::ostringstream out;
  out << std::setprecision(4);
  for (const auto& s : top_k) out << "\t" << s.at("label").get<std::string>() << " (" << s.at("score").get<double>() << ")";
  return out.str();
}

json classification_json(const Classification& c) {
  json item = {{"input", c.input}, {"problem_type", c.problem_type}};
  if (!c.values.empty()) {
    item["value"] = c.values.size() == 1 ? json(c.values[0]) : json(c.values);
  } else {
    if (ProblemType(c.problem_type).multi_label())
      item["labels"] = c.labels;
    else
      item["label"] = c.labels.front();
    item["top_k"] = label_scores_json(c.top_k);
  }
  item["logits"] = tensor_json(c.logits);
  return item;
}

std::string classification_text(const json& a) {
  const auto input = a.at("input").get<std::string>();
  return a.contains("value") ? input + "\t" + a.at("value").dump() : input + top_k_text(a.at("top_k"));
}

json fill_json(const MaskFill& f) {
  json spans = json::array();
  for (const auto& s : f.spans) {
    json top = json::array(), masks = json::array();
    for (const auto& c : s.top_k)
      top.push_back({{"text", c.text}, {"tokens", c.tokens}, {"score", c.score}, {"sequence", c.sequence}});
    for (const auto& position : s.positions) {
      json tokens = json::array();
      for (const auto& t : position) tokens.push_back({{"token", t.token}, {"token_str", t.token_str}, {"score", t.score}});
      masks.push_back(tokens);
    }
    spans.push_back({{"start", s.start}, {"length", s.length}, {"top_k", top}, {"masks", masks}});
  }
  return {{"input", f.text}, {"filled", f.filled}, {"predicted", f.predicted}, {"spans", spans},
          {"logits", tensor_json(f.logits)}};
}

std::string fill_text(const json& a) {
  std::ostringstream out;
  out << a.at("filled").get<std::string>();
  for (const auto& s : a.at("spans")) {
    out << "\n  [MASK] x" << s.at("length").get<int64_t>() << " at " << s.at("start").get<int64_t>() << ":";
    for (const auto& c : s.at("top_k"))
      out << "  " << json(c.at("text")).dump() << " " << std::setprecision(3) << c.at("score").get<double>();
  }
  return out.str();
}

// One JSON answer per pipeline result.
template <typename Result>
json answers(const std::vector<Result>& results, json (*to_json)(const Result&)) {
  json out = json::array();
  for (const auto& r : results) out.push_back(to_json(r));
  return out;
}

std::vector<std::string> single_field(const std::vector<PredictInput>& inputs) {
  std::vector<std::string> out;
  for (const auto& i : inputs) out.push_back(i.front());
  return out;
}

PredictTask fill_mask_task() {
  return {"fill-mask",
          {"PerceiverForMaskedLM"},
          "texts with [MASK] once per byte to predict (a list file: one text per line)",
          texts,
          [](ModelRunner& runner, const std::vector<PredictInput>& inputs, const PredictOptions& o) {
            FillMaskOptions fo;
            fo.top_k = o.top_k;
            fo.batch_size = o.batch_size;
            fo.decode = parse_decode(o.decode.empty() ? "parallel" : o.decode);
            return answers(fill_mask(runner, single_field(inputs), fo), fill_json);
          },
          fill_text};
}

PredictTask text_classification_task() {
  return {"text-classification",
          {"PerceiverForSequenceClassification"},
          "texts (a list file: one text per line)",
          texts,
          [](ModelRunner& runner, const std::vector<PredictInput>& inputs, const PredictOptions& o) {
            return answers(classify_texts(runner, single_field(inputs), {o.top_k, o.batch_size}), classification_json);
          },
          classification_text};
}

json token_classification_json(const TokenClassificationResult& r) {
  json entities = json::array();
  for (const auto& e : r.entities)
    entities.push_back({{"label", e.label}, {"score", e.score}, {"start", e.start}, {"end", e.end}, {"word", e.word},
                        {"byte_start", e.byte_start}, {"byte_end", e.byte_end}});
  return {{"input", r.text}, {"entities", entities}, {"logits", tensor_json(r.logits)}};
}

// The text, then one line per entity: label, score, character span and its text.
std::string token_classification_text(const json& a) {
  std::ostringstream out;
  out << a.at("input").get<std::string>();
  if (a.at("entities").empty()) out << "\n  (no entities)";
  for (const auto& e : a.at("entities"))
    out << "\n  " << e.at("label").get<std::string>() << " (" << std::setprecision(4) << e.at("score").get<double>()
        << ") " << e.at("start").get<int64_t>() << "-" << e.at("end").get<int64_t>() << " " << e.at("word").dump();
  return out.str();
}

PredictTask token_classification_task() {
  return {"token-classification",
          {"PerceiverForTokenClassification"},
          "texts of any length, windowed past the model's positions (a list file: one text per line); "
          "entities by --aggregation",
          texts,
          [](ModelRunner& runner, const std::vector<PredictInput>& inputs, const PredictOptions& o) {
            auto to = token_classification_options_for(runner);
            to.aggregation = parse_aggregation(o.aggregation);
            if (!o.decode.empty()) to.decode = parse_tag_decode(o.decode);
            to.batch_size = o.batch_size;
            return answers(classify_tokens(runner, single_field(inputs), to), token_classification_json);
          },
          token_classification_text};
}

#if PERCEIVER_WITH_OPENCV

// Image files in a folder (the image-folder extensions), sorted by name.
std::vector<fs::path> image_files(const fs::path& dir) {
  const auto extensions = datasets::ImageFolderOptions{}.extensions;
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir)) {
    auto ext = e.path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    if (e.is_regular_file() && std::find(extensions.begin(), extensions.end(), ext) != extensions.end())
      files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) throw std::invalid_argument(dir.string() + ": no image files in this folder");
  return files;
}

std::vector<PredictInput> image_inputs(const std::vector<std::string>& args, const fs::path& list) {
  std::vector<PredictInput> out;
  auto add = [&](const std::string& path) {
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
      for (const auto& f : image_files(path)) out.push_back({f.string()});
    } else {
      out.push_back({path});
    }
  };
  for (const auto& a : args) add(a);
  for (const auto& line : list_lines(list)) add(resolve(list, line));
  return out;
}

// File names for each input's outputs: the first path's stem, made unique within the run.
std::vector<std::string> output_stems(const std::vector<PredictInput>& inputs) {
  std::map<std::string, int> seen;
  std::vector<std::string> out;
  for (const auto& i : inputs) {
    auto stem = fs::path(i.front()).filename().stem().string();
    if (stem.empty()) stem = fs::path(i.front()).parent_path().filename().string();  // "frames/"
    const int n = ++seen[stem];
    out.push_back(n == 1 ? stem : stem + "-" + std::to_string(n));
  }
  return out;
}

// Creates the output folder; none, or an output that would overwrite an input, is an error.
void prepare_output_dir(const PredictOptions& o, const std::string& task, const std::vector<PredictInput>& inputs,
                    const std::vector<fs::path>& outputs) {
  if (o.out_dir.empty()) throw std::invalid_argument(task + " writes files: give an output folder (--out DIR)");
  fs::create_directories(o.out_dir);
  std::set<fs::path> in;
  std::error_code ec;
  for (const auto& i : inputs)
    for (const auto& p : i)
      if (fs::exists(p, ec)) in.insert(fs::weakly_canonical(p));
  for (const auto& p : outputs)
    if (in.count(fs::weakly_canonical(p)))
      throw std::invalid_argument(p.string() + " is an input and would be overwritten: choose another --out folder");
}

torch::Tensor image_tensor(const fs::path& path) {
  const auto rgb = load_image_rgb(path);
  return torch::from_blob(rgb.data, {rgb.rows, rgb.cols, 3}, torch::kUInt8).clone();
}

PredictTask image_classification_task() {
  return {"image-classification",
          {"PerceiverForImageClassificationLearned", "PerceiverForImageClassificationFourier",
           "PerceiverForImageClassificationConvProcessing"},
          "image files or folders of them (a list file: one path per line, relative to the list's folder)",
          image_inputs,
          [](ModelRunner& runner, const std::vector<PredictInput>& inputs, const PredictOptions& o) {
            const auto names = single_field(inputs);
            return answers(classify_images(runner, image_processor_for(runner),
                                           std::vector<fs::path>(names.begin(), names.end()), {o.top_k, o.batch_size}),
                           classification_json);
          },
          classification_text};
}

PredictTask optical_flow_task() {
  return {"optical-flow",
          {"PerceiverForOpticalFlow"},
          "FRAME1 FRAME2 image pairs, or folders of frames (each consecutive pair); writes OUT/<frame1>.flo and "
          "OUT/<frame1>_flow.png (a list file: two paths per line)",
          [](const std::vector<std::string>& args, const fs::path& list) {
            return path_pairs(
                args, list,
                [](const fs::path& dir) {
                  const auto files = image_files(dir);
                  std::vector<PredictInput> pairs;
                  for (size_t i = 0; i + 1 < files.size(); ++i) pairs.push_back({files[i].string(), files[i + 1].string()});
                  if (pairs.empty()) throw std::invalid_argument(dir.string() + ": a folder of frames needs two or more images");
                  return pairs;
                },
                "frame 1 and frame 2");
          },
          [](ModelRunner& runner, const std::vector<PredictInput>& inputs, const PredictOptions& o) {
            auto flow_options = flow_options_for(runner);
            if (o.flow_scale) flow_options.flow_scale = *o.flow_scale;
            flow_options.min_overlap = o.min_overlap;
            flow_options.batch_size = o.batch_size;
            const auto stems = output_stems(inputs);
            std::vector<fs::path> files;
            for (const auto& s : stems) files.insert(files.end(), {o.out_dir / (s + ".flo"), o.out_dir / (s + "_flow.png")});
            prepare_output_dir(o, "optical flow", inputs, files);
            json out = json::array();
            for (size_t i = 0; i < inputs.size(); ++i) {
              const auto frame1 = image_tensor(inputs[i][0]), frame2 = image_tensor(inputs[i][1]);
              if (frame1.sizes() != frame2.sizes())
                throw std::invalid_argument(inputs[i][0] + " is " + std::to_string(frame1.size(1)) + "x" +
                                            std::to_string(frame1.size(0)) + " but " + inputs[i][1] + " is " +
                                            std::to_string(frame2.size(1)) + "x" + std::to_string(frame2.size(0)) +
                                            ": the frames of a pair must have the same size");
              const auto flow = predict_flow(runner, frame1, frame2, flow_options);
              const auto& flo = files[2 * i];
              const auto& png = files[2 * i + 1];
              datasets::write_flo(flo, flow.flow);
              write_flow_png(png, flow.flow, o.flow_max_radius);
              out.push_back({{"input", inputs[i]}, {"flo", flo.string()}, {"png", png.string()},
                             {"flow_scale", flow_options.flow_scale}, {"logits", tensor_json(flow.logits)}});
            }
            return out;
          },
          [](const json& a) {
            return a.at("input")[0].get<std::string>() + " " + a.at("input")[1].get<std::string>() + " -> " +
                   a.at("flo").get<std::string>() + ", " + a.at("png").get<std::string>();
          }};
}

// The clip's audio as the model takes it: one channel at the expected rate, cropped or zero-padded
// to the model's length.
torch::Tensor model_audio(const fs::path& wav, int64_t samples, int64_t rate) {
  datasets::AudioOptions options;
  options.num_samples = samples;
  options.mono = false;
  const auto audio = datasets::read_wav(wav, options);
  if (audio.sample_rate != rate)
    throw std::invalid_argument(wav.string() + ": " + std::to_string(audio.sample_rate) + " Hz audio; the model takes " +
                                std::to_string(rate) + " Hz: resample it (or give --sample-rate if the model differs)");
  if (audio.samples.size(1) != 1)
    throw std::invalid_argument(wav.string() + ": " + std::to_string(audio.samples.size(1)) +
                                " channels; the model takes mono audio: mix it down to one channel");
  return audio.samples;
}

PredictTask multimodal_task() {
  return {"multimodal-autoencoding",
          {"PerceiverForMultimodalAutoencoding"},
          "VIDEO WAV pairs (VIDEO: a video file or a folder of frames; WAV: mono at audio_samples_per_frame x 25 Hz); "
          "writes OUT/<video>/frame_NNNN.png and OUT/<video>/audio.wav (a list file: two paths per line)",
          [](const std::vector<std::string>& args, const fs::path& list) {
            return path_pairs(args, list, nullptr, "a video and a WAV");
          },
          [](ModelRunner& runner, const std::vector<PredictInput>& inputs, const PredictOptions& o) {
            const auto& config = runner.config();
            if (config.output_shape.size() != 4) throw std::invalid_argument("config.json: output_shape needs 4 values");
            const int64_t rate = o.sample_rate.value_or(config.audio_samples_per_frame * 25);
            datasets::VideoOptions video;
            video.num_frames = config.num_frames;
            video.height = config.output_shape[2];
            video.width = config.output_shape[3];
            const auto stems = output_stems(inputs);
            std::vector<fs::path> dirs;
            for (const auto& s : stems) dirs.push_back(o.out_dir / s);
            prepare_output_dir(o, "multimodal autoencoding", inputs, dirs);
            json out = json::array();
            for (size_t i = 0; i < inputs.size(); ++i) {
              const auto audio = model_audio(inputs[i][1], config.num_frames * config.audio_samples_per_frame, rate);
              const auto frames = datasets::read_video(inputs[i][0], video);
              const auto r = reconstruct_clip(runner, frames, audio, {o.chunks, o.top_k});
              fs::create_directories(dirs[i]);
              json written = json::array();
              for (int64_t t = 0; t < r.image.size(0); ++t) {
                std::ostringstream name;
                name << "frame_" << std::setw(4) << std::setfill('0') << t << ".png";
                write_image_rgb(dirs[i] / name.str(), r.image[t].permute({1, 2, 0}));
                written.push_back((dirs[i] / name.str()).string());
              }
              const auto wav = dirs[i] / "audio.wav";
              datasets::write_wav(wav, r.audio.clamp(-1, 1), rate);
              json logits = json::object();
              for (const auto& [name, t] : r.logits) logits[name.substr(std::string("logits.").size())] = tensor_json(t);
              out.push_back({{"input", inputs[i]}, {"frames", written}, {"audio", wav.string()},
                             {"label", r.top_k.front().label}, {"top_k", label_scores_json(r.top_k)}, {"logits", logits}});
            }
            return out;
          },
          [](const json& a) {
            return a.at("input")[0].get<std::string>() + " " + a.at("input")[1].get<std::string>() + " -> " +
                   std::to_string(a.at("frames").size()) + " frames, " + a.at("audio").get<std::string>() +
                   top_k_text(a.at("top_k"));
          }};
}

#endif  // PERCEIVER_WITH_OPENCV

}  // namespace

const std::vector<PredictTask>& predict_tasks() {
  static const std::vector<PredictTask> tasks = {
      fill_mask_task(), text_classification_task(), token_classification_task(),
#if PERCEIVER_WITH_OPENCV
      image_classification_task(), optical_flow_task(), multimodal_task(),
#endif
  };
  return tasks;
}

const PredictTask& predict_task(const std::string& architecture) {
  std::string list;
  for (const auto& task : predict_tasks())
    for (const auto& a : task.architectures) {
      if (a == architecture) return task;
      list += (list.empty() ? "" : ", ") + a;
    }
  throw std::invalid_argument("predict answers " + list + (PERCEIVER_WITH_OPENCV ? "" : " (this build has no OpenCV)") +
                              "; a " + architecture + " takes tensors: use 'perceiver infer'");
}

json predict(ModelRunner& runner, const std::vector<std::string>& args, const fs::path& list, const PredictOptions& options) {
  const auto& task = predict_task(runner.architecture());
  const auto inputs = task.collect(args, list);
  if (inputs.empty()) throw std::invalid_argument(task.name + " needs inputs: " + task.inputs);
  return task.run(runner, inputs, options);
}

}  // namespace perceiver::trainers
