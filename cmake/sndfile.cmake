# libsndfile as the target PkgConfig::SNDFILE: through pkg-config where it is installed (Debian),
# else by a plain header and library search (a host with the library unpacked under CMAKE_PREFIX_PATH).
find_package(PkgConfig QUIET)
if(PKG_CONFIG_FOUND)
  pkg_check_modules(SNDFILE QUIET IMPORTED_TARGET sndfile)
endif()
if(NOT TARGET PkgConfig::SNDFILE)
  find_path(SNDFILE_INCLUDE_DIR sndfile.h)
  find_library(SNDFILE_LIBRARY sndfile)
  if(NOT SNDFILE_INCLUDE_DIR OR NOT SNDFILE_LIBRARY)
    message(FATAL_ERROR "libsndfile not found: install libsndfile1-dev (scripts/setup.sh does)")
  endif()
  add_library(PkgConfig::SNDFILE INTERFACE IMPORTED)
  set_target_properties(PkgConfig::SNDFILE PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${SNDFILE_INCLUDE_DIR}"
                                                      INTERFACE_LINK_LIBRARIES "${SNDFILE_LIBRARY}")
endif()
