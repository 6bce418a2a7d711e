/*
 * Sealed secrets.
 *
 * A blob is text, so it can sit in a Redis hash or inside JSON:
 *
 *     v1.<key id>.<base64url(nonce[12] | ciphertext | tag[16])>
 *
 * The GCM additional data is "v1.<key id>." followed by the caller's AAD
 * (which names the project, connector, field and user), so a blob moved
 * under another owner, or relabelled with another key id, fails to open.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <openssl/hmac.h>

#include "ngx_astralform_crypto.h"


#define NGX_ASTRALFORM_NONCE_LEN  12
#define NGX_ASTRALFORM_TAG_LEN    16
#define NGX_ASTRALFORM_SECRET_MAX 8192


static ngx_int_t ngx_astralform_gcm(ngx_uint_t seal, u_char *key,
    u_char *nonce, ngx_str_t *aad_head, ngx_str_t *aad, u_char *in,
    size_t len, u_char *out, u_char *tag);
static void ngx_astralform_wipe_cleanup(void *data);


static EVP_CIPHER      *ngx_astralform_cipher;
static EVP_CIPHER_CTX  *ngx_astralform_cipher_ctx;
static u_char           ngx_astralform_cipher_key[NGX_ASTRALFORM_KEY_LEN];
static ngx_uint_t       ngx_astralform_cipher_keyed;


typedef struct {
    u_char      *data;
    size_t       len;
} ngx_astralform_wipe_t;


char *
ngx_astralform_key_load(ngx_conf_t *cf, ngx_astralform_key_t *key,
    ngx_str_t *id, ngx_str_t *path)
{
    u_char     *p;
    ngx_str_t   raw;
    ngx_int_t   hi, lo;
    ngx_uint_t  i;

    for (i = 0; i < id->len; i++) {
        if (!(isalnum(id->data[i]) || id->data[i] == '_'
              || id->data[i] == '-'))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"astralform_key\" id \"%V\" may only hold "
                               "letters, digits, \"_\" and \"-\"", id);
            return NGX_CONF_ERROR;
        }
    }

    if (id->len == 0 || id->len > 32) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"astralform_key\" id must be 1 to 32 "
                           "characters");
        return NGX_CONF_ERROR;
    }

    if (ngx_astralform_read_secret_file(cf, path, &raw, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    key->id = *id;

    /* 32 raw bytes may end in a newline byte: only trim a hex key */
    while (raw.len > NGX_ASTRALFORM_KEY_LEN * 2
           && (raw.data[raw.len - 1] == '\n' || raw.data[raw.len - 1] == '\r'))
    {
        raw.len--;
    }

    if (raw.len == NGX_ASTRALFORM_KEY_LEN * 2) {
        p = raw.data;

        for (i = 0; i < NGX_ASTRALFORM_KEY_LEN; i++) {
            hi = ngx_hextoi(p, 1);
            lo = ngx_hextoi(p + 1, 1);
            if (hi == NGX_ERROR || lo == NGX_ERROR) {
                break;
            }
            key->key[i] = (u_char) (hi * 16 + lo);
            p += 2;
        }

        if (i == NGX_ASTRALFORM_KEY_LEN) {
            ngx_explicit_memzero(raw.data, raw.len);
            return NGX_CONF_OK;
        }
    }

    if (raw.len != NGX_ASTRALFORM_KEY_LEN) {
        while (raw.len && (raw.data[raw.len - 1] == '\n'
                           || raw.data[raw.len - 1] == '\r'))
        {
            raw.len--;
        }
        ngx_explicit_memzero(raw.data, raw.len);
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"astralform_key\" file \"%V\" must hold 32 raw "
                           "bytes or 64 hex characters, not %uz bytes",
                           path, raw.len);
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(key->key, raw.data, NGX_ASTRALFORM_KEY_LEN);
    ngx_explicit_memzero(raw.data, raw.len);

    return NGX_CONF_OK;
}


void
ngx_astralform_keys_wipe(ngx_array_t *keys)
{
    ngx_uint_t             i;
    ngx_astralform_key_t  *key;

    key = keys->elts;

    for (i = 0; i < keys->nelts; i++) {
        ngx_explicit_memzero(key[i].key, NGX_ASTRALFORM_KEY_LEN);
    }
}


