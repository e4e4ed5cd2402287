#if !defined(_POSIX_C_SOURCE) && !defined(_WIN32)
#define _POSIX_C_SOURCE 200809L
#endif
/* q4k - the command-line tool: run, check and benchmark GGUF models.

   Built from the three headers; see `q4k --help`. Generated text goes to
   stdout, everything else to stderr. Exit codes: 0 ok, 1 error, 2 usage,
   3 parity failure. */
#define Q4K_IMPLEMENTATION
#include "q4k.h"
#include "q4k_cuda.h"
#include "q4k_vulkan.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <signal.h>
#include <time.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

enum { EXIT_OK = 0, EXIT_ERROR = 1, EXIT_USAGE = 2, EXIT_PARITY = 3 };

static const char *usage_text =
    "usage: q4k COMMAND [ARGS]\n"
    "\n"
    "commands:\n"
    "  run MODEL [PROMPT]     generate text (q4k run --help for the options)\n"
    "  info FILE [--json]     print a GGUF file's metadata and tensor table\n"
    "  bench MODEL [options]  prompt and decode speed (q4k bench --help)\n"
    "  synth OUT.gguf --preset tiny|0.5b|1.5b|7b [options]\n"
    "                         write a synthetic model with Qwen2.5's shapes (q4k synth --help)\n"
    "  qa MODEL [options]     check a backend against the CPU reference (q4k qa --help)\n"
    "  devices                every GPU backend and device: memory, compute capability,\n"
    "                         driver and compiler versions, or why it cannot run (exit 0)\n"
    "  --version              version, compiler, CPU paths, GPU backends\n"
    "  --help                 this text\n"
    "\n"
    "exit codes: 0 ok, 1 error (bad file, backend that cannot start, a context\n"
    "            that does not fit in memory, I/O), 2 usage (bad or missing\n"
    "            arguments), 3 parity failure\n"
    "\n"
    "environment: Q4K_CPU=scalar|avx2|avx512|neon forces a CPU kernel path;\n"
    "             Q4K_LIBCUDA, Q4K_NVRTC name the CUDA driver and NVRTC libraries,\n"
    "             Q4K_LIBVULKAN the Vulkan loader; Q4K_HOST_MEM_LIMIT=BYTES caps the\n"
    "             host memory q4k counts on (default: MemAvailable, lowered by\n"
    "             the memory cgroup's limit; `q4k devices` shows it);\n"
    "             Q4K_CUDA_GRAPH=0 turns the CUDA decode graph off;\n"
    "             Q4K_DEVICE_MEM_LIMIT=BYTES caps a GPU backend's device memory\n";


/* Messages quote file content (names, keys, paths): control bytes are shown
   as \xNN, so that no file can move the cursor or clear the terminal. */
static void print_escaped(FILE *f, const char *s) {
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f) fprintf(f, "\\x%02x", c);
        else fputc(c, f);
    }
}

/* "q4k CMD: message" on stderr, escaped */
static void cmd_vsay(const char *cmd, const char *fmt, va_list ap) {
    char buf[2048];
    vsnprintf(buf, sizeof buf, fmt, ap);
    fprintf(stderr, "q4k %s: ", cmd);
    print_escaped(stderr, buf);
    fputc('\n', stderr);
}

static void cmd_say(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    cmd_vsay(cmd, fmt, ap);
    va_end(ap);
}

/* an error; returns EXIT_ERROR */
static int cmd_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    cmd_vsay(cmd, fmt, ap);
    va_end(ap);
    return EXIT_ERROR;
}

/* ---- options: one table per command ------------------------------------- */

/* A command's options are one table; parsing, value checks and --help all
   come from it, so a new flag is one line. */
typedef enum {
    OPT_FLAG,   /* int, set to 1 */
    OPT_STR,    /* const char * */
    OPT_INT,    /* int, a whole number in [lo, hi] */
    OPT_I64,    /* int64_t, a whole number in [lo, hi] */
    OPT_FLOAT,  /* float in [lo, hi] */
    OPT_DOUBLE, /* double in [lo, hi] */
    OPT_SEED    /* uint64_t; -1 draws a random seed */
} opt_kind;

typedef struct cli_opt {
    const char *names; /* every spelling, ", "-separated: "-n, --n-predict" */
    const char *arg;   /* the value's name in --help; NULL for OPT_FLAG */
    opt_kind kind;
    void *dst;
    double lo, hi;
    const char *help; /* lines after the first are indented under it */
} cli_opt;

typedef struct cli_cmd {
    const char *name;   /* "run" */
    const char *usage;  /* "q4k run MODEL [PROMPT] [options]" */
    const char *intro;  /* text under the usage line, or NULL */
    const cli_opt *opts;
    size_t n_opts;
    const char *footer; /* text after the options, or NULL */
} cli_cmd;

#define N_OPTS(a) (sizeof(a) / sizeof((a)[0]))

static int cmd_usage_error(const cli_cmd *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    cmd_vsay(c->name, fmt, ap);
    va_end(ap);
    fprintf(stderr, "(see q4k %s --help)\n", c->name);
    return EXIT_USAGE;
}

static void cmd_help(const cli_cmd *c, FILE *f) {
    size_t i;
    fprintf(f, "usage: %s\n", c->usage);
    if (c->intro) fputs(c->intro, f);
    for (i = 0; i < c->n_opts; i++) {
        const cli_opt *o = &c->opts[i];
        char left[64];
        const char *h;
        int w = snprintf(left, sizeof left, "%s%s%s", o->names, o->arg ? " " : "", o->arg ? o->arg : "");
        fprintf(f, "  %s", left);
        if (w > 22) fprintf(f, "\n%24s", "");
        else fprintf(f, "%*s", 22 - w, "");
        for (h = o->help; *h; h++) {
            fputc(*h, f);
            if (*h == '\n' && h[1]) fprintf(f, "%24s", "");
        }
        fputc('\n', f);
    }
    fputs(c->footer ? c->footer : "exit codes: 0 ok, 1 error, 2 usage, 3 parity failure\n", f);
}

/* does "-n, --n-predict" name the flag a (length len)? */
static int opt_named(const char *names, const char *a, size_t len) {
    while (*names) {
        size_t n = strcspn(names, ", ");
        if (n == len && !strncmp(names, a, len)) return 1;
        names += n;
        names += strspn(names, ", ");
    }
    return 0;
}

static uint64_t random_seed(void) {
    struct timespec ts;
    uint64_t s;
    clock_gettime(CLOCK_REALTIME, &ts);
    s = ((uint64_t)ts.tv_sec * 1000000007ull) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
    s ^= s >> 31;
    return s * 0x9E3779B97F4A7C15ull >> 1; /* below 2^63: --seed takes it back */
}

static int opt_set(const cli_cmd *c, const cli_opt *o, const char *flag, size_t flen, const char *v) {
    char *end;
    double d;
    long long ll;
    switch (o->kind) {
    case OPT_FLAG: *(int *)o->dst = 1; return 1;
    case OPT_STR: *(const char **)o->dst = v; return 1;
    case OPT_INT:
    case OPT_I64:
        errno = 0;
        ll = strtoll(v, &end, 10);
        if (end == v || *end || errno || (double)ll < o->lo || (double)ll > o->hi) {
            cmd_usage_error(c, "%.*s wants a whole number from %.0f to %.0f, not '%s'", (int)flen, flag, o->lo, o->hi, v);
            return 0;
        }
        if (o->kind == OPT_INT) *(int *)o->dst = (int)ll;
        else *(int64_t *)o->dst = (int64_t)ll;
        return 1;
    case OPT_FLOAT:
    case OPT_DOUBLE:
        d = strtod(v, &end);
        if (end == v || *end || !(d >= o->lo && d <= o->hi)) {
            cmd_usage_error(c, "%.*s wants a number from %g to %g, not '%s'", (int)flen, flag, o->lo, o->hi, v);
            return 0;
        }
        if (o->kind == OPT_FLOAT) *(float *)o->dst = (float)d;
        else *(double *)o->dst = d;
        return 1;
    case OPT_SEED:
        errno = 0;
        if (!strcmp(v, "-1")) { *(uint64_t *)o->dst = random_seed(); return 1; }
        *(uint64_t *)o->dst = strtoull(v, &end, 10);
        if (end == v || *end || errno || v[0] == '-') {
            cmd_usage_error(c, "%.*s wants a whole number from 0 to 18446744073709551615, or -1 for a random seed, not '%s'",
                            (int)flen, flag, v);
            return 0;
        }
        return 1;
    }
    return 0;
}

/* Parses argv into the table's destinations; other arguments go to pos[]
   (at most max_pos). "--flag=value" and "--flag value" both work. Returns -1
   to go on, else the exit code (0 after --help, 2 on a usage error). */
static int cmd_parse(const cli_cmd *c, int argc, char **argv, const char **pos, int max_pos, int *n_pos) {
    int i;
    size_t k;
    *n_pos = 0;
    for (i = 0; i < argc; i++) {
        const char *a = argv[i], *eq, *v = NULL;
        size_t len;
        const cli_opt *o = NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            cmd_help(c, stdout);
            return EXIT_OK;
        }
        if (a[0] != '-' || !a[1]) {
            if (*n_pos >= max_pos) return cmd_usage_error(c, "unexpected argument '%s'", a);
            pos[(*n_pos)++] = a;
            continue;
        }
        eq = a[1] == '-' ? strchr(a, '=') : NULL;
        len = eq ? (size_t)(eq - a) : strlen(a);
        for (k = 0; k < c->n_opts && !o; k++)
            if (opt_named(c->opts[k].names, a, len)) o = &c->opts[k];
        if (!o) return cmd_usage_error(c, "unknown flag '%.*s'", (int)len, a);
        if (o->kind == OPT_FLAG) {
            if (eq) return cmd_usage_error(c, "%.*s takes no value", (int)len, a);
        } else if (eq) v = eq + 1;
        else if (i + 1 < argc) v = argv[++i];
        else return cmd_usage_error(c, "%s wants a value (%s)", a, o->arg);
        if (!opt_set(c, o, a, len, v)) return EXIT_USAGE;
    }
    return -1;
}

static void paths_line(const char *label, unsigned mask) {
    int p;
    fprintf(stdout, "%s:", label);
    for (p = Q4K_CPU_SCALAR; p <= Q4K_CPU_NEON; p++)
        if (mask & (1u << p)) fprintf(stdout, " %s", q4k_cpu_path_name((q4k_cpu_path)p));
    fprintf(stdout, "\n");
}

/* a probe's message without the backend name it starts with */
static const char *without_prefix(const char *msg, const char *prefix) {
    return strncmp(msg, prefix, strlen(prefix)) ? msg : msg + strlen(prefix);
}

static int cmd_version(void) {
    q4k_error err;
    q4k_cpu_path best;
    printf("q4k %s\n", q4k_version_string());
#if defined(__clang__)
    printf("compiler: clang %s\n", __clang_version__);
#elif defined(__GNUC__)
    printf("compiler: gcc %s\n", __VERSION__);
#elif defined(_MSC_VER)
    printf("compiler: msvc %d\n", _MSC_VER);
#else
    printf("compiler: unknown\n");
#endif
    paths_line("cpu paths compiled", q4k_cpu_paths_compiled());
    paths_line("cpu paths detected", q4k_cpu_paths_detected());
    if (q4k_cpu_resolve_path(Q4K_CPU_AUTO, &best, &err) == Q4K_OK)
        printf("cpu path used: %s\n", q4k_cpu_path_name(best));
    else
        printf("cpu path used: none (%s)\n", err.msg);
    /* one line a GPU backend, in the probe's own words */
    {
        /* each probe before its message is read: argument order is unspecified */
        int ok = q4k_cuda_probe(&err) == Q4K_OK;
        printf("cuda: %s\n", ok ? "ready" : without_prefix(err.msg, "cuda: "));
        ok = q4k_vk_probe(&err) == Q4K_OK;
        printf("vulkan: %s%s\n", ok ? "ready on " : "", without_prefix(err.msg, "vulkan: "));
    }
    return EXIT_OK;
}

/* the CUDA part of `q4k devices`: the same probe as --version, in full */
/* the memory the CPU backend's sessions may take: MemAvailable, lowered by
   the process's memory cgroup (a container's limit) or Q4K_HOST_MEM_LIMIT */
static void devices_cpu(void) {
    const char *source;
    uint64_t avail = q4k_host_memory_available(&source);
    if (avail == UINT64_MAX)
        printf("cpu:\n  host memory available: unknown (no /proc/meminfo, sysconf or cgroup limit)\n");
    else
        printf("cpu:\n  host memory available: %.1f MiB (%s)\n", (double)avail / (1024.0 * 1024.0), source);
}

static void devices_cuda(void) {
    q4k_cuda_info info;
    int i;
    q4k_cuda_list_devices(NULL, &info);
    printf("cuda:\n");
    if (info.nvrtc_loaded)
        printf("  nvrtc: %d.%d (%s)\n", info.nvrtc_major, info.nvrtc_minor, info.nvrtc_path);
    else
        printf("  nvrtc: not found: %s\n", info.nvrtc_why);
    if (!info.driver_loaded) {
        printf("  driver: not available: %s\n", info.driver_why);
        return;
    }
    printf("  driver: CUDA %d.%d (%s)\n", info.driver_version / 1000, info.driver_version % 1000 / 10, info.driver_path);
    if (info.n_devices == 0) printf("  no device: %s\n", info.driver_why);
    for (i = 0; i < info.n_devices && i < Q4K_CUDA_MAX_DEVICES; i++) {
        const q4k_cuda_device_info *d = &info.devices[i];
        printf("  device %d: %s, %.1f GiB, compute capability %d.%d, %d SMs: %s%s\n", d->ordinal, d->name,
               (double)d->total_memory / (1024.0 * 1024.0 * 1024.0), d->cc_major, d->cc_minor, d->n_sm,
               d->usable ? "usable" : "cannot run: ", d->usable ? "" : d->why);
    }
}

/* q4k devices, Vulkan part: every device the loader sees, with the limits
   the backend splits tensors by */
static void devices_vulkan(void) {
    q4k_vk_device_info d[16];
    q4k_error err;
    char feat[64];
    int n = 0, i;
    if (q4k_vk_list_devices(d, 16, &n, &err) != Q4K_OK) {
        printf("%s\n", err.msg);
        return;
    }
    printf("vulkan: %d device%s\n", n, n == 1 ? "" : "s");
    for (i = 0; i < n && i < 16; i++) {
        printf("  [%d] %s (%s), Vulkan %u.%u.%u, %.1f GiB device-local%s%s\n", i, d[i].name, d[i].type,
               (d[i].api_version >> 22) & 0x7Fu, (d[i].api_version >> 12) & 0x3FFu, d[i].api_version & 0xFFFu, (double)d[i].device_local_bytes / 1073741824.0,
               d[i].driver[0] ? ", driver " : "", d[i].driver);
        printf("      maxStorageBufferRange %llu, maxMemoryAllocationSize %llu, maxBufferSize %llu,\n"
               "      minStorageBufferOffsetAlignment %llu, maxComputeSharedMemorySize %u,\n"
               "      maxComputeWorkGroupCount %u x %u x %u, subgroup size %u\n",
               (unsigned long long)d[i].max_storage_buffer_range, (unsigned long long)d[i].max_memory_allocation_size,
               (unsigned long long)d[i].max_buffer_size, (unsigned long long)d[i].min_storage_buffer_offset_alignment,
               d[i].max_compute_shared_memory_size, d[i].max_compute_work_group_count[0],
               d[i].max_compute_work_group_count[1], d[i].max_compute_work_group_count[2], d[i].subgroup_size);
        printf("      optional features: %s\n", q4k_vk_feature_names(d[i].features, feat, sizeof feat));
        if (!d[i].usable) printf("      rejected: %s\n", d[i].reject);
        else if (!strcmp(d[i].type, "cpu")) printf("      usable when named (--device) or with --backend vulkan, never by auto\n");
        else printf("      usable\n");
    }
}

