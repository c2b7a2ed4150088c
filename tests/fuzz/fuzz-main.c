/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz-main.c: runs a libFuzzer harness over files without libFuzzer, so
 * every build replays the seed corpus (and any crash input added to it)
 * through the harness, with whatever sanitizers the build has.
 *
 *   fuzz-NAME-replay FILE|DIR...
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
        FILE *f = fopen(path, "rb");
        if (!f) {
                perror(path);
                return -1;
        }
        uint8_t *buf = malloc(1 << 20);
        size_t n = buf ? fread(buf, 1, 1 << 20, f) : 0;
        fclose(f);
        if (!buf)
                return -1;
        LLVMFuzzerTestOneInput(buf, n);
        free(buf);
        return 0;
}

int main(int argc, char **argv)
{
        unsigned files = 0;

        for (int i = 1; i < argc; i++) {
                struct stat st;
                if (stat(argv[i], &st) < 0) {
                        perror(argv[i]);
                        return 1;
                }
                if (!S_ISDIR(st.st_mode)) {
                        if (run_file(argv[i]) < 0)
                                return 1;
                        files++;
                        continue;
                }
                struct dirent **names;
                int n = scandir(argv[i], &names, NULL, alphasort);
                if (n < 0) {
                        perror(argv[i]);
                        return 1;
                }
                for (int k = 0; k < n; k++) {
                        char p[4096];
                        if (names[k]->d_name[0] != '.') {
                                snprintf(p, sizeof(p), "%s/%s", argv[i], names[k]->d_name);
                                if (run_file(p) < 0)
                                        return 1;
                                files++;
                        }
                        free(names[k]);
                }
                free(names);
        }
        printf("%u inputs replayed\n", files);
        return files ? 0 : 1;
}
