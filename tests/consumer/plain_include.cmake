# Compiles and runs the consumer with nothing but `-I include` and Eigen on the include path.
execute_process(COMMAND ${CXX} -std=c++20 -O1 -I${INCLUDE} -isystem ${EIGEN} ${SOURCE} -o ${OUT}
                RESULT_VARIABLE compile_result)
if(NOT compile_result EQUAL 0)
  message(FATAL_ERROR "plain -I include build failed")
endif()
execute_process(COMMAND ${OUT} RESULT_VARIABLE run_result)
if(NOT run_result EQUAL 0)
  message(FATAL_ERROR "plain -I include consumer computed a wrong value")
endif()
