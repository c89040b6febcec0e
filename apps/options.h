// Boost.Program_options helpers shared by the subcommands.
#pragma once

#include <boost/program_options.hpp>
#include <string>
#include <vector>

namespace perceiver::cli {

// Parses args against desc (with optional positional arguments) and notifies; unknown options
// and malformed values become exceptions with Boost's message, which main() prints as one line.
boost::program_options::variables_map parse(
    const boost::program_options::options_description& desc, const std::vector<std::string>& args,
    const boost::program_options::positional_options_description* positional = nullptr);

}  // namespace perceiver::cli
