/*
 * safetensors.h - reading and writing Hugging Face safetensors checkpoints.
 *
 * Format: an 8-byte little-endian header length N, N bytes of JSON
 * {"name": {"dtype", "shape", "data_offsets": [begin, end)}, ...,
 * "__metadata__": {str: str}}, then the tensor bytes (little-endian,
 * row-major), offsets relative to the start of the data.
 *
 * Reading maps each file read-only (mmap) and hands out pointers into the
 * mapping: tensors are read one at a time, as they are used, and never all
 * at once.  Every header is validated before any tensor is handed out:
 * header length sanity, JSON errors, unknown dtypes, shapes that do not
 * match the byte size, offsets outside the file, begin > end, overlapping
 * ranges or holes between them, duplicate names.  Errors name the file and
 * the tensor.  A checkpoint directory is either model.safetensors or
 * model.safetensors.index.json plus the shards it names; a tensor named in
 * the index but absent from its shard is an error.
 *
 * Writing streams tensors into shards of at most max_shard_bytes (a tensor
 * larger than that gets a shard of its own), named model.safetensors when
 * there is one shard, else model-0000i-of-0000N.safetensors plus
 * model.safetensors.index.json.  Headers carry __metadata__ {"format":
 * "pt"} and are padded with spaces to a multiple of 8 bytes.  Files are
 * written under temporary names and renamed into place by
 * st_writer_finish(); st_writer_abort() removes them.
 */
#ifndef GQ_SAFETENSORS_H
#define GQ_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef enum {
    ST_BOOL, ST_U8, ST_I8, ST_I16, ST_U16, ST_F16, ST_BF16, ST_I32, ST_U32, ST_F32,
    ST_I64, ST_U64, ST_F64, ST_DTYPE_COUNT
} st_dtype;

#define ST_MAX_DIMS 8

/* "F16" etc. (the safetensors spelling; "?" out of range); parse gives 0
 * or GQ_EINVAL ("unknown dtype ..."); size in bytes (0 out of range). */
const char *st_dtype_name(st_dtype t);
int st_dtype_parse(st_dtype *out, const char *name, gq_err *e);
size_t st_dtype_size(st_dtype t);

/*
 * A tensor of an open file: valid until its st_file / st_model is closed.
 * A scalar has ndim 0 and numel 1; a zero-size tensor has numel 0.
 */
struct st_tensor {
    const char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    size_t numel;
    size_t nbytes;
    const void *data;    /* into the read-only mapping; NOT aligned in general */
    const char *file;    /* the file it lives in (for messages) */
};

/* ---- one file ---- */

typedef struct st_file st_file;

/*
 * Map and validate path.  Free with st_file_close (NULL-safe).  Errors:
 * GQ_ENOTFOUND (no such file), GQ_EIO (cannot open or map), GQ_EINVAL (not
 * a regular file, or anything st_check_header refuses; messages start
 * with the file's base name), GQ_ENOMEM.  The file must not shrink while
 * it is open (reading a mapped page past its end would raise SIGBUS).
 */
int st_file_open(st_file **out, const char *path, gq_err *e);
void st_file_close(st_file *f);
size_t st_file_count(const st_file *f);
/* Tensor i in data order (ascending offset), or NULL past the end. */
const struct st_tensor *st_file_tensor(const st_file *f, size_t i);
/* By name (binary search), or NULL. */
const struct st_tensor *st_file_find(const st_file *f, const char *name);
/* __metadata__ value of key, or NULL. */
const char *st_file_metadata(const st_file *f, const char *key);

/*
 * The header validator on its own (what st_file_open runs, and what the
 * fuzz target drives): header text of hlen bytes, data section of
 * data_size bytes, filename for messages (NULL: "header").  Returns the
 * tensor count in *count (may be NULL) on success.  GQ_EINVAL when hlen is
 * 0 or over 100,000,000, the text is not UTF-8 (or has a NUL), not a JSON
 * object, __metadata__ is not an object of unique string keys and string
 * values, a tensor's dtype is unknown, a field is missing, repeated or
 * ill-typed, a shape entry is not a non-negative integer or the byte size
 * overflows or differs from end - begin, begin > end, end > data_size, a
 * name repeats, or the ranges, sorted, overlap or leave a hole (they must
 * cover [0, data_size) exactly).  Messages name the file and the tensor.
 * GQ_ENOMEM.  Pure: reads only its arguments.
 */
