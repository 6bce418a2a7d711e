-- bench/peer.lua: row (b) of bench/run.sh, the gateway's tool call written
-- the OpenResty way: agent key check, the user's sealed token from Redis
-- (one HGET, the gateway's own blob), AES-256-GCM opening, the provider GET
-- through a keep-alive proxy_pass subrequest, the answer wrapped with cjson.
local cjson = require "cjson.safe"
local redis = require "nginx.redis"    -- Debian's lua-nginx-redis: resty.redis
local b64 = require "ngx.base64"
local ffi = require "ffi"
local C = ffi.C

-- Debian's resty.aes (lua-nginx-string 0.11, nginx.aes) has no GCM, and the
-- gateway seals with AES-256-GCM: open through OpenSSL's EVP by FFI instead,
-- the calls later resty.aes versions make.
ffi.cdef [[
typedef struct evp_cipher_st EVP_CIPHER;
typedef struct evp_cipher_ctx_st EVP_CIPHER_CTX;
const EVP_CIPHER *EVP_aes_256_gcm(void);
EVP_CIPHER_CTX *EVP_CIPHER_CTX_new(void);
int EVP_DecryptInit_ex(EVP_CIPHER_CTX *c, const EVP_CIPHER *t, void *e,
                       const unsigned char *key, const unsigned char *iv);
int EVP_DecryptUpdate(EVP_CIPHER_CTX *c, unsigned char *out, int *outl,
                      const unsigned char *in, int inl);
int EVP_DecryptFinal_ex(EVP_CIPHER_CTX *c, unsigned char *out, int *outl);
int EVP_CIPHER_CTX_ctrl(EVP_CIPHER_CTX *c, int type, int arg, void *ptr);
]]

local M, conf, ctx = {}, nil, nil
local len, tag = ffi.new("int[1]"), ffi.new("unsigned char[16]")

function M.init(c)    -- key (32 bytes), redis_port, redis_timeout, hash,
    conf = c                -- project, auth ("Bearer <agent key>")
end

local function open(blob, aad)    -- v1.<kid>.<base64url(nonce|ct|tag)>
    local head, data = blob:match("^(v1%.[^.]+%.)(.+)$")
    local raw = head and b64.decode_base64url(data)
    if raw == nil or #raw < 28 then return nil end
    local n = #raw - 28
    local out = ffi.new("unsigned char[?]", n + 16)
    ctx = ctx or C.EVP_CIPHER_CTX_new()
    ffi.copy(tag, raw:sub(-16), 16)
    if C.EVP_DecryptInit_ex(ctx, C.EVP_aes_256_gcm(), nil, conf.key,
                            raw:sub(1, 12)) ~= 1
       or C.EVP_DecryptUpdate(ctx, nil, len, head .. aad, #head + #aad) ~= 1
       or C.EVP_DecryptUpdate(ctx, out, len, raw:sub(13, -17), n) ~= 1
       or C.EVP_CIPHER_CTX_ctrl(ctx, 0x11, 16, tag) ~= 1 -- GCM_SET_TAG
       or C.EVP_DecryptFinal_ex(ctx, out + n, len) ~= 1
    then
        return nil
    end
    return ffi.string(out, n)
end

function M.call()
    local user = ngx.var.http_x_astralform_user
    if ngx.var.http_authorization ~= conf.auth or user == nil then
        return ngx.exit(401)
    end
    ngx.req.read_body()
    local req = cjson.decode(ngx.req.get_body_data() or "")
    if type(req) ~= "table" or req.name ~= "slack_list_channels" then
        return ngx.exit(400)
    end
    local red = redis:new()
    red:set_timeout(conf.redis_timeout)
    if not red:connect("127.0.0.1", conf.redis_port) then
        return ngx.exit(503)
    end
    local blob = red:hget(conf.hash, user)
    red:set_keepalive(60000, 64)
    local rec = type(blob) == "string" and cjson.decode(open(blob,
        "astralform|" .. conf.project .. "|slack|token|" .. user) or "")
    if type(rec) ~= "table" or type(rec.access_token) ~= "string" then
        return ngx.exit(403)
    end
    local res = ngx.location.capture("/_slack", { args = req.arguments or {},
        vars = { bearer = "Bearer " .. rec.access_token } })
    local result = res.status == 200 and cjson.decode(res.body)
    if type(result) ~= "table" or result.ok ~= true then
        return ngx.exit(502)
    end
    ngx.header["Content-Type"] = "application/json"
    ngx.print(cjson.encode({ tool = req.name, result = result }))
end

return M
