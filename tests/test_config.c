/*
 * test_config.c - config.json parsing: the shared Qwen2 fixture, inline
 * Llama 3.1 (v4 and v5 spellings), Mistral, Qwen3 and Llama-2 style
 * configs, the families' transformers defaults, and every error path.
 *
 * Variants of a base config are made by editing its tree with core/json.h
 * (set_key), so each error case shows the one key it changes.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "json.h"
#include "mem.h"
#include "test.h"

/* Llama 3.1 8B as transformers 4.43 wrote it. */
static const char LLAMA31_V4[] =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"attention_bias\": false,"
    " \"attention_dropout\": 0.0, \"bos_token_id\": 128000, \"eos_token_id\": [128001, 128008,"
    " 128009], \"hidden_act\": \"silu\", \"hidden_size\": 4096, \"initializer_range\": 0.02,"
    " \"intermediate_size\": 14336, \"max_position_embeddings\": 131072, \"mlp_bias\": false,"
    " \"model_type\": \"llama\", \"num_attention_heads\": 32, \"num_hidden_layers\": 32,"
    " \"num_key_value_heads\": 8, \"pretraining_tp\": 1, \"rms_norm_eps\": 1e-05,"
    " \"rope_scaling\": {\"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0,"
    " \"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"},"
    " \"rope_theta\": 500000.0, \"tie_word_embeddings\": false, \"torch_dtype\": \"bfloat16\","
    " \"transformers_version\": \"4.43.0.dev0\", \"use_cache\": true, \"vocab_size\": 128256}";

/* The same model as transformers 5 writes it. */
static const char LLAMA31_V5[] =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"attention_bias\": false,"
    " \"attention_dropout\": 0.0, \"bos_token_id\": 128000, \"dtype\": \"bfloat16\","
    " \"eos_token_id\": [128001, 128008, 128009], \"head_dim\": 128, \"hidden_act\": \"silu\","
    " \"hidden_size\": 4096, \"initializer_range\": 0.02, \"intermediate_size\": 14336,"
    " \"max_position_embeddings\": 131072, \"mlp_bias\": false, \"model_type\": \"llama\","
    " \"num_attention_heads\": 32, \"num_hidden_layers\": 32, \"num_key_value_heads\": 8,"
    " \"pad_token_id\": null, \"pretraining_tp\": 1, \"rms_norm_eps\": 1e-05,"
    " \"rope_parameters\": {\"factor\": 8.0, \"high_freq_factor\": 4.0, \"low_freq_factor\": 1.0,"
    " \"original_max_position_embeddings\": 8192, \"rope_theta\": 500000.0,"
    " \"rope_type\": \"llama3\"}, \"tie_word_embeddings\": false,"
    " \"transformers_version\": \"5.0.0\", \"use_cache\": true, \"vocab_size\": 128256}";

/* Mistral 7B v0.1. */
static const char MISTRAL[] =
    "{\"architectures\": [\"MistralForCausalLM\"], \"bos_token_id\": 1, \"eos_token_id\": 2,"
    " \"hidden_act\": \"silu\", \"hidden_size\": 4096, \"initializer_range\": 0.02,"
    " \"intermediate_size\": 14336, \"max_position_embeddings\": 32768,"
    " \"model_type\": \"mistral\", \"num_attention_heads\": 32, \"num_hidden_layers\": 32,"
    " \"num_key_value_heads\": 8, \"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0,"
    " \"sliding_window\": 4096, \"tie_word_embeddings\": false, \"torch_dtype\": \"bfloat16\","
    " \"use_cache\": true, \"vocab_size\": 32000}";

/* Qwen3 0.6B: head_dim 128 while hidden_size / heads is 64. */
static const char QWEN3[] =
    "{\"architectures\": [\"Qwen3ForCausalLM\"], \"attention_bias\": false,"
    " \"attention_dropout\": 0.0, \"bos_token_id\": 151643, \"eos_token_id\": 151645,"
    " \"head_dim\": 128, \"hidden_act\": \"silu\", \"hidden_size\": 1024,"
    " \"initializer_range\": 0.02, \"intermediate_size\": 3072, \"max_position_embeddings\": 40960,"
    " \"max_window_layers\": 28, \"model_type\": \"qwen3\", \"num_attention_heads\": 16,"
    " \"num_hidden_layers\": 28, \"num_key_value_heads\": 8, \"rms_norm_eps\": 1e-06,"
    " \"rope_scaling\": null, \"rope_theta\": 1000000, \"sliding_window\": null,"
    " \"tie_word_embeddings\": true, \"torch_dtype\": \"bfloat16\", \"use_cache\": true,"
    " \"use_sliding_window\": false, \"vocab_size\": 151936}";

/* A small Qwen2 in the v4 spelling, to vary. */
static const char QWEN2[] =
    "{\"architectures\": [\"Qwen2ForCausalLM\"], \"hidden_size\": 256, \"intermediate_size\": 768,"
    " \"num_hidden_layers\": 4, \"num_attention_heads\": 4, \"num_key_value_heads\": 2,"
    " \"vocab_size\": 8192, \"rope_theta\": 1000000.0, \"use_sliding_window\": false,"
    " \"sliding_window\": 32768, \"max_window_layers\": 28}";

/* Only what a Llama config must have: everything else is a default. */
static const char LLAMA_MINIMAL[] =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64, \"intermediate_size\": 128,"
    " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 100}";

static int parse_text(struct model_config *c, const char *text, gq_err *e)
{
    return model_config_parse(c, text, strlen(text), e);
}

/*
 * base with key set to the JSON value (NULL: key removed).  "a.b" reaches
 * into object a.  Caller frees with gq_json_free_text; NULL on failure.
 */
static char *set_key(const char *base, const char *key, const char *value)
{
    gq_json *root = NULL, *obj, *v = NULL;
    gq_err e = GQ_ERR_INIT;
    char path[128], *dot, *txt = NULL;

    snprintf(path, sizeof(path), "%s", key);
    if (gq_json_parse(&root, base, strlen(base), &e) < 0)
        return NULL;
    obj = root;
    dot = strchr(path, '.');
    if (dot) {
        *dot = '\0';
        obj = gq_json_get(root, path);
        key = dot + 1;
    } else {
        key = path;
    }
    if (!value) {
        gq_json_remove(obj, key);
    } else if (gq_json_parse(&v, value, strlen(value), &e) < 0 || gq_json_add(obj, key, v) < 0) {
        goto done;
    }
    txt = gq_json_print(root, 0);
done:
    gq_json_free(root);
    return txt;
}

