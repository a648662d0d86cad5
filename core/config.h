/*
 * config.h - a model's config.json, in both spellings transformers has
 * written (v4: torch_dtype, top-level rope_theta and rope_scaling; v5:
 * dtype, rope_parameters), and the table of supported architectures.
 *
 * Supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM (q/k/v
 * bias), Qwen3ForCausalLM (per-head q/k RMSNorm).  Anything else is an
 * error that lists these.  Rope types: default, linear, llama3; any other
 * is an "unsupported" error, never an approximation.  Adding a family means
 * adding one row to the architecture table in config.c.
 */
#ifndef GQ_CONFIG_H
#define GQ_CONFIG_H

#include <stddef.h>

#include "dynamic.h"
#include "err.h"
#include "json.h"
#include "pack.h"

enum rope_type { ROPE_DEFAULT = 0, ROPE_LINEAR, ROPE_LLAMA3 };

/* Where a family's Linear biases come from. */
enum bias_rule {
    BIAS_NEVER = 0,        /* no bias, whatever the config says */
    BIAS_ALWAYS,           /* always a bias (Qwen2 q/k/v) */
    BIAS_ATTENTION_KEY,    /* config "attention_bias" (default false) */
    BIAS_MLP_KEY           /* config "mlp_bias" (default false) */
};

/* How a family uses "sliding_window". */
enum window_rule {
    WINDOW_NEVER = 0,      /* Llama: no sliding window */
    WINDOW_ALL_LAYERS,     /* Mistral: every layer, when sliding_window is not null */
    WINDOW_QWEN            /* Qwen2/3: only with use_sliding_window, per layer (refused) */
};

/*
 * What distinguishes one decoder family from another: its layer shape and
 * the defaults its transformers config class gives keys that config.json
 * leaves out (checked against configuration_<family>.py and
 * modeling_<family>.py).
 */
struct arch_desc {
    const char *name;          /* "LlamaForCausalLM" */
    const char *model_type;    /* "llama" */
    enum bias_rule qkv_bias;   /* q_proj, k_proj, v_proj */
    enum bias_rule o_bias;     /* o_proj */
    enum bias_rule mlp_bias;   /* gate_proj, up_proj, down_proj */
    int qk_norm;               /* Qwen3: RMSNorm over head_dim on q and k before rope */
    enum window_rule window;
    /* defaults for absent keys */
    int kv_heads_default;      /* 0 = num_attention_heads */
    int head_dim_default;      /* 0 = hidden_size / num_attention_heads */
    int max_position_default;
    int bos_default;           /* -1 = none */
    int eos_default;           /* -1 = none */
    int sliding_window_default;
    int tie_default;           /* tie_word_embeddings */
    double rms_norm_eps_default;
    double rope_theta_default;
};

/*
 * The base quantization config of a GPTQ checkpoint (GPTQ-NOTES.md §3):
 * config.json's "quantization_config", or AutoGPTQ/GPTQModel's
 * quantize_config.json (then quant_config.json) when config.json has none.
 * Per-module overrides (the "dynamic" rules) are not here: they need
 * freeing, and the model owns them (model_gptq_load).
 */
struct model_gptq {
    int bits;                  /* 2, 3, 4 or 8 */
    int group_size;            /* -1 (one group per row) or > 0 */
    int desc_act;              /* act-order: g_idx must be in the checkpoint */
    int sym;                   /* informational: zeros are always read from qzeros */
    pack_format format;        /* checkpoint_format / format: gptq (v1) or gptq_v2 */
    char source[24];           /* "config.json", "quantize_config.json" or "quant_config.json" */
};

/*
 * A parsed, validated config.  Every size is positive, num_kv_heads
 * divides num_heads, head_dim is even, rms_norm_eps and rope_theta are
 * finite and positive, and the rope fields not used by rope_type are 0.
 */
struct model_config {
    const struct arch_desc *arch;
    int hidden_size;
    int intermediate_size;
    int num_layers;
    int num_heads;
    int num_kv_heads;
    int head_dim;              /* explicit, else the family default or hidden_size / num_heads */
    int vocab_size;
    int max_position_embeddings;
    int sliding_window;        /* 0 = none (or not used by this family/config) */
    int tie_word_embeddings;
    int attention_bias;        /* q/k/v projections have biases */
    int o_bias;                /* o_proj has a bias */
    int mlp_bias;              /* gate/up/down have biases */
    double rms_norm_eps;
    double rope_theta;
    enum rope_type rope_type;
    double rope_factor;                 /* linear and llama3 */
    double rope_low_freq_factor;        /* llama3 */
    double rope_high_freq_factor;       /* llama3 */
    int rope_original_max_position;     /* llama3 */
    char dtype[16];            /* float16, bfloat16 or float32 (dtype, torch_dtype); "" if absent */
    int bos_token_id;          /* -1 when null (or absent with no family default) */
    int eos_token_id;          /* the first when a list; -1 when null, [] or absent, no default */
    int quantized;             /* 1: a GPTQ checkpoint, gptq below is its base config */
    struct model_gptq gptq;    /* all zero unless quantized */
};

