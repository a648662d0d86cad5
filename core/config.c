/*
 * config.c - a model's config.json, as transformers reads it.
 *
 * DESIGN.  One static table, arch_table[], holds what differs between the
 * supported decoder families: where their biases come from, whether they
 * normalise q and k, how they use a sliding window, and the defaults their
 * transformers config class gives the keys a config.json leaves out (read
 * from configuration_{llama,mistral,qwen2,qwen3}.py, which differ more than
 * one would guess: an absent num_key_value_heads is num_attention_heads for
 * Llama, 8 for Mistral and 32 for Qwen2/Qwen3; an absent head_dim is
 * hidden_size / num_attention_heads except for Qwen3, where it is 128).
 * Adding a family is adding a row.
 *
 * The parser reads only the keys the engine uses, through core/json.h,
 * each through one of a few typed getters that name the key in every
 * error; a key that appears twice is an error (Python's json keeps the
 * last one, gq_json_get the first, and the two must not disagree
 * silently).  JSON null counts as "absent" except where transformers gives
 * null a meaning of its own (sliding_window, bos/eos, rope_scaling).
 *
 * Both spellings transformers has written are read: v4 (torch_dtype,
 * top-level rope_theta, rope_scaling {type | rope_type, factor, ...}) and
 * v5 (dtype, rope_parameters {rope_theta, rope_type, factor, ...}).  Rope
 * types other than default, linear and llama3 are refused by name, never
 * approximated.
 *
 * A GPTQ checkpoint's quantization config is read the same way, key by
 * key, from config.json's quantization_config or, when that is absent, from
 * quantize_config.json or quant_config.json (model_gptq_load: where
 * AutoGPTQ and GPTQModel look).  Only what reading the checkpoint needs is
 * kept (bits, group_size, desc_act, sym, the zero-point format, the
 * dynamic rules); anything that cannot be read as GPTQ (another quant
 * method, a Marlin-repacked format, a pack dtype other than int32, a
 * quantized lm_head) is refused by name here, before any tensor is
 * touched.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"
#include "mem.h"

#define CONFIG_MAX_BYTES (16u << 20)
#define MAX_SIZE (1 << 24)      /* hidden, intermediate, vocab, head_dim, heads * head_dim */
#define MAX_LAYERS 4096
#define MAX_HEADS 4096

static const struct arch_desc arch_table[] = {
    {
        .name = "LlamaForCausalLM", .model_type = "llama",
        .qkv_bias = BIAS_ATTENTION_KEY, .o_bias = BIAS_ATTENTION_KEY, .mlp_bias = BIAS_MLP_KEY,
        .qk_norm = 0, .window = WINDOW_NEVER,
        .kv_heads_default = 0, .head_dim_default = 0, .max_position_default = 2048,
        .bos_default = 1, .eos_default = 2, .sliding_window_default = 0, .tie_default = 0,
        .rms_norm_eps_default = 1e-6, .rope_theta_default = 10000.0,
    },
    {
        .name = "MistralForCausalLM", .model_type = "mistral",
        .qkv_bias = BIAS_NEVER, .o_bias = BIAS_NEVER, .mlp_bias = BIAS_NEVER,
        .qk_norm = 0, .window = WINDOW_ALL_LAYERS,
        .kv_heads_default = 8, .head_dim_default = 0, .max_position_default = 4096 * 32,
        .bos_default = 1, .eos_default = 2, .sliding_window_default = 4096, .tie_default = 0,
        .rms_norm_eps_default = 1e-6, .rope_theta_default = 10000.0,
    },
    {
        .name = "Qwen2ForCausalLM", .model_type = "qwen2",
        .qkv_bias = BIAS_ALWAYS, .o_bias = BIAS_NEVER, .mlp_bias = BIAS_NEVER,
        .qk_norm = 0, .window = WINDOW_QWEN,
        .kv_heads_default = 32, .head_dim_default = 0, .max_position_default = 32768,
        .bos_default = -1, .eos_default = -1, .sliding_window_default = 4096, .tie_default = 0,
        .rms_norm_eps_default = 1e-6, .rope_theta_default = 10000.0,
    },
    {
        .name = "Qwen3ForCausalLM", .model_type = "qwen3",
        .qkv_bias = BIAS_ATTENTION_KEY, .o_bias = BIAS_ATTENTION_KEY, .mlp_bias = BIAS_NEVER,
        .qk_norm = 1, .window = WINDOW_QWEN,
        .kv_heads_default = 32, .head_dim_default = 128, .max_position_default = 32768,
        .bos_default = -1, .eos_default = -1, .sliding_window_default = 4096, .tie_default = 0,
        .rms_norm_eps_default = 1e-6, .rope_theta_default = 10000.0,
    },
    { .name = NULL },
};

/* Qwen2/Qwen3: layers at or above this index slide when layer_types is absent. */
#define QWEN_MAX_WINDOW_LAYERS_DEFAULT 28

const struct arch_desc *model_arch_table(void)
{
    return arch_table;
}

/* ---- helpers ---- */


/* "section.key", or "key" at the top level. */
static const char *key_name(char *dst, size_t cap, const char *section, const char *key)
{
    if (section)
        snprintf(dst, cap, "%s.%s", section, key);
    else
        snprintf(dst, cap, "%s", key);
    return dst;
}

/*
 * *out = the member key of obj, or NULL when absent.  A key that appears
 * twice is an error.
 */
