/*
 * hub_cache.c - the huggingface_hub cache on disk (see hub.h for the
 * layout, hub_int.h for the calls): the repo's directories, refs/,
 * snapshots/ links or copies, blobs/ presence, .no_exist/ markers, the
 * per-blob flock in .locks/, and CACHEDIR.TAG.
 */
#include "hub_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- the repo's directories ---- */

int hub_cache_dirs(struct session *s, gq_err *e)
{
    const struct hub_config *cfg = s->cfg;
    size_t n = (size_t)snprintf(s->repo_dir, sizeof(s->repo_dir), "%s/models--", cfg->cache_dir);
    for (const char *p = s->repo; *p && n + 3 < sizeof(s->repo_dir); p++) {
        if (*p == '/')
            s->repo_dir[n++] = '-', s->repo_dir[n++] = '-';
        else
            s->repo_dir[n++] = *p;
    }
    s->repo_dir[n] = '\0';
    if (strlen(cfg->cache_dir) + 200 > sizeof(s->repo_dir))
        return GQ_FAIL(e, GQ_EINVAL, "cache directory path is too long");
    snprintf(s->lock_dir, sizeof(s->lock_dir), "%s/.locks/%s", cfg->cache_dir, strrchr(s->repo_dir, '/') + 1);
    return 0;
}

int hub_mkdir_p(const char *path, gq_err *e)
{
    char buf[4200];
    size_t n = strlen(path);
    if (n >= sizeof(buf))
        return GQ_FAIL(e, GQ_EINVAL, "path too long: %s", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        buf[i] = '\0';
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
            return GQ_FAIL(e, GQ_EIO, "cannot create %s: %s", buf, strerror(errno));
        buf[i] = path[i];
    }
    return 0;
}

int hub_mkdir_parent(const char *path, gq_err *e)
{
    char dir[4200];
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : 0;
    if (n == 0 || n >= sizeof(dir))
        return 0;
    memcpy(dir, path, n);
    dir[n] = '\0';
    return hub_mkdir_p(dir, e);
}

/* ---- files replaced atomically ---- */

/* Write text to path atomically (a temporary name in the same directory). */
static int write_atomic(const char *path, const char *text, gq_err *e)
{
    char tmp[4700];
    FILE *f;
    int rc;
    if ((rc = hub_mkdir_parent(path, e)) < 0)
        return rc;
    snprintf(tmp, sizeof(tmp), "%s.tmp-%ld", path, (long)getpid() ^ (long)pthread_self());
    if (!(f = fopen(tmp, "w")))
        return GQ_FAIL(e, GQ_EIO, "cannot write %s: %s", tmp, strerror(errno));
    fputs(text, f);
    if (fclose(f) != 0 || rename(tmp, path) < 0) {
        unlink(tmp);
        return GQ_FAIL(e, GQ_EIO, "cannot write %s: %s", path, strerror(errno));
    }
    return 0;
}

static int copy_file(const char *src, const char *dst, gq_err *e)
{
    char tmp[4700], buf[1 << 16];
    int in = open(src, O_RDONLY), out = -1, rc = 0;
    ssize_t n;
    snprintf(tmp, sizeof(tmp), "%s.tmp-%ld", dst, (long)getpid() ^ (long)pthread_self());
    if (in < 0 || (out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644)) < 0) {
        rc = GQ_FAIL(e, GQ_EIO, "cannot copy %s: %s", src, strerror(errno));
        goto done;
    }
    while ((n = read(in, buf, sizeof(buf))) > 0)
        if (write(out, buf, (size_t)n) != n) {
            n = -1;
            break;
        }
    if (n < 0 || close(out) < 0 || rename(tmp, dst) < 0) {
        out = -1;
        rc = GQ_FAIL(e, GQ_EIO, "cannot copy %s to %s: %s", src, dst, strerror(errno));
        unlink(tmp);
        goto done;
    }
    out = -1;
done:
    if (in >= 0)
        close(in);
    if (out >= 0) {
        close(out);
        unlink(tmp);
    }
    return rc;
}

/* ---- snapshots/, blobs/, .locks/ ---- */

/* snapshots/<sha>/<path> -> ../../blobs/<etag> (one more ../ per directory
 * in path), or a copy without symlinks; replaced atomically. */
