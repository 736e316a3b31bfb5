/* manifest.c - manifest_parse: validate a pushed manifest and extract what the
 * registry records about it.
 *
 * Known types: OCI image manifest, OCI image index, Docker v2 schema 2 manifest,
 * Docker manifest list. The type is the body's mediaType; if absent, the request's
 * Content-Type; if neither is given, the structure decides (config+layers = image
 * manifest, manifests = index), as older OCI clients omit both. When both are
 * given they must agree (distribution-spec: the Content-Type must match the
 * manifest's mediaType). A known type with an unknown *config* media type is an
 * artifact and accepted (image-spec 1.1: artifactType / config.mediaType).
 *
 * References: config + layers are blobs (REF_BLOB) that must be in the repository,
 * except non-distributable / `urls` layers (REF_FOREIGN, image-spec "Non-
 * distributable layers": they need not exist); index entries are manifests
 * (REF_MANIFEST). `subject` is not a reference: it may name a manifest that does
 * not exist yet (distribution-spec "Pushing Manifests with Subject"). */
#include "storage/storage.h"
#include "storage/storage_internal.h"

#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/banned.h"

/* ---- bounded JSON loading ----
 *
 * jansson builds the whole tree: measured per value, an empty object costs
 * ~235 bytes of heap, an empty array ~140, a short string ~90, a number ~40, an
 * object member ~70 plus its key; a 4 MiB body of "[]," made 185 MiB and 16
 * concurrent ones took the server to 2 GiB. So:
 *   1. json_scan walks the bytes once, allocating nothing, counting values and
 *      nesting as jansson's tokenizer sees them up to its first error, and
 *      refuses more than MANIFEST_MAX_JSON_VALUES values or a nesting deeper
 *      than MANIFEST_MAX_JSON_DEPTH before jansson sees the body. It does not
 *      validate: jansson reports syntax errors, and its tree never holds more
 *      than the scan counted.
 *   2. From the counts, a bound on the tree's heap (cost_of). A parse bound
 *      above GATE_FREE takes a share of GATE_BUDGET, in arrival order (tickets,
 *      so a stream of small parses cannot starve a large one); one larger than
 *      the whole budget runs alone. So however many workers parse at once, the
 *      trees alive together stay near max(GATE_BUDGET, the largest single
 *      tree) instead of growing with the worker count.
 *   3. glibc keeps freed heap in each thread's arena: after a parse bound
 *      above TRIM_OVER, malloc_trim gives the free pages back before the share
 *      is returned, so the next large parse on another worker does not stack
 *      its tree on top of this one's leftovers. */

/* the most that runs without the gate: the workers' small parses together
 * stay a few MiB */
#define GATE_FREE (256u << 10)
#define GATE_BUDGET (32u << 20)
#define TRIM_OVER (4u << 20)

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t next, serving; /* tickets */
    size_t used;
} gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0};

struct jshape {
    size_t values, objects, arrays, members;
};

/* json_scan - count the values of body into *sh; ERR_MANIFEST_INVALID over the
 * limits */
