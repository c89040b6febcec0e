// `perceiver tokenize`: encode texts to ids (JSON) or decode ids to text (a JSON string) with PerceiverTokenizer.
#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include <charconv>
#include <iostream>
#include <stdexcept>

#include "apps/command.h"
#include "perceiver/processing/tokenizer.h"

namespace {

namespace po = boost::program_options;

// Boost reads "-1" as an unknown short option; a negative number is a positional (an id to reject with a
// clear message, or a text). Other texts starting with '-' go after "--".
std::vector<po::option> negative_numbers_are_positional(std::vector<std::string>& args) {
  const std::string& token = args.front();
  if (token.size() < 2 || token[0] != '-' ||
      token.find_first_not_of("0123456789", 1) != std::string::npos) {
    return {};
  }
  po::option opt;
  opt.value.push_back(token);
  opt.original_tokens.push_back(token);
  args.erase(args.begin());
  return {opt};
}

int64_t parse_id(const std::string& token) {
  int64_t value = 0;
  const char* end = token.data() + token.size();
  const auto [ptr, ec] = std::from_chars(token.data(), end, value);
  if (token.empty() || ec != std::errc() || ptr != end) {
    throw std::runtime_error("expected an integer token id, got '" + token + "'");
  }
  return value;
}

int run_tokenize(const std::vector<std::string>& args) {
  po::options_description desc(
      "perceiver tokenize TEXT... [options]      encode (one row per TEXT; put '--' before texts starting with '-')\n"
      "perceiver tokenize --decode ID... [options]  decode ids to text\noptions");
  desc.add_options()("help,h", "show this help")                                               //
      ("pair", po::value<std::vector<std::string>>(), "second sequence, once per TEXT")        //
      ("max-length", po::value<int64_t>(), "maximum length for padding/truncation")            //
      ("padding", po::value<std::string>(), "longest | max_length")                            //
      ("truncation", "truncate to --max-length (longest_first)")                               //
      ("truncation-strategy", po::value<std::string>(), "longest_first | only_first | only_second")  //
      ("no-special-tokens", "do not add [CLS]/[SEP]")                                          //
      ("decode", "decode the positional ids instead of encoding text")                         //
      ("skip-special-tokens", "with --decode: drop special tokens")                            //
      ("clean-up-tokenization-spaces", "with --decode: apply HF's clean_up_tokenization");
  po::options_description all;
  all.add(desc).add_options()("input", po::value<std::vector<std::string>>(), "texts, or ids with --decode");
  po::positional_options_description positional;
  positional.add("input", -1);
  po::variables_map vm;
  po::store(po::command_line_parser(args)
                .options(all)
                .positional(positional)
                .extra_style_parser(negative_numbers_are_positional)
                .run(),
            vm);
  po::notify(vm);
  if (vm.count("help")) {
    std::cout << desc;
    return 0;
  }
  const auto inputs = vm.count("input") ? vm["input"].as<std::vector<std::string>>() : std::vector<std::string>{};
  const perceiver::PerceiverTokenizer tokenizer;

  if (vm.count("decode")) {
    for (const char* encode_only : {"pair", "max-length", "padding", "truncation", "truncation-strategy",
                                    "no-special-tokens"}) {
      if (vm.count(encode_only)) throw std::runtime_error(std::string("--") + encode_only + " needs encoding, not --decode");
    }
    std::vector<int64_t> ids;
    ids.reserve(inputs.size());
    for (const auto& token : inputs) ids.push_back(parse_id(token));
    perceiver::DecodeOptions options;
    options.skip_special_tokens = vm.count("skip-special-tokens") > 0;
    options.clean_up_tokenization_spaces = vm.count("clean-up-tokenization-spaces") > 0;
    std::cout << nlohmann::json(tokenizer.decode(ids, options)).dump() << "\n";
    return 0;
  }

  for (const char* decode_only : {"skip-special-tokens", "clean-up-tokenization-spaces"}) {
    if (vm.count(decode_only)) throw std::runtime_error(std::string("--") + decode_only + " needs --decode");
  }
  if (inputs.empty()) throw std::runtime_error("expected at least one TEXT to encode (or --decode ID...)");
  perceiver::EncodeOptions options;
  options.add_special_tokens = vm.count("no-special-tokens") == 0;
  if (vm.count("max-length")) options.max_length = vm["max-length"].as<int64_t>();
  if (vm.count("padding")) options.padding = perceiver::parse_padding(vm["padding"].as<std::string>());
  if (vm.count("truncation-strategy")) {
    options.truncation = perceiver::parse_truncation(vm["truncation-strategy"].as<std::string>());
  } else if (vm.count("truncation")) {
    options.truncation = perceiver::Truncation::LongestFirst;
  }
  std::vector<perceiver::Encoding> encodings;
  if (vm.count("pair")) {
    encodings = tokenizer.batch_encode(inputs, vm["pair"].as<std::vector<std::string>>(), options);
  } else {
    encodings = tokenizer.batch_encode(inputs, options);
  }
  nlohmann::ordered_json out;
  out["input_ids"] = nlohmann::json::array();
  out["attention_mask"] = nlohmann::json::array();
  for (const auto& e : encodings) {
    out["input_ids"].push_back(e.input_ids);
    out["attention_mask"].push_back(e.attention_mask);
  }
  std::cout << out.dump() << "\n";
  return 0;
}

}  // namespace

PERCEIVER_COMMAND("tokenize", "encode text to Perceiver byte ids (JSON) or --decode ids to text", run_tokenize);
