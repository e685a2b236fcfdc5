/* fuzz_simulate.c - `twlb simulate`'s command line (simulate_main) with argv built from
 * the input: tokens separated by NUL or newline, at most 24.  It runs in a temporary
 * directory holding c.json (a valid config); tokens naming other directories ('/') are
 * not tried, so --csv and --svg write only there, and files they made are removed after
 * each input.  The model's cost is rate x duration, so inputs asking for more than 1000
 * connections per second or 60 s are not run (a long simulation is not a bug; twlb
 * simulate --rate 1e12 is, see the report in tests/fuzz/README.md). */
#include <dirent.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "os/log.h"
#include "sim/cli.h"

static char dir[] = "/tmp/twlb-fuzz-sim-XXXXXX";
static int ready;

static const char config[] =
    "{\"listeners\": [{\"name\": \"web\", \"bind\": \"127.0.0.1:8080\", \"pool\": \"app\"}],\n"
    " \"pools\": [{\"name\": \"app\", \"inside\": [\"127.0.0.2\"], \"source_ports\": \"20000-20099\",\n"
    "   \"backends\": [{\"name\": \"b1\", \"address\": \"127.0.1.1:9001\"},\n"
    "                {\"name\": \"b2\", \"address\": \"127.0.1.1:9002\"}]}]}\n";

static void write_config(void)
{
    FILE *f = fopen("c.json", "w");
    if (!f)
        abort();
    fputs(config, f);
    fclose(f);
}

/* Remove what a run wrote (and c.json, written anew). */
static void clean_dir(void)
{
    DIR *d = opendir(".");
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.' || (e->d_name[1] && strcmp(e->d_name, "..")))
            unlink(e->d_name);
    if (d)
        closedir(d);
}

static void remove_dir(void)
{
    clean_dir();
    if (chdir("/") == 0)
        rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    log_set_level(LOGL_OFF);
    ready = 1;
    if (!mkdtemp(dir) || chdir(dir) != 0)
        abort();
    atexit(remove_dir);
    return 0;
}

/* "--rate=X", "--ra X", ...: is <t> the long option <name> (any unique prefix)? Sets
 * *val to its inline value or NULL. */
static int is_opt(const char *t, const char *name, const char **val)
{
    if (strncmp(t, "--", 2) || !t[2])
        return 0;
    size_t n = strcspn(t + 2, "=");
    if (n > strlen(name) || strncmp(t + 2, name, n))
        return 0;
    *val = t[2 + n] == '=' ? t + 3 + n : NULL;
    return 1;
}

/* Would the model run longer than we want to wait for? */
static int too_costly(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        double limit;
        if (!strcmp(argv[i], "--"))
            return 0;
        if (is_opt(argv[i], "rate", &v))
            limit = 1000;
        else if (is_opt(argv[i], "duration", &v))
            limit = 60;
        else
            continue;
        if (!v)
            v = i + 1 < argc ? argv[++i] : "";
        char *end;
        double x = strtod(v, &end);
        if (!(x <= limit)) /* NaN too */
            return 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ready)
        LLVMFuzzerInitialize(NULL, NULL);
    if (size > 1024)
        return 0;
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = 0;
    char *argv[26] = {"simulate"};
    int argc = 1;
    for (char *t = text; t < text + size && argc < 25;) {
        size_t n = strcspn(t, "\n");
        if (t + n > text + size)
            n = (size_t)(text + size - t);
        t[n] = 0;
        argv[argc++] = t;
        t += n + 1;
    }
    int skip = too_costly(argc, argv);
    for (int i = 1; i < argc; i++)
        skip |= strchr(argv[i], '/') != NULL;
    if (!skip) {
        write_config();
        optind = 0; /* getopt starts afresh, as in a new process */
        int rc = simulate_main(argc, argv);
        if (rc < 0 || rc > 2)
            abort();
        fflush(stdout);
        clean_dir();
    }
    free(text);
    return 0;
}
