// GoogleTest entry point: same BLAS environment as the shipped CLI.
#include <gtest/gtest.h>

#include "perceiver/runtime.h"

int main(int argc, char** argv) {
  perceiver::runtime::ensure_blas_environment(argc, argv);
  perceiver::runtime::set_threads(0);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
