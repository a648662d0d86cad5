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

#include "err.h"

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
};

/*
 * Parse len bytes of config.json text into *out (set only on success; the
 * result owns nothing and needs no free).  The family comes from the first
 * entry of "architectures" (or, when that key is absent, "model_type");
 * keys the config leaves out take the family's transformers defaults;
 * keys this engine does not use are ignored.
 *
 * Errors, all GQ_EINVAL with a one-line message naming the key and the bad
 * value: invalid JSON, a root that is not an object, a duplicate key that
 * is read (Python would take the last one), a missing required key
 * (vocab_size, hidden_size, intermediate_size, num_hidden_layers,
 * num_attention_heads), a value of the wrong JSON type or out of range, an
 * unsupported architecture, hidden_act, rope type, partial rotary factor
 * or sliding-window Qwen layers, and heads that do not divide.
 */
int model_config_parse(struct model_config *out, const char *json, size_t len, gq_err *e);

/*
 * Read path (at most 16 MiB) and parse it as model_config_parse does;
 * messages are prefixed with the path.  GQ_ENOTFOUND when the file does
 * not exist, GQ_EIO when it cannot be read, GQ_EINVAL when it is not a
 * regular file, too large or invalid, GQ_ENOMEM.
 */
int model_config_load(struct model_config *out, const char *path, gq_err *e);

/* The architecture table, for listing; terminated by a NULL name.  Static. */
const struct arch_desc *model_arch_table(void);

#endif
