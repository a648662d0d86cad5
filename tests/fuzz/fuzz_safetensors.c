/*
 * fuzz_safetensors.c - libFuzzer target for the safetensors reader.
 *
 * The input is a whole file.  Its first 8 bytes are read as the header
 * length N and the validator runs on the header it describes (when N fits),
 * and once more on all of the rest as header text with N as the data size,
 * so the fuzzer drives the JSON checks directly.  Then the input is opened
 * as a file (through a memfd, no disk) with st_file_open, and every tensor
 * is touched: float tensors are converted to float32, the others summed,
 * each is found by name and released.  Invariants that would be bugs, not
 * bad input, trap: an error other than GQ_EINVAL or with no message, a
 * validator that disagrees with st_file_open, a name lookup that misses.
 *
 * Built by tests/fuzz/run.sh with clang -fsanitize=fuzzer,address,undefined.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int memfd = -1;
static volatile unsigned sink;   /* keeps the reads */

static void check_error(int rc, const gq_err *e)
{
    if (rc != 0 && (rc != GQ_EINVAL || e->msg[0] == '\0'))
        __builtin_trap();
}

/*
 * AddressSanitizer does not watch mapped file pages, so the bounds are
 * checked here: in data order the tensors tile the data section (the
 * input after 8 + N bytes) exactly, and each one's bytes are the input's.
 */
static void touch(const st_file *f, const uint8_t *input_data, size_t data_size)
{
    const unsigned char *base = st_file_count(f) ? st_file_tensor(f, 0)->data : NULL;
    size_t pos = 0;

    for (size_t i = 0; i < st_file_count(f); i++) {
        const struct st_tensor *t = st_file_tensor(f, i);
        const unsigned char *p = t->data;
        gq_err e = GQ_ERR_INIT;
        if (st_file_find(f, t->name) != t || t->nbytes != t->numel * st_dtype_size(t->dtype) ||
            p != base + pos || t->nbytes > data_size - pos ||
            memcmp(p, input_data + pos, t->nbytes) != 0)
            __builtin_trap();
        pos += t->nbytes;
        if (t->dtype == ST_F32 || t->dtype == ST_F16 || t->dtype == ST_BF16) {
            float *out = malloc(t->numel * sizeof(float) + 1);
            if (!out || st_tensor_to_f32(out, t, &e) != 0)
                __builtin_trap();
            for (size_t k = 0; k < t->numel; k++)
                sink += out[k] == out[k];
            free(out);
        } else {
            for (size_t k = 0; k < t->nbytes; k++)
                sink += p[k];
            if (st_tensor_to_f32(NULL, t, &e) != GQ_EINVAL)
                __builtin_trap();
        }
        st_tensor_release(t);
    }
    if (pos != data_size)
        __builtin_trap();
    (void)st_file_metadata(f, "format");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gq_err e = GQ_ERR_INIT;
    st_file *f = NULL;
    size_t count = 0;
    uint64_t n = 0;
    int rc_hdr = 1, rc;
    char path[64];

    if (size >= 8) {
        for (int i = 7; i >= 0; i--)
            n = n << 8 | data[i];
        if (n <= size - 8) {
            rc_hdr = st_check_header(&count, (const char *)data + 8, (size_t)n, size - 8 - n,
                                     "fuzz", &e);
            check_error(rc_hdr, &e);
        }
        rc = st_check_header(NULL, (const char *)data + 8, size - 8, n, "fuzz", &e);
        check_error(rc, &e);
    }

    if (memfd < 0 && (memfd = memfd_create("fuzz.safetensors", MFD_CLOEXEC)) < 0)
        abort();
    if (ftruncate(memfd, 0) < 0 || pwrite(memfd, data, size, 0) != (ssize_t)size)
        abort();
    snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
    rc = st_file_open(&f, path, &e);
    check_error(rc, &e);
    /* the validator alone and the file reader agree */
    if ((rc == 0) != (rc_hdr == 0) || (rc == 0 && count != st_file_count(f)))
        __builtin_trap();
    if (rc == 0) {
        touch(f, data + 8 + n, size - 8 - n);
        st_file_close(f);
    }
    return 0;
}