static int member(const gq_json **out, const gq_json *obj, const char *section, const char *key,
                  gq_err *e)
{
    const gq_json *found = NULL;
    char name[96];

    *out = NULL;
    for (const gq_json *m = gq_json_first(obj); m; m = gq_json_next(m)) {
        if (strcmp(gq_json_key(m), key) != 0)
            continue;
        if (found)
            return GQ_FAIL(e, GQ_EINVAL, "config key %s appears more than once",
                           key_name(name, sizeof(name), section, key));
        found = m;
    }
    *out = found;
    return 0;
}

/* The member, with null reported as absent. */
static int member_nonnull(const gq_json **out, const gq_json *obj, const char *section,
                          const char *key, gq_err *e)
{
    int rc = member(out, obj, section, key, e);
    if (rc == 0 && gq_json_is_null(*out))
        *out = NULL;
    return rc;
}

static int type_error(const gq_json *j, const char *section, const char *key, const char *want,
                      gq_err *e)
{
    char name[96];
    return GQ_FAIL(e, GQ_EINVAL, "config key %s must be %s (got %s)",
                   key_name(name, sizeof(name), section, key), want,
                   gq_json_type_name(gq_json_type_of(j)));
}

static int int_value(int *out, const gq_json *j, const char *section, const char *key, int min,
                     int max, gq_err *e)
{
    char name[96], what[128];
    long long v;
    int rc;

    snprintf(what, sizeof(what), "config key %s", key_name(name, sizeof(name), section, key));
    if ((rc = gq_json_int(&v, j, min, max, what, e)) < 0)
        return rc;
    *out = (int)v;
    return 0;
}

/* An integer in [min, max]; dflt when absent or null, unless required. */
static int get_int(int *out, const gq_json *obj, const char *section, const char *key, int required,
                   int dflt, int min, int max, gq_err *e)
{
    const gq_json *j = NULL;
    char name[96];
    int rc;

    rc = required ? member(&j, obj, section, key, e) : member_nonnull(&j, obj, section, key, e);
    if (rc < 0)
        return rc;
    if (!j) {
        if (required)
            return GQ_FAIL(e, GQ_EINVAL, "config key %s is missing",
                           key_name(name, sizeof(name), section, key));
        *out = dflt;
        return 0;
    }
    return int_value(out, j, section, key, min, max, e);
}

/* A finite number; *present says whether the key was there (not null). */
static int get_number(double *out, int *present, const gq_json *obj, const char *section,
                      const char *key, double dflt, gq_err *e)
{
    const gq_json *j = NULL;
    char name[96];
    int rc;

    if ((rc = member_nonnull(&j, obj, section, key, e)) < 0)
        return rc;
    if (present)
        *present = j != NULL;
    if (!j) {
        *out = dflt;
        return 0;
    }
    if (gq_json_type_of(j) != GQ_JSON_NUMBER)
        return type_error(j, section, key, "a number", e);
    if (!isfinite(gq_json_number(j)))
        return GQ_FAIL(e, GQ_EINVAL, "config key %s must be finite (got %g)",
                       key_name(name, sizeof(name), section, key), gq_json_number(j));
    *out = gq_json_number(j);
    return 0;
}

/* A number that must be there, finite and > 0. */
static int get_positive(double *out, const gq_json *obj, const char *section, const char *key,
                        gq_err *e)
{
    char name[96];
    int present, rc;

    if ((rc = get_number(out, &present, obj, section, key, 0.0, e)) < 0)
        return rc;
    key_name(name, sizeof(name), section, key);
    if (!present)
        return GQ_FAIL(e, GQ_EINVAL, "config key %s is missing", name);
    if (!(*out > 0))
        return GQ_FAIL(e, GQ_EINVAL, "config key %s must be positive (got %g)", name, *out);
    return 0;
}

static int get_bool(int *out, const gq_json *obj, const char *section, const char *key, int dflt,
                    gq_err *e)
{
    const gq_json *j = NULL;
    int rc;

    if ((rc = member_nonnull(&j, obj, section, key, e)) < 0)
        return rc;
    if (!j) {
        *out = dflt;
        return 0;
    }
    if (gq_json_bool(j) < 0)
        return type_error(j, section, key, "true or false", e);
    *out = gq_json_bool(j);
    return 0;
}

/* A string, or NULL when absent or null. */
static int get_string(const char **out, const gq_json *obj, const char *section, const char *key,
                      gq_err *e)
{
    const gq_json *j = NULL;
    int rc;

    if ((rc = member_nonnull(&j, obj, section, key, e)) < 0)
        return rc;
    if (j && !gq_json_string(j))
        return type_error(j, section, key, "a string", e);
    *out = j ? gq_json_string(j) : NULL;
    return 0;
}

/* "A, B, C" from the table: names, or model types. */
static const char *supported_list(char *dst, size_t cap, int model_types)
{
    size_t n = 0;
    dst[0] = '\0';
    for (const struct arch_desc *a = arch_table; a->name && n < cap; a++) {
        int w = snprintf(dst + n, cap - n, "%s%s", n ? ", " : "",
                         model_types ? a->model_type : a->name);
        if (w < 0)
            break;
        n += (size_t)w;
    }
    return dst;
}

/* ---- the parts of a config ---- */

