// errors.cpp: the thread-local error message behind fa::fail() and fa_last_error().
#include <cstdarg>
#include <cstdio>

#include "common/status.h"

namespace fa {
namespace {

// One message per calling thread, so concurrent callers never read each other's errors.
thread_local char last_error_message[1024] = "";

}  // namespace

fa_status fail(fa_status status, const char* format, ...) {
  va_list arguments;
  va_start(arguments, format);
  std::vsnprintf(last_error_message, sizeof(last_error_message), format, arguments);
  va_end(arguments);
  return status;
}

void clear_error() { last_error_message[0] = '\0'; }

}  // namespace fa

extern "C" FA_API const char* fa_last_error(void) { return fa::last_error_message; }
