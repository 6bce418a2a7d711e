# make fuzz: libFuzzer harnesses for the parsers of untrusted bytes
# (fuzz/README.md). Each harness is built with Debian's clang, libFuzzer,
# AddressSanitizer and UndefinedBehaviorSanitizer, then run for
# FUZZ_SECONDS (0: only replay the seed corpus) from fuzz/corpus/NAME.
#
#   make fuzz                                 every harness, 60 s each
#   make fuzz FUZZ_TARGETS="sse redis" FUZZ_SECONDS=600
#   make fuzz FUZZ_SECONDS=0                  seeds only (a regression run)

FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= $(FUZZ_ALL)
FUZZ_CC      ?= clang
FUZZ_DIR     := $(BUILD)/fuzz
FUZZ_OBJ     := $(FUZZ_DIR)/obj
# UBSan stays recoverable so that fuzz/known.supp can silence reported
# findings (FUZZ_KNOWN); fuzz/run.sh makes every report fatal otherwise
FUZZ_CFLAGS  ?= -g -O1 -fno-omit-frame-pointer \
                -fsanitize=fuzzer,address,undefined
FUZZ_INCS    := -I$(NGX_BUILD)/objs \
                $(addprefix -I$(NGX_BUILD)/src/,core event event/modules \
                    os/unix http http/modules http/v2) \
                -Isrc -Ifuzz
FUZZ_DEFS    := -DNGX_FUZZ -DFUZZ_ROOT='"$(CURDIR)"'
FUZZ_LIBS    := -ljansson -lhiredis -lcrypto -lpcre2-8 -lcurl
FUZZ_HDRS    := $(wildcard src/*.h fuzz/*.h) mk/fuzz.mk

FUZZ_BASE    := ngx_shim fuzz_util
FUZZ_GATEWAY := $(FUZZ_BASE) fuzz_gateway ngx_astralform_answer \
                ngx_astralform_identity ngx_astralform_catalog ngx_astralform_scrub \
                ngx_astralform_crypto ngx_astralform_store \
                ngx_astralform_tokens ngx_astralform_tools \
                ngx_astralform_connectors ngx_astralform_mcp_client \
                ngx_astralform_jsonrpc ngx_astralform_sse \
                ngx_astralform_schema ngx_astralform_quota \
                ngx_astralform_record ngx_astralform_json_check

FUZZ_LINK_schema   := $(FUZZ_BASE) ngx_astralform_schema
FUZZ_LINK_open     := $(FUZZ_BASE) ngx_astralform_crypto
FUZZ_LINK_body     := $(FUZZ_GATEWAY)
FUZZ_LINK_catalog  := $(FUZZ_GATEWAY)
FUZZ_LINK_provider := $(FUZZ_GATEWAY)
FUZZ_LINK_sse      := $(FUZZ_GATEWAY)
FUZZ_LINK_redis    := $(FUZZ_GATEWAY)
FUZZ_LINK_token    := $(FUZZ_GATEWAY) ngx_astralform_oauth_token \
                      ngx_astralform_oauth_util
FUZZ_LINK_origin   := $(FUZZ_BASE) ngx_astralform_catalog
FUZZ_LINK_jsonrpc  := $(FUZZ_BASE) ngx_astralform_jsonrpc
FUZZ_LINK_record   := $(FUZZ_BASE) ngx_astralform_record
FUZZ_LINK_json_check := $(FUZZ_BASE) ngx_astralform_json_check
FUZZ_LINK_http1    := $(FUZZ_BASE) ngx_astralform_http1
FUZZ_LINK_scrub    := $(FUZZ_GATEWAY) ngx_astralform_oauth_token \
                      ngx_astralform_oauth_util

FUZZ_BINS := $(addprefix $(FUZZ_DIR)/fuzz_,$(FUZZ_TARGETS))

.PHONY: fuzz

fuzz: $(FUZZ_BINS)
	@FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_DIR=$(FUZZ_DIR) \
	    bash fuzz/run.sh $(FUZZ_TARGETS)

$(FUZZ_OBJ)/%.o: src/%.c $(FUZZ_HDRS) $(NGX_BUILD)/objs/Makefile
	@mkdir -p $(FUZZ_OBJ)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_DEFS) $(FUZZ_INCS) -c $< -o $@

$(FUZZ_OBJ)/%.o: fuzz/%.c $(FUZZ_HDRS) $(NGX_BUILD)/objs/Makefile
	@mkdir -p $(FUZZ_OBJ)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_DEFS) $(FUZZ_INCS) -c $< -o $@

FUZZ_ALL := schema open body catalog provider sse redis token origin scrub \
            jsonrpc record json_check http1

define FUZZ_RULE
$(FUZZ_DIR)/fuzz_$(1): $(FUZZ_OBJ)/fuzz_$(1).o \
        $(addprefix $(FUZZ_OBJ)/,$(addsuffix .o,$(FUZZ_LINK_$(1))))
	$(FUZZ_CC) $(FUZZ_CFLAGS) $$^ -o $$@ $(FUZZ_LIBS)
endef

$(foreach t,$(FUZZ_ALL),$(eval $(call FUZZ_RULE,$(t))))
