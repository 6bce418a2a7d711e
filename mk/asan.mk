# Sanitizer and valgrind runs of the whole suite (issue 5, item 1).
#   make asan            module built with ASan+UBSan, whole suite, reports checked
#   make asan-build      only build build/asan/ngx_astralform_module.asan.so
#   make valgrind        whole suite with nginx under valgrind memcheck
#   TESTS="t/050-tools.t t/051-nonblocking.t" make asan   a subset
#   ASAN_CC=clang make asan                             clang's runtime instead
# Debian ships nginx's headers only, so the stock /usr/sbin/nginx runs the
# sanitized module with the compiler's runtime preloaded; scripts/asan.sh
# explains the wrapper.  Nothing here touches the normal build/ or the .so.

ASAN_CC        ?= gcc
ASAN_BUILD     := $(BUILD)/asan
ASAN_NGX_BUILD := $(ASAN_BUILD)/nginx
ASAN_MODULE    := $(ASAN_BUILD)/ngx_astralform_module.asan.so
ASAN_FLAGS     := -fsanitize=address,undefined -fno-omit-frame-pointer
# -O1 keeps stacks readable; -fno-sanitize-recover is off on purpose:
# UBSan reports and carries on (halt_on_error=0), t/999 fails the run.
ASAN_CC_OPT    ?= -g -O1 -fPIC -Wall -Wextra -Wno-unused-parameter \
                  $(ASAN_FLAGS)
ASAN_LD_OPT    ?= -fPIC $(ASAN_FLAGS)
TESTS          ?=

.PHONY: asan asan-build valgrind

asan-build: $(ASAN_MODULE)

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

asan: deps $(ASAN_MODULE)
	@ASAN_CC="$(ASAN_CC)" bash scripts/asan.sh $(TESTS)

valgrind: deps $(MODULE)
	@bash scripts/valgrind.sh $(TESTS)
