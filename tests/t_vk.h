/* The Vulkan tests' shared start: a backend on $Q4K_TEST_VK_DEVICE (CPU-type
   devices allowed: lavapipe in CI) under the limits asked for (0: the
   device's) and without the optional features in `disable`; NULL with the
   reason in why when none starts. Include after q4k_vulkan.h. */
#ifndef Q4K_T_VK_H
#define Q4K_T_VK_H

static q4k_backend *t_vk_backend(uint64_t range, uint64_t alloc, unsigned disable, char *why, size_t cap) {
    q4k_vk_backend_desc d;
    q4k_backend *b = NULL;
    q4k_error err;
    memset(&d, 0, sizeof d);
    d.device = getenv("Q4K_TEST_VK_DEVICE");
    d.allow_cpu = 1;
    d.max_range = range;
    d.max_alloc = alloc;
    d.disable = disable;
    if (q4k_vk_backend_create(&d, &b, &err) != Q4K_OK) {
        snprintf(why, cap, "%s", err.msg);
        return NULL;
    }
    return b;
}

#endif