static q4k_result gpu_backend(const char *name, const char *device, int allow_cpu, int verbose, q4k_backend **out,
                              q4k_error *err);

static int cmd_devices(int argc, char **argv) {
    const char *device = NULL;
    if (argc > 0 && (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h"))) {
        printf("usage: q4k devices [--device N|NAME]\n  lists the host memory the CPU backend may use (its source: MemAvailable, a\n"
               "  memory cgroup's limit or Q4K_HOST_MEM_LIMIT) and every GPU backend and device\n"
               "  (memory, compute capability, driver and compiler versions) or why it cannot\n"
               "  run; exits 0 after listing.\n"
               "  --device N|NAME: also say which Vulkan device that choice starts on, or why none\n");
        return EXIT_OK;
    }
    if (argc == 2 && !strcmp(argv[0], "--device")) {
        device = argv[1];
    } else if (argc > 0) {
        fprintf(stderr, "q4k devices: unexpected argument '%s'\n(see q4k devices --help)\n", argv[0]);
        return EXIT_USAGE;
    }
    devices_cpu();
    devices_cuda();
    devices_vulkan();
    if (device) {
        q4k_backend *b = NULL;
        q4k_vk_backend_info vi;
        q4k_error err;
        if (gpu_backend("vulkan", device, 1, 0, &b, &err) == Q4K_OK && q4k_vk_backend_info_get(b, &vi) == Q4K_OK)
            printf("vulkan: --device %s: device %d, %s (%s)\n", device, vi.device.index, vi.device.name, vi.device.type);
        else
            printf("vulkan: --device %s: %s\n", device, err.msg);
        q4k_backend_destroy(b);
    }
    return EXIT_OK;
}

static int cmd_info(int argc, char **argv) {
    const char *path = NULL;
    int json = 0, rc, n_pos;
    q4k_gguf *g;
    q4k_error err;
    q4k_gguf_desc desc;
    const cli_opt opts[] = {
        {"--json", NULL, OPT_FLAG, &json, 0, 0, "print JSON instead of text"},
    };
    const cli_cmd cmd = {"info", "q4k info FILE [--json]",
                         "  prints a GGUF file's metadata and tensor table (also of files with types\n"
                         "  q4k cannot run: the table marks them)\n",
                         opts, N_OPTS(opts), NULL};
    /* info shows any valid GGUF, also one with types q4k cannot run (the
       table marks them); run and the model loader refuse those */
    memset(&desc, 0, sizeof desc);
    desc.allow_unimplemented = 1;
    if ((rc = cmd_parse(&cmd, argc, argv, &path, 1, &n_pos)) >= 0) return rc;
    if (!path) return cmd_usage_error(&cmd, "missing FILE");
    if (q4k_gguf_open_file(path, &desc, &g, &err) != Q4K_OK) {
        cmd_error("info", "%s", err.msg);
        return EXIT_ERROR;
    }
    q4k_gguf_print(g, stdout, json);
    q4k_gguf_close(g);
    return EXIT_OK;
}


static char *read_file(const char *path, size_t *len, char *why, size_t why_cap);

/* ---- q4k synth: synthetic models with real shapes ---------------------- */

typedef struct synth_preset {
    const char *name;
    int64_t n_embd, n_head, n_head_kv, n_ff, n_vocab, n_layer;
    int tied;
} synth_preset;

static const synth_preset synth_presets[] = {
    {"tiny", 256, 8, 2, 768, 2048, 4, 0},
    {"0.5b", 896, 14, 2, 4864, 151936, 24, 1},
    {"1.5b", 1536, 12, 2, 8960, 151936, 28, 1},
    {"7b", 3584, 28, 4, 18944, 152064, 28, 0},
};

typedef enum { QUANT_Q4_K_M, QUANT_MIXED, QUANT_Q8_0, QUANT_F32 } synth_quant;

typedef enum { W_MATRIX, W_NORM, W_BIAS, W_EMBD } synth_kind;

typedef struct synth_tensor {
    char name[64];
    q4k_type type;
    int n_dims;
    int64_t ne[2];
    synth_kind kind;
    float scale; /* std of matrix weights */
} synth_tensor;

typedef struct synth_job {
    const synth_tensor *t;
    void *out;
    uint64_t seed;
    int fast;
    const void *pool_blocks; /* fast mode: quantized Gaussian blocks to draw from */
    int64_t pool_n;
    int outliers;
} synth_job;

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double unif(uint64_t *s) { return ((double)(splitmix(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }
static void gauss_fill(float *x, int64_t n, uint64_t *s, float std) {
    int64_t i;
    for (i = 0; i < n; i += 2) {
        double r = sqrt(-2.0 * log(unif(s))), a = 6.283185307179586 * unif(s);
        x[i] = (float)(r * cos(a)) * std;
        if (i + 1 < n) x[i + 1] = (float)(r * sin(a)) * std;
    }
}

/* channels of the residual stream that --outliers makes hundreds of times larger */
static int is_outlier_channel(int64_t c, int64_t n_embd) { return c == 7 || c == n_embd / 3 || c == n_embd - 5; }

/* Rows [ith::nth] of a tensor: Gaussian values quantized to its type; in
   fast mode, blocks drawn from a pool of quantized Gaussian blocks. */
static void synth_rows(void *ctx, int ith, int nth) {
    synth_job *j = (synth_job *)ctx;
    const synth_tensor *t = j->t;
    int64_t cols = t->ne[0], rows = t->n_dims == 2 ? t->ne[1] : 1, r, c;
    size_t row_bytes = q4k_row_size(t->type, cols);
    q4k_type_info ti = q4k_type_traits(t->type);
    float *buf = (float *)malloc((size_t)cols * sizeof(float));
    if (!buf) return;
    for (r = ith; r < rows; r += nth) {
        uint64_t s = j->seed ^ ((uint64_t)r * 0xD1B54A32D192ED03ull);
        unsigned char *dst = (unsigned char *)j->out + (size_t)r * row_bytes;
        splitmix(&s);
        if (j->fast && j->pool_blocks && ti.block_size > 1) {
            int64_t b, nb = cols / ti.block_size;
            for (b = 0; b < nb; b++)
                memcpy(dst + (size_t)b * ti.type_size,
                       (const unsigned char *)j->pool_blocks + (size_t)(splitmix(&s) % (uint64_t)j->pool_n) * ti.type_size,
                       ti.type_size);
            continue;
        }
        switch (t->kind) {
        case W_NORM:
            for (c = 0; c < cols; c++) buf[c] = (float)(1.0 + 0.2 * (unif(&s) - 0.5));
            break;
        case W_BIAS:
            gauss_fill(buf, cols, &s, 0.5f);
            break;
        case W_EMBD:
            gauss_fill(buf, cols, &s, t->scale);
            if (j->outliers) /* every token: |x| >= 300 std in the outlier channels */
                for (c = 0; c < cols; c++)
                    if (is_outlier_channel(c, cols))
                        buf[c] = (buf[c] < 0 ? -t->scale : t->scale) * (300.0f + 100.0f * fabsf(buf[c]) / t->scale);
            break;
        case W_MATRIX:
            gauss_fill(buf, cols, &s, t->scale);
            break;
        }
        q4k_quantize_row(t->type, buf, dst, cols);
    }
    free(buf);
}

static q4k_type synth_fit(q4k_type want, int64_t cols) {
    if (cols % Q4K_QK_K == 0) return want;
    if (want == Q4K_TYPE_Q4_K || want == Q4K_TYPE_Q5_K) return Q4K_TYPE_Q5_0;
    if (want == Q4K_TYPE_Q6_K) return Q4K_TYPE_Q8_0;
    return want;
}

static q4k_type synth_matrix_type(synth_quant q, const char *what, int64_t layer, int64_t n_layer, int64_t cols,
                                  int *counter) {
    static const q4k_type mixed[] = {Q4K_TYPE_Q4_K, Q4K_TYPE_Q6_K, Q4K_TYPE_Q5_K, Q4K_TYPE_Q8_0, Q4K_TYPE_Q4_0,
                                     Q4K_TYPE_Q5_0, Q4K_TYPE_F16, Q4K_TYPE_BF16, Q4K_TYPE_F32};
    switch (q) {
    case QUANT_F32: return Q4K_TYPE_F32;
    case QUANT_Q8_0: return Q4K_TYPE_Q8_0;
    case QUANT_MIXED: return synth_fit(mixed[(*counter)++ % 9], cols);
    case QUANT_Q4_K_M:
        if (!strcmp(what, "output")) return synth_fit(Q4K_TYPE_Q6_K, cols);
        if (!strcmp(what, "attn_v") || !strcmp(what, "ffn_down")) {
            int64_t e = n_layer / 8;
            if (layer < e || layer >= 7 * n_layer / 8 || (layer - e) % 3 == 2) return synth_fit(Q4K_TYPE_Q6_K, cols);
        }
        return synth_fit(Q4K_TYPE_Q4_K, cols);
    }
    return Q4K_TYPE_F32;
}

/* The GGUF vocabulary of a synthetic model: the Qwen vocabulary when a
   .tiktoken file is given, else byte tokens plus letter-pair merges. Both
   end with Qwen2.5's 22 added tokens, or with DeepSeek-R1-Distill-Qwen's
   (deepseek: the ids, token types, BOS/EOS and pre-tokenizer name its
   published tokenizer_config.json gives and GGUF converters write: added
   tokens marked special, or spelled <|..|> or <｜..｜>, are CONTROL; the
   rest, <think> among them, USER_DEFINED); padded to n_vocab. chat_template
   (optional) becomes tokenizer.chat_template. */
static int synth_vocab(q4k_gguf_writer *w, const char *tiktoken, int64_t *n_vocab, int fixed_vocab, int deepseek,
                       const char *chat_template, q4k_error *err) {
    q4k_vocab_strings v;
    q4k_result r;
    int64_t i, n_special = 22;
    static const char *const qwen_specials[] = {
        "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
        "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
        "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
        "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"};
    static const int32_t qwen_types[] = {3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3};
    static const char *const ds_specials[] = {
        "<\xEF\xBD\234end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>", "<\xEF\xBD\x9CUser\xEF\xBD\x9C>",
        "<\xEF\xBD\234Assistant\xEF\xBD\x9C>", "<\xEF\xBD\234begin\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>",
        "<|EOT|>", "<think>", "</think>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
        "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
        "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"};
    static const int32_t ds_types[] = {3, 3, 3, 3, 3, 4, 4, 3, 3, 3, 3, 3, 3, 3, 4, 4, 3, 3, 3, 3, 3, 3};
    const char *const *specials = deepseek ? ds_specials : qwen_specials;
    const int32_t *special_types = deepseek ? ds_types : qwen_types;
    int32_t *types;
    char pad[32];
    if (tiktoken) r = q4k_vocab_from_tiktoken(tiktoken, &v, err);
    else r = q4k_vocab_synthetic(fixed_vocab ? *n_vocab - n_special : 2048 - n_special, &v, err);
    if (r) return 0;
    if (!fixed_vocab) *n_vocab = v.n_tokens + n_special;
    if (v.n_tokens + n_special > *n_vocab) {
        snprintf(err->msg, sizeof err->msg, "vocabulary of %lld tokens does not fit the preset's %lld",
                 (long long)(v.n_tokens + n_special), (long long)*n_vocab);
        q4k_vocab_strings_free(&v);
        return 0;
    }
    {
        const char **toks = (const char **)malloc((size_t)*n_vocab * sizeof(char *));
        char *pads = (char *)malloc((size_t)*n_vocab * 32);
        types = (int32_t *)malloc((size_t)*n_vocab * sizeof(int32_t));
        if (!toks || !pads || !types) {
            free(toks); free(pads); free(types);
            q4k_vocab_strings_free(&v);
            snprintf(err->msg, sizeof err->msg, "out of memory for the vocabulary");
            return 0;
        }
        for (i = 0; i < v.n_tokens; i++) { toks[i] = v.tokens[i]; types[i] = 1; }
        for (i = 0; i < n_special; i++) { toks[v.n_tokens + i] = specials[i]; types[v.n_tokens + i] = special_types[i]; }
        for (i = v.n_tokens + n_special; i < *n_vocab; i++) {
            snprintf(pad, sizeof pad, "[PAD%lld]", (long long)i);
            memcpy(pads + i * 32, pad, 32);
            toks[i] = pads + i * 32;
            types[i] = 5; /* unused */
        }
        q4k_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
        q4k_gguf_writer_set_str(w, "tokenizer.ggml.pre", deepseek ? "deepseek-r1-qwen" : "qwen2");
        q4k_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, (uint64_t)*n_vocab);
        q4k_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", Q4K_GGUF_INT32, types, (uint64_t)*n_vocab);
        q4k_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)v.merges, (uint64_t)v.n_merges);
        /* qwen: eos <|im_end|>, bos <|endoftext|>; deepseek: eos <｜end▁of▁sentence｜>, bos <｜begin▁of▁sentence｜> */
        q4k_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)(v.n_tokens + (deepseek ? 0 : 2)));
        q4k_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)(v.n_tokens + (deepseek ? 3 : 0)));
        q4k_gguf_writer_set_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)v.n_tokens);
        q4k_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", deepseek);
        if (chat_template) q4k_gguf_writer_set_str(w, "tokenizer.chat_template", chat_template);
        /* the writer copies metadata: the arrays can go */
        free(toks); free(pads); free(types);
    }
    q4k_vocab_strings_free(&v);
    return 1;
}

