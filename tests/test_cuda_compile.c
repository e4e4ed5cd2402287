/* Every kernel compiles with NVRTC, loaded by the library itself (dlopen),
   for every SM from sm_75 to the newest this NVRTC knows; compiler logs
   name the kernel file and line. Needs no GPU: only NVRTC (CI installs it;
   Q4K_NVRTC points at it). Without NVRTC the tests skip, which CI=true
   counts as a failure. Built with Q4K_CUDA_TEST_FAULT, so that a broken
   line can be injected into the embedded kernels ($Q4K_CUDA_TEST_BREAK). */
#define Q4K_IMPLEMENTATION
#define Q4K_CUDA_TEST_FAULT
#include "q4k.h"
#include "q4k_cuda.h"
#include "t.h"

static int have_nvrtc(void) {
    int sms[64], n;
    return q4k_cuda_nvrtc_sms(NULL, sms, 64, &n, NULL) == Q4K_OK;
}

/* sm_75 and sm_90 at least, ascending, every one >= 75 */
static void test_sm_list(void) {
    int sms[64], n = 0, i, has75 = 0, has90 = 0;
    q4k_error err;
    if (!have_nvrtc()) T_SKIP("NVRTC not found (set Q4K_NVRTC)");
    T_CHECK(q4k_cuda_nvrtc_sms(NULL, sms, 64, &n, &err) == Q4K_OK, "%s", err.msg);
    for (i = 0; i < n && i < 64; i++) {
        T_CHECK(sms[i] >= 75 && (i == 0 || sms[i] > sms[i - 1]), "sm list at %d: %d", i, sms[i]);
        has75 |= sms[i] == 75;
        has90 |= sms[i] == 90;
    }
    T_CHECK(has75 && has90, "NVRTC lacks sm_75 or sm_90 (%d SMs)", n);
}

static void test_compile_every_sm(void) {
    int sms[64], n = 0, i;
    q4k_error err;
    char list[512];
    size_t used = 0;
    if (!have_nvrtc()) T_SKIP("NVRTC not found (set Q4K_NVRTC)");
    q4k_cuda_nvrtc_sms(NULL, sms, 64, &n, &err);
    if (t_quick() && n > 1) { /* sanitizer runs: the oldest and the newest */
        sms[1] = sms[n - 1];
        n = 2;
    }
    for (i = 0; i < n; i++) {
        q4k_result r = q4k_cuda_compile_only(NULL, &sms[i], 1, &err);
        T_CHECK(r == Q4K_OK, "sm_%d: %s", sms[i], err.msg);
        used += (size_t)snprintf(list + used, sizeof list - used, " sm_%d", sms[i]);
        if (used >= sizeof list) used = sizeof list - 1;
    }
    printf("  compiled for%s\n", list);
}

/* a compile error names the file under its kernels_src/ name and the line */
static void test_log_names_file_and_line(void) {
    q4k__cuda_lib lib;
    q4k_error err;
    char *common = q4k__join_lines(q4k__embed_q4k_common_h, NULL), *image = NULL;
    size_t size = 0;
    const char *src = "#include \"q4k_common.h\"\n\nextern \"C\" __global__ void k(float *y) {\n    y[0] = no_such_name;\n}\n";
    q4k_result r;
    if (!have_nvrtc()) T_SKIP("NVRTC not found (set Q4K_NVRTC)");
    memset(&lib, 0, sizeof lib);
    T_CHECK(q4k__cuda_load_nvrtc(&lib, NULL, &err) == Q4K_OK, "%s", err.msg);
    r = q4k__cuda_nvrtc_compile(&lib, "kernels_src/broken.cu", src, common, 75, 0, &image, &size, NULL, NULL, &err);
    T_CHECK(r == Q4K_ERR_BACKEND_UNAVAILABLE && image == NULL, "a broken source compiled");
    T_CHECK(strstr(err.msg, "kernels_src/broken.cu:4:") && strstr(err.msg, "no_such_name"), "message: %s", err.msg);
    T_CHECK(!strchr(err.msg, '\n'), "message of more than one line: %s", err.msg);
    /* two errors: the first is named, the count says there are more */
    r = q4k__cuda_nvrtc_compile(&lib, "kernels_src/broken.cu", "extern \"C\" __global__ void k(float *y) {\n    y[0] = a1;\n    y[1] = a2;\n}\n",
                                common, 75, 0, &image, &size, NULL, NULL, &err);
    T_CHECK(r == Q4K_ERR_BACKEND_UNAVAILABLE && strstr(err.msg, "kernels_src/broken.cu:2:") && strstr(err.msg, "a1") &&
                strstr(err.msg, "(2 errors in all)") && !strchr(err.msg, '\n'),
            "two errors: %s", err.msg);
    q4k__cuda_unload(&lib);
    free(common);
}