/* Parse base with one key changed; the rc, and the message in *e. */
static int parse_with(struct model_config *c, const char *base, const char *key, const char *value,
                      gq_err *e)
{
    char *txt = set_key(base, key, value);
    int rc;
    if (!txt) {
        snprintf(e->msg, sizeof(e->msg), "test bug: cannot set %s", key);
        return 99;
    }
    rc = parse_text(c, txt, e);
    gq_json_free_text(txt);
    return rc;
}

/* Expect base with key := value to fail with code and a message containing want. */
#define CHECK_FAILS_WITH(base, key, value, code, want) do { struct model_config c_; \
    gq_err e_ = GQ_ERR_INIT; const char *v_ = (value); \
    int rc_ = parse_with(&c_, (base), (key), v_, &e_); \
    CHECK_MSG(rc_ == (code), "%s=%s: rc %d (%s)", (key), v_ ? v_ : "(removed)", rc_, e_.msg); \
    CHECK_MSG(strstr(e_.msg, (want)) != NULL, "%s=%s: message '%s' lacks '%s'", (key), \
              v_ ? v_ : "(removed)", e_.msg, (want)); \
    CHECK(strchr(e_.msg, '\n') == NULL); } while (0)

/* Expect text to fail with GQ_EINVAL and a message containing want. */
#define CHECK_TEXT_FAILS(text, want) do { struct model_config c_; gq_err e_ = GQ_ERR_INIT; \
    int rc_ = model_config_parse(&c_, (text), strlen(text), &e_); CHECK_EQ_INT(rc_, GQ_EINVAL); \
    CHECK_MSG(strstr(e_.msg, (want)) != NULL, "message '%s' lacks '%s'", e_.msg, (want)); \
    } while (0)

#define CHECK_STR(a, b) do { const char *a_ = (a), *b_ = (b); \
    CHECK_MSG(strcmp(a_, b_) == 0, "'%s' != '%s'", a_, b_); } while (0)

static void check_same(const struct model_config *a, const struct model_config *b)
{
    CHECK(a->arch == b->arch);
    CHECK_EQ_INT(a->hidden_size, b->hidden_size);
    CHECK_EQ_INT(a->intermediate_size, b->intermediate_size);
    CHECK_EQ_INT(a->num_layers, b->num_layers);
    CHECK_EQ_INT(a->num_heads, b->num_heads);
    CHECK_EQ_INT(a->num_kv_heads, b->num_kv_heads);
    CHECK_EQ_INT(a->head_dim, b->head_dim);
    CHECK_EQ_INT(a->vocab_size, b->vocab_size);
    CHECK_EQ_INT(a->max_position_embeddings, b->max_position_embeddings);
    CHECK_EQ_INT(a->sliding_window, b->sliding_window);
    CHECK_EQ_INT(a->tie_word_embeddings, b->tie_word_embeddings);
    CHECK_EQ_INT(a->attention_bias, b->attention_bias);
    CHECK_EQ_INT(a->o_bias, b->o_bias);
    CHECK_EQ_INT(a->mlp_bias, b->mlp_bias);
    CHECK(a->rms_norm_eps == b->rms_norm_eps);
    CHECK(a->rope_theta == b->rope_theta);
    CHECK_EQ_INT(a->rope_type, b->rope_type);
    CHECK(a->rope_factor == b->rope_factor);
    CHECK(a->rope_low_freq_factor == b->rope_low_freq_factor);
    CHECK(a->rope_high_freq_factor == b->rope_high_freq_factor);
    CHECK_EQ_INT(a->rope_original_max_position, b->rope_original_max_position);
    CHECK_STR(a->dtype, b->dtype);
    CHECK_EQ_INT(a->bos_token_id, b->bos_token_id);
    CHECK_EQ_INT(a->eos_token_id, b->eos_token_id);
}

/* ---- the shared fixture ---- */

static void test_config__fixture_qwen2(void)
{
    const char *dir = test_shared_dir();
    char path[4200];
    struct model_config c;
    gq_err e = GQ_ERR_INIT;

    if (!dir)
        SKIP("no shared fixtures (../shared or GPTQ_SHARED)");
    snprintf(path, sizeof(path), "%s/fixtures/tiny-qwen2-gcide/model/config.json", dir);
    if (access(path, R_OK) != 0)
        SKIP("%s is absent", path);
    memset(&c, 0x5a, sizeof(c));
    CHECK_OK(model_config_load(&c, path, &e), &e);
    if (e.code)
        return;
    CHECK_STR(c.arch->name, "Qwen2ForCausalLM");
    CHECK_STR(c.arch->model_type, "qwen2");
    CHECK_EQ_INT(c.hidden_size, 256);
    CHECK_EQ_INT(c.intermediate_size, 768);
    CHECK_EQ_INT(c.num_layers, 4);
    CHECK_EQ_INT(c.num_heads, 4);
    CHECK_EQ_INT(c.num_kv_heads, 2);
    CHECK_EQ_INT(c.head_dim, 64);
    CHECK_EQ_INT(c.vocab_size, 8192);
    CHECK_EQ_INT(c.max_position_embeddings, 1024);
    CHECK(c.rope_theta == 1e6);
    CHECK_EQ_INT(c.rope_type, ROPE_DEFAULT);
    CHECK(c.rope_factor == 0);
    CHECK_EQ_INT(c.tie_word_embeddings, 1);
    CHECK_EQ_INT(c.attention_bias, 1);
    CHECK_EQ_INT(c.o_bias, 0);
    CHECK_EQ_INT(c.mlp_bias, 0);
    CHECK_EQ_INT(c.arch->qk_norm, 0);
    CHECK(c.rms_norm_eps == 1e-6);
    CHECK_EQ_INT(c.sliding_window, 0);
    CHECK_STR(c.dtype, "float16");
    CHECK_EQ_INT(c.bos_token_id, 0);
    CHECK_EQ_INT(c.eos_token_id, 0);
}

/* ---- the families ---- */