static int cmd_synth(int argc, char **argv) {
    const char *out = NULL, *preset_name = NULL, *vocab = NULL, *quant_name = "q4_k_m", *added = "qwen2.5";
    const char *template_path = NULL;
    char *chat_template = NULL;
    int64_t layers = 0, i, l, n_vocab;
    uint64_t seed = 42;
    int fast = 0, outliers = 0, counter = 0, n_threads = 0, rc, n_pos;
    synth_preset p;
    synth_quant quant;
    synth_tensor *ts;
    int64_t nt = 0;
    q4k_gguf_writer *w;
    q4k_error err;
    q4k_pool *pool;
    const cli_opt opts[] = {
        {"--preset", "NAME", OPT_STR, &preset_name, 0, 0, "tiny, 0.5b, 1.5b or 7b: Qwen2.5's shapes (tiny: 4 small layers)"},
        {"--layers", "N", OPT_I64, &layers, 1, 1000, "layers instead of the preset's count"},
        {"--vocab", "PATH", OPT_STR, &vocab, 0, 0, "a .tiktoken file: the real Qwen vocabulary and merges\n"
                                                   "(default: byte tokens plus letter-pair merges)"},
        {"--added-tokens", "SET", OPT_STR, &added, 0, 0, "with --vocab: the special tokens after the vocabulary,\n"
                                                        "qwen2.5 (default) or deepseek-r1-qwen (DeepSeek-R1-Distill-Qwen's)"},
        {"--chat-template", "FILE", OPT_STR, &template_path, 0, 0, "store FILE as tokenizer.chat_template"},
        {"--quant", "Q", OPT_STR, &quant_name, 0, 0, "q4_k_m (default: Q4_K with Q6_K where llama.cpp's recipe puts it),\n"
                                                     "mixed (every supported type in turn, to test them all),\n"
                                                     "q8_0 or f32"},
        {"--fast", NULL, OPT_FLAG, &fast, 0, 0, "fill big matrices from a pool of 4096 random quantized blocks\n"
                                                "instead of quantizing every row (7b in seconds, not minutes)"},
        {"--outliers", NULL, OPT_FLAG, &outliers, 0, 0, "make 3 channels of every token embedding ~300x larger, as\n"
                                                        "trained models have (stresses 8-bit activations)"},
        {"--seed", "S", OPT_SEED, &seed, 0, 0, "random seed (default 42; -1: random)"},
        {"-t, --threads", "N", OPT_INT, &n_threads, 1, 1024, "threads (default 2)"},
    };
    const cli_cmd cmd = {"synth", "q4k synth OUT.gguf --preset tiny|0.5b|1.5b|7b [options]",
                         "  writes a synthetic qwen2 model with random weights and real shapes\n", opts, N_OPTS(opts), NULL};
    memset(&p, 0, sizeof p);
    memset(&err, 0, sizeof err);
    if ((rc = cmd_parse(&cmd, argc, argv, &out, 1, &n_pos)) >= 0) return rc;
    if (!out) return cmd_usage_error(&cmd, "missing OUT.gguf");
    if (!preset_name) return cmd_usage_error(&cmd, "missing --preset tiny|0.5b|1.5b|7b");
    if (vocab) {
        struct stat vs;
        if (stat(vocab, &vs) != 0) return cmd_error("synth", "%s: cannot open: %s", vocab, strerror(errno));
        if (!S_ISREG(vs.st_mode)) return cmd_error("synth", "%s: not a regular file (--vocab wants a .tiktoken file)", vocab);
    }
    for (i = 0; i < (int64_t)(sizeof synth_presets / sizeof synth_presets[0]); i++)
        if (!strcmp(preset_name, synth_presets[i].name)) p = synth_presets[i];
    if (!p.name) return cmd_usage_error(&cmd, "unknown preset '%s' (tiny, 0.5b, 1.5b, 7b)", preset_name);
    if (strcmp(added, "qwen2.5") && strcmp(added, "deepseek-r1-qwen"))
        return cmd_usage_error(&cmd, "unknown --added-tokens '%s' (qwen2.5, deepseek-r1-qwen)", added);
    if (template_path) {
        size_t len;
        char why[256];
        chat_template = read_file(template_path, &len, why, sizeof why);
        if (!chat_template) return cmd_error("synth", "cannot read --chat-template %s: %s", template_path, why);
    }
    if (!strcmp(quant_name, "q4_k_m")) quant = QUANT_Q4_K_M;
    else if (!strcmp(quant_name, "mixed")) quant = QUANT_MIXED;
    else if (!strcmp(quant_name, "q8_0")) quant = QUANT_Q8_0;
    else if (!strcmp(quant_name, "f32")) quant = QUANT_F32;
    else return cmd_usage_error(&cmd, "unknown --quant '%s' (q4_k_m, mixed, q8_0, f32)", quant_name);
    if (layers) p.n_layer = layers;

    w = q4k_gguf_writer_new(32);
    if (!w) { cmd_error("synth", "out of memory"); return EXIT_ERROR; }
    n_vocab = p.n_vocab;
    if (!synth_vocab(w, vocab, &n_vocab, strcmp(p.name, "tiny") != 0, !strcmp(added, "deepseek-r1-qwen"), chat_template,
                     &err)) {
        cmd_error("synth", "%s", err.msg);
        q4k_gguf_writer_free(w);
        free(chat_template);
        return EXIT_ERROR;
    }
    free(chat_template); /* the writer keeps a copy */
    q4k_gguf_writer_set_str(w, "general.architecture", "qwen2");
    q4k_gguf_writer_set_str(w, "general.name", "q4k synthetic");
    q4k_gguf_writer_set_u32(w, "qwen2.block_count", (uint32_t)p.n_layer);
    q4k_gguf_writer_set_u32(w, "qwen2.context_length", 32768);
    q4k_gguf_writer_set_u32(w, "qwen2.embedding_length", (uint32_t)p.n_embd);
    q4k_gguf_writer_set_u32(w, "qwen2.feed_forward_length", (uint32_t)p.n_ff);
    q4k_gguf_writer_set_u32(w, "qwen2.attention.head_count", (uint32_t)p.n_head);
    q4k_gguf_writer_set_u32(w, "qwen2.attention.head_count_kv", (uint32_t)p.n_head_kv);
    q4k_gguf_writer_set_f32(w, "qwen2.rope.freq_base", 1000000.0f);
    q4k_gguf_writer_set_f32(w, "qwen2.attention.layer_norm_rms_epsilon", 1e-6f);
    q4k_gguf_writer_set_u32(w, "general.file_type", quant == QUANT_Q4_K_M ? 15 : quant == QUANT_Q8_0 ? 7 : 0);

    ts = (synth_tensor *)calloc((size_t)(4 + 12 * p.n_layer), sizeof *ts);
    if (!ts) { q4k_gguf_writer_free(w); cmd_error("synth", "out of memory"); return EXIT_ERROR; }
#define ADD(kind_, type_, ne0, ne1, scale_, ...)                                     \
    do {                                                                              \
        synth_tensor *t_ = &ts[nt++];                                                 \
        snprintf(t_->name, sizeof t_->name, __VA_ARGS__);                            \
        t_->kind = kind_; t_->type = type_; t_->ne[0] = ne0; t_->ne[1] = ne1;        \
        t_->n_dims = ne1 ? 2 : 1; t_->scale = scale_;                                \
    } while (0)
    {
        int64_t d = p.n_embd, hd = p.n_embd / p.n_head, qd = p.n_head * hd, kvd = p.n_head_kv * hd;
        /* output projections shrink with depth so that 28 layers stay well conditioned */
        float deep = (float)(1.0 / sqrt(2.0 * (double)p.n_layer));
        q4k_type emb_type = p.tied ? synth_matrix_type(quant, "output", 0, p.n_layer, d, &counter)
                                   : synth_matrix_type(quant, "token_embd", 0, p.n_layer, d, &counter);
        /* tied: the embedding is also the output projection, scaled for logits of std ~3 */
        ADD(W_EMBD, emb_type, d, n_vocab, p.tied ? (float)(3.0 / sqrt((double)d)) : 1.0f, "token_embd.weight");
        ADD(W_NORM, Q4K_TYPE_F32, d, 0, 0.0f, "output_norm.weight");
        /* logits with a std of about 3, as trained models have */
        if (!p.tied) ADD(W_MATRIX, synth_matrix_type(quant, "output", 0, p.n_layer, d, &counter), d, n_vocab,
                         (float)(3.0 / sqrt((double)d)), "output.weight");
        for (l = 0; l < p.n_layer; l++) {
            float sd = (float)(1.0 / sqrt((double)d)), sf = (float)(1.0 / sqrt((double)p.n_ff));
            float so = (float)(1.0 / sqrt((double)qd));
            ADD(W_NORM, Q4K_TYPE_F32, d, 0, 0.0f, "blk.%lld.attn_norm.weight", (long long)l);
            ADD(W_MATRIX, synth_matrix_type(quant, "attn_q", l, p.n_layer, d, &counter), d, qd, sd, "blk.%lld.attn_q.weight", (long long)l);
            ADD(W_BIAS, Q4K_TYPE_F32, qd, 0, 0.0f, "blk.%lld.attn_q.bias", (long long)l);
            ADD(W_MATRIX, synth_matrix_type(quant, "attn_k", l, p.n_layer, d, &counter), d, kvd, sd, "blk.%lld.attn_k.weight", (long long)l);
            ADD(W_BIAS, Q4K_TYPE_F32, kvd, 0, 0.0f, "blk.%lld.attn_k.bias", (long long)l);
            ADD(W_MATRIX, synth_matrix_type(quant, "attn_v", l, p.n_layer, d, &counter), d, kvd, sd, "blk.%lld.attn_v.weight", (long long)l);
            ADD(W_BIAS, Q4K_TYPE_F32, kvd, 0, 0.0f, "blk.%lld.attn_v.bias", (long long)l);
            ADD(W_MATRIX, synth_matrix_type(quant, "attn_output", l, p.n_layer, qd, &counter), qd, d, so * deep, "blk.%lld.attn_output.weight", (long long)l);
            ADD(W_NORM, Q4K_TYPE_F32, d, 0, 0.0f, "blk.%lld.ffn_norm.weight", (long long)l);
            ADD(W_MATRIX, synth_matrix_type(quant, "ffn_gate", l, p.n_layer, d, &counter), d, p.n_ff, sd, "blk.%lld.ffn_gate.weight", (long long)l);
            ADD(W_MATRIX, synth_matrix_type(quant, "ffn_up", l, p.n_layer, d, &counter), d, p.n_ff, sd, "blk.%lld.ffn_up.weight", (long long)l);
            ADD(W_MATRIX, synth_matrix_type(quant, "ffn_down", l, p.n_layer, p.n_ff, &counter), p.n_ff, d, sf * deep, "blk.%lld.ffn_down.weight", (long long)l);
        }
    }
#undef ADD
    for (i = 0; i < nt; i++)
        q4k_gguf_writer_add_tensor(w, ts[i].name, ts[i].type, ts[i].n_dims, ts[i].ne, NULL);
    if (q4k_gguf_writer_begin(w, out, &err) != Q4K_OK) {
        cmd_error("synth", "%s", err.msg);
        free(ts);
        q4k_gguf_writer_free(w);
        return EXIT_ERROR;
    }
    pool = q4k_pool_create(n_threads ? n_threads : 2);
    for (i = 0; i < nt; i++) {
        /* progress: in place on a terminal, else a line at each quarter */
        if (isatty(2)) fprintf(stderr, "\rq4k synth: tensor %lld of %lld (%s)", (long long)(i + 1), (long long)nt, ts[i].name);
        else if (i * 4 / nt != (i + 1) * 4 / nt || i == 0)
            fprintf(stderr, "q4k synth: tensor %lld of %lld\n", (long long)(i + 1), (long long)nt);
        synth_tensor *t = &ts[i];
        int64_t rows = t->n_dims == 2 ? t->ne[1] : 1;
        size_t bytes = q4k_row_size(t->type, t->ne[0]) * (size_t)rows;
        q4k_type_info ti = q4k_type_traits(t->type);
        synth_job job;
        void *buf = malloc(bytes), *blocks = NULL;
        memset(&job, 0, sizeof job);
        if (!buf) { cmd_error("synth", "out of memory for tensor '%s' (%zu bytes)", t->name, bytes); break; }
        job.t = t;
        job.out = buf;
        job.seed = seed * 0x9E3779B97F4A7C15ull + (uint64_t)i;
        job.fast = fast && (t->kind == W_MATRIX || (t->kind == W_EMBD && !outliers));
        job.outliers = outliers;
        if (job.fast && ti.block_size > 1) {
            /* a pool of 4096 quantized Gaussian blocks to draw rows from */
            synth_tensor pt = *t;
            synth_job pj = job;
            pt.ne[0] = 4096 * ti.block_size;
            pt.ne[1] = 1;
            blocks = malloc(4096 * ti.type_size);
            if (!blocks) { free(buf); break; }
            pj.t = &pt; pj.out = blocks; pj.fast = 0;
            synth_rows(&pj, 0, 1);
            job.pool_blocks = blocks;
            job.pool_n = 4096;
        }
        if (pool) q4k_pool_run(pool, synth_rows, &job);
        else synth_rows(&job, 0, 1);
        free(blocks);
        if (q4k_gguf_writer_write_tensor(w, buf, &err) != Q4K_OK) {
            free(buf);
            break;
        }
        free(buf);
    }
    q4k_pool_destroy(pool);
    if (isatty(2)) fprintf(stderr, "\n");
    if (i < nt || q4k_gguf_writer_end(w, &err) != Q4K_OK) {
        cmd_error("synth", "%s", i < nt && err.msg[0] ? err.msg : "writing failed");
        free(ts);
        q4k_gguf_writer_free(w);
        return EXIT_ERROR;
    }
    cmd_say("synth", "wrote %s: preset %s, %lld layers, vocab %lld, %s%s", out, p.name, (long long)p.n_layer,
            (long long)n_vocab, quant_name, fast ? " (fast)" : "");
    free(ts);
    q4k_gguf_writer_free(w);
    return EXIT_OK;
}

/* ---- q4k run ------------------------------------------------------------ */

static volatile sig_atomic_t g_interrupted;
static void on_sigint(int sig) { (void)sig; g_interrupted = 1; }

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void progress_bar(float f, void *user) {
    int i, w = 40, filled = (int)(f * (float)w);
    (void)user;
    fprintf(stderr, "\rloading [");
    for (i = 0; i < w; i++) fputc(i < filled ? '#' : ' ', stderr);
    fprintf(stderr, "] %3d%%", (int)(f * 100.0f));
    if (f >= 1.0f) fputc('\n', stderr);
}

static void log_to_stderr(q4k_log_level level, const char *msg, void *user) {
    int verbose = *(const int *)user;
    /* an error is also returned, and the caller prints it: once */
    if (level != Q4K_LOG_ERROR && (int)level <= (verbose ? Q4K_LOG_DEBUG : Q4K_LOG_WARN)) cmd_say("run", "%s", msg);
}

#define PROMPT_FILE_MAX ((size_t)64 << 20)

/* The prompt of -f: a regular file or a pipe (-f /dev/stdin), at most
   PROMPT_FILE_MAX bytes. NULL with the reason in why. */
static char *read_file(const char *path, size_t *len, char *why, size_t why_cap) {
    struct stat st;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    /* O_NONBLOCK: opening a FIFO no one writes to must not wait forever */
    int fd = open(path, O_RDONLY | O_NONBLOCK), fl;
    if (fd < 0) {
        snprintf(why, why_cap, "%s", strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) != 0 || S_ISDIR(st.st_mode) || (fl = fcntl(fd, F_GETFL)) == -1 ||
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) == -1) {
        snprintf(why, why_cap, "%s", S_ISDIR(st.st_mode) ? "is a directory" : strerror(errno));
        close(fd);
        return NULL;
    }
    for (;;) {
        ssize_t got;
        if (n + 1 >= cap) {
            char *nb;
            if (cap > PROMPT_FILE_MAX) {
                snprintf(why, why_cap, "longer than %zu MiB", PROMPT_FILE_MAX >> 20);
                free(buf);
                close(fd);
                return NULL;
            }
            nb = (char *)realloc(buf, cap = cap ? cap * 2 : 4096);
            if (!nb) {
                snprintf(why, why_cap, "out of memory");
                free(buf);
                close(fd);
                return NULL;
            }
            buf = nb;
        }
        got = read(fd, buf + n, cap - n - 1);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            snprintf(why, why_cap, "%s", strerror(errno));
            free(buf);
            close(fd);
            return NULL;
        }
        if (got == 0) break;
        n += (size_t)got;
    }
    close(fd);
    buf[n] = 0;
    *len = n;
    return buf;
}

