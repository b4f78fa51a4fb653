// The eval report as text: the aligned table (dgcctl's default) and the JSON
// form whose field names common/eval/EVAL_JSON.md documents and keeps stable.
#ifndef DGC_COMMON_EVAL_REPORT_TEXT_H_
#define DGC_COMMON_EVAL_REPORT_TEXT_H_

#include <string>

#include "common/eval/metrics.h"

namespace dgc::eval {

// The aligned table, at most 100 columns wide (long paths are elided in the
// middle), ending in a newline.
std::string FormatTable(const EvalReport& report);

// The JSON document (schema "dgc.eval/1"), pretty-printed, ending in a newline.
std::string FormatJson(const EvalReport& report);

}  // namespace dgc::eval

#endif  // DGC_COMMON_EVAL_REPORT_TEXT_H_
