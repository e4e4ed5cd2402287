/* The implementation of the three headers, compiled once per build flavour
   (normal, ASan) and linked into every test program and tool that does not
   define Q4K_IMPLEMENTATION itself (those reach q4k__ internals, which are
   static). */
#define Q4K_IMPLEMENTATION
#include "q4k.h"
#include "q4k_cuda.h"
#include "q4k_vulkan.h"