static int parse_arch(const struct arch_desc **out, const gq_json *root, gq_err *e)
{
    const gq_json *archs = NULL, *first;
    const char *name = NULL, *model_type = NULL;
    const struct arch_desc *a;
    char q[64], q2[64], list[256];
    int rc;

    if ((rc = member_nonnull(&archs, root, NULL, "architectures", e)) < 0)
        return rc;
    if ((rc = get_string(&model_type, root, NULL, "model_type", e)) < 0)
        return rc;
    if (archs) {
        if (gq_json_type_of(archs) != GQ_JSON_ARRAY)
            return type_error(archs, NULL, "architectures", "an array of strings", e);
        first = gq_json_first(archs);
        if (!first)
            return GQ_FAIL(e, GQ_EINVAL, "config key architectures is an empty array");
        if (!(name = gq_json_string(first)))
            return type_error(first, NULL, "architectures[0]", "a string", e);
        for (a = arch_table; a->name; a++)
            if (strcmp(a->name, name) == 0)
                break;
        if (!a->name)
            return GQ_FAIL(e, GQ_EINVAL, "unsupported architecture '%s' (supported: %s)",
                           gq_err_quote(q, sizeof(q), name), supported_list(list, sizeof(list), 0));
        if (model_type && strcmp(model_type, a->model_type) != 0)
            return GQ_FAIL(e, GQ_EINVAL,
                           "model_type '%s' does not match architecture %s (expected '%s')",
                           gq_err_quote(q2, sizeof(q2), model_type), a->name, a->model_type);
        *out = a;
        return 0;
    }
    if (!model_type)
        return GQ_FAIL(e, GQ_EINVAL, "config has neither architectures nor model_type");
    for (a = arch_table; a->name; a++)
        if (strcmp(a->model_type, model_type) == 0)
            break;
    if (!a->name)
        return GQ_FAIL(e, GQ_EINVAL, "unsupported model_type '%s' (supported: %s)",
                       gq_err_quote(q, sizeof(q), model_type), supported_list(list, sizeof(list), 1));
    *out = a;
    return 0;
}

/* heads, kv heads and head_dim, after the sizes are known. */
static int parse_heads(struct model_config *c, const gq_json *root, gq_err *e)
{
    const struct arch_desc *a = c->arch;
    const gq_json *j = NULL;
    int rc;

    /* num_key_value_heads: absent -> the family default; null -> num_attention_heads */
    if ((rc = member(&j, root, NULL, "num_key_value_heads", e)) < 0)
        return rc;
    if (!j || gq_json_is_null(j)) {
        c->num_kv_heads = !j && a->kv_heads_default ? a->kv_heads_default : c->num_heads;
        if (c->num_heads % c->num_kv_heads != 0)
            return GQ_FAIL(e, GQ_EINVAL,
                           "num_key_value_heads is absent and the %s default (%d) does not "
                           "divide num_attention_heads (%d)", a->model_type, c->num_kv_heads,
                           c->num_heads);
    } else {
        if ((rc = int_value(&c->num_kv_heads, j, NULL, "num_key_value_heads", 1, MAX_HEADS, e)) < 0)
            return rc;
        if (c->num_heads % c->num_kv_heads != 0)
            return GQ_FAIL(e, GQ_EINVAL,
                           "num_key_value_heads (%d) does not divide num_attention_heads (%d)",
                           c->num_kv_heads, c->num_heads);
    }

    if ((rc = member_nonnull(&j, root, NULL, "head_dim", e)) < 0)
        return rc;
    if (j) {
        if ((rc = int_value(&c->head_dim, j, NULL, "head_dim", 1, MAX_SIZE, e)) < 0)
            return rc;
    } else if (a->head_dim_default) {
        c->head_dim = a->head_dim_default;
    } else {
        if (c->hidden_size % c->num_heads != 0)
            return GQ_FAIL(e, GQ_EINVAL,
                           "hidden_size (%d) is not divisible by num_attention_heads (%d) and "
                           "head_dim is not given", c->hidden_size, c->num_heads);
        c->head_dim = c->hidden_size / c->num_heads;
    }
    if (c->head_dim % 2 != 0)
        return GQ_FAIL(e, GQ_EINVAL, "head_dim must be even for rotary embeddings (got %d)",
                       c->head_dim);
    if ((long long)c->num_heads * c->head_dim > MAX_SIZE)
        return GQ_FAIL(e, GQ_EINVAL, "num_attention_heads * head_dim is too large (%d * %d)",
                       c->num_heads, c->head_dim);
    return 0;
}

static int bias_of(enum bias_rule rule, int attention_bias, int mlp_bias)
{
    switch (rule) {
    case BIAS_ALWAYS: return 1;
    case BIAS_ATTENTION_KEY: return attention_bias;
    case BIAS_MLP_KEY: return mlp_bias;
    default: return 0;
    }
}

static int parse_biases(struct model_config *c, const gq_json *root, gq_err *e)
{
    const struct arch_desc *a = c->arch;
    int attention_bias = 0, mlp_bias = 0, rc;

    if (a->qkv_bias == BIAS_ATTENTION_KEY || a->o_bias == BIAS_ATTENTION_KEY)
        if ((rc = get_bool(&attention_bias, root, NULL, "attention_bias", 0, e)) < 0)
            return rc;
    if (a->mlp_bias == BIAS_MLP_KEY)
        if ((rc = get_bool(&mlp_bias, root, NULL, "mlp_bias", 0, e)) < 0)
            return rc;
    c->attention_bias = bias_of(a->qkv_bias, attention_bias, mlp_bias);
    c->o_bias = bias_of(a->o_bias, attention_bias, mlp_bias);
    c->mlp_bias = bias_of(a->mlp_bias, attention_bias, mlp_bias);
    return 0;
}