static int
json_scan(const char *p, size_t n, struct jshape *sh, struct err *e)
{
    static const char delims[] = " \t\n\r,:[]{}\"";
    unsigned char in_object[MANIFEST_MAX_JSON_DEPTH + 1];
    unsigned depth = 0;
    int key = 0; /* the next string is an object key */
    struct jshape c = {0};
    for (size_t i = 0; i < n; i++) {
        switch (p[i]) {
        case ' ':
        case '\t':
        case '\n':
        case '\r':
        case ':':
            continue;
        case ',':
            key = depth && in_object[depth];
            continue;
        case '}':
        case ']':
            if (depth)
                depth--;
            key = 0;
            continue;
        case '{':
        case '[':
            if (depth == MANIFEST_MAX_JSON_DEPTH)
                return err_set(e, ERR_MANIFEST_INVALID, 0,
                               "invalid manifest: json nested deeper than %u levels",
                               MANIFEST_MAX_JSON_DEPTH);
            in_object[++depth] = p[i] == '{';
            key = p[i] == '{';
            c.values++;
            if (p[i] == '{')
                c.objects++;
            else
                c.arrays++;
            break;
        case '"': {
            size_t j = i + 1;
            while (j < n && p[j] != '"')
                j += p[j] == '\\' ? 2 : 1;
            if (key)
                c.members++;
            else
                c.values++;
            key = 0;
            i = j;
            break;
        }
        default: /* a number or a literal: up to the next delimiter */
            c.values++;
            key = 0;
            while (i + 1 < n && !memchr(delims, p[i + 1], sizeof(delims) - 1))
                i++;
            break;
        }
        if (c.values > MANIFEST_MAX_JSON_VALUES)
            return err_set(e, ERR_MANIFEST_INVALID, 0,
                           "invalid manifest: json has more than %u values",
                           MANIFEST_MAX_JSON_VALUES);
    }
    *sh = c;
    return 0;
}

/* cost_of - a bound on the heap jansson's tree of a body of n bytes with this
 * shape takes (the per-value figures above, rounded up; every string byte at
 * most once) */
static size_t
cost_of(const struct jshape *sh, size_t n)
{
    size_t scalars = sh->values - sh->objects - sh->arrays;
    return sh->objects * 256 + sh->arrays * 160 + scalars * 96 + sh->members * 96 + n;
}

static size_t
gate_enter(size_t cost)
{
    if (cost <= GATE_FREE)
        return 0;
    pthread_mutex_lock(&gate.mu);
    uint64_t me = gate.next++;
    while (me != gate.serving || (gate.used && gate.used + cost > GATE_BUDGET))
        pthread_cond_wait(&gate.cv, &gate.mu);
    gate.serving++;
    gate.used += cost;
    pthread_cond_broadcast(&gate.cv);
    pthread_mutex_unlock(&gate.mu);
    return cost;
}

static void
gate_leave(size_t held)
{
    if (!held)
        return;
    if (held > TRIM_OVER)
        malloc_trim(0);
    pthread_mutex_lock(&gate.mu);
    gate.used -= held;
    pthread_cond_broadcast(&gate.cv);
    pthread_mutex_unlock(&gate.mu);
}

/* json_load_bounded - json_loadb within the limits and the gate. On success
 * *root is the tree (json_decref it, then gate_leave(*held)); on failure
 * nothing is held. */
static int
json_load_bounded(const char *body, size_t len, size_t flags, json_t **root, size_t *held,
                  struct err *e)
{
    struct jshape sh = {0};
    if (json_scan(body, len, &sh, e) < 0)
        return -1;
    size_t h = gate_enter(cost_of(&sh, len));
    json_error_t jerr;
    json_t *j = json_loadb(body, len, flags, &jerr);
    if (!j) {
        gate_leave(h);
        return err_set(e, ERR_MANIFEST_INVALID, 0, "invalid manifest: json: %s", jerr.text);
    }
    *root = j;
    *held = h;
    return 0;
}

enum mkind { MK_NONE, MK_IMAGE, MK_INDEX };

static enum mkind
kind_of(const char *mt, int *oci)
{
    if (!mt)
        return MK_NONE;
    if (strcmp(mt, MT_OCI_MANIFEST) == 0) {
        *oci = 1;
        return MK_IMAGE;
    }
    if (strcmp(mt, MT_OCI_INDEX) == 0) {
        *oci = 1;
        return MK_INDEX;
    }
    if (strcmp(mt, MT_DOCKER_MANIFEST) == 0) {
        *oci = 0;
        return MK_IMAGE;
    }
    if (strcmp(mt, MT_DOCKER_LIST) == 0) {
        *oci = 0;
        return MK_INDEX;
    }
    return MK_NONE;
}

/* normalise a Content-Type: drop parameters and surrounding blanks into buf.
 * Returns NULL when empty. */
