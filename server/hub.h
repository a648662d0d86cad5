/*
 * hub.h - the Hugging Face Hub client (libcurl): pin a revision, choose a
 * model's files, download them verified into a huggingface_hub cache.
 *
 * hub_snapshot() is the whole job: resolve repo + revision to a commit sha
 * with one model-info call (which also lists the files with their sizes and
 * hashes), choose the files gptqd needs (config.json, the safetensors
 * weights or every shard of model.safetensors.index.json, the tokenizer and
 * generation files when present), and bring each into the cache by the
 * commit sha, never by the branch name: a branch that moves during a job
 * cannot mix revisions.  The result is the directory snapshots/<sha>/, which
 * the engine opens like any local model directory.
 *
 * Cache: the huggingface_hub layout (../shared/HUB-NOTES.md), shared with
 * Python tools in both directions:
 *   <cache>/models--org--name/blobs/<etag>           the verified bytes
 *   <cache>/models--org--name/snapshots/<sha>/<path> relative symlink to it
 *   <cache>/models--org--name/refs/<revision>        sha a branch/tag resolved to
 *   <cache>/models--org--name/.no_exist/<sha>/<path> optional file known absent
 *   <cache>/.locks/models--org--name/<etag>.lock     flock(2) per blob
 * A blob is written as blobs/<etag>.incomplete (resumed with Range when it
 * exists), checked against the listed size and hash (SHA-256 for LFS files,
 * the git blob SHA-1 for the others), fsync'd and renamed; the per-blob lock
 * makes concurrent downloads of one blob (threads or processes) fetch it
 * once.  A blob already in the cache with the right size is reused.
 *
 * Network: redirects are followed (relative ones and to the CDN on another
 * host, where the Authorization header is never sent); connection errors,
 * stalls, 408, 429 (Retry-After honoured) and 5xx are retried with
 * exponential backoff and jitter, a partial download resuming where it
 * stopped; 401/403/404 are not retried and become errors named by the Hub's
 * X-Error-Code.
 *
 * Thread safety: a hub_config is read-only during a call; concurrent calls
 * (each with its own curl handle) are safe.  The token is never logged,
 * stored in a result or echoed in an error.
 */
#ifndef GQ_HUB_H
#define GQ_HUB_H

#include <stdint.h>

#include "err.h"

/* Progress: bytes of the chosen files present so far and their total (the
 * cached ones count as present), and the file being fetched (NULL at the end). */
typedef void (*hub_progress_fn)(void *payload, uint64_t done, uint64_t total, const char *file);
/* Nonzero: stop as soon as possible (the call fails with GQ_ECANCELED). */
typedef int (*hub_cancel_fn)(void *payload);

struct hub_config {
    char endpoint[512];          /* no trailing '/' */
    char cache_dir[4096];
    char token[1024];            /* "" = anonymous */
    int offline;                 /* serve from the cache only */
    int symlinks;                /* 0: snapshot files are copies (HF_HUB_DISABLE_SYMLINKS) */
    long connect_timeout_ms;     /* TCP/TLS connect */
    long metadata_timeout_ms;    /* a whole API call */
    long stall_timeout_ms;       /* a download with no byte for this long is retried */
    int max_retries;             /* retries after the first attempt */
    long backoff_ms;             /* first retry delay; doubles per retry ... */
    long backoff_max_ms;         /* ... up to this; each delay jittered to [d/2, d] */
    long max_retry_after_ms;     /* a Retry-After longer than this is an error */
    hub_progress_fn progress;
    hub_cancel_fn cancelled;
    void *payload;               /* for progress and cancelled */
};

/*
 * Defaults, then the environment: HF_ENDPOINT (https://huggingface.co),
 * HF_HUB_CACHE (else $HF_HOME/hub, HF_HOME defaulting to
 * ~/.cache/huggingface), HF_TOKEN (else the file $HF_TOKEN_PATH, default
 * $HF_HOME/token), HF_HUB_OFFLINE, HF_HUB_DISABLE_SYMLINKS,
 * HF_HUB_ETAG_TIMEOUT and HF_HUB_DOWNLOAD_TIMEOUT (seconds; 10 each), and
 * GPTQD_HUB_CONNECT_TIMEOUT (seconds, 10).  5 retries from 1 s up to 30 s,
 * Retry-After up to 300 s.  Fails (GQ_EINVAL) on a malformed variable, naming it.
 */
int hub_config_init(struct hub_config *cfg, gq_err *e);

/* Limits of the values hub_snapshot accepts. */
int hub_valid_repo_id(const char *repo, gq_err *e);
int hub_valid_revision(const char *rev, gq_err *e);

struct hub_snapshot {
    char sha[41];               /* the pinned commit */
    char dir[4300];             /* <cache>/models--org--name/snapshots/<sha> */
    int files;                  /* files chosen */
    int files_cached;           /* of which already in the cache */
    uint64_t bytes_total;       /* their sizes */
    uint64_t bytes_downloaded;  /* fetched by this call */
    /*
     * On failure, why, for job errors: "repo_not_found",
     * "revision_not_found", "entry_not_found", "gated_repo", "unauthorized",
     * "forbidden", "rate_limited", "hub_unavailable", "network",
     * "checksum_mismatch", "not_in_cache" (offline), "pickle_only",
     * "not_a_model", "bad_reply", "cancelled", "io", "invalid".
     */
    char reason[32];
};

/*
 * Pin repo ("org/name" or "name") at revision (a branch, a tag or a 40-hex
 * commit; NULL = "main") and make its model files present in the cache.
 * On success *out describes the snapshot; on failure out->reason says why
 * and e the details.  Offline: the sha comes from refs/<revision> (or is the
 * revision itself) and every needed file must already be in snapshots/<sha>.
 */
int hub_snapshot(const struct hub_config *cfg, const char *repo, const char *revision,
                 struct hub_snapshot *out, gq_err *e);

#endif
