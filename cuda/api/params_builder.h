// params_builder.h: the AttentionParams of a request that passed every check.
#pragma once

#include "api/request.h"
#include "common/params.h"

namespace fa {

void build_params(const Request& request, const Problem& problem, AttentionParams* params);

}  // namespace fa