/* a kernel file of the library itself that does not compile (a line of
   the embedded matmul.cu broken on purpose) fails q4k_cuda_compile_only
   with kernels_src/matmul.cu:LINE in the message (test_compile_every_sm
   compiles the intact file) */
static void test_broken_source_named(void) {
    const char *const *lines = q4k__cuda_file_lines[0];
    int sm = 75, line = 0, i;
    char spec[64], want[64];
    q4k_error err;
    q4k_result r;
    if (!have_nvrtc()) T_SKIP("NVRTC not found (set Q4K_NVRTC)");
    for (i = 0; lines[i] && !line; i++)
        if (!strncmp(lines[i], "#define Q4K_MM_WARPS", 20)) line = i + 1;
    T_CHECK(line > 0, "no Q4K_MM_WARPS line in matmul.cu");
    snprintf(spec, sizeof spec, "matmul.cu:%d", line);
    snprintf(want, sizeof want, "kernels_src/matmul.cu:%d:", line);
    setenv("Q4K_CUDA_TEST_BREAK", spec, 1);
    r = q4k_cuda_compile_only(NULL, &sm, 1, &err);
    unsetenv("Q4K_CUDA_TEST_BREAK");
    printf("  %.200s\n", err.msg);
    T_CHECK(r == Q4K_ERR_BACKEND_UNAVAILABLE, "the broken matmul.cu compiled (%d)", (int)r);
    T_CHECK(strstr(err.msg, want) != NULL, "message lacks %s: %s", want, err.msg);
    T_CHECK(!strchr(err.msg, '\n'), "message of more than one line: %s", err.msg);
}

/* the CUBIN of the matmul file is an ELF image holding every kernel the
   backend looks up (names are in its symbol table); the PTX fallback (for a
   device newer than NVRTC) is PTX text for that target */
static void test_cubin_has_kernels(void) {
    static const char *const names[] = {"q4k_quantize_q8a", "q4k_mv_q8_q4_K", "q4k_mm_q8_q6_K", "q4k_mv_f32_bf16",
                                        "q4k_mm_f32_q5_0", "q4k_mm_q8_q8_0"};
    q4k__cuda_lib lib;
    q4k_error err;
    char *common = q4k__join_lines(q4k__embed_q4k_common_h, NULL), *src = q4k__join_lines(q4k__cuda_file_lines[0], NULL);
    char *image = NULL;
    size_t size = 0, i, k;
    if (!have_nvrtc()) T_SKIP("NVRTC not found (set Q4K_NVRTC)");
    memset(&lib, 0, sizeof lib);
    T_CHECK(q4k__cuda_load_nvrtc(&lib, NULL, &err) == Q4K_OK, "%s", err.msg);
    T_CHECK(q4k__cuda_nvrtc_compile(&lib, q4k__cuda_files[0], src, common, 90, 0, &image, &size, NULL, NULL, &err) == Q4K_OK,
            "%s", err.msg);
    T_CHECK(image && size > 1000 && !memcmp(image, "\177ELF", 4), "not an ELF image (%zu bytes)", size);
    for (k = 0; image && k < sizeof names / sizeof names[0]; k++) {
        size_t len = strlen(names[k]);
        int found = 0;
        for (i = 0; i + len < size && !found; i++) found = !memcmp(image + i, names[k], len + 1);
        T_CHECK(found, "kernel %s not in the CUBIN", names[k]);
    }
    free(image);
    free(src);
    image = NULL;
    src = q4k__join_lines(q4k__cuda_file_lines[1], NULL);
    T_CHECK(q4k__cuda_nvrtc_compile(&lib, q4k__cuda_files[1], src, common, 90, 1, &image, &size, NULL, NULL, &err) == Q4K_OK,
            "%s", err.msg);
    T_CHECK(image && strstr(image, ".target sm_90") && strstr(image, ".entry q4k_attention"), "not PTX for sm_90");
    free(image);
    free(src);
    free(common);
    q4k__cuda_unload(&lib);
}

