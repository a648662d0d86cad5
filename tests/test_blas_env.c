/*
 * test_blas_env.c - server/blas_env.c: OpenBLAS gets kernels the CPU can
 * run when its own detection falls back to generic ones.
 *
 * The choice (blas_env_wanted) against the CPU's features; then the real
 * programs ($GPTQ_BIN, $GPTQD_BIN) run with OPENBLAS_VERBOSE=2, which makes
 * OpenBLAS print "Core: NAME" each time it loads: the last core a program
 * ends up with is never a generic one on a CPU with AVX2, a user's
 * OPENBLAS_CORETYPE is kept, and GQ_BLAS_KEEP=1 keeps OpenBLAS's own pick.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "blas_env.h"
#include "test.h"

static int cpu_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

static void test_blas_env__choice(void)
{
    static const char *const kept[] = {"SkylakeX", "Haswell", "Cooperlake", "Zen", "SapphireRapids", NULL};
    static const char *const generic[] = {"Prescott", "Core2", "Nehalem", "Sandybridge", "Unknown", NULL};
    const char *want;
    int avx512;

    __builtin_cpu_init();
    avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
    for (const char *const *c = kept; *c; c++)
        CHECK_MSG(blas_env_wanted(*c) == NULL, "a detected %s would be overridden", *c);
    CHECK(blas_env_wanted(NULL) == NULL);
    for (const char *const *c = generic; *c; c++) {
        want = blas_env_wanted(*c);
        if (avx512)
            CHECK_MSG(want && !strcmp(want, "SkylakeX"), "%s on an AVX-512 CPU -> %s", *c, want ? want : "(kept)");
        else if (cpu_avx2())
            CHECK_MSG(want && !strcmp(want, "Haswell"), "%s on an AVX2 CPU -> %s", *c, want ? want : "(kept)");
        else
            CHECK_MSG(want == NULL, "%s on a CPU without AVX2 -> %s", *c, want);
    }
    /* this process called blas_env_select() in main(): its own kernels */
    CHECK_MSG(!cpu_avx2() || blas_env_wanted(openblas_get_corename()) == NULL, "this test runs on '%s'",
              openblas_get_corename());
}

/* The last "Core: NAME" OpenBLAS printed while running cmd (stderr), in out. */
static int last_core(const char *cmd, char *out, size_t cap)
{
    char line[512], full[4600];
    FILE *p;
    int n = 0;
    out[0] = '\0';
    snprintf(full, sizeof(full), "%s 2>&1 >/dev/null", cmd);
    if (!(p = popen(full, "r")))
        return -1;
    while (fgets(line, sizeof(line), p))
        if (!strncmp(line, "Core: ", 6)) {
            line[strcspn(line, "\r\n")] = '\0';
            snprintf(out, cap, "%.60s", line + 6);
            n++;
        }
    pclose(p);
    return n;
}

static void test_blas_env__programs(void)
{
    const char *bins[] = {getenv("GPTQ_BIN"), getenv("GPTQD_BIN")};
    char cmd[4400], core[64], first[64];
    int loads;

    if (!bins[0] || !bins[1])
        SKIP("GPTQ_BIN and GPTQD_BIN are not set (run through make test)");
    for (int i = 0; i < 2; i++) {
        /* OpenBLAS's own pick, as the process would have it without us */
        snprintf(cmd, sizeof(cmd), "env -u OPENBLAS_CORETYPE OPENBLAS_VERBOSE=2 GQ_BLAS_KEEP=1 '%s' --help", bins[i]);
        CHECK_MSG(last_core(cmd, first, sizeof(first)) == 1, "%s: GQ_BLAS_KEEP=1 loaded OpenBLAS %s", bins[i],
                  "more than once");
        /* what the program runs with */
        snprintf(cmd, sizeof(cmd), "env -u OPENBLAS_CORETYPE -u GQ_BLAS_KEEP OPENBLAS_VERBOSE=2 '%s' --help", bins[i]);
        loads = last_core(cmd, core, sizeof(core));
        CHECK_MSG(loads >= 1, "%s printed no OpenBLAS core", bins[i]);
        if (cpu_avx2())
            CHECK_MSG(blas_env_wanted(core) == NULL, "%s runs on OpenBLAS's generic '%s' kernels", bins[i], core);
        /* re-executed exactly when OpenBLAS's own pick was generic */
        CHECK_MSG(loads == (blas_env_wanted(first) ? 2 : 1), "%s: OpenBLAS picked '%s', loaded %d time(s)",
                  bins[i], first, loads);
        printf("  %s: OpenBLAS picks %s, runs %s\n", strrchr(bins[i], '/') ? strrchr(bins[i], '/') + 1 : bins[i],
               first, core);
        /* a user's choice stands */
        snprintf(cmd, sizeof(cmd), "env -u GQ_BLAS_KEEP OPENBLAS_VERBOSE=2 OPENBLAS_CORETYPE=Prescott '%s' --help",
                 bins[i]);
        CHECK_MSG(last_core(cmd, core, sizeof(core)) == 1 && !strcmp(core, "Prescott"),
                  "%s overrode OPENBLAS_CORETYPE=Prescott (runs %s)", bins[i], core);
    }
}

int main(void)
{
    t_prog = "test_blas_env";
    blas_env_select();
    RUN(test_blas_env__choice);
    RUN(test_blas_env__programs);
    return test_report();
}
