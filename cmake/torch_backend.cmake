# Which LibTorch was found: Debian's CPU-only 1.13, or a CUDA build such as the one Python's torch
# ships (cmake -DCMAKE_PREFIX_PATH=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')).
if(TARGET torch_cuda OR TARGET c10_cuda)
  set(PERCEIVER_WITH_CUDA ON)
  # Nothing in our code calls into libtorch_cuda by name, so --as-needed (the default of some
  # toolchains) would drop it and CUDA would silently be unavailable at run time.
  add_link_options(LINKER:--no-as-needed)
else()
  set(PERCEIVER_WITH_CUDA OFF)
endif()
message(STATUS "LibTorch ${Torch_VERSION}, CUDA: ${PERCEIVER_WITH_CUDA}")