/*
 * Mistral: sliding_window applies to every layer unless null.  Qwen2/3:
 * only with use_sliding_window, and then only to the layers layer_types
 * marks "sliding_attention" (or, without layer_types, those at index >=
 * max_window_layers); such layers are refused, since windows that differ
 * per layer are not implemented.
 */
static int parse_window(struct model_config *c, const gq_json *root, gq_err *e)
{
    const struct arch_desc *a = c->arch;
    const gq_json *j = NULL;
    int use = 0, window = 0, rc;

    c->sliding_window = 0;
    if (a->window == WINDOW_NEVER)
        return 0;
    if (a->window == WINDOW_QWEN) {
        if ((rc = get_bool(&use, root, NULL, "use_sliding_window", 0, e)) < 0)
            return rc;
        if (!use)
            return 0;
    }
    if ((rc = member(&j, root, NULL, "sliding_window", e)) < 0)
        return rc;
    if (!j)
        window = a->sliding_window_default;
    else if (!gq_json_is_null(j) &&
             (rc = int_value(&window, j, NULL, "sliding_window", 1, INT_MAX, e)) < 0)
        return rc;
    if (a->window == WINDOW_ALL_LAYERS || window == 0) {
        c->sliding_window = window;
        return 0;
    }

    /* Qwen with use_sliding_window and a window: which layers slide? */
    if ((rc = member_nonnull(&j, root, NULL, "layer_types", e)) < 0)
        return rc;
    if (j) {
        if (gq_json_type_of(j) != GQ_JSON_ARRAY)
            return type_error(j, NULL, "layer_types", "an array of strings", e);
        for (const gq_json *t = gq_json_first(j); t; t = gq_json_next(t)) {
            if (!gq_json_string(t))
                return type_error(t, NULL, "layer_types[]", "a string", e);
            if (strcmp(gq_json_string(t), "sliding_attention") == 0)
                return GQ_FAIL(e, GQ_EINVAL, "sliding-window %s layers are not supported",
                               a->model_type);
        }
        return 0;
    }
    {
        int max_window_layers;
        if ((rc = get_int(&max_window_layers, root, NULL, "max_window_layers", 0,
                          QWEN_MAX_WINDOW_LAYERS_DEFAULT, 0, INT_MAX, e)) < 0)
            return rc;
        if (max_window_layers < c->num_layers)
            return GQ_FAIL(e, GQ_EINVAL,
                           "sliding-window %s layers are not supported (use_sliding_window is true "
                           "and max_window_layers %d < num_hidden_layers %d)",
                           a->model_type, max_window_layers, c->num_layers);
    }
    return 0;
}

static int parse_dtype(struct model_config *c, const gq_json *root, gq_err *e)
{
    static const char *const known[] = { "float16", "bfloat16", "float32" };
    const char *v5 = NULL, *v4 = NULL, *d;
    char q[64], q2[64];
    int rc;

    if ((rc = get_string(&v5, root, NULL, "dtype", e)) < 0 ||
        (rc = get_string(&v4, root, NULL, "torch_dtype", e)) < 0)
        return rc;
    if (v5 && v4 && strcmp(v5, v4) != 0)
        return GQ_FAIL(e, GQ_EINVAL, "config keys dtype '%s' and torch_dtype '%s' disagree",
                       gq_err_quote(q, sizeof(q), v5), gq_err_quote(q2, sizeof(q2), v4));
    d = v5 ? v5 : v4;
    c->dtype[0] = '\0';
    if (!d)
        return 0;
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        if (strcmp(d, known[i]) == 0) {
            snprintf(c->dtype, sizeof(c->dtype), "%s", known[i]);
            return 0;
        }
    }
    return GQ_FAIL(e, GQ_EINVAL, "unsupported %s '%s' (supported: float16, bfloat16, float32)",
                   v5 ? "dtype" : "torch_dtype", gq_err_quote(q, sizeof(q), d));
}

/* bos_token_id: an integer; eos_token_id: an integer or a list of them. */
static int parse_tokens(struct model_config *c, const gq_json *root, gq_err *e)
{
    const gq_json *j = NULL;
    int rc;

    if ((rc = member(&j, root, NULL, "bos_token_id", e)) < 0)
        return rc;
    if (!j)
        c->bos_token_id = c->arch->bos_default;
    else if (gq_json_is_null(j))
        c->bos_token_id = -1;
    else if ((rc = int_value(&c->bos_token_id, j, NULL, "bos_token_id", 0, INT_MAX, e)) < 0)
        return rc;

    if ((rc = member(&j, root, NULL, "eos_token_id", e)) < 0)
        return rc;
    if (!j) {
        c->eos_token_id = c->arch->eos_default;
    } else if (gq_json_is_null(j)) {
        c->eos_token_id = -1;
    } else if (gq_json_type_of(j) == GQ_JSON_ARRAY) {
        c->eos_token_id = -1;
        for (const gq_json *t = gq_json_first(j); t; t = gq_json_next(t)) {
            int id;
            if ((rc = int_value(&id, t, NULL, "eos_token_id[]", 0, INT_MAX, e)) < 0)
                return rc;
            if (c->eos_token_id < 0)
                c->eos_token_id = id;
        }
    } else if (gq_json_type_of(j) != GQ_JSON_NUMBER) {
        return type_error(j, NULL, "eos_token_id", "an integer or a list of integers", e);
    } else if ((rc = int_value(&c->eos_token_id, j, NULL, "eos_token_id", 0, INT_MAX, e)) < 0) {
        return rc;
    }
    return 0;
}

