# packaging.cmake -- what `cmake --install` puts where, the Debian package
# (CPack) and the tests of both. Included at the end of CMakeLists.txt.
#
#   cmake --install build --prefix /usr                 # or DESTDIR=/tmp/root cmake --install ...
#   (cd build && cpack -G DEB)                          # tongban_<version>_<arch>.deb, prefix /usr
#
# Layout (GNUInstallDirs, relative to the prefix):
#   bin/                         tongban-hub, tongban-node, tbctl
#   lib/ (or lib/<multiarch>)    libtongban.so.<version>, .so.<major>, .so, libtongban.a,
#                                pkgconfig/tongban.pc
#   include/tongban/             tongban.h, client.h, validate.h, version.h
#   share/doc/tongban/           README.md, the guides, examples/hub.yaml, examples/node.yaml
#   lib/systemd/system/          tongban-hub.service, tongban-node@.service
#   lib/sysusers.d/              tongban.conf (the unprivileged user `tongban`)
#
# tongban.pc and the systemd units name absolute paths (the prefix, the
# binaries). They are written at *install* time from the prefix that
# installation uses (packaging/install-generated.cmake.in), so one build tree
# serves `cmake --install --prefix X` and cpack (always /usr) alike.
include(GNUInstallDirs)

install(TARGETS tongban-hub tongban-node tbctl RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS tongban tongban_static
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES client/include/tongban/tongban.h client/include/tongban/client.h
              client/include/tongban/validate.h ${CMAKE_BINARY_DIR}/include/tongban/version.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/tongban)
install(FILES config/hub.yaml config/node.yaml DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)
install(FILES README.md docs/operator-guide.md docs/integrator-guide.md docs/protocol.md
              docs/metrics.md docs/decisions.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES packaging/sysusers.d/tongban.conf DESTINATION lib/sysusers.d)
configure_file(packaging/install-generated.cmake.in
               ${CMAKE_BINARY_DIR}/packaging/install-generated.cmake @ONLY)
install(SCRIPT ${CMAKE_BINARY_DIR}/packaging/install-generated.cmake)

# ---- the Debian package: cpack -G DEB ----
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME tongban)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "tongban")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "national government data exchange: hub, node, tbctl and libtongban")
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION "${CPACK_PACKAGE_DESCRIPTION_SUMMARY}
tongban routes signed protobuf batches over CURVE-encrypted ZeroMQ between
provincial and ministry nodes, each in front of its own PostgreSQL.
This package holds tongban-hub, tongban-node, tbctl, libtongban (shared,
static, headers, pkg-config) and systemd units running as user tongban.")
set(TB_DEB_MAINTAINER "tongban maintainers <tongban@localhost>" CACHE STRING
    "Maintainer field of the .deb")
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${TB_DEB_MAINTAINER}")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)          # tongban_<version>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# The prefix of the package is /usr; DESTDIR staging keeps CMAKE_INSTALL_PREFIX
# at /usr during cpack's install, so the generated files name /usr paths.
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_SET_DESTDIR ON)
set(CPACK_STRIP_FILES ON)
# Runtime libraries: computed by dpkg-shlibdeps (package dpkg-dev) from the
# binaries. Without it, the list Debian 12 needs (checked with dpkg -S).
find_program(TB_DPKG_SHLIBDEPS dpkg-shlibdeps)
if(TB_DPKG_SHLIBDEPS)
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
  set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser | systemd-sysusers")
else()
  set(CPACK_DEBIAN_PACKAGE_DEPENDS
      "libc6 (>= 2.34), libzmq5, libprotobuf-c1, libpq5, libssl3, libyaml-0-2, libmicrohttpd12, libisal2, libjansson4, libgcrypt20, adduser | systemd-sysusers")
endif()
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)     # the shlibs file for libtongban (ldconfig: debian/triggers)
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "postgresql (>= 15)")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${CMAKE_SOURCE_DIR}/packaging/debian/postinst
    ${CMAKE_SOURCE_DIR}/packaging/debian/prerm
    ${CMAKE_SOURCE_DIR}/packaging/debian/postrm
    ${CMAKE_SOURCE_DIR}/packaging/debian/triggers)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)

# ---- tests ----
# docs_config_keys: every key of common/config.c's schema tables is in the
# operator guide's configuration reference and in config/*.yaml, and nothing
# else is (label unit: no build output needed, runs anywhere).
find_package(Python3 COMPONENTS Interpreter)
if(Python3_Interpreter_FOUND)
  add_test(NAME docs_config_keys
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/tests/package/config_keys.py ${CMAKE_SOURCE_DIR})
  set_tests_properties(docs_config_keys PROPERTIES LABELS "unit;docs" TIMEOUT 60)
endif()
# install_tree: cmake --install into a temporary DESTDIR, the file list, the
# units (systemd-analyze when present), and a program built with
# `pkg-config --cflags --libs tongban` against the installed tree (label install).
# package_deb: cpack -G DEB into a temporary directory; control fields,
# Depends, maintainer scripts and contents (label package). Neither touches
# the machine outside its temporary directory. Not in sanitizer or fuzzing
# builds (an instrumented libtongban cannot be linked by a plain program).
if(NOT TB_SANITIZE AND NOT TB_FUZZ)
  add_test(NAME install_tree COMMAND ${CMAKE_SOURCE_DIR}/tests/package/install.sh ${CMAKE_BINARY_DIR})
  set_tests_properties(install_tree PROPERTIES LABELS "install" TIMEOUT 300)
  add_test(NAME package_deb COMMAND ${CMAKE_SOURCE_DIR}/tests/package/deb.sh ${CMAKE_BINARY_DIR})
  set_tests_properties(package_deb PROPERTIES LABELS "package" TIMEOUT 600)
endif()
