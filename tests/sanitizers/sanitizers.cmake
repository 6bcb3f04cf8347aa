# Run-time options of the sanitizer build (-DEWC_SANITIZE=ON), given to every test through ctest's
# ENVIRONMENT; the ranks under mpirun, the sbatch jobs and the BLAS probe/re-exec children inherit
# them. Every report goes to a file under <build>/sanitizer-reports (named by pid), so a finding in
# a process whose stderr a shell test discards is not lost: .ci/run fails if any report exists.
# fast_unwind_on_malloc=0: Open MPI, HDF5 and OpenBLAS have no frame pointers; without it the
# allocation stacks stop at the library and the suppressions could not name the caller.
set(EWC_SANITIZER_DIR ${CMAKE_SOURCE_DIR}/tests/sanitizers)
set(EWC_SANITIZER_REPORTS ${CMAKE_BINARY_DIR}/sanitizer-reports)
file(MAKE_DIRECTORY ${EWC_SANITIZER_REPORTS})
set(EWC_SANITIZE_ENV
    ASAN_OPTIONS=log_path=${EWC_SANITIZER_REPORTS}/asan:detect_leaks=1:halt_on_error=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1:fast_unwind_on_malloc=0
    LSAN_OPTIONS=suppressions=${EWC_SANITIZER_DIR}/lsan.supp:print_suppressions=0
    UBSAN_OPTIONS=log_path=${EWC_SANITIZER_REPORTS}/ubsan:print_stacktrace=1:halt_on_error=1)
list(APPEND EWC_TEST_ENV ${EWC_SANITIZE_ENV})

# Instrumented code runs 2-3 times slower: once every test is defined (wherever in CMakeLists.txt),
# give each one three times its timeout.
function(ewc_sanitize_scale_timeouts)
  get_property(tests DIRECTORY ${CMAKE_SOURCE_DIR} PROPERTY TESTS)
  foreach(t ${tests})
    get_test_property(${t} TIMEOUT timeout)
    if(timeout)
      math(EXPR timeout "${timeout} * 3")
      set_tests_properties(${t} PROPERTIES TIMEOUT ${timeout})
    endif()
  endforeach()
endfunction()
cmake_language(DEFER DIRECTORY ${CMAKE_SOURCE_DIR} CALL ewc_sanitize_scale_timeouts)

# The set-up itself, tested (leak_canary.sh): a leak of ours is reported, Open MPI's are not. Its
# reports go to its output (no log_path; with clang's one runtime UBSAN_OPTIONS' log_path would win).
add_executable(leak_canary ${EWC_SANITIZER_DIR}/leak_canary.c)
target_link_libraries(leak_canary PRIVATE ewc)
add_test(NAME sanitizer_leak_canary
         COMMAND bash ${EWC_SANITIZER_DIR}/leak_canary.sh $<TARGET_FILE:leak_canary>)
set_tests_properties(sanitizer_leak_canary PROPERTIES TIMEOUT 300
    ENVIRONMENT "${EWC_TEST_ENV};ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0;UBSAN_OPTIONS=print_stacktrace=1")