static void test_config__llama31_v4_and_v5_agree(void)
{
    struct model_config a, b;
    gq_err e = GQ_ERR_INIT;

    CHECK_OK(parse_text(&a, LLAMA31_V4, &e), &e);
    CHECK_OK(parse_text(&b, LLAMA31_V5, &e), &e);
    if (e.code)
        return;
    CHECK_STR(a.arch->name, "LlamaForCausalLM");
    CHECK_EQ_INT(a.hidden_size, 4096);
    CHECK_EQ_INT(a.intermediate_size, 14336);
    CHECK_EQ_INT(a.num_layers, 32);
    CHECK_EQ_INT(a.num_heads, 32);
    CHECK_EQ_INT(a.num_kv_heads, 8);
    CHECK_EQ_INT(a.head_dim, 128);
    CHECK_EQ_INT(a.vocab_size, 128256);
    CHECK_EQ_INT(a.max_position_embeddings, 131072);
    CHECK(a.rms_norm_eps == 1e-5);
    CHECK(a.rope_theta == 500000.0);
    CHECK_EQ_INT(a.rope_type, ROPE_LLAMA3);
    CHECK(a.rope_factor == 8.0);
    CHECK(a.rope_low_freq_factor == 1.0);
    CHECK(a.rope_high_freq_factor == 4.0);
    CHECK_EQ_INT(a.rope_original_max_position, 8192);
    CHECK_STR(a.dtype, "bfloat16");
    CHECK_EQ_INT(a.bos_token_id, 128000);
    CHECK_EQ_INT(a.eos_token_id, 128001);   /* the first of the list */
    CHECK_EQ_INT(a.tie_word_embeddings, 0);
    CHECK_EQ_INT(a.attention_bias, 0);
    CHECK_EQ_INT(a.o_bias, 0);
    CHECK_EQ_INT(a.mlp_bias, 0);
    CHECK_EQ_INT(a.sliding_window, 0);
    check_same(&a, &b);
}

static void test_config__llama_defaults_and_biases(void)
{
    struct model_config c;
    gq_err e = GQ_ERR_INIT;
    char *txt;

    /* configuration_llama.py defaults */
    CHECK_OK(parse_text(&c, LLAMA_MINIMAL, &e), &e);
    CHECK_STR(c.arch->name, "LlamaForCausalLM");
    CHECK_EQ_INT(c.num_kv_heads, 4);           /* = num_attention_heads */
    CHECK_EQ_INT(c.head_dim, 16);              /* hidden_size / heads */
    CHECK_EQ_INT(c.max_position_embeddings, 2048);
    CHECK(c.rms_norm_eps == 1e-6);
    CHECK(c.rope_theta == 10000.0);
    CHECK_EQ_INT(c.rope_type, ROPE_DEFAULT);
    CHECK_EQ_INT(c.bos_token_id, 1);
    CHECK_EQ_INT(c.eos_token_id, 2);
    CHECK_EQ_INT(c.tie_word_embeddings, 0);
    CHECK_EQ_INT(c.attention_bias + c.o_bias + c.mlp_bias, 0);
    CHECK_EQ_INT(c.sliding_window, 0);
    CHECK_STR(c.dtype, "");

    /* attention_bias covers q, k, v and o; mlp_bias the MLP */
    CHECK_OK(parse_with(&c, LLAMA_MINIMAL, "attention_bias", "true", &e), &e);
    CHECK_EQ_INT(c.attention_bias, 1);
    CHECK_EQ_INT(c.o_bias, 1);
    CHECK_EQ_INT(c.mlp_bias, 0);
    CHECK_OK(parse_with(&c, LLAMA_MINIMAL, "mlp_bias", "true", &e), &e);
    CHECK_EQ_INT(c.attention_bias, 0);
    CHECK_EQ_INT(c.mlp_bias, 1);

    /* null means absent; null tokens mean none */
    CHECK_OK(parse_with(&c, LLAMA_MINIMAL, "num_key_value_heads", "null", &e), &e);
    CHECK_EQ_INT(c.num_kv_heads, 4);
    CHECK_OK(parse_with(&c, LLAMA_MINIMAL, "bos_token_id", "null", &e), &e);
    CHECK_EQ_INT(c.bos_token_id, -1);
    CHECK_OK(parse_with(&c, LLAMA_MINIMAL, "eos_token_id", "[]", &e), &e);
    CHECK_EQ_INT(c.eos_token_id, -1);
    CHECK_OK(parse_with(&c, LLAMA_MINIMAL, "rope_scaling", "null", &e), &e);
    CHECK_EQ_INT(c.rope_type, ROPE_DEFAULT);
    CHECK_OK(parse_with(&c, LLAMA_MINIMAL, "rope_scaling", "{}", &e), &e);
    CHECK_EQ_INT(c.rope_type, ROPE_DEFAULT);
    /* integral floats are integers; swish is silu */
    CHECK_OK(parse_with(&c, LLAMA_MINIMAL, "hidden_size", "64.0", &e), &e);
    CHECK_EQ_INT(c.hidden_size, 64);
    CHECK_OK(parse_with(&c, LLAMA_MINIMAL, "hidden_act", "\"swish\"", &e), &e);

    /* an explicit head_dim need not be hidden_size / heads */
    CHECK_OK(parse_with(&c, LLAMA_MINIMAL, "head_dim", "32", &e), &e);
    CHECK_EQ_INT(c.head_dim, 32);
    txt = set_key(LLAMA_MINIMAL, "num_attention_heads", "6");
    CHECK(txt != NULL);
    if (txt) {
        CHECK_OK(parse_with(&c, txt, "head_dim", "16", &e), &e);
        CHECK_EQ_INT(c.head_dim, 16);
        gq_json_free_text(txt);
    }

    /* no architectures: model_type decides */
    CHECK_OK(parse_with(&c, LLAMA31_V4, "architectures", "null", &e), &e);
    CHECK_STR(c.arch->name, "LlamaForCausalLM");
    txt = set_key(MISTRAL, "architectures", NULL);
    CHECK(txt != NULL);
    if (txt) {
        CHECK_OK(parse_with(&c, txt, "num_key_value_heads", NULL, &e), &e);
        CHECK_STR(c.arch->name, "MistralForCausalLM");
        CHECK_EQ_INT(c.num_kv_heads, 8);       /* Mistral's default */
        gq_json_free_text(txt);
    }
}