static const char *
ctype_norm(const char *ct, char *buf, size_t bufsz)
{
    if (!ct)
        return NULL;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    size_t n = strcspn(ct, ";");
    while (n && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
        n--;
    if (n == 0)
        return NULL;
    if (n >= bufsz)
        n = bufsz - 1;
    memcpy(buf, ct, n);
    buf[n] = '\0';
    return buf;
}

static int
invalid(struct err *e, const char *what)
{
    return err_set(e, ERR_MANIFEST_INVALID, 0, "invalid manifest: %s", what);
}

static int
is_foreign_type(const char *mt)
{
    return strstr(mt, ".nondistributable.") != NULL ||
           strcmp(mt, "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip") == 0;
}

/* a media type per RFC 6838 in spirit: type "/" subtype, printable, no blanks */
static int
media_type_ok(const char *mt)
{
    size_t n = strlen(mt);
    if (n == 0 || n > 255)
        return 0;
    const char *slash = strchr(mt, '/');
    if (!slash || slash == mt || slash[1] == '\0')
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)mt[i];
        if (c <= 0x20 || c >= 0x7f)
            return 0;
    }
    return 1;
}

static int
string_map_ok(json_t *o)
{
    const char *k;
    json_t *v;
    if (!json_is_object(o))
        return 0;
    json_object_foreach(o, k, v)
    {
        if (!json_is_string(v))
            return 0;
    }
    return 1;
}

/* check_descriptor - one descriptor (image-spec "Descriptors"). *foreign is set
 * when it is a non-distributable layer or carries urls. */
static int
check_descriptor(json_t *d, const char *what, struct digest *dg, uint64_t *size, int *foreign,
                 struct err *e)
{
    if (!json_is_object(d))
        return err_set(e, ERR_MANIFEST_INVALID, 0, "invalid manifest: %s is not an object", what);
    json_t *mt = json_object_get(d, "mediaType");
    if (!json_is_string(mt) || !media_type_ok(json_string_value(mt)))
        return err_set(e, ERR_MANIFEST_INVALID, 0, "invalid manifest: %s mediaType", what);
    json_t *dj = json_object_get(d, "digest");
    if (!json_is_string(dj))
        return err_set(e, ERR_MANIFEST_INVALID, 0, "invalid manifest: %s digest missing", what);
    struct err de;
    if (digest_parse(json_string_value(dj), json_string_length(dj), dg, &de) < 0) {
        if (de.code == ERR_UNSUPPORTED)
            return err_set(e, ERR_MANIFEST_INVALID, 0,
                           "invalid manifest: %s digest algorithm unsupported", what);
        return err_set(e, ERR_DIGEST_INVALID, 0, "invalid manifest: %s digest", what);
    }
    json_t *sj = json_object_get(d, "size");
    if (!json_is_integer(sj) || json_integer_value(sj) < 0)
        return err_set(e, ERR_MANIFEST_INVALID, 0, "invalid manifest: %s size", what);
    *size = (uint64_t)json_integer_value(sj);
    json_t *urls = json_object_get(d, "urls");
    int has_urls = 0;
    if (urls) {
        size_t i;
        json_t *u;
        if (!json_is_array(urls))
            return err_set(e, ERR_MANIFEST_INVALID, 0, "invalid manifest: %s urls", what);
        json_array_foreach(urls, i, u)
        {
            if (!json_is_string(u))
                return err_set(e, ERR_MANIFEST_INVALID, 0, "invalid manifest: %s urls", what);
        }
        has_urls = json_array_size(urls) > 0;
    }
    json_t *ann = json_object_get(d, "annotations");
    if (ann && !string_map_ok(ann))
        return err_set(e, ERR_MANIFEST_INVALID, 0, "invalid manifest: %s annotations", what);
    json_t *at = json_object_get(d, "artifactType");
    if (at && !json_is_string(at))
        return err_set(e, ERR_MANIFEST_INVALID, 0, "invalid manifest: %s artifactType", what);
    if (foreign)
        *foreign = has_urls || is_foreign_type(json_string_value(mt));
    return 0;
}

