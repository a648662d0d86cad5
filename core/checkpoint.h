/*
 * checkpoint.h - streaming a GPTQ checkpoint to disk (GPTQ-NOTES.md §2, §3.5, §7).
 *
 * The tensors of the source model are written in this order: every tensor
 * outside the decoder layers (embeddings, final norm, lm_head: copied
 * unchanged, source dtype) as soon as the writer opens, then each decoder
 * layer when the pipeline hands it over, its tensors sorted by name.  A
 * quantized Linear's `.weight` is replaced by `.g_idx` (I32 [cols]),
 * `.qweight` (I32 [cols*bits/32, rows]), `.qzeros` (I32 [ngroups,
 * rows*bits/32], v1 "(zero - 1) mod 2^bits" or v2 as is) and `.scales`
 * (F16 [ngroups, rows]); its bias and every other tensor are copied
 * unchanged.  Memory: one layer's packed tensors at a time.  Shards of at
 * most shard_bytes (0: one file) as safetensors.h writes them.
 *
 * The writer works in a directory of its own (the pipeline's temporary
 * one); renaming it into place is the caller's business.
 */
#ifndef GQ_CHECKPOINT_H
#define GQ_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "gptq.h"
#include "model.h"
#include "pack.h"

/* What happens to one decoder Linear. */
struct ckpt_module {
    int quantized;          /* 0: written as .weight, unchanged */
    int bits, group_size;   /* the module's own (dynamic overrides applied) */
};

struct ckpt_plan {
    const struct ckpt_module *modules;   /* [num_layers * LIN_COUNT], layer-major */
    pack_format format;
    uint64_t shard_bytes;
};

typedef struct ckpt_writer ckpt_writer;

/*
 * Declare every output tensor of m under plan into dir (which must exist)
 * and write the tensors outside the decoder layers.  GQ_EINVAL when a
 * quantized module's shape cannot be packed (pack_check's message, with
 * the module's name); the writer's errors.  Free with ckpt_finish or
 * ckpt_abort.
 */
int ckpt_open(ckpt_writer **out, const model *m, const char *dir, const struct ckpt_plan *plan, gq_err *e);

/*
 * Write decoder layer `layer` (layers in order, each once): res[id] is the
 * GPTQ result of each quantized Linear, NULL for the others.  GQ_EINVAL for
 * a layer out of order or a result that does not fit the plan.
 */
int ckpt_write_layer(ckpt_writer *w, int layer, const struct gptq_result *const res[LIN_COUNT], gq_err *e);

/* Finish the safetensors files (st_writer_finish).  Frees w, also on error. */
int ckpt_finish(ckpt_writer *w, gq_err *e);
/* Drop everything written.  Frees w.  NULL-safe. */
void ckpt_abort(ckpt_writer *w);

/* Write text (len bytes) to dir/name, durably (write, fsync). */
int ckpt_write_file(const char *dir, const char *name, const char *text, size_t len, gq_err *e);
/* Copy src_dir/name to dst_dir/name when it exists (0 when it does not). */
int ckpt_copy_file(const char *src_dir, const char *dst_dir, const char *name, gq_err *e);

#endif