static void test_config__linear_rope_and_legacy_type_key(void)
{
    struct model_config c;
    gq_err e = GQ_ERR_INIT;

    /* Llama-2 era: "type" rather than "rope_type" */
    CHECK_OK(parse_with(&c, LLAMA_MINIMAL, "rope_scaling",
                        "{\"type\": \"linear\", \"factor\": 2.0}", &e),
             &e);
    CHECK_EQ_INT(c.rope_type, ROPE_LINEAR);
    CHECK(c.rope_factor == 2.0);
    CHECK(c.rope_low_freq_factor == 0);
    CHECK_EQ_INT(c.rope_original_max_position, 0);
    /* both keys, agreeing */
    CHECK_OK(parse_with(&c, LLAMA_MINIMAL, "rope_scaling",
                        "{\"type\": \"linear\", \"rope_type\": \"linear\", \"factor\": 4}", &e),
                        &e);
    CHECK_EQ_INT(c.rope_type, ROPE_LINEAR);
    CHECK(c.rope_factor == 4.0);
    /* v5 */
    CHECK_OK(parse_with(&c, LLAMA_MINIMAL, "rope_parameters",
                        "{\"rope_type\": \"linear\", \"factor\": 3.5, \"rope_theta\": 20000}", &e),
                        &e);
    CHECK_EQ_INT(c.rope_type, ROPE_LINEAR);
    CHECK(c.rope_factor == 3.5);
    CHECK(c.rope_theta == 20000.0);
    /* "default" by name, with a stray factor that is ignored */
    CHECK_OK(parse_with(&c, LLAMA_MINIMAL, "rope_scaling",
                        "{\"type\": \"default\", \"factor\": 9}", &e),
             &e);
    CHECK_EQ_INT(c.rope_type, ROPE_DEFAULT);
    CHECK(c.rope_factor == 0);
    /* v5 rope_parameters without a theta: the top-level one or the default */
    CHECK_OK(parse_with(&c, LLAMA_MINIMAL, "rope_parameters", "{\"rope_type\": \"default\"}", &e),
             &e);
    CHECK(c.rope_theta == 10000.0);
    /* a theta in both places that agrees */
    CHECK_OK(parse_with(&c, LLAMA31_V5, "rope_theta", "500000", &e), &e);
    CHECK(c.rope_theta == 500000.0);
    CHECK_OK(parse_with(&c, LLAMA_MINIMAL, "partial_rotary_factor", "1.0", &e), &e);
}

static void test_config__mistral_sliding_window(void)
{
    struct model_config c;
    gq_err e = GQ_ERR_INIT;

    CHECK_OK(parse_text(&c, MISTRAL, &e), &e);
    CHECK_STR(c.arch->name, "MistralForCausalLM");
    CHECK_EQ_INT(c.sliding_window, 4096);
    CHECK_EQ_INT(c.head_dim, 128);
    CHECK_EQ_INT(c.num_kv_heads, 8);
    CHECK_EQ_INT(c.max_position_embeddings, 32768);
    CHECK(c.rms_norm_eps == 1e-5);
    CHECK(c.rope_theta == 10000.0);
    CHECK_EQ_INT(c.attention_bias + c.o_bias + c.mlp_bias, 0);
    CHECK_EQ_INT(c.bos_token_id, 1);
    CHECK_EQ_INT(c.eos_token_id, 2);
    CHECK_STR(c.dtype, "bfloat16");

    /* null turns it off (Mistral 7B v0.2); absent is MistralConfig's 4096 */
    CHECK_OK(parse_with(&c, MISTRAL, "sliding_window", "null", &e), &e);
    CHECK_EQ_INT(c.sliding_window, 0);
    CHECK_OK(parse_with(&c, MISTRAL, "sliding_window", "131072", &e), &e);
    CHECK_EQ_INT(c.sliding_window, 131072);
    CHECK_OK(parse_with(&c, MISTRAL, "sliding_window", NULL, &e), &e);
    CHECK_EQ_INT(c.sliding_window, 4096);
    /* Mistral has no biases, whatever the config says */
    CHECK_OK(parse_with(&c, MISTRAL, "attention_bias", "true", &e), &e);
    CHECK_EQ_INT(c.attention_bias + c.o_bias, 0);
    /* MistralConfig's other defaults */
    CHECK_OK(parse_with(&c, MISTRAL, "num_key_value_heads", NULL, &e), &e);
    CHECK_EQ_INT(c.num_kv_heads, 8);
    CHECK_OK(parse_with(&c, MISTRAL, "max_position_embeddings", NULL, &e), &e);
    CHECK_EQ_INT(c.max_position_embeddings, 131072);
    /* Mistral with an explicit head_dim (Nemo style) */
    CHECK_OK(parse_with(&c, MISTRAL, "head_dim", "64", &e), &e);
    CHECK_EQ_INT(c.head_dim, 64);
}

static void test_config__qwen3_head_dim_and_norm(void)
{
    struct model_config c;
    gq_err e = GQ_ERR_INIT;
    char *txt;

    CHECK_OK(parse_text(&c, QWEN3, &e), &e);
    CHECK_STR(c.arch->name, "Qwen3ForCausalLM");
    CHECK_EQ_INT(c.arch->qk_norm, 1);
    CHECK_EQ_INT(c.head_dim, 128);
    CHECK(c.head_dim != c.hidden_size / c.num_heads);
    CHECK_EQ_INT(c.num_heads, 16);
    CHECK_EQ_INT(c.num_kv_heads, 8);
    CHECK_EQ_INT(c.num_layers, 28);
    CHECK_EQ_INT(c.vocab_size, 151936);
    CHECK_EQ_INT(c.max_position_embeddings, 40960);
    CHECK(c.rope_theta == 1e6);
    CHECK_EQ_INT(c.rope_type, ROPE_DEFAULT);
    CHECK_EQ_INT(c.tie_word_embeddings, 1);
    CHECK_EQ_INT(c.attention_bias + c.o_bias + c.mlp_bias, 0);
    CHECK_EQ_INT(c.sliding_window, 0);
    CHECK_EQ_INT(c.eos_token_id, 151645);

    /* Qwen3Config: head_dim defaults to 128, not hidden_size / heads */
    CHECK_OK(parse_with(&c, QWEN3, "head_dim", NULL, &e), &e);
    CHECK_EQ_INT(c.head_dim, 128);
    /* attention_bias covers q, k, v and o */
    CHECK_OK(parse_with(&c, QWEN3, "attention_bias", "true", &e), &e);
    CHECK_EQ_INT(c.attention_bias, 1);
    CHECK_EQ_INT(c.o_bias, 1);
    CHECK_EQ_INT(c.mlp_bias, 0);
    /* use_sliding_window with max_window_layers covering every layer: no layer slides */
    txt = set_key(QWEN3, "use_sliding_window", "true");
    CHECK(txt != NULL);
    if (txt) {
        CHECK_OK(parse_text(&c, txt, &e), &e);   /* sliding_window is null */
        CHECK_EQ_INT(c.sliding_window, 0);
        CHECK_OK(parse_with(&c, txt, "sliding_window", "4096", &e), &e);
        CHECK_EQ_INT(c.sliding_window, 0);
        CHECK_OK(parse_with(&c, txt, "sliding_window", NULL, &e), &e);   /* 4096 by default */
        gq_json_free_text(txt);
    }
    /* and with fewer window-free layers than layers: refused */
    txt = set_key(QWEN3, "use_sliding_window", "true");
    if (txt) {
        char *t2 = set_key(txt, "max_window_layers", "20");
        CHECK(t2 != NULL);
        if (t2) {
            CHECK_OK(parse_text(&c, t2, &e), &e);   /* sliding_window null: nothing slides */
            CHECK_FAILS_WITH(t2, "sliding_window", "4096", GQ_EINVAL,
                             "sliding-window qwen3 layers are not supported (use_sliding_window is "
                             "true and max_window_layers 20 < num_hidden_layers 28)");
            CHECK_FAILS_WITH(t2, "sliding_window", NULL, GQ_EINVAL,
                             "sliding-window qwen3 layers are not supported");
            gq_json_free_text(t2);
        }
        gq_json_free_text(txt);
    }
}