/* a path that is not NVRTC is refused, naming it */
static void test_missing_nvrtc(void) {
    q4k_cuda_desc d;
    q4k_error err;
    int sms[8], n = 0;
    memset(&d, 0, sizeof d);
    d.nvrtc_path = "/nonexistent/libnvrtc.so.99";
    T_CHECK(q4k_cuda_nvrtc_sms(&d, sms, 8, &n, &err) == Q4K_ERR_BACKEND_UNAVAILABLE, "loaded a missing NVRTC");
    T_CHECK(strstr(err.msg, "/nonexistent/libnvrtc.so.99") != NULL, "message: %s", err.msg);
    d.nvrtc_path = "libm.so.6"; /* a library, but not NVRTC: the missing symbol is named */
    T_CHECK(q4k_cuda_nvrtc_sms(&d, sms, 8, &n, &err) == Q4K_ERR_BACKEND_UNAVAILABLE && strstr(err.msg, "nvrtcVersion"),
            "message: %s", err.msg);
}

static char log_text[4096];
static void grab_log(q4k_log_level level, const char *msg, void *user) {
    size_t used = strlen(log_text);
    (void)user;
    snprintf(log_text + used, sizeof log_text - used, "%d %s\n", (int)level, msg);
}

/* the disk cache: written on a miss, read on a hit (the same image), a
   corrupt file recompiled with a warning, an unwritable folder a warning */
static void test_cache(void) {
    q4k__cuda_lib lib;
    q4k_cuda_desc d;
    q4k_error err;
    char dir[256], cmd[700], *img[4] = {0}, path[600];
    size_t size[4] = {0}, i;
    FILE *f;
    if (!have_nvrtc()) T_SKIP("NVRTC not found (set Q4K_NVRTC)");
    snprintf(dir, sizeof dir, "/tmp/q4k_cache_test_%ld", (long)getpid());
    memset(&lib, 0, sizeof lib);
    memset(&d, 0, sizeof d);
    d.cache_dir = dir;
    d.log = grab_log;
    T_CHECK(q4k__cuda_load_nvrtc(&lib, NULL, &err) == Q4K_OK, "%s", err.msg);
    T_CHECK(q4k__cuda_image(&lib, &d, 1, 75, 0, &img[0], &size[0], &err) == Q4K_OK, "%s", err.msg);
    log_text[0] = 0;
    T_CHECK(q4k__cuda_image(&lib, &d, 1, 75, 0, &img[1], &size[1], &err) == Q4K_OK, "%s", err.msg);
    T_CHECK(strstr(log_text, "from the cache") != NULL, "no cache hit: %s", log_text);
    T_CHECK(img[0] && img[1] && size[0] == size[1] && !memcmp(img[0], img[1], size[0]), "cached image differs");
    /* flip a byte of the payload */
    snprintf(cmd, sizeof cmd, "ls %s/ops-sm75-nvrtc*.cubin", dir);
    f = popen(cmd, "r");
    path[0] = 0;
    if (f) {
        if (!fgets(path, sizeof path, f)) path[0] = 0;
        pclose(f);
    }
    path[strcspn(path, "\n")] = 0;
    T_CHECK(path[0] != 0, "no cache file in %s", dir);
    f = fopen(path, "r+b");
    if (f) {
        int c;
        fseek(f, 100, SEEK_SET);
        c = fgetc(f);
        fseek(f, 100, SEEK_SET);
        fputc(c ^ 0xff, f);
        fclose(f);
    }
    log_text[0] = 0;
    T_CHECK(q4k__cuda_image(&lib, &d, 1, 75, 0, &img[2], &size[2], &err) == Q4K_OK, "%s", err.msg);
    T_CHECK(strstr(log_text, "corrupt cache file") != NULL, "corruption not reported: %s", log_text);
    T_CHECK(img[2] && size[2] == size[0] && !memcmp(img[2], img[0], size[0]), "recompiled image differs");
    /* a cache folder under a regular file cannot be created */
    snprintf(cmd, sizeof cmd, "%s/sub", path); /* path is a regular file */
    d.cache_dir = cmd;
    log_text[0] = 0;
    T_CHECK(q4k__cuda_image(&lib, &d, 1, 75, 0, &img[3], &size[3], &err) == Q4K_OK, "%s", err.msg);
    T_CHECK(strstr(log_text, "cannot write the kernel cache") != NULL, "unwritable cache not reported: %s", log_text);
    for (i = 0; i < 4; i++) free(img[i]);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    T_CHECK(system(cmd) == 0, "rm");
    q4k__cuda_unload(&lib);
}

int main(void) {
    T_RUN(test_missing_nvrtc);
    T_RUN(test_sm_list);
    T_RUN(test_log_names_file_and_line);
    T_RUN(test_broken_source_named);
    T_RUN(test_cubin_has_kernels);
    T_RUN(test_cache);
    T_RUN(test_compile_every_sm);
    T_EXIT();
}