static int
add_ref(struct manifest_info *mi, size_t cap, const struct digest *d, enum ref_kind k,
        uint64_t size)
{
    if (mi->nrefs >= cap)
        return -1;
    mi->refs[mi->nrefs].digest = *d;
    mi->refs[mi->nrefs].kind = k;
    mi->refs[mi->nrefs].size = size;
    mi->nrefs++;
    return 0;
}

static void
copy_str(char *dst, size_t dstsz, const char *src)
{
    size_t n = strlen(src);
    if (n >= dstsz)
        n = dstsz - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

void
manifest_info_release(struct manifest_info *mi)
{
    if (!mi)
        return;
    free(mi->annotations_json);
    free(mi->refs);
    mi->annotations_json = NULL;
    mi->refs = NULL;
    mi->nrefs = 0;
}

int
manifest_parse(const char *body, size_t len, const char *content_type, struct manifest_info *out,
               struct err *e)
{
    struct manifest_info mi;
    memset(&mi, 0, sizeof(mi));
    int rc = -1;
    json_t *root = NULL;
    size_t held = 0;
    if (json_load_bounded(body, len, JSON_REJECT_DUPLICATES, &root, &held, e) < 0)
        return -1;
    if (!json_is_object(root)) {
        invalid(e, "not a json object");
        goto out;
    }

    char ctbuf[256];
    const char *ct = ctype_norm(content_type, ctbuf, sizeof(ctbuf));
    json_t *mtj = json_object_get(root, "mediaType");
    if (mtj && !json_is_string(mtj)) {
        invalid(e, "mediaType is not a string");
        goto out;
    }
    const char *mt = mtj ? json_string_value(mtj) : NULL;
    if (mt && ct && strcmp(mt, ct) != 0) {
        err_set(e, ERR_MANIFEST_INVALID, 0,
                "invalid manifest: mediaType does not match the content type");
        goto out;
    }
    int oci = 0;
    const char *eff = mt ? mt : ct;
    enum mkind kind = kind_of(eff, &oci);
    if (kind == MK_NONE) {
        if (eff) {
            err_set(e, ERR_UNSUPPORTED, 0, "unsupported manifest media type");
            goto out;
        }
        /* no type given at all: decide by structure (OCI types only) */
        oci = 1;
        if (json_object_get(root, "manifests")) {
            kind = MK_INDEX;
            eff = MT_OCI_INDEX;
        } else if (json_object_get(root, "config") || json_object_get(root, "layers")) {
            kind = MK_IMAGE;
            eff = MT_OCI_MANIFEST;
        } else {
            invalid(e, "no media type");
            goto out;
        }
    }
    copy_str(mi.media_type, sizeof(mi.media_type), eff);

    json_t *sv = json_object_get(root, "schemaVersion");
    if (!json_is_integer(sv) || json_integer_value(sv) != 2) {
        invalid(e, "schemaVersion must be 2");
        goto out;
    }

    json_t *at = json_object_get(root, "artifactType");
    if (at) {
        if (!json_is_string(at) || !media_type_ok(json_string_value(at))) {
            invalid(e, "artifactType");
            goto out;
        }
    }
    json_t *ann = json_object_get(root, "annotations");
    if (ann) {
        if (!string_map_ok(ann)) {
            invalid(e, "annotations must map strings to strings");
            goto out;
        }
        if (json_object_size(ann) > 0) {
            mi.annotations_json = json_dumps(ann, JSON_COMPACT);
            if (!mi.annotations_json) {
                err_set(e, ERR_NOMEM, 0, "out of memory");
                goto out;
            }
        }
    }
    json_t *subj = json_object_get(root, "subject");
    if (subj && !json_is_null(subj)) {
        uint64_t ssz;
        if (check_descriptor(subj, "subject", &mi.subject, &ssz, NULL, e) < 0)
            goto out;
        mi.has_subject = 1;
    }

    if (kind == MK_IMAGE) {
        json_t *cfg = json_object_get(root, "config");
        json_t *layers = json_object_get(root, "layers");
        if (!cfg) {
            invalid(e, "config missing");
            goto out;
        }
        if (!json_is_array(layers)) {
            invalid(e, "layers missing");
            goto out;
        }
        /* an image manifest carrying an index's field is ambiguous: refuse it */
        if (json_object_get(root, "manifests")) {
            invalid(e, "image manifest with manifests");
            goto out;
        }
        size_t cap = 1 + json_array_size(layers);
        mi.refs = calloc(cap, sizeof(*mi.refs));
        if (!mi.refs) {
            err_set(e, ERR_NOMEM, 0, "out of memory");
            goto out;
        }
        struct digest d;
        uint64_t sz;
        if (check_descriptor(cfg, "config", &d, &sz, NULL, e) < 0)
            goto out;
        add_ref(&mi, cap, &d, REF_BLOB, sz);
        const char *cfg_mt = json_string_value(json_object_get(cfg, "mediaType"));
        size_t i;
        json_t *l;
        json_array_foreach(layers, i, l)
        {
            int foreign = 0;
            if (check_descriptor(l, "layer", &d, &sz, &foreign, e) < 0)
                goto out;
            add_ref(&mi, cap, &d, foreign ? REF_FOREIGN : REF_BLOB, sz);
        }
        if (at)
            copy_str(mi.artifact_type, sizeof(mi.artifact_type), json_string_value(at));
        else if (oci)
            copy_str(mi.artifact_type, sizeof(mi.artifact_type), cfg_mt);
    } else {
        json_t *mans = json_object_get(root, "manifests");
        if (!json_is_array(mans)) {
            invalid(e, "manifests missing");
            goto out;
        }
        if (json_object_get(root, "config") || json_object_get(root, "layers")) {
            invalid(e, "index with config or layers");
            goto out;
        }
        size_t cap = json_array_size(mans);
        mi.refs = calloc(cap ? cap : 1, sizeof(*mi.refs));
        if (!mi.refs) {
            err_set(e, ERR_NOMEM, 0, "out of memory");
            goto out;
        }
        size_t i;
        json_t *m;
        json_array_foreach(mans, i, m)
        {
            struct digest d;
            uint64_t sz;
            if (check_descriptor(m, "manifests entry", &d, &sz, NULL, e) < 0)
                goto out;
            json_t *pl = json_object_get(m, "platform");
            if (pl && !json_is_object(pl)) {
                invalid(e, "platform is not an object");
                goto out;
            }
            add_ref(&mi, cap, &d, REF_MANIFEST, sz);
        }
        if (at)
            copy_str(mi.artifact_type, sizeof(mi.artifact_type), json_string_value(at));
    }
    *out = mi;
    memset(&mi, 0, sizeof(mi));
    rc = 0;
out:
    manifest_info_release(&mi);
    json_decref(root);
    gate_leave(held);
    return rc;
}

int
manifest_annotations_of(const char *body, size_t len, char **out, struct err *e)
{
    json_t *root = NULL;
    size_t held = 0;
    if (json_load_bounded(body, len, 0, &root, &held, e) < 0)
        return -1;
    int rc = 0;
    char *text = NULL;
    json_t *ann = json_is_object(root) ? json_object_get(root, "annotations") : NULL;
    if (json_is_object(ann) && json_object_size(ann) > 0) {
        /* the same dump as manifest_parse's */
        text = json_dumps(ann, JSON_COMPACT);
        if (!text)
            rc = err_set(e, ERR_NOMEM, 0, "out of memory");
    }
    json_decref(root);
    gate_leave(held);
    if (rc == 0)
        *out = text;
    return rc;
}
