// Process set-up of the programs this project ships (the CLI, the benchmarks), kept out of the
// installed libraries: a library must not re-execute or retune the program that links it.
// Measured on 2026-12-07 (docs/performance.md, "Process set-up"): with oneDNN doing every model
// product, the re-exec no longer changes a training step measurably on a CPU whose OpenBLAS finds
// its kernels; it still guards ATen's products (PERCEIVER_REFERENCE=1, PERCEIVER_MATMUL=aten) on CPUs
// where OpenBLAS does not. The malloc tuning only acts on glibc's malloc (a build without tcmalloc).
#pragma once

namespace perceiver::cli {

// OpenBLAS reads OPENBLAS_CORETYPE when it is loaded, i.e. before main() runs, and libgomp reads
// GOMP_SPINCOUNT when it starts. If the variables that select the fast kernels and a short spin of
// idle OpenMP threads (1,000 spins, unless OMP_WAIT_POLICY is set) are missing, set them and
// re-execute the program once so that the freshly loaded libraries see them. Safe on CPUs without
// AVX-512 (Haswell kernels on AVX2, nothing on older CPUs). Does nothing when PERCEIVER_NO_REEXEC is set.
void ensure_blas_environment(int argc, char** argv);

// glibc serves blocks above 32 MB (activations of a batch) with mmap and returns them on free, so
// every training step page-faults its activations in again: half the CPU time on the optical-flow
// model. This keeps freed memory in the process (mmap off, no trimming): about 1.9x faster flow
// training for about 25 % more peak RSS. Leaves malloc alone where the user tuned it (MALLOC_*_,
// GLIBC_TUNABLES) or set PERCEIVER_SYSTEM_MALLOC, and any other malloc (tcmalloc, which the CLI
// links where found). Returns whether it changed anything.
bool keep_freed_memory();

// Both, at the top of main().
void prepare_process(int argc, char** argv);

}  // namespace perceiver::cli