/* A rope dict that is null, absent or {} is no dict (transformers tests it for truth). */
static int rope_dict(const gq_json **out, const gq_json *root, const char *key, gq_err *e)
{
    int rc = member_nonnull(out, root, NULL, key, e);
    if (rc < 0)
        return rc;
    if (*out && gq_json_type_of(*out) != GQ_JSON_OBJECT)
        return type_error(*out, NULL, key, "an object or null", e);
    if (*out && gq_json_size(*out) == 0)
        *out = NULL;
    return 0;
}

static int parse_rope(struct model_config *c, const gq_json *root, gq_err *e)
{
    const gq_json *scaling = NULL, *params = NULL, *r;
    const char *sec, *type = NULL, *legacy = NULL;
    double theta_top, theta_in, prf;
    int top_present, in_present, rc;
    char q[64], q2[64];

    if ((rc = rope_dict(&scaling, root, "rope_scaling", e)) < 0 ||
        (rc = rope_dict(&params, root, "rope_parameters", e)) < 0)
        return rc;
    if (scaling && params)
        return GQ_FAIL(e, GQ_EINVAL, "config has both rope_scaling and rope_parameters");
    r = scaling ? scaling : params;
    sec = scaling ? "rope_scaling" : "rope_parameters";

    if (r) {
        for (const gq_json *m = gq_json_first(r); m; m = gq_json_next(m))
            if (gq_json_type_of(m) == GQ_JSON_OBJECT)
                return GQ_FAIL(e, GQ_EINVAL, "%s.%s is an object: rope parameters per layer "
                               "type are not supported", sec, gq_err_quote(q, sizeof(q), gq_json_key(m)));
        if ((rc = get_string(&type, r, sec, "rope_type", e)) < 0 ||
            (rc = get_string(&legacy, r, sec, "type", e)) < 0)
            return rc;
        if (type && legacy && strcmp(type, legacy) != 0)
            return GQ_FAIL(e, GQ_EINVAL, "%s.rope_type '%s' and %s.type '%s' disagree", sec,
                           gq_err_quote(q, sizeof(q), type), sec, gq_err_quote(q2, sizeof(q2), legacy));
        if (!type)
            type = legacy;
    }
    if (!type)
        type = "default";

    /* rope_theta: in the dict (v5) or at the top level (v4) */
    if ((rc = get_number(&theta_top, &top_present, root, NULL, "rope_theta", 0.0, e)) < 0)
        return rc;
    theta_in = 0.0;
    in_present = 0;
    if (r && (rc = get_number(&theta_in, &in_present, r, sec, "rope_theta", 0.0, e)) < 0)
        return rc;
    if (top_present && in_present && theta_top != theta_in)
        return GQ_FAIL(e, GQ_EINVAL,
                       "config keys rope_theta (%.10g) and %s.rope_theta (%.10g) disagree",
                       theta_top, sec, theta_in);
    c->rope_theta = in_present ? theta_in : top_present ? theta_top : c->arch->rope_theta_default;
    if (!(c->rope_theta > 0)) {
        char name[96];
        return GQ_FAIL(e, GQ_EINVAL, "config key %s must be positive (got %g)",
                       key_name(name, sizeof(name), in_present ? sec : NULL, "rope_theta"),
                       c->rope_theta);
    }

    /* only full rotary embeddings, wherever the factor is written */
    for (int where = 0; where < 2; where++) {
        const gq_json *in = where == 0 ? root : r;
        if (in && (rc = get_number(&prf, NULL, in, where == 0 ? NULL : sec,
                                   "partial_rotary_factor", 1.0, e)) < 0)
            return rc;
        if (in && prf != 1.0)
            return GQ_FAIL(e, GQ_EINVAL, "partial_rotary_factor %g is not supported (only 1)", prf);
    }

    c->rope_factor = 0.0;
    c->rope_low_freq_factor = 0.0;
    c->rope_high_freq_factor = 0.0;
    c->rope_original_max_position = 0;
    if (strcmp(type, "default") == 0) {
        c->rope_type = ROPE_DEFAULT;
    } else if (strcmp(type, "linear") == 0) {
        c->rope_type = ROPE_LINEAR;
        if ((rc = get_positive(&c->rope_factor, r, sec, "factor", e)) < 0)
            return rc;
    } else if (strcmp(type, "llama3") == 0) {
        c->rope_type = ROPE_LLAMA3;
        if ((rc = get_positive(&c->rope_factor, r, sec, "factor", e)) < 0 ||
            (rc = get_positive(&c->rope_low_freq_factor, r, sec, "low_freq_factor", e)) < 0 ||
            (rc = get_positive(&c->rope_high_freq_factor, r, sec, "high_freq_factor", e)) < 0 ||
            (rc = get_int(&c->rope_original_max_position, r, sec,
                          "original_max_position_embeddings", 1, 0, 1, INT_MAX, e)) < 0)
            return rc;
        if (!(c->rope_high_freq_factor > c->rope_low_freq_factor))
            return GQ_FAIL(e, GQ_EINVAL,
                           "%s.high_freq_factor (%g) must be greater than low_freq_factor (%g)",
                           sec, c->rope_high_freq_factor, c->rope_low_freq_factor);
    } else {
        return GQ_FAIL(e, GQ_EINVAL,
                       "unsupported rope type '%s' (supported: default, linear, llama3)",
                       gq_err_quote(q, sizeof(q), type));
    }
    return 0;
}

