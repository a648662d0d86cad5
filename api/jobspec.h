/*
 * jobspec.h - a job submission's body, validated field by field into the
 * canonical spec the store keeps and the runner reads: every field present
 * with its default filled in, unknown fields refused, each error naming
 * its field ("quantization.bits") and the bad value.
 *
 * Canonical spec (the store's jobs.spec):
 *   {"model", "revision",
 *    "quantization": {"bits", "group_size", "desc_act", "sym", "damp_percent",
 *                     "static_groups", "true_sequential", "mse", "dynamic",
 *                     "checkpoint_format"},
 *    "calibration": {one of "texts" | "token_ids" | "builtin",
 *                    "num_samples", "seq_len", "seed"},
 *    "eval": null | {one of "texts" | "token_ids", "seq_len", "max_ppl_ratio"},
 *    "output": {"shard_size"}, "priority", "labels", "callback_url"}
 */
#ifndef GQ_JOBSPEC_H
#define GQ_JOBSPEC_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct daemon_config;

/*
 * Validate body (the parsed request) into *spec (a new cJSON tree, caller
 * deletes).  On GQ_EINVAL, field (cap bytes) names the offending field
 * ("" for the body as a whole).  cfg gives --local-models and --calib-dir
 * (a local:NAME model or a builtin calibration must exist there).
 */
int jobspec_parse(cJSON **spec, const cJSON *body, const struct daemon_config *cfg, char *field, size_t cap,
                  gq_err *e);

/* Hex SHA-256 of the canonical spec's compact text (idempotency). */
void jobspec_hash(char out[65], const char *spec_text);

/*
 * Estimated peak memory in bytes of a job with this canonical spec on a
 * model of these dimensions (0 when unknown: then a lower bound from the
 * calibration alone).
 */
int64_t jobspec_estimate_memory(const cJSON *spec, int hidden, int intermediate, int vocab);

#endif
