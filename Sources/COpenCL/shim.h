// OpenCL 1.2 is the API level Kiln targets, so that every vendor's driver (and POCL) can run it.
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <clblast_c.h>
