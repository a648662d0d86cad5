/*
 * pipeline.h - GPTQ over a whole model: sequential, layer by layer, into a
 * GPTQ checkpoint (GPTQ-NOTES.md §1.5).
 *
 * The calibration tokens are embedded once; then for each decoder layer,
 * for each true-sequential group of its Linears (q/k/v, o, gate/up, down;
 * all seven at once when true_sequential is off), the layer runs on every
 * calibration sequence up to that group's input, each Linear's Hessian is
 * accumulated from its real inputs (q/k/v share one input and so one
 * Hessian, gate/up too), the Linears are quantized and their dequantized
 * weights swapped in, so later groups and layers see the quantized
 * model's activations.  After the last group the layer runs once more, in
 * place, to give the next layer its inputs (each pass resumes where the
 * previous one left the activations).  Each finished layer is packed
 * and streamed to disk (checkpoint.h).
 *
 * Memory: the weights stay mapped; resident are one layer in float32, the
 * calibration activations and their attention outputs (two activation
 * copies; one plus a chunk without true_sequential), the Hessians of one
 * group with the solve's scratch, and one layer's results.
 *
 * Output: everything is written into a temporary directory next to out_dir
 * and renamed to out_dir at the end; out_dir must not exist.  On any error
 * or cancellation the temporary directory is removed: there is never a
 * half-written checkpoint at out_dir.
 */
#ifndef GQ_PIPELINE_H
#define GQ_PIPELINE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "calib.h"
#include "dynamic.h"
#include "err.h"
#include "gptq.h"
#include "pack.h"

#define GPTQD_VERSION "0.1.0"

struct quantize_options {
    struct gptq_params gptq;        /* bits, sym, mse, group_size, desc_act, static_groups, block, damp */
    int true_sequential;            /* default 1 */
    pack_format format;             /* PACK_GPTQ (default) or PACK_GPTQ_V2 */
    const dynamic_rules *dynamic;   /* per-module overrides, may be NULL */
    uint64_t shard_bytes;           /* default 4 GB (4e9 bytes, as "4GB" in transformers) */
    const char *source_model_id;    /* provenance: repo id or local directory */
    const char *source_revision;    /* commit sha, or "local" */
    int rtn_baseline;               /* also measure RTN's output error per module (default 1) */
    /*
     * Optional in-memory evaluation: eval_blocks blocks of eval_seqlen ids
     * run through each layer as soon as it is quantized (the quantized
     * model as the next layers see it), perplexity as model_nll computes
     * it.  Costs eval_blocks * eval_seqlen * hidden floats.
     */
    const int32_t *eval_ids;
    size_t eval_blocks, eval_seqlen;
};

/* gptq_params_default, true_sequential 1, v1 format, 4 GB shards, RTN baseline on. */
void quantize_options_default(struct quantize_options *o);

enum quantize_stage { QSTAGE_QUANTIZING, QSTAGE_WRITING, QSTAGE_DONE };

struct quantize_progress {
    enum quantize_stage stage;
    int layer, layers;              /* layer being worked on (0-based), of layers */
    const char *module;             /* the module just quantized, or NULL */
    double fraction;                /* 0..1 of the whole job */
    double elapsed, eta_seconds;    /* seconds; eta -1 when unknown */
};

/* Called from the quantizing thread; must be quick. */
typedef void (*quantize_progress_fn)(const struct quantize_progress *p, void *payload);

/* One Linear's outcome (quant_log.json). */
struct module_log {
    char name[96];
    int quantized;
    int bits, group_size, desc_act, sym;
    size_t rows, cols;
    double damp_percent;
    int damp_retries;
    double avg_loss, out_rel, rtn_out_rel, seconds;
};

struct quantize_report {
    struct module_log *modules;     /* in layer, then true-sequential order */
    size_t nmodules;
    size_t quantized;               /* modules quantized (the rest kept by "-:" rules) */
    double seconds;
    uint64_t peak_bytes;            /* gq_mem_peak over the run (core allocations) */
    double eval_nll;                /* in-memory evaluation: summed NLL, */
    size_t eval_count;              /* predicted positions, */
    double eval_ppl;                /* exp(nll / count); NAN without evaluation */
};

void quantize_report_free(struct quantize_report *r);

/*
 * Quantize the model in src_dir (config.json + safetensors) with cal and
 * opt into out_dir.  progress and cancel may be NULL; cancellation is
 * honoured between chunks and inside each GPTQ solve (GQ_ECANCELED).
 * Errors: GQ_ECONFLICT when out_dir exists; model_open's; GQ_EINVAL for
 * options (gptq_params_check), a calibration token outside the vocabulary,
 * a module whose shape cannot be packed; GQ_ENUMERIC from a solve (the
 * message names the module); GQ_EIO; GQ_ENOMEM.  *rep set on success.
 */
int quantize_model(struct quantize_report *rep, const char *src_dir, const char *out_dir, const struct calib *cal,
                   const struct quantize_options *opt, quantize_progress_fn progress, void *payload,
                   const atomic_bool *cancel, gq_err *e);

#endif
