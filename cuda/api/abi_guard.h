// abi_guard.h: no C++ exception may cross the C ABI. Wrap an ABI function's body in
// guarded(): it clears the thread's error first and maps exceptions to status codes.
#pragma once

#include <exception>
#include <new>
#include <system_error>

#include "common/status.h"

namespace fa {

template <class Body>
int32_t guarded(const char* function, Body&& body) noexcept {
  clear_error();
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return fail(FA_ERR_OUT_OF_MEMORY, "%s: out of host memory", function);
  } catch (const std::system_error& error) {
    // E.g. std::thread failing to start a CPU worker: out of host resources, not a bug.
    const std::error_code code = error.code();
    const bool exhausted = code == std::errc::resource_unavailable_try_again ||
                           code == std::errc::not_enough_memory;
    return fail(exhausted ? FA_ERR_OUT_OF_MEMORY : FA_ERR_INTERNAL, "%s: %s: %s", function,
                exhausted ? "out of host resources" : "system error", error.what());
  } catch (const std::exception& error) {
    return fail(FA_ERR_INTERNAL, "%s: internal error: %s", function, error.what());
  } catch (...) {
    return fail(FA_ERR_INTERNAL, "%s: internal error (unknown exception)", function);
  }
}

}  // namespace fa
