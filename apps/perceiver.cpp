// `perceiver`: one CLI for every job. It parses and dispatches; the work lives in the library.
#include <torch/torch.h>

#include <cstdlib>
#include <iostream>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "apps/command.h"
#include "apps/process_setup.h"
#include "perceiver/ops/reference_mode.h"
#include "perceiver/runtime/runtime.h"

namespace perceiver::cli {

std::map<std::string, Command>& registry() {
  static std::map<std::string, Command> commands;
  return commands;
}

namespace {

// Errors print as exactly one line: fold any newline inside a message.
std::string one_line(std::string message) {
  for (auto& c : message)
    if (c == '\n' || c == '\r') c = ' ';
  while (!message.empty() && message.back() == ' ') message.pop_back();
  return message;
}

void print_usage(std::ostream& out) {
  out << "usage: perceiver <command> [options]   (perceiver <command> --help for details)\n\ncommands:\n";
  for (const auto& [name, command] : registry()) {
    out << "  " << name << std::string(name.size() < 12 ? 12 - name.size() : 1, ' ') << command.summary << "\n";
  }
}

}  // namespace
}  // namespace perceiver::cli

int main(int argc, char** argv) {
  perceiver::cli::prepare_process(argc, argv);
  // Logs and progress go to stderr; stdout carries only results (JSON), so it can be piped.
  spdlog::set_default_logger(spdlog::stderr_color_mt("perceiver"));
  using perceiver::cli::registry;
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    perceiver::cli::print_usage(argc < 2 ? std::cerr : std::cout);
    return argc < 2 ? 2 : 0;
  }
  const std::string name = argv[1];
  const auto it = registry().find(name);
  if (it == registry().end()) {
    std::cerr << "perceiver: unknown command '" << name << "'\n";
    perceiver::cli::print_usage(std::cerr);
    return 2;
  }
  // PERCEIVER_REFERENCE=1: HF's maths everywhere (no fast path), to tell a fast path's error from the model's.
  const char* reference = std::getenv("PERCEIVER_REFERENCE");
  const perceiver::ReferenceMode reference_mode(reference && std::string(reference) == "1");
  if (perceiver::ReferenceMode::is_enabled()) spdlog::info("PERCEIVER_REFERENCE=1: HF's maths, no fast paths");
  try {
    perceiver::runtime::set_threads(0);
    return it->second.run(std::vector<std::string>(argv + 2, argv + argc));
  } catch (const c10::Error& e) {
    std::cerr << "perceiver " << name << ": error: " << perceiver::cli::one_line(e.what_without_backtrace()) << "\n";
  } catch (const std::exception& e) {
    std::cerr << "perceiver " << name << ": error: " << perceiver::cli::one_line(e.what()) << "\n";
  }
  return 1;
}
