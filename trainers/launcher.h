// `perceiver train --nproc N`: N ranks of a program on this machine, without Python's torchrun. The
// launcher hosts the rendezvous store (as torchrun's agent does), gives every rank torchrun's
// variables, forwards SIGINT/SIGTERM, and when a rank fails stops the others and names it.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace perceiver::trainers {

struct LaunchOptions {
  int nproc = 2;
  std::string program;            // the executable every rank runs ("" = this program, /proc/self/exe)
  std::vector<std::string> args;  // its arguments (argv[1:]), the same for every rank
  std::string master_addr = "127.0.0.1";
  int master_port = 0;            // 0: a free port
  std::chrono::milliseconds grace{std::chrono::seconds(10)};  // SIGTERM, then SIGKILL after this
};

// Runs the ranks to the end. Returns 0 when every rank succeeded, 128 + signal when SIGINT/SIGTERM
// stopped the job; throws std::runtime_error naming the first rank that failed (exit code or signal)
// once the others are stopped. No rank outlives the launcher (they get SIGKILL if it dies).
int launch(const LaunchOptions& options);

// "rank 1 (pid 123) exited with code 1" / "... was killed by signal 9 (Killed)" for a waitpid status.
std::string describe_exit(int rank, int pid, int status);

}  // namespace perceiver::trainers