static void print_model_summary(const q4k_model *m, const char *path, int64_t n_ctx) {
    const q4k_hparams *hp = &m->hp;
    int64_t counts[Q4K_TYPE_COUNT], i;
    memset(counts, 0, sizeof counts);
    for (i = 0; i < q4k_gguf_tensor_count(m->gguf); i++) counts[q4k_gguf_tensor(m->gguf, i)->type]++;
    fprintf(stderr, "model: %s\n", path);
    fprintf(stderr, "  arch %s, %.3fB params, %lld layers, embd %lld, ff %lld, heads %lld/%lld (kv), head_dim %lld, vocab %lld%s\n",
            q4k_arch_name(hp->arch), (double)q4k_model_n_params(m) / 1e9, (long long)hp->n_layer,
            (long long)hp->n_embd, (long long)hp->n_ff, (long long)hp->n_head, (long long)hp->n_head_kv,
            (long long)hp->head_dim, (long long)hp->n_vocab, hp->tied_embeddings ? ", tied embeddings" : "");
    fprintf(stderr, "  quant mix:");
    for (i = 0; i < Q4K_TYPE_COUNT; i++)
        if (counts[i]) fprintf(stderr, " %s x%lld", q4k_type_name((int)i), (long long)counts[i]);
    fprintf(stderr, "\n  file %.2f GiB, weights %.2f GiB, context %lld (trained %lld), KV cache %.1f MiB\n",
            (double)q4k_gguf_file_size(m->gguf) / 1073741824.0, (double)q4k_model_weight_bytes(m) / 1073741824.0,
            (long long)n_ctx, (long long)hp->n_ctx_train,
            (double)(2ull * (uint64_t)hp->n_layer * (uint64_t)n_ctx * (uint64_t)(hp->n_head_kv * hp->head_dim) * 2ull) / 1048576.0);
}

/* --logits-out: "Q4KLOGIT" (8 bytes), u32 version 1, u32 n_vocab, then for
   every evaluated position: i32 token id, i32 position, n_vocab x f32. All
   little-endian. */
static int write_logits(FILE *f, const int32_t *toks, int64_t n, int64_t pos0, const float *logits, int64_t n_vocab) {
    int64_t j;
    for (j = 0; j < n; j++) {
        int32_t hdr[2];
        hdr[0] = toks[j];
        hdr[1] = (int32_t)(pos0 + j);
        if (fwrite(hdr, 4, 2, f) != 2 || fwrite(logits + j * n_vocab, 4, (size_t)n_vocab, f) != (size_t)n_vocab) return 0;
    }
    return 1;
}

typedef struct run_opts {
    const char *model, *prompt, *prompt_file, *system, *backend, *logits_out, *pre, *chat_template, *device;
    int64_t n_predict, n_ctx, gate_steps;
    int n_threads, raw, interactive, verbose, quiet, ref, ignore_eos, escapes, strict;
    q4k_kv_type kv;
    q4k_sampler_params sp;
} run_opts;

typedef struct run_state {
    run_opts *o;
    q4k_model *model;
    q4k_tokenizer *tok;
    q4k_session *sess;
    q4k_sampler *sampler;
    q4k_chat_template tmpl;
    FILE *logits_f;
    float *logits; /* of the last evaluated position */
    float *chunk;  /* --logits-out: the logits of up to RUN_CHUNK positions */
    q4k_utf8_stream utf8;
    int32_t *toks;
    int64_t toks_cap;
    double t_prompt_ms, t_eval_ms;
    int64_t n_prompt, n_eval;
    int32_t pending;   /* -1, or the last token of a cut answer: printed, not yet evaluated */
    int answer_open;   /* the last answer stopped before its end-of-turn token */
    /* a Jinja chat template (the file's or --chat-template FILE): each turn
       renders the whole conversation, and only the tokens after the part
       already in the cache are evaluated */
    char *jinja;
    q4k_chat_msg *msgs;
    int64_t n_msgs;
    char *answer; /* the bytes of the answer being generated */
    size_t answer_len;
    int32_t *hist; /* the tokens in the cache */
    int64_t n_hist;
} run_state;

/* --logits-out evaluates a long prompt in pieces of this many positions, so
   that the logits of all of them never need to be held at once */
#define RUN_CHUNK 32

static int grow(void **p, size_t need, size_t elem) {
    void *q = realloc(*p, need * elem);
    if (!q) { cmd_error("run", "out of memory"); return 0; }
    *p = q;
    return 1;
}

static char *dup_str(const char *s, size_t n) {
    char *d = (char *)malloc(n + 1);
    if (d) { memcpy(d, s, n); d[n] = 0; }
    return d;
}

/* the built-in format the vocabulary suggests */
static q4k_chat_template vocab_template(const run_state *st) {
    if (st->model->hp.arch == Q4K_ARCH_QWEN2 && q4k_tokenizer_find(st->tok, "<|im_start|>") >= 0) return Q4K_CHAT_CHATML;
    if (q4k_tokenizer_find(st->tok, "<|start_header_id|>") >= 0) return Q4K_CHAT_LLAMA3;
    if (q4k_tokenizer_find(st->tok, "<\xEF\xBD\x9CUser\xEF\xBD\x9C>") >= 0) return Q4K_CHAT_DEEPSEEK;
    if (st->model->hp.arch == Q4K_ARCH_LLAMA && !strcmp(q4k_tokenizer_pre(st->tok), "spm")) return Q4K_CHAT_LLAMA2;
    return Q4K_CHAT_NONE;
}

static q4k_chat_render_desc render_desc(const run_state *st) {
    q4k_chat_render_desc d;
    int32_t bos = q4k_tokenizer_bos(st->tok), eos = q4k_tokenizer_eos(st->tok);
    memset(&d, 0, sizeof d);
    d.bos_token = bos >= 0 ? q4k_token_text(st->tok, bos, NULL) : "";
    d.eos_token = eos >= 0 ? q4k_token_text(st->tok, eos, NULL) : "";
    d.add_generation_prompt = 1;
    d.max_output = (size_t)64 << 20;
    return d;
}

/* --chat-template NAME|FILE, else the file's tokenizer.chat_template, else
   the format the vocabulary suggests. A template outside q4k's Jinja subset
   gives way to the built-in format its markers name, with one warning. */
static int choose_template(run_state *st) {
    static const char *const names[] = {"none", "chatml", "llama3", "llama2", "deepseek"};
    const char *src = NULL, *from = NULL;
    q4k_chat_template fam;
    if (st->o->chat_template && q4k_chat_template_from_name(st->o->chat_template, &fam)) {
        st->tmpl = fam;
        if (fam == Q4K_CHAT_NONE) st->o->raw = 1;
        return 1;
    }
    if (st->o->chat_template) {
        size_t len;
        char why[256];
        st->jinja = read_file(st->o->chat_template, &len, why, sizeof why);
        if (!st->jinja) {
            cmd_error("run", "--chat-template '%s' is neither a built-in format (chatml, llama3, llama2, deepseek, "
                             "none) nor a readable file (%s)", st->o->chat_template, why);
            return 0;
        }
        from = st->o->chat_template;
    } else if (q4k_gguf_get_str(st->model->gguf, "tokenizer.chat_template", &src) == Q4K_OK) {
        st->jinja = dup_str(src, strlen(src));
        if (!st->jinja) return !cmd_error("run", "out of memory");
        from = "the file's chat template";
    }
    st->tmpl = vocab_template(st);
    if (st->jinja) {
        q4k_chat_msg m;
        q4k_chat_render_desc d = render_desc(st);
        q4k_error err;
        char *out = NULL;
        q4k_result r;
        m.role = "user";
        m.content = "hi";
        r = q4k_chat_render(st->jinja, &m, 1, &d, &out, &err);
        q4k_free(out);
        if (r == Q4K_OK) return 1;
        if (r == Q4K_ERR_OUT_OF_MEMORY) return !cmd_error("run", "%s", err.msg);
        fam = q4k_chat_template_guess(st->jinja);
        if (fam != Q4K_CHAT_NONE) st->tmpl = fam;
        cmd_say("run", "warning: %s is not usable (%s); using the built-in %s format", from, err.msg,
                st->tmpl == Q4K_CHAT_NONE ? "raw" : names[st->tmpl]);
        free(st->jinja);
        st->jinja = NULL;
    }
    if (st->tmpl == Q4K_CHAT_NONE && !st->o->raw) {
        cmd_say("run", "this model has no known chat template: the prompt is sent raw");
        st->o->raw = 1;
    }
    return 1;
}

/* Add a message to the conversation (copied). */
static int add_msg(run_state *st, const char *role, const char *content, size_t len) {
    char *c;
    if (!grow((void **)&st->msgs, (size_t)st->n_msgs + 1, sizeof *st->msgs)) return 0;
    c = dup_str(content, len);
    if (!c) { cmd_error("run", "out of memory"); return 0; }
    st->msgs[st->n_msgs].role = role;
    st->msgs[st->n_msgs].content = c;
    st->n_msgs++;
    return 1;
}

/* The whole conversation through the Jinja template, ready for the answer. */
static char *render_conversation(run_state *st) {
    q4k_chat_render_desc d = render_desc(st);
    q4k_error err;
    char *out = NULL, *copy;
    q4k_result r = q4k_chat_render(st->jinja, st->msgs, st->n_msgs, &d, &out, &err);
    if (r != Q4K_OK) {
        cmd_error("run", "%s", err.msg);
        return NULL;
    }
    copy = dup_str(out, strlen(out));
    q4k_free(out);
    if (!copy) cmd_error("run", "out of memory");
    return copy;
}

/* tokenize text (special tokens parsed) into st->toks; returns the count or -1 */
static int64_t run_tokenize(run_state *st, const char *text, int add_bos) {
    int64_t n = 0;
    unsigned flags = Q4K_TOKENIZE_SPECIAL | (add_bos ? Q4K_TOKENIZE_ADD_BOS : 0u);
    q4k_error err;
    if (q4k_tokenize(st->tok, text, strlen(text), flags, NULL, 0, &n, &err) == Q4K_OK && n > st->toks_cap) {
        int32_t *nt = (int32_t *)realloc(st->toks, (size_t)n * sizeof(int32_t));
        if (!nt) {
            cmd_error("run", "out of memory for %lld prompt tokens", (long long)n);
            return -1;
        }
        st->toks = nt;
        st->toks_cap = n;
    }
    if (q4k_tokenize(st->tok, text, strlen(text), flags, st->toks, st->toks_cap, &n, &err) == Q4K_OK) return n;
    cmd_error("run", "cannot tokenize the prompt: %s", err.msg);
    return -1;
}

/* Evaluates toks; the last position's logits land in st->logits, and
   with --logits-out every position's logits go to the file. */
static q4k_result run_eval(run_state *st, const int32_t *toks, int64_t n, q4k_error *err) {
    int64_t n_vocab = st->model->hp.n_vocab, done = 0;
    if (!st->logits_f) return q4k_session_eval(st->sess, toks, n, 0, st->logits, err);
    while (done < n) {
        int64_t k = n - done < RUN_CHUNK ? n - done : RUN_CHUNK, pos0 = q4k_session_pos(st->sess);
        q4k_result r = q4k_session_eval(st->sess, toks + done, k, Q4K_EVAL_ALL_LOGITS, st->chunk, err);
        if (r != Q4K_OK) return r;
        if (!write_logits(st->logits_f, toks + done, k, pos0, st->chunk, n_vocab)) {
            snprintf(err->msg, sizeof err->msg, "cannot write --logits-out %s", st->o->logits_out);
            return err->code = Q4K_ERR_IO;
        }
        memcpy(st->logits, st->chunk + (k - 1) * n_vocab, (size_t)n_vocab * sizeof(float));
        done += k;
    }
    return Q4K_OK;
}

/* 0 when out of memory */
static int run_print_token(run_state *st, int32_t id) {
    char out[64];
    size_t blen, len;
    const char *bytes = q4k_token_bytes(st->tok, id, &blen);
    if (!blen) { /* reasoning marks are shown even where the vocabulary makes them control tokens */
        size_t tl;
        const char *tx = q4k_token_text(st->tok, id, &tl);
        if (tx && (!strcmp(tx, "<think>") || !strcmp(tx, "</think>"))) { bytes = tx; blen = tl; }
    }
    if (st->jinja) { /* the answer goes into the conversation the next turn renders */
        if (!grow((void **)&st->hist, (size_t)st->n_hist + 1, sizeof *st->hist) ||
            !grow((void **)&st->answer, st->answer_len + blen + 1, 1))
            return 0;
        st->hist[st->n_hist++] = id;
        memcpy(st->answer + st->answer_len, bytes, blen);
        st->answer_len += blen;
        st->answer[st->answer_len] = 0;
    }
    while (blen > 0) {
        size_t used = q4k_utf8_stream_push(&st->utf8, bytes, blen, out, sizeof out, &len);
        fwrite(out, 1, len, stdout);
        bytes += used;
        blen -= used;
    }
    fflush(stdout);
    return 1;
}

/* One turn: the pending token of a cut answer and the prompt tokens, then
   generation until an end-of-generation token, -n tokens, Ctrl-C or the
   context end. A sampled token is evaluated only when another one will be
   sampled after it: the last one of a cut answer stays pending for the
   next turn. 0 on error. */
static int run_turn(run_state *st, const int32_t *toks, int64_t n) {
    q4k_error err;
    q4k_result r = Q4K_OK;
    char out[8];
    size_t len;
    int64_t i, n_gen = 0, pos0 = q4k_session_pos(st->sess), pos1;
    double t0 = now_ms(), t1;
    if (st->pending >= 0) r = run_eval(st, &st->pending, 1, &err);
    st->pending = -1;
    if (r == Q4K_OK) r = run_eval(st, toks, n, &err);
    for (i = 0; i < n; i++) q4k_sampler_accept(st->sampler, toks[i]);
    t1 = now_ms();
    pos1 = q4k_session_pos(st->sess);
    st->answer_open = 0;
    q4k_utf8_stream_init(&st->utf8);
    while (r == Q4K_OK) {
        int32_t id;
        if (g_interrupted || (st->o->n_predict >= 0 && n_gen >= st->o->n_predict)) {
            st->answer_open = 1;
            break;
        }
        id = q4k_sampler_sample(st->sampler, st->logits);
        q4k_sampler_accept(st->sampler, id);
        if (!st->o->ignore_eos && q4k_tokenizer_is_eog(st->tok, id)) {
            /* in a chat, the end-of-turn token belongs in the cache */
            if (st->o->interactive) r = run_eval(st, &id, 1, &err);
            break;
        }
        if (!run_print_token(st, id)) {
            err.code = Q4K_ERR_OUT_OF_MEMORY;
            snprintf(err.msg, sizeof err.msg, "out of memory for the answer");
            r = Q4K_ERR_OUT_OF_MEMORY;
            break;
        }
        n_gen++;
        if (g_interrupted || (st->o->n_predict >= 0 && n_gen >= st->o->n_predict)) {
            st->pending = id;
            st->answer_open = 1;
            break;
        }
        r = run_eval(st, &id, 1, &err);
    }
    q4k_utf8_stream_flush(&st->utf8, out, sizeof out, &len);
    fwrite(out, 1, len, stdout);
    fflush(stdout);
    st->t_prompt_ms += t1 - t0;
    st->t_eval_ms += now_ms() - t1;
    st->n_prompt += pos1 - pos0;
    st->n_eval += q4k_session_pos(st->sess) - pos1;
    if (r == Q4K_ERR_CONTEXT_FULL) {
        fprintf(stderr, "\nq4k run: context is full (%lld tokens): generation stops; use -c to allow more\n",
                (long long)st->sess->n_ctx);
        return pos1 > pos0; /* a prompt that never fit is an error */
    }
    if (r != Q4K_OK) {
        cmd_error("run", "%s", err.msg);
        return 0;
    }
    return 1;
}