static void test_config__qwen2_biases_and_window(void)
{
    struct model_config c;
    gq_err e = GQ_ERR_INIT;
    char *txt;

    CHECK_OK(parse_text(&c, QWEN2, &e), &e);
    CHECK_EQ_INT(c.attention_bias, 1);
    CHECK_EQ_INT(c.o_bias, 0);
    CHECK_EQ_INT(c.sliding_window, 0);
    CHECK_EQ_INT(c.bos_token_id, -1);    /* Qwen2Config has none */
    CHECK_EQ_INT(c.eos_token_id, -1);
    CHECK_EQ_INT(c.max_position_embeddings, 32768);
    CHECK_EQ_INT(c.tie_word_embeddings, 0);
    /* modeling_qwen2.py: q/k/v biases always, o never; attention_bias is not read */
    CHECK_OK(parse_with(&c, QWEN2, "attention_bias", "false", &e), &e);
    CHECK_EQ_INT(c.attention_bias, 1);
    CHECK_OK(parse_with(&c, QWEN2, "attention_bias", "true", &e), &e);
    CHECK_EQ_INT(c.o_bias, 0);
    /* Qwen2Config: an absent num_key_value_heads is 32 */
    CHECK_FAILS_WITH(QWEN2, "num_key_value_heads", NULL, GQ_EINVAL,
                     "num_key_value_heads is absent and the qwen2 default (32) does not divide "
                     "num_attention_heads (4)");
    CHECK_OK(parse_with(&c, QWEN2, "num_key_value_heads", "null", &e), &e);
    CHECK_EQ_INT(c.num_kv_heads, 4);

    /* sliding windows: only with use_sliding_window, only layers >= max_window_layers */
    txt = set_key(QWEN2, "use_sliding_window", "true");
    CHECK(txt != NULL);
    if (!txt)
        return;
    CHECK_OK(parse_text(&c, txt, &e), &e);      /* max_window_layers 28 >= 4 layers */
    CHECK_EQ_INT(c.sliding_window, 0);
    CHECK_FAILS_WITH(txt, "max_window_layers", "2", GQ_EINVAL,
                     "sliding-window qwen2 layers are not supported");
    CHECK_FAILS_WITH(txt, "max_window_layers", "4.5", GQ_EINVAL,
                     "config key max_window_layers must be an integer (got 4.5)");
    CHECK_OK(parse_with(&c, txt, "sliding_window", "null", &e), &e);
    /* layer_types, when given, decides */
    CHECK_FAILS_WITH(txt, "layer_types",
                     "[\"full_attention\", \"sliding_attention\", \"full_attention\","
                     " \"full_attention\"]",
                     GQ_EINVAL, "sliding-window qwen2 layers are not supported");
    CHECK_FAILS_WITH(txt, "layer_types", "[\"full_attention\", 3]", GQ_EINVAL,
                     "config key layer_types[] must be a string (got number)");
    gq_json_free_text(txt);
    txt = set_key(QWEN2, "use_sliding_window", "true");
    if (txt) {
        char *t2 = set_key(txt, "max_window_layers", "0");
        if (t2) {
            CHECK_OK(parse_with(&c, t2, "layer_types", "[\"full_attention\", \"full_attention\","
                                " \"full_attention\", \"full_attention\"]", &e), &e);
            CHECK_EQ_INT(c.sliding_window, 0);
            gq_json_free_text(t2);
        }
        gq_json_free_text(txt);
    }
    /* without use_sliding_window, layer_types and sliding_window are not looked at */
    CHECK_OK(parse_with(&c, QWEN2, "layer_types", "[\"sliding_attention\"]", &e), &e);
    CHECK_OK(parse_with(&c, QWEN2, "sliding_window", "\"junk\"", &e), &e);
}

static void test_config__eos_list_and_dtype(void)
{
    struct model_config c;
    gq_err e = GQ_ERR_INIT;

    CHECK_OK(parse_with(&c, LLAMA_MINIMAL, "eos_token_id", "[7, 8, 9]", &e), &e);
    CHECK_EQ_INT(c.eos_token_id, 7);
    CHECK_OK(parse_with(&c, LLAMA_MINIMAL, "eos_token_id", "42", &e), &e);
    CHECK_EQ_INT(c.eos_token_id, 42);
    CHECK_OK(parse_with(&c, LLAMA_MINIMAL, "torch_dtype", "\"float32\"", &e), &e);
    CHECK_STR(c.dtype, "float32");
    CHECK_OK(parse_with(&c, LLAMA_MINIMAL, "dtype", "\"float16\"", &e), &e);
    CHECK_STR(c.dtype, "float16");
    CHECK_OK(parse_with(&c, LLAMA31_V4, "dtype", "\"bfloat16\"", &e), &e);   /* both, agreeing */
    CHECK_STR(c.dtype, "bfloat16");
}

static void test_config__arch_table(void)
{
    const struct arch_desc *t = model_arch_table();
    static const char *const names[] = { "LlamaForCausalLM", "MistralForCausalLM",
                                         "Qwen2ForCausalLM",
                                         "Qwen3ForCausalLM" };
    size_t n = 0;

    for (; t[n].name; n++) {
        if (n < 4)
            CHECK_STR(t[n].name, names[n]);
        CHECK(t[n].model_type != NULL);
        CHECK(t[n].rms_norm_eps_default > 0 && t[n].rope_theta_default > 0);
        CHECK(t[n].max_position_default > 0);
    }
    CHECK_EQ_INT(n, 4);
}

/* ---- errors ---- */

