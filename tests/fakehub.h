/*
 * fakehub.h - a local Hugging Face Hub for tests (libmicrohttpd).
 *
 * Two HTTP servers on ephemeral 127.0.0.1 ports, run by threads inside the
 * test process: the "Hub" (API + resolve URLs) and a "CDN" on a second port
 * (so another host:port) that serves LFS blobs by signed URL, as
 * huggingface.co and its CloudFront do.  Repos, commits and branches live in
 * memory; the replies have the real API's shapes and headers
 * (../shared/HUB-NOTES.md):
 *
 *   GET  /api/models/{org}/{name}[/revision/{rev}][?blobs=true]
 *        {"id", "sha", "siblings": [{"rfilename"[, "size", "blobId",
 *         "lfs": {"sha256", "size", "pointerSize"}]}], "private", "gated",
 *         "disabled"}; {rev} URL-decoded (refs%2Fpr%2F1 -> refs/pr/1); a
 *         branch, a tag or a 40-hex sha; without /revision: "main".
 *   GET  /api/models/{org}/{name}/tree/{rev}?recursive=true
 *        [{"type": "file", "path", "size", "oid", "lfs"?}], whole list.
 *   GET|HEAD /{org}/{name}/resolve/{rev}/{path}
 *        every reply has X-Repo-Commit: the commit sha.
 *        regular file: 200, ETag: "<git blob sha1>", Content-Length, body.
 *        LFS file: 302 Location: http://127.0.0.1:CDNPORT/blobs/<sha256>?sig=..
 *        (absolute), X-Linked-Etag: "<sha256>", X-Linked-Size, ETag.
 *   GET|HEAD http://127.0.0.1:CDNPORT/blobs/<sha256>?sig=..
 *        200 with the bytes, Accept-Ranges: bytes; "Range: bytes=N-" -> 206
 *        with Content-Range: bytes N-(len-1)/len; N >= len -> 416.
 *
 * Errors as the Hub gives them: unknown repo -> 404 X-Error-Code: RepoNotFound
 * (401 without a code when the repo requires a token and none was sent), unknown
 * revision -> 404 RevisionNotFound, unknown file -> 404 EntryNotFound, bad
 * token -> 401 with X-Error-Message "Invalid credentials in Authorization
 * header", gated repo without access -> 403 GatedRepo.  Every error reply
 * carries X-Error-Message and a JSON body {"error": "..."}.
 *
 * A file is LFS when its name ends in .safetensors, .bin, .model or .gguf,
 * or it is larger than 1 MiB (like the Hub's default .gitattributes).
 * Commit shas are 40 lowercase hex, distinct for every commit (a SHA-1 over
 * the repo, a counter and the file list).
 *
 * Faults are injected per request on demand and counted down; see
 * fakehub_fault.  All functions are thread-safe (one mutex).
 */
#ifndef GQ_FAKEHUB_H
#define GQ_FAKEHUB_H

#include <stddef.h>

struct fakehub;

struct fakehub_file {
    const char *path;   /* "config.json", "sub/dir/f.txt" */
    const void *data;   /* copied */
    size_t len;
};

/* Start both servers.  Returns NULL (and prints why to stderr) on failure. */
struct fakehub *fakehub_start(void);
/* Stop both servers (in-flight stalls end at once) and free everything. */
void fakehub_stop(struct fakehub *h);

/* "http://127.0.0.1:PORT" of the Hub (what HF_ENDPOINT is set to). */
const char *fakehub_endpoint(const struct fakehub *h);
/* "http://127.0.0.1:PORT" of the CDN. */
const char *fakehub_cdn(const struct fakehub *h);

/*
 * Add a commit to repo ("org/name"; created on first use) holding exactly
 * these files, and point `branch` (created if missing; may contain '/') at
 * it.  The commit's sha goes to sha_out (41 bytes).  Returns 0, -1 on bad
 * arguments or out of memory.
 */
