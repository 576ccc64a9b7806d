# Installs the core (and the CUDA library when built) as the CMake package `localmamba`:
# static libraries, the public contract headers only, exported targets localmamba::core /
# localmamba::cuda, and localmambaConfig.cmake + version file. Consumers:
#   find_package(localmamba 0.1 REQUIRED [OPTIONAL_COMPONENTS cuda])
#   target_link_libraries(app PRIVATE localmamba::core)
include(CMakePackageConfigHelpers)

set_target_properties(localmamba_core PROPERTIES EXPORT_NAME core)
install(TARGETS localmamba_core EXPORT localmambaCoreTargets ARCHIVE DESTINATION ${LOCALMAMBA_INSTALL_LIBDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/cpp/include/localmamba DESTINATION ${LOCALMAMBA_INSTALL_INCLUDEDIR}
        FILES_MATCHING PATTERN "*.h")
install(EXPORT localmambaCoreTargets NAMESPACE localmamba:: DESTINATION ${LOCALMAMBA_INSTALL_CMAKEDIR})

# A separate export set, so that a consumer without the CUDA toolkit still gets the core.
if(LOCALMAMBA_WITH_CUDA)
  set_target_properties(localmamba_cuda PROPERTIES EXPORT_NAME cuda)
  install(TARGETS localmamba_cuda EXPORT localmambaCudaTargets ARCHIVE DESTINATION ${LOCALMAMBA_INSTALL_LIBDIR})
  install(FILES ${PROJECT_SOURCE_DIR}/cuda/localmamba_cuda.h
          DESTINATION ${LOCALMAMBA_INSTALL_INCLUDEDIR}/localmamba/cuda)
  install(EXPORT localmambaCudaTargets NAMESPACE localmamba:: DESTINATION ${LOCALMAMBA_INSTALL_CMAKEDIR})
endif()

string(REPLACE ";" "," LOCALMAMBA_CUDA_ARCHITECTURES_TEXT "${CMAKE_CUDA_ARCHITECTURES}")
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/localmambaConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/localmambaConfig.cmake
                              INSTALL_DESTINATION ${LOCALMAMBA_INSTALL_CMAKEDIR})
# 0.x releases may break the API between minor versions, so 0.1 accepts 0.1.* only.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/localmambaConfigVersion.cmake
                                 VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/localmambaConfig.cmake ${PROJECT_BINARY_DIR}/localmambaConfigVersion.cmake
        DESTINATION ${LOCALMAMBA_INSTALL_CMAKEDIR})
