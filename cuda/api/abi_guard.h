// abi_guard.h: no C++ exception may cross the C ABI. Wrap an ABI function's body in
// guarded(): it clears the thread's error first and maps exceptions to status codes.
#pragma once

#include <exception>
#include <new>

#include "common/status.h"

namespace fa {

template <class Body>
int32_t guarded(const char* function, Body&& body) noexcept {
  clear_error();
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return fail(FA_ERR_OUT_OF_MEMORY, "%s: out of host memory", function);
  } catch (const std::exception& error) {
    return fail(FA_ERR_INTERNAL, "%s: internal error: %s", function, error.what());
  } catch (...) {
    return fail(FA_ERR_INTERNAL, "%s: internal error (unknown exception)", function);
  }
}

}  // namespace fa