/* ---- the GPTQ quantization config ---- */

/*
 * Two spellings of one key (quant_method / method, checkpoint_format /
 * format): *out the one given, NULL when neither; both given and
 * different is an error.
 */
static int get_alias(const char **out, const gq_json *obj, const char *section, const char *key,
                     const char *alias, gq_err *e)
{
    const char *a = NULL, *b = NULL;
    char n1[96], n2[96], q[64], q2[64];
    int rc;

    if ((rc = get_string(&a, obj, section, key, e)) < 0 ||
        (rc = get_string(&b, obj, section, alias, e)) < 0)
        return rc;
    if (a && b && strcmp(a, b) != 0)
        return GQ_FAIL(e, GQ_EINVAL, "config keys %s '%s' and %s '%s' disagree",
                       key_name(n1, sizeof(n1), section, key), gq_err_quote(q, sizeof(q), a),
                       key_name(n2, sizeof(n2), section, alias), gq_err_quote(q2, sizeof(q2), b));
    *out = a ? a : b;
    return 0;
}

/* model_gptq_parse, with keys named under section (NULL: a file's top level). */
static int parse_gptq(struct model_gptq *out, dynamic_rules **dynamic, const gq_json *qc,
                      const char *section, gq_err *e)
{
    struct model_gptq g;
    const gq_json *j = NULL;
    const char *method = NULL, *fmt = NULL, *pack = NULL;
    dynamic_rules *rules = NULL;
    char name[96], q[64];
    int lm_head = 0, rc;

    memset(&g, 0, sizeof(g));
    if (gq_json_type_of(qc) != GQ_JSON_OBJECT) {
        if (section)
            return type_error(qc, NULL, section, "an object", e);
        return GQ_FAIL(e, GQ_EINVAL, "the quantization config must be a JSON object (got %s)",
                       gq_json_type_name(gq_json_type_of(qc)));
    }
    if ((rc = get_alias(&method, qc, section, "quant_method", "method", e)) < 0)
        return rc;
    /* AutoGPTQ's older quantize_config.json has no quant_method */
    if (method && strcmp(method, "gptq") != 0)
        return GQ_FAIL(e, GQ_EINVAL, "config key %s '%s' is not supported (only gptq)",
                       key_name(name, sizeof(name), section,
                                gq_json_get(qc, "quant_method") ? "quant_method" : "method"),
                       gq_err_quote(q, sizeof(q), method));
    if ((rc = get_int(&g.bits, qc, section, "bits", 1, 0, INT_MIN, INT_MAX, e)) < 0)
        return rc;
    if (g.bits != 2 && g.bits != 3 && g.bits != 4 && g.bits != 8)
        return GQ_FAIL(e, GQ_EINVAL, "config key %s %d is not supported (2, 3, 4 or 8)",
                       key_name(name, sizeof(name), section, "bits"), g.bits);
    if ((rc = get_int(&g.group_size, qc, section, "group_size", 1, 0, -1, INT_MAX, e)) < 0)
        return rc;
    if (g.group_size == 0)
        return GQ_FAIL(e, GQ_EINVAL, "config key %s must be -1 (one group) or positive (got 0)",
                       key_name(name, sizeof(name), section, "group_size"));
    if ((rc = get_bool(&g.desc_act, qc, section, "desc_act", 0, e)) < 0 ||
        (rc = get_bool(&g.sym, qc, section, "sym", 1, e)) < 0 ||
        (rc = get_bool(&lm_head, qc, section, "lm_head", 0, e)) < 0 ||
        (rc = get_alias(&fmt, qc, section, "checkpoint_format", "format", e)) < 0 ||
        (rc = get_string(&pack, qc, section, "pack_dtype", e)) < 0)
        return rc;
    if (!fmt || strcmp(fmt, "gptq") == 0)
        g.format = PACK_GPTQ;
    else if (strcmp(fmt, "gptq_v2") == 0)
        g.format = PACK_GPTQ_V2;
    else
        return GQ_FAIL(e, GQ_EINVAL, "config key %s '%s' is not supported (gptq or gptq_v2)",
                       key_name(name, sizeof(name), section,
                                gq_json_get(qc, "checkpoint_format") ? "checkpoint_format" : "format"),
                       gq_err_quote(q, sizeof(q), fmt));
    if (pack && strcmp(pack, "int32") != 0)
        return GQ_FAIL(e, GQ_EINVAL, "config key %s '%s' is not supported (only int32)",
                       key_name(name, sizeof(name), section, "pack_dtype"),
                       gq_err_quote(q, sizeof(q), pack));
    if (lm_head)
        return GQ_FAIL(e, GQ_EINVAL, "config key %s is true: a quantized lm_head is not supported",
                       key_name(name, sizeof(name), section, "lm_head"));
    if ((rc = member_nonnull(&j, qc, section, "dynamic", e)) < 0)
        return rc;
    if ((rc = dynamic_parse(&rules, j, e)) < 0) {
        gq_err_prefix(e, "config key %s", key_name(name, sizeof(name), section, "dynamic"));
        return rc;
    }
    *out = g;
    *dynamic = rules;
    return 0;
}