static void print_timings(const run_state *st) {
    if (st->o->quiet) return;
    fprintf(stderr, "\nprompt eval time = %10.2f ms / %5lld tokens (%8.2f ms per token, %8.2f tokens per second)\n",
            st->t_prompt_ms, (long long)st->n_prompt, st->n_prompt ? st->t_prompt_ms / (double)st->n_prompt : 0.0,
            st->t_prompt_ms > 0 ? 1e3 * (double)st->n_prompt / st->t_prompt_ms : 0.0);
    fprintf(stderr, "       eval time = %10.2f ms / %5lld tokens (%8.2f ms per token, %8.2f tokens per second)\n",
            st->t_eval_ms, (long long)st->n_eval, st->n_eval ? st->t_eval_ms / (double)st->n_eval : 0.0,
            st->t_eval_ms > 0 ? 1e3 * (double)st->n_eval / st->t_eval_ms : 0.0);
}

/* -e: a malloc'd copy of s with \n \t \r \\ \' \" \xNN read as escapes;
   any other backslash stays as it is. NULL when out of memory. */
static char *unescape(const char *s) {
    char *out = (char *)malloc(strlen(s) + 1), *o = out;
    if (!out) return NULL;
    for (; *s; s++) {
        if (*s != '\\' || !s[1]) { *o++ = *s; continue; }
        switch (s[1]) {
        case 'n': *o++ = '\n'; s++; break;
        case 't': *o++ = '\t'; s++; break;
        case 'r': *o++ = '\r'; s++; break;
        case '\\': case '\'': case '"': *o++ = s[1]; s++; break;
        case 'x':
            if (isxdigit((unsigned char)s[2]) && isxdigit((unsigned char)s[3])) {
                char hex[3];
                hex[0] = s[2]; hex[1] = s[3]; hex[2] = 0;
                *o++ = (char)strtol(hex, NULL, 16);
                s += 3;
                break;
            }
            *o++ = *s;
            break;
        default: *o++ = *s; break;
        }
    }
    *o = 0;
    return out;
}

static int parse_kv(const char *cmd, const char *s, q4k_kv_type *kv);
static int env_faults(q4k_faults *f);

/* A failed q4k_model_load; a context that does not fit (md->n_ctx, checked
   before the weights are read) is named by its option, -c. */
static void load_error(const char *cmd, const q4k_model_desc *md, int64_t n_ctx, const q4k_error *err) {
    if (md->n_ctx && err->code == Q4K_ERR_OUT_OF_MEMORY && strstr(err->msg, "a context of")) {
        if (n_ctx) cmd_error(cmd, "-c %lld does not fit: %s", (long long)n_ctx, err->msg);
        else cmd_error(cmd, "the default context does not fit (ask for less with -c): %s", err->msg);
    } else {
        cmd_error(cmd, "%s", err->msg);
    }
}
static int run_backend(run_opts *o, run_state *st, q4k_session_desc *sd, q4k_backend **out);

static int cmd_run(int argc, char **argv) {
    run_opts o;
    run_state st;
    q4k_error err;
    q4k_model_desc md;
    q4k_session_desc sd;
    q4k_backend *backend = NULL;
    char *prompt_buf = NULL, *text = NULL, *esc_prompt = NULL, *esc_system = NULL, *line = NULL;
    size_t line_cap = 0;
    const char *pos[2], *kv_name = NULL;
    int rc = EXIT_ERROR, n_pos;
    struct sigaction sa;
    const cli_opt opts[] = {
        {"-m, --model", "FILE", OPT_STR, &o.model, 0, 0, "the model (or give it first)"},
        {"-p, --prompt", "PROMPT", OPT_STR, &o.prompt, 0, 0, "the prompt (or give it after MODEL)"},
        {"-f, --file", "FILE", OPT_STR, &o.prompt_file, 0, 0, "read the prompt from FILE"},
        {"-n, --n-predict", "N", OPT_I64, &o.n_predict, -1, 1e9, "tokens to generate (default 256; -1: until the context is full)"},
        {"-t, --threads", "N", OPT_INT, &o.n_threads, 1, 1024, "CPU threads (default: all cores)"},
        {"-c, --ctx-size", "N", OPT_I64, &o.n_ctx, 1, 1 << 24, "context size (default: min(trained, 4096)); one whose KV cache\n"
         "cannot fit in host memory is refused before the weights are read"},
        {"--temp", "T", OPT_FLOAT, &o.sp.temp, 0, 100, "temperature (default 0.8; 0 = greedy)"},
        {"--top-k", "K", OPT_INT, &o.sp.top_k, 0, 1e9, "(default 40; 0 = off)"},
        {"--top-p", "P", OPT_FLOAT, &o.sp.top_p, 0, 1, "(default 0.95; 1 = off)"},
        {"--min-p", "P", OPT_FLOAT, &o.sp.min_p, 0, 1, "(default 0.05; 0 = off)"},
        {"-s, --seed", "S", OPT_SEED, &o.sp.seed, 0, 0, "sampling seed (default or -1: random; echoed)"},
        {"--repeat-penalty", "P", OPT_FLOAT, &o.sp.repeat_penalty, 0, 100,
         "divide the positive logits of recently seen tokens by P, multiply the\n"
         "negative ones (llama.cpp's; default 1 = off)"},
        {"--repeat-last-n", "N", OPT_INT, &o.sp.repeat_last_n, -1, 1 << 24,
         "the recent tokens --repeat-penalty looks at (default 64; -1: the context)"},
        {"-e, --escape", NULL, OPT_FLAG, &o.escapes, 0, 0, "read \\n \\t \\r \\\\ \\' \\\" \\xNN in the prompt and --system as escapes"},
        {"--system", "TEXT", OPT_STR, &o.system, 0, 0, "system prompt (default: the template's own; the built-in ChatML\n"
                                                       "format uses \"" Q4K_QWEN_DEFAULT_SYSTEM "\")"},
        {"--raw", NULL, OPT_FLAG, &o.raw, 0, 0, "send the prompt as is, without the chat template"},
        {"--chat-template", "NAME|FILE", OPT_STR, &o.chat_template, 0, 0,
         "the chat template: a built-in format (chatml, llama3, llama2, deepseek,\n"
         "none) or a Jinja FILE; default: the file's tokenizer.chat_template,\n"
         "else the format the vocabulary suggests"},
        {"--pre", "NAME", OPT_STR, &o.pre, 0, 0, "force the pre-tokenizer (a tokenizer.ggml.pre name, e.g. qwen2)"},
        {"-i, --interactive", NULL, OPT_FLAG, &o.interactive, 0, 0, "interactive chat; the conversation stays in the KV cache"},
        {"--backend", "NAME", OPT_STR, &o.backend, 0, 0,
         "auto (default: CUDA, then Vulkan on a GPU, then the CPU; one warning on\n"
         "stderr names why each backend before could not start), cpu, cuda, vulkan\n"
         "(an explicit GPU backend never falls back: one line, exit 1)"},
        {"--device", "N|NAME", OPT_STR, &o.device, 0, 0,
         "the Vulkan device: its index or a part of its name (q4k devices lists\n"
         "them); with --backend auto it means Vulkan. A CPU-type device (lavapipe)\n"
         "is used only when named here or with --backend vulkan, never by auto"},
        {"--gate-steps", "N", OPT_I64, &o.gate_steps, 0, Q4K_GATE_MAX_STEPS,
         "parity gate before generating: the prompt's first 64 tokens, then N\n"
         "greedy steps, against the CPU reference in the same mode (default 3 on a\n"
         "GPU backend, 0 on the CPU; with --backend cpu the fast path is checked\n"
         "against the scalar path). A backend that fails is refused with one line\n"
         "on stderr and generation goes on with the reference; 0 turns the gate\n"
         "off: unsafe, wrong output would go unnoticed"},
        {"--strict", NULL, OPT_FLAG, &o.strict, 0, 0, "a failed gate exits 3 and prints no generated text"},
        {"--kv", "f16|f32", OPT_STR, &kv_name, 0, 0, "KV cache type (default f16)"},
        {"--ignore-eos", NULL, OPT_FLAG, &o.ignore_eos, 0, 0, "go on past end-of-generation tokens (benchmarks)"},
        {"--ref", NULL, OPT_FLAG, &o.ref, 0, 0,
         "float activations (no 8-bit activation quantization) over the KV cache\n"
         "type of --kv: with the default f16 cache keys and values are still\n"
         "rounded to f16; --ref --kv f32 is the float reference"},
        {"--logits-out", "FILE", OPT_STR, &o.logits_out, 0, 0,
         "write the logits of every evaluated position: \"Q4KLOGIT\", u32 version 1,\n"
         "u32 n_vocab, then per position i32 token, i32 position, n_vocab x f32\n"
         "(little-endian)"},
        {"-v, --verbose", NULL, OPT_FLAG, &o.verbose, 0, 0, "verbose"},
        {"--quiet", NULL, OPT_FLAG, &o.quiet, 0, 0, "no summary or timings"},
    };
    const cli_cmd cmd = {"run", "q4k run MODEL [PROMPT] [options]", NULL, opts, N_OPTS(opts), NULL};
    memset(&o, 0, sizeof o);
    memset(&st, 0, sizeof st);
    o.n_predict = 256;
    o.sp = q4k_sampler_defaults();
    o.sp.seed = random_seed();
    o.backend = "auto";
    o.gate_steps = -1;
    if ((rc = cmd_parse(&cmd, argc, argv, pos, 2, &n_pos)) >= 0) return rc;
    rc = EXIT_ERROR;
    if (!o.model && n_pos > 0) {
        o.model = pos[0];
        memmove(pos, pos + 1, sizeof pos[0]);
        n_pos--;
    }
    if (n_pos > 1) return cmd_usage_error(&cmd, "unexpected argument '%s'", pos[1]);
    if (n_pos == 1 && (o.prompt || o.prompt_file))
        return cmd_usage_error(&cmd, "give the prompt once ('%s' and %s)", pos[0], o.prompt ? "-p" : "-f");
    if (n_pos == 1) o.prompt = pos[0];
    if (!o.model) return cmd_usage_error(&cmd, "missing MODEL");
    if (strcmp(o.backend, "auto") && strcmp(o.backend, "cpu") && strcmp(o.backend, "cuda") && strcmp(o.backend, "vulkan"))
        return cmd_usage_error(&cmd, "--backend wants auto, cpu, cuda or vulkan, not '%s'", o.backend);
    if (o.device && strcmp(o.backend, "auto") && strcmp(o.backend, "vulkan"))
        return cmd_usage_error(&cmd, "--device names a Vulkan device: not with --backend %s", o.backend);
    if (kv_name && !parse_kv("run", kv_name, &o.kv)) return EXIT_USAGE;
    if (o.prompt_file) {
        size_t len;
        char why[256];
        if (o.prompt) return cmd_usage_error(&cmd, "give the prompt once (-f %s and -p)", o.prompt_file);
        prompt_buf = read_file(o.prompt_file, &len, why, sizeof why);
        if (!prompt_buf) return cmd_error("run", "cannot read the prompt file %s: %s", o.prompt_file, why);
        o.prompt = prompt_buf;
    }
    if (!o.prompt && !o.interactive) return cmd_usage_error(&cmd, "missing PROMPT (or -p, -f, -i)");
    if (o.escapes) {
        if (o.prompt && !(o.prompt = esc_prompt = unescape(o.prompt))) { free(prompt_buf); return cmd_error("run", "out of memory"); }
        if (o.system && !(o.system = esc_system = unescape(o.system))) {
            free(prompt_buf);
            free(esc_prompt);
            return cmd_error("run", "out of memory");
        }
    }
    if (o.raw && o.prompt && !o.prompt[0] && !o.interactive) {
        free(prompt_buf);
        free(esc_prompt);
        free(esc_system);
        return cmd_usage_error(&cmd, "the prompt is empty: with --raw there is nothing to start from");
    }
    if (o.n_threads > 0 && o.n_threads > sysconf(_SC_NPROCESSORS_ONLN))
        cmd_say("run", "warning: -t %d is more threads than the %ld cores here: slower, not faster", o.n_threads,
                sysconf(_SC_NPROCESSORS_ONLN));
    st.o = &o;
    st.pending = -1;

    memset(&md, 0, sizeof md);
    md.log = log_to_stderr;
    md.log_user = &o.verbose;
    if (!o.quiet && isatty(2)) md.progress = progress_bar;
    /* the context's KV cache must fit in host memory (a CPU session, or the
       gate's CPU reference) before any weight is read; only an explicit GPU
       backend without the gate keeps no session on the host */
    md.n_ctx = o.n_ctx ? o.n_ctx : -1;
    md.kv = o.kv;
    if (strcmp(o.backend, "auto") && strcmp(o.backend, "cpu") && o.gate_steps == 0) md.n_ctx = 0;
    {
        double t0 = now_ms();
        if (q4k_model_load(o.model, &md, &st.model, &err) != Q4K_OK) {
            load_error("run", &md, o.n_ctx, &err);
            free(prompt_buf);
            free(esc_prompt);
            free(esc_system);
            return EXIT_ERROR;
        }
        if (!o.quiet) fprintf(stderr, "load time = %.2f ms\n", now_ms() - t0);
    }
    if (q4k_tokenizer_from_gguf_pre(st.model->gguf, o.pre, &st.tok, &err) != Q4K_OK) {
        cmd_error("run", "%s", err.msg);
        goto done;
    }
    if (!o.raw && !choose_template(&st)) goto done;
    if (o.n_ctx == 0) o.n_ctx = st.model->hp.n_ctx_train < 4096 ? st.model->hp.n_ctx_train : 4096;
    else if (st.model->hp.n_ctx_train > 0 && o.n_ctx > st.model->hp.n_ctx_train)
        cmd_say("run", "warning: -c %lld is beyond the %lld tokens the model was trained on: expect worse text past them",
                (long long)o.n_ctx, (long long)st.model->hp.n_ctx_train);
    if (o.sp.repeat_last_n < 0) o.sp.repeat_last_n = (int32_t)o.n_ctx;
    if (!o.quiet) {
        print_model_summary(st.model, o.model, o.n_ctx);
        fprintf(stderr, "sampling: temp %.2f, top-k %d, top-p %.2f, min-p %.2f, seed %llu\n", (double)o.sp.temp,
                (int)o.sp.top_k, (double)o.sp.top_p, (double)o.sp.min_p, (unsigned long long)o.sp.seed);
    }
    memset(&sd, 0, sizeof sd);
    sd.n_ctx = o.n_ctx;
    sd.act = o.ref ? Q4K_ACT_F32 : Q4K_ACT_Q8;
    sd.kv = o.kv;
    if (!env_faults(&sd.faults)) { rc = EXIT_USAGE; goto done; }
    if ((rc = run_backend(&o, &st, &sd, &backend)) != EXIT_OK) goto done;
    rc = EXIT_ERROR;
    if (q4k_session_create(backend, st.model, &sd, &st.sess, &err) != Q4K_OK) {
        cmd_error("run", "%s", err.msg);
        goto done;
    }
    if (o.verbose && !strcmp(backend->name, "cuda")) {
        q4k_cuda_memory mem;
        if (q4k_cuda_memory_info(backend, &mem, &err) == Q4K_OK)
            fprintf(stderr, "cuda: device memory in use %.1f MiB of %.1f MiB (total - free: the context %.1f MiB, q4k's "
                            "weights, KV cache and scratch %.1f MiB, and anything else on the device)\n",
                    mem.used / 1048576.0, mem.total / 1048576.0, mem.context / 1048576.0, mem.allocated / 1048576.0);
    }
    st.sampler = q4k_sampler_create(&o.sp, st.model->hp.n_vocab);
    st.logits = (float *)malloc((size_t)st.model->hp.n_vocab * sizeof(float));
    if (o.logits_out) st.chunk = (float *)malloc((size_t)st.model->hp.n_vocab * RUN_CHUNK * sizeof(float));
    if (!st.sampler || !st.logits || (o.logits_out && !st.chunk)) { cmd_error("run", "out of memory"); goto done; }
    if (o.logits_out) {
        uint32_t hdr[2];
        hdr[0] = 1;
        hdr[1] = (uint32_t)st.model->hp.n_vocab;
        st.logits_f = fopen(o.logits_out, "wb");
        if (!st.logits_f || fwrite("Q4KLOGIT", 1, 8, st.logits_f) != 8 || fwrite(hdr, 4, 2, st.logits_f) != 2) {
            cmd_error("run", "cannot write --logits-out %s", o.logits_out);
            goto done;
        }
    }
    /* no SA_RESTART: Ctrl-C at the chat prompt interrupts the read */
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    if (o.interactive)
        fprintf(stderr, "chat: Enter sends a line; Ctrl-C stops an answer; Ctrl-D, or Ctrl-C at the prompt, ends the chat\n");

    {
        int first = 1;
        const char *user = o.prompt;
        for (;;) {
            int64_t n;
            if (!user) {
                ssize_t got;
                if (!o.interactive) break;
                g_interrupted = 0;
                fprintf(stderr, "\n> ");
                got = g_interrupted ? -1 : getline(&line, &line_cap, stdin);
                if (got < 0 || g_interrupted) { /* Ctrl-D (end of input) or Ctrl-C */
                    fputc('\n', stderr);
                    break;
                }
                while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) line[--got] = 0;
                /* piped input is not echoed by a terminal: show it, so that
                   the transcript on stderr keeps the turns apart */
                if (!isatty(0)) fprintf(stderr, "%s\n", line);
                user = line;
            }
            free(text);
            text = NULL;
            if (st.jinja) {
                /* the whole conversation again: the tokens it shares with the
                   cache stay, the rest (from where they differ) is evaluated;
                   a cut answer's held token is part of that text */
                int64_t p = 0, n_cached;
                if (first && o.system && !add_msg(&st, "system", o.system, strlen(o.system))) goto done;
                if (!add_msg(&st, "user", user, strlen(user))) goto done;
                text = render_conversation(&st);
                if (!text) goto done;
                n = run_tokenize(&st, text, 0); /* the template writes BOS itself: exactly one */
                if (n < 0) goto done;
                if (n == 0) { user = NULL; continue; }
                n_cached = q4k_session_pos(st.sess) < st.n_hist ? q4k_session_pos(st.sess) : st.n_hist;
                while (p < n && p < n_cached && st.toks[p] == st.hist[p]) p++;
                if (p == n) p = n - 1; /* evaluate at least the last token, for its logits */
                if (q4k_session_pos(st.sess) > p && q4k_session_rewind(st.sess, p) != Q4K_OK) {
                    cmd_error("run", "cannot rewind the session to position %lld", (long long)p);
                    goto done;
                }
                if (!grow((void **)&st.hist, (size_t)n, sizeof *st.hist)) goto done;
                memcpy(st.hist, st.toks, (size_t)n * sizeof *st.hist);
                st.n_hist = n;
                st.answer_len = 0;
                st.pending = -1;
                if (!run_turn(&st, st.toks + p, n - p)) goto timings;
                if (!add_msg(&st, "assistant", st.answer ? st.answer : "", st.answer_len)) goto done;
            } else {
                if (o.raw) {
                    text = (char *)malloc(strlen(user) + 1);
                    if (text) strcpy(text, user);
                } else {
                    q4k_chat_msg msgs[2];
                    int nm = 0;
                    const char *sys = o.system ? o.system : (st.tmpl == Q4K_CHAT_CHATML ? Q4K_QWEN_DEFAULT_SYSTEM : NULL);
                    if (first && sys) { msgs[nm].role = "system"; msgs[nm].content = sys; nm++; }
                    msgs[nm].role = "user"; msgs[nm].content = user; nm++;
                    text = q4k_chat_format(st.tmpl, msgs, nm, 1);
                    /* a later turn follows the end-of-turn token of the last
                       answer; an answer cut by -n gets that token here */
                    if (!first && text) {
                        const char *close = !st.answer_open ? ""
                                          : st.tmpl == Q4K_CHAT_CHATML ? "<|im_end|>"
                                          : st.tmpl == Q4K_CHAT_LLAMA3 ? "<|eot_id|>" : "</s>";
                        const char *nl = st.tmpl == Q4K_CHAT_CHATML ? "\n" : "";
                        size_t lc = strlen(close), ln = strlen(nl);
                        char *t2 = (char *)malloc(lc + ln + strlen(text) + 1);
                        if (t2) {
                            memcpy(t2, close, lc);
                            memcpy(t2 + lc, nl, ln);
                            strcpy(t2 + lc + ln, text);
                        }
                        q4k_free(text);
                        text = t2;
                    } else if (text) {
                        char *t2 = (char *)malloc(strlen(text) + 1);
                        if (t2) strcpy(t2, text);
                        q4k_free(text);
                        text = t2;
                    }
                }
                if (!text) { cmd_error("run", "out of memory"); goto done; }
                /* the Llama 2 template writes BOS itself, as <s> */
                n = run_tokenize(&st, text, first && (o.raw || st.tmpl != Q4K_CHAT_LLAMA2));
                if (n < 0) goto done;
                if (n == 0) { user = NULL; continue; }
                if (!run_turn(&st, st.toks, n)) goto timings;
            }
            first = 0;
            user = NULL;
            if (!o.interactive) break;
            /* each answer on its own line of stdout */
            printf("\n");
            if (g_interrupted) fprintf(stderr, "[stopped]");
        }
        if (!o.interactive) printf("\n");
    }
    rc = EXIT_OK;
