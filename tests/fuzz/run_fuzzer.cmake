# Runs one libFuzzer target for a bounded time on a fresh copy of its seed corpus; fails on any report.
# cmake -DFUZZER=exe -DSEEDS=dir -DWORK=dir -DARTIFACTS=dir -DSECONDS=n [-DEXTRA=flag|flag] -P run_fuzzer.cmake
foreach(var FUZZER SEEDS WORK ARTIFACTS SECONDS)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_fuzzer.cmake: ${var} is not set")
  endif()
endforeach()

# A fresh working corpus each run: libFuzzer adds what it finds to its first
# directory, and the seeds in the repository must stay as committed.
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK} ${ARTIFACTS})
file(GLOB seeds ${SEEDS}/*)
file(COPY ${seeds} DESTINATION ${WORK})
list(LENGTH seeds seed_count)

string(REPLACE "|" ";" extra "${EXTRA}")
# The caller's settings win; these make every report fatal and legible.
if(NOT DEFINED ENV{ASAN_OPTIONS})
  set(ENV{ASAN_OPTIONS} "detect_leaks=1:detect_stack_use_after_return=1:check_initialization_order=1")
endif()
if(NOT DEFINED ENV{UBSAN_OPTIONS})
  set(ENV{UBSAN_OPTIONS} "print_stacktrace=1:halt_on_error=1")
endif()

set(log ${WORK}.log)
set(command ${FUZZER} -max_total_time=${SECONDS} -timeout=10 -rss_limit_mb=2048
            -detect_leaks=1 -print_final_stats=1 -artifact_prefix=${ARTIFACTS}/ ${extra} ${WORK})
string(JOIN " " shown ${command})
message(NOTICE "${shown}\n(${seed_count} seeds; full log: ${log})")
execute_process(COMMAND ${command} RESULT_VARIABLE rc OUTPUT_FILE ${log} ERROR_FILE ${log})

file(READ ${log} text)
set(failed "")
if(NOT rc STREQUAL "0")
  set(failed "exit status ${rc}")
endif()
# Belt and braces: a report that somehow did not change the exit status still fails.
foreach(pattern "ERROR: AddressSanitizer" "ERROR: LeakSanitizer" "runtime error:"
                "ERROR: libFuzzer" "SUMMARY: " "fuzz target invariant")
  string(FIND "${text}" "${pattern}" at)
  if(at GREATER -1 AND failed STREQUAL "")
    set(failed "the log contains \"${pattern}\"")
  endif()
endforeach()
string(REGEX MATCH "Done [0-9]+ runs in [0-9]+ second\\(s\\)" done "${text}")
if(done STREQUAL "" AND failed STREQUAL "")
  set(failed "no final \"Done N runs\" line")
endif()

# Summary: final coverage, the run count and libFuzzer's final statistics.
string(REGEX MATCHALL "#[0-9]+[ \t]+DONE[^\n]*" last_status "${text}")
string(REGEX MATCHALL "stat::[^\n]*" stats "${text}")
list(JOIN stats "\n" stats)
message(NOTICE "${last_status}\n${stats}\n${done}")

if(NOT failed STREQUAL "")
  string(LENGTH "${text}" length)
  set(tail_start 0)
  if(length GREATER 20000)
    math(EXPR tail_start "${length} - 20000")
  endif()
  string(SUBSTRING "${text}" ${tail_start} -1 tail)
  message(NOTICE "---- end of ${log} ----\n${tail}")
  message(FATAL_ERROR "fuzzing failed: ${failed}; inputs that crash are in ${ARTIFACTS}/")
endif()
