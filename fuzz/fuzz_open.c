/*
 * The sealed-blob opener ngx_astralform_open() (src/ngx_astralform_crypto.c)
 * with the test suite's key ring (t/fixtures: master.key as "k1", the
 * sealing key; old.key as "k0").
 *
 * Input, sections separated by "\n%%\n":
 *
 *   raw  \n%%\n AAD \n%%\n BLOB
 *       opens an arbitrary blob: no crash, and an opened blob has a
 *       NUL-terminated plaintext of the decoded length minus 28.
 *
 *   seal \n%%\n PLAINTEXT \n%%\n AAD \n%%\n EDITS
 *       seals PLAINTEXT (with k1, or with k0 when EDITS starts with "o"),
 *       checks it opens to the same bytes (stale set for k0), that another
 *       AAD or another key id does not open it, then applies EDITS (byte
 *       triples: operation, position, value: flip, delete, insert,
 *       truncate, swap) to the blob: an edited blob may open only when it
 *       decodes to the very same nonce, ciphertext and tag (base64url has
 *       spare bits and nginx stops decoding at "="), and then to the same
 *       plaintext.
 */


#include "fuzz_util.h"
#include "ngx_shim.h"
#include "ngx_astralform_crypto.h"


static ngx_log_t     fz_log;
static ngx_array_t   fz_keys;       /* k1, k0: k1 seals */
static ngx_array_t   fz_old_first;  /* k0, k1: k0 seals */
static ngx_pool_t   *fz_conf_pool;


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_init();

    fz_log.log_level = NGX_LOG_DEBUG_ALL;
    fz_conf_pool = ngx_create_pool(1024, &fz_log);

    ngx_array_init(&fz_keys, fz_conf_pool, 2, sizeof(ngx_astralform_key_t));
    fz_load_key(&fz_keys, "k1", "master.key");
    fz_load_key(&fz_keys, "k0", "old.key");

    ngx_array_init(&fz_old_first, fz_conf_pool, 2,
                   sizeof(ngx_astralform_key_t));
    fz_load_key(&fz_old_first, "k0", "old.key");
    fz_load_key(&fz_old_first, "k1", "master.key");

    return 0;
}


/* the decoded nonce|ciphertext|tag of a blob, or len 0 */
static void
fz_decoded(ngx_pool_t *pool, ngx_str_t *blob, ngx_str_t *head, ngx_str_t *bin)
{
    u_char     *dot;
    ngx_str_t   enc;

    bin->len = 0;
    head->len = 0;

    if (blob->len < 4 || memcmp(blob->data, "v1.", 3) != 0) {
        return;
    }

    dot = memchr(blob->data + 3, '.', blob->len - 3);
    if (dot == NULL) {
        return;
    }

    head->data = blob->data;
    head->len = dot + 1 - blob->data;

    enc.data = dot + 1;
    enc.len = blob->data + blob->len - enc.data;

    bin->data = ngx_pnalloc(pool, ngx_base64_decoded_length(enc.len) + 1);
    if (bin->data == NULL || ngx_decode_base64url(bin, &enc) != NGX_OK) {
        bin->len = 0;
    }
}


static ngx_int_t
fz_open(ngx_pool_t *pool, ngx_str_t *aad, ngx_str_t *blob, ngx_str_t *plain,
    ngx_uint_t *stale)
{
    ngx_int_t  rc;
    ngx_str_t  head, bin;

    *stale = 7;

    rc = ngx_astralform_open(pool, &fz_keys, aad, blob, plain, stale);

    if (rc == NGX_OK) {
        if (plain->data[plain->len] != '\0') {
            fz_fail("open: the plaintext is not NUL-terminated");
        }

        if (*stale > 1) {
            fz_fail("open: *stale was not set");
        }

        fz_decoded(pool, blob, &head, &bin);

        if (bin.len != plain->len + 28) {
            fz_fail("open: plaintext of %zu bytes from %zu decoded bytes",
                    plain->len, bin.len);
        }

    } else if (rc != NGX_DECLINED) {
        fz_fail("open returned %ld", (long) rc);
    }

    return rc;
}


static void
fz_raw(ngx_pool_t *pool, fz_sections_t *sec)
{
    u_char     *copy;
    ngx_str_t   blob, plain;
    ngx_uint_t  stale;

    if (sec->n < 3) {
        return;
    }

    /* an exact-size copy: a read past the blob is caught */
    copy = ngx_pnalloc(pool, sec->s[2].len);
    memcpy(copy, sec->s[2].data, sec->s[2].len);
    blob.data = copy;
    blob.len = sec->s[2].len;

    (void) fz_open(pool, &sec->s[1], &blob, &plain, &stale);
}