int model_gptq_parse(struct model_gptq *out, dynamic_rules **dynamic, const gq_json *qc, gq_err *e)
{
    GQ_ASSERT_ARG(e, out != NULL && dynamic != NULL);
    return parse_gptq(out, dynamic, qc, "quantization_config", e);
}

void model_gptq_module(struct model_gptq_module *out, const struct model_gptq *g,
                       const dynamic_rules *dynamic, const char *module)
{
    struct gptq_override ov;

    memset(out, 0, sizeof(*out));
    if (dynamic_match(dynamic, module, &ov) < 0)
        return;
    out->quantized = 1;
    out->bits = ov.has_bits ? ov.bits : g->bits;
    out->group_size = ov.has_group_size ? ov.group_size : g->group_size;
    out->desc_act = ov.has_desc_act ? ov.desc_act : g->desc_act;
    out->sym = ov.has_sym ? ov.sym : g->sym;
}

/* config.json's quantization_config, when there is one (not null). */
static int parse_quantization(struct model_config *c, const gq_json *root, gq_err *e)
{
    dynamic_rules *dynamic = NULL;
    const gq_json *qc = NULL;
    int rc;

    c->quantized = 0;
    memset(&c->gptq, 0, sizeof(c->gptq));
    if ((rc = member_nonnull(&qc, root, NULL, "quantization_config", e)) < 0 || !qc)
        return rc;
    if ((rc = parse_gptq(&c->gptq, &dynamic, qc, "quantization_config", e)) < 0)
        return rc;
    dynamic_free(dynamic);   /* checked; the model keeps its own copy */
    c->quantized = 1;
    snprintf(c->gptq.source, sizeof(c->gptq.source), "config.json");
    return 0;
}

/* ---- entry points ---- */

int model_config_parse(struct model_config *out, const char *json, size_t len, gq_err *e)
{
    struct model_config c;
    gq_json *root = NULL;
    const char *act = NULL;
    char q[64];
    int rc;

    GQ_ASSERT_ARG(e, out != NULL);
    GQ_ASSERT_ARG(e, json != NULL || len == 0);
    memset(&c, 0, sizeof(c));

    if ((rc = gq_json_parse(&root, json, len, e)) < 0)
        goto done;
    if (gq_json_type_of(root) != GQ_JSON_OBJECT) {
        rc = GQ_FAIL(e, GQ_EINVAL, "config must be a JSON object (got %s)",
                     gq_json_type_name(gq_json_type_of(root)));
        goto done;
    }
    if ((rc = parse_arch(&c.arch, root, e)) < 0)
        goto done;

    if ((rc = get_string(&act, root, NULL, "hidden_act", e)) < 0)
        goto done;
    /* transformers maps both names to the same SiLU */
    if (act && strcmp(act, "silu") != 0 && strcmp(act, "swish") != 0) {
        rc = GQ_FAIL(e, GQ_EINVAL, "unsupported hidden_act '%s' (supported: silu)",
                     gq_err_quote(q, sizeof(q), act));
        goto done;
    }

    if ((rc = get_int(&c.vocab_size, root, NULL, "vocab_size", 1, 0, 1, MAX_SIZE, e)) < 0 ||
        (rc = get_int(&c.hidden_size, root, NULL, "hidden_size", 1, 0, 1, MAX_SIZE, e)) < 0 ||
        (rc = get_int(&c.intermediate_size, root, NULL, "intermediate_size", 1, 0, 1, MAX_SIZE,
                      e)) < 0 ||
        (rc = get_int(&c.num_layers, root, NULL, "num_hidden_layers", 1, 0, 1, MAX_LAYERS,
                      e)) < 0 ||
        (rc = get_int(&c.num_heads, root, NULL, "num_attention_heads", 1, 0, 1, MAX_HEADS, e)) < 0)
        goto done;
    if ((rc = parse_heads(&c, root, e)) < 0)
        goto done;
    if ((rc = get_int(&c.max_position_embeddings, root, NULL, "max_position_embeddings", 0,
                      c.arch->max_position_default, 1, INT_MAX, e)) < 0)
        goto done;
    {
        int present;
        if ((rc = get_number(&c.rms_norm_eps, &present, root, NULL, "rms_norm_eps",
                             c.arch->rms_norm_eps_default, e)) < 0)
            goto done;
        if (!(c.rms_norm_eps > 0)) {
            rc = GQ_FAIL(e, GQ_EINVAL, "config key rms_norm_eps must be positive (got %g)",
                         c.rms_norm_eps);
            goto done;
        }
    }
    if ((rc = get_bool(&c.tie_word_embeddings, root, NULL, "tie_word_embeddings",
                       c.arch->tie_default, e)) < 0 ||
        (rc = parse_biases(&c, root, e)) < 0 ||
        (rc = parse_window(&c, root, e)) < 0 ||
        (rc = parse_dtype(&c, root, e)) < 0 ||
        (rc = parse_tokens(&c, root, e)) < 0 ||
        (rc = parse_rope(&c, root, e)) < 0 ||
        (rc = parse_quantization(&c, root, e)) < 0)
        goto done;

    *out = c;
    rc = 0;
done:
    gq_json_free(root);
    return rc;
}

