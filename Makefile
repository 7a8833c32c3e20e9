# Thin wrapper over CMake. `make demo` and `make test` work on a fresh Debian machine:
# `make deps` installs only the Debian packages that are missing (needs root or sudo).
BUILD ?= build
JOBS ?= $(shell nproc)
DEB_PACKAGES := build-essential cmake pkg-config googletest libgtest-dev nlohmann-json3-dev libutf8proc-dev \
  libfftw3-dev libpng-dev libjpeg62-turbo-dev libsoxr-dev libyaml-cpp-dev libzmq3-dev cppzmq-dev libsystemd-dev \
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
  gstreamer1.0-tools gstreamer1.0-alsa portaudio19-dev libasound2-dev libasound2-plugins libwebrtc-audio-processing-dev libspeexdsp-dev \
  python3 python3-zmq xz-utils
# Only `make fuzz` needs clang and its libFuzzer/sanitizer runtimes (about 250 MB): `make deps-fuzz`.
# libclang-rt-dev is the Debian default-version package (Debian 12: clang 14, Debian 13: clang 19).
FUZZ_DEB_PACKAGES := clang libclang-rt-dev

.PHONY: all deps deps-fuzz configure build test test-asan fuzz fuzz-long soak demo bench-latency clean package deps-system test-system \
  test-trixie test-arm64
all: build

# Installs the packages of $(1) that are missing; $(2) names the step in its messages.
define install_missing
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "make $(2): installing $$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "make $(2): all Debian packages present"; fi
endef

deps:
	$(call install_missing,$(DEB_PACKAGES),deps)

deps-fuzz: deps
	$(call install_missing,$(FUZZ_DEB_PACKAGES),deps-fuzz)

configure: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: configure
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) -LE gpu

# The whole CPU suite again under AddressSanitizer + UndefinedBehaviorSanitizer (separate build-asan/).
# Any ASan report, leak or UB report aborts the test that caused it.
ASAN_BUILD ?= build-asan
test-asan: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOMNI_CUDA=OFF -DOMNI_SANITIZE=ON
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1 \
	  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ctest --output-on-failure -j $(JOBS) -LE gpu

# Every libFuzzer target for FUZZ_SECONDS each (clang, build-fuzz/), continuing from tests/fuzz/corpus and
# merging new finds into it; results per target in build-fuzz/runs/results.md (docs/reliability.md).
FUZZ_SECONDS ?= 60
fuzz: deps-fuzz
	./tools/fuzz.sh $(FUZZ_SECONDS)

# The long run: FUZZ_SECONDS (default 1800) per target, two targets at a time at the lowest priority so the
# machine stays usable. Record build-fuzz/runs/results.md in docs/reliability.md and commit the grown corpus.
fuzz-long: deps-fuzz
	FUZZ_JOBS=$${FUZZ_JOBS:-2} FUZZ_NICE=$${FUZZ_NICE:-19} ./tools/fuzz.sh \
	  $(if $(filter command line environment,$(origin FUZZ_SECONDS)),$(FUZZ_SECONDS),1800)

# The long soak: 2,000 mixed requests from 8 clients against omnid on the tiny model (CI runs 504).
SOAK_REQUESTS ?= 2000
soak: build
	cd $(BUILD) && OMNI_SOAK_REQUESTS=$(SOAK_REQUESTS) ctest --output-on-failure -V -R 'Soak\.'

demo: build
	./tools/demo.sh $(BUILD)

# End of speech -> first audio of the real daemon, speculative turns on and off (docs/performance.md).
# BENCH_MODEL (default $(BUILD)/bench-model/models/full-width; the script says how to make one), BENCH_DEVICE,
# BENCH_RECORDING, BENCH_SPECULATE ("0 300"), BENCH_RUNS (3): tools/bench_latency.sh.
bench-latency: build
	./tools/bench_latency.sh $(BUILD)

# The Debian package (CPack, packaging/package.cmake) from a CPU-only build of the installed programs and the
# client library:
# $(PKG_BUILD)/omnid_<version>_<arch>.deb. docs/operations.md "Packaging".
PKG_BUILD ?= build-pkg
package: deps
	cmake -S . -B $(PKG_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOMNI_CUDA=OFF -DCMAKE_INSTALL_PREFIX=/usr
	cmake --build $(PKG_BUILD) -j $(JOBS) --target omnid omnictl omni-run omni-bench omnid_client
	rm -f $(PKG_BUILD)/omnid_*.deb
	cd $(PKG_BUILD) && cpack -G DEB
	@ls $(PKG_BUILD)/omnid_*.deb

# The system test: the package installed with apt into a fresh minimal Debian, booted with systemd under
# systemd-nspawn and checked from inside (tests/system/run.sh; root). deps-system installs its tools.
SYSTEM_TEST_PACKAGES := mmdebstrap systemd-container dpkg-dev
deps-system:
	$(call install_missing,$(SYSTEM_TEST_PACKAGES),deps-system)

test-system: package deps-system
	tests/system/run.sh $(PKG_BUILD)

# Debian 13: `make $(TRIXIE_TARGET)` (default test) in a fresh trixie root (build-trixie/; tests/system/trixie.sh);
# CI runs its sanitizer suite there (TRIXIE_TARGET=test-asan). test-arm64: the engine cross-built for arm64 in that
# root, its unit and golden tests under qemu-aarch64 (docs/operations.md).
TRIXIE_TARGET ?= test
test-trixie: deps-system
	TRIXIE_TARGET=$(TRIXIE_TARGET) tests/system/trixie.sh native

test-arm64: deps-system
	$(call install_missing,qemu-user-static,test-arm64)
	tests/system/trixie.sh arm64

clean:
	rm -rf $(BUILD)
