# Install rules (GNUInstallDirs) and the Debian package (CPack's DEB generator). Included by the top-level
# CMakeLists.txt after the daemon's targets exist. docs/operations.md "Packaging" says what goes where and why
# CPack rather than debhelper.
#
#   cmake -S . -B build -DCMAKE_INSTALL_PREFIX=/usr && cmake --build build && sudo cmake --install build
#   make package                                  # Debian: build-pkg/omnid_<version>_<arch>.deb (cpack -G DEB)
#
# The unit runs /usr/bin/omnid with /etc/omnid/omnid.yaml, so a service install wants the /usr prefix (for which
# GNUInstallDirs puts the configuration in /etc); another prefix installs the programs for use by hand.
# The systemd snippets go under <prefix>/lib (not CMAKE_INSTALL_LIBDIR, which is multiarch on Debian): systemd
# reads /usr/lib/systemd/system, /usr/lib/sysusers.d and /usr/lib/tmpfiles.d. The configuration goes to
# CMAKE_INSTALL_FULL_SYSCONFDIR, which GNUInstallDirs makes /etc for the /usr prefix.
include(GNUInstallDirs)
# `make package` builds only the installed programs; cpack must not build every target (tests) first.
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY ON)

set(OMNI_PACKAGE_VERSION "0.1.0" CACHE STRING "Version of the omnid package (make package)")
set(OMNI_SYSTEMD_UNIT_DIR "lib/systemd/system" CACHE STRING "Where the unit goes, relative to the prefix")

foreach(program omnid omnictl omni-run omni-bench)
  if(TARGET ${program})
    install(TARGETS ${program} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  endif()
endforeach()

if(OMNI_DAEMON AND NOT CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  message(STATUS "omnid: install prefix ${CMAKE_INSTALL_PREFIX}; the systemd unit runs /usr/bin/omnid with "
                 "/etc/omnid/omnid.yaml (configure with -DCMAKE_INSTALL_PREFIX=/usr to install omnid as a service)")
endif()
if(OMNI_DAEMON)
  install(FILES ${CMAKE_SOURCE_DIR}/systemd/omnid.service DESTINATION ${OMNI_SYSTEMD_UNIT_DIR})
  install(FILES ${CMAKE_SOURCE_DIR}/systemd/omnid.sysusers DESTINATION lib/sysusers.d RENAME omnid.conf)
  install(FILES ${CMAKE_SOURCE_DIR}/systemd/omnid.tmpfiles DESTINATION lib/tmpfiles.d RENAME omnid.conf)
  install(FILES ${CMAKE_SOURCE_DIR}/config/omnid.yaml DESTINATION ${CMAKE_INSTALL_FULL_SYSCONFDIR}/omnid)
endif()
install(FILES ${CMAKE_SOURCE_DIR}/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
file(GLOB OMNI_DOC_PAGES ${CMAKE_SOURCE_DIR}/docs/*.md)
install(FILES ${OMNI_DOC_PAGES} DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(DIRECTORY ${CMAKE_SOURCE_DIR}/tools/examples/ DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples
        FILES_MATCHING PATTERN "*.py" PATTERN "*.cpp")

# ------------------------------------------------------------------------------------------------ Debian package
set(CPACK_GENERATOR "DEB")
set(CPACK_PACKAGE_NAME "omnid")
set(CPACK_PACKAGE_VERSION "${OMNI_PACKAGE_VERSION}")
set(CPACK_PACKAGING_INSTALL_PREFIX "/usr")
set(CPACK_STRIP_FILES ON)  # no debug sections in the package (the build directory keeps them)
set(CPACK_PACKAGE_CONTACT "omnid maintainers <omnid@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "always-on voice assistant daemon for Qwen3-Omni")
# The synopsis is CPACK_PACKAGE_DESCRIPTION_SUMMARY; CPack indents these lines into the extended description.
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION "omnid keeps a Qwen3-Omni checkpoint loaded, listens to a microphone through GStreamer,
answers in synthesized speech and takes requests from other processes over ZeroMQ (omnictl). It runs
as the systemd service omnid.service; the checkpoint goes to /var/lib/omnid/models (see
/usr/share/doc/omnid/operations.md).")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # omnid_<version>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_SECTION "sound")
set(CPACK_DEBIAN_PACKAGE_PRIORITY "optional")
# Library dependencies come from the binaries (dpkg-shlibdeps); what is loaded at run time by name cannot be
# seen there: GStreamer's elements (audioconvert, audioresample in -base; autoaudiosrc, wavparse in -good) and
# systemd-sysusers / systemd-tmpfiles for the maintainer scripts.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# The client library (libomnid-client.so.2, its header, CMake package and pkg-config file) ships in the same package
# for apps on the robot; a shlibs file and the ldconfig trigger come with it.
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")
set(CPACK_DEBIAN_PACKAGE_DEPENDS "systemd, gstreamer1.0-plugins-base, gstreamer1.0-plugins-good")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "gstreamer1.0-alsa, libasound2-plugins")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    "${CMAKE_SOURCE_DIR}/packaging/debian/conffiles;${CMAKE_SOURCE_DIR}/packaging/debian/postinst;${CMAKE_SOURCE_DIR}/packaging/debian/prerm;${CMAKE_SOURCE_DIR}/packaging/debian/postrm;${CMAKE_SOURCE_DIR}/packaging/debian/triggers")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# Only the runtime install: no static libraries or test programs from subprojects.
include(CPack)
