/* statefile_handover.c - the state file at a takeover; see statefile.h. */
#include "os/statefile.h"

#include <errno.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "os/log.h"
#include "os/statefile_int.h"

int statefile_handover(struct statefile *sf, int give)
{
    if (!sf || sf->fd < 0)
        return 0; /* none, or memory only: nothing to hand over */
    if (give) {
        if (!sf->handed)
            (void)flock(sf->fd, LOCK_UN);
        sf->handed = 1;
        return 0;
    }
    if (!sf->handed)
        return 0;
    struct stat mine, named;
    int r = 0;
    if (fstat(sf->fd, &mine) != 0 || stat(sf->path, &named) != 0)
        r = -errno;
    else if (mine.st_ino != named.st_ino || mine.st_dev != named.st_dev)
        r = -ESTALE;
    else if (flock(sf->fd, LOCK_EX | LOCK_NB) != 0)
        r = -errno;
    if (r < 0) {
        sf_count_failure();
        log_error("state file %s: cannot take it back after the failed takeover (%s): this "
                  "run's records are no longer saved", sf->path,
                  r == -ESTALE ? "the new process replaced it" : strerror(-r));
        return r;
    }
    sf->handed = 0;
    log_info("state file %s: locked again after the failed takeover", sf->path);
    return 0;
}
