/* procinfo.c - see procinfo.h. */
#include "admin/procinfo.h"

#include <dirent.h>
#include <stdio.h>
#include <unistd.h>

int64_t procinfo_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int64_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory stream itself */
}

int64_t procinfo_resident_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return -1;
    long pages = 0, rss = 0;
    int ok = fscanf(f, "%ld %ld", &pages, &rss) == 2;
    fclose(f);
    return ok ? (int64_t)rss * sysconf(_SC_PAGESIZE) : -1;
}