static void
fz_seal(ngx_pool_t *pool, fz_sections_t *sec)
{
    u_char      *p, *e;
    size_t       i, pos;
    ngx_str_t    plain, aad, edits, blob, other, out, head, bin, head2, bin2;
    ngx_uint_t   old, stale;
    ngx_array_t *ring;

    if (sec->n < 3) {
        return;
    }

    plain = sec->s[1];
    aad = sec->s[2];
    ngx_str_null(&edits);

    if (sec->n > 3) {
        edits = sec->s[3];
    }

    old = edits.len && edits.data[0] == 'o';
    ring = old ? &fz_old_first : &fz_keys;

    if (ngx_astralform_seal(pool, ring, &aad, &plain, &blob) != NGX_OK) {
        fz_fail("seal failed");
    }

    if (fz_open(pool, &aad, &blob, &out, &stale) != NGX_OK) {
        fz_fail("a sealed blob does not open");
    }

    if (out.len != plain.len || memcmp(out.data, plain.data, plain.len) != 0
        || stale != old)
    {
        fz_fail("a sealed blob opens to other bytes (stale %lu)",
                (unsigned long) stale);
    }

    /* another owner: the AAD one byte longer, or one bit different */

    other.len = aad.len + 1;
    other.data = ngx_pnalloc(pool, other.len);
    memcpy(other.data, aad.data, aad.len);
    other.data[aad.len] = 'x';

    if (fz_open(pool, &other, &blob, &out, &stale) == NGX_OK) {
        fz_fail("a blob opens under a longer AAD");
    }

    if (aad.len) {
        other.len = aad.len;
        other.data[aad.len - 1] ^= 1;

        if (fz_open(pool, &other, &blob, &out, &stale) == NGX_OK) {
            fz_fail("a blob opens under another AAD");
        }
    }

    /* relabelled with the other key's id */

    other.len = blob.len;
    other.data = ngx_pnalloc(pool, blob.len);
    memcpy(other.data, blob.data, blob.len);
    other.data[4] = (u_char) (other.data[4] == '1' ? '0' : '1');

    if (fz_open(pool, &aad, &other, &out, &stale) == NGX_OK) {
        fz_fail("a blob opens under another key id");
    }

    /* the edits */

    if (edits.len <= old) {
        return;
    }

    p = ngx_pnalloc(pool, blob.len + edits.len / 3 + 1);
    memcpy(p, blob.data, blob.len);
    other.data = p;
    other.len = blob.len;

    e = edits.data + old;

    for (i = old; i + 3 <= edits.len; i += 3, e += 3) {
        pos = other.len ? (size_t) e[1] * other.len / 256 : 0;

        switch (e[0] % 5) {

        case 0:     /* flip bits */
            if (other.len) {
                p[pos] ^= e[2] ? e[2] : 0x80;
            }
            break;

        case 1:     /* delete */
            if (other.len) {
                memmove(p + pos, p + pos + 1, other.len - pos - 1);
                other.len--;
            }
            break;

        case 2:     /* insert */
            memmove(p + pos + 1, p + pos, other.len - pos);
            p[pos] = e[2];
            other.len++;
            break;

        case 3:     /* truncate */
            other.len = pos;
            break;

        default:    /* swap two bytes */
            if (other.len) {
                u_char  c, *q;

                q = p + (size_t) e[2] * other.len / 256;
                c = *q;
                *q = p[pos];
                p[pos] = c;
            }
        }
    }

    if (fz_open(pool, &aad, &other, &out, &stale) != NGX_OK) {
        return;
    }

    fz_decoded(pool, &blob, &head, &bin);
    fz_decoded(pool, &other, &head2, &bin2);

    if (head.len != head2.len || memcmp(head.data, head2.data, head.len) != 0
        || bin.len != bin2.len || memcmp(bin.data, bin2.data, bin.len) != 0)
    {
        fz_fail("an edited blob opens: \"%.*s\" from \"%.*s\"",
                (int) other.len, other.data, (int) blob.len, blob.data);
    }

    if (out.len != plain.len || memcmp(out.data, plain.data, plain.len) != 0) {
        fz_fail("an edited blob opens to other bytes");
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ngx_str_t       line, rest;
    ngx_pool_t     *pool;
    fz_sections_t   sec;

    fz_split(data, size, &sec);
    fz_line(&sec.s[0], &line, &rest);

    pool = ngx_create_pool(1024, &fz_log);
    if (pool == NULL) {
        fz_fail("out of memory");
    }

    if (line.len == 3 && memcmp(line.data, "raw", 3) == 0) {
        fz_raw(pool, &sec);

    } else if (line.len == 4 && memcmp(line.data, "seal", 4) == 0) {
        fz_seal(pool, &sec);
    }

    ngx_destroy_pool(pool);

    return 0;
}
