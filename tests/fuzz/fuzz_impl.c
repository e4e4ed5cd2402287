/* The implementation of q4k.h alone, for the fuzz targets (they need no GPU backend). */
#define Q4K_IMPLEMENTATION
#include "q4k.h"