int hub_link_snapshot(struct session *s, const struct hfile *f, gq_err *e)
{
    char link[4600], blob[4400], target[4400], tmp[4700], cur[4400];
    size_t n = 0;
    ssize_t got;
    int rc;

    snprintf(link, sizeof(link), "%s/snapshots/%s/%s", s->repo_dir, s->sha, f->path);
    snprintf(blob, sizeof(blob), "%s/blobs/%s", s->repo_dir, f->etag);
    if ((rc = hub_mkdir_parent(link, e)) < 0)
        return rc;
    if (!s->cfg->symlinks) {
        struct stat a, b;
        if (lstat(link, &a) == 0 && S_ISREG(a.st_mode) && stat(blob, &b) == 0 && a.st_size == b.st_size)
            return 0;
        return copy_file(blob, link, e);
    }
    n += (size_t)snprintf(target, sizeof(target), "../../");
    for (const char *p = f->path; (p = strchr(p, '/')); p++)
        n += (size_t)snprintf(target + n, sizeof(target) - n, "../");
    snprintf(target + n, sizeof(target) - n, "blobs/%s", f->etag);
    if ((got = readlink(link, cur, sizeof(cur) - 1)) >= 0) {
        cur[got] = '\0';
        if (!strcmp(cur, target))
            return 0;
    }
    snprintf(tmp, sizeof(tmp), "%s.tmp-%ld", link, (long)getpid() ^ (long)pthread_self());
    unlink(tmp);
    if (symlink(target, tmp) < 0 || rename(tmp, link) < 0) {
        rc = GQ_FAIL(e, GQ_EIO, "cannot link %s: %s", link, strerror(errno));
        unlink(tmp);
        return rc;
    }
    return 0;
}

int hub_blob_present(const char *blob, uint64_t size)
{
    struct stat st;
    return stat(blob, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size == size;
}

/* flock the blob's lock file, polling so cancellation still works. */
int hub_lock_blob(struct session *s, const struct hfile *f, int *fd_out, gq_err *e)
{
    char path[4400];
    int fd, rc;
    *fd_out = -1;
    if ((rc = hub_mkdir_p(s->lock_dir, e)) < 0)
        return rc;
    snprintf(path, sizeof(path), "%s/%s.lock", s->lock_dir, f->etag);
    if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0)
        return GQ_FAIL(e, GQ_EIO, "cannot open lock %s: %s", path, strerror(errno));
    while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        struct timespec ts = { 0, 20000000L };
        if (errno != EWOULDBLOCK && errno != EINTR) {
            close(fd);
            return GQ_FAIL(e, GQ_EIO, "cannot lock %s: %s", path, strerror(errno));
        }
        if (hub_is_cancelled(s)) {
            close(fd);
            GQ_FAIL(e, GQ_ECANCELED, "cancelled while waiting for %s", path);
            return hub_fail_reason(s, "cancelled", GQ_ECANCELED);
        }
        nanosleep(&ts, NULL);
    }
    *fd_out = fd;
    return 0;
}

/* ---- refs/, .no_exist/, CACHEDIR.TAG ---- */

int hub_read_ref(struct session *s, const char *revision, gq_err *e)
{
    char path[4600];
    FILE *f;
    int rc;
    snprintf(path, sizeof(path), "%s/refs/%s", s->repo_dir, revision);
    if (!(f = fopen(path, "r"))) {
        rc = GQ_FAIL(e, GQ_ENOTFOUND, "offline (HF_HUB_OFFLINE): revision %s of %s is not in the cache %s "
                     "(no refs/%s)", revision, s->repo, s->cfg->cache_dir, revision);
        return hub_fail_reason(s, "not_in_cache", rc);
    }
    if (!fgets(s->sha, sizeof(s->sha), f))
        s->sha[0] = '\0';
    fclose(f);
    if (!hub_is_hex(s->sha, 40)) {
        rc = GQ_FAIL(e, GQ_EINVAL, "offline: %s does not hold a commit sha", path);
        return hub_fail_reason(s, "not_in_cache", rc);
    }
    return 0;
}

int hub_write_ref(struct session *s, const char *revision, gq_err *e)
{
    char ref[4600];
    snprintf(ref, sizeof(ref), "%s/refs/%s", s->repo_dir, revision);
    return write_atomic(ref, s->sha, e);
}

int hub_mark_absent(struct session *s, const char *name, gq_err *e)
{
    char path[4600];
    snprintf(path, sizeof(path), "%s/.no_exist/%s/%s", s->repo_dir, s->sha, name);
    return write_atomic(path, "", e);
}

void hub_write_cachedir_tag(const struct hub_config *cfg)
{
    char path[4200];
    struct stat st;
    gq_err ignored = GQ_ERR_INIT;
    snprintf(path, sizeof(path), "%s/CACHEDIR.TAG", cfg->cache_dir);
    if (stat(path, &st) == 0)
        return;
    write_atomic(path, "Signature: 8a477f597d28d172789f06886806bc55\n"
                       "# This file is a cache directory tag created by gptqd (huggingface_hub layout).\n",
                 &ignored);
}
