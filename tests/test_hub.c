/*
 * test_hub.c - the Hub client (server/hub.c) against the fake Hub
 * (tests/fakehub.c): pinning, file choice, the cache layout, every fault
 * the issue names, offline mode, cache reuse, concurrency, and the CLI
 * (`gptq download`, `gptq quantize org/name`).
 *
 * Every case ends in a verified file set or a clear error; the checks look
 * at the bytes in the snapshot, the cache's files and the fake Hub's
 * request log.
 */
#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fakehub.h"
#include "hub.h"
#include "json.h"
#include "test.h"

static struct fakehub *g_hub;
static char g_root[256];
static int g_ncache;
static const char *g_bin;

#define WEIGHTS_LEN (3u << 20)
static unsigned char *g_weights, *g_weights2;
static const char g_config[] = "{\"model_type\": \"llama\", \"hidden_size\": 8}\n";
static const char g_tokenizer[] = "{\"version\": \"1.0\", \"model\": {\"type\": \"BPE\"}}\n";
static const char g_readme[] = "# a model card that gptqd never downloads\n";

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void sha256_hex(char out[65], const void *data, size_t len)
{
    unsigned char d[32];
    unsigned int n = 0;
    EVP_Digest(data, len, d, &n, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* A fresh cache and a configuration aimed at the fake Hub, with fast retries. */
static void new_cfg(struct hub_config *cfg)
{
    gq_err e = GQ_ERR_INIT;
    hub_config_init(cfg, &e);
    snprintf(cfg->endpoint, sizeof(cfg->endpoint), "%s", fakehub_endpoint(g_hub));
    snprintf(cfg->cache_dir, sizeof(cfg->cache_dir), "%s/cache%d", g_root, ++g_ncache);
    cfg->token[0] = '\0';
    cfg->offline = 0;
    cfg->symlinks = 1;
    cfg->connect_timeout_ms = 2000;
    cfg->metadata_timeout_ms = 5000;
    cfg->stall_timeout_ms = 1000;
    cfg->max_retries = 3;
    cfg->backoff_ms = 5;
    cfg->backoff_max_ms = 40;
    cfg->max_retry_after_ms = 5000;
}

/* config.json, model.safetensors (LFS), tokenizer.json, README.md, plus extra. */
static void commit_basic(const char *repo, const char *branch, const unsigned char *weights, char sha[41])
{
    struct fakehub_file f[] = {
        {"config.json", g_config, strlen(g_config)},
        {"model.safetensors", weights, WEIGHTS_LEN},
        {"tokenizer.json", g_tokenizer, strlen(g_tokenizer)},
        {"README.md", g_readme, strlen(g_readme)},
    };
    sha[0] = '\0';
    if (fakehub_commit(g_hub, repo, branch, f, 4, sha) < 0)
        fprintf(stderr, "  fakehub_commit %s failed\n", repo);
}

/* Does dir/name hold exactly these bytes? */
static int same_bytes(const char *dir, const char *name, const void *data, size_t len)
{
    char path[4600];
    size_t n = 0;
    char *got;
    int ok;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    got = test_read_file(path, &n);
    ok = got && n == len && memcmp(got, data, len) == 0;
    free(got);
    return ok;
}

static int exists(const char *fmt_dir, const char *name)
{
    char path[4600];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", fmt_dir, name);
    return lstat(path, &st) == 0;
}

static int count_files(const char *dir)
{
    char cmd[4600], out[64];
    snprintf(cmd, sizeof(cmd), "find '%s' -type f 2>/dev/null | wc -l", dir);
    if (test_run_cmd(out, sizeof(out), cmd) != 0)
        return -1;
    return atoi(out);
}

static void repo_dir(char *buf, size_t cap, const struct hub_config *cfg, const char *repo)
{
    size_t n = (size_t)snprintf(buf, cap, "%s/models--", cfg->cache_dir);
    for (const char *p = repo; *p && n + 3 < cap; p++) {
        if (*p == '/')
            buf[n++] = '-', buf[n++] = '-';
        else
            buf[n++] = *p;
    }
    buf[n] = '\0';
}

struct progress_log {
    uint64_t last_done, total;
    int calls, monotonic, ended;
};

static void on_progress(void *payload, uint64_t done, uint64_t total, const char *file)
{
    struct progress_log *p = payload;
    if (done < p->last_done || done > total)
        p->monotonic = 0;
    p->last_done = done;
    p->total = total;
    p->calls++;
    if (!file)
        p->ended = 1;
}

/* ---- the normal path ---- */

static void test_hub__pins_chooses_verifies_and_lays_out_the_cache(void)
{
    struct hub_config cfg;
    struct hub_snapshot s;
    struct progress_log pl = {0, 0, 0, 1, 0};
    gq_err e = GQ_ERR_INIT;
    char sha[41], dir[4400], path[4800], link[4800], want[200], blob[65], ref[64] = "";
    ssize_t n;

    commit_basic("org/basic", "main", g_weights, sha);
    fakehub_set_token(g_hub, "hf_secret_token");
    fakehub_reset_counts(g_hub);
    new_cfg(&cfg);
    snprintf(cfg.token, sizeof(cfg.token), "hf_secret_token");
    cfg.progress = on_progress;
    cfg.payload = &pl;
    CHECK_OK(hub_snapshot(&cfg, "org/basic", "main", &s, &e), &e);
    fakehub_set_token(g_hub, NULL);
    CHECK(!strcmp(s.sha, sha));
    CHECK_EQ_INT(s.files, 3);
    CHECK_EQ_INT(s.files_cached, 0);
    CHECK_EQ_INT(s.bytes_total, WEIGHTS_LEN + strlen(g_config) + strlen(g_tokenizer));
    CHECK_EQ_INT(s.bytes_downloaded, s.bytes_total);
    CHECK(same_bytes(s.dir, "config.json", g_config, strlen(g_config)));
    CHECK(same_bytes(s.dir, "tokenizer.json", g_tokenizer, strlen(g_tokenizer)));
    CHECK(same_bytes(s.dir, "model.safetensors", g_weights, WEIGHTS_LEN));
    CHECK(!exists(s.dir, "README.md"));
    CHECK_EQ_INT(fakehub_count(g_hub, -1, NULL, "README.md"), 0);
    /* the token reached the Hub (it is required) and never the CDN */
    CHECK(fakehub_count(g_hub, 1, "GET", "/blobs/") >= 1);
    CHECK_EQ_INT(fakehub_cdn_auth_seen(g_hub), 0);
    /* huggingface_hub's layout: relative links into blobs/ named by etag */
    repo_dir(dir, sizeof(dir), &cfg, "org/basic");
    snprintf(path, sizeof(path), "%s/snapshots/%s", dir, sha);
    CHECK(!strcmp(s.dir, path));
    sha256_hex(blob, g_weights, WEIGHTS_LEN);
    snprintf(path, sizeof(path), "%s/snapshots/%s/model.safetensors", dir, sha);
    n = readlink(path, link, sizeof(link) - 1);
    CHECK(n > 0);
    link[n > 0 ? n : 0] = '\0';
    snprintf(want, sizeof(want), "../../blobs/%s", blob);
    CHECK_MSG(!strcmp(link, want), "link %s", link);
    snprintf(path, sizeof(path), "%s/refs/main", dir);
    {
        char *r = test_read_file(path, NULL);
        if (r)
            snprintf(ref, sizeof(ref), "%s", r);
        free(r);
    }
    CHECK(!strcmp(ref, sha));
    snprintf(path, sizeof(path), "%s/.no_exist/%s", dir, sha);
    CHECK(exists(path, "generation_config.json"));
    CHECK(!exists(path, "tokenizer.json"));
    snprintf(path, sizeof(path), "%s/.locks/models--org--basic", cfg.cache_dir);
    CHECK(exists(path, "") && exists(cfg.cache_dir, "CACHEDIR.TAG"));
    snprintf(path, sizeof(path), "%s/blobs", dir);
    CHECK_EQ_INT(count_files(path), 3);   /* no .incomplete left */
    CHECK(pl.calls >= 2 && pl.monotonic && pl.ended && pl.last_done == pl.total && pl.total == s.bytes_total);

    /* the second time: nothing downloaded, nothing asked of the CDN */
    fakehub_reset_counts(g_hub);
    CHECK_OK(hub_snapshot(&cfg, "org/basic", NULL, &s, &e), &e);
    CHECK(!strcmp(s.sha, sha));
    CHECK_EQ_INT(s.files_cached, 3);
    CHECK_EQ_INT(s.bytes_downloaded, 0);
    CHECK_EQ_INT(fakehub_count(g_hub, -1, NULL, "/resolve/"), 0);
    CHECK_EQ_INT(fakehub_count(g_hub, 1, NULL, NULL), 0);

    /* offline: the same snapshot from refs/main, no request at all */
    fakehub_reset_counts(g_hub);
    cfg.offline = 1;
    CHECK_OK(hub_snapshot(&cfg, "org/basic", "main", &s, &e), &e);
    CHECK(!strcmp(s.sha, sha));
    CHECK_EQ_INT(s.files, 3);
    CHECK_OK(hub_snapshot(&cfg, "org/basic", sha, &s, &e), &e);
    CHECK_EQ_INT(fakehub_count(g_hub, -1, NULL, NULL), 0);
    CHECK_EQ_INT(hub_snapshot(&cfg, "org/basic", "v2", &s, &e), GQ_ENOTFOUND);
    CHECK(!strcmp(s.reason, "not_in_cache") && strstr(e.msg, "v2") != NULL);
    CHECK_EQ_INT(hub_snapshot(&cfg, "org/other", "main", &s, &e), GQ_ENOTFOUND);
    CHECK(!strcmp(s.reason, "not_in_cache"));
    /* a blob gone from the cache: offline names the missing file */
    snprintf(path, sizeof(path), "%s/blobs/%s", dir, blob);
    CHECK(unlink(path) == 0);
    CHECK_EQ_INT(hub_snapshot(&cfg, "org/basic", "main", &s, &e), GQ_ENOTFOUND);
    CHECK(!strcmp(s.reason, "not_in_cache") && strstr(e.msg, "model.safetensors") != NULL);
    /* online again: only that blob comes back */
    cfg.offline = 0;
    fakehub_reset_counts(g_hub);
    CHECK_OK(hub_snapshot(&cfg, "org/basic", "main", &s, &e), &e);
    CHECK_EQ_INT(s.files_cached, 2);
    CHECK_EQ_INT(s.bytes_downloaded, WEIGHTS_LEN);
    CHECK(same_bytes(s.dir, "model.safetensors", g_weights, WEIGHTS_LEN));
}

static void test_hub__shards_tags_shas_and_slashed_branches(void)
{
    static const char index_fmt[] =
        "{\"metadata\": {\"total_size\": 3}, \"weight_map\": {\"a.weight\": \"model-1.safetensors\", "
        "\"b.weight\": \"weights/model-2.safetensors\", \"c.weight\": \"model-1.safetensors\"}}";
    const unsigned char *w1 = g_weights, *w2 = g_weights + 1000;
    struct fakehub_file f[] = {
        {"config.json", g_config, strlen(g_config)},
        {"model.safetensors.index.json", index_fmt, strlen(index_fmt)},
        {"model-1.safetensors", w1, 5000},
        {"weights/model-2.safetensors", w2, 7000},
        {"generation_config.json", "{}", 2},
        {"tokenizer.model", w1 + 77, 300},
        {"model-unused.safetensors", w1, 100},
    };
    struct hub_config cfg;
    struct hub_snapshot s;
    gq_err e = GQ_ERR_INIT;
    char sha[41], sha_pr[41], dir[4400], path[4800], link[300];
    ssize_t n;

    CHECK_EQ_INT(fakehub_commit(g_hub, "org/sharded", "main", f, 7, sha), 0);
    CHECK_EQ_INT(fakehub_commit(g_hub, "org/sharded", "refs/pr/1", f, 6, sha_pr), 0);
    CHECK_EQ_INT(fakehub_set_ref(g_hub, "org/sharded", "v1.0", sha), 0);
    new_cfg(&cfg);
    fakehub_reset_counts(g_hub);
    CHECK_OK(hub_snapshot(&cfg, "org/sharded", "main", &s, &e), &e);
    CHECK_EQ_INT(s.files, 6);   /* config, index, generation, tokenizer.model, 2 shards */
    CHECK(same_bytes(s.dir, "model-1.safetensors", w1, 5000));
    CHECK(same_bytes(s.dir, "weights/model-2.safetensors", w2, 7000));
    CHECK(same_bytes(s.dir, "tokenizer.model", w1 + 77, 300));
    CHECK(same_bytes(s.dir, "generation_config.json", "{}", 2));
    CHECK(!exists(s.dir, "model-unused.safetensors"));
    CHECK_EQ_INT(fakehub_count(g_hub, -1, NULL, "model-unused"), 0);
    snprintf(path, sizeof(path), "%s/weights/model-2.safetensors", s.dir);
    n = readlink(path, link, sizeof(link) - 1);
    link[n > 0 ? n : 0] = '\0';
    CHECK_MSG(!strncmp(link, "../../../blobs/", 15), "link %s", link);

    /* a tag, a commit sha, a branch with slashes (URL-encoded on the wire) */
    CHECK_OK(hub_snapshot(&cfg, "org/sharded", "v1.0", &s, &e), &e);
    CHECK(!strcmp(s.sha, sha) && s.files_cached == s.files);
    CHECK_OK(hub_snapshot(&cfg, "org/sharded", sha, &s, &e), &e);
    CHECK(!strcmp(s.sha, sha));
    CHECK_OK(hub_snapshot(&cfg, "org/sharded", "refs/pr/1", &s, &e), &e);
    CHECK(!strcmp(s.sha, sha_pr) && strcmp(sha, sha_pr));
    repo_dir(dir, sizeof(dir), &cfg, "org/sharded");
    snprintf(path, sizeof(path), "%s/refs/refs/pr", dir);
    CHECK(exists(path, "1") && exists(dir, "refs/v1.0"));
    snprintf(path, sizeof(path), "%s/refs/%s", dir, sha);
    CHECK(!exists(path, ""));   /* a sha is not a ref */
    /* the same blobs serve both commits: nothing downloaded twice */
    CHECK_EQ_INT(s.bytes_downloaded, 0);
}

static void test_hub__copies_without_symlinks(void)
{
    struct hub_config cfg;
    struct hub_snapshot s;
    gq_err e = GQ_ERR_INIT;
    char sha[41], path[4800];
    struct stat st;

    commit_basic("org/nolinks", "main", g_weights, sha);
    new_cfg(&cfg);
    cfg.symlinks = 0;
    CHECK_OK(hub_snapshot(&cfg, "org/nolinks", "main", &s, &e), &e);
    snprintf(path, sizeof(path), "%s/model.safetensors", s.dir);
    CHECK(lstat(path, &st) == 0 && S_ISREG(st.st_mode));
    CHECK(same_bytes(s.dir, "model.safetensors", g_weights, WEIGHTS_LEN));
}

/* ---- what the repo holds ---- */

static void test_hub__refuses_pickles_and_repos_without_a_model(void)
{
    struct fakehub_file pickle[] = {
        {"config.json", g_config, strlen(g_config)},
        {"pytorch_model.bin", g_weights, 4096},
    };
    struct fakehub_file nothing[] = {{"config.json", g_config, strlen(g_config)}};
    struct fakehub_file noconfig[] = {{"model.safetensors", g_weights, 4096}};
    static const char bad_index[] = "{\"weight_map\": {\"a\": \"missing.safetensors\"}}";
    static const char evil_index[] = "{\"weight_map\": {\"a\": \"../../../../etc/passwd\"}}";
    struct fakehub_file missing_shard[] = {
        {"config.json", g_config, strlen(g_config)},
        {"model.safetensors.index.json", bad_index, strlen(bad_index)},
    };
    struct fakehub_file evil[] = {
        {"config.json", g_config, strlen(g_config)},
        {"model.safetensors.index.json", evil_index, strlen(evil_index)},
    };
    struct hub_config cfg;
    struct hub_snapshot s;
    gq_err e = GQ_ERR_INIT;
    char sha[41];

    new_cfg(&cfg);
    fakehub_commit(g_hub, "org/pickle", "main", pickle, 2, sha);
    fakehub_reset_counts(g_hub);
    CHECK_EQ_INT(hub_snapshot(&cfg, "org/pickle", "main", &s, &e), GQ_EINVAL);
    CHECK(!strcmp(s.reason, "pickle_only") && strstr(e.msg, "pickle") != NULL);
    CHECK_EQ_INT(fakehub_count(g_hub, -1, NULL, "pytorch_model"), 0);
    fakehub_commit(g_hub, "org/nothing", "main", nothing, 1, sha);
    CHECK_EQ_INT(hub_snapshot(&cfg, "org/nothing", "main", &s, &e), GQ_EINVAL);
    CHECK(!strcmp(s.reason, "not_a_model") && strstr(e.msg, "model.safetensors") != NULL);
    fakehub_commit(g_hub, "org/noconfig", "main", noconfig, 1, sha);
    CHECK_EQ_INT(hub_snapshot(&cfg, "org/noconfig", "main", &s, &e), GQ_EINVAL);
    CHECK(!strcmp(s.reason, "not_a_model") && strstr(e.msg, "config.json") != NULL);
    fakehub_commit(g_hub, "org/missing-shard", "main", missing_shard, 2, sha);
    CHECK_EQ_INT(hub_snapshot(&cfg, "org/missing-shard", "main", &s, &e), GQ_EINVAL);
    CHECK(!strcmp(s.reason, "not_a_model") && strstr(e.msg, "missing.safetensors") != NULL);
    fakehub_commit(g_hub, "org/evil", "main", evil, 2, sha);
    CHECK(hub_snapshot(&cfg, "org/evil", "main", &s, &e) < 0);
    CHECK(!strcmp(s.reason, "not_a_model"));
    CHECK(access("/etc/passwd", F_OK) == 0);   /* (untouched, of course) */
}

static void test_hub__hub_errors_are_named_and_not_retried(void)
{
    struct hub_config cfg;
    struct hub_snapshot s;
    gq_err e = GQ_ERR_INIT;
    char sha[41];

    commit_basic("org/private", "main", g_weights, sha);
    commit_basic("org/gated", "main", g_weights, sha);
    fakehub_set_private(g_hub, "org/private", 1);
    fakehub_set_gated(g_hub, "org/gated", 1);
    new_cfg(&cfg);
    fakehub_reset_counts(g_hub);
    CHECK_EQ_INT(hub_snapshot(&cfg, "org/absent", "main", &s, &e), GQ_ENOTFOUND);
    CHECK(!strcmp(s.reason, "repo_not_found") && strstr(e.msg, "org/absent") != NULL);
    CHECK_EQ_INT(fakehub_count(g_hub, 0, NULL, "org/absent"), 1);
    CHECK_EQ_INT(hub_snapshot(&cfg, "org/private", "main", &s, &e), GQ_ENOTFOUND);
    CHECK(!strcmp(s.reason, "repo_not_found"));
    CHECK_EQ_INT(hub_snapshot(&cfg, "org/basic", "no-such-branch", &s, &e), GQ_ENOTFOUND);
    CHECK(!strcmp(s.reason, "revision_not_found") && strstr(e.msg, "no-such-branch") != NULL);
    /* a token the Hub rejects */
    fakehub_set_token(g_hub, "hf_right");
    snprintf(cfg.token, sizeof(cfg.token), "hf_wrong");
    fakehub_reset_counts(g_hub);
    CHECK_EQ_INT(hub_snapshot(&cfg, "org/basic", "main", &s, &e), GQ_EINVAL);
    CHECK_MSG(!strcmp(s.reason, "unauthorized"), "reason %s: %s", s.reason, e.msg);
    CHECK(strstr(e.msg, "hf_wrong") == NULL);   /* never echoed */
    CHECK_EQ_INT(fakehub_count(g_hub, 0, NULL, NULL), 1);
    /* gated: the listing works, the files are refused */
    snprintf(cfg.token, sizeof(cfg.token), "hf_right");
    fakehub_reset_counts(g_hub);
    CHECK_EQ_INT(hub_snapshot(&cfg, "org/gated", "main", &s, &e), GQ_EINVAL);
    CHECK_MSG(!strcmp(s.reason, "gated_repo"), "reason %s: %s", s.reason, e.msg);
    CHECK_EQ_INT(fakehub_count(g_hub, 0, NULL, "/resolve/"), 1);
    fakehub_set_token(g_hub, NULL);
    /* a file 404 (EntryNotFound) and a 403 are final too */
    cfg.token[0] = '\0';
    {
        struct fakehub_fault f = {0};
        f.kind = FAKEHUB_STATUS, f.match = "tokenizer.json", f.times = -1, f.status = 404;
        f.error_code = "EntryNotFound";
        fakehub_add_fault(g_hub, &f);
        fakehub_reset_counts(g_hub);
        new_cfg(&cfg);
        CHECK_EQ_INT(hub_snapshot(&cfg, "org/basic", "main", &s, &e), GQ_ENOTFOUND);
        CHECK(!strcmp(s.reason, "entry_not_found") && strstr(e.msg, "tokenizer.json") != NULL);
        CHECK_EQ_INT(fakehub_count(g_hub, 0, NULL, "tokenizer.json"), 1);
        fakehub_clear_faults(g_hub);
        f.status = 403, f.error_code = NULL;
        fakehub_add_fault(g_hub, &f);
        CHECK_EQ_INT(hub_snapshot(&cfg, "org/basic", "main", &s, &e), GQ_EINVAL);
        CHECK(!strcmp(s.reason, "forbidden"));
        fakehub_clear_faults(g_hub);
    }
}

static void test_hub__bad_arguments_and_replies(void)
{
    static const char *bad_repo[] = {"", "/x", "a//b", "a/b/c", "../x", "a--b/c", "a/b.", "a b", "a/.."};
    static const char *bad_rev[] = {"", "../main", "a/../b", "/abs", "x\ny", "a b"};
    struct hub_config cfg;
    struct hub_snapshot s;
    gq_err e = GQ_ERR_INIT;
    struct fakehub_fault f = {0};

    new_cfg(&cfg);
    for (size_t i = 0; i < sizeof(bad_repo) / sizeof(*bad_repo); i++) {
        CHECK_MSG(hub_snapshot(&cfg, bad_repo[i], "main", &s, &e) == GQ_EINVAL, "repo '%s'", bad_repo[i]);
        CHECK(!strcmp(s.reason, "invalid"));
    }
    for (size_t i = 0; i < sizeof(bad_rev) / sizeof(*bad_rev); i++)
        CHECK_MSG(hub_snapshot(&cfg, "org/basic", bad_rev[i], &s, &e) == GQ_EINVAL, "rev '%s'", bad_rev[i]);
    CHECK_EQ_INT(hub_valid_repo_id("gpt2", &e), 0);
    CHECK_EQ_INT(hub_valid_repo_id("Org-1/Model_v2.5", &e), 0);
    /* a 200 that is not a model-info reply */
    f.kind = FAKEHUB_STATUS, f.match = "/api/models/", f.times = 1, f.status = 200;
    fakehub_add_fault(g_hub, &f);
    CHECK_EQ_INT(hub_snapshot(&cfg, "org/basic", "main", &s, &e), GQ_EINVAL);
    CHECK_MSG(!strcmp(s.reason, "bad_reply") && strstr(e.msg, "sha") != NULL, "%s: %s", s.reason, e.msg);
    fakehub_clear_faults(g_hub);
}

/* ---- faults in transit ---- */

static void arm(enum fakehub_fault_kind kind, int cdn, const char *match, int times, int status)
{
    struct fakehub_fault f = {0};
    f.kind = kind, f.cdn = cdn, f.match = match, f.times = times, f.status = status;
    f.method = "GET";
    f.stall_ms = 8000;
    fakehub_add_fault(g_hub, &f);
}

/* Download org/basic into a fresh cache; the weights must come out whole. */
static int fetch_fresh(struct hub_config *cfg, struct hub_snapshot *s, gq_err *e)
{
    int rc;
    new_cfg(cfg);
    fakehub_reset_counts(g_hub);
    rc = hub_snapshot(cfg, "org/basic", "main", s, e);
    fakehub_clear_faults(g_hub);
    return rc;
}

static void test_hub__retries_resumes_and_verifies(void)
{
    struct hub_config cfg;
    struct hub_snapshot s;
    gq_err e = GQ_ERR_INIT;
    char range[64], dir[4400], path[4800];
    double t0;

    /* 503 twice on the API, then fine */
    arm(FAKEHUB_STATUS, 0, "/api/models/org/basic", 2, 503);
    CHECK_OK(fetch_fresh(&cfg, &s, &e), &e);
    CHECK_EQ_INT(fakehub_count(g_hub, 0, NULL, "/api/models/org/basic"), 3);
    /* 500 forever: gives up after 1 + max_retries attempts */
    arm(FAKEHUB_STATUS, 0, "config.json", -1, 500);
    CHECK_EQ_INT(fetch_fresh(&cfg, &s, &e), GQ_ENET);
    CHECK_MSG(!strcmp(s.reason, "hub_unavailable"), "%s: %s", s.reason, e.msg);
    CHECK_EQ_INT(fakehub_count(g_hub, 0, NULL, "config.json"), 4);
    /* the connection dropped mid-body on the CDN: resumed with Range */
    arm(FAKEHUB_DROP, 1, "/blobs/", 1, 0);
    CHECK_OK(fetch_fresh(&cfg, &s, &e), &e);
    CHECK(same_bytes(s.dir, "model.safetensors", g_weights, WEIGHTS_LEN));
    fakehub_last_range(g_hub, range, sizeof(range));
    CHECK_MSG(!strncmp(range, "bytes=", 6) && atol(range + 6) > 0, "range '%s'", range);
    CHECK_EQ_INT(fakehub_count(g_hub, 1, "GET", "/blobs/"), 2);
    /* a well-formed but short body: resumed as well */
    arm(FAKEHUB_TRUNCATE, 1, "/blobs/", 1, 0);
    CHECK_OK(fetch_fresh(&cfg, &s, &e), &e);
    CHECK(same_bytes(s.dir, "model.safetensors", g_weights, WEIGHTS_LEN));
    fakehub_last_range(g_hub, range, sizeof(range));
    CHECK_MSG(atol(range + 6) > 0 && atol(range + 6) < (long)WEIGHTS_LEN, "range '%s'", range);
    /* a stalled transfer: cut by the stall timeout (1 s), then resumed */
    t0 = now_s();
    arm(FAKEHUB_STALL, 1, "/blobs/", 1, 0);
    CHECK_OK(fetch_fresh(&cfg, &s, &e), &e);
    CHECK(same_bytes(s.dir, "model.safetensors", g_weights, WEIGHTS_LEN));
    CHECK_MSG(now_s() - t0 < 6.0, "took %.1f s", now_s() - t0);
    /* a corrupt body once: the SHA-256 check catches it, the retry starts over */
    arm(FAKEHUB_CORRUPT, 1, "/blobs/", 1, 0);
    CHECK_OK(fetch_fresh(&cfg, &s, &e), &e);
    CHECK(same_bytes(s.dir, "model.safetensors", g_weights, WEIGHTS_LEN));
    /* corrupt every time: a clear error and nothing corrupt in the cache */
    arm(FAKEHUB_CORRUPT, 1, "/blobs/", -1, 0);
    CHECK_EQ_INT(fetch_fresh(&cfg, &s, &e), GQ_EIO);
    CHECK_MSG(!strcmp(s.reason, "checksum_mismatch") && strstr(e.msg, "SHA-256") != NULL, "%s: %s", s.reason, e.msg);
    repo_dir(dir, sizeof(dir), &cfg, "org/basic");
    snprintf(path, sizeof(path), "%s/blobs", dir);
    CHECK_EQ_INT(count_files(path), 2);   /* config and tokenizer only, no .incomplete */
    CHECK(!exists(s.dir, "model.safetensors"));
    CHECK(!exists(dir, "refs/main"));
    /* a regular (non-LFS) file is checked too: its git blob SHA-1 */
    arm(FAKEHUB_CORRUPT, 0, "config.json", -1, 0);
    CHECK_EQ_INT(fetch_fresh(&cfg, &s, &e), GQ_EIO);
    CHECK_MSG(!strcmp(s.reason, "checksum_mismatch") && strstr(e.msg, "SHA-1") != NULL, "%s: %s", s.reason, e.msg);
}

static void test_hub__rate_limits_honour_retry_after(void)
{
    struct hub_config cfg;
    struct hub_snapshot s;
    gq_err e = GQ_ERR_INIT;
    struct fakehub_fault f = {0};
    double t0 = now_s(), dt;

    f.kind = FAKEHUB_STATUS, f.match = "config.json", f.times = 1, f.status = 429, f.retry_after = "1";
    fakehub_add_fault(g_hub, &f);
    CHECK_OK(fetch_fresh(&cfg, &s, &e), &e);
    dt = now_s() - t0;
    CHECK_MSG(dt >= 0.95, "waited only %.2f s", dt);
    CHECK_EQ_INT(fakehub_count(g_hub, 0, NULL, "config.json"), 2);
    /* a pause longer than allowed: a clear error at once */
    f.retry_after = "3600";
    fakehub_add_fault(g_hub, &f);
    t0 = now_s();
    CHECK_EQ_INT(fetch_fresh(&cfg, &s, &e), GQ_ENET);
    CHECK(!strcmp(s.reason, "rate_limited") && strstr(e.msg, "3600") != NULL);
    CHECK(now_s() - t0 < 2.0);
    /* 429 every time: rate_limited after the retries */
    f.retry_after = NULL, f.times = -1;
    fakehub_add_fault(g_hub, &f);
    CHECK_EQ_INT(fetch_fresh(&cfg, &s, &e), GQ_ENET);
    CHECK(!strcmp(s.reason, "rate_limited"));
}

static void test_hub__a_branch_moving_mid_job_changes_nothing(void)
{
    struct hub_config cfg;
    struct hub_snapshot s;
    gq_err e = GQ_ERR_INIT;
    struct fakehub_fault f = {0};
    char a[41], b[41], ref[64] = "", path[4800], dir[4400];

    commit_basic("org/moving", "main", g_weights, a);
    commit_basic("org/moving", "next", g_weights2, b);
    /* main moves to b right after the model-info reply pinned a */
    f.kind = FAKEHUB_MOVE_REF, f.match = "/api/models/org/moving", f.times = 1, f.ref = "main", f.to_sha = b;
    fakehub_add_fault(g_hub, &f);
    new_cfg(&cfg);
    CHECK_OK(hub_snapshot(&cfg, "org/moving", "main", &s, &e), &e);
    fakehub_clear_faults(g_hub);
    CHECK(!strcmp(s.sha, a));
    CHECK(same_bytes(s.dir, "model.safetensors", g_weights, WEIGHTS_LEN));
    repo_dir(dir, sizeof(dir), &cfg, "org/moving");
    snprintf(path, sizeof(path), "%s/refs/main", dir);
    {
        char *r = test_read_file(path, NULL);
        if (r)
            snprintf(ref, sizeof(ref), "%s", r);
        free(r);
    }
    CHECK(!strcmp(ref, a));
    /* the next job sees the new main */
    CHECK_OK(hub_snapshot(&cfg, "org/moving", "main", &s, &e), &e);
    CHECK(!strcmp(s.sha, b));
    CHECK(same_bytes(s.dir, "model.safetensors", g_weights2, WEIGHTS_LEN));
}

static void test_hub__resumes_an_incomplete_blob_from_an_earlier_run(void)
{
    struct hub_config cfg;
    struct hub_snapshot s;
    gq_err e = GQ_ERR_INIT;
    char dir[4400], path[4800], blob[65], range[64];
    FILE *f;

    new_cfg(&cfg);
    repo_dir(dir, sizeof(dir), &cfg, "org/basic");
    sha256_hex(blob, g_weights, WEIGHTS_LEN);
    snprintf(path, sizeof(path), "%s/blobs", dir);
    CHECK(mkdir(cfg.cache_dir, 0755) == 0 && mkdir(dir, 0755) == 0 && mkdir(path, 0755) == 0);
    snprintf(path, sizeof(path), "%s/blobs/%s.incomplete", dir, blob);
    f = fopen(path, "wb");
    CHECK(f != NULL);
    if (f) {
        fwrite(g_weights, 1, WEIGHTS_LEN / 2, f);
        fclose(f);
    }
    fakehub_reset_counts(g_hub);
    CHECK_OK(hub_snapshot(&cfg, "org/basic", "main", &s, &e), &e);
    CHECK(same_bytes(s.dir, "model.safetensors", g_weights, WEIGHTS_LEN));
    fakehub_last_range(g_hub, range, sizeof(range));
    CHECK_MSG(atol(range + 6) == WEIGHTS_LEN / 2, "range '%s'", range);
    CHECK_EQ_INT(fakehub_count(g_hub, 1, "GET", "/blobs/"), 1);

    /* a stale .incomplete with wrong bytes: caught by the hash, started over */
    new_cfg(&cfg);
    repo_dir(dir, sizeof(dir), &cfg, "org/basic");
    snprintf(path, sizeof(path), "%s/blobs", dir);
    CHECK(mkdir(cfg.cache_dir, 0755) == 0 && mkdir(dir, 0755) == 0 && mkdir(path, 0755) == 0);
    snprintf(path, sizeof(path), "%s/blobs/%s.incomplete", dir, blob);
    if ((f = fopen(path, "wb"))) {
        fwrite(g_weights2, 1, 1000, f);
        fclose(f);
    }
    CHECK_OK(hub_snapshot(&cfg, "org/basic", "main", &s, &e), &e);
    CHECK(same_bytes(s.dir, "model.safetensors", g_weights, WEIGHTS_LEN));
}

static int cancel_after(void *payload)
{
    double *deadline = payload;
    return now_s() > *deadline;
}

static void test_hub__cancellation_and_dead_endpoints(void)
{
    struct hub_config cfg;
    struct hub_snapshot s;
    gq_err e = GQ_ERR_INIT;
    double deadline, t0;

    /* cancelled while the CDN stalls (the stall timeout alone would take 30 s) */
    arm(FAKEHUB_STALL, 1, "/blobs/", 1, 0);
    new_cfg(&cfg);
    cfg.stall_timeout_ms = 30000;
    t0 = now_s();
    deadline = t0 + 0.5;
    cfg.cancelled = cancel_after;
    cfg.payload = &deadline;
    CHECK_EQ_INT(hub_snapshot(&cfg, "org/basic", "main", &s, &e), GQ_ECANCELED);
    fakehub_clear_faults(g_hub);
    CHECK(!strcmp(s.reason, "cancelled"));
    CHECK_MSG(now_s() - t0 < 3.0, "cancel took %.1f s", now_s() - t0);
    /* nothing listens: a network error after the retries */
    new_cfg(&cfg);
    snprintf(cfg.endpoint, sizeof(cfg.endpoint), "http://127.0.0.1:1");
    CHECK_EQ_INT(hub_snapshot(&cfg, "org/basic", "main", &s, &e), GQ_ENET);
    CHECK_MSG(!strcmp(s.reason, "network") && strstr(e.msg, "4 attempts") != NULL, "%s: %s", s.reason, e.msg);
}

struct racer {
    struct hub_config cfg;
    struct hub_snapshot s;
    gq_err e;
    int rc;
};

static void *race(void *arg)
{
    struct racer *r = arg;
    r->rc = hub_snapshot(&r->cfg, "org/race", "main", &r->s, &r->e);
    return NULL;
}

static void test_hub__concurrent_downloads_share_one_blob(void)
{
    enum { N = 4 };
    struct racer r[N];
    pthread_t t[N];
    char sha[41];

    commit_basic("org/race", "main", g_weights, sha);
    new_cfg(&r[0].cfg);
    fakehub_reset_counts(g_hub);
    for (int i = 0; i < N; i++) {
        r[i].cfg = r[0].cfg;
        r[i].e = (gq_err)GQ_ERR_INIT;
        pthread_create(&t[i], NULL, race, &r[i]);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        CHECK_OK(r[i].rc, &r[i].e);
        CHECK(!strcmp(r[i].s.sha, sha));
        CHECK(same_bytes(r[i].s.dir, "model.safetensors", g_weights, WEIGHTS_LEN));
    }
    CHECK_EQ_INT(fakehub_count(g_hub, 1, "GET", "/blobs/"), 1);
    CHECK_EQ_INT(fakehub_count(g_hub, 0, "GET", "config.json"), 1);
}

static void test_hub__config_from_the_environment(void)
{
    struct hub_config cfg;
    gq_err e = GQ_ERR_INIT;
    char path[512];
    FILE *f;

    setenv("HF_ENDPOINT", "http://mirror.example:8080/", 1);
    setenv("HF_HOME", g_root, 1);
    unsetenv("HF_HUB_CACHE");
    unsetenv("HF_TOKEN");
    unsetenv("HF_TOKEN_PATH");
    snprintf(path, sizeof(path), "%s/token", g_root);
    if ((f = fopen(path, "w"))) {
        fputs("hf_from_file  \n", f);
        fclose(f);
    }
    setenv("HF_HUB_OFFLINE", "1", 1);
    setenv("HF_HUB_DOWNLOAD_TIMEOUT", "2.5", 1);
    CHECK_OK(hub_config_init(&cfg, &e), &e);
    CHECK(!strcmp(cfg.endpoint, "http://mirror.example:8080"));
    snprintf(path, sizeof(path), "%s/hub", g_root);
    CHECK(!strcmp(cfg.cache_dir, path));
    CHECK(!strcmp(cfg.token, "hf_from_file"));
    CHECK(cfg.offline == 1 && cfg.stall_timeout_ms == 2500 && cfg.metadata_timeout_ms == 10000);
    setenv("HF_TOKEN", "hf_env", 1);
    setenv("HF_HUB_CACHE", "/somewhere/else", 1);
    CHECK_OK(hub_config_init(&cfg, &e), &e);
    CHECK(!strcmp(cfg.token, "hf_env") && !strcmp(cfg.cache_dir, "/somewhere/else"));
    setenv("HF_HUB_ETAG_TIMEOUT", "soon", 1);
    CHECK_EQ_INT(hub_config_init(&cfg, &e), GQ_EINVAL);
    CHECK(strstr(e.msg, "HF_HUB_ETAG_TIMEOUT") != NULL);
    setenv("HF_ENDPOINT", "ftp://x", 1);
    unsetenv("HF_HUB_ETAG_TIMEOUT");
    CHECK_EQ_INT(hub_config_init(&cfg, &e), GQ_EINVAL);
    unsetenv("HF_ENDPOINT");
    unsetenv("HF_HOME");
    unsetenv("HF_TOKEN");
    unsetenv("HF_HUB_CACHE");
    unsetenv("HF_HUB_OFFLINE");
    unsetenv("HF_HUB_DOWNLOAD_TIMEOUT");
}

/* ---- the CLI ---- */

static void test_hub__cli_download_and_quantize_a_repo_id(void)
{
    char cmd[8192], out[16384], env[1200], sha[41], path[600];
    char *text;
    gq_json *j = NULL;
    gq_err e = GQ_ERR_INIT;
    FILE *f;

    if (!g_bin)
        SKIP("GPTQ_BIN is not set (run through make test)");
    if (fakehub_commit_dir(g_hub, "gen/tiny-llama", "main", "tests/fixtures/tiny-llama", sha) < 0)
        SKIP("tests/fixtures/tiny-llama is missing (run from the repository root)");
    snprintf(env, sizeof(env), "env -u HF_TOKEN HF_ENDPOINT=%s HF_HUB_CACHE=%s/cli-cache HF_HOME=%s",
             fakehub_endpoint(g_hub), g_root, g_root);
    snprintf(cmd, sizeof(cmd), "%s %s download gen/tiny-llama --json", env, g_bin);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 0);
    CHECK_OK(gq_json_parse(&j, out, strlen(out), &e), &e);
    CHECK(!strcmp(gq_json_string(gq_json_get(j, "sha")) ? gq_json_string(gq_json_get(j, "sha")) : "", sha));
    CHECK(gq_json_number(gq_json_get(j, "files")) == 5);   /* config, index, 3 shards */
    gq_json_free(j);
    j = NULL;
    snprintf(cmd, sizeof(cmd), "%s %s download gen/absent 2>&1", env, g_bin);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 1);
    CHECK(strstr(out, "repo_not_found") != NULL && strstr(out, "gen/absent") != NULL);
    snprintf(cmd, sizeof(cmd), "%s %s download 'bad repo' 2>&1", env, g_bin);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 2);

    /* quantize straight from the repo id, offline from the cache just filled */
    snprintf(path, sizeof(path), "%s/ids.i32", g_root);
    if ((f = fopen(path, "wb"))) {
        unsigned long long st = 5;
        for (int i = 0; i < 4096; i++) {
            int32_t v = (int32_t)(test_rand_u64(&st) % 256);
            fwrite(&v, 4, 1, f);
        }
        fclose(f);
    }
    snprintf(cmd, sizeof(cmd),
             "%s HF_HUB_OFFLINE=1 %s quantize gen/tiny-llama --revision main --out %s/q-hub --calib-ids %s "
             "--calib-samples 4 --calib-seqlen 32 --group-size 32 --json 2>&1 >/dev/null",
             env, g_bin, g_root, path);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 0);
    snprintf(path, sizeof(path), "%s/q-hub/quant_config.json", g_root);
    text = test_read_file(path, NULL);
    CHECK(text != NULL);
    if (text) {
        CHECK(strstr(text, "\"gen/tiny-llama\"") != NULL);
        CHECK_MSG(strstr(text, sha) != NULL, "%s", text);
        free(text);
    }
    /* a revision that does not exist, and --revision with a local directory */
    snprintf(cmd, sizeof(cmd), "%s %s quantize gen/tiny-llama --revision nope --out %s/q-nope --calib-ids %s/ids.i32 2>&1",
             env, g_bin, g_root, g_root);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 1);
    CHECK(strstr(out, "revision_not_found") != NULL);
    snprintf(cmd, sizeof(cmd), "%s quantize tests/fixtures/tiny-llama --revision main --out %s/q-x --calib-ids %s/ids.i32 2>&1",
             g_bin, g_root, g_root);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 1);
    CHECK(strstr(out, "--revision") != NULL);
}

