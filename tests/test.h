/*
 * test.h - the whole test framework: checks that record file:line and keep
 * going, RUN() for one case, SKIP() with a visible reason, and a summary.
 *
 * A test binary prints one "[name] case ... ok|FAIL|SKIP" line per case and
 * ends with "RESULT passed=N failed=N skipped=N"; tests/run.sh adds those up
 * into the closing "N passed, N failed, N skipped" line.  Exit status is 1
 * when any case failed.
 */
#ifndef GQ_TEST_H
#define GQ_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static int t_case_failed, t_case_skipped, t_passed, t_failed, t_skipped;

#define CHECK(cond) do { if (!(cond)) { t_case_failed = 1; \
    fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); } } while (0)
#define CHECK_MSG(cond, ...) do { if (!(cond)) { t_case_failed = 1; \
    fprintf(stderr, "  %s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)
#define CHECK_EQ_INT(a, b) do { long long a_ = (long long)(a), b_ = (long long)(b); \
    if (a_ != b_) { t_case_failed = 1; fprintf(stderr, "  %s:%d: %s == %s failed: %lld != %lld\n", \
    __FILE__, __LINE__, #a, #b, a_, b_); } } while (0)
#define CHECK_NEAR(a, b, tol) do { double a_ = (double)(a), b_ = (double)(b); \
    if (!(fabs(a_ - b_) <= (tol))) { t_case_failed = 1; fprintf(stderr, \
    "  %s:%d: |%s - %s| <= %g failed: %.9g vs %.9g\n", __FILE__, __LINE__, #a, #b, \
    (double)(tol), a_, b_); } } while (0)
#define CHECK_OK(expr, err) do { int rc_ = (expr); if (rc_ != 0) { t_case_failed = 1; \
    fprintf(stderr, "  %s:%d: %s returned %d: %s\n", __FILE__, __LINE__, #expr, rc_, (err)->msg); } } while (0)

/* Mark the running case skipped, say why, and leave it. */
#define SKIP(...) do { t_case_skipped = 1; printf("  skip: "); printf(__VA_ARGS__); \
    printf("\n"); return; } while (0)

#define RUN(fn) do { t_case_failed = t_case_skipped = 0; fn(); \
    if (t_case_failed) { t_failed++; printf("[%s] %s FAIL\n", t_prog, #fn); } \
    else if (t_case_skipped) { t_skipped++; printf("[%s] %s SKIP\n", t_prog, #fn); } \
    else { t_passed++; printf("[%s] %s ok\n", t_prog, #fn); } fflush(stdout); } while (0)

static const char *t_prog = "test";

static inline int test_report(void)
{
    printf("RESULT passed=%d failed=%d skipped=%d\n", t_passed, t_failed, t_skipped);
    return t_failed ? 1 : 0;
}

/* Directory of the shared fixtures, or NULL when ../shared is absent. */
static inline const char *test_shared_dir(void)
{
    static char path[4096];
    const char *env = getenv("GPTQ_SHARED");
    FILE *f;
    snprintf(path, sizeof(path), "%s", env && *env ? env : "../shared");
    {
        char probe[4200];
        snprintf(probe, sizeof(probe), "%s/GPTQ-NOTES.md", path);
        f = fopen(probe, "r");
    }
    if (!f)
        return NULL;
    fclose(f);
    return path;
}

/* The whole file in a malloc'd NUL-terminated buffer (len may be NULL), or NULL. */
static inline char *test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;
    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (buf = malloc((size_t)n + 1)) != NULL) {
        if (fread(buf, 1, (size_t)n, f) != (size_t)n)
            n = 0;
        buf[n] = '\0';
        if (len)
            *len = (size_t)n;
    }
    fclose(f);
    return buf;
}

/*
 * Run a shell command, its whole stdout (up to cap - 1 bytes, NUL-ended)
 * into out; the exit status, or -1 when it could not run or was killed.
 */
static inline int test_run_cmd(char *out, size_t cap, const char *cmd)
{
    FILE *p = popen(cmd, "r");
    size_t n = 0, got;
    int status;

    out[0] = '\0';
    if (!p)
        return -1;
    while (n + 1 < cap && (got = fread(out + n, 1, cap - 1 - n, p)) > 0)
        n += got;
    out[n] = '\0';
    while (fgetc(p) != EOF)
        ;
    status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Deterministic pseudo-random numbers (splitmix64), so tests never flake. */
static inline unsigned long long test_rand_u64(unsigned long long *s)
{
    unsigned long long z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static inline double test_rand_unit(unsigned long long *s)
{
    return (double)(test_rand_u64(s) >> 11) * (1.0 / 9007199254740992.0);
}
static inline double test_rand_normal(unsigned long long *s)
{
    double u1 = test_rand_unit(s), u2 = test_rand_unit(s);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

#endif
