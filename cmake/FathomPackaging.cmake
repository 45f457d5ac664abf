# CPack: Debian packages of the engine and the workbench (`cpack -G DEB` in the build directory,
# or `cmake --build . --target package`). Two components:
#   fathom-engine  /usr/bin/fathom-engine (headless; what GPU servers and containers need)
#   fathom         /usr/bin/fathom, desktop entry, icon, AppStream metadata; depends on fathom-engine
# Depends come from dpkg-shlibdeps over the installed binaries (plus the engine for the workbench).
# tests/packaging's packaging_deb builds both, unpacks them into a temporary root and runs them.
include(GNUInstallDirs)
# `install`/`package` (and cpack's preinstall step) install what is built instead of building
# `all` first, the whole test suite included: build fathom-engine (and fathom) before packing.
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY ON)

set(FATHOM_APP_ID io.github.fathom.Fathom)
install(TARGETS fathom-engine RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT engine)
if(FATHOM_GUI)
  # app/CMakeLists.txt installs `fathom` without a component ("Unspecified"): that is the workbench.
  install(FILES ${CMAKE_SOURCE_DIR}/resources/linux/${FATHOM_APP_ID}.desktop
          DESTINATION ${CMAKE_INSTALL_DATADIR}/applications COMPONENT Unspecified)
  install(FILES ${CMAKE_SOURCE_DIR}/resources/linux/${FATHOM_APP_ID}.metainfo.xml
          DESTINATION ${CMAKE_INSTALL_DATADIR}/metainfo COMPONENT Unspecified)
  install(FILES ${CMAKE_SOURCE_DIR}/resources/icons/fathom.svg
          DESTINATION ${CMAKE_INSTALL_DATADIR}/icons/hicolor/scalable/apps RENAME ${FATHOM_APP_ID}.svg COMPONENT Unspecified)
  set(CPACK_COMPONENTS_ALL engine Unspecified)
else()
  set(CPACK_COMPONENTS_ALL engine)
endif()

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME fathom)
set(CPACK_PACKAGE_VENDOR "Fathom")
set(CPACK_PACKAGE_CONTACT "Fathom developers <fathom@localhost>")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Train, fine-tune and serve large language models on your own GPUs")
set(CPACK_PACKAGE_DIRECTORY ${CMAKE_BINARY_DIR}/packages)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_SECTION science)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)

set(CPACK_DEBIAN_ENGINE_PACKAGE_NAME fathom-engine)
set(CPACK_DEBIAN_ENGINE_PACKAGE_SECTION science)
set(CPACK_COMPONENT_ENGINE_DESCRIPTION
    "Headless LLM training and inference engine (LibTorch)\n fathom-engine trains, fine-tunes (LoRA) and serves transformer language models;\n it reports progress as JSON lines and serves an OpenAI-compatible HTTP API\n and Prometheus metrics.")
set(CPACK_DEBIAN_UNSPECIFIED_PACKAGE_NAME fathom)
set(CPACK_DEBIAN_UNSPECIFIED_PACKAGE_SECTION science)
# Qt loads its platform plugin (xcb, wayland, offscreen) at run time: no shared-library dependency shows it.
# Likewise Qt Keychain loads libsecret (the Secret Service client) at run time; without it every
# keychain call fails with "Unknown error" and SSH passwords cannot be remembered.
set(CPACK_DEBIAN_UNSPECIFIED_PACKAGE_DEPENDS "fathom-engine (= ${PROJECT_VERSION}-1), qt6-qpa-plugins, libsecret-1-0")
set(CPACK_COMPONENT_UNSPECIFIED_DESCRIPTION
    "Desktop workbench for training large language models\n Design run configs, launch the engine locally or on SSH hosts, watch live\n charts, manage checkpoints, fine-tune with LoRA and try models in a playground.")
include(CPack)
