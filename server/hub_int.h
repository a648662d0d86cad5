/*
 * hub_int.h - the Hub client's parts, internal to server/hub*.c (the public
 * API is hub.h).
 *
 * hub.c owns the session, the model-info reply and the choice of files;
 * hub_http.c does every request (one curl easy handle per session, the
 * retry loops, verified downloads into blobs/<etag>.incomplete);
 * hub_cache.c knows the huggingface_hub cache layout on disk (refs/,
 * snapshots/, blobs/, .no_exist/, .locks/).  Every function here fails
 * with a gq_err and, where a job error would want it, sets the session's
 * reason (hub_snapshot.reason).
 */
#ifndef GQ_HUB_INT_H
#define GQ_HUB_INT_H

#include <curl/curl.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"
#include "hub.h"

/* ---- the session (hub.c) ---- */

struct hfile {
    char *path;        /* rfilename */
    uint64_t size;
    char etag[129];    /* normalised: SHA-256 (LFS), git blob SHA-1, or the server's */
    int lfs;
    int meta;          /* size and etag known */
};

struct session {
    const struct hub_config *cfg;
    struct hub_snapshot *out;
    CURL *curl;
    const char *repo;
    char repo_dir[4200];     /* <cache>/models--org--name */
    char lock_dir[4200];     /* <cache>/.locks/models--org--name */
    char sha[41];
    struct hfile *files;     /* the repo listing */
    size_t nfiles;
    uint64_t done;           /* progress: bytes of finished files */
    uint64_t total;
    const char *cur;         /* file being fetched */
    long long last_ns;
    uint64_t rng;
};

/* s is exactly n lowercase hex digits. */
int hub_is_hex(const char *s, size_t n);
/* CLOCK_MONOTONIC in nanoseconds. */
long long hub_now_ns(void);
/* Record why the call fails (the first reason set wins); hub_fail_reason
 * returns rc, for `return hub_fail_reason(s, "io", rc);`. */
void hub_set_reason(struct session *s, const char *r);
int hub_fail_reason(struct session *s, const char *reason, int rc);
/* The caller's cancel callback said stop. */
int hub_is_cancelled(const struct session *s);
/* Progress: done + in_file bytes of the current file; throttled unless force. */
void hub_report(struct session *s, uint64_t in_file, int force);

/* ---- requests (hub_http.c) ---- */

/* GET a JSON reply (redirects followed, retried) into *body, which the
 * caller frees; what names the request in errors. */
int hub_api_get(struct session *s, const char *url, const char *what, gq_buf *body, gq_err *e);
/* u = {endpoint}/{repo}/resolve/{sha}/{path}, always by the pinned sha. */
int hub_resolve_url(struct session *s, gq_buf *u, const char *path, gq_err *e);
/* Size and etag of a file the listing did not describe (HEAD); sets f->meta. */
int hub_head_meta(struct session *s, struct hfile *f, gq_err *e);
/* Download f from url into blobs/<etag> (the caller holds the blob's lock):
 * resume, retry, verify, rename. */
int hub_fetch_blob(struct session *s, const struct hfile *f, const char *url, gq_err *e);

/* ---- the cache on disk (hub_cache.c) ---- */

/* s->repo_dir and s->lock_dir for s->repo under s->cfg->cache_dir. */
int hub_cache_dirs(struct session *s, gq_err *e);
/* mkdir -p path; of the directory that holds path. */
int hub_mkdir_p(const char *path, gq_err *e);
int hub_mkdir_parent(const char *path, gq_err *e);
/* s->sha from refs/<revision> (offline). */
int hub_read_ref(struct session *s, const char *revision, gq_err *e);
/* refs/<revision> = s->sha, atomically. */
int hub_write_ref(struct session *s, const char *revision, gq_err *e);
/* .no_exist/<sha>/<name>: an optional file known absent at the sha. */
int hub_mark_absent(struct session *s, const char *name, gq_err *e);
/* <cache>/CACHEDIR.TAG unless present; best effort. */
void hub_write_cachedir_tag(const struct hub_config *cfg);
/* blob is a regular file of exactly size bytes. */
int hub_blob_present(const char *blob, uint64_t size);
/* flock .locks/.../<etag>.lock into *fd_out (close it to release);
 * cancellable while waiting. */
int hub_lock_blob(struct session *s, const struct hfile *f, int *fd_out, gq_err *e);
/* snapshots/<sha>/<path> -> blobs/<etag>, a symlink or a copy. */
int hub_link_snapshot(struct session *s, const struct hfile *f, gq_err *e);

#endif
