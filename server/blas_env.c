/*
 * blas_env.c - pick OpenBLAS's kernels when its own CPU detection fails.
 *
 * Debian bookworm's OpenBLAS (0.3.21, built DYNAMIC_ARCH) chooses its
 * kernels from the CPUID family and model while the library loads.  A CPU
 * newer than it knows (Emerald Rapids, family 6 model 0xCF, on some of our
 * CI machines) falls back to the generic "Prescott" SSE3 kernels: sgemm
 * there runs at 36 GFLOPS on 2 cores where the AVX-512 "SkylakeX" kernels
 * reach 290, so every step of the engine is 8x slower than the machine.
 *
 * OpenBLAS reads its one documented override, OPENBLAS_CORETYPE, only at
 * load time, before main() runs.  So when the core it picked is one of the
 * pre-AVX2 ones and the CPU (and the OS, which __builtin_cpu_supports
 * checks through XCR0) supports AVX-512 F/BW/DQ/VL or AVX2 with FMA, the
 * program re-executes itself once through /proc/self/exe with the same
 * argv (read from /proc/self/cmdline, so main(void) callers work too) and
 * OPENBLAS_CORETYPE set.  The variable being set also ends any loop.
 */
#include "blas_env.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* OpenBLAS's cores without AVX2: what its fallback and old-CPU paths pick. */
static const char *const generic_cores[] = {"Prescott", "Katmai", "Coppermine", "Northwood", "Banias", "Core2",
                                            "Penryn",   "Dunnington", "Nehalem", "Atom", "Sandybridge", "Unknown",
                                            NULL};

const char *blas_env_wanted(const char *detected)
{
    int generic = 0;
    if (!detected)
        return NULL;
    for (const char *const *c = generic_cores; *c; c++)
        generic |= !strcasecmp(detected, *c);
    if (!generic)
        return NULL;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return "Haswell";
    return NULL;
}

/* argv from /proc/self/cmdline (NUL-separated), NULL-terminated; NULL on failure. */
static char **read_argv(char **buf_out)
{
    FILE *f = fopen("/proc/self/cmdline", "rb");
    size_t cap = 4096, n = 0, argc = 0;
    char *buf = NULL, **argv;

    if (!f)
        return NULL;
    for (;;) {
        char *nb = realloc(buf, cap + 1);
        if (!nb) {
            free(buf);
            fclose(f);
            return NULL;
        }
        buf = nb;
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap)
            break;
        cap *= 2;
    }
    fclose(f);
    buf[n] = '\0';
    for (size_t i = 0; i < n; i++)
        argc += buf[i] == '\0';
    if (n == 0 || !(argv = calloc(argc + 1, sizeof(*argv)))) {
        free(buf);
        return NULL;
    }
    argc = 0;
    for (size_t i = 0; i < n; i += strlen(buf + i) + 1)
        argv[argc++] = buf + i;
    argv[argc] = NULL;
    *buf_out = buf;
    return argv;
}

void blas_env_select(void)
{
    const char *want, *keep = getenv("GQ_BLAS_KEEP");
    char *buf = NULL, **argv;

    if (getenv("OPENBLAS_CORETYPE") || (keep && *keep && strcmp(keep, "0")))
        return;
    if (!(want = blas_env_wanted(openblas_get_corename())))
        return;
    if (setenv("OPENBLAS_CORETYPE", want, 1) != 0 || !(argv = read_argv(&buf)))
        return;
    execv("/proc/self/exe", argv);
    /* exec failed: carry on with the fallback kernels, and say so once */
    fprintf(stderr, "warning: OpenBLAS chose its generic '%s' kernels and re-executing with OPENBLAS_CORETYPE=%s "
                    "failed; set OPENBLAS_CORETYPE=%s for full speed\n",
            openblas_get_corename(), want, want);
    unsetenv("OPENBLAS_CORETYPE");
    free(argv);
    free(buf);
}
