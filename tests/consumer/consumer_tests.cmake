# The three ways a user consumes ddpm, each built and run as a CTest test:
#   1. find_package(ddpm CONFIG) after `cmake --install` into a prefix (fixture: consumer_install);
#   2. add_subdirectory(<ddpm source tree>);
#   3. a plain compiler call with -I include and Eigen on the include path.
set(_consumer_src ${CMAKE_CURRENT_SOURCE_DIR}/consumer/project)
set(_consumer_bin ${CMAKE_CURRENT_BINARY_DIR}/consumer)

add_test(NAME consumer_install
  COMMAND ${CMAKE_COMMAND} --install ${PROJECT_BINARY_DIR} --prefix ${_consumer_bin}/prefix)
set_tests_properties(consumer_install PROPERTIES FIXTURES_SETUP ddpm_installed)

add_test(NAME consumer_find_package
  COMMAND ${CMAKE_CTEST_COMMAND} --build-and-test ${_consumer_src} ${_consumer_bin}/find_package
    --build-generator ${CMAKE_GENERATOR} --build-noclean
    --build-options -DCMAKE_PREFIX_PATH=${_consumer_bin}/prefix -DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER}
      -DCMAKE_BUILD_TYPE=Release
    --test-command consumer)
set_tests_properties(consumer_find_package PROPERTIES FIXTURES_REQUIRED ddpm_installed)

add_test(NAME consumer_add_subdirectory
  COMMAND ${CMAKE_CTEST_COMMAND} --build-and-test ${_consumer_src} ${_consumer_bin}/add_subdirectory
    --build-generator ${CMAKE_GENERATOR} --build-noclean
    --build-options -DDDPM_CONSUMER_MODE=add_subdirectory -DDDPM_SOURCE_DIR=${PROJECT_SOURCE_DIR}
      -DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER} -DCMAKE_BUILD_TYPE=Release
    --test-command consumer)

# 2b. add_subdirectory in a project where nlohmann-json cannot be found: DDPM_IO then defaults to OFF and
#     ddpm::ddpm alone configures, builds and runs (DDPM_IO defaulted to ON and failed at configure time).
add_test(NAME consumer_add_subdirectory_without_io_dependencies
  COMMAND ${CMAKE_CTEST_COMMAND} --build-and-test ${_consumer_src} ${_consumer_bin}/add_subdirectory_no_io
    --build-generator ${CMAKE_GENERATOR} --build-noclean
    --build-options -DDDPM_CONSUMER_MODE=add_subdirectory -DDDPM_SOURCE_DIR=${PROJECT_SOURCE_DIR}
      -DCMAKE_DISABLE_FIND_PACKAGE_nlohmann_json=ON
      -DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER} -DCMAKE_BUILD_TYPE=Release
    --test-command consumer)

get_target_property(_eigen_dirs Eigen3::Eigen INTERFACE_INCLUDE_DIRECTORIES)
list(GET _eigen_dirs 0 _eigen_dir)
add_test(NAME consumer_plain_include
  COMMAND ${CMAKE_COMMAND} -DCXX=${CMAKE_CXX_COMPILER} -DSOURCE=${_consumer_src}/main.cpp
    -DINCLUDE=${PROJECT_SOURCE_DIR}/include -DEIGEN=${_eigen_dir} -DOUT=${_consumer_bin}/plain_consumer
    -P ${CMAKE_CURRENT_SOURCE_DIR}/consumer/plain_include.cmake)
