# Cross build for arm64 (Jetson's CPU) with Debian's cross toolchain (g++-aarch64-linux-gnu) and the arm64 -dev
# packages installed through multiarch (dpkg --add-architecture arm64). Tests run under qemu-aarch64 with the
# multiarch libraries of the same root (-L /). tests/system/trixie.sh arm64 uses it.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig")
find_program(OMNI_QEMU_AARCH64 NAMES qemu-aarch64-static qemu-aarch64 REQUIRED)
set(CMAKE_CROSSCOMPILING_EMULATOR ${OMNI_QEMU_AARCH64} -L /)