timings:
    print_timings(&st);
done:
    if (st.logits_f) fclose(st.logits_f);
    free(st.logits);
    free(st.chunk);
    free(line);
    free(esc_prompt);
    free(esc_system);
    free(text);
    free(st.jinja);
    {
        int64_t k;
        for (k = 0; k < st.n_msgs; k++) free((void *)st.msgs[k].content);
    }
    free(st.msgs);
    free(st.answer);
    free(st.hist);
    free(st.toks);
    q4k_sampler_free(st.sampler);
    q4k_session_free(st.sess);
    q4k_backend_destroy(backend);
    q4k_tokenizer_free(st.tok);
    q4k_model_free(st.model);
    free(prompt_buf);
    return rc;
}

/* ---- backends and the parity gate (run, qa) ----------------------------- */

static int parse_kv(const char *cmd, const char *s, q4k_kv_type *kv) {
    if (!strcmp(s, "f16")) *kv = Q4K_KV_F16;
    else if (!strcmp(s, "f32")) *kv = Q4K_KV_F32;
    else {
        fprintf(stderr, "q4k: %s: --kv wants f16 or f32, not '%s'\n(see q4k %s --help)\n", cmd, s, cmd);
        return 0;
    }
    return 1;
}

/* The faults of a test build, from the environment, for the session under
   test; 0 (after a message) when they do not parse. */
static int env_faults(q4k_faults *f) {
    memset(f, 0, sizeof *f);
#ifdef Q4K_FAULTS
    {
        const char *spec = getenv("Q4K_FAULT");
        q4k_error err;
        if (spec && *spec && q4k_faults_parse(spec, f, &err) != Q4K_OK) {
            fprintf(stderr, "q4k: %s\n", err.msg);
            return 0;
        }
    }
#endif
    return 1;
}

/* A GPU backend. device: the Vulkan device (an index or a part of its name,
   NULL: the backend's choice); allow_cpu: a CPU-type Vulkan device
   (lavapipe) may be taken, as --backend vulkan and --device allow and auto
   never does. verbose: the backend's info lines (weight upload progress). */
static q4k_result gpu_backend(const char *name, const char *device, int allow_cpu, int verbose, q4k_backend **out,
                              q4k_error *err) {
    static int not_verbose = 0, is_verbose = 1;
    *out = NULL;
    if (!strcmp(name, "cuda")) {
        /* warnings (a kernel cache that cannot be used) on stderr */
        q4k_cuda_desc cd;
        memset(&cd, 0, sizeof cd);
        cd.log = log_to_stderr;
        cd.log_user = verbose ? &is_verbose : &not_verbose;
        return q4k_cuda_backend_create(&cd, out, err);
    } else {
        q4k_vk_backend_desc vd;
        memset(&vd, 0, sizeof vd);
        vd.device = device;
        vd.allow_cpu = allow_cpu || (device && *device);
#ifdef Q4K_FAULTS
        /* the test build: auto may take lavapipe, so that CI runs auto's
           fallback from a Vulkan device that fails before the answer */
        if (getenv("Q4K_TEST_AUTO_LAVAPIPE")) vd.allow_cpu = 1;
#endif
        vd.log = log_to_stderr;
        vd.log_user = verbose ? &is_verbose : &not_verbose;
        return q4k_vk_backend_create(&vd, out, err);
    }
}

static q4k_result cpu_backend(int n_threads, q4k_cpu_path path, q4k_backend **out, q4k_error *err) {
    q4k_cpu_backend_desc bd;
    memset(&bd, 0, sizeof bd);
    bd.n_threads = n_threads;
    bd.path = path;
    return q4k_cpu_backend_create(&bd, out, err);
}

/* One line for a refused gate:
   q4k: parity: cpu rejected at step 2/3: cosine 0.7223 < 0.999 (first divergence: layer 0, attn) */
static void gate_refusal(const char *name, const q4k_gate_report *rep) {
    fprintf(stderr, "q4k: parity: %s rejected at step %lld/%lld: %s (first divergence: %s)\n", name,
            (long long)rep->failed_step, (long long)rep->steps_asked, rep->reason, rep->where[0] ? rep->where : "none");
}

#define QA_KERNEL_NMSE 1e-6 /* scalar and SIMD compute the same integers; only float order differs */

typedef struct qa_out {
    int json, first;
    int64_t passed, total;
} qa_out;

static void qa_rand(float *x, int64_t n, uint64_t *seed, float scale) {
    int64_t i;
    for (i = 0; i < n; i++) x[i] = (float)((unif(seed) * 2.0 - 1.0) * scale);
}

static void qa_kernel_row(qa_out *q, const char *backend, const char *mode, const char *what, const float *ref,
                          const float *test, int64_t n) {
    q4k_parity p = q4k_parity_compare(ref, test, n);
    int pass = p.n_nonfinite == 0 && p.nmse <= QA_KERNEL_NMSE;
    q->total++;
    q->passed += pass;
    if (q->json)
        printf("%s{\"kind\":\"kernel\",\"backend\":\"%s\",\"mode\":\"%s\",\"kernel\":\"%s\",\"nmse\":%.3e,\"max_abs\":%.3e,\"pass\":%s}",
               q->first++ ? ",\n" : "", backend, mode, what, p.nmse, p.max_abs, pass ? "true" : "false");
    else
        printf("  %-40s %-4s %10.2e %10.2e  %s\n", what, mode, p.nmse, p.max_abs, pass ? "pass" : "FAIL");
}

/* every weight type x shape, RMSNorm, RoPE and attention: test against ref */
static int qa_kernels(qa_out *q, const char *bname, q4k_backend *ref, q4k_backend *test, const q4k_model *m,
                      q4k_act_mode act, q4k_kv_type kv, uint64_t seed) {
    const q4k_hparams *hp = &m->hp;
    int64_t i, j, nt = q4k_gguf_tensor_count(m->gguf), n_pos = 7;
    int64_t qd = hp->n_head * hp->head_dim, kvd = hp->n_head_kv * hp->head_dim, big = hp->n_vocab > hp->n_ff ? hp->n_vocab : hp->n_ff;
    float *x = (float *)malloc((size_t)(big + qd + 2 * n_pos * kvd) * sizeof(float));
    float *a = (float *)malloc((size_t)big * sizeof(float)), *b = (float *)malloc((size_t)big * sizeof(float));
    const char *mode = act == Q4K_ACT_Q8 ? "q8" : "f32";
    char what[160];
    q4k_error err;
    int ok = 1;
    if (!x || !a || !b) { free(x); free(a); free(b); fprintf(stderr, "q4k: out of memory\n"); return 0; }
    for (i = 0; i < nt; i++) {
        const q4k_tensor *t = q4k_gguf_tensor(m->gguf, i);
        int seen = 0;
        if (t->n_dims != 2) continue;
        for (j = 0; j < i && !seen; j++) {
            const q4k_tensor *u = q4k_gguf_tensor(m->gguf, j);
            seen = u->n_dims == 2 && u->type == t->type && u->ne[0] == t->ne[0] && u->ne[1] == t->ne[1];
        }
        if (seen) continue;
        qa_rand(x, t->ne[0], &seed, 1.0f);
        if (ref->matmul(ref, act, t->type, t->data, t->ne[1], t->ne[0], x, 1, a, &err) ||
            test->matmul(test, act, t->type, t->data, t->ne[1], t->ne[0], x, 1, b, &err)) {
            ok = 0;
            break;
        }
        snprintf(what, sizeof what, "matmul %s %lldx%lld (%s)", q4k_type_name(t->type), (long long)t->ne[1],
                 (long long)t->ne[0], t->name);
        qa_kernel_row(q, bname, mode, what, a, b, t->ne[1]);
    }
    if (ok && (!test->rmsnorm || !test->rope || !test->attention)) { /* a backend without the op-level entry points */
        if (!q->json) printf("  (%s has no op-level rmsnorm, rope or attention: checked by the gate only)\n", bname);
    } else if (ok) {
        qa_rand(x, hp->n_embd, &seed, 3.0f);
        ok = !ref->rmsnorm(ref, x, (const float *)m->output_norm->data, hp->n_embd, 1, hp->norm_eps, a, &err) &&
             !test->rmsnorm(test, x, (const float *)m->output_norm->data, hp->n_embd, 1, hp->norm_eps, b, &err);
        if (ok) {
            snprintf(what, sizeof what, "rmsnorm %lld", (long long)hp->n_embd);
            qa_kernel_row(q, bname, mode, what, a, b, hp->n_embd);
            qa_rand(a, qd, &seed, 1.0f);
            memcpy(b, a, (size_t)qd * sizeof(float));
            ok = !ref->rope(ref, a, 1, hp->n_head, hp->head_dim, hp->n_rot, hp->rope_neox, 1000, hp->rope_freq_base,
                            m->rope_freqs ? (const float *)m->rope_freqs->data : NULL, &err) &&
                 !test->rope(test, b, 1, hp->n_head, hp->head_dim, hp->n_rot, hp->rope_neox, 1000, hp->rope_freq_base,
                             m->rope_freqs ? (const float *)m->rope_freqs->data : NULL, &err);
        }
        if (ok) {
            snprintf(what, sizeof what, "rope %lld heads x %lld at pos 1000", (long long)hp->n_head, (long long)hp->head_dim);
            qa_kernel_row(q, bname, mode, what, a, b, qd);
            qa_rand(x, qd + 2 * n_pos * kvd, &seed, 1.0f);
            ok = !ref->attention(ref, kv, x, x + qd, x + qd + n_pos * kvd, n_pos, hp->n_head, hp->n_head_kv, hp->head_dim, a, &err) &&
                 !test->attention(test, kv, x, x + qd, x + qd + n_pos * kvd, n_pos, hp->n_head, hp->n_head_kv, hp->head_dim, b, &err);
        }
        if (ok) {
            snprintf(what, sizeof what, "attention %lld/%lld heads x %lld, %s cache", (long long)hp->n_head,
                     (long long)hp->n_head_kv, (long long)hp->head_dim, q4k_kv_type_name(kv));
            qa_kernel_row(q, bname, mode, what, a, b, qd);
        }
    }
    /* a kernel that cannot run (a shader that does not compile, a lost
       device) is not a row of the table: one line, and qa stops */
    if (!ok) fprintf(stderr, "q4k: qa: %s\n", err.msg);
    free(x);
    free(a);
    free(b);
    return ok;
}