static void test_config__unsupported_architecture(void)
{
    char longname[400];

    CHECK_FAILS_WITH(LLAMA_MINIMAL, "architectures", "[\"GPT2LMHeadModel\"]", GQ_EINVAL,
                     "unsupported architecture 'GPT2LMHeadModel' (supported: LlamaForCausalLM, "
                     "MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM)");
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "architectures",
                     "[\"MixtralForCausalLM\", \"LlamaForCausalLM\"]",
                     GQ_EINVAL, "unsupported architecture 'MixtralForCausalLM'");
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "architectures", "[]", GQ_EINVAL,
                     "config key architectures is an empty array");
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "architectures", "\"LlamaForCausalLM\"", GQ_EINVAL,
                     "config key architectures must be an array of strings (got string)");
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "architectures", "[1]", GQ_EINVAL,
                     "config key architectures[0] must be a string (got number)");
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "model_type", "\"mistral\"", GQ_EINVAL,
                     "model_type 'mistral' does not match architecture LlamaForCausalLM (expected"
                     " 'llama')");
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "architectures", "[\"Bad\\nName\\u0001\"]", GQ_EINVAL,
                     "unsupported architecture 'Bad?Name?'");
    /* a long name is cut, not overflowed */
    memset(longname, 'A', sizeof(longname));
    longname[0] = '[';
    longname[1] = '"';
    memcpy(longname + sizeof(longname) - 3, "\"]", 3);
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "architectures", longname, GQ_EINVAL, "AAA...' (supported:");
    {
        char *txt = set_key(LLAMA_MINIMAL, "architectures", NULL);
        if (txt) {
            CHECK_FAILS_WITH(txt, "model_type", "\"gpt2\"", GQ_EINVAL,
                             "unsupported model_type 'gpt2' (supported: llama, mistral, qwen2,"
                             " qwen3)");
            CHECK_TEXT_FAILS(txt, "config has neither architectures nor model_type");
            gq_json_free_text(txt);
        }
    }
}

static void test_config__unsupported_rope(void)
{
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "rope_parameters",
                     "{\"rope_type\": \"yarn\", \"factor\": 4.0,"
                     " \"original_max_position_embeddings\": 32768}",
                     GQ_EINVAL,
                     "unsupported rope type 'yarn' (supported: default, linear, llama3)");
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "rope_scaling", "{\"type\": \"dynamic\", \"factor\": 2.0}",
                     GQ_EINVAL,
                     "unsupported rope type 'dynamic' (supported: default, linear, llama3)");
    CHECK_FAILS_WITH(QWEN2, "rope_scaling", "{\"rope_type\": \"longrope\", \"long_factor\": [1]}",
                     GQ_EINVAL, "unsupported rope type 'longrope'");
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "rope_scaling",
                     "{\"type\": \"linear\", \"rope_type\": \"yarn\"}",
                     GQ_EINVAL,
                     "rope_scaling.rope_type 'yarn' and rope_scaling.type 'linear' disagree");
    CHECK_FAILS_WITH(LLAMA31_V4, "rope_parameters", "{\"rope_type\": \"default\"}", GQ_EINVAL,
                     "config has both rope_scaling and rope_parameters");
    CHECK_FAILS_WITH(LLAMA31_V5, "rope_theta", "10000", GQ_EINVAL,
                     "config keys rope_theta (10000) and rope_parameters.rope_theta (500000)"
                     " disagree");
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "rope_parameters",
                     "{\"full_attention\": {\"rope_type\": \"default\"}}", GQ_EINVAL,
                     "rope parameters per layer type are not supported");
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "partial_rotary_factor", "0.5", GQ_EINVAL,
                     "partial_rotary_factor 0.5 is not supported");
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "rope_parameters",
                     "{\"rope_type\": \"default\", \"partial_rotary_factor\": 0.25}", GQ_EINVAL,
                     "partial_rotary_factor 0.25 is not supported");
    {
        char *txt = set_key(LLAMA_MINIMAL, "partial_rotary_factor", "1");
        CHECK(txt != NULL);
        if (txt) {
            CHECK_FAILS_WITH(txt, "rope_parameters", "{\"partial_rotary_factor\": 0.5}", GQ_EINVAL,
                             "partial_rotary_factor 0.5 is not supported");
            gq_json_free_text(txt);
        }
    }
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "rope_scaling", "\"linear\"", GQ_EINVAL,
                     "config key rope_scaling must be an object or null (got string)");
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "rope_scaling", "{\"rope_type\": 3}", GQ_EINVAL,
                     "config key rope_scaling.rope_type must be a string (got number)");
}

static void test_config__rope_values_checked(void)
{
    /* linear needs a positive factor */
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "rope_scaling", "{\"type\": \"linear\"}", GQ_EINVAL,
                     "config key rope_scaling.factor is missing");
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "rope_scaling", "{\"type\": \"linear\", \"factor\": 0}",
                     GQ_EINVAL,
                     "config key rope_scaling.factor must be positive (got 0)");
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "rope_scaling", "{\"type\": \"linear\", \"factor\": \"2\"}",
                     GQ_EINVAL, "config key rope_scaling.factor must be a number (got string)");
    /* llama3: every parameter, sane */
    CHECK_FAILS_WITH(LLAMA31_V4, "rope_scaling.low_freq_factor", NULL, GQ_EINVAL,
                     "config key rope_scaling.low_freq_factor is missing");
    CHECK_FAILS_WITH(LLAMA31_V4, "rope_scaling.original_max_position_embeddings", NULL, GQ_EINVAL,
                     "config key rope_scaling.original_max_position_embeddings is missing");
    CHECK_FAILS_WITH(LLAMA31_V4, "rope_scaling.original_max_position_embeddings", "0", GQ_EINVAL,
                     "config key rope_scaling.original_max_position_embeddings must be between 1"
                     " and");
    CHECK_FAILS_WITH(LLAMA31_V4, "rope_scaling.original_max_position_embeddings", "8192.5",
                     GQ_EINVAL,
                     "must be an integer (got 8192.5)");
    CHECK_FAILS_WITH(LLAMA31_V4, "rope_scaling.factor", "-8", GQ_EINVAL,
                     "config key rope_scaling.factor must be positive (got -8)");
    CHECK_FAILS_WITH(LLAMA31_V4, "rope_scaling.low_freq_factor", "0", GQ_EINVAL,
                     "config key rope_scaling.low_freq_factor must be positive (got 0)");
    CHECK_FAILS_WITH(LLAMA31_V4, "rope_scaling.high_freq_factor", "1.0", GQ_EINVAL,
                     "rope_scaling.high_freq_factor (1) must be greater than low_freq_factor (1)");
    CHECK_FAILS_WITH(LLAMA31_V5, "rope_parameters.high_freq_factor", "0.5", GQ_EINVAL,
                     "rope_parameters.high_freq_factor (0.5) must be greater than low_freq_factor"
                     " (1)");
    /* theta */
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "rope_theta", "0", GQ_EINVAL,
                     "config key rope_theta must be positive (got 0)");
    CHECK_FAILS_WITH(LLAMA31_V5, "rope_parameters.rope_theta", "-1", GQ_EINVAL,
                     "config key rope_parameters.rope_theta must be positive (got -1)");
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "rope_scaling", "{\"type\": \"default\", \"rope_theta\": 0}",
                     GQ_EINVAL,
                     "config key rope_scaling.rope_theta must be positive (got 0)");
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "rope_theta", "\"1e4\"", GQ_EINVAL,
                     "config key rope_theta must be a number (got string)");
    /* (literal text: the builder would print an infinite number as null) */
    CHECK_TEXT_FAILS("{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64,"
                     " \"intermediate_size\": 128, \"num_hidden_layers\": 2,"
                     " \"num_attention_heads\": 4,"
                     " \"vocab_size\": 100, \"rope_theta\": 1e400}",
                     "config key rope_theta must be finite");
    CHECK_TEXT_FAILS("{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64,"
                     " \"intermediate_size\": 128, \"num_hidden_layers\": 2,"
                     " \"num_attention_heads\": 4,"
                     " \"vocab_size\": 100, \"rms_norm_eps\": -1e999}",
                     "config key rms_norm_eps must be finite");
}

