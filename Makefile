# Thin wrapper over CMake. `make demo` and `make test` work on a fresh Debian machine:
# `make deps` installs only the Debian packages that are missing (needs root or sudo).
BUILD ?= build
JOBS ?= $(shell nproc)
DEB_PACKAGES := build-essential cmake pkg-config googletest libgtest-dev nlohmann-json3-dev libutf8proc-dev \
  libfftw3-dev libsoxr-dev libyaml-cpp-dev libzmq3-dev cppzmq-dev libsystemd-dev \
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
  gstreamer1.0-tools gstreamer1.0-alsa portaudio19-dev libasound2-dev libasound2-plugins libwebrtc-audio-processing-dev libspeexdsp-dev \
  python3 python3-zmq xz-utils clang libclang-rt-14-dev

.PHONY: all deps configure build test test-asan fuzz soak demo clean
all: build

deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing $$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "make deps: all Debian packages present"; fi

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

# Every libFuzzer target for FUZZ_SECONDS each (clang, build-fuzz/); `make fuzz FUZZ_SECONDS=3600` is the long run.
FUZZ_SECONDS ?= 60
fuzz: deps
	./tools/fuzz.sh $(FUZZ_SECONDS)

# The long soak: 2,000 mixed requests from 8 clients against omnid on the tiny model (CI runs 504).
SOAK_REQUESTS ?= 2000
soak: build
	cd $(BUILD) && OMNI_SOAK_REQUESTS=$(SOAK_REQUESTS) ctest --output-on-failure -V -R 'Soak\.'

demo: build
	./tools/demo.sh $(BUILD)

clean:
	rm -rf $(BUILD)