static int qa_gate(qa_out *q, const char *bname, q4k_backend *ref, q4k_backend *test, const q4k_model *m,
                   const q4k_session_desc *sd, const int32_t *toks, int64_t n, const q4k_gate_desc *gdp) {
    q4k_gate_desc gd = *gdp;
    int64_t steps = gd.steps;
    q4k_gate_report rep;
    q4k_error err;
    const char *mode = sd->act == Q4K_ACT_Q8 ? "q8" : "f32";
    int64_t i;
    double t0 = now_ms();
    gd.max_user_tokens = n;
    if (q4k_gate_run(ref, test, m, sd, toks, n, &gd, &rep, &err) != Q4K_OK) {
        fprintf(stderr, "q4k: qa: %s\n", err.msg);
        return 0;
    }
    if (!q->json) printf("\nmodel: %s, %s, %s cache, %lld prompt tokens then %lld steps (%.0f ms)\n  %-5s %10s %10s %5s %10s %12s %12s  %-20s %s\n",
                         bname, mode, q4k_kv_type_name(sd->kv), (long long)rep.n_prompt, (long long)steps, now_ms() - t0,
                         "step", "cosine", "KL", "top1", "margin", "update cos", "worst op cos", "at layer/op", "result");
    for (i = 0; i < rep.n_steps; i++) {
        const q4k_gate_step *st = &rep.step[i];
        int top1 = st->logits.argmax_ref == st->logits.argmax_test;
        q->total++;
        q->passed += st->pass;
        if (q->json)
            printf("%s{\"kind\":\"step\",\"backend\":\"%s\",\"mode\":\"%s\",\"kv\":\"%s\",\"step\":%lld,\"cosine\":%.9f,"
                   "\"kl\":%.3e,\"top1\":%s,\"margin\":%.4g,\"flip_margin\":%.4g,\"update_cos\":%.9f,\"update_layer\":%lld,"
                   "\"op_cos\":%.9f,\"op_layer\":%lld,\"op\":\"%s\",\"pass\":%s}",
                   q->first++ ? ",\n" : "", bname, mode, q4k_kv_type_name(sd->kv), (long long)i, st->logits.cosine,
                   st->logits.kl, top1 ? "true" : "false", st->logits.margin,
                   top1 ? 0.0 : st->logits.margin / (st->logits.std_ref > 0 ? st->logits.std_ref : 1.0), st->update_cos,
                   (long long)st->update_layer, st->op_cos, (long long)st->op_layer, q4k_gate_op_name(st->op_worst),
                   st->pass ? "true" : "false");
        else {
            char at[64];
            if (st->op_layer >= 0) snprintf(at, sizeof at, "%lld/%s", (long long)st->op_layer, q4k_gate_op_name(st->op_worst));
            else snprintf(at, sizeof at, "%s", st->op_worst >= 0 ? q4k_gate_op_name(st->op_worst) : "-");
            printf("  %-5lld %10.7f %10.2e %5s %10.4g %12.7f %12.7f  %-20s %s\n", (long long)i, st->logits.cosine,
                   st->logits.kl, top1 ? "yes" : "no", st->logits.margin, st->update_cos, st->op_cos, at,
                   st->pass ? "pass" : "FAIL");
        }
    }
    if (!rep.pass) {
        if (q->json)
            printf("%s{\"kind\":\"divergence\",\"backend\":\"%s\",\"mode\":\"%s\",\"step\":%lld,\"reason\":\"%s\",\"where\":\"%s\"}",
                   q->first++ ? ",\n" : "", bname, mode, (long long)rep.failed_step, rep.reason, rep.where);
        else
            printf("  first divergence at step %lld: %s (%s)\n", (long long)rep.failed_step, rep.where, rep.reason);
    }
    return 1;
}

static int cmd_qa(int argc, char **argv) {
    const char *path = NULL, *backend = "cpu", *mode = "q8", *prompt = NULL, *kv_name = NULL, *device = NULL;
    int64_t n_ctx = 0, pos = 8, steps = 3, i, n_toks = 0;
    int json = 0, n_threads = 0, ran = 0, k, n_pos, rc;
    uint64_t seed = 1;
    q4k_kv_type kv = Q4K_KV_F16;
    q4k_model *m = NULL;
    q4k_backend *ref = NULL;
    q4k_session_desc sd;
    q4k_model_desc md;
    q4k_error err;
    qa_out q;
    int32_t *toks = NULL;
    q4k_cpu_path best;
    q4k_gate_desc gd;
    static const char *const names[3] = {"cpu", "cuda", "vulkan"};
    const cli_opt opts[] = {
        {"-m, --model", "FILE", OPT_STR, &path, 0, 0, "the model (or give it first)"},
        {"--backend", "NAME", OPT_STR, &backend, 0, 0, "cpu (default: the CPU's fast path, SIMD kernels and threads,\n"
                                                       "against its scalar path), cuda, vulkan or all"},
        {"--device", "N|NAME", OPT_STR, &device, 0, 0, "the Vulkan device: its index or a part of its name (q4k devices);\n"
                                                       "a CPU-type device (lavapipe) is taken with --backend vulkan or when named"},
        {"--mode", "q8|f32|both", OPT_STR, &mode, 0, 0, "arithmetic: 8-bit or float activations (default q8)"},
        {"--kv", "f16|f32", OPT_STR, &kv_name, 0, 0, "KV cache type (default f16)"},
        {"-c, --ctx-size", "N", OPT_I64, &n_ctx, 1, 1 << 24, "context size of the sessions"},
        {"--pos", "N", OPT_I64, &pos, 0, 1 << 24, "prompt tokens before the steps (default 8): checks positions\n"
                                                  "far into the context"},
        {"--steps", "N", OPT_I64, &steps, 0, Q4K_GATE_MAX_STEPS, "greedy steps (default 3)"},
        {"--prompt", "TEXT", OPT_STR, &prompt, 0, 0, "the prompt after the gate's built-in part (default: random ids)"},
        {"--seed", "S", OPT_SEED, &seed, 0, 0, "seed of the random prompt and kernel inputs (default 1)"},
        {"-t, --threads", "N", OPT_INT, &n_threads, 1, 1024, "CPU threads (default: all cores)"},
        {"--json", NULL, OPT_FLAG, &json, 0, 0, "one JSON array instead of tables"},
        {"--layer-cos", "C", OPT_DOUBLE, &gd.layer_cos, 0, 1, "the gate's per-layer threshold (studies)"},
        {"--op-cos", "C", OPT_DOUBLE, &gd.op_cos, 0, 1, "the gate's per-op threshold (studies)"},
        {"--logit-cos", "C", OPT_DOUBLE, &gd.logit_cos, 0, 1, "the gate's end-to-end threshold (studies)"},
        {"--margin", "F", OPT_DOUBLE, &gd.margin_frac, 0, 1e6, "the argmax margin, a fraction of the logits' std (studies)"},
    };
    const cli_cmd cmd = {"qa", "q4k qa MODEL [options]",
                         "  checks a backend against the CPU reference in the same arithmetic mode:\n"
                         "  a kernel table (every weight type x shape in the model, RMSNorm, RoPE, attention at\n"
                         "  the model's head layout: NMSE, max abs diff) and the parity gate (prompt, then greedy\n"
                         "  steps fed the reference's argmax: cosine, KL, top-1 agreement, margin per step).\n"
                         "  exit codes: 0 every check passed, 3 a check failed, 1 the model cannot load or no\n"
                         "  requested backend could run, 2 usage\n",
                         opts, N_OPTS(opts), NULL};
    const char *posarg[1] = {NULL};
    memset(&gd, 0, sizeof gd);
    if ((rc = cmd_parse(&cmd, argc, argv, posarg, 1, &n_pos)) >= 0) return rc;
    if (n_pos && path) return cmd_usage_error(&cmd, "unexpected argument '%s'", posarg[0]);
    if (n_pos) path = posarg[0];
    if (!path) return cmd_usage_error(&cmd, "missing MODEL");
    if (kv_name && !parse_kv("qa", kv_name, &kv)) return EXIT_USAGE;
    gd.steps = steps;
    if (strcmp(backend, "cpu") && strcmp(backend, "cuda") && strcmp(backend, "vulkan") && strcmp(backend, "all"))
        return cmd_usage_error(&cmd, "--backend wants cpu, cuda, vulkan or all, not '%s'", backend);
    if (strcmp(mode, "q8") && strcmp(mode, "f32") && strcmp(mode, "both"))
        return cmd_usage_error(&cmd, "--mode wants q8, f32 or both, not '%s'", mode);
    memset(&sd, 0, sizeof sd);
    if (!env_faults(&sd.faults)) return EXIT_USAGE;
    sd.kv = kv;
    memset(&md, 0, sizeof md);
    md.n_ctx = n_ctx ? n_ctx : -1; /* the CPU reference's session, before the weights are read */
    md.kv = kv;
    if (q4k_model_load(path, &md, &m, &err) != Q4K_OK) {
        load_error("qa", &md, n_ctx, &err);
        return EXIT_ERROR;
    }
    if (n_ctx && n_ctx < 12 + pos + steps + 1) {
        fprintf(stderr, "q4k: qa: -c %lld is too small for the gate's %lld prompt tokens and %lld steps\n",
                (long long)n_ctx, (long long)(12 + pos), (long long)steps);
        q4k_model_free(m);
        return EXIT_USAGE;
    }
    sd.n_ctx = n_ctx;
    /* the gate's prompt after its built-in part: the text's tokens, or random ids */
    if (prompt) {
        q4k_tokenizer *tk = NULL;
        if (q4k_tokenizer_from_gguf(m->gguf, &tk, &err) != Q4K_OK ||
            q4k_tokenize(tk, prompt, strlen(prompt), 0, NULL, 0, &n_toks, &err) != Q4K_OK) {
            fprintf(stderr, "q4k: %s\n", err.msg);
            q4k_tokenizer_free(tk);
            q4k_model_free(m);
            return EXIT_ERROR;
        }
        toks = (int32_t *)malloc((size_t)(n_toks + 1) * sizeof(int32_t));
        if (toks) q4k_tokenize(tk, prompt, strlen(prompt), 0, toks, n_toks, &n_toks, &err);
        q4k_tokenizer_free(tk);
        if (pos < n_toks) n_toks = pos;
    } else {
        uint64_t s = seed;
        toks = (int32_t *)malloc((size_t)(pos + 1) * sizeof(int32_t));
        for (i = 0; toks && i < pos; i++) toks[i] = (int32_t)(splitmix(&s) % (uint64_t)m->hp.n_vocab);
        n_toks = pos;
    }
    if (!toks || cpu_backend(n_threads, Q4K_CPU_SCALAR, &ref, &err) != Q4K_OK) {
        fprintf(stderr, "q4k: %s\n", toks ? err.msg : "out of memory");
        free(toks);
        q4k_model_free(m);
        return EXIT_ERROR;
    }
    memset(&q, 0, sizeof q);
    q.json = json;
    if (q4k_cpu_resolve_path(Q4K_CPU_AUTO, &best, &err) != Q4K_OK) best = Q4K_CPU_SCALAR;
    if (json)
        printf("{\"q4k\":\"%s\",\"model\":\"%s\",\"seed\":%llu,\"mode\":\"%s\",\"kv\":\"%s\",\"reference\":\"cpu scalar\",\"results\":[\n",
               q4k_version_string(), path, (unsigned long long)seed, mode, q4k_kv_type_name(kv));
    else
        printf("q4k %s qa: %s\nseed %llu, mode %s, %s cache; reference: cpu, scalar kernels\n", q4k_version_string(),
               path, (unsigned long long)seed, mode, q4k_kv_type_name(kv));
    for (k = 0; k < 3; k++) {
        q4k_backend *test = NULL;
        int md, fine = 1;
        if (strcmp(backend, "all") && strcmp(backend, names[k])) continue;
        if (k == 0) {
            if (cpu_backend(n_threads, Q4K_CPU_AUTO, &test, &err) != Q4K_OK) test = NULL;
        } else {
            gpu_backend(names[k], device, !strcmp(backend, names[k]), 0, &test, &err);
        }
        if (!test) {
            if (json) printf("%s{\"kind\":\"skipped\",\"backend\":\"%s\",\"reason\":\"%s\"}", q.first++ ? ",\n" : "", names[k], err.msg);
            else printf("\nbackend %s: skipped: %s\n", names[k], err.msg);
            continue;
        }
        ran++;
        if (!json) {
            if (k == 0) printf("\nbackend cpu: device: this CPU, %s kernels, %d threads (driver: none)\n", q4k_cpu_path_name(best),
                               n_threads ? n_threads : (int)sysconf(_SC_NPROCESSORS_ONLN));
            printf("\nkernels (%s against the reference; pass: NMSE <= %g)\n  %-40s %-4s %10s %10s  %s\n", names[k],
                   QA_KERNEL_NMSE, "kernel", "mode", "NMSE", "max abs", "result");
        }
        /* the kernels in each mode, then the gate in each; an error (not a
           failed comparison) ends qa with exit 1 */
        for (md = 0; md < 4 && fine; md++) {
            if ((md % 2 == 0 && !strcmp(mode, "f32")) || (md % 2 == 1 && !strcmp(mode, "q8"))) continue;
            sd.act = md % 2 ? Q4K_ACT_F32 : Q4K_ACT_Q8;
            fine = md < 2 ? qa_kernels(&q, names[k], ref, test, m, sd.act, kv, seed)
                          : qa_gate(&q, names[k], ref, test, m, &sd, toks, n_toks, &gd);
        }
        if (!fine) {
            q4k_backend_destroy(test);
            q4k_backend_destroy(ref);
            free(toks);
            q4k_model_free(m);
            return EXIT_ERROR;
        }
        q4k_backend_destroy(test);
    }
    if (json) printf("\n],\"passed\":%lld,\"total\":%lld}\n", (long long)q.passed, (long long)q.total);
    else printf("\nsummary: %lld/%lld passed\n", (long long)q.passed, (long long)q.total);
    q4k_backend_destroy(ref);
    free(toks);
    q4k_model_free(m);
    if (!ran) return EXIT_ERROR;
    return q.passed == q.total ? EXIT_OK : EXIT_PARITY;
}

/* run's backend: --backend, then the gate (fast path or GPU against the CPU
   reference); *out is the backend to generate with. EXIT_OK, or the exit code. */