static void test_config__heads_must_divide(void)
{
    CHECK_FAILS_WITH(LLAMA31_V4, "num_key_value_heads", "3", GQ_EINVAL,
                     "num_key_value_heads (3) does not divide num_attention_heads (32)");
    CHECK_FAILS_WITH(LLAMA31_V4, "num_key_value_heads", "64", GQ_EINVAL,
                     "num_key_value_heads (64) does not divide num_attention_heads (32)");
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "num_attention_heads", "3", GQ_EINVAL,
                     "hidden_size (64) is not divisible by num_attention_heads (3) and head_dim"
                     " is not given");
    CHECK_FAILS_WITH(QWEN3, "num_key_value_heads", NULL, GQ_EINVAL,
                     "the qwen3 default (32) does not divide num_attention_heads (16)");
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "head_dim", "15", GQ_EINVAL,
                     "head_dim must be even for rotary embeddings (got 15)");
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "head_dim", "0", GQ_EINVAL,
                     "config key head_dim must be between 1");
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "num_key_value_heads", "0", GQ_EINVAL,
                     "config key num_key_value_heads must be between 1");
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "head_dim", "8388608", GQ_EINVAL,
                     "num_attention_heads * head_dim is too large");
}

static void test_config__missing_required_keys(void)
{
    static const char *const required[] = { "vocab_size", "hidden_size", "intermediate_size",
                                            "num_hidden_layers", "num_attention_heads" };
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
        char want[96];
        snprintf(want, sizeof(want), "config key %s is missing", required[i]);
        CHECK_FAILS_WITH(LLAMA_MINIMAL, required[i], NULL, GQ_EINVAL, want);
        snprintf(want, sizeof(want), "config key %s must be an integer (got null)", required[i]);
        CHECK_FAILS_WITH(LLAMA_MINIMAL, required[i], "null", GQ_EINVAL, want);
    }
}

static void test_config__wrong_types_and_ranges(void)
{
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "hidden_size", "\"64\"", GQ_EINVAL,
                     "config key hidden_size must be an integer (got string)");
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "hidden_size", "64.5", GQ_EINVAL,
                     "config key hidden_size must be an integer (got 64.5)");
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "hidden_size", "-64", GQ_EINVAL,
                     "config key hidden_size must be between 1 and");
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "vocab_size", "0", GQ_EINVAL,
                     "config key vocab_size must be between 1");
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "num_hidden_layers", "1e9", GQ_EINVAL,
                     "config key num_hidden_layers must be between 1 and 4096 (got 1000000000)");
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "intermediate_size", "[128]", GQ_EINVAL,
                     "config key intermediate_size must be an integer (got array)");
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "tie_word_embeddings", "\"false\"", GQ_EINVAL,
                     "config key tie_word_embeddings must be true or false (got string)");
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "attention_bias", "0", GQ_EINVAL,
                     "config key attention_bias must be true or false (got number)");
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "mlp_bias", "{}", GQ_EINVAL,
                     "config key mlp_bias must be true or false (got object)");
    CHECK_FAILS_WITH(QWEN2, "use_sliding_window", "1", GQ_EINVAL,
                     "config key use_sliding_window must be true or false (got number)");
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "rms_norm_eps", "\"1e-5\"", GQ_EINVAL,
                     "config key rms_norm_eps must be a number (got string)");
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "rms_norm_eps", "0", GQ_EINVAL,
                     "config key rms_norm_eps must be positive (got 0)");
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "rms_norm_eps", "-1e-6", GQ_EINVAL,
                     "config key rms_norm_eps must be positive (got -1e-06)");
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "max_position_embeddings", "0", GQ_EINVAL,
                     "config key max_position_embeddings must be between 1");
    CHECK_FAILS_WITH(MISTRAL, "sliding_window", "0", GQ_EINVAL,
                     "config key sliding_window must be between 1");
    CHECK_FAILS_WITH(MISTRAL, "sliding_window", "true", GQ_EINVAL,
                     "config key sliding_window must be an integer (got boolean)");
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "bos_token_id", "-1", GQ_EINVAL,
                     "config key bos_token_id must be between 0");
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "eos_token_id", "\"</s>\"", GQ_EINVAL,
                     "config key eos_token_id must be an integer or a list of integers (got"
                     " string)");
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "eos_token_id", "[1, \"x\"]", GQ_EINVAL,
                     "config key eos_token_id[] must be an integer (got string)");
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "eos_token_id", "[1, 2.5]", GQ_EINVAL,
                     "config key eos_token_id[] must be an integer (got 2.5)");
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "model_type", "7", GQ_EINVAL,
                     "config key model_type must be a string (got number)");
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "hidden_act", "[\"silu\"]", GQ_EINVAL,
                     "config key hidden_act must be a string (got array)");
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "dtype", "\"float64\"", GQ_EINVAL,
                     "unsupported dtype 'float64' (supported: float16, bfloat16, float32)");
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "torch_dtype", "\"int8\"", GQ_EINVAL,
                     "unsupported torch_dtype 'int8'");
    CHECK_FAILS_WITH(LLAMA31_V4, "dtype", "\"float16\"", GQ_EINVAL,
                     "config keys dtype 'float16' and torch_dtype 'bfloat16' disagree");
}