/*
 * Parse len bytes of config.json text into *out (set only on success; the
 * result owns nothing and needs no free).  The family comes from the first
 * entry of "architectures" (or, when that key is absent, "model_type");
 * keys the config leaves out take the family's transformers defaults;
 * keys this engine does not use are ignored.  A "quantization_config"
 * (not null) is parsed as model_gptq_parse does, its dynamic rules
 * checked and dropped: quantized = 1, gptq filled, gptq.source
 * "config.json".  (A checkpoint whose quantize_config.json holds the
 * config is found by model_gptq_load, which needs the directory.)
 *
 * Errors, all GQ_EINVAL with a one-line message naming the key and the bad
 * value: invalid JSON, a root that is not an object, a duplicate key that
 * is read (Python would take the last one), a missing required key
 * (vocab_size, hidden_size, intermediate_size, num_hidden_layers,
 * num_attention_heads), a value of the wrong JSON type or out of range, an
 * unsupported architecture, hidden_act, rope type, partial rotary factor
 * or sliding-window Qwen layers, heads that do not divide, and a
 * quantization_config model_gptq_parse refuses (another quant method such
 * as awq or fp8, bits 5, a quantized lm_head, ...).
 */
int model_config_parse(struct model_config *out, const char *json, size_t len, gq_err *e);

/*
 * Read path (at most 16 MiB) and parse it as model_config_parse does;
 * messages are prefixed with the path.  GQ_ENOTFOUND when the file does
 * not exist, GQ_EIO when it cannot be read, GQ_EINVAL when it is not a
 * regular file, too large or invalid, GQ_ENOMEM.
 */
int model_config_load(struct model_config *out, const char *path, gq_err *e);

/*
 * Parse a GPTQ quantization config object qc (config.json's
 * quantization_config, or the root of a quantize_config.json) into *out,
 * and its "dynamic" rules into *dynamic (an empty set when it has none;
 * free with dynamic_free); both set only on success.  Read: quant_method
 * (or GPTQModel's "method"; absent means gptq, as in AutoGPTQ's older
 * quantize_config.json), bits (required), group_size (required), desc_act
 * (default false), sym (default true), checkpoint_format (or GPTQModel's
 * newer alias "format"; default "gptq"), pack_dtype (int32 only), lm_head
 * (true is refused) and dynamic; other keys (damp_percent, meta, ...) are
 * ignored.  GQ_EINVAL naming the key and the bad value: another quant
 * method ("awq", "fp8", ...: not supported), bits other than 2, 3, 4, 8,
 * group_size 0 or below -1, a checkpoint format other than gptq/gptq_v2
 * (e.g. "marlin"), spellings that disagree, a quantized lm_head, a bad
 * dynamic rule (dynamic_parse's message), a duplicate key, a wrong type.
 * out->source is left empty.
 */
int model_gptq_parse(struct model_gptq *out, dynamic_rules **dynamic, const gq_json *qc, gq_err *e);

/*
 * The quantization config of the checkpoint in dir, where the loaders
 * look: dir/config.json's quantization_config; when it has none,
 * dir/quantize_config.json, then dir/quant_config.json.  *found = 1 and
 * *out, *dynamic (as model_gptq_parse; out->source names the file) when
 * one is found; *found = 0 (and nothing else set) for a float checkpoint.
 * Errors: model_gptq_parse's, prefixed with the file's path; those of
 * reading a file (GQ_ENOTFOUND when dir has no config.json, GQ_EIO,
 * GQ_EINVAL for invalid JSON or a file that is not a regular file).
 */
int model_gptq_load(struct model_gptq *out, dynamic_rules **dynamic, int *found, const char *dir,
                    gq_err *e);

/* How one decoder Linear is quantized once the dynamic rules are applied. */
struct model_gptq_module {
    int quantized;             /* 0: a "-:" rule leaves it unquantized (the rest is 0) */
    int bits, group_size, desc_act, sym;
};

/*
 * The module's settings: the base config g with the first matching
 * dynamic rule applied (dynamic_match on the full module name, e.g.
 * "model.layers.0.self_attn.q_proj"); dynamic may be NULL.
 */
void model_gptq_module(struct model_gptq_module *out, const struct model_gptq *g,
                       const dynamic_rules *dynamic, const char *module);

/* The architecture table, for listing; terminated by a NULL name.  Static. */
const struct arch_desc *model_arch_table(void);

#endif
