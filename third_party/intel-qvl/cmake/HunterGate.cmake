# Replacement for Src/ThirdParty/hunter/HunterGate.cmake, copied over it by
# build.sh in the extracted build tree (the vendored tarball is not edited).
#
# Upstream's HunterGate downloads Hunter, which then downloads OpenSSL,
# googletest and spdlog at configure time. Offline, the macros do nothing:
# find_package(OpenSSL) then finds the system OpenSSL (libssl-dev), spdlog
# comes from cmake/spdlog (an empty target: it is compiled in only with
# BUILD_LOGS=ON), and googletest is not needed with BUILD_TESTS=OFF.
macro(HunterGate)
endmacro()

macro(hunter_add_package)
endmacro()

macro(hunter_config)
endmacro()
