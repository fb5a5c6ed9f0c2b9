# CPack pre-build script (CPACK_PRE_BUILD_SCRIPTS), run after CPack has installed each packaged
# component into its staging directory and before the .deb files are made from them.
#
# 1. The "unsorted" component holds what install() rules without a COMPONENT installed (the
#    default component name, set in CMakeLists.txt). It is not packaged itself: it is installed
#    here into a scratch directory and sorted by destination, man pages of section 3 into dev
#    (librill-dev) and of section 1 into tools (rill-tools). Anything else fails the packaging
#    with its name, so no file is lost from the packages without anyone noticing.
# 2. Man pages in the dev and tools staging directories are compressed (gzip -9n), as Debian
#    installs them; symbolic links among them are renamed and pointed at the .gz file.
# 3. Static libraries lose their debug sections (strip --strip-debug, as Debian's dh_strip does;
#    CPACK_STRIP_FILES strips only the programs and shared libraries).
#
# Uses CPACK_TEMPORARY_DIRECTORY (which holds one directory per component), and the CPACK_RILL_*
# values CMakeLists.txt sets.
cmake_minimum_required(VERSION 3.25)
if(NOT CPACK_GENERATOR STREQUAL "DEB")
  return() # the other generators package everything as one, unsorted included
endif()

set(_stage "${CPACK_TEMPORARY_DIRECTORY}")
set(_prefix "${CPACK_PACKAGING_INSTALL_PREFIX}")
string(REGEX REPLACE "^/" "" _rel_prefix "${_prefix}")
set(_mandir "${_rel_prefix}/${CPACK_RILL_MANDIR}")
if(NOT IS_DIRECTORY "${_stage}/runtime" OR NOT CPACK_RILL_BUILD_DIR)
  message(FATAL_ERROR "cpack-pre-build: expected one staging directory per component under "
                      "${_stage} (CPACK_DEB_COMPONENT_INSTALL)")
endif()

# ---- 1. sort the unsorted component ---------------------------------------------------------
set(_scratch "${CPACK_TOPLEVEL_DIRECTORY}/unsorted")
file(REMOVE_RECURSE "${_scratch}")
set(_config "")
if(CPACK_BUILD_CONFIG)
  set(_config --config "${CPACK_BUILD_CONFIG}")
endif()
# CPack leaves DESTDIR set to the last component's staging directory: not for this install.
execute_process(
  COMMAND "${CMAKE_COMMAND}" -E env --unset=DESTDIR "${CMAKE_COMMAND}" --install "${CPACK_RILL_BUILD_DIR}" --component unsorted
          --prefix "${_scratch}${_prefix}" ${_config}
  RESULT_VARIABLE _rc OUTPUT_QUIET)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "cpack-pre-build: installing the unsorted component failed (${_rc})")
endif()

file(GLOB_RECURSE _files LIST_DIRECTORIES false RELATIVE "${_scratch}" "${_scratch}/*")
foreach(_f IN LISTS _files)
  if(_f MATCHES "^${_mandir}/man3/")
    set(_comp dev)
  elseif(_f MATCHES "^${_mandir}/man1/")
    set(_comp tools)
  else()
    message(FATAL_ERROR "cpack-pre-build: /${_f} was installed by a rule without a COMPONENT "
                        "and is no man page of section 1 or 3: give that install() rule "
                        "COMPONENT runtime, dev or tools")
  endif()
  if(NOT IS_DIRECTORY "${_stage}/${_comp}")
    message(STATUS "cpack-pre-build: /${_f} left out: the ${_comp} package is not built")
    continue()
  endif()
  get_filename_component(_dir "${_stage}/${_comp}/${_f}" DIRECTORY)
  file(MAKE_DIRECTORY "${_dir}")
  file(RENAME "${_scratch}/${_f}" "${_stage}/${_comp}/${_f}")
  message(STATUS "cpack-pre-build: /${_f} -> ${_comp}")
endforeach()
file(REMOVE_RECURSE "${_scratch}")

# ---- 2. compress the man pages ----------------------------------------------------------------
foreach(_comp dev tools)
  if(NOT IS_DIRECTORY "${_stage}/${_comp}/${_mandir}")
    continue()
  endif()
  file(GLOB_RECURSE _pages LIST_DIRECTORIES false "${_stage}/${_comp}/${_mandir}/*")
  foreach(_p IN LISTS _pages)
    if(_p MATCHES "\\.gz$")
      continue()
    endif()
    if(IS_SYMLINK "${_p}")
      file(READ_SYMLINK "${_p}" _target)
      file(REMOVE "${_p}")
      file(CREATE_LINK "${_target}.gz" "${_p}.gz" SYMBOLIC)
    else()
      execute_process(COMMAND gzip -9n "${_p}" RESULT_VARIABLE _rc)
      if(NOT _rc EQUAL 0)
        message(FATAL_ERROR "cpack-pre-build: gzip ${_p} failed (${_rc})")
      endif()
    endif()
  endforeach()
endforeach()

# ---- 3. strip the static libraries' debug sections -------------------------------------------
if(CPACK_RILL_STRIP)
  file(GLOB_RECURSE _archives LIST_DIRECTORIES false "${_stage}/*.a")
  foreach(_a IN LISTS _archives)
    execute_process(COMMAND "${CPACK_RILL_STRIP}" --strip-debug --enable-deterministic-archives
                            "${_a}" RESULT_VARIABLE _rc)
    if(NOT _rc EQUAL 0)
      message(FATAL_ERROR "cpack-pre-build: strip --strip-debug ${_a} failed (${_rc})")
    endif()
  endforeach()
endif()
