// Process-wide logging setup: spdlog to stderr, "<program>: <level>: message".
// stdout stays clean for results (tables, JSON, pcap on "-").
#ifndef DGC_COMMON_BASE_LOGGING_H_
#define DGC_COMMON_BASE_LOGGING_H_

#include <string>

namespace dgc {

// `level`: trace, debug, info, warn, error, off. Unknown names mean info.
void InitLogging(const std::string& program, const std::string& level = "info");

}  // namespace dgc

#endif  // DGC_COMMON_BASE_LOGGING_H_
