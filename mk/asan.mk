# Sanitizer and valgrind runs of the whole suite (issue 5, item 1).
#   make asan            module built with ASan+UBSan, whole suite, reports checked
#   make asan-build      only build build/asan/ngx_astralform_module.so
#   make valgrind        whole suite with nginx under valgrind memcheck
#   TESTS="t/050-tools.t t/051-nonblocking.t" make asan   a subset
#   ASAN_CC=gcc make asan                               gcc's runtimes instead
# Debian ships nginx's headers only, so the stock /usr/sbin/nginx runs the
# sanitized module with the compiler's runtime preloaded; scripts/asan.sh
# explains the wrapper and the choice of clang.  Nothing here touches the
# normal build/nginx or ngx_astralform_module.so.

ASAN_CC        ?= clang
# one build tree per compiler: build/asan (clang), build/asan-gcc
ASAN_BUILD     := $(BUILD)/asan$(if $(filter clang,$(notdir $(ASAN_CC))),,-$(notdir $(ASAN_CC)))
ASAN_NGX_BUILD := $(ASAN_BUILD)/nginx
ASAN_MODULE    := $(ASAN_BUILD)/ngx_astralform_module.so
ASAN_FLAGS     := -fsanitize=address,undefined -fno-omit-frame-pointer
# clang registers an instrumented global through its symbol, and a dynamic
# module defines ngx_modules, ngx_module_names and ngx_module_order like the
# nginx binary does: the binary's definitions win, and the module would
# poison the memory after the binary's ngx_modules (a global-buffer-overflow
# in ngx_cycle_modules() at startup).  Private aliases register the
# module's own copies.
ASAN_CLANG_OPT := $(if $(filter clang%,$(notdir $(ASAN_CC))),-mllvm -asan-use-private-alias=1)
# -O1 keeps stacks readable; no -fno-sanitize-recover on purpose: UBSan
# reports and carries on (halt_on_error=0), t/999 fails the run.
ASAN_CC_OPT    ?= -g -O1 -fPIC -Wall -Wextra -Wno-unused-parameter \
                  $(ASAN_FLAGS) $(ASAN_CLANG_OPT)
ASAN_LD_OPT    ?= -fPIC $(ASAN_FLAGS)
TESTS          ?=

.PHONY: asan asan-build asan-deps valgrind

asan-build: asan-deps $(ASAN_MODULE)

asan-deps:
	@ASAN_CC="$(ASAN_CC)" bash scripts/asan.sh --deps

$(ASAN_NGX_BUILD)/objs/Makefile: config $(BUILD)/srclist mk/asan.mk
	rm -rf $(ASAN_NGX_BUILD) && mkdir -p $(ASAN_BUILD)
	cp -r $(NGX_SRC) $(ASAN_NGX_BUILD)
	cd $(ASAN_NGX_BUILD) && bash -c '. ./conf_flags && ./configure \
	    "$${NGX_CONF_FLAGS[@]}" --with-cc="$(ASAN_CC)" \
	    --with-cc-opt="$(ASAN_CC_OPT)" --with-ld-opt="$(ASAN_LD_OPT)" \
	    --add-dynamic-module=$(CURDIR)' > $(ASAN_BUILD)/configure.log

$(ASAN_MODULE): $(ASAN_NGX_BUILD)/objs/Makefile $(SRCS)
	$(MAKE) -s -C $(ASAN_NGX_BUILD) -f objs/Makefile modules
	cp $(ASAN_NGX_BUILD)/objs/ngx_astralform_module.so $@

asan: deps asan-deps $(ASAN_MODULE)
	@ASAN_CC="$(ASAN_CC)" ASAN_MODULE="$(ASAN_MODULE)" \
	    bash scripts/asan.sh $(TESTS)

valgrind: deps $(MODULE)
	@bash scripts/valgrind.sh $(TESTS)
