// Subcommand registry of the `perceiver` CLI: each apps/cmd_*.cpp registers itself, so that adding
// a command never touches the dispatcher.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace perceiver::cli {

// Receives the arguments after the subcommand name; returns the process exit code.
using CommandFn = std::function<int(const std::vector<std::string>& args)>;

struct Command {
  std::string summary;
  CommandFn run;
};

std::map<std::string, Command>& registry();

struct Registrar {
  Registrar(const std::string& name, const std::string& summary, CommandFn fn) {
    registry()[name] = Command{summary, std::move(fn)};
  }
};

}  // namespace perceiver::cli

#define PERCEIVER_COMMAND(name, summary, fn) \
  static const ::perceiver::cli::Registrar perceiver_command_registrar_##fn(name, summary, fn)
