/*
 * fakehub_serve.c - the fake Hub (tests/fakehub.c) as a program, for the
 * demo and the browser test: serves model directories as Hub repos on
 * ephemeral loopback ports until SIGTERM/SIGINT.
 *
 *   build/fakehub_serve [--port-file F] REPO=DIR [REPO=DIR ...]
 *
 * Each DIR (every regular file under it) becomes the "main" branch of
 * REPO ("org/name").  Prints "endpoint http://127.0.0.1:PORT" and one
 * "repo NAME SHA" line per repo on stdout, and writes the endpoint to F
 * when given (atomically, so a poller never reads half of it).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fakehub.h"

int main(int argc, char **argv)
{
    struct fakehub *h;
    const char *port_file = NULL;
    sigset_t sigs;
    int sig, i;

    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    if (!(h = fakehub_start()))
        return 1;
    for (i = 1; i < argc; i++) {
        char repo[256], sha[41];
        const char *eq = strchr(argv[i], '=');
        if (!strcmp(argv[i], "--port-file") && i + 1 < argc) {
            port_file = argv[++i];
            continue;
        }
        if (!eq || eq == argv[i] || (size_t)(eq - argv[i]) >= sizeof(repo)) {
            fprintf(stderr, "usage: fakehub_serve [--port-file F] REPO=DIR ...\n");
            fakehub_stop(h);
            return 2;
        }
        snprintf(repo, sizeof(repo), "%.*s", (int)(eq - argv[i]), argv[i]);
        if (fakehub_commit_dir(h, repo, "main", eq + 1, sha) < 0) {
            fprintf(stderr, "fakehub_serve: cannot read %s\n", eq + 1);
            fakehub_stop(h);
            return 1;
        }
        printf("repo %s %s\n", repo, sha);
    }
    printf("endpoint %s\n", fakehub_endpoint(h));
    fflush(stdout);
    if (port_file) {
        char tmp[4200];
        FILE *f;
        snprintf(tmp, sizeof(tmp), "%s.tmp", port_file);
        if (!(f = fopen(tmp, "w")) || fprintf(f, "%s\n", fakehub_endpoint(h)) < 0 || fclose(f) != 0 ||
            rename(tmp, port_file) != 0) {
            fprintf(stderr, "fakehub_serve: cannot write %s\n", port_file);
            fakehub_stop(h);
            return 1;
        }
    }
    while (sigwait(&sigs, &sig) == 0 && sig != SIGTERM && sig != SIGINT)
        ;
    fakehub_stop(h);
    return 0;
}
