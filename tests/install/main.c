/* Uses an installed rill through its public header only: the version, and one loop created and
 * destroyed on whichever backend this machine supports. Exits non-zero on any mismatch. */
#include <rill.h>

#include <stdio.h>
#include <string.h>

int main(void)
{
    const char *v = rill_version();
    if (v == NULL || strcmp(v, RILL_VERSION_STRING) != 0) {
        fprintf(stderr, "rill_version() = %s, header says %s\n", v ? v : "(null)",
                RILL_VERSION_STRING);
        return 1;
    }

    rill_loop *loop = NULL;
    int rc = rill_loop_create(NULL, &loop);
    if (rc != 0 || loop == NULL) {
        fprintf(stderr, "rill_loop_create: %s\n", rill_strerror(rc));
        return 1;
    }
    rill_loop_destroy(loop);

    printf("rill %s: loop created and destroyed\n", v);
    return 0;
}