static int run_backend(run_opts *o, run_state *st, q4k_session_desc *sd, q4k_backend **out) {
    static const char *const gpus[2] = {"cuda", "vulkan"};
    q4k_backend *b = NULL, *ref = NULL;
    q4k_error err;
    const char *name = "cpu";
    char why[1200];
    size_t wl = 0;
    int k, gpu = 0;
    int64_t steps;
    *out = NULL;
    why[0] = 0;
    for (k = 0; k < 2; k++) {
        if (strcmp(o->backend, "auto") && strcmp(o->backend, gpus[k])) continue;
        if (k == 0 && o->device && !strcmp(o->backend, "auto")) continue; /* --device names a Vulkan device */
        /* a device whose memory cannot hold the weights and this context
           counts as a backend that cannot start: nothing is uploaded yet */
        if (gpu_backend(gpus[k], o->device, !strcmp(o->backend, gpus[k]), o->verbose, &b, &err) == Q4K_OK &&
            q4k_session_check_memory(b, st->model, sd, &err) == Q4K_OK) {
            name = gpus[k];
            gpu = 1;
            break;
        }
        q4k_backend_destroy(b);
        b = NULL;
        /* an explicit GPU backend never falls back: one line, exit 1 */
        if (strcmp(o->backend, "auto") || o->device) {
            fprintf(stderr, "q4k: backend %s could not start: %s\n", gpus[k], err.msg);
            return EXIT_ERROR;
        }
        if (wl < sizeof why)
            wl += (size_t)snprintf(why + wl, sizeof why - wl, "%s%s could not start (%s)", wl ? "; " : "", gpus[k],
                                   err.msg);
    }
    if (!b && cpu_backend(o->n_threads, Q4K_CPU_AUTO, &b, &err) != Q4K_OK) {
        fprintf(stderr, "q4k: %s\n", err.msg);
        return EXIT_ERROR;
    }
    steps = o->gate_steps >= 0 ? o->gate_steps : gpu ? 3 : 0;
    if (steps > 0) {
        q4k_gate_desc gd;
        q4k_gate_report rep;
        int64_t n = o->prompt ? run_tokenize(st, o->prompt, 1) : 0;
        double t0 = now_ms();
        if (n < 0 || cpu_backend(o->n_threads, gpu ? Q4K_CPU_AUTO : Q4K_CPU_SCALAR, &ref, &err) != Q4K_OK) {
            if (n >= 0) fprintf(stderr, "q4k: %s\n", err.msg);
            q4k_backend_destroy(b);
            return EXIT_ERROR;
        }
        memset(&gd, 0, sizeof gd);
        gd.steps = steps;
        if (q4k_gate_run(ref, b, st->model, sd, st->toks, n, &gd, &rep, &err) != Q4K_OK) {
            q4k_backend_destroy(b);
            b = NULL;
            /* --backend auto: a GPU that fails before the answer's first
               token (a shader that does not compile, a lost device, device
               memory) is one that could not start; the reference goes on */
            if (!gpu || strcmp(o->backend, "auto") || o->device) {
                fprintf(stderr, "q4k: parity: %s\n", err.msg);
                q4k_backend_destroy(ref);
                return EXIT_ERROR;
            }
            if (wl < sizeof why)
                wl += (size_t)snprintf(why + wl, sizeof why - wl, "%s%s could not start (%s)", wl ? "; " : "", name, err.msg);
            memset(&sd->faults, 0, sizeof sd->faults);
            b = ref;
            ref = NULL;
            gpu = 0;
        } else if (!rep.pass) {
            gate_refusal(name, &rep);
            q4k_backend_destroy(b);
            if (o->strict || (gpu && strcmp(o->backend, "auto"))) {
                q4k_backend_destroy(ref);
                return EXIT_PARITY;
            }
            /* go on with the path that the gate trusts, without the test's faults */
            fprintf(stderr, "q4k: parity: generating on the cpu reference path instead\n");
            memset(&sd->faults, 0, sizeof sd->faults);
            b = ref;
            ref = NULL;
            gpu = 0;
        } else if (!o->quiet) {
            fprintf(stderr, "parity: %s passed the gate (%lld prompt tokens, %lld steps) in %.0f ms\n", name,
                    (long long)rep.n_prompt, (long long)steps, now_ms() - t0);
        }
        q4k_backend_destroy(ref);
    }
    /* --backend auto: one warning for the whole way down, naming each reason */
    if (why[0]) fprintf(stderr, "q4k: warning: --backend auto: %s: running on %s\n", why, gpu ? name : "the cpu");
    *out = b;
    return EXIT_OK;
}

/* ---- q4k bench ---------------------------------------------------------- */

/* A GPU backend is timed only after it passed the parity gate in the mode
   timed (the run command's gate: the CPU's fast path as the reference,
   3 steps), so a number never stands for wrong output. EXIT_OK or the exit code. */
static int bench_gate(q4k_backend *b, const char *name, const q4k_model *m, q4k_act_mode act, int n_threads) {
    q4k_backend *ref = NULL;
    q4k_session_desc sd;
    q4k_gate_desc gd;
    q4k_gate_report rep;
    q4k_error err;
    double t0 = now_ms();
    int rc = EXIT_ERROR;
    memset(&sd, 0, sizeof sd);
    sd.act = act;
    memset(&gd, 0, sizeof gd);
    gd.steps = 3;
    if (cpu_backend(n_threads, Q4K_CPU_AUTO, &ref, &err) != Q4K_OK ||
        q4k_gate_run(ref, b, m, &sd, NULL, 0, &gd, &rep, &err) != Q4K_OK) {
        cmd_error("bench", "parity: %s", err.msg);
    } else if (!rep.pass) {
        gate_refusal(name, &rep);
        rc = EXIT_PARITY;
    } else {
        printf("parity: %s passed the gate in %s mode (%lld prompt tokens, 3 steps) in %.0f ms\n", name,
               act == Q4K_ACT_F32 ? "f32" : "q8", (long long)rep.n_prompt, now_ms() - t0);
        rc = EXIT_OK;
    }
    q4k_backend_destroy(ref);
    return rc;
}

/* One arithmetic mode: prompt pass, then decode steps; times in ms. */
static int bench_mode(q4k_backend *b, const q4k_model *m, q4k_act_mode act, int64_t n_prompt, int64_t n_gen,
                      const int32_t *toks, float *logits, double *t_prompt, double *t_gen) {
    q4k_session *s = NULL;
    q4k_session_desc sd;
    q4k_error err;
    double t0;
    int64_t i;
    int rc = EXIT_ERROR;
    memset(&sd, 0, sizeof sd);
    sd.n_ctx = n_prompt + n_gen + 1;
    sd.act = act;
    sd.trace_layer = -1;
    if (q4k_session_create(b, m, &sd, &s, &err)) goto fail;
    /* warm-up: one token through every weight, then forget it */
    if (q4k_session_eval(s, toks, 1, 0, logits, &err)) goto fail;
    q4k_session_rewind(s, 0);
    t0 = now_ms();
    if (q4k_session_eval(s, toks, n_prompt, 0, logits, &err)) goto fail;
    *t_prompt = now_ms() - t0;
    t0 = now_ms();
    for (i = 0; i < n_gen; i++) {
        int32_t id = (int32_t)q4k_argmax(logits, m->hp.n_vocab);
        if (q4k_session_eval(s, &id, 1, 0, logits, &err)) goto fail;
    }
    *t_gen = now_ms() - t0;
    rc = EXIT_OK;
    goto done;
fail:
    cmd_error("bench", "%s", err.msg);
done:
    q4k_session_free(s);
    return rc;
}

static int cmd_bench(int argc, char **argv) {
    const char *path = NULL, *backend_name = "cpu", *mode = "both", *device = NULL;
    int64_t n_prompt = 128, n_gen = 32, i, n_vocab;
    int n_threads = 0, ref = 0, n_pos, k;
    double bw = 0, t_prompt[2], t_gen[2];
    q4k_model *m = NULL;
    q4k_backend *b = NULL;
    q4k_cpu_backend_desc bd;
    q4k_error err;
    int32_t *toks = NULL;
    float *logits = NULL;
    uint64_t step_bytes;
    q4k_cpu_path path_used;
    int rc = EXIT_ERROR, run_mode[2];
    const cli_opt opts[] = {
        {"-m, --model", "FILE", OPT_STR, &path, 0, 0, "the model (or give it first)"},
        {"-p, --n-prompt", "N", OPT_I64, &n_prompt, 1, 1 << 20, "prompt tokens evaluated in one pass (default 128)"},
        {"-n, --n-gen", "N", OPT_I64, &n_gen, 1, 1 << 20, "single-token decode steps (default 32)"},
        {"-t, --threads", "N", OPT_INT, &n_threads, 1, 1024, "CPU threads (default: all cores)"},
        {"--bw", "GB/s", OPT_DOUBLE, &bw, 0.001, 1e6, "the device's memory bandwidth, to print the fraction of the floor\n"
                                                     "(decode time >= weight bytes / bandwidth) that decode reached"},
        {"--backend", "NAME", OPT_STR, &backend_name, 0, 0, "cpu (default), cuda or vulkan; a GPU backend is timed\n"
                                                           "only after it passed the parity gate in each mode timed"},
        {"--device", "N|NAME", OPT_STR, &device, 0, 0, "the Vulkan device: its index or a part of its name (q4k devices)"},
        {"--mode", "q8|f32|both", OPT_STR, &mode, 0, 0, "arithmetic: 8-bit activations, float activations (the\n"
                                                       "parity reference), or both and their ratio (default both)"},
        {"--ref", NULL, OPT_FLAG, &ref, 0, 0, "the same as --mode f32"},
    };
    const cli_cmd cmd = {"bench", "q4k bench MODEL [options]",
                         "  evaluates N prompt tokens in one pass, then N single-token decode steps,\n"
                         "  and prints tokens/s and the bytes a decode step reads, for each arithmetic mode.\n",
                         opts, N_OPTS(opts), NULL};
    const char *pos[1] = {NULL};
    if ((rc = cmd_parse(&cmd, argc, argv, pos, 1, &n_pos)) >= 0) return rc;
    rc = EXIT_ERROR;
    if (n_pos && path) return cmd_usage_error(&cmd, "unexpected argument '%s'", pos[0]);
    if (n_pos) path = pos[0];
    if (!path) return cmd_usage_error(&cmd, "missing MODEL");
    if (ref) mode = "f32";
    run_mode[0] = !strcmp(mode, "q8") || !strcmp(mode, "both");
    run_mode[1] = !strcmp(mode, "f32") || !strcmp(mode, "both");
    if (!run_mode[0] && !run_mode[1]) return cmd_usage_error(&cmd, "--mode '%s': expected q8, f32 or both", mode);
    if (strcmp(backend_name, "cpu") && strcmp(backend_name, "cuda") && strcmp(backend_name, "vulkan"))
        return cmd_usage_error(&cmd, "--backend wants cpu, cuda or vulkan, not '%s'", backend_name);
    if (device && strcmp(backend_name, "vulkan")) return cmd_usage_error(&cmd, "--device names a Vulkan device: give --backend vulkan");
    if (q4k_model_load(path, NULL, &m, &err) != Q4K_OK) { cmd_error("bench", "%s", err.msg); return EXIT_ERROR; }
    memset(&bd, 0, sizeof bd);
    bd.n_threads = n_threads;
    n_vocab = m->hp.n_vocab;
    toks = (int32_t *)malloc((size_t)n_prompt * sizeof(int32_t));
    logits = (float *)malloc((size_t)n_vocab * sizeof(float));
    if (!toks || !logits) { cmd_error("bench", "out of memory"); goto done; }
    if (strcmp(backend_name, "cpu") ? gpu_backend(backend_name, device, 1, 0, &b, &err) : q4k_cpu_backend_create(&bd, &b, &err)) {
        cmd_error("bench", "%s", err.msg);
        goto done;
    }
    for (i = 0; i < n_prompt; i++) toks[i] = (int32_t)((i * 7919 + 13) % n_vocab);
    /* a decode step reads every weight once, but only one row of the embedding */
    step_bytes = q4k_model_weight_bytes(m) - m->tok_embd->nbytes + (uint64_t)q4k_row_size(m->tok_embd->type, m->hp.n_embd);
    if (m->hp.tied_embeddings) step_bytes += m->tok_embd->nbytes;
    printf("model: %s (%s, %lld layers, %.2f GiB of weights)\n", path, q4k_arch_name(m->hp.arch),
           (long long)m->hp.n_layer, (double)q4k_model_weight_bytes(m) / 1073741824.0);
    if (!strcmp(backend_name, "vulkan")) {
        q4k_vk_backend_info vi;
        if (q4k_vk_backend_info_get(b, &vi) == Q4K_OK) printf("backend: vulkan, device %d, %s (%s)\n", vi.device.index, vi.device.name, vi.device.type);
    } else if (!strcmp(backend_name, "cuda")) {
        q4k_cuda_info ci;
        memset(&ci, 0, sizeof ci);
        q4k_cuda_list_devices(NULL, &ci);
        printf("backend: cuda, device 0: %s, %.1f GiB\n", ci.n_devices > 0 ? ci.devices[0].name : "?",
               ci.n_devices > 0 ? (double)ci.devices[0].total_memory / 1073741824.0 : 0.0);
    } else {
        if (q4k_cpu_resolve_path(Q4K_CPU_AUTO, &path_used, &err) != Q4K_OK) path_used = Q4K_CPU_SCALAR;
        printf("backend: cpu, %s kernels, %d threads\n", q4k_cpu_path_name(path_used),
               n_threads ? n_threads : (int)sysconf(_SC_NPROCESSORS_ONLN));
    }
    fflush(stdout);
    for (k = 0; k < 2; k++) {
        double step;
        if (!run_mode[k]) continue;
        if (strcmp(backend_name, "cpu") &&
            (rc = bench_gate(b, backend_name, m, k ? Q4K_ACT_F32 : Q4K_ACT_Q8, n_threads)) != EXIT_OK)
            goto done;
        rc = EXIT_ERROR;
        if (bench_mode(b, m, k ? Q4K_ACT_F32 : Q4K_ACT_Q8, n_prompt, n_gen, toks, logits, &t_prompt[k], &t_gen[k]))
            goto done;
        step = t_gen[k] / (double)n_gen;
        printf("%s activations:\n", k ? "f32" : "q8");
        printf("  prompt: %lld tokens in %.1f ms: %.2f tokens/s\n", (long long)n_prompt, t_prompt[k],
               1e3 * (double)n_prompt / t_prompt[k]);
        printf("  decode: %lld tokens in %.1f ms: %.2f tokens/s (%.2f ms/token)\n", (long long)n_gen, t_gen[k],
               1e3 * (double)n_gen / t_gen[k], step);
        printf("  decode reads %.3f GB a token: %.1f GB/s", (double)step_bytes / 1e9, (double)step_bytes / 1e6 / step);
        if (bw > 0)
            printf(", %.0f%% of the %.0f GB/s floor (%.1f tokens/s at most)", 100.0 * ((double)step_bytes / 1e6 / step) / bw,
                   bw, bw * 1e9 / (double)step_bytes);
        printf("\n");
        fflush(stdout);
    }
    if (run_mode[0] && run_mode[1])
        printf("f32 / q8 time: prompt %.2fx, decode %.2fx\n", t_prompt[1] / t_prompt[0], t_gen[1] / t_gen[0]);
    rc = EXIT_OK;
done:
    q4k_backend_destroy(b);
    q4k_model_free(m);
    free(toks);
    free(logits);
    return rc;
}

int main(int argc, char **argv) {
    const char *cmd;
    if (argc < 2) {
        fputs(usage_text, stderr);
        return EXIT_USAGE;
    }
    cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        fputs(usage_text, stdout);
        return EXIT_OK;
    }
    if (!strcmp(cmd, "--version")) return cmd_version();
    if (!strcmp(cmd, "info")) return cmd_info(argc - 2, argv + 2);
    if (!strcmp(cmd, "devices")) return cmd_devices(argc - 2, argv + 2);
    if (!strcmp(cmd, "synth")) return cmd_synth(argc - 2, argv + 2);
    if (!strcmp(cmd, "run")) return cmd_run(argc - 2, argv + 2);
    if (!strcmp(cmd, "bench")) return cmd_bench(argc - 2, argv + 2);
    if (!strcmp(cmd, "qa")) return cmd_qa(argc - 2, argv + 2);
    fprintf(stderr, "q4k: unknown command '%s'\n(see q4k --help)\n", cmd);
    return EXIT_USAGE;
}
