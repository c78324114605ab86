# Locating ParaView's CMake package without loading it.
#
# A Python plugin needs nothing from ParaView's CMake package but its version and plugin
# subdirectory. Loading the package (find_package(ParaView), with or without COMPONENTS) runs
# vtk-config.cmake, which calls find_package for the VTK modules' third-party dependencies (MPI,
# Qt5, HDF5, utf8cpp, …): against Debian's paraview-dev that needs a compiler and a long list of
# other -dev packages, and a failing FindMPI try_compile is a hard configure error even under
# QUIET. So this module searches the places find_package would search for the config file
# (ParaView_DIR, <prefix>/lib/<arch>/cmake/paraview-*, <prefix>/lib*/cmake/…, <prefix>/share/cmake/…
# for the prefixes in CMAKE_PREFIX_PATH and CMAKE_SYSTEM_PREFIX_PATH), and reads the package's
# version file (the same script find_package evaluates first) and the plugin subdirectory that
# paraview-config.cmake declares. The full package is loaded only to build a native plugin.
#
# globscope_locate_paraview() sets, in the caller's scope:
#   GLOBSCOPE_PARAVIEW_FOUND          TRUE when a ParaView CMake package was found
#   GLOBSCOPE_PARAVIEW_VERSION        its full version (e.g. 5.11.0)
#   GLOBSCOPE_PARAVIEW_PLUGIN_SUBDIR  plugin subdirectory under the library dir (paraview-5.11/plugins)
# and the cache entry ParaView_DIR (the folder holding paraview-config.cmake). Honours
# -DParaView_DIR=… (only that folder is looked at), ParaView_ROOT, CMAKE_PREFIX_PATH and
# CMAKE_DISABLE_FIND_PACKAGE_ParaView. When several are installed, the newest version wins.

set(_globscope_pv_config_names paraview-config.cmake ParaViewConfig.cmake)

# Version of the ParaView package in `dir` ("" when `dir` holds no ParaView package).
function(_globscope_paraview_package_version dir out)
  set(${out} "" PARENT_SCOPE)
  set(_config "")
  foreach(_name IN LISTS _globscope_pv_config_names)
    if(EXISTS "${dir}/${_name}")
      set(_config "${dir}/${_name}")
      break()
    endif()
  endforeach()
  if(NOT _config)
    return()
  endif()
  foreach(_vname paraview-config-version.cmake ParaViewConfigVersion.cmake)
    if(EXISTS "${dir}/${_vname}")
      # What find_package does with a version file, asking for no particular version.
      set(PACKAGE_FIND_NAME ParaView)
      set(PACKAGE_FIND_VERSION "")
      set(PACKAGE_FIND_VERSION_COUNT 0)
      unset(PACKAGE_VERSION)
      unset(PACKAGE_VERSION_UNSUITABLE)
      include("${dir}/${_vname}")
      if(PACKAGE_VERSION AND NOT PACKAGE_VERSION_UNSUITABLE)
        set(${out} "${PACKAGE_VERSION}" PARENT_SCOPE)
      endif()
      return()
    endif()
  endforeach()
  # No version file: the config itself says `set("${CMAKE_FIND_PACKAGE_NAME}_VERSION" "x.y.z")`.
  file(STRINGS "${_config}" _line REGEX "_VERSION\" \"[0-9]+\\.[0-9]+" LIMIT_COUNT 1)
  if(_line MATCHES "_VERSION\" \"([0-9]+\\.[0-9]+[0-9.]*)\"")
    set(${out} "${CMAKE_MATCH_1}" PARENT_SCOPE)
  endif()
endfunction()

function(globscope_locate_paraview)
  set(GLOBSCOPE_PARAVIEW_FOUND FALSE PARENT_SCOPE)
  set(GLOBSCOPE_PARAVIEW_VERSION "" PARENT_SCOPE)
  set(GLOBSCOPE_PARAVIEW_PLUGIN_SUBDIR "" PARENT_SCOPE)
  if(CMAKE_DISABLE_FIND_PACKAGE_ParaView)
    return()
  endif()

  set(_candidates "")
  if(ParaView_DIR AND NOT ParaView_DIR MATCHES "-NOTFOUND$")
    set(_candidates "${ParaView_DIR}")           # an explicit choice: look nowhere else
  elseif(DEFINED ENV{ParaView_DIR} AND NOT "$ENV{ParaView_DIR}" STREQUAL "")
    set(_candidates "$ENV{ParaView_DIR}")
  else()
    set(_prefixes ${ParaView_ROOT} $ENV{ParaView_ROOT} ${CMAKE_PREFIX_PATH})
    if(DEFINED ENV{CMAKE_PREFIX_PATH})
      string(REPLACE ":" ";" _env_prefixes "$ENV{CMAKE_PREFIX_PATH}")
      list(APPEND _prefixes ${_env_prefixes})
    endif()
    list(APPEND _prefixes ${CMAKE_SYSTEM_PREFIX_PATH})
    list(REMOVE_DUPLICATES _prefixes)
    foreach(_prefix IN LISTS _prefixes)
      # The layouts find_package searches in config mode. lib/<arch> is globbed: a project without
      # compiled languages has no CMAKE_LIBRARY_ARCHITECTURE, which is why a plain
      # find_package(ParaView) here misses Debian's /usr/lib/x86_64-linux-gnu/cmake/paraview-5.11.
      file(GLOB _dirs LIST_DIRECTORIES true
           "${_prefix}/lib/*/cmake/paraview-*" "${_prefix}/lib/*/cmake/ParaView*"
           "${_prefix}/lib*/cmake/paraview-*" "${_prefix}/lib*/cmake/ParaView*"
           "${_prefix}/share/cmake/paraview-*" "${_prefix}/share/cmake/ParaView*")
      list(SORT _dirs)
      list(APPEND _candidates ${_dirs})
    endforeach()
  endif()

  set(_best_dir "")
  set(_best_version "")
  foreach(_dir IN LISTS _candidates)
    if(NOT IS_DIRECTORY "${_dir}")
      continue()
    endif()
    _globscope_paraview_package_version("${_dir}" _version)
    if(_version AND (NOT _best_version OR _version VERSION_GREATER _best_version))
      set(_best_version "${_version}")
      set(_best_dir "${_dir}")
    endif()
  endforeach()
  if(NOT _best_dir)
    return()
  endif()

  get_filename_component(_best_dir "${_best_dir}" REALPATH)
  set(ParaView_DIR "${_best_dir}" CACHE PATH "The directory containing a CMake configuration file for ParaView." FORCE)
  string(REGEX MATCH "^[0-9]+\\.[0-9]+" _simple "${_best_version}")
  set(_subdir "paraview-${_simple}/plugins")
  foreach(_name IN LISTS _globscope_pv_config_names)
    if(EXISTS "${_best_dir}/${_name}")
      file(STRINGS "${_best_dir}/${_name}" _line REGEX "set\\(PARAVIEW_PLUGIN_SUBDIR \"[^\"]+\"\\)" LIMIT_COUNT 1)
      if(_line MATCHES "set\\(PARAVIEW_PLUGIN_SUBDIR \"([^\"]+)\"\\)")
        set(_subdir "${CMAKE_MATCH_1}")
      endif()
      break()
    endif()
  endforeach()
  set(GLOBSCOPE_PARAVIEW_FOUND TRUE PARENT_SCOPE)
  set(GLOBSCOPE_PARAVIEW_VERSION "${_best_version}" PARENT_SCOPE)
  set(GLOBSCOPE_PARAVIEW_PLUGIN_SUBDIR "${_subdir}" PARENT_SCOPE)
endfunction()
