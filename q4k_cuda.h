/* q4k_cuda.h - the CUDA backend of q4k (runs the forward pass on the GPU).

   Include q4k.h first, or let this header include it. With
      #define Q4K_IMPLEMENTATION        (or Q4K_CUDA_IMPLEMENTATION)
   in one file, the implementation is compiled there.

   At run time it loads the CUDA driver (libcuda.so.1) and NVRTC with dlopen: nothing of
   them is needed to build.

   Status: the backend is not built yet. q4k_cuda_probe() says so with
   Q4K_ERR_BACKEND_UNAVAILABLE; nothing here computes anything yet.

   Usage:
      q4k_error err;
      if (q4k_cuda_probe(&err) != Q4K_OK) fprintf(stderr, "%s\n", err.msg);
*/
#ifndef Q4K_CUDA_H
#define Q4K_CUDA_H
#include "q4k.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Q4K_OK when the backend can start on this machine; otherwise err says
   why (library not found, no device, not built). */
Q4K_API q4k_result q4k_cuda_probe(q4k_error *err);

#ifdef __cplusplus
}
#endif
#endif /* Q4K_CUDA_H */

#if (defined(Q4K_IMPLEMENTATION) || defined(Q4K_CUDA_IMPLEMENTATION)) && !defined(Q4K_CUDA_IMPLEMENTED)
#define Q4K_CUDA_IMPLEMENTED
#include <stdio.h>
#ifdef __cplusplus
extern "C" {
#endif

Q4K_API q4k_result q4k_cuda_probe(q4k_error *err) {
    if (err) {
        err->code = Q4K_ERR_BACKEND_UNAVAILABLE;
        snprintf(err->msg, sizeof err->msg, "the CUDA backend is not built yet");
    }
    return Q4K_ERR_BACKEND_UNAVAILABLE;
}

#ifdef __cplusplus
}
#endif
#endif
/*
MIT License

Copyright (c) 2026 the q4k authors

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
*/
