#!/bin/sh
# The SIMT test programs must get every CUDA runtime and cuBLAS call from the emulator: one the
# emulator lacks would link against the real library (the CUDA build links it into libsam2) and
# fail at run time with "no device", or, on a GPU machine, run on the GPU; a kernel file the
# emulator does not compile would bring nvcc's object, whose launches call __cudaPush... and
# register a fat binary. Lists such calls.
status=0
for exe in "$@"; do
  calls=$(nm -u "$exe" | awk '{print $2}' | grep -E '^_*(cuda|cublas|cusolver)' || true)
  if [ -n "$calls" ]; then
    echo "$exe calls the real CUDA libraries, which the emulator must provide:"
    echo "$calls"
    status=1
  else
    echo "$exe: every CUDA call is the emulator's"
  fi
done
exit $status
