/*
 * blas_env.h - make OpenBLAS use the kernels this CPU can run when its own
 * detection falls back to generic ones.  See blas_env.c.
 */
#ifndef GQ_BLAS_ENV_H
#define GQ_BLAS_ENV_H

/*
 * Call first thing in main(), before any thread or BLAS call.  When
 * OpenBLAS picked a generic fallback core on a CPU with AVX-512 or AVX2,
 * the process re-executes itself (same argv, same environment plus
 * OPENBLAS_CORETYPE) and never returns; otherwise it returns at once.
 * A user's OPENBLAS_CORETYPE is respected, GQ_BLAS_KEEP=1 turns this off,
 * and if the exec fails the program goes on with the fallback kernels.
 */
void blas_env_select(void);

/* The core type blas_env_select would ask for on this CPU ("SkylakeX",
 * "Haswell"), or NULL when OpenBLAS's own choice stands.  For tests. */
const char *blas_env_wanted(const char *detected_core);

#endif
