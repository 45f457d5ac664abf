# Script test: configuring with FATHOM_LAYER_CHECK_SELFTEST=ON links Qt6::Core into fathom_config
# (an engine-side library); the configure must fail with "Layer violation".
file(REMOVE_RECURSE ${WORK_DIR})
execute_process(
  COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR} -G Ninja -DFATHOM_GUI=OFF -DFATHOM_TESTS=OFF
          -DFATHOM_CUDA=OFF -DFATHOM_LAYER_CHECK_SELFTEST=ON "-DCMAKE_PREFIX_PATH=${PREFIX_PATH}"
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
file(REMOVE_RECURSE ${WORK_DIR})
if(rc EQUAL 0)
  message(FATAL_ERROR "configure succeeded although fathom_config was linked to Qt6::Core: the layer check is broken")
endif()
if(NOT err MATCHES "Layer violation: fathom_config links 'Qt6::Core'")
  message(FATAL_ERROR "configure failed, but not with the layer check's message:\n${err}")
endif()
message(STATUS "layer check rejected the wrong link as expected")