int fakehub_commit(struct fakehub *h, const char *repo, const char *branch,
                   const struct fakehub_file *files, size_t n, char sha_out[41]);
/* The same with every regular file under dir (recursively, relative paths). */
int fakehub_commit_dir(struct fakehub *h, const char *repo, const char *branch,
                       const char *dir, char sha_out[41]);
/* Point ref (a branch or tag, created if missing) at an existing commit. */
int fakehub_set_ref(struct fakehub *h, const char *repo, const char *ref, const char *sha);

/*
 * Access control.  fakehub_set_token: when token is non-NULL every request
 * to the Hub port must carry "Authorization: Bearer <token>" (a wrong one
 * -> 401 invalid credentials; none -> 401 for private repos, see below).
 * private: without the right token, the repo answers 401 (no error code),
 * as the Hub does.  gated: with the right token, API works but resolve
 * answers 403 GatedRepo; without, 401.
 */
void fakehub_set_token(struct fakehub *h, const char *token);
int fakehub_set_private(struct fakehub *h, const char *repo, int is_private);
int fakehub_set_gated(struct fakehub *h, const char *repo, int gated);
/* Requests for old_repo's resolve URLs answer 307 with a RELATIVE
 * Location to the same path under new_repo (a renamed repo). */
int fakehub_rename(struct fakehub *h, const char *old_repo, const char *new_repo);

enum fakehub_fault_kind {
    FAKEHUB_STATUS = 1,   /* answer `status` with X-Error-Code `error_code` (may be NULL),
                             X-Error-Message, and Retry-After `retry_after` (may be NULL) */
    FAKEHUB_DROP,         /* send the headers (full Content-Length) and half the body,
                             then close the connection */
    FAKEHUB_TRUNCATE,     /* a complete 200/206 reply whose body is one third of the
                             bytes, with a Content-Length that matches what is sent */
    FAKEHUB_CORRUPT,      /* the right length, one byte in the middle flipped */
    FAKEHUB_STALL,        /* headers and half the body, then nothing for stall_ms,
                             then close the connection */
    FAKEHUB_MOVE_REF      /* let the request through, then point branch `ref` of the
                             request's repo at commit `to_sha` (a branch moving
                             between resolve and download) */
};

struct fakehub_fault {
    enum fakehub_fault_kind kind;
    int cdn;               /* 0: match requests to the Hub port, 1: to the CDN port */
    const char *method;    /* "GET", "HEAD", or NULL for both */
    const char *match;     /* substring of the URL path (before '?'); NULL = any */
    int times;             /* matching requests that get the fault; then it is spent.
                              -1: every matching request, until fakehub_clear_faults */
    int status;            /* FAKEHUB_STATUS */
    const char *error_code, *retry_after;
    long stall_ms;         /* FAKEHUB_STALL */
    const char *ref, *to_sha;  /* FAKEHUB_MOVE_REF */
};

/* Arm a fault (strings copied).  Faults are tried in the order added; the
 * first armed match applies.  Returns 0, -1 on bad arguments. */
int fakehub_add_fault(struct fakehub *h, const struct fakehub_fault *f);
void fakehub_clear_faults(struct fakehub *h);

/*
 * Request log, for assertions: how many requests (both ports when cdn < 0,
 * else the Hub port (0) or the CDN (1)) had this method (NULL = any) and a
 * URL path containing match (NULL = any).  fakehub_reset_counts empties it.
 */
int fakehub_count(const struct fakehub *h, int cdn, const char *method, const char *match);
void fakehub_reset_counts(struct fakehub *h);
/* Number of requests to the CDN that carried an Authorization header. */
int fakehub_cdn_auth_seen(const struct fakehub *h);
/* The Range header of the most recent request to the CDN ("" when none),
 * copied into buf. */
void fakehub_last_range(const struct fakehub *h, char *buf, size_t cap);

#endif