static void test_config__unsupported_hidden_act(void)
{
    CHECK_FAILS_WITH(LLAMA_MINIMAL, "hidden_act", "\"gelu\"", GQ_EINVAL,
                     "unsupported hidden_act 'gelu' (supported: silu)");
    CHECK_FAILS_WITH(QWEN3, "hidden_act", "\"gelu_pytorch_tanh\"", GQ_EINVAL,
                     "unsupported hidden_act 'gelu_pytorch_tanh'");
}

static void test_config__bad_json(void)
{
    CHECK_TEXT_FAILS("{\"architectures\": [\"LlamaForCausalLM\"],", "invalid JSON at byte");
    CHECK_TEXT_FAILS("", "invalid JSON: empty document");
    CHECK_TEXT_FAILS("{} {}", "unexpected data at byte 3");
    CHECK_TEXT_FAILS("[]", "config must be a JSON object (got array)");
    CHECK_TEXT_FAILS("null", "config must be a JSON object (got null)");
    /* duplicate keys: Python would take the last, gq_json_get the first */
    CHECK_TEXT_FAILS("{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64,"
                     " \"hidden_size\": 128,"
                     " \"intermediate_size\": 128, \"num_hidden_layers\": 2,"
                     " \"num_attention_heads\": 4,"
                     " \"vocab_size\": 100}", "config key hidden_size appears more than once");
    CHECK_TEXT_FAILS("{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64,"
                     " \"intermediate_size\": 128, \"num_hidden_layers\": 2,"
                     " \"num_attention_heads\": 4,"
                     " \"vocab_size\": 100, \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2,"
                     " \"factor\": 4}}", "config key rope_scaling.factor appears more than once");
    /* a duplicate of a key that is not read is harmless */
    {
        struct model_config c;
        gq_err e = GQ_ERR_INIT;
        const char *t = "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64,"
                        " \"intermediate_size\": 128, \"num_hidden_layers\": 2,"
                        " \"num_attention_heads\": 4,"
                        " \"vocab_size\": 100, \"use_cache\": true, \"use_cache\": false}";
        CHECK_OK(model_config_parse(&c, t, strlen(t), &e), &e);
    }
}

/* ---- files ---- */

/* A fresh file under /tmp with these bytes; its path in buf. */
static int write_temp(char *buf, size_t cap, const char *text)
{
    int fd;
    snprintf(buf, cap, "/tmp/test_config_XXXXXX");
    fd = mkstemp(buf);
    if (fd < 0)
        return -1;
    if (write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
        close(fd);
        unlink(buf);
        return -1;
    }
    close(fd);
    return 0;
}

static void test_config__load_files(void)
{
    struct model_config c, d;
    gq_err e = GQ_ERR_INIT;
    char path[64];

    /* a file reads like its text */
    CHECK(write_temp(path, sizeof(path), MISTRAL) == 0);
    CHECK_OK(model_config_load(&c, path, &e), &e);
    CHECK_OK(parse_text(&d, MISTRAL, &e), &e);
    check_same(&c, &d);
    unlink(path);

    /* missing: not found, naming the path */
    CHECK_EQ_INT(model_config_load(&c, "/nonexistent-dir/config.json", &e), GQ_ENOTFOUND);
    CHECK_MSG(strstr(e.msg, "/nonexistent-dir/config.json") != NULL, "%s", e.msg);
    CHECK_EQ_INT(model_config_load(&c, "/etc/passwd/config.json", &e), GQ_ENOTFOUND);

    /* a directory */
    CHECK_EQ_INT(model_config_load(&c, "/tmp", &e), GQ_EINVAL);
    CHECK_MSG(strstr(e.msg, "/tmp: not a regular file") != NULL, "%s", e.msg);

    /* an invalid file: the path prefixes the parser's message */
    CHECK(write_temp(path, sizeof(path), "{\"architectures\": [\"GPT2LMHeadModel\"]}") == 0);
    CHECK_EQ_INT(model_config_load(&c, path, &e), GQ_EINVAL);
    CHECK_MSG(strncmp(e.msg, path, strlen(path)) == 0 &&
              strstr(e.msg, ": unsupported architecture") != NULL,
              "%s", e.msg);
    unlink(path);

    /* more than 16 MiB is refused before reading (a sparse file) */
    CHECK(write_temp(path, sizeof(path), "") == 0);
    {
        int fd = open(path, O_WRONLY);
        CHECK(fd >= 0 && ftruncate(fd, (16 << 20) + 1) == 0);
        if (fd >= 0)
            close(fd);
    }
    CHECK_EQ_INT(model_config_load(&c, path, &e), GQ_EINVAL);
    CHECK_MSG(strstr(e.msg, "16777217 bytes is more than a config.json may have") != NULL, "%s",
              e.msg);
    unlink(path);
}

/* Each allocation of model_config_load failing in turn: ENOMEM, no leak. */
static void test_config__load_out_of_memory(void)
{
    struct model_config c;
    gq_err e = GQ_ERR_INIT;
    char path[64];
    size_t before = gq_mem_current();
    int rc = -1;

    CHECK(write_temp(path, sizeof(path), LLAMA31_V4) == 0);
    for (long n = 0; n < 100 && rc != 0; n++) {
        gq_alloc_fail_after(n);
        rc = model_config_load(&c, path, &e);
        gq_alloc_fail_after(-1);
        CHECK_MSG(rc == 0 || rc == GQ_ENOMEM, "after %ld allocations: %d %s", n, rc, e.msg);
        CHECK_EQ_INT(gq_mem_current(), before);
    }
    CHECK_EQ_INT(rc, 0);
    unlink(path);
}

int main(void)
{
    t_prog = "test_config";
    RUN(test_config__fixture_qwen2);
    RUN(test_config__llama31_v4_and_v5_agree);
    RUN(test_config__llama_defaults_and_biases);
    RUN(test_config__linear_rope_and_legacy_type_key);
    RUN(test_config__mistral_sliding_window);
    RUN(test_config__qwen3_head_dim_and_norm);
    RUN(test_config__qwen2_biases_and_window);
    RUN(test_config__eos_list_and_dtype);
    RUN(test_config__arch_table);
    RUN(test_config__unsupported_architecture);
    RUN(test_config__unsupported_rope);
    RUN(test_config__rope_values_checked);
    RUN(test_config__heads_must_divide);
    RUN(test_config__missing_required_keys);
    RUN(test_config__wrong_types_and_ranges);
    RUN(test_config__unsupported_hidden_act);
    RUN(test_config__bad_json);
    RUN(test_config__load_files);
    RUN(test_config__load_out_of_memory);
    return test_report();
}
