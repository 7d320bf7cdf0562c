# Runs sample_mpi (the Gaussian-mixture demo, DDIM with eta 0.5 so that every step draws noise) as a plain
# process and over 1, 2 and 3 MPI ranks, and byte-compares the .npz and the float32 samples of every run with
# the plain run's. Called by ctest: cmake -DEXE=... -DMPIEXEC=... -DMPI_FLAGS=... -DOUT=dir -P this file.
file(MAKE_DIRECTORY ${OUT})
set(_args --num 13 --batch 2 --steps 6 --sampler ddim --eta 0.5 --seed 7 --out-png=)

function(run_sample name)
  execute_process(COMMAND ${ARGN} ${_args} --out-npz ${OUT}/${name}.npz --out-raw ${OUT}/${name}.npy
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 300)
  message("${name}: ${out}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "sample_mpi ${name} failed (${rc}):\n${out}\n${err}")
  endif()
endfunction()

run_sample(plain ${EXE})
foreach(np 1 2 3)
  run_sample(ranks${np} ${MPIEXEC} ${MPI_FLAGS} -np ${np} ${EXE})
  foreach(ext npz npy)
    execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files ${OUT}/plain.${ext} ${OUT}/ranks${np}.${ext}
                    RESULT_VARIABLE same)
    if(NOT same EQUAL 0)
      message(FATAL_ERROR "sample_mpi: ${np} rank(s) gave another ${ext} than the plain run")
    endif()
  endforeach()
endforeach()
message("sample_mpi: all runs identical (plain, 1, 2, 3 ranks)")
