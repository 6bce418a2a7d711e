# Build ngx_astralform_module.so against Debian 12's nginx 1.22 (nginx-dev).
#   make        build the module
#   make run    install packages, build, start Redis + nginx with conf/nginx.conf
#   make test   install packages, build, run the whole suite
NGX_SRC   ?= /usr/share/nginx/src
BUILD     := $(CURDIR)/build
NGX_BUILD := $(BUILD)/nginx
MODULE    := ngx_astralform_module.so
CC_OPT    ?= -g -O2 -fPIC -Wall -Wextra -Wno-unused-parameter
LD_OPT    ?= -fPIC
SRCS      := $(wildcard src/*.c src/*.h) config
# html/ and docs/openapi.json, compiled in as a generated header
ASSETS    := $(BUILD)/ngx_astralform_assets.h
SRCS      += $(ASSETS)

.PHONY: all build deps run stop test clean

all build: $(MODULE)

# Reconfigure only when the set of source files changes (config globs src/).
$(shell mkdir -p $(BUILD); ls src/*.c src/*.h 2>/dev/null > $(BUILD)/srclist.new; \
    cmp -s $(BUILD)/srclist.new $(BUILD)/srclist || mv $(BUILD)/srclist.new $(BUILD)/srclist)

$(NGX_BUILD)/objs/Makefile: config $(BUILD)/srclist
	rm -rf $(NGX_BUILD) && mkdir -p $(BUILD)
	cp -r $(NGX_SRC) $(NGX_BUILD)
	cd $(NGX_BUILD) && bash -c '. ./conf_flags && ./configure "$${NGX_CONF_FLAGS[@]}" \
	    --with-cc-opt="$(CC_OPT)" --with-ld-opt="$(LD_OPT)" \
	    --add-dynamic-module=$(CURDIR)' > $(BUILD)/configure.log

$(MODULE): $(NGX_BUILD)/objs/Makefile $(SRCS)
	$(MAKE) -s -C $(NGX_BUILD) -f objs/Makefile modules
	@# a new file, renamed in: a running nginx keeps its mapped copy intact
	cp $(NGX_BUILD)/objs/$(MODULE) $@.tmp && mv -f $@.tmp $@

$(ASSETS): $(wildcard html/*) docs/openapi.json scripts/assets.pl
	perl scripts/assets.pl $@ $(CURDIR)

deps:
	@bash scripts/install-deps.sh

run: deps $(MODULE)
	@bash scripts/run.sh

stop:
	@bash scripts/run.sh stop

test: deps $(MODULE)
	@bash t/run.sh

clean:
	rm -rf $(BUILD) $(MODULE) t/servroot*

# Hardening targets (make asan, make valgrind, make fuzz) live in mk/.
-include mk/*.mk
