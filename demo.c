/* q4k - the command-line tool: run, check and benchmark GGUF models.

   Built from the three headers; see `q4k --help`. Generated text goes to
   stdout, everything else to stderr. Exit codes: 0 ok, 1 error, 2 usage,
   3 parity failure. */
#define Q4K_IMPLEMENTATION
#include "q4k.h"
#include "q4k_cuda.h"
#include "q4k_vulkan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { EXIT_OK = 0, EXIT_ERROR = 1, EXIT_USAGE = 2, EXIT_PARITY = 3 };

static const char *usage_text =
    "usage: q4k COMMAND [ARGS]\n"
    "\n"
    "commands:\n"
    "  info FILE [--json]     print a GGUF file's metadata and tensor table\n"
    "  --version              version, compiler, CPU paths, GPU backends\n"
    "  --help                 this text\n"
    "\n"
    "exit codes: 0 ok, 1 error (bad file, backend that cannot start, I/O),\n"
    "            2 usage (bad or missing arguments), 3 parity failure\n"
    "\n"
    "environment: Q4K_CPU=scalar|avx2|avx512 forces a CPU kernel path\n";

static int usage_error(const char *fmt, const char *arg) {
    fprintf(stderr, "q4k: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(see q4k --help)\n");
    return EXIT_USAGE;
}

static void paths_line(const char *label, unsigned mask) {
    int p;
    fprintf(stdout, "%s:", label);
    for (p = Q4K_CPU_SCALAR; p <= Q4K_CPU_NEON; p++)
        if (mask & (1u << p)) fprintf(stdout, " %s", q4k_cpu_path_name((q4k_cpu_path)p));
    fprintf(stdout, "\n");
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
    printf("cuda backend: compiled; %s\n",
           q4k_cuda_probe(&err) == Q4K_OK ? "can start here" : err.msg);
    printf("vulkan backend: compiled; %s\n",
           q4k_vk_probe(&err) == Q4K_OK ? "can start here" : err.msg);
    return EXIT_OK;
}

static int cmd_info(int argc, char **argv) {
    const char *path = NULL;
    int json = 0, i;
    q4k_gguf *g;
    q4k_error err;
    q4k_gguf_desc desc;
    /* info shows any valid GGUF, also one with types q4k cannot run (the
       table marks them); run and the model loader refuse those */
    memset(&desc, 0, sizeof desc);
    desc.allow_unimplemented = 1;
    for (i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = 1;
        else if (argv[i][0] == '-' && argv[i][1]) return usage_error("info: unknown flag '%s'", argv[i]);
        else if (!path) path = argv[i];
        else return usage_error("info: unexpected argument '%s'", argv[i]);
    }
    if (!path) return usage_error("info: missing FILE%s", "");
    if (q4k_gguf_open_file(path, &desc, &g, &err) != Q4K_OK) {
        fprintf(stderr, "q4k: %s\n", err.msg);
        return EXIT_ERROR;
    }
    q4k_gguf_print(g, stdout, json);
    q4k_gguf_close(g);
    return EXIT_OK;
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
    return usage_error("unknown command '%s'", cmd);
}
