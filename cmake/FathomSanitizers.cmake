# FATHOM_SANITIZE: build our targets (not the prebuilt third-party libraries) with sanitizers.
# Values: empty (off), "address,undefined", "address", "undefined" or "thread".
# tools/sanitizers/run.sh configures, builds and runs the suites with it; docs/reliability.md says how.
set(FATHOM_SANITIZE "" CACHE STRING "Sanitizers for our targets: '', 'address,undefined' or 'thread'")
if(FATHOM_SANITIZE)
  string(REPLACE "," ";" _fathom_san_list "${FATHOM_SANITIZE}")
  foreach(_s IN LISTS _fathom_san_list)
    if(NOT _s MATCHES "^(address|undefined|thread|leak)$")
      message(FATAL_ERROR "FATHOM_SANITIZE: unknown sanitizer '${_s}' (use address,undefined or thread)")
    endif()
  endforeach()
  if("thread" IN_LIST _fathom_san_list AND ("address" IN_LIST _fathom_san_list OR "leak" IN_LIST _fathom_san_list))
    message(FATAL_ERROR "FATHOM_SANITIZE: thread cannot be combined with address/leak")
  endif()
  set(_fathom_san_flags -fsanitize=${FATHOM_SANITIZE} -fno-omit-frame-pointer)
  if("undefined" IN_LIST _fathom_san_list)
    # A UB report aborts the process, so it fails the test that triggered it.
    list(APPEND _fathom_san_flags -fno-sanitize-recover=undefined)
  endif()
  # Directory-scoped: applies to every target defined below (ours), never to imported libraries.
  add_compile_options(${_fathom_san_flags})
  add_link_options(${_fathom_san_flags})
  message(STATUS "Fathom: sanitizers ${FATHOM_SANITIZE}")

  # Runtime defaults compiled into every executable (tools/sanitizers/defaults.cpp.in): reports
  # fail the process (ASan/UBSan halt; TSan exits 66), with stacks; the suppression files for
  # uninstrumented third-party libraries are embedded so children started without our
  # environment (an engine over SSH) apply them too.
  set(FATHOM_ASAN_DEFAULTS "detect_leaks=1:halt_on_error=1:print_suppressions=0:check_initialization_order=1")
  set(FATHOM_UBSAN_DEFAULTS "print_stacktrace=1:halt_on_error=1")
  set(FATHOM_TSAN_DEFAULTS "halt_on_error=0:exitcode=66:second_deadlock_stack=1:print_suppressions=0")
  function(_fathom_c_string file out)
    file(READ ${file} text)
    string(REPLACE "\\" "\\\\" text "${text}")
    string(REPLACE "\"" "\\\"" text "${text}")
    string(REPLACE "\n" "\\n" text "${text}")
    set(${out} "${text}" PARENT_SCOPE)
  endfunction()
  set(_san_dir ${CMAKE_SOURCE_DIR}/tools/sanitizers)
  _fathom_c_string(${_san_dir}/lsan.supp FATHOM_LSAN_SUPPRESSIONS)
  _fathom_c_string(${_san_dir}/tsan.supp FATHOM_TSAN_SUPPRESSIONS)
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
               ${_san_dir}/lsan.supp ${_san_dir}/tsan.supp ${_san_dir}/defaults.cpp.in)
  configure_file(${_san_dir}/defaults.cpp.in ${CMAKE_BINARY_DIR}/sanitizer_defaults.cpp @ONLY)
  add_library(fathom_sanitizer_defaults OBJECT ${CMAKE_BINARY_DIR}/sanitizer_defaults.cpp)
endif()

# Called at the end of the top-level CMakeLists: links the defaults into every executable.
function(fathom_sanitize_executables)
  if(NOT FATHOM_SANITIZE)
    return()
  endif()
  set(dirs ${CMAKE_SOURCE_DIR})
  while(dirs)
    list(POP_FRONT dirs d)
    get_property(sub DIRECTORY ${d} PROPERTY SUBDIRECTORIES)
    list(APPEND dirs ${sub})
    get_property(targets DIRECTORY ${d} PROPERTY BUILDSYSTEM_TARGETS)
    foreach(t IN LISTS targets)
      get_target_property(type ${t} TYPE)
      if(type STREQUAL "EXECUTABLE")
        target_link_libraries(${t} PRIVATE fathom_sanitizer_defaults)
      endif()
    endforeach()
  endwhile()
endfunction()

# Called by fathom_add_test (tests/CMakeLists.txt) for each ctest case: the test and every process
# it starts (engines, launchers' children) write their reports to <build>/sanitizer-logs/<test>.<pid>
# (the default is stderr, which a child's is often a file the test deletes);
# tools/sanitizers/run.sh prints them and fails when any exists.
function(fathom_sanitize_test name)
  if(NOT FATHOM_SANITIZE)
    return()
  endif()
  set(logs ${CMAKE_BINARY_DIR}/sanitizer-logs)
  file(MAKE_DIRECTORY ${logs})
  set(env "ASAN_OPTIONS=log_path=${logs}/${name}" "UBSAN_OPTIONS=log_path=${logs}/${name}"
          "TSAN_OPTIONS=log_path=${logs}/${name}")
  if(FATHOM_SANITIZE MATCHES "thread")
    # Uninstrumented OpenMP (libgomp) synchronises its team with futexes TSan cannot see.
    list(APPEND env OMP_NUM_THREADS=1)
  endif()
  # Tests may relax timing-only assertions (never correctness) when this is set.
  list(APPEND env FATHOM_SANITIZED=${FATHOM_SANITIZE})
  set_property(TEST ${name} APPEND PROPERTY ENVIRONMENT ${env})
  # Instrumented code runs 2-15x slower: the same work gets more time before ctest kills it.
  get_test_property(${name} TIMEOUT timeout)
  if(timeout)
    if(FATHOM_SANITIZE MATCHES "thread")
      math(EXPR timeout "${timeout} * 5")
    else()
      math(EXPR timeout "${timeout} * 3")
    endif()
    set_tests_properties(${name} PROPERTIES TIMEOUT ${timeout})
  endif()
endfunction()