/* strerror, lower-cased for our messages. */
static const char *errno_text(char *dst, size_t cap, int err)
{
    snprintf(dst, cap, "%s", strerror(err));
    if (dst[0] >= 'A' && dst[0] <= 'Z')
        dst[0] = (char)(dst[0] - 'A' + 'a');
    return dst;
}

/*
 * The whole of path (at most CONFIG_MAX_BYTES) into *text (gq_free) and
 * *len; what names the kind of file in the size message ("a config.json").
 */
static int slurp(char **out, size_t *len, const char *path, const char *what, gq_err *e)
{
    struct stat st;
    char *text = NULL, why[128];
    size_t have = 0;
    int fd = -1, rc = 0;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int err = errno;
        if (err == ENOENT || err == ENOTDIR)
            rc = GQ_FAIL(e, GQ_ENOTFOUND, "%s: no such file", path);
        else
            rc = GQ_FAIL(e, GQ_EIO, "%s: cannot open: %s", path, errno_text(why, sizeof(why), err));
        goto done;
    }
    if (fstat(fd, &st) < 0) {
        rc = GQ_FAIL(e, GQ_EIO, "%s: cannot stat: %s", path, errno_text(why, sizeof(why), errno));
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = GQ_FAIL(e, GQ_EINVAL, "%s: not a regular file", path);
        goto done;
    }
    if (st.st_size > (off_t)CONFIG_MAX_BYTES) {
        rc = GQ_FAIL(e, GQ_EINVAL, "%s: %lld bytes is more than %s may have (%u)", path,
                     (long long)st.st_size, what, CONFIG_MAX_BYTES);
        goto done;
    }
    /* one byte more than the file, to notice one that grew while being read */
    text = gq_malloc((size_t)st.st_size + 1);
    if (!text) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "%s: out of memory reading %lld bytes", path,
                     (long long)st.st_size);
        goto done;
    }
    while (have < (size_t)st.st_size + 1) {
        ssize_t n = read(fd, text + have, (size_t)st.st_size + 1 - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = GQ_FAIL(e, GQ_EIO, "%s: read failed: %s", path,
                         errno_text(why, sizeof(why), errno));
            goto done;
        }
        if (n == 0)
            break;
        have += (size_t)n;
    }
    if (have > (size_t)st.st_size) {
        rc = GQ_FAIL(e, GQ_EIO, "%s: file changed while being read", path);
        goto done;
    }
    *out = text;
    text = NULL;
    *len = have;
done:
    if (fd >= 0)
        close(fd);
    gq_free(text);
    return rc;
}

int model_config_load(struct model_config *out, const char *path, gq_err *e)
{
    char *text = NULL;
    size_t len = 0;
    int rc;

    GQ_ASSERT_ARG(e, out != NULL);
    GQ_ASSERT_ARG(e, path != NULL);

    if ((rc = slurp(&text, &len, path, "a config.json", e)) < 0)
        return rc;
    if ((rc = model_config_parse(out, text, len, e)) < 0)
        gq_err_prefix(e, "%s", path);
    gq_free(text);
    return rc;
}

/* dir/name parsed; GQ_ENOTFOUND (message set) when it does not exist. */
static int load_json(gq_json **root, char *path, size_t cap, const char *dir, const char *name,
                     gq_err *e)
{
    char *text = NULL;
    size_t len = 0;
    int rc;

    if ((size_t)snprintf(path, cap, "%s/%s", dir, name) >= cap)
        return GQ_FAIL(e, GQ_EINVAL, "model directory path is too long (%zu bytes)", strlen(dir));
    if ((rc = slurp(&text, &len, path, "a config file", e)) < 0)
        return rc;
    if ((rc = gq_json_parse(root, text, len, e)) < 0)
        gq_err_prefix(e, "%s", path);
    gq_free(text);
    return rc;
}

int model_gptq_load(struct model_gptq *out, dynamic_rules **dynamic, int *found, const char *dir,
                    gq_err *e)
{
    /* AutoGPTQ and GPTQModel look for these when config.json has no quantization_config */
    static const char *const files[] = {"quantize_config.json", "quant_config.json"};
    gq_json *root = NULL;
    const gq_json *qc = NULL;
    const char *source = "config.json";
    char path[4200];
    int rc;

    GQ_ASSERT_ARG(e, out != NULL && dynamic != NULL && found != NULL && dir != NULL);
    *found = 0;
    if ((rc = load_json(&root, path, sizeof(path), dir, "config.json", e)) < 0)
        goto done;
    if ((rc = member_nonnull(&qc, root, NULL, "quantization_config", e)) < 0) {
        gq_err_prefix(e, "%s", path);
        goto done;
    }
    for (size_t i = 0; !qc && i < sizeof(files) / sizeof(files[0]); i++) {
        struct stat st;
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, files[i]) >= sizeof(path) ||
            (stat(path, &st) < 0 && errno == ENOENT))
            continue;
        gq_json_free(root);
        root = NULL;
        if ((rc = load_json(&root, path, sizeof(path), dir, files[i], e)) < 0)
            goto done;
        qc = root;
        source = files[i];
    }
    if (!qc)
        goto done;   /* a float checkpoint */
    if ((rc = parse_gptq(out, dynamic, qc, qc == root ? NULL : "quantization_config", e)) < 0) {
        gq_err_prefix(e, "%s", path);
        goto done;
    }
    snprintf(out->source, sizeof(out->source), "%s", source);
    *found = 1;
done:
    gq_json_free(root);
    return rc;
}
