/* config_fuzz.c - libFuzzer target: registry.conf (common/config.c). The input
 * is the file; it is written to a memory file (memfd) once per run and loaded
 * through its /proc/self/fd path, as ocireg --config would load it. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int conf_fd = -1;
static char conf_path[64];

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (conf_fd < 0) {
        conf_fd = memfd_create("registry.conf", MFD_CLOEXEC);
        if (conf_fd < 0)
            abort();
        snprintf(conf_path, sizeof(conf_path), "/proc/self/fd/%d", conf_fd);
    }
    if (ftruncate(conf_fd, 0) < 0 || pwrite(conf_fd, data, size, 0) != (ssize_t)size)
        abort();
    struct config c;
    struct err e;
    if (config_load(&c, conf_path, &e) == 0) {
        /* strings stay terminated within their fields */
        if (strnlen(c.server.listen, sizeof(c.server.listen)) == sizeof(c.server.listen) ||
            strnlen(c.storage.root, sizeof(c.storage.root)) == sizeof(c.storage.root))
            abort();
    } else if (strnlen(e.msg, sizeof(e.msg)) == sizeof(e.msg)) {
        abort();
    }
    return 0;
}