ngx_int_t
ngx_astralform_seal(ngx_pool_t *pool, ngx_array_t *keys, ngx_str_t *aad,
    ngx_str_t *plain, ngx_str_t *blob)
{
    u_char                *raw;
    ngx_str_t              head, bin, enc;
    ngx_astralform_key_t  *key;

    if (keys->nelts == 0) {
        return NGX_ERROR;
    }

    key = keys->elts;

    head.len = sizeof("v1..") - 1 + key->id.len;
    bin.len = NGX_ASTRALFORM_NONCE_LEN + plain->len + NGX_ASTRALFORM_TAG_LEN;

    raw = ngx_pnalloc(pool, bin.len);
    blob->data = ngx_pnalloc(pool, head.len + ngx_base64_encoded_length(bin.len));
    if (raw == NULL || blob->data == NULL) {
        return NGX_ERROR;
    }

    enc.data = ngx_sprintf(blob->data, "v1.%V.", &key->id);
    head.data = blob->data;

    if (RAND_bytes(raw, NGX_ASTRALFORM_NONCE_LEN) != 1) {
        return NGX_ERROR;
    }

    if (ngx_astralform_gcm(1, key->key, raw, &head, aad, plain->data,
                           plain->len, raw + NGX_ASTRALFORM_NONCE_LEN,
                           raw + NGX_ASTRALFORM_NONCE_LEN + plain->len)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    bin.data = raw;
    ngx_encode_base64url(&enc, &bin);
    blob->len = head.len + enc.len;

    return NGX_OK;
}


ngx_int_t
ngx_astralform_open(ngx_pool_t *pool, ngx_array_t *keys, ngx_str_t *aad,
    ngx_str_t *blob, ngx_str_t *plain, ngx_uint_t *stale)
{
    u_char                 *dot;
    ngx_str_t               kid, head, enc, bin;
    ngx_uint_t              i;
    ngx_pool_cleanup_t     *cln;
    ngx_astralform_key_t   *key;
    ngx_astralform_wipe_t  *wipe;

    if (blob->len < 4 || ngx_strncmp(blob->data, "v1.", 3) != 0) {
        return NGX_DECLINED;
    }

    kid.data = blob->data + 3;
    dot = ngx_strlchr(kid.data, blob->data + blob->len, '.');
    if (dot == NULL) {
        return NGX_DECLINED;
    }
    kid.len = dot - kid.data;

    head.data = blob->data;
    head.len = dot + 1 - blob->data;

    enc.data = dot + 1;
    enc.len = blob->data + blob->len - enc.data;

    key = keys->elts;
    for (i = 0; i < keys->nelts; i++) {
        if (key[i].id.len == kid.len
            && ngx_strncmp(key[i].id.data, kid.data, kid.len) == 0)
        {
            break;
        }
    }

    if (i == keys->nelts) {
        return NGX_DECLINED;
    }

    bin.data = ngx_pnalloc(pool, ngx_base64_decoded_length(enc.len));
    if (bin.data == NULL) {
        return NGX_ERROR;
    }

    if (ngx_decode_base64url(&bin, &enc) != NGX_OK
        || bin.len < NGX_ASTRALFORM_NONCE_LEN + NGX_ASTRALFORM_TAG_LEN)
    {
        return NGX_DECLINED;
    }

    plain->len = bin.len - NGX_ASTRALFORM_NONCE_LEN - NGX_ASTRALFORM_TAG_LEN;
    plain->data = ngx_pnalloc(pool, plain->len + 1);
    if (plain->data == NULL) {
        return NGX_ERROR;
    }

    /* the plaintext is wiped when the pool goes, whoever used it */
    cln = ngx_pool_cleanup_add(pool, sizeof(ngx_astralform_wipe_t));
    if (cln == NULL) {
        return NGX_ERROR;
    }
    wipe = cln->data;
    wipe->data = plain->data;
    wipe->len = plain->len + 1;
    cln->handler = ngx_astralform_wipe_cleanup;

    if (ngx_astralform_gcm(0, key[i].key, bin.data, &head, aad,
                           bin.data + NGX_ASTRALFORM_NONCE_LEN, plain->len,
                           plain->data,
                           bin.data + NGX_ASTRALFORM_NONCE_LEN + plain->len)
        != NGX_OK)
    {
        return NGX_DECLINED;
    }

    plain->data[plain->len] = '\0';

    if (stale != NULL) {
        *stale = (i != 0);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_astralform_gcm(ngx_uint_t seal, u_char *key, u_char *nonce,
    ngx_str_t *aad_head, ngx_str_t *aad, u_char *in, size_t len, u_char *out,
    u_char *tag)
{
    int              n, ok;
    EVP_CIPHER_CTX  *ctx;

    /*
     * Looked up once per process: an implicit fetch on every init costs
     * more than the encryption of a token. Workers are single-threaded.
     */
    if (ngx_astralform_cipher == NULL) {
        ngx_astralform_cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
        ngx_astralform_cipher_ctx = EVP_CIPHER_CTX_new();

        if (ngx_astralform_cipher == NULL
            || ngx_astralform_cipher_ctx == NULL)
        {
            ngx_astralform_crypto_exit();
            return NGX_ERROR;
        }
    }

    ctx = ngx_astralform_cipher_ctx;

    /*
     * The key schedule (and GCM's hash key) stays in the context: set
     * again only when another key comes, compared by value, as a freed
     * key ring's memory may hold a new one.
     */
    if (ngx_astralform_cipher_keyed
        && ngx_memcmp(ngx_astralform_cipher_key, key, NGX_ASTRALFORM_KEY_LEN)
           == 0)
    {
        key = NULL;

    } else {
        ngx_memcpy(ngx_astralform_cipher_key, key, NGX_ASTRALFORM_KEY_LEN);
        ngx_astralform_cipher_keyed = 0;
    }

    ok = EVP_CipherInit_ex(ctx, key ? ngx_astralform_cipher : NULL, NULL, key,
                           nonce, (int) seal) == 1
         && EVP_CipherUpdate(ctx, NULL, &n, aad_head->data,
                             (int) aad_head->len) == 1
         && EVP_CipherUpdate(ctx, NULL, &n, aad->data, (int) aad->len) == 1
         && (len == 0
             || EVP_CipherUpdate(ctx, out, &n, in, (int) len) == 1);

    if (ok && !seal) {
        ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG,
                                 NGX_ASTRALFORM_TAG_LEN, tag) == 1;
    }

    ok = ok && EVP_CipherFinal_ex(ctx, out + len, &n) == 1;

    if (ok && seal) {
        ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG,
                                 NGX_ASTRALFORM_TAG_LEN, tag) == 1;
    }

    if (!ok && !seal) {
        ngx_explicit_memzero(out, len);
    }

    /* keyed once an init with the key went through */
    if (key != NULL) {
        ngx_astralform_cipher_keyed = ok;
    }

    return ok ? NGX_OK : NGX_ERROR;
}


void
ngx_astralform_crypto_exit(void)
{
    EVP_CIPHER_CTX_free(ngx_astralform_cipher_ctx);
    EVP_CIPHER_free(ngx_astralform_cipher);
    ngx_explicit_memzero(ngx_astralform_cipher_key, NGX_ASTRALFORM_KEY_LEN);
    ngx_astralform_cipher_keyed = 0;
    ngx_astralform_cipher_ctx = NULL;
    ngx_astralform_cipher = NULL;
}


static void
ngx_astralform_wipe_cleanup(void *data)
{
    ngx_astralform_wipe_t  *wipe = data;

    ngx_explicit_memzero(wipe->data, wipe->len);
}


ngx_int_t
ngx_astralform_random_token(ngx_pool_t *pool, ngx_str_t *out, size_t bytes)
{
    u_char     raw[64];
    ngx_str_t  bin;

    if (bytes > sizeof(raw) || RAND_bytes(raw, (int) bytes) != 1) {
        return NGX_ERROR;
    }

    out->data = ngx_pnalloc(pool, ngx_base64_encoded_length(bytes));
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    bin.data = raw;
    bin.len = bytes;
    ngx_encode_base64url(out, &bin);

    return NGX_OK;
}


/* constant time in the length of b, the secret we hold */
ngx_uint_t
ngx_astralform_secret_eq(ngx_str_t *a, ngx_str_t *b)
{
    u_char      diff;
    ngx_uint_t  i;

    diff = (u_char) (a->len != b->len);

    for (i = 0; i < b->len; i++) {
        diff |= b->data[i] ^ (i < a->len ? a->data[i] : 0);
    }

    return diff == 0;
}


ngx_int_t
ngx_astralform_sha256_b64url(ngx_pool_t *pool, ngx_str_t *in, ngx_str_t *out)
{
    u_char     md[SHA256_DIGEST_LENGTH];
    ngx_str_t  bin;

    if (SHA256(in->data, in->len, md) == NULL) {
        return NGX_ERROR;
    }

    out->data = ngx_pnalloc(pool, ngx_base64_encoded_length(sizeof(md)));
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    bin.data = md;
    bin.len = sizeof(md);
    ngx_encode_base64url(out, &bin);

    return NGX_OK;
}


/*
 * HMAC-SHA256 of data, as base64url, under a key derived from the sealing
 * key for one purpose only (HMAC(sealing key, purpose)), so a MAC made for
 * one use is worth nothing for another and the sealing key is never used
 * as is. Every instance with the same first key computes the same MAC.
 */
ngx_int_t
ngx_astralform_mac_b64url(ngx_pool_t *pool, ngx_array_t *keys,
    const char *purpose, ngx_str_t *data, ngx_str_t *out)
{
    u_char                 sub[SHA256_DIGEST_LENGTH], md[SHA256_DIGEST_LENGTH];
    ngx_str_t              bin;
    unsigned int           len;
    ngx_astralform_key_t  *key;

    if (keys->nelts == 0) {
        return NGX_ERROR;
    }

    key = keys->elts;

    if (HMAC(EVP_sha256(), key[0].key, NGX_ASTRALFORM_KEY_LEN,
             (u_char *) purpose, ngx_strlen(purpose), sub, &len)
        == NULL
        || HMAC(EVP_sha256(), sub, sizeof(sub), data->data, data->len, md,
                &len)
           == NULL)
    {
        ngx_explicit_memzero(sub, sizeof(sub));
        return NGX_ERROR;
    }

    ngx_explicit_memzero(sub, sizeof(sub));

    out->data = ngx_pnalloc(pool, ngx_base64_encoded_length(sizeof(md)));
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    bin.data = md;
    bin.len = sizeof(md);
    ngx_encode_base64url(out, &bin);

    return NGX_OK;
}


/*
 * Reads a small secret file into cf->pool, without its trailing newline
 * when trim is set. Errors name the directive being parsed and the file.
 */
ngx_int_t
ngx_astralform_read_secret_file(ngx_conf_t *cf, ngx_str_t *path,
    ngx_str_t *out, ngx_uint_t trim)
{
    u_char      *p;
    ssize_t      n;
    ngx_str_t    full, *directive;
    ngx_file_t   file;
    u_char       buf[NGX_ASTRALFORM_SECRET_MAX];

    directive = cf->args->elts;
    full = *path;

    if (ngx_conf_full_name(cf->cycle, &full, 1) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.name = full;
    file.log = cf->log;

    file.fd = ngx_open_file(full.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (file.fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "\"%V\" cannot read secret file \"%V\"",
                           &directive[0], &full);
        return NGX_ERROR;
    }

    n = ngx_read_file(&file, buf, sizeof(buf), 0);
    ngx_close_file(file.fd);

    if (n < 0) {
        return NGX_ERROR;
    }

    if ((size_t) n == sizeof(buf)) {
        ngx_explicit_memzero(buf, sizeof(buf));
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" secret file \"%V\" is too large",
                           &directive[0], &full);
        return NGX_ERROR;
    }

    p = buf + n;
    while (trim && p > buf && (p[-1] == '\n' || p[-1] == '\r')) {
        p--;
    }

    if (p == buf) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" secret file \"%V\" is empty",
                           &directive[0], &full);
        return NGX_ERROR;
    }

    out->len = p - buf;
    out->data = ngx_pnalloc(cf->pool, out->len + 1);
    if (out->data == NULL) {
        ngx_explicit_memzero(buf, sizeof(buf));
        return NGX_ERROR;
    }

    ngx_memcpy(out->data, buf, out->len);
    out->data[out->len] = '\0';
    ngx_explicit_memzero(buf, sizeof(buf));

    return NGX_OK;
}
