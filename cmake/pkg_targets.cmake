# pkg-config modules as imported targets whose flags are the same on every configure.
#
# FindPkgConfig (CMake 3.25) runs pkg-config only on the configure that first sees a module and rebuilds the
# IMPORTED_TARGET from cached variables on later configures. For a `-isystem DIR` in a module's cflags (libzmq on
# Debian: `-isystem /usr/include/mit-krb5`) the two paths disagree: the first configure makes DIR an include
# directory, every later one leaves `-isystem;DIR` as a compile option. The flags of everything linking the target
# then change between the first and the second configure, and all of it recompiles. omni_pkg_pin_isystem() gives the
# target one form: each `-isystem DIR` pair of <prefix>_CFLAGS_OTHER becomes an include directory (system, as every
# imported target's include directory is), the other options stay options.
function(omni_pkg_pin_isystem target prefix)
  if(NOT TARGET ${target})
    return()
  endif()
  set(dirs ${${prefix}_INCLUDE_DIRS})
  set(opts "")
  set(take_dir FALSE)
  foreach(flag IN LISTS ${prefix}_CFLAGS_OTHER)
    if(take_dir)
      list(APPEND dirs ${flag})
      set(take_dir FALSE)
    elseif(flag STREQUAL "-isystem")
      set(take_dir TRUE)
    elseif(flag MATCHES "^-isystem(.+)$")
      list(APPEND dirs ${CMAKE_MATCH_1})
    else()
      list(APPEND opts ${flag})
    endif()
  endforeach()
  set_property(TARGET ${target} PROPERTY INTERFACE_INCLUDE_DIRECTORIES "${dirs}")
  set_property(TARGET ${target} PROPERTY INTERFACE_COMPILE_OPTIONS "${opts}")
endfunction()
