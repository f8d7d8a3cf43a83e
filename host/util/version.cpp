#include "cnncert/version.hpp"

namespace cnncert {
const char* version() {
  return CNNCERT_VERSION_STRING;
}
}  // namespace cnncert