int st_check_header(size_t *count, const char *header, size_t hlen, uint64_t data_size,
                    const char *filename, gq_err *e);

/* ---- a checkpoint directory ---- */

typedef struct st_model st_model;

/*
 * Open dir/model.safetensors when it exists (as transformers does), else
 * dir/model.safetensors.index.json and every shard its weight_map names.
 * The index decides which tensors the model has: tensors a shard holds but
 * the index does not name are ignored.  GQ_EINVAL for a bad index (weight_map
 * missing, empty or not an object of strings, a repeated name, a shard
 * name that is not a plain file name in dir such as "../x", "/x", "a/x"),
 * a shard that does not exist, a tensor the index names that its shard
 * lacks (naming both), or a bad shard; GQ_ENOTFOUND when dir has neither
 * file; GQ_EIO, GQ_ENOMEM.  Free with st_model_close (NULL-safe).
 */
int st_model_open(st_model **out, const char *dir, gq_err *e);
void st_model_close(st_model *m);
size_t st_model_count(const st_model *m);
/* Tensor i: shards in file-name order, each in data order; NULL past the end. */
const struct st_tensor *st_model_tensor(const st_model *m, size_t i);
/* By name, or NULL. */
const struct st_tensor *st_model_find(const st_model *m, const char *name);
/* Sum of all tensor bytes. */
uint64_t st_model_total_bytes(const st_model *m);

/*
 * Convert a F32, F16 or BF16 tensor into out (numel floats); other dtypes
 * give GQ_EINVAL naming the tensor.  Works on unaligned mappings.
 */
int st_tensor_to_f32(float *out, const struct st_tensor *t, gq_err *e);

/*
 * Tell the kernel the tensor's pages are not needed any more
 * (madvise(MADV_DONTNEED) on the pages it spans), so a streaming reader's
 * resident memory stays bounded.  t->data stays valid: the pages are
 * re-read from the file if used again (neighbours sharing a page too).
 */
void st_tensor_release(const struct st_tensor *t);

/* ---- writing ---- */

typedef struct st_writer st_writer;

/*
 * A writer into directory dir (which must exist: GQ_ENOTFOUND, or GQ_EINVAL
 * when it is not a directory).  Declare every tensor with
 * st_writer_declare (in the order they will be written), then write each
 * one's bytes with st_writer_write in that same order, then
 * st_writer_finish.  max_shard_bytes 0 means no sharding; otherwise shards
 * are filled greedily in declaration order with at most that many bytes of
 * tensor data (a larger tensor gets a shard of its own; a zero-size tensor
 * never starts one).  Only st_writer_finish or st_writer_abort frees w.
 * One thread at a time.
 */
int st_writer_open(st_writer **out, const char *dir, uint64_t max_shard_bytes, gq_err *e);
/*
 * GQ_EINVAL for an empty, non-UTF-8 or "__metadata__" name, a bad dtype,
 * ndim outside 0..ST_MAX_DIMS, a negative dimension, more than 2^53 bytes
 * in all, or a declaration after the first write.  A name declared twice
 * is reported by the first st_writer_write (or st_writer_finish).
 */
int st_writer_declare(st_writer *w, const char *name, st_dtype dtype, int ndim,
                      const int64_t *shape, gq_err *e);
/*
 * Write the next declared tensor's nbytes little-endian bytes (the caller
 * keeps data; nothing is buffered).  GQ_EINVAL, with nothing written and w
 * unchanged, for a name that is not the next declared one or a wrong
 * size.  After GQ_EIO, GQ_ENOMEM or a duplicate declaration, w is dead:
 * abort it (or finish, which fails and cleans up).
 */
int st_writer_write(st_writer *w, const char *name, const void *data, size_t nbytes, gq_err *e);
/*
 * fsync and rename everything into place; writes the index when sharded
 * (keys sorted, indent 2) and removes the other layout's entry point
 * (model.safetensors or the index) so it cannot shadow this checkpoint.
 * GQ_EINVAL when a declared tensor was not written.  Frees w, also on
 * error, and then leaves no temporary file.
 */
int st_writer_finish(st_writer *w, gq_err *e);
/* Remove the temporary files. Frees w. NULL-safe. */
void st_writer_abort(st_writer *w);

#endif
