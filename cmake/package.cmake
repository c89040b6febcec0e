# `cmake --install` and `cpack -G DEB`: the three libraries, their headers, the CLI and a CMake
# package, so that a user's find_package(perceiver) + target_link_libraries(app perceiver::core) works.
include(CMakePackageConfigHelpers)
set(PERCEIVER_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/perceiver)

install(TARGETS perceiver_core perceiver_datasets perceiver_trainers EXPORT perceiverTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS perceiver RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(EXPORT perceiverTargets NAMESPACE perceiver:: DESTINATION ${PERCEIVER_CMAKE_DIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/perceiverConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/perceiverConfig.cmake INSTALL_DESTINATION ${PERCEIVER_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/perceiverConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/perceiverConfig.cmake ${PROJECT_BINARY_DIR}/perceiverConfigVersion.cmake
        DESTINATION ${PERCEIVER_CMAKE_DIR})

# Debian package: Depends from dpkg-shlibdeps (the runtime libraries the binaries link); the -dev
# packages that the installed headers and CMake package need are Recommends, which apt installs by
# default (--no-install-recommends gives a CLI-only install).
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME perceiver-cpp)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "perceiver-cpp maintainers <perceiver-cpp@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Perceiver and Perceiver IO (Hugging Face format) in C++: library, CMake package and CLI")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION science)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS
    "libtorch-dev, libopencv-dev, libspdlog-dev, libyaml-cpp-dev, nlohmann-json3-dev, libsndfile1-dev, zlib1g-dev, pkg-config")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
include(CPack)