static unsigned char *random_bytes(size_t n, unsigned long long seed)
{
    unsigned char *b = malloc(n);
    for (size_t i = 0; b && i < n; i += 8) {
        unsigned long long v = test_rand_u64(&seed);
        memcpy(b + i, &v, n - i < 8 ? n - i : 8);
    }
    return b;
}

int main(void)
{
    char cmd[400], out[64];
    int rc;

    t_prog = "test_hub";
    g_bin = getenv("GPTQ_BIN");
    snprintf(g_root, sizeof(g_root), "/tmp/gptq-hub-XXXXXX");
    if (!mkdtemp(g_root)) {
        perror("mkdtemp");
        return 1;
    }
    g_weights = random_bytes(WEIGHTS_LEN, 1);
    g_weights2 = random_bytes(WEIGHTS_LEN, 2);
    if (!(g_hub = fakehub_start())) {
        fprintf(stderr, "cannot start the fake Hub\n");
        return 1;
    }
    {
        char sha[41];
        commit_basic("org/basic", "main", g_weights, sha);
    }
    RUN(test_hub__config_from_the_environment);
    RUN(test_hub__pins_chooses_verifies_and_lays_out_the_cache);
    RUN(test_hub__shards_tags_shas_and_slashed_branches);
    RUN(test_hub__copies_without_symlinks);
    RUN(test_hub__refuses_pickles_and_repos_without_a_model);
    RUN(test_hub__hub_errors_are_named_and_not_retried);
    RUN(test_hub__bad_arguments_and_replies);
    RUN(test_hub__retries_resumes_and_verifies);
    RUN(test_hub__rate_limits_honour_retry_after);
    RUN(test_hub__a_branch_moving_mid_job_changes_nothing);
    RUN(test_hub__resumes_an_incomplete_blob_from_an_earlier_run);
    RUN(test_hub__cancellation_and_dead_endpoints);
    RUN(test_hub__concurrent_downloads_share_one_blob);
    RUN(test_hub__cli_download_and_quantize_a_repo_id);
    fakehub_stop(g_hub);
    free(g_weights);
    free(g_weights2);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_root);
    rc = test_run_cmd(out, sizeof(out), cmd);
    (void)rc;
    return test_report();
}
