# An empty spdlog package for the offline QVL build (see ../HunterGate.cmake).
# The QVL links spdlog::spdlog_header_only unconditionally but includes spdlog
# headers only when built with BUILD_LOGS=ON, which build.sh does not set.
if(NOT TARGET spdlog::spdlog_header_only)
  add_library(spdlog::spdlog_header_only INTERFACE IMPORTED GLOBAL)
endif()
set(spdlog_FOUND TRUE)
