# ctest script: installs this build into a fresh temporary prefix, then configures, builds and
# runs examples/cpp against it with find_package -- what another project does with the package.
# Arguments (-D): BUILD_DIR, SOURCE_DIR, WORK_DIR, CONFIG, GENERATOR.
foreach(var BUILD_DIR SOURCE_DIR WORK_DIR CONFIG GENERATOR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "install_consumer_test.cmake needs -D${var}=...")
  endif()
endforeach()

function(run_step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "${what} failed (${status}):\n${out}\n${err}")
  endif()
  set(step_output "${out}" PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")
run_step("cmake --install" ${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${prefix}" --config "${CONFIG}")

# Only the contract headers are installed: no kernel internals.
file(GLOB_RECURSE installed RELATIVE "${prefix}/include" "${prefix}/include/*")
file(GLOB public RELATIVE "${SOURCE_DIR}/cpp/include" "${SOURCE_DIR}/cpp/include/localmamba/*.h")
if(EXISTS "${prefix}/include/localmamba/cuda/localmamba_cuda.h")
  list(APPEND public "localmamba/cuda/localmamba_cuda.h")
endif()
list(SORT installed)
list(SORT public)
if(NOT installed STREQUAL public)
  message(FATAL_ERROR "installed headers\n  ${installed}\ndiffer from the public ones\n  ${public}")
endif()

# CMAKE_FIND_USE_PACKAGE_REGISTRY=OFF and only the temporary prefix on the search path: the
# example must find the installed package, never this build tree.
run_step("configuring the example" ${CMAKE_COMMAND} -S "${SOURCE_DIR}/examples/cpp" -B "${WORK_DIR}/build"
         -G "${GENERATOR}" "-DCMAKE_PREFIX_PATH=${prefix}" -DCMAKE_BUILD_TYPE=${CONFIG}
         -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
string(FIND "${step_output}" "from ${prefix}/share/cmake/localmamba" found_at)
if(found_at EQUAL -1)
  message(FATAL_ERROR "the example did not use the installed package:\n${step_output}")
endif()
run_step("building the example" ${CMAKE_COMMAND} --build "${WORK_DIR}/build" --config "${CONFIG}")
find_program(example localmamba_example PATHS "${WORK_DIR}/build" "${WORK_DIR}/build/${CONFIG}" NO_DEFAULT_PATH REQUIRED)
run_step("running the example" "${example}")
message("${step_output}")
if(NOT step_output MATCHES "checksum -?[0-9]+\\.[0-9]+")
  message(FATAL_ERROR "the example printed no checksum")
endif()
