/* The CUDA tests' shared start: the backends under test and a skip as
   [hardware] where no CUDA GPU is. Include after q4k_cuda.h and t.h. */
#ifndef Q4K_T_CUDA_H
#define Q4K_T_CUDA_H

static q4k_backend *gpu, *cpu;
static char gpu_why[200];

/* skip as [hardware] when this machine has no driver or no device; a
   backend that fails to start on a machine with a GPU is a failure */
static int need_gpu(void) {
    q4k_cuda_info info;
    q4k_error err;
    if (gpu) return 1;
    if (gpu_why[0]) return 0;
    q4k_cuda_list_devices(NULL, &info);
    if (!info.driver_loaded || info.n_devices == 0) {
        snprintf(gpu_why, sizeof gpu_why, "no CUDA GPU here: %.150s", info.driver_why);
        return 0;
    }
    if (q4k_cuda_backend_create(NULL, &gpu, &err) != Q4K_OK) {
        snprintf(gpu_why, sizeof gpu_why, "backend create failed: %.150s", err.msg);
        T_CHECK(0, "%s", gpu_why);
        return 0;
    }
    return 1;
}
#define NEED_GPU()                                                   \
    do {                                                             \
        if (!need_gpu()) {                                           \
            if (t__failed_now) return;                               \
            T_NA(gpu_why);                                           \
        }                                                            \
    } while (0)

#endif
